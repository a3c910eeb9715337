"""Forward mode: every primitive's JVP rule, checked three ways in float64.

For each row of the table below (one op, or one configuration of it), on random
inputs and random tangents ``v``:

* against central finite differences, ``(f(x + h v) - f(x - h v)) / 2h``;
* against the op's own VJP: ``<u, J v> == <J^T u, v>`` for a random ``u``, which
  ties the forward rule to the backward one without any numerics;
* against ``torch.func.jvp`` of the same computation in PyTorch, where the op has a
  PyTorch counterpart.

Inputs stay clear of kinks (relu/abs at 0, ties of max, clip bounds) and of the
domain edges of log/sqrt/pow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.nn._conv import conv2d_input_grad, conv2d_weight_grad
from minigrad.nn._pool import avg_unpool2d, max_gather2d, max_unpool2d
from minigrad.ops import scatter_add, sum_to
from minigrad.distributed import LocalCommunicator, all_gather, all_reduce, broadcast
from minigrad.nn._sync_batchnorm import sync_batch_norm


def normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def nonzero(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def grid(offset: float) -> Callable:
    def make(rng: np.random.Generator, shape: tuple) -> np.ndarray:
        return rng.integers(-3, 3, shape) + offset + rng.uniform(-0.1, 0.1, shape)
    return make


class Case(NamedTuple):
    name: str
    fn: Callable[..., mg.Tensor]  # on minigrad Tensors
    torch_fn: Callable[..., Any] | None  # (torch module, *torch tensors) -> tensor
    inputs: list  # (shape, maker) per differentiated input


N, P, Z = normal, positive, nonzero
IDX = np.array([0, 2, 2, 1])
MASK = np.array([[True, False, True], [False, True, True]])
TARGET = np.array([0, 2, 1, 2])


def _tf(torch: Any) -> Any:
    return torch.nn.functional


def _bn_eval(x: mg.Tensor, w: mg.Tensor, b: mg.Tensor) -> mg.Tensor:
    rm, rv = mg.tensor(np.linspace(-0.5, 0.5, 3)), mg.tensor(np.linspace(0.5, 2.0, 3))
    return F.batch_norm(x, rm, rv, w, b, training=False)


def _pool_sel(x: mg.Tensor, **p: Any) -> tuple:
    """The winners of max pooling (constants for the unpool/gather ops)."""
    with mg.enable_grad():
        rec = mg.tape(F.max_pool2d(x.detach().requires_grad_(), p["kernel"], p["stride"],
                                   p["padding"]))[-1]
    return rec.saved[0], rec.saved[1]


XP = np.random.default_rng(7).standard_normal((2, 2, 4, 4))  # a fixed pooling input


LOCAL = LocalCommunicator()


def _sync_bn(x: mg.Tensor, w: mg.Tensor, b: mg.Tensor) -> mg.Tensor:
    return sync_batch_norm(x, None, None, w, b, comm=LOCAL)


def _dropout(x: mg.Tensor) -> mg.Tensor:
    mg.manual_seed(3)  # the same mask on every call
    return F.dropout(x, 0.4)


CASES = [
    Case("add", lambda a, b: a + b, lambda t, a, b: a + b, [((3, 1), N), ((4,), N)]),
    Case("add_scalar", lambda a: a + 2.0, lambda t, a: a + 2.0, [((3,), N)]),
    Case("sub", lambda a, b: a - b, lambda t, a, b: a - b, [((2, 3), N), ((3,), N)]),
    Case("rsub", lambda a: 1.0 - a, lambda t, a: 1.0 - a, [((3,), N)]),
    Case("mul", lambda a, b: a * b, lambda t, a, b: a * b, [((2, 3), N), ((2, 1), N)]),
    Case("div", lambda a, b: a / b, lambda t, a, b: a / b, [((2, 3), N), ((3,), Z)]),
    Case("rdiv", lambda a: 2.0 / a, lambda t, a: 2.0 / a, [((3,), Z)]),
    Case("neg", lambda a: -a, lambda t, a: -a, [((3,), N)]),
    Case("pow_const", lambda a: a ** 2.5, lambda t, a: a ** 2.5, [((4,), P)]),
    Case("square", lambda a: a ** 2, lambda t, a: a ** 2, [((4,), N)]),
    Case("pow", lambda a, b: a ** b, lambda t, a, b: a ** b, [((3,), P), ((3,), N)]),
    Case("rpow", lambda b: 2.0 ** b, lambda t, b: 2.0 ** b, [((3,), N)]),
    Case("matmul", lambda a, b: a @ b, lambda t, a, b: a @ b, [((2, 3), N), ((3, 4), N)]),
    Case("matmul_batched", lambda a, b: a @ b, lambda t, a, b: a @ b,
         [((2, 2, 3), N), ((3,), N)]),
    Case("matmul_vec", lambda a, b: a @ b, lambda t, a, b: a @ b, [((3,), N), ((3, 2), N)]),
    Case("exp", mg.exp, lambda t, a: a.exp(), [((3,), N)]),
    Case("log", mg.log, lambda t, a: a.log(), [((3,), P)]),
    Case("sqrt", mg.sqrt, lambda t, a: a.sqrt(), [((3,), P)]),
    Case("abs", mg.abs, lambda t, a: a.abs(), [((4,), Z)]),
    Case("tanh", mg.tanh, lambda t, a: a.tanh(), [((4,), N)]),
    Case("sigmoid", mg.sigmoid, lambda t, a: a.sigmoid(), [((4,), N)]),
    Case("relu", mg.relu, lambda t, a: a.relu(), [((4,), Z)]),
    Case("clip", lambda a: mg.clip(a, -0.25, 0.25), lambda t, a: a.clamp(-0.25, 0.25),
         [((6,), grid(0.5))]),
    Case("astype", lambda a: a.astype(mg.float64) * 1.5, lambda t, a: a * 1.5, [((3,), N)]),
    Case("clone", lambda a: a.clone() * a, lambda t, a: a.clone() * a, [((3,), N)]),
    Case("sum_all", lambda a: a.sum(), lambda t, a: a.sum(), [((2, 3), N)]),
    Case("sum_axis", lambda a: a.sum(axis=(0, 2), keepdims=True),
         lambda t, a: a.sum(dim=(0, 2), keepdim=True), [((2, 3, 2), N)]),
    Case("mean", lambda a: a.mean(axis=1), lambda t, a: a.mean(dim=1), [((2, 3), N)]),
    Case("var", lambda a: a.var(axis=0, ddof=1), lambda t, a: a.var(dim=0, unbiased=True),
         [((4, 3), N)]),
    Case("var_all", lambda a: a.var(), lambda t, a: a.var(unbiased=False), [((4, 3), N)]),
    Case("std", lambda a: a.std(axis=1), lambda t, a: a.std(dim=1, unbiased=False),
         [((2, 4), N)]),
    Case("max", lambda a: a.max(axis=1), lambda t, a: a.amax(dim=1), [((3, 4), N)]),
    Case("min_all", lambda a: a.min(), lambda t, a: a.amin(), [((3, 4), N)]),
    Case("reshape", lambda a: a.reshape(3, 2) * 2, lambda t, a: a.reshape(3, 2) * 2,
         [((2, 3), N)]),
    Case("transpose", lambda a: a.transpose(2, 0, 1), lambda t, a: a.permute(2, 0, 1),
         [((2, 3, 4), N)]),
    Case("T", lambda a: a.T, lambda t, a: a.T, [((2, 3), N)]),
    Case("swapaxes", lambda a: a.swapaxes(0, 2), lambda t, a: a.transpose(0, 2),
         [((2, 3, 4), N)]),
    Case("squeeze", lambda a: a.squeeze(1), lambda t, a: a.squeeze(1), [((2, 1, 3), N)]),
    Case("unsqueeze", lambda a: a.unsqueeze(0), lambda t, a: a.unsqueeze(0), [((3,), N)]),
    Case("broadcast_to", lambda a: a.broadcast_to((2, 3)), lambda t, a: a.expand(2, 3),
         [((3,), N)]),
    Case("getitem_slice", lambda a: a[1:, ::2], lambda t, a: a[1:, ::2], [((3, 4), N)]),
    Case("getitem_repeat", lambda a: a[IDX], lambda t, a: a[t.from_numpy(IDX)],
         [((3, 2), N)]),
    Case("getitem_mask", lambda a: a[MASK], lambda t, a: a[t.from_numpy(MASK)],
         [((2, 3), N)]),
    Case("concatenate", lambda a, b: mg.concatenate([a, b, a], axis=1),
         lambda t, a, b: t.cat([a, b, a], dim=1), [((2, 1), N), ((2, 3), N)]),
    Case("stack", lambda a, b: mg.stack([a, b], axis=1), lambda t, a, b: t.stack([a, b], 1),
         [((2, 3), N), ((2, 3), N)]),
    Case("where", lambda a, b: mg.where(MASK, a, b), lambda t, a, b: t.where(
        t.from_numpy(MASK), a, b), [((2, 3), N), ((3,), N)]),
    Case("where_scalar", lambda a: mg.where(MASK, a, 0.5), lambda t, a: t.where(
        t.from_numpy(MASK), a, t.tensor(0.5, dtype=a.dtype)), [((2, 3), N)]),
    Case("maximum", mg.maximum, lambda t, a, b: t.maximum(a, b),
         [((2, 3), grid(0.25)), ((3,), grid(0.75))]),
    Case("minimum", mg.minimum, lambda t, a, b: t.minimum(a, b),
         [((2, 3), grid(0.25)), ((2, 3), grid(0.75))]),
    Case("sum_to", lambda a: sum_to(a, (1, 3)) * 2, lambda t, a: a.sum(0, keepdim=True) * 2,
         [((2, 3), N)]),
    Case("scatter_add", lambda a: scatter_add(a, idx=IDX, shape=(3, 2)),
         lambda t, a: t.zeros(3, 2, dtype=a.dtype).index_add(0, t.from_numpy(IDX), a),
         [((4, 2), N)]),
    Case("softmax", lambda a: F.softmax(a, axis=0), lambda t, a: a.softmax(0), [((3, 4), N)]),
    Case("log_softmax", F.log_softmax, lambda t, a: a.log_softmax(-1),
         [((3, 4), N)]),
    Case("dropout", _dropout, None, [((5, 4), N)]),
    Case("linear", F.linear, lambda t, x, w, b: _tf(t).linear(x, w, b),
         [((4, 3), N), ((2, 3), N), ((2,), N)]),
    Case("linear_3d_nobias", F.linear, lambda t, x, w: _tf(t).linear(x, w),
         [((2, 4, 3), N), ((2, 3), N)]),
    Case("cross_entropy", lambda z: F.cross_entropy(z, TARGET),
         lambda t, z: _tf(t).cross_entropy(z, t.from_numpy(TARGET)), [((4, 3), N)]),
    Case("cross_entropy_sum", lambda z: F.cross_entropy(z, TARGET, reduction="sum"),
         lambda t, z: _tf(t).cross_entropy(z, t.from_numpy(TARGET), reduction="sum"),
         [((4, 3), N)]),
    Case("cross_entropy_none", lambda z: F.cross_entropy(z, TARGET, reduction="none"),
         lambda t, z: _tf(t).cross_entropy(z, t.from_numpy(TARGET), reduction="none"),
         [((4, 3), N)]),
    Case("nll_loss", lambda z: F.nll_loss(F.log_softmax(z), TARGET),
         lambda t, z: _tf(t).nll_loss(z.log_softmax(-1), t.from_numpy(TARGET)), [((4, 3), N)]),
    Case("mse_loss", F.mse_loss, lambda t, a, b: _tf(t).mse_loss(a, b), [((3, 2), N),
                                                                        ((3, 2), N)]),
    Case("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
         lambda t, x, w, b: _tf(t).conv2d(x, w, b, stride=2, padding=1),
         [((2, 2, 5, 5), N), ((3, 2, 3, 3), N), ((3,), N)]),
    Case("conv2d_nobias", F.conv2d, lambda t, x, w: _tf(t).conv2d(x, w),
         [((1, 2, 4, 4), N), ((2, 2, 2, 2), N)]),
    Case("conv2d_input_grad", lambda g, w: conv2d_input_grad(
        g, w, x_shape=(2, 2, 5, 5), stride=(2, 2), padding=(1, 1)),
         lambda t, g, w: _tf(t).conv_transpose2d(g, w, stride=2, padding=1),
         [((2, 3, 3, 3), N), ((3, 2, 3, 3), N)]),
    Case("conv2d_weight_grad", lambda x, g: conv2d_weight_grad(
        x, g, kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
         lambda t, x, g: t.nn.grad.conv2d_weight(x, (3, 2, 3, 3), g, stride=2, padding=1),
         [((2, 2, 5, 5), N), ((2, 3, 3, 3), N)]),
    Case("max_pool2d_tiled", lambda x: F.max_pool2d(x, 2), lambda t, x: _tf(t).max_pool2d(x, 2),
         [((2, 2, 4, 4), N)]),
    Case("max_pool2d_overlap", lambda x: F.max_pool2d(x, 3, stride=2, padding=1),
         lambda t, x: _tf(t).max_pool2d(x, 3, stride=2, padding=1), [((2, 2, 5, 5), N)]),
    Case("max_unpool2d", lambda g: max_unpool2d(
        g, *_pool_sel(mg.tensor(XP), kernel=(3, 3), stride=(1, 1), padding=(1, 1)),
        x_shape=XP.shape, kernel=(3, 3), stride=(1, 1), padding=(1, 1)), None,
         [((2, 2, 4, 4), N)]),
    Case("max_gather2d", lambda v: max_gather2d(
        v, *_pool_sel(mg.tensor(XP), kernel=(2, 2), stride=(2, 2), padding=(0, 0)),
        kernel=(2, 2), stride=(2, 2), padding=(0, 0)), None, [((2, 2, 4, 4), N)]),
    Case("avg_pool2d_tiled", lambda x: F.avg_pool2d(x, 2), lambda t, x: _tf(t).avg_pool2d(x, 2),
         [((2, 2, 4, 4), N)]),
    Case("avg_pool2d_overlap", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1),
         lambda t, x: _tf(t).avg_pool2d(x, 3, stride=2, padding=1), [((1, 2, 5, 5), N)]),
    Case("avg_unpool2d", lambda g: avg_unpool2d(g, x_shape=(1, 2, 5, 5), kernel=(3, 3),
                                                stride=(2, 2), padding=(1, 1)), None,
         [((1, 2, 3, 3), N)]),
    Case("batch_norm_train", lambda x, w, b: F.batch_norm(x, None, None, w, b),
         lambda t, x, w, b: _tf(t).batch_norm(x, None, None, w, b, training=True),
         [((6, 3), N), ((3,), N), ((3,), N)]),
    Case("batch_norm_train_4d_noaffine", lambda x: F.batch_norm(x, None, None),
         lambda t, x: _tf(t).batch_norm(x, None, None, training=True), [((2, 3, 2, 2), N)]),
    Case("batch_norm_eval", _bn_eval, lambda t, x, w, b: _tf(t).batch_norm(
        x, t.linspace(-0.5, 0.5, 3, dtype=x.dtype), t.linspace(0.5, 2.0, 3, dtype=x.dtype),
        w, b, training=False), [((2, 3, 2), N), ((3,), N), ((3,), N)]),
    Case("batch_norm_composed", lambda x, w, b: F.batch_norm(x, None, None, w, b,
                                                             impl="composed"),
         lambda t, x, w, b: _tf(t).batch_norm(x, None, None, w, b, training=True),
         [((5, 2), N), ((2,), N), ((2,), N)]),
    # The distributed primitives, in a world of one process
    Case("sync_batch_norm", _sync_bn,
         lambda t, x, w, b: _tf(t).batch_norm(x, None, None, w, b, training=True),
         [((4, 3, 2), N), ((3,), N), ((3,), N)]),
    Case("all_reduce", lambda x: all_reduce(x, "mean", LOCAL), lambda t, x: x, [((2, 3), N)]),
    Case("all_gather", lambda x: all_gather(x, LOCAL), lambda t, x: x[None], [((3,), N)]),
    Case("broadcast", lambda x: broadcast(x, 0, LOCAL), lambda t, x: x, [((3,), N)]),
]


def draw(case: Case, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    xs = [make(rng, shape) for shape, make in case.inputs]
    vs = [rng.standard_normal(shape) for shape, _ in case.inputs]
    return xs, vs


def run(case: Case, xs: list) -> np.ndarray:
    return case.fn(*[mg.tensor(x) for x in xs]).numpy()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_jvp_matches_finite_differences(case: Case) -> None:
    xs, vs = draw(case)
    y, t = mg.jvp(case.fn, tuple(mg.tensor(x) for x in xs), tuple(vs))
    np.testing.assert_allclose(y.numpy(), run(case, xs), rtol=1e-12, atol=1e-12)
    h = 1e-6
    plus = run(case, [x + h * v for x, v in zip(xs, vs)])
    minus = run(case, [x - h * v for x, v in zip(xs, vs)])
    np.testing.assert_allclose(t.numpy(), (plus - minus) / (2 * h), rtol=1e-5, atol=1e-6)
    assert t.shape == y.shape and t.dtype == y.dtype


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_jvp_is_the_transpose_of_the_vjp(case: Case) -> None:
    """<u, J v> = <J^T u, v>: the forward rule and the backward rule are one Jacobian."""
    xs, vs = draw(case, seed=1)
    _, jv = mg.jvp(case.fn, tuple(mg.tensor(x) for x in xs), tuple(vs))
    y, vjp_fn = mg.vjp(case.fn, *[mg.tensor(x) for x in xs])
    u = np.random.default_rng(2).standard_normal(y.shape)
    jtu = vjp_fn(mg.tensor(u))
    lhs = float(np.sum(u * jv.numpy()))
    rhs = sum(float(np.sum(g.numpy() * v)) for g, v in zip(jtu, vs))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-12)


TORCH_CASES = [c for c in CASES if c.torch_fn is not None]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[c.name for c in TORCH_CASES])
def test_jvp_matches_torch_func_jvp(torch: Any, case: Case) -> None:
    xs, vs = draw(case, seed=3)
    _, t = mg.jvp(case.fn, tuple(mg.tensor(x) for x in xs), tuple(vs))
    want = torch.func.jvp(lambda *a: case.torch_fn(torch, *a),
                          tuple(torch.tensor(x) for x in xs), tuple(torch.tensor(v) for v in vs))
    np.testing.assert_allclose(t.numpy(), want[1].numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- the transform itself
def test_jvp_records_nothing_and_leaves_inputs_alone() -> None:
    w = mg.tensor(np.ones((3, 2)), requires_grad=True)
    x = mg.tensor(np.arange(3.0), requires_grad=True)
    y, t = mg.jvp(lambda x: (x @ w).tanh(), (x,), (np.ones(3),))
    assert y.grad_fn is None and t.grad_fn is None and not y.requires_grad
    assert x.grad_fn is None and x.grad is None
    # w was not a primal: its tangent is zero, so J v = (1 - y^2) * (v @ w)
    np.testing.assert_allclose(t.numpy(), (1 - y.numpy() ** 2) * (np.ones(3) @ w.numpy()))


def test_jvp_of_several_inputs_and_outputs_and_a_none_like_zero_tangent() -> None:
    a, b = mg.tensor(np.array([1.0, 2.0])), mg.tensor(np.array([3.0, -1.0]))
    (s, p), (ts, tp) = mg.jvp(lambda a, b: (a + b, a * b), (a, b),
                              (np.array([1.0, 0.0]), np.zeros(2)))
    np.testing.assert_array_equal(ts.numpy(), [1.0, 0.0])
    np.testing.assert_array_equal(tp.numpy(), [3.0, 0.0])
    # an output that does not depend on the primals gets a zero tangent
    _, t = mg.jvp(lambda a: mg.tensor(np.ones(2)), (a,), (np.ones(2),))
    np.testing.assert_array_equal(t.numpy(), [0.0, 0.0])


def test_jvp_in_float32_keeps_the_dtype() -> None:
    x = mg.tensor([1.0, 2.0])
    y, t = mg.jvp(lambda x: (x * x).exp(), (x,), (mg.tensor([1.0, 1.0]),))
    assert t.dtype == np.float32
    np.testing.assert_allclose(t.numpy(), 2 * x.numpy() * np.exp(x.numpy() ** 2), rtol=1e-6)


def test_a_user_function_with_a_jvp_rule() -> None:
    class Cube(mg.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return 3 * x ** 2 * g

        @staticmethod
        def jvp(ctx: Any, t: Any) -> Any:
            (x,) = ctx.saved
            return 3 * x ** 2 * t

    _, t = mg.jvp(lambda x: Cube.apply(x).sum(), (mg.tensor(np.array([1.0, 2.0])),),
                  (np.array([1.0, 1.0]),))
    assert t.item() == 15.0


def test_a_user_function_without_a_jvp_rule_is_named_in_the_error() -> None:
    class Square(mg.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            return x * x

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            raise AssertionError

    with pytest.raises(mg.GraphError, match="square: this op has no forward-mode rule"):
        mg.jvp(Square.apply, (mg.tensor([1.0]),), (mg.tensor([1.0]),))
    # without a tangent flowing in, the op needs no rule
    _, t = mg.jvp(lambda x: x + Square.apply(mg.tensor([2.0])), (mg.tensor([1.0]),),
                  (mg.tensor([1.0]),))
    assert t.item() == 1.0


def test_jvp_bad_input_errors() -> None:
    x = mg.tensor([1.0, 2.0])
    with pytest.raises(mg.ShapeError, match="tangent 0 has shape"):
        mg.jvp(lambda x: x, (x,), (np.ones(3),))
    with pytest.raises(mg.ShapeError, match="1 primal"):
        mg.jvp(lambda x: x, (x,), (np.ones(2), np.ones(2)))
    with pytest.raises(mg.DTypeError, match="floating-point"):
        mg.jvp(lambda x: x, (mg.tensor([1, 2]),), (np.ones(2),))
    with pytest.raises(mg.GraphError, match="cannot be nested"):
        mg.jvp(lambda x: mg.jvp(lambda y: y, (x,), (x,))[0], (x,), (x,))


def test_forward_mode_is_off_after_an_error() -> None:
    with pytest.raises(ZeroDivisionError):
        mg.jvp(lambda x: 1 / 0, (mg.tensor([1.0]),), (mg.tensor([1.0]),))
    from minigrad.autograd import function as fn_mod

    assert fn_mod._special[0] == 0 and fn_mod._local.tangents is None


def test_a_none_tangent_leaves_that_primal_out() -> None:
    a, b = mg.tensor(np.array([1.0, 2.0])), mg.tensor(np.array([3.0, -1.0]))
    _, t = mg.jvp(lambda a, b: a * b, (a, b), (None, np.ones(2)))
    np.testing.assert_array_equal(t.numpy(), a.numpy())


def test_an_in_place_change_of_a_tensor_with_a_tangent_is_refused() -> None:
    def f(x: mg.Tensor) -> mg.Tensor:
        y = x * 2
        y *= 3
        return y

    with pytest.raises(mg.GraphError, match="carries a tangent"):
        mg.jvp(f, (mg.tensor([1.0]),), (mg.tensor([1.0]),))
    # a tensor without a tangent may change, and outside mg.jvp nothing is refused
    y, t = mg.jvp(lambda x: x + mg.tensor([1.0]).fill_(2.0), (mg.tensor([1.0]),),
                  (mg.tensor([1.0]),))
    assert y.item() == 3.0 and t.item() == 1.0
    assert f(mg.tensor([1.0])).item() == 6.0


def _subclasses(cls: type) -> list:
    out = []
    for s in cls.__subclasses__():
        out += [s, *_subclasses(s)]
    return out


def test_every_primitive_has_a_jvp_rule_and_a_row_in_the_table() -> None:
    from minigrad.autograd.checkpoint import Checkpoint
    from minigrad.ops.unary import Pointwise

    prims = [c for c in _subclasses(mg.Function) if c.__module__.startswith("minigrad.")
             and c not in (Pointwise, Checkpoint)]
    assert [c.__name__ for c in prims if c.jvp is None] == []
    exercised = set()
    for case in CASES:
        xs, _ = draw(case)
        y = case.fn(*[mg.tensor(x, requires_grad=True) for x in xs])
        exercised |= {r.name for r in mg.tape(y)}
    names = {c.op_name or c.__name__.lower() for c in prims if c.op_name}
    assert names - exercised == {"to"}  # a copy between devices: tests/test_cuda.py


def test_forward_mode_is_per_thread() -> None:
    import threading

    seen = {}

    def other() -> None:  # runs while the main thread is inside mg.jvp
        w = mg.tensor(np.array([2.0]), requires_grad=True)
        y = (w * 3).tanh()
        y.backward()
        seen["grad"] = w.grad.item()
        seen["tangent"] = getattr(y, "_tangent", None)

    def fn(x: mg.Tensor) -> mg.Tensor:
        t = threading.Thread(target=other)
        t.start()
        t.join()
        return x * 2

    _, tan = mg.jvp(fn, (mg.tensor([1.0]),), (mg.tensor([1.0]),))
    assert tan.item() == 2.0
    assert seen["grad"] == pytest.approx(3 * (1 - np.tanh(6.0) ** 2))
    assert seen["tangent"] is None


# ----------------------------------------------------------------- broadcasting, drawn
BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / (b * b + 1.0), "maximum": mg.maximum,
          "where": lambda a, b: mg.where(a > b, a * b, b)}


@settings(max_examples=25, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       name=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**32 - 1))
def test_binary_jvps_with_broadcasting_match_their_vjps(shapes: Any, name: str,
                                                         seed: int) -> None:
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(s) for s in shapes.input_shapes]
    vs = [rng.standard_normal(s) for s in shapes.input_shapes]
    fn = BINARY[name]
    y, jv = mg.jvp(fn, tuple(mg.tensor(x) for x in xs), tuple(vs))
    assert jv.shape == y.shape == shapes.result_shape
    _, vjp_fn = mg.vjp(fn, *[mg.tensor(x) for x in xs])
    u = rng.standard_normal(y.shape)
    jtu = vjp_fn(mg.tensor(u))
    assert float(np.sum(u * jv.numpy())) == pytest.approx(
        sum(float(np.sum(g.numpy() * v)) for g, v in zip(jtu, vs)), rel=1e-9, abs=1e-12)


def test_a_jvp_rule_returning_one_tangent_per_input_is_named() -> None:
    class Two(mg.Function):
        @staticmethod
        def forward(ctx: Any, a: Any, b: Any) -> Any:
            return a * b

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g, g

        @staticmethod
        def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
            return ta, tb  # wrong: one tangent per output is wanted

    a = mg.tensor(np.ones((3, 4)))
    with pytest.raises(mg.GraphError, match=r"two\.jvp returned 2 tangent\(s\) but the op has 1"):
        mg.jvp(Two.apply, (a, a), (a, a))
