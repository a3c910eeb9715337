"""Batch normalization: both implementations, their gradients, the modules and helpers.

Every expected value here comes from an independent computation: finite differences
(gradcheck), the other implementation, PyTorch, or NumPy formulas written out by hand.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.nn import batchnorm as bn_mod
from minigrad.nn.batchnorm import BatchNorm1d, BatchNorm2d, batch_norm
from minigrad.nn.utils import fold_batchnorm, recompute_bn_stats

IMPLS = ["fused", "composed"]
SMALL = [(5, 3), (3, 2, 4), (2, 2, 3, 3)]  # (N, C), (N, C, L), (N, C, H, W)
SHAPES = [(7, 4), (4, 3, 6), (3, 4, 5, 6)]


def channel_axes(x: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def make(rng: np.random.Generator, shape: tuple, dtype: Any = np.float64) -> dict:
    """Input, affine parameters and running statistics for one channel layout."""
    c = shape[1]
    return {
        "x": (rng.standard_normal(shape) * 2 + 0.5).astype(dtype),
        "w": (rng.standard_normal(c) + 1).astype(dtype),
        "b": rng.standard_normal(c).astype(dtype),
        "rm": rng.standard_normal(c).astype(dtype),
        "rv": (rng.random(c) + 0.5).astype(dtype),
        "dy": rng.standard_normal(shape).astype(dtype),
    }


def run(d: dict, impl: str, training: bool, affine: bool) -> dict:
    """Forward and backward in minigrad; outputs, gradients and updated running stats."""
    x = mg.tensor(d["x"], requires_grad=True)
    w = mg.tensor(d["w"], requires_grad=True) if affine else None
    b = mg.tensor(d["b"], requires_grad=True) if affine else None
    rm, rv = mg.tensor(d["rm"]), mg.tensor(d["rv"])
    y = batch_norm(x, rm, rv, w, b, training=training, impl=impl)
    y.backward(mg.tensor(d["dy"]))
    out = {"y": y.numpy(), "dx": x.grad.numpy(), "rm": rm.numpy(), "rv": rv.numpy()}
    if affine:
        out["dw"], out["db"] = w.grad.numpy(), b.grad.numpy()
    return out


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("shape", SMALL)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_and_gradgradcheck(impl: str, training: bool, affine: bool, shape: tuple,
                                     rng: np.random.Generator) -> None:
    d = make(rng, shape)
    rm, rv = mg.tensor(d["rm"]), mg.tensor(d["rv"])
    x = mg.tensor(d["x"], requires_grad=True)
    w = mg.tensor(d["w"], requires_grad=True)
    b = mg.tensor(d["b"], requires_grad=True)

    def f(x: mg.Tensor, w: mg.Tensor, b: mg.Tensor) -> mg.Tensor:
        stats = (None, None) if training else (rm, rv)
        return batch_norm(x, *stats, w if affine else None, b if affine else None,
                          training=training, impl=impl)

    inputs = [x, w, b] if affine else [x]
    fn = f if affine else (lambda x: f(x, None, None))
    assert mg.gradcheck(fn, inputs)
    assert mg.gradgradcheck(fn, inputs)


class _ConstantStatsBN(mg.Function):
    """A fused BN whose backward reuses forward's x_hat and 1/std as constants: wrong
    second derivatives, although its first derivatives are right."""

    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
        xc = x - x.mean(axis=0)
        inv_std = 1 / np.sqrt((xc**2).mean(axis=0) + 1e-5)
        ctx.save_for_backward(xc * inv_std, inv_std)
        return xc * inv_std

    @staticmethod
    def backward(ctx: Any, dy: mg.Tensor) -> mg.Tensor:
        x_hat, inv_std = ctx.saved_tensors  # constants under create_graph
        m = x_hat.shape[0]
        return inv_std / m * (m * dy - dy.sum(axis=0) - x_hat * (dy * x_hat).sum(axis=0))


def test_backward_with_constant_statistics_fails_gradgradcheck(rng: np.random.Generator) -> None:
    """The pitfall the fused op avoids: the check does catch it."""
    x = mg.tensor(rng.standard_normal((5, 2)), requires_grad=True)
    assert mg.gradcheck(_ConstantStatsBN.apply, [x])
    with pytest.raises(mg.GradcheckError):
        mg.gradgradcheck(_ConstantStatsBN.apply, [x])
    assert mg.gradgradcheck(lambda x: batch_norm(x, None, None), [x])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_fused_graph_backward_equals_array_backward(training: bool, shape: tuple,
                                                    rng: np.random.Generator) -> None:
    """The two backward paths of the fused op (plain and create_graph) give one answer."""
    d = make(rng, shape)
    x = mg.tensor(d["x"], requires_grad=True)
    w = mg.tensor(d["w"], requires_grad=True)
    b = mg.tensor(d["b"], requires_grad=True)
    rm, rv = mg.tensor(d["rm"]), mg.tensor(d["rv"])
    dy = mg.tensor(d["dy"])
    y = batch_norm(x, rm, rv, w, b, training=training)
    plain = mg.grad(y, [x, w, b], dy, retain_graph=True)
    graph = mg.grad(y, [x, w, b], dy, create_graph=True)
    assert graph[0].requires_grad
    for p, g in zip(plain, graph):
        np.testing.assert_allclose(g.numpy(), p.numpy(), rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------- fused == composed
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("block_bytes", [None, 40, 100])
def test_fused_matches_composed(block_bytes: int | None, training: bool, affine: bool,
                                shape: tuple, rng: np.random.Generator,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    if block_bytes:  # the fused kernels walk many small blocks, the last one shorter
        monkeypatch.setattr(bn_mod, "_BLOCK_BYTES", block_bytes)
    d = make(rng, shape)
    fused = run(d, "fused", training, affine)
    composed = run(d, "composed", training, affine)
    assert fused.keys() == composed.keys()
    for k in fused:
        np.testing.assert_allclose(fused[k], composed[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_fused_matches_composed_on_device(device: str, rng: np.random.Generator) -> None:
    d = make(rng, (6, 3, 4, 4))
    outs = {}
    for impl in IMPLS:
        x = mg.tensor(d["x"], device=device, requires_grad=True)
        w = mg.tensor(d["w"], device=device, requires_grad=True)
        rm, rv = mg.tensor(d["rm"], device=device), mg.tensor(d["rv"], device=device)
        y = batch_norm(x, rm, rv, w, None, impl=impl)
        y.backward(mg.tensor(d["dy"], device=device))
        assert y.device == device
        outs[impl] = [y.numpy(), x.grad.numpy(), w.grad.numpy(), rm.numpy(), rv.numpy()]
    for a, b in zip(outs["fused"], outs["composed"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_gradients_of_gamma_and_beta_alone(training: bool, rng: np.random.Generator) -> None:
    """An input that needs no gradient (a first layer) takes the fused op's short path."""
    d = make(rng, (5, 3, 4))
    grads = []
    for impl in IMPLS:
        w = mg.tensor(d["w"], requires_grad=True)
        b = mg.tensor(d["b"], requires_grad=True)
        y = batch_norm(mg.tensor(d["x"]), mg.tensor(d["rm"]), mg.tensor(d["rv"]), w, b,
                       training=training, impl=impl)
        y.backward(mg.tensor(d["dy"]))
        grads.append((w.grad.numpy(), b.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_non_contiguous_input(rng: np.random.Generator) -> None:
    base = rng.standard_normal((4, 9))
    dy = rng.standard_normal((9, 4))
    grads = []
    for impl in IMPLS:
        x = mg.tensor(base, requires_grad=True)
        y = batch_norm(x.T, None, None, impl=impl)  # (9, 4), a transposed view
        y.backward(mg.tensor(dy))
        grads.append((y.numpy(), x.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_stays_float32(impl: str, rng: np.random.Generator) -> None:
    d = make(rng, (8, 3, 5), np.float32)
    bn = BatchNorm1d(3, impl=impl)
    x = mg.tensor(d["x"], requires_grad=True)
    y = bn(x)
    y.backward(mg.tensor(d["dy"]))
    assert y.dtype == x.grad.dtype == bn.weight.grad.dtype == bn.running_var.dtype == np.float32


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("param_dtype", [np.float32, np.float16])
@pytest.mark.parametrize(("cls", "shape"), [("BatchNorm1d", (256, 3)),
                                            ("BatchNorm2d", (16, 3, 5, 4))])
def test_float16_input_matches_torch(torch: Any, cls: str, shape: tuple, param_dtype: Any,
                                     impl: str, rng: np.random.Generator) -> None:
    """Statistics of float16 data are taken in float32; the output is float16 as the input.

    A spread of 30 makes the float16 sum of squared deviations overflow (65504), which
    once gave an inf running variance and all-zero outputs.
    """
    ours = getattr(bn_mod, cls)(3, impl=impl, dtype=param_dtype)
    theirs = getattr(torch.nn, cls)(3).to(getattr(torch, np.dtype(param_dtype).name))
    x = (rng.standard_normal(shape) * 30 + 5).astype(np.float16)
    dy = rng.standard_normal(shape).astype(np.float16)
    xm, xt = mg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(xm), theirs(xt)
    y.backward(mg.tensor(dy))
    yt.backward(torch.tensor(dy))
    assert y.dtype == xm.grad.dtype == np.float16
    assert ours.running_var.dtype == ours.weight.grad.dtype == param_dtype
    tol = {"rtol": 2e-3, "atol": 2e-3}
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), **tol)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=2e-3)
    for name in ("running_mean", "running_var"):
        np.testing.assert_allclose(getattr(ours, name).numpy(),
                                   getattr(theirs, name).numpy(), rtol=2e-3, err_msg=name)
    ours.eval()
    theirs.eval()
    ye = ours(mg.tensor(x))
    assert ye.dtype == np.float16
    np.testing.assert_allclose(ye.numpy(), theirs(torch.tensor(x)).detach().numpy(), **tol)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("x_dtype, p_dtype", [(np.float16, np.float32), (np.float16, np.float16),
                                              (np.float32, np.float64), (np.float64, np.float32)])
def test_both_implementations_return_the_input_dtype(x_dtype: Any, p_dtype: Any, training: bool,
                                                     rng: np.random.Generator) -> None:
    outs, data = {}, rng.standard_normal((6, 3)).astype(x_dtype)
    for impl in IMPLS:
        x = mg.tensor(data, requires_grad=True)
        w = mg.tensor(np.ones(3, p_dtype), requires_grad=True)
        b = mg.tensor(np.zeros(3, p_dtype), requires_grad=True)
        rm, rv = mg.tensor(np.zeros(3, p_dtype)), mg.tensor(np.ones(3, p_dtype))
        y = batch_norm(x, rm, rv, w, b, training=training, impl=impl)
        y.sum().backward()
        assert y.dtype == x.grad.dtype == x_dtype, impl
        assert w.grad.dtype == b.grad.dtype == rm.dtype == rv.dtype == p_dtype, impl
        outs[impl] = y.numpy()
    np.testing.assert_allclose(outs["fused"], outs["composed"], rtol=2e-3, atol=2e-3)


def test_float16_graph_backward(rng: np.random.Generator) -> None:
    """Second derivatives of a float16 BatchNorm: float16 gradients that both paths agree on,
    close to the float32 computation."""
    x0 = (rng.standard_normal((64, 2)) * 30).astype(np.float16)
    w0 = np.array([1.5, 0.5], np.float16)
    got = {}
    for impl, dt in (("fused", np.float16), ("composed", np.float16), ("fused", np.float32)):
        x = mg.tensor(x0.astype(dt), requires_grad=True)
        w = mg.tensor(w0.astype(dt), requires_grad=True)
        y = batch_norm(x, None, None, w, None, impl=impl)
        gx, _ = mg.grad((y * y * y).sum(), [x, w], create_graph=True)
        (gw,) = mg.grad((gx * gx).sum(), [w])
        assert gx.dtype == gw.dtype == dt
        got[impl, np.dtype(dt).name] = gx.numpy().astype(np.float32), gw.numpy()
    reference = got["fused", "float32"]
    for key in (("fused", "float16"), ("composed", "float16")):
        for a, b in zip(got[key], reference):
            np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-2 * np.abs(b).max(),
                                       err_msg=str(key))


def test_float16_running_var_overflow_warns() -> None:
    """A float16 running variance that overflows for real (variance > 65504) says so."""
    bn = BatchNorm1d(2, dtype=np.float16, momentum=1.0)
    x = mg.tensor(np.array([[-300.0, 1.0], [300.0, 2.0]], np.float16))
    with pytest.warns(RuntimeWarning, match=r"running_var overflowed float16.*65504"):
        bn(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BatchNorm1d(2, momentum=1.0)(x)  # float32 running statistics hold it


def test_what_the_tape_records(rng: np.random.Generator) -> None:
    x = mg.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = mg.tensor(np.ones(3), requires_grad=True)
    b = mg.tensor(np.zeros(3), requires_grad=True)
    assert [r.name for r in mg.tape(batch_norm(x, None, None, w, b))] == ["batch_norm"]
    names = [r.name for r in mg.tape(batch_norm(x, None, None, w, b, impl="composed"))]
    arith = [n for n in names if n != "reshape"]
    assert arith == ["mean", "sub", "pow", "mean", "add", "sqrt", "div", "mul", "add"]


# ---------------------------------------------------------------- PyTorch as oracle
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("impl", IMPLS)
def test_functional_matches_torch(torch: Any, impl: str, training: bool, shape: tuple,
                                  rng: np.random.Generator) -> None:
    d = make(rng, shape)
    ours = run(d, impl, training, affine=True)
    x = torch.tensor(d["x"], requires_grad=True)
    w = torch.tensor(d["w"], requires_grad=True)
    b = torch.tensor(d["b"], requires_grad=True)
    rm, rv = torch.tensor(d["rm"]), torch.tensor(d["rv"])
    y = torch.nn.functional.batch_norm(x, rm, rv, w, b, training=training)
    y.backward(torch.tensor(d["dy"]))
    theirs = {"y": y.detach(), "dx": x.grad, "dw": w.grad, "db": b.grad, "rm": rm, "rv": rv}
    for k, v in theirs.items():
        np.testing.assert_allclose(ours[k], v.numpy(), rtol=1e-9, atol=1e-11, err_msg=k)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("cls", "shape"), [("BatchNorm1d", (6, 4)), ("BatchNorm1d", (5, 4, 3)),
                                            ("BatchNorm2d", (3, 4, 3, 2))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_modules_match_torch_over_steps(torch: Any, momentum: float | None, cls: str,
                                        shape: tuple, impl: str,
                                        rng: np.random.Generator) -> None:
    ours = getattr(bn_mod, cls)(4, momentum=momentum, impl=impl).double()
    theirs = getattr(torch.nn, cls)(4, momentum=momentum).double()
    for step in range(4):
        x = rng.standard_normal(shape) * (step + 1) + step
        xm = mg.tensor(x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        y, yt = ours(xm), theirs(xt)
        dy = rng.standard_normal(shape)
        y.backward(mg.tensor(dy))
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    for name, t in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[name].numpy(), t.numpy(), rtol=1e-12,
                                   err_msg=name)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(ours.bias.grad.numpy(), theirs.bias.grad.numpy(), rtol=1e-9)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((1,) + shape[1:])  # eval with a batch of one
    np.testing.assert_allclose(ours(mg.tensor(x)).numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("affine", "track"), [(False, True), (True, False), (False, False)])
def test_module_options_match_torch(torch: Any, affine: bool, track: bool, impl: str,
                                    rng: np.random.Generator) -> None:
    ours = BatchNorm2d(3, affine=affine, track_running_stats=track, impl=impl).double()
    theirs = torch.nn.BatchNorm2d(3, affine=affine, track_running_stats=track).double()
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))
    for mode in ("train", "eval", "train"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        x = rng.standard_normal((4, 3, 2, 3)) * 3 + 1
        np.testing.assert_allclose(ours(mg.tensor(x)).numpy(),
                                   theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=mode)
    for name, t in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[name].numpy(), t.numpy(), rtol=1e-12)


def test_repr_like_torch() -> None:
    assert repr(BatchNorm1d(3)) == ("BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, "
                                    "track_running_stats=True)")
    assert repr(BatchNorm2d(8, momentum=None, affine=False, impl="composed")) == (
        "BatchNorm2d(8, eps=1e-05, momentum=None, affine=False, track_running_stats=True, "
        "impl='composed')")


def test_state_dict_round_trip(rng: np.random.Generator) -> None:
    a, b = BatchNorm1d(3), BatchNorm1d(3)
    for _ in range(3):
        a(mg.tensor(rng.standard_normal((5, 3)).astype(np.float32)))
    b.load_state_dict(a.state_dict())
    assert int(b.num_batches_tracked.item()) == 3
    a.eval()
    b.eval()
    x = mg.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


# ---------------------------------------------------------------- running statistics
@pytest.mark.parametrize("impl", IMPLS)
def test_running_stats_by_hand(impl: str, rng: np.random.Generator) -> None:
    """Exponential average with the unbiased variance; momentum=None is the plain mean."""
    for momentum in (0.3, None):
        rm, rv = mg.tensor(np.zeros(2)), mg.tensor(np.ones(2))
        count = mg.tensor(np.array(0, dtype=np.int64))
        em, ev = np.zeros(2), np.ones(2)
        means, variances = [], []
        for _ in range(3):
            x = rng.standard_normal((5, 2, 3)) * 2 + 1
            batch_norm(x=mg.tensor(x), running_mean=rm, running_var=rv, momentum=momentum,
                       impl=impl, num_batches_tracked=count)
            means.append(x.mean(axis=(0, 2)))
            variances.append(x.var(axis=(0, 2), ddof=1))  # m/(m-1): unbiased
            if momentum is not None:
                em = (1 - momentum) * em + momentum * means[-1]
                ev = (1 - momentum) * ev + momentum * variances[-1]
        if momentum is None:
            em, ev = np.mean(means, axis=0), np.mean(variances, axis=0)
        np.testing.assert_allclose(rm.numpy(), em, rtol=1e-12)
        np.testing.assert_allclose(rv.numpy(), ev, rtol=1e-12)
        assert int(count.item()) == 3


def test_eval_changes_no_statistics_and_uses_them(rng: np.random.Generator) -> None:
    bn = BatchNorm1d(3)
    bn(mg.tensor(rng.standard_normal((6, 3)).astype(np.float32)))
    bn.eval()
    before = {k: v.numpy() for k, v in bn.state_dict().items()}
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = bn(mg.tensor(x)).numpy()
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    expected = (x - before["running_mean"]) / np.sqrt(before["running_var"] + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_running_stats_updates_bump_their_version(rng: np.random.Generator) -> None:
    """An op that saved a running statistic sees the in-place update and refuses."""
    bn = BatchNorm1d(3, dtype=np.float64)
    w = mg.tensor(rng.standard_normal(3), requires_grad=True)
    z = (w * bn.running_var).sum()  # mul saves running_var for w's gradient
    bn(mg.tensor(rng.standard_normal((4, 3))))
    with pytest.raises(mg.GraphError, match="modified in place"):
        z.backward()


@pytest.mark.parametrize("impl", IMPLS)
def test_eval_backward_uses_the_statistics_of_its_forward(impl: str,
                                                         rng: np.random.Generator) -> None:
    bn = BatchNorm1d(3, impl=impl, dtype=np.float64)
    bn(mg.tensor(rng.standard_normal((6, 3)) + 2))
    bn.eval()
    scale = 1 / np.sqrt(bn.running_var.numpy() + 1e-5)
    x = mg.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    y = bn(x)
    bn.train()
    bn(mg.tensor(rng.standard_normal((4, 3)) * 5))  # running statistics move on
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(scale, (4, 3)), rtol=1e-12)


def test_running_stats_are_not_recorded(rng: np.random.Generator) -> None:
    bn = BatchNorm1d(3, dtype=np.float64)
    x = mg.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    bn(x)
    assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None


# ---------------------------------------------------------------- the paper's properties
@pytest.mark.parametrize("impl", IMPLS)
def test_invariant_to_weight_scale(impl: str, rng: np.random.Generator) -> None:
    """BN((aW)u) = BN(Wu); d/du is unchanged; d/d(aW) = (1/a) d/dW (Section 3.3)."""
    a = 7.5
    u = rng.standard_normal((16, 5))
    w = rng.standard_normal((4, 5))
    r = rng.standard_normal((16, 4))  # a fixed random readout makes the loss generic
    results = []
    for scale in (1.0, a):
        layer = nn.Linear(5, 4, bias=False).double()
        layer.weight.data[...] = w * scale
        bn = BatchNorm1d(4, eps=1e-14, impl=impl).double()
        x = mg.tensor(u, requires_grad=True)
        y = bn(layer(x))
        (y * mg.tensor(r)).sum().backward()
        results.append((y.numpy(), x.grad.numpy(), layer.weight.grad.numpy()))
    (y1, gu1, gw1), (ya, gua, gwa) = results
    np.testing.assert_allclose(ya, y1, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gua, gu1, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gwa, gw1 / a, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_training_output_is_normalized(impl: str, shape: tuple,
                                       rng: np.random.Generator) -> None:
    x = rng.standard_normal(shape) * 5 + 3
    y = batch_norm(mg.tensor(x), None, None, impl=impl).numpy()
    axes = channel_axes(x)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-12)
    var = x.var(axis=axes)
    np.testing.assert_allclose(y.var(axis=axes), var / (var + 1e-5), rtol=1e-12)  # ~1
    np.testing.assert_allclose(y.var(axis=axes), 1, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_eval_is_one_affine_map_per_channel(impl: str, rng: np.random.Generator) -> None:
    d = make(rng, (4, 3, 5, 2))
    y = run(d, impl, training=False, affine=True)["y"]
    scale = d["w"] / np.sqrt(d["rv"] + 1e-5)
    shift = d["b"] - d["rm"] * scale
    np.testing.assert_allclose(y, d["x"] * per_channel(scale, 4) + per_channel(shift, 4),
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- utils
def _mlp(rng: np.random.Generator) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(6, 5), BatchNorm1d(5), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(5, 4), BatchNorm1d(4, affine=False)).double()
    model[1].weight.data[...] = rng.standard_normal(5) + 1
    model[1].bias.data[...] = rng.standard_normal(5)
    return model


def test_recompute_bn_stats_is_algorithm_2(rng: np.random.Generator) -> None:
    model = _mlp(rng)
    for _ in range(3):  # leave some exponential averages behind
        model(mg.tensor(rng.standard_normal((8, 6))))
    model.eval()
    batches = [rng.standard_normal((10, 6)) * 2 + 1 for _ in range(5)]
    loader = [(mg.tensor(b), np.zeros(10)) for b in batches]
    recompute_bn_stats(model, loader)

    # By hand: run the training-mode network on each batch, keep every BN's batch stats.
    lin1, bn1, lin2 = model[0], model[1], model[4]
    w1, b1, w2, b2 = (t.numpy() for t in (lin1.weight, lin1.bias, lin2.weight, lin2.bias))
    stats: list[list] = [[], []]
    for u in batches:
        h = u @ w1.T + b1
        stats[0].append((h.mean(0), h.var(0)))
        h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * bn1.weight.numpy() + bn1.bias.numpy()
        h = np.maximum(h, 0) @ w2.T + b2  # Dropout stays off: the model was in eval mode
        stats[1].append((h.mean(0), h.var(0)))
    m = 10
    for bn, layer_stats in zip((model[1], model[5]), stats):
        mean_of_means = np.mean([s[0] for s in layer_stats], axis=0)
        mean_of_vars = np.mean([s[1] for s in layer_stats], axis=0)
        np.testing.assert_allclose(bn.running_mean.numpy(), mean_of_means, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var.numpy(), m / (m - 1) * mean_of_vars,
                                   rtol=1e-12)
        assert bn.momentum == 0.1 and not bn.training
    assert not model.training and not model[3].training


def test_recompute_bn_stats_without_batches_keeps_the_old_ones(rng: np.random.Generator) -> None:
    model = _mlp(rng)
    model(mg.tensor(rng.standard_normal((8, 6))))
    before = {k: v.numpy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="no batches"):
        recompute_bn_stats(model, [])

    def failing_loader() -> Any:
        yield mg.tensor(rng.standard_normal((8, 6)))
        raise OSError("disk gone")

    with pytest.raises(OSError):
        recompute_bn_stats(model, failing_loader())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    assert model.training and model[1].momentum == 0.1


def test_fold_batchnorm(rng: np.random.Generator) -> None:
    model = nn.Sequential(
        BatchNorm2d(2),                                   # first: nothing to fold into
        nn.Conv2d(2, 4, 3, padding=1), BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 3, 3, bias=False), BatchNorm2d(3, affine=False),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 5), BatchNorm1d(5), nn.Dropout(0.3))
    for _ in range(5):  # running statistics away from their initial values
        model(mg.tensor(rng.standard_normal((8, 2, 6, 6)).astype(np.float32) * 2 + 1))
    for i in (0, 2, 8):
        model[i].weight.data[...] = rng.standard_normal(model[i].num_features) + 1
        model[i].bias.data[...] = rng.standard_normal(model[i].num_features)
    model.eval()
    folded = fold_batchnorm(model)
    kinds = [type(m).__name__ for m in folded]
    assert kinds == ["BatchNorm2d", "Conv2d", "Identity", "ReLU", "Conv2d", "Identity",
                     "Flatten", "Linear", "Identity", "Dropout"]
    assert isinstance(model[2], BatchNorm2d)  # the original is untouched
    x = mg.tensor(rng.standard_normal((8, 2, 6, 6)).astype(np.float32))
    expected = model(x).numpy()
    got = folded(x).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_one_value_per_channel_in_training(impl: str, shape: tuple) -> None:
    msg = (f"batch_norm: training needs more than 1 value per channel for the batch "
           f"statistics, but an input of shape {shape} has 1 per channel (its variance would "
           "be 0 and every output beta); use a larger batch, or eval() mode to normalize with "
           "running statistics")
    with pytest.raises(mg.ShapeError) as info:
        batch_norm(mg.zeros(shape), mg.zeros(3), mg.ones(3), impl=impl)
    assert str(info.value) == msg
    module = BatchNorm1d(3, impl=impl) if len(shape) < 4 else BatchNorm2d(3, impl=impl)
    with pytest.raises(ValueError, match=r"^BatchNorm\dd \(3\): training needs more than 1 "
                                         r"value per channel.*has 1 per channel"):
        module(mg.zeros(shape))
    module.eval()  # a batch of one is fine with running statistics
    assert module(mg.ones(shape)).shape == shape


def test_channel_mismatch_names_the_shapes() -> None:
    x = mg.zeros(4, 3)
    with pytest.raises(mg.ShapeError, match=r"running_mean has shape \(5,\), expected \(3,\)"):
        batch_norm(x, mg.zeros(5), mg.ones(5))
    with pytest.raises(mg.ShapeError, match=r"weight has shape \(2,\), expected \(3,\)"):
        batch_norm(x, None, None, weight=mg.ones(2))
    with pytest.raises(mg.ShapeError, match=r"expected an input of shape \(N, 5\) or "
                       r"\(N, 5, L\), got shape \(4, 3\) \(3 channels"):
        BatchNorm1d(5)(x)
    model = nn.Sequential(nn.Linear(4, 3), BatchNorm1d(5))
    with pytest.raises(mg.ShapeError, match=r"BatchNorm1d '1' \(5\)"):
        model(mg.zeros(2, 4))


def test_wrong_rank_names_the_shapes() -> None:
    with pytest.raises(mg.ShapeError, match=r"\(N, 3\) or \(N, 3, L\), got shape "
                       r"\(2, 3, 4, 4\) \(4-D\)"):
        BatchNorm1d(3)(mg.zeros(2, 3, 4, 4))
    with pytest.raises(mg.ShapeError, match=r"\(N, 3, H, W\), got shape \(2, 3, 4\) \(3-D\)"):
        BatchNorm2d(3)(mg.zeros(2, 3, 4))
    with pytest.raises(mg.ShapeError, match=r"got shape \(6,\) \(1-D\)"):
        batch_norm(mg.zeros(6), None, None)


def test_other_bad_arguments() -> None:
    x = mg.zeros(4, 3)
    with pytest.raises(ValueError, match="impl must be one of"):
        batch_norm(x, None, None, impl="fast")
    with pytest.raises(ValueError, match="impl must be one of"):
        BatchNorm1d(3, impl="fast")
    with pytest.raises(ValueError, match="running_mean and running_var must be given"):
        batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match="needs num_batches_tracked"):
        batch_norm(x, mg.zeros(3), mg.ones(3), momentum=None)
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        batch_norm(x, mg.zeros(3), None)
    with pytest.raises(mg.DTypeError, match="floating-point"):
        batch_norm(mg.tensor(np.ones((4, 3), dtype=np.int64)), None, None)
