"""The GPU path: every computation on ``cuda`` against the same one on ``cpu``.

Tests marked ``cuda`` need CuPy and a GPU and skip without them (``pytest --device
cuda -m cuda`` runs them; see docs/gpu.md). The first tests run everywhere: they check,
with NumPy, the index arithmetic that the fused BatchNorm kernels of
``minigrad/nn/_bn_cuda.py`` rely on, by evaluating the very C expressions the kernels
are built from.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import backend, nn
from minigrad.data import DataLoader, TensorDataset
from minigrad.nn import _bn_cuda
from minigrad.nn import batchnorm as bn_mod

# ====================================================================== CPU: index arithmetic


def c_eval(name: str, **values: Any) -> Any:
    """Evaluate the kernels' C expression ``_bn_cuda.INDEX[name]`` on non-negative integers.

    C's ``/`` on integers truncates; for the non-negative values here that is ``//``.
    """
    expr = _bn_cuda.INDEX[name].replace("/", "//")
    env = {"BLOCK_X": _bn_cuda.BLOCK_X, "BLOCK_Y": _bn_cuda.BLOCK_Y, **values}
    return eval(expr, {"__builtins__": {}}, env)  # noqa: S307 - our own constant strings


SHAPES = [(5, 3), (2, 3, 4), (2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 1, 7), (4096, 3),
          (300, 5, 3), (2, 64, 7, 7)]


@pytest.mark.parametrize("shape", SHAPES)
def test_elementwise_channel_formula(shape: tuple) -> None:
    rows, channels, inner = _bn_cuda.geometry(shape)
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    got = c_eval("channel_of_element", i=i, inner=inner, channels=channels)
    np.testing.assert_array_equal(got, np.indices(shape)[1].reshape(-1))


def emulate_partials(x: np.ndarray, sm_count: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Every thread of the partial-sum kernel, in NumPy: the shifted sums it writes.

    Returns the partial sums (gy rows of width columns, first half only), gy, and how
    many times each element of ``x`` was read.
    """
    rows, channels, inner = _bn_cuda.geometry(x.shape)
    width = channels * inner
    gx, gy = _bn_cuda.partial_grid(rows, width, sm_count)
    flat = x.reshape(-1)
    bx, by, tx, ty = np.meshgrid(np.arange(gx), np.arange(gy), np.arange(_bn_cuda.BLOCK_X),
                                 np.arange(_bn_cuda.BLOCK_Y), indexing="ij")
    col = c_eval("column", bx=bx, tx=tx)
    inside = col < width
    shift = np.where(inside, flat[np.where(inside, c_eval("shift_index", col=col, inner=inner),
                                           0)], 0)
    first = c_eval("first_row", by=by, ty=ty)
    step = c_eval("row_step", gy=gy)
    reads = np.zeros(flat.size, np.int64)
    acc = np.zeros(col.shape)
    for k in range(-(-rows // step) + 1):
        row = first + k * step
        live = inside & (row < rows)
        at = c_eval("element", row=row, width=width, col=col)
        np.add.at(reads, at[live], 1)
        acc += np.where(live, flat[np.where(live, at, 0)] - shift, 0)
    # the tree over ty adds a column's BLOCK_Y sums; thread ty == 0 writes them
    sums = acc.sum(axis=3)
    partials = np.full(gy * width, np.nan)
    written = np.zeros(gy * width, np.int64)
    out = c_eval("partial_out", by=by[..., 0], width=width, col=col[..., 0])
    ok = inside[..., 0]
    np.add.at(written, out[ok], 1)
    partials[out[ok]] = sums[ok]
    assert (written == 1).all(), "every partial sum is written exactly once"
    return partials, gy, reads


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sm_count", [1, 132])
def test_partial_and_finish_kernels_visit_every_element_once(shape: tuple,
                                                             sm_count: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) + 3.0
    partials, gy, reads = emulate_partials(x, sm_count)
    np.testing.assert_array_equal(reads, 1)
    rows, channels, inner = _bn_cuda.geometry(shape)
    width = channels * inner
    # the finish kernel: channel c adds its gy * inner partial sums
    axes = (0, *range(2, x.ndim))
    first = x.reshape(rows, channels, inner)[0, :, 0]
    want = (x - first.reshape((1, -1) + (1,) * (x.ndim - 2))).sum(axis=axes)
    for c in range(channels):
        t = np.arange(gy * inner)
        at = c_eval("partial_in", t=t, inner=inner, width=width, c=c)
        assert len(set(at.tolist())) == at.size
        np.testing.assert_allclose(partials[at].sum(), want[c], rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
def test_column_channel_and_shift_formulas(shape: tuple) -> None:
    rows, channels, inner = _bn_cuda.geometry(shape)
    col = np.arange(channels * inner)
    channel = np.indices(shape)[1].reshape(rows, -1)[0]
    np.testing.assert_array_equal(c_eval("channel_of_column", col=col, inner=inner), channel)
    x = np.arange(int(np.prod(shape))).reshape(shape)
    shift = x.reshape(-1)[c_eval("shift_index", col=col, inner=inner)]
    np.testing.assert_array_equal(shift, x.reshape(rows, channels, inner)[0, channel, 0])


@pytest.mark.parametrize("rows,width", [(1, 1), (60, 100), (4096, 4096), (256, 200704),
                                        (10**6, 4), (2, 10**6)])
def test_partial_grid_covers_the_matrix(rows: int, width: int) -> None:
    for sm in (1, 80, 132):
        gx, gy = _bn_cuda.partial_grid(rows, width, sm)
        assert gx * _bn_cuda.BLOCK_X >= width > (gx - 1) * _bn_cuda.BLOCK_X
        assert 1 <= gy <= 65535
        if gy > 1:  # rows are split only while each thread keeps enough of them
            assert rows / (gy * _bn_cuda.BLOCK_Y) > _bn_cuda.MIN_ROWS_PER_THREAD / 2


def test_cuda_source_is_complete() -> None:
    for ctype in ("float", "double"):
        src = _bn_cuda.cuda_source(ctype)
        elementwise = _bn_cuda._fill(_bn_cuda._AFFINE) + _bn_cuda._fill(_bn_cuda._DX)
        for key, expr in _bn_cuda.INDEX.items():
            assert "{" + key + "}" not in src + elementwise
            assert f"({expr})" in src + elementwise
        for name in ("bn_stats_partials", "bn_grad_partials", "bn_stats_finish",
                     "bn_grad_finish"):
            assert f"void {name}(" in src
        for placeholder in ("NAME", "ARGS", "PROLOGUE", "BODY"):
            assert placeholder not in src
        assert f"typedef {ctype} T;" in src
        assert src.count("{") == src.count("}")


def test_importing_minigrad_does_not_import_cupy() -> None:
    code = ("import sys, minigrad, minigrad.nn, minigrad.nn.functional; "
            "print('cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_max_pool_with_many_candidates_on_cpu() -> None:
    """3x3 windows take the many-candidates path (``where``, not a masked write)."""
    x = np.array([[[[1, 5, 2, 0], [3, 5, 9, 1], [4, 2, 9, 8], [0, 1, 2, 3]]]], np.float64)
    t = mg.tensor(x, requires_grad=True)
    y = F.max_pool2d(t, 3, stride=1)
    np.testing.assert_array_equal(y.numpy(), [[[[9, 9], [9, 9]]]])
    y.sum().backward()
    want = np.zeros_like(x)
    want[0, 0, 1, 2] = 4  # the first 9 in row-major order wins all four windows
    np.testing.assert_array_equal(t.grad.numpy(), want)


# ====================================================================== GPU
gpu = pytest.mark.cuda


@pytest.fixture(scope="module")
def cp() -> Any:
    """CuPy, or a skip that says why it is not usable here."""
    if not mg.cuda_available():
        # the backend's message says why, in its first parentheses
        why = (backend._cupy_error or "").split("(", 1)[-1].split(")", 1)[0]
        pytest.skip(f"needs CuPy and a CUDA GPU ({why}); on a GPU machine run "
                    "`pytest --device cuda -m cuda`")
    return backend._cupy


F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]


def assert_close(got: Any, want: Any, dtype: Any, what: str = "", loose: float = 1.0) -> None:
    """Equal to rounding: relative to the values' size, for float32 or float64."""
    got = got.numpy() if isinstance(got, mg.Tensor) else np.asarray(got)
    want = want.numpy() if isinstance(want, mg.Tensor) else np.asarray(want)
    assert got.shape == want.shape, what
    rtol = (2e-4 if np.dtype(dtype) == F32 else 1e-10) * loose
    atol = rtol * max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got.astype(F64), want.astype(F64), rtol=rtol, atol=atol,
                               err_msg=what)


def run_both(fn: Callable[..., mg.Tensor], arrays: list[np.ndarray], dtype: Any,
             what: str) -> None:
    """``fn`` forward and backward on cpu and on cuda, from the same data; compare all."""
    rng = np.random.default_rng(7)
    results = {}
    weight = None
    for dev in ("cpu", "cuda"):
        xs = [mg.tensor(a, device=dev, requires_grad=True) for a in arrays]
        y = fn(*xs)
        assert y.device == dev, what
        if weight is None:
            weight = np.asarray(rng.standard_normal(y.shape)).astype(dtype)
        (y * mg.tensor(weight, device=dev)).sum().backward()
        results[dev] = [y] + [x.grad for x in xs]
    for k, (a, b) in enumerate(zip(results["cuda"], results["cpu"])):
        assert a is not None and b is not None, f"{what}: no gradient {k}"
        assert a.device == "cuda", what
        assert_close(a, b, dtype, f"{what} (output 0, then the gradients: {k})")


def normal(shape: tuple, dtype: Any, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def positive(shape: tuple, dtype: Any, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(dtype)


UNARY: dict[str, tuple[Callable, Callable]] = {
    "neg": (lambda a: -a, normal),
    "exp": (mg.exp, normal),
    "log": (mg.log, positive),
    "sqrt": (mg.sqrt, positive),
    "abs": (mg.abs, normal),
    "tanh": (mg.tanh, normal),
    "sigmoid": (mg.sigmoid, normal),
    "relu": (mg.relu, normal),
    "clip": (lambda a: mg.clip(a, -0.5, 0.7), normal),
    "clip_low": (lambda a: a.clip(a_min=-0.3), normal),
    "pow_const": (lambda a: a ** 3, normal),
    "astype": (lambda a: a.astype(mg.float64).astype(a.dtype) * 2, normal),
    "sum": (lambda a: a.sum(), normal),
    "sum_axes": (lambda a: a.sum(axis=(0, 2), keepdims=True), normal),
    "mean": (lambda a: a.mean(axis=1), normal),
    "var": (lambda a: a.var(axis=0, ddof=1), normal),
    "std": (lambda a: a.std(axis=-1), normal),
    "max": (lambda a: a.max(axis=1), normal),
    "min": (lambda a: a.min(), normal),
    "reshape": (lambda a: a.reshape(4, -1), normal),
    "transpose": (lambda a: a.transpose(2, 0, 1), normal),
    "swapaxes": (lambda a: a.swapaxes(0, 2), normal),
    "unsqueeze_squeeze": (lambda a: a.unsqueeze(1).squeeze(1), normal),
    "flatten": (lambda a: a.flatten(1), normal),
    "slices": (lambda a: a[1:, ::2, -1], normal),
    "softmax": (lambda a: F.softmax(a, axis=1), normal),
    "log_softmax": (lambda a: F.log_softmax(a, axis=-1), normal),
}

BINARY: dict[str, tuple[Callable, Callable]] = {
    "add": (lambda a, b: a + b, normal),
    "sub": (lambda a, b: a - b, normal),
    "mul": (lambda a, b: a * b, normal),
    "div": (lambda a, b: a / b, positive),
    "pow": (lambda a, b: a ** b, positive),
    "maximum": (mg.maximum, normal),
    "minimum": (mg.minimum, normal),
    "where": (lambda a, b: mg.where(a > 0, a, b), normal),
}

BROADCASTS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 4)), ((2, 1, 4), (3, 1)),
              ((), (3,)), ((2, 3, 4), (2, 1, 1))]


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_ops_match_cpu(cp: Any, name: str, dtype: Any) -> None:
    fn, draw = UNARY[name]
    run_both(fn, [draw((3, 4, 5), dtype)], dtype, name)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_ops_match_cpu_with_broadcasting(cp: Any, name: str, shapes: tuple,
                                                dtype: Any) -> None:
    fn, draw = BINARY[name]
    run_both(fn, [draw(shapes[0], dtype, 1), draw(shapes[1], dtype, 2)], dtype, name)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((4,), (4, 3)),
                                    ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4,))], ids=str)
def test_matmul_matches_cpu(cp: Any, shapes: tuple, dtype: Any) -> None:
    run_both(mg.matmul, [normal(shapes[0], dtype, 1), normal(shapes[1], dtype, 2)], dtype,
             "matmul")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_joining_and_broadcast_to_match_cpu(cp: Any, dtype: Any) -> None:
    a, b = normal((2, 3), dtype, 1), normal((2, 3), dtype, 2)
    run_both(lambda x, y: mg.concatenate([x, y, x], axis=1), [a, b], dtype, "concatenate")
    run_both(lambda x, y: mg.stack([x, y], axis=0), [a, b], dtype, "stack")
    run_both(lambda x: x.broadcast_to((4, 3, 1)), [normal((3, 1), dtype)], dtype,
             "broadcast_to")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_repeated_indices_accumulate_gradients(cp: Any, dtype: Any) -> None:
    a = normal((5, 4), dtype)
    rows, cols = np.array([0, 2, 2, 4, 0, 2]), np.array([1, 1, 1, 3, 0, 1])
    for what, index in (("rows", lambda dev: mg.tensor(rows, device=dev)),
                        ("pairs", lambda dev: (mg.tensor(rows, device=dev),
                                               mg.tensor(cols, device=dev))),
                        ("list", lambda dev: [3, 3, 1])):
        grads = {}
        for dev in ("cpu", "cuda"):
            x = mg.tensor(a, device=dev, requires_grad=True)
            y = x[index(dev)]
            (y * y).sum().backward()
            grads[dev] = x.grad
        assert_close(grads["cuda"], grads["cpu"], dtype, what)
    x = mg.tensor(a, device="cuda", requires_grad=True)
    x[mg.tensor(rows, device="cuda")].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[:, 0], [2, 0, 3, 0, 1])  # counts of rows


@gpu
def test_boolean_mask_indexing_matches_cpu(cp: Any) -> None:
    run_both(lambda x: x[x > 0] * 2, [normal((4, 5), F64)], F64, "mask")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride,padding,bias", [(1, 0, True), (2, 1, False), ((1, 2), (2, 1),
                                                                              True)])
def test_conv2d_matches_cpu(cp: Any, stride: Any, padding: Any, bias: bool, dtype: Any) -> None:
    arrays = [normal((2, 3, 7, 6), dtype, 1), normal((4, 3, 3, 2), dtype, 2)]
    if bias:
        arrays.append(normal((4,), dtype, 3))
    run_both(lambda *t: F.conv2d(*t, stride=stride, padding=padding), arrays, dtype, "conv2d")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), (3, 1, 0),
                                                   ((2, 3), (1, 2), (1, 1))])
def test_pooling_matches_cpu(cp: Any, kernel: Any, stride: Any, padding: Any,
                             dtype: Any) -> None:
    x = normal((2, 3, 8, 8), dtype)
    run_both(lambda t: F.max_pool2d(t, kernel, stride, padding), [x], dtype, "max_pool2d")
    run_both(lambda t: F.avg_pool2d(t, kernel, stride, padding), [x], dtype, "avg_pool2d")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_cpu(cp: Any, reduction: str, dtype: Any) -> None:
    labels = np.array([0, 3, 3, 1, 2, 0])
    logits = normal((6, 4), dtype)
    for name, loss in (("cross_entropy", F.cross_entropy), ("nll_loss", F.nll_loss)):
        for target in ("device", "host"):
            def fn(z: mg.Tensor, loss: Callable = loss, target: str = target) -> mg.Tensor:
                t = mg.tensor(labels, device=z.device) if target == "device" else labels
                inp = z if loss is F.cross_entropy else F.log_softmax(z, axis=1)
                out = loss(inp, t, reduction=reduction)
                return out.reshape(1) if out.ndim == 0 else out
            run_both(fn, [logits], dtype, f"{name} ({target} labels)")
    run_both(lambda a, b: F.mse_loss(a, b, reduction=reduction).reshape(-1),
             [normal((3, 4), dtype, 1), normal((3, 4), dtype, 2)], dtype, "mse_loss")


@gpu
@pytest.mark.parametrize("fn,shapes", [
    (lambda a, b: (a @ b).tanh(), [(2, 3), (3, 2)]),
    (lambda x, w: F.conv2d(x, w, padding=1), [(1, 2, 3, 3), (2, 2, 2, 2)]),
    (lambda x: F.max_pool2d(x, 3, 2, 1), [(1, 1, 4, 4)]),
    (lambda z: F.cross_entropy(z, mg.tensor([1, 0, 2], device=z.device)), [(3, 3)]),
    (lambda x, w, b: bn_mod.batch_norm(x, None, None, w, b), [(4, 2, 3), (2,), (2,)]),
    (lambda x: (x.var(axis=0) + x.max(axis=1).sum()).sqrt(), [(3, 3)]),
], ids=["matmul_tanh", "conv2d", "max_pool2d", "cross_entropy", "batch_norm", "var_max"])
def test_gradcheck_in_float64_on_the_device(cp: Any, fn: Callable, shapes: list) -> None:
    inputs = [mg.tensor(positive(s, F64, k), device="cuda", requires_grad=True)
              for k, s in enumerate(shapes)]
    assert mg.gradcheck(fn, inputs)


@gpu
def test_manual_seed_is_reproducible_on_cuda(cp: Any) -> None:
    def draw() -> list[np.ndarray]:
        return [mg.randn(3, 4, device="cuda").numpy(), mg.rand(5, device="cuda").numpy(),
                nn.Linear(4, 3, device="cuda").weight.numpy(),
                F.dropout(mg.ones(100, device="cuda"), 0.5).numpy()]
    mg.manual_seed(42)
    first = draw()
    mg.manual_seed(42)
    again = draw()
    mg.manual_seed(43)
    other = draw()
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    kept = first[3]
    assert set(np.unique(kept)) <= {0.0, 2.0} and 20 < (kept == 0).sum() < 80


@gpu
def test_dataloader_moves_batches_to_the_device(cp: Any) -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.arange(10) % 3
    host = list(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=3))
    moved = list(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=3,
                            device="cuda"))
    on_gpu = list(DataLoader(TensorDataset(mg.tensor(x, device="cuda"),
                                           mg.tensor(y, device="cuda")),
                             batch_size=4, shuffle=True, seed=3))
    assert len(host) == len(moved) == len(on_gpu) == 3
    for (hx, hy), (mx, my), (gx, gy) in zip(host, moved, on_gpu):
        assert mx.device == my.device == gx.device == gy.device == "cuda"
        for a, b in ((mx, hx), (my, hy), (gx, hx), (gy, hy)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
            assert a.dtype == b.dtype


# ---------------------------------------------------------------------- BatchNorm
BN_SHAPES = [(6, 5), (4, 3, 7), (3, 4, 5, 6), (4096, 3), (8, 64, 14, 14)]


def bn_data(shape: tuple, dtype: Any, offset: float = 0.5) -> dict:
    rng = np.random.default_rng(11)
    c = shape[1]
    return {"x": (rng.standard_normal(shape) * 2 + offset).astype(dtype),
            "dy": rng.standard_normal(shape).astype(dtype),
            "w": (rng.standard_normal(c) + 1).astype(dtype),
            "b": rng.standard_normal(c).astype(dtype),
            "rm": rng.standard_normal(c).astype(dtype),
            "rv": rng.uniform(0.5, 2, c).astype(dtype)}


def bn_run(d: dict, dev: str, impl: str, training: bool, affine: bool,
           momentum: float | None = 0.1) -> list[np.ndarray]:
    x = mg.tensor(d["x"], device=dev, requires_grad=True)
    w = mg.tensor(d["w"], device=dev, requires_grad=True) if affine else None
    b = mg.tensor(d["b"], device=dev, requires_grad=True) if affine else None
    rm, rv = mg.tensor(d["rm"], device=dev), mg.tensor(d["rv"], device=dev)
    count = mg.tensor(np.array(2, np.int64), device=dev)
    y = bn_mod.batch_norm(x, rm, rv, w, b, training=training, momentum=momentum, impl=impl,
                          num_batches_tracked=count)
    y.backward(mg.tensor(d["dy"], device=dev))
    out = [y, x.grad, rm, rv, count]
    if affine:
        out += [w.grad, b.grad]
    assert all(t.device == dev for t in out)
    return [t.numpy() for t in out]


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_on_cuda_matches_cpu(cp: Any, shape: tuple, training: bool, affine: bool,
                                        dtype: Any) -> None:
    d = bn_data(shape, dtype)
    want = bn_run(d, "cpu", "fused", training, affine)
    for impl in ("fused", "composed"):
        got = bn_run(d, "cuda", impl, training, affine)
        for k, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, dtype, f"{impl}: y, dx, rm, rv, count, dgamma, dbeta [{k}]",
                         loose=5.0)


@gpu
@pytest.mark.parametrize("shape", [(256, 3), (8, 4, 6, 5)], ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_float16_batch_norm_on_cuda_matches_cpu(cp: Any, shape: tuple, training: bool,
                                                impl: str) -> None:
    """float16 data (float32 parameters) is normalized in float32 on the GPU too; a spread
    of 30 overflows a float16 sum of squares."""
    d = bn_data(shape, F32)
    d["x"] = (d["x"] * 15).astype(np.float16)
    d["dy"] = d["dy"].astype(np.float16)
    want = bn_run(d, "cpu", impl, training, True)
    got = bn_run(d, "cuda", impl, training, True)
    assert got[0].dtype == got[1].dtype == np.float16 and got[3].dtype == F32
    for k, (g, w) in enumerate(zip(got, want)):
        assert np.isfinite(g).all(), k
        np.testing.assert_allclose(g.astype(F64), w.astype(F64), rtol=2e-3,
                                   atol=2e-3 * max(1.0, float(np.abs(w).max())),
                                   err_msg=f"{impl}: y, dx, rm, rv, count, dgamma, dbeta [{k}]")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_cumulative_average_on_cuda(cp: Any, dtype: Any) -> None:
    d = bn_data((5, 3, 4), dtype)
    for impl in ("fused", "composed"):
        got, want = (bn_run(d, dev, impl, True, True, momentum=None) for dev in ("cuda", "cpu"))
        for g, w in zip(got, want):
            assert_close(g, w, dtype, f"{impl}, momentum=None")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_kernels_handle_a_large_offset(cp: Any, dtype: Any) -> None:
    """Shifted sums: an offset of 1000 standard deviations costs no accuracy."""
    d = bn_data((64, 8, 6, 6), dtype, offset=2000.0)
    exact = bn_run({k: v.astype(F64) for k, v in d.items()}, "cpu", "fused", True, True)
    got = bn_run(d, "cuda", "fused", True, True)
    for k, (g, w) in enumerate(zip(got, exact)):
        assert_close(g, w, dtype, f"[{k}]", loose=10.0)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("shape", [(60, 100), (3, 4, 5, 6), (1000, 2, 3)], ids=str)
def test_kernels_against_the_cpu_array_path(cp: Any, shape: tuple, training: bool,
                                            need_dx: bool, dtype: Any) -> None:
    d = bn_data(shape, dtype)
    cpu_view = bn_mod._channel_view(shape, np.dtype(dtype), np)
    x, dy, w, b = d["x"], d["dy"], d["w"], d["b"]
    if training:
        want = bn_mod._normalize_with_batch_stats(x, w, b, 1e-5, cpu_view)
        got = _bn_cuda.normalize_with_batch_stats(cp.asarray(x), cp.asarray(w), cp.asarray(b),
                                                  1e-5)
        mean, inv_std = want[1], want[3]
        vjp_cpu, vjp_gpu = bn_mod._batch_stats_vjp, _bn_cuda.batch_stats_vjp
    else:
        mean, inv_std = d["rm"], (1 / np.sqrt(d["rv"] + dtype(1e-5))).astype(dtype)
        want = [bn_mod._normalize_with_running_stats(x, w, b, mean, inv_std, cpu_view)]
        got = [_bn_cuda.normalize_with_running_stats(cp.asarray(x), cp.asarray(w),
                                                     cp.asarray(b), cp.asarray(mean),
                                                     cp.asarray(inv_std))]
        vjp_cpu, vjp_gpu = bn_mod._running_stats_vjp, _bn_cuda.running_stats_vjp
    for g, v in zip(got, want):
        assert g.dtype == v.dtype
        assert_close(cp.asnumpy(g), v, dtype, "forward")
    gw = vjp_cpu(dy, x, w, mean, inv_std, cpu_view, need_dx)
    gg = vjp_gpu(cp.asarray(dy), cp.asarray(x), cp.asarray(w), cp.asarray(mean),
                 cp.asarray(inv_std), need_dx)
    for g, v in zip(gg, gw):
        if v is None:
            assert g is None
            continue
        assert_close(cp.asnumpy(g), v, dtype, "backward")


@gpu
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_inputs_of_any_layout(cp: Any, training: bool) -> None:
    """Non-contiguous inputs and gradients (a transposed x, a broadcast dy) are copied."""
    d = bn_data((4, 3, 5), F64)
    outs = {}
    for dev in ("cpu", "cuda"):
        base = mg.tensor(d["x"].transpose(0, 2, 1).copy(), device=dev, requires_grad=True)
        x = base.transpose(0, 2, 1)  # not contiguous
        w = mg.tensor(d["w"], device=dev, requires_grad=True)
        rm, rv = mg.tensor(d["rm"], device=dev), mg.tensor(d["rv"], device=dev)
        y = bn_mod.batch_norm(x, rm, rv, w, None, training=training)
        # sum(): the gradient reaching batch_norm is a broadcast view (strides of 0)
        (y.sum() + (y * y).sum() if training else y.sum()).backward()
        outs[dev] = [y, base.grad, w.grad]
    for a, b in zip(outs["cuda"], outs["cpu"]):
        assert_close(a, b, F64)


@gpu
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_double_backward_on_cuda(cp: Any, training: bool) -> None:
    """create_graph keeps using tensor ops; its result must match the CPU's."""
    d = bn_data((5, 3, 2), F64)
    outs = {}
    for dev in ("cpu", "cuda"):
        x = mg.tensor(d["x"], device=dev, requires_grad=True)
        w = mg.tensor(d["w"], device=dev, requires_grad=True)
        rm, rv = mg.tensor(d["rm"], device=dev), mg.tensor(d["rv"], device=dev)
        y = bn_mod.batch_norm(x, rm, rv, w, None, training=training)
        (gx,) = mg.grad([(y * mg.tensor(d["dy"], device=dev)).sum()], [x], create_graph=True)
        (gx * gx).sum().backward()
        outs[dev] = [gx, x.grad, w.grad]
    for a, b in zip(outs["cuda"], outs["cpu"]):
        assert (a is None) == (b is None)  # in evaluation gx does not depend on x
        if b is not None:
            assert_close(a, b, F64)


@gpu
@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (8, 5)), (nn.BatchNorm1d, (8, 5, 3)),
                                       (nn.BatchNorm2d, (4, 3, 5, 5))])
def test_batch_norm_modules_over_steps_match_cpu(cp: Any, cls: type, shape: tuple) -> None:
    mods = {dev: cls(shape[1], device=dev) for dev in ("cpu", "cuda")}
    for step in range(4):
        x = normal(shape, F32, step) * 3 + 1
        for dev, m in mods.items():
            m.train(step < 3)
            m(mg.tensor(x, device=dev)).sum().backward()
    for (name, a), (_, b) in zip(mods["cuda"].state_dict().items(),
                                 mods["cpu"].state_dict().items()):
        assert_close(a, b, F32, name)


# ---------------------------------------------------------------------- training steps
def models() -> Any:
    nets = pytest.importorskip("models.nets", reason="the models package is not importable")
    return nets


def image_batch(model: str, n: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (n, 1, 28, 28)).astype(dtype)
    return x, rng.integers(0, 10, n)


def make_opt(kind: str, params: Any) -> mg.optim.Optimizer:
    if kind == "sgd":
        return mg.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    return mg.optim.Adam(params, lr=1e-3, weight_decay=1e-4)


def train_step(model: nn.Module, opt: mg.optim.Optimizer, x: mg.Tensor, y: mg.Tensor) -> Any:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt_kind", ["sgd", "adam"])
@pytest.mark.parametrize("name,batch", [("mlp-bn", 60), ("cnn-bn", 16), ("mlp", 60)])
def test_training_steps_match_cpu(cp: Any, name: str, batch: int, opt_kind: str,
                                  dtype: Any) -> None:
    nets = models()
    mg.manual_seed(0)
    cpu_model = nets.build(name).to(dtype=dtype)
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    x, y = image_batch(name, batch, dtype)
    runs = {}
    for dev, model in (("cpu", cpu_model), ("cuda", gpu_model)):
        opt = make_opt(opt_kind, model.parameters())
        sched = mg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        xt, yt = mg.tensor(x, device=dev), mg.tensor(y, device=dev)
        losses = []
        for _ in range(3):
            losses.append(train_step(model, opt, xt, yt).item())
            sched.step()
        runs[dev] = (losses, model.state_dict())
    loose = 20.0 if dtype == F32 else 1e3
    assert_close(np.array(runs["cuda"][0]), np.array(runs["cpu"][0]), dtype, "losses", loose)
    for (k, a), (_, b) in zip(runs["cuda"][1].items(), runs["cpu"][1].items()):
        assert a.device == "cuda"
        assert_close(a, b, dtype, k, loose)


@contextlib.contextmanager
def no_host_transfers(cp: Any) -> Iterator[list]:
    """Fail on any device-to-host copy or synchronisation made by CuPy inside the block.

    Two nets: ``cupyx.allow_synchronize(False)`` (deprecated since CuPy 10 but present in
    13; it raises ``cupyx.DeviceSynchronized`` from ``ndarray.get()``, which ``.item()``,
    ``float()``, ``int()``, ``bool()`` and ``cupy.asnumpy`` all go through, and from
    ``Device.synchronize()``), and a count of the calls to ``cupy.ndarray.get`` and
    ``cupy.asnumpy``. Synchronisation inside CUDA libraries is not seen by either: the
    CUDA-graph test below covers it.
    """
    import cupyx

    calls: list = []
    patched = []
    for owner, name in ((cp.ndarray, "get"), (cp, "asnumpy")):
        original = getattr(owner, name)

        def spy(*args: Any, _original: Callable = original, _name: str = name,
                **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kwargs)

        try:
            setattr(owner, name, spy)
            patched.append((owner, name, original))
        except (TypeError, AttributeError):  # an extension type that cannot be patched
            pass
    allow = getattr(cupyx, "allow_synchronize", None)
    if allow is None and not patched:
        pytest.skip("this CuPy offers neither allow_synchronize nor a patchable ndarray.get")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation warning of allow_synchronize
            guard = allow(False) if allow is not None else contextlib.nullcontext()
            with guard:
                yield calls
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)


@gpu
@pytest.mark.parametrize("opt_kind", ["sgd", "adam"])
@pytest.mark.parametrize("name,batch", [("mlp-bn", 60), ("cnn-bn", 32)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_step_makes_no_host_round_trip(cp: Any, name: str, batch: int,
                                                opt_kind: str, momentum: float | None) -> None:
    nets = models()
    mg.manual_seed(0)
    model = nets.build(name).to("cuda")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.momentum = momentum
    opt = make_opt(opt_kind, model.parameters())
    x, y = image_batch(name, batch, np.float32)
    xt, yt = mg.tensor(x, device="cuda"), mg.tensor(y, device="cuda")
    losses = []
    with no_host_transfers(cp) as calls:
        for _ in range(3):  # the first step too: it compiles kernels and makes state
            losses.append(train_step(model, opt, xt, yt))
    assert calls == [], f"device-to-host copies inside the training step: {calls}"
    assert np.isfinite([t.item() for t in losses]).all()


@gpu
def test_training_step_replays_as_a_cuda_graph(cp: Any) -> None:
    """Stream capture refuses every synchronisation, so a captured step has none; the
    replayed graph must then train exactly as the eager steps do (SGD: its hyper-
    parameters are fixed numbers, which the graph keeps)."""
    nets = models()
    mg.manual_seed(0)
    eager = nets.build("cnn-bn").to("cuda")
    graphed = copy.deepcopy(eager)
    x, y = image_batch("cnn-bn", 32, np.float32)
    cp.cuda.Device().synchronize()  # the copies to the GPU so far ran on the default stream
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        xt, yt = mg.tensor(x, device="cuda"), mg.tensor(y, device="cuda")
        opts = {id(m): mg.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
                for m in (eager, graphed)}
        for _ in range(2):  # warm-up: compile kernels, make the momentum buffers
            train_step(graphed, opts[id(graphed)], xt, yt)
        stream.synchronize()
        stream.begin_capture()
        try:
            loss = train_step(graphed, opts[id(graphed)], xt, yt)
        except Exception:  # a synchronisation broke the capture: report that, not the end
            with contextlib.suppress(Exception):
                stream.end_capture()
            raise
        graph = stream.end_capture()
        for _ in range(3):
            graph.launch(stream=stream)
        for _ in range(5):  # warm-up (2) + captured (not run) + replayed (3)
            train_step(eager, opts[id(eager)], xt, yt)
        stream.synchronize()
    assert np.isfinite(loss.item())
    for (k, a), (_, b) in zip(graphed.state_dict().items(), eager.state_dict().items()):
        assert_close(a, b, np.float32, k)


# ====================================================================== autograd beyond backward
W_CONST = np.random.default_rng(3).standard_normal((3, 4))

JVP_CASES: dict[str, tuple[Callable, list]] = {
    # a constant operand (no tangent) on the GPU: the symbolic zero meets CuPy arrays
    "matmul_const_tanh": (lambda x: (x @ mg.tensor(W_CONST, device=x.device)).tanh(), [(2, 3)]),
    "mul_div_pow": (lambda a, b: (a * b / (b + 3.0)) ** 2 + a ** b.abs(), [(2, 3), (3,)]),
    "where_concat_getitem": (lambda a, b: mg.concatenate(
        [mg.where(a > 0, a, b), a[[0, 1, 1]]], axis=0).exp(), [(2, 3), (2, 3)]),
    "softmax_reduce": (lambda a: F.softmax(a, axis=1).var(axis=0) + a.max(axis=1).sum(),
                       [(3, 4)]),
    "linear_cross_entropy": (lambda x, w, b: F.cross_entropy(
        F.linear(x, w, b), mg.tensor([1, 0, 2], device=x.device)), [(3, 4), (3, 4), (3,)]),
    "conv_pool": (lambda x, w: F.avg_pool2d(F.max_pool2d(F.conv2d(x, w, padding=1), 2), 2),
                  [(2, 2, 4, 4), (3, 2, 3, 3)]),
    "batch_norm_fused": (lambda x, w, b: bn_mod.batch_norm(x, None, None, w, b),
                         [(4, 2, 3, 3), (2,), (2,)]),
    # on the GPU a round trip through the host: the tangent travels with the value
    "to_cpu_and_back": (lambda x: (x.to("cpu").exp() * 2).to(x.device), [(2, 3)]),
}


@gpu
@pytest.mark.parametrize("name", list(JVP_CASES))
def test_jvp_on_cuda_matches_cpu(cp: Any, name: str) -> None:
    fn, shapes = JVP_CASES[name]
    xs = [normal(s, F64, k) for k, s in enumerate(shapes)]
    vs = [normal(s, F64, 10 + k) for k, s in enumerate(shapes)]
    out = {}
    for dev in ("cpu", "cuda"):
        y, t = mg.jvp(fn, tuple(mg.tensor(x, device=dev) for x in xs),
                      tuple(mg.tensor(v, device=dev) for v in vs))
        assert t.device == dev
        out[dev] = (y, t)
    assert_close(out["cuda"][0], out["cpu"][0], F64, name)
    assert_close(out["cuda"][1], out["cpu"][1], F64, name)


@gpu
def test_jacobian_hessian_and_hvp_on_cuda_match_cpu(cp: Any) -> None:
    def f(x: mg.Tensor) -> mg.Tensor:
        return (x @ mg.tensor(W_CONST, device=x.device)).tanh().sum(axis=0)

    def s(x: mg.Tensor) -> mg.Tensor:
        return (x.tanh() ** 3).sum()

    x = normal((2, 3), F64)
    got = {}
    for dev in ("cpu", "cuda"):
        xt = mg.tensor(x, device=dev)
        got[dev] = [mg.jacobian(f, xt), mg.jacobian(f, xt, mode="forward"),
                    mg.hessian(s, xt), mg.hvp(s, xt, mg.tensor(x * 2, device=dev))[1]]
    for a, b in zip(got["cuda"], got["cpu"]):
        assert a.device == "cuda"
        assert_close(a, b, F64)


@gpu
def test_hooks_checkpoint_and_anomaly_on_cuda(cp: Any) -> None:
    mg.manual_seed(0)
    block = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4)).to("cuda").double()
    x = mg.tensor(normal((3, 4), F64), device="cuda", requires_grad=True)
    seen = []
    h = x.register_hook(lambda g: seen.append(g.device) or g * 2)
    mg.checkpoint(block, x).sum().backward()
    ckpt = [x.grad.numpy()] + [p.grad.numpy() for p in block.parameters()]
    h.remove()
    x.grad = None
    block.zero_grad()
    block(x).sum().backward()
    plain = [x.grad.numpy() * 2] + [p.grad.numpy() for p in block.parameters()]
    assert seen == ["cuda"]
    for a, b in zip(ckpt, plain):
        np.testing.assert_array_equal(a, b)
    z = mg.tensor(np.zeros(2), device="cuda", requires_grad=True)
    with mg.detect_anomaly(), pytest.raises(mg.GraphError, match="backward of sqrt"):
        (z * 1).sqrt().sum().backward()


@gpu
def test_dropout_inside_a_checkpoint_on_cuda_recomputes_the_same_mask(cp: Any) -> None:
    mg.manual_seed(1)
    x = mg.tensor(np.ones((64, 32)), device="cuda", requires_grad=True)
    w = normal((64, 32), F64)
    y = mg.checkpoint(lambda t: F.dropout(t, 0.5), x)
    (y * mg.tensor(w, device="cuda")).sum().backward()
    # y = x * mask with x = 1: the gradient is the same mask times w
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy() * w)
