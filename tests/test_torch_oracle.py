"""Forward values and gradients of every op compared with PyTorch CPU.

Each case runs the same computation in minigrad and in PyTorch, on float32 and
float64 inputs (with broadcasting where the op broadcasts), backpropagates the
same random upstream gradient, and compares outputs, gradients and dtypes. Also
covered: Python scalars keep float32 results, and the conventions at kinks
(ties of max/maximum, abs/relu at 0, clip at its bounds) match PyTorch's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import minigrad as mg

DTYPES = [np.float32, np.float64]


def tol(dtype: Any) -> dict[str, float]:
    """Comparison tolerances for ``dtype``."""
    return {"rtol": 2e-5, "atol": 2e-6} if dtype == np.float32 else {"rtol": 1e-10,
                                                                      "atol": 1e-12}


def torch_dtype(torch: Any, dtype: Any) -> Any:
    """The torch dtype matching a NumPy float dtype."""
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(dtype)]


def torch_index(torch: Any, idx: Any) -> Any:
    """An index expression with NumPy arrays and lists turned into torch tensors."""
    if isinstance(idx, tuple):
        return tuple(torch_index(torch, i) for i in idx)
    if isinstance(idx, np.ndarray):
        return torch.from_numpy(idx)
    if isinstance(idx, list):
        return torch.tensor(idx)
    return idx


def compare(torch: Any, mg_fn: Callable, torch_fn: Callable, arrays: Sequence[np.ndarray],
            rng: np.random.Generator) -> None:
    """Run both frameworks on ``arrays``; compare outputs, dtypes and gradients."""
    xs = [mg.tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = mg_fn(*xs)
    tout = torch_fn(*ts)
    out_np = tout.detach().numpy()
    assert out.shape == tuple(out_np.shape)
    assert out.dtype == out_np.dtype, f"output dtype {out.dtype} vs torch {out_np.dtype}"
    np.testing.assert_allclose(out.numpy(), out_np, **tol(out_np.dtype))
    g = rng.standard_normal(out.shape).astype(out_np.dtype)
    out.backward(mg.tensor(g))
    tout.backward(torch.from_numpy(g))
    for k, (x, t) in enumerate(zip(xs, ts)):
        expected = t.grad.numpy()
        assert x.grad is not None, f"input {k} got no gradient"
        assert x.grad.dtype == x.dtype, f"input {k}: grad dtype {x.grad.dtype} vs {x.dtype}"
        assert x.grad.shape == x.shape
        np.testing.assert_allclose(x.grad.numpy(), expected, **tol(x.dtype),
                                   err_msg=f"gradient of input {k}")


def normal(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def positive(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


def nonzero(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    return (rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)


def distinct(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    n = int(np.prod(shape, dtype=int))
    return (rng.permutation(n) * 0.25 - 0.1 * n).reshape(shape).astype(dtype)


# ----------------------------------------------------------------- binary ops
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, normal, normal),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, normal, normal),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, normal, normal),
    "div": (lambda a, b: a / b, lambda a, b: a / b, normal, nonzero),
    "pow": (lambda a, b: a**b, lambda a, b: a**b, positive, normal),
    "maximum": (mg.maximum, lambda a, b: a.maximum(b), distinct, normal),
    "minimum": (mg.minimum, lambda a, b: a.minimum(b), distinct, normal),
}
BROADCAST_PAIRS = [((2, 3), (2, 3)), ((2, 3, 4), (3, 1)), ((4,), (2, 1, 4)), ((), (2, 3)),
                   ((3, 1), (1, 5))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary(torch, name: str, shapes: tuple, dtype: Any,
                rng: np.random.Generator) -> None:
    mg_fn, t_fn, make_a, make_b = BINARY[name]
    sa, sb = shapes
    compare(torch, mg_fn, t_fn, [make_a(rng, sa, dtype), make_b(rng, sb, dtype)], rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sa, sb", [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)),
                                    ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
                                    ((3,), (2, 3, 4)), ((2, 1, 2, 3), (4, 3, 2)),
                                    ((2, 3, 4), (4,))])
def test_matmul(torch, sa: tuple, sb: tuple, dtype: Any, rng: np.random.Generator) -> None:
    compare(torch, lambda a, b: a @ b, lambda a, b: a @ b,
            [normal(rng, sa, dtype), normal(rng, sb, dtype)], rng)


# ------------------------------------------------------------------ unary ops
UNARY = {
    "neg": (lambda x: -x, lambda x: -x, normal),
    "exp": (mg.exp, lambda x: x.exp(), normal),
    "log": (mg.log, lambda x: x.log(), positive),
    "sqrt": (mg.sqrt, lambda x: x.sqrt(), positive),
    "abs": (mg.abs, lambda x: x.abs(), nonzero),
    "tanh": (mg.tanh, lambda x: x.tanh(), normal),
    "sigmoid": (mg.sigmoid, lambda x: x.sigmoid(), normal),
    "relu": (mg.relu, lambda x: x.relu(), nonzero),
    "clip": (lambda x: x.clip(-0.7, 0.4), lambda x: x.clamp(-0.7, 0.4), normal),
    "clip min": (lambda x: x.clip(a_min=0.2), lambda x: x.clamp(min=0.2), normal),
    "clip max": (lambda x: x.clip(a_max=0.2), lambda x: x.clamp(max=0.2), normal),
    "pow 2": (lambda x: x**2, lambda x: x**2, normal),
    "pow 3": (lambda x: x**3, lambda x: x**3, normal),
    "pow -0.5": (lambda x: x**-0.5, lambda x: x**-0.5, positive),
    "pow 1.5": (lambda x: x**1.5, lambda x: x**1.5, positive),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4)])
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(torch, name: str, shape: tuple, dtype: Any, rng: np.random.Generator) -> None:
    mg_fn, t_fn, make = UNARY[name]
    compare(torch, mg_fn, t_fn, [make(rng, shape, dtype)], rng)


@pytest.mark.parametrize("src, dst", [(np.float64, np.float32), (np.float32, np.float64)])
def test_astype(torch, src: Any, dst: Any, rng: np.random.Generator) -> None:
    td = torch_dtype(torch, dst)
    compare(torch, lambda x: x.astype(dst) * 2.0, lambda x: x.to(td) * 2.0,
            [normal(rng, (3, 4), src)], rng)


# ----------------------------------------------------------------- reductions
def _dims(axis: Any, ndim: int) -> Any:
    return tuple(range(ndim)) if axis is None else axis


REDUCE = {
    "sum": (lambda x, ax, kd: x.sum(axis=ax, keepdims=kd),
            lambda x, ax, kd: x.sum(dim=_dims(ax, x.ndim), keepdim=kd), normal),
    "mean": (lambda x, ax, kd: x.mean(axis=ax, keepdims=kd),
             lambda x, ax, kd: x.mean(dim=_dims(ax, x.ndim), keepdim=kd), normal),
    "var": (lambda x, ax, kd: x.var(axis=ax, keepdims=kd),
            lambda x, ax, kd: x.var(dim=_dims(ax, x.ndim), keepdim=kd, correction=0), normal),
    "var ddof1": (lambda x, ax, kd: x.var(axis=ax, keepdims=kd, ddof=1),
                  lambda x, ax, kd: x.var(dim=_dims(ax, x.ndim), keepdim=kd, correction=1),
                  normal),
    "std": (lambda x, ax, kd: x.std(axis=ax, keepdims=kd),
            lambda x, ax, kd: x.std(dim=_dims(ax, x.ndim), keepdim=kd, correction=0), normal),
    "std ddof1": (lambda x, ax, kd: mg.std(x, axis=ax, keepdims=kd, ddof=1),
                  lambda x, ax, kd: x.std(dim=_dims(ax, x.ndim), keepdim=kd, correction=1),
                  normal),
    "max": (lambda x, ax, kd: x.max(axis=ax, keepdims=kd),
            lambda x, ax, kd: x.amax(dim=_dims(ax, x.ndim), keepdim=kd), distinct),
    "min": (lambda x, ax, kd: x.min(axis=ax, keepdims=kd),
            lambda x, ax, kd: x.amin(dim=_dims(ax, x.ndim), keepdim=kd), distinct),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, -1, 1, (0, 2), (-1, -3)])
@pytest.mark.parametrize("name", list(REDUCE))
def test_reduction(torch, name: str, axis: Any, keepdims: bool, dtype: Any,
                   rng: np.random.Generator) -> None:
    mg_fn, t_fn, make = REDUCE[name]
    compare(torch, lambda x: mg_fn(x, axis, keepdims), lambda x: t_fn(x, axis, keepdims),
            [make(rng, (2, 3, 4), dtype)], rng)


# ------------------------------------------------------------------ shape ops
SHAPE_OPS = {
    "reshape": (lambda x: x.reshape(4, 6), lambda x: x.reshape(4, 6)),
    "reshape -1": (lambda x: x.reshape((3, -1)), lambda x: x.reshape(3, -1)),
    "transpose": (lambda x: x.transpose(1, 2, 0), lambda x: x.permute(1, 2, 0)),
    "transpose neg": (lambda x: x.transpose((-1, 0, -2)), lambda x: x.permute(2, 0, 1)),
    "T": (lambda x: x.T, lambda x: x.permute(2, 1, 0)),
    "swapaxes": (lambda x: x.swapaxes(0, -1), lambda x: x.swapaxes(0, -1)),
    "flatten": (lambda x: x.flatten(), lambda x: x.flatten()),
    "flatten 1": (lambda x: x.flatten(1), lambda x: x.flatten(1)),
    "unsqueeze": (lambda x: x.unsqueeze(1), lambda x: x.unsqueeze(1)),
    "unsqueeze -1": (lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(-1)),
    "squeeze": (lambda x: x.unsqueeze(0).squeeze(0), lambda x: x.unsqueeze(0).squeeze(0)),
    "squeeze all": (lambda x: x.reshape(1, 2, 1, 12, 1).squeeze(),
                    lambda x: x.reshape(1, 2, 1, 12, 1).squeeze()),
    "broadcast_to": (lambda x: x.broadcast_to((5, 2, 3, 4)),
                     lambda x: x.broadcast_to((5, 2, 3, 4))),
    "broadcast_to size1": (lambda x: x[:, :1].broadcast_to((2, 3, 4)),
                           lambda x: x[:, :1].broadcast_to((2, 3, 4))),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(SHAPE_OPS))
def test_shape_ops(torch, name: str, dtype: Any, rng: np.random.Generator) -> None:
    mg_fn, t_fn = SHAPE_OPS[name]
    compare(torch, mg_fn, t_fn, [normal(rng, (2, 3, 4), dtype)], rng)


INDICES = {
    "int": 1,
    "slice": slice(1, None),
    "step": (slice(None), slice(None, None, 2)),
    "ellipsis": (Ellipsis, 1),
    "newaxis": (None, 0),
    "int array repeated": np.array([2, 0, 2, 2]),
    "int list repeated": [1, 1, 3],
    "two arrays": (np.array([0, 0, 3]), np.array([4, 4, 1])),
    "array and slice": (np.array([3, 3, 1]), slice(1, 4)),
    "bool rows": np.array([True, False, True, True]),
    "bool cols": (slice(None), np.array([True, True, False, False, True])),
    "bool 2d": "mask",
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(INDICES))
def test_getitem(torch, name: str, dtype: Any, rng: np.random.Generator) -> None:
    a = normal(rng, (4, 5), dtype)
    idx = INDICES[name]
    if isinstance(idx, str):
        idx = a > 0
    t_idx = torch_index(torch, idx)
    compare(torch, lambda x: x[idx], lambda x: x[t_idx], [a], rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_and_stack(torch, axis: int, dtype: Any, rng: np.random.Generator) -> None:
    arrays = [normal(rng, (2, 3), dtype) for _ in range(3)]
    compare(torch, lambda *xs: mg.concatenate(xs, axis=axis),
            lambda *ts: torch.cat(ts, dim=axis), arrays, rng)
    compare(torch, lambda *xs: mg.stack(xs, axis=axis),
            lambda *ts: torch.stack(ts, dim=axis), arrays, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sc, sa, sb", [((2, 3), (2, 3), (2, 3)), ((3,), (2, 3), (2, 1)),
                                        ((2, 1), (3,), ())])
def test_where(torch, sc: tuple, sa: tuple, sb: tuple, dtype: Any,
               rng: np.random.Generator) -> None:
    cond = rng.random(sc) > 0.5
    tcond = torch.from_numpy(cond)
    compare(torch, lambda a, b: mg.where(cond, a, b), lambda a, b: torch.where(tcond, a, b),
            [normal(rng, sa, dtype), normal(rng, sb, dtype)], rng)


def test_composite_expression(torch, rng: np.random.Generator) -> None:
    """A small network-like expression touching many ops at once."""
    arrays = [normal(rng, (4, 3), np.float32), normal(rng, (3, 5), np.float32),
              normal(rng, (5,), np.float32)]

    def f_mg(x: Any, w: Any, b: Any) -> Any:
        h = (x @ w + b).relu()
        z = h - h.mean(axis=1, keepdims=True)
        return (z / (z.var(axis=1, keepdims=True) + 1e-3).sqrt()).tanh().sum(axis=0)

    def f_t(x: Any, w: Any, b: Any) -> Any:
        h = (x @ w + b).relu()
        z = h - h.mean(dim=1, keepdim=True)
        return (z / (z.var(dim=1, keepdim=True, correction=0) + 1e-3).sqrt()).tanh().sum(0)

    compare(torch, f_mg, f_t, arrays, rng)


# ------------------------------------------------- Python scalars keep float32
SCALAR_OPS = {
    "t + 2.0": (lambda x: x + 2.0, lambda x: x + 2.0),
    "2.0 + t": (lambda x: 2.0 + x, lambda x: 2.0 + x),
    "t - 1": (lambda x: x - 1, lambda x: x - 1),
    "3.0 - t": (lambda x: 3.0 - x, lambda x: 3.0 - x),
    "t * 2.5": (lambda x: x * 2.5, lambda x: x * 2.5),
    "2 * t": (lambda x: 2 * x, lambda x: 2 * x),
    "t / 3.0": (lambda x: x / 3.0, lambda x: x / 3.0),
    "2.0 / t": (lambda x: 2.0 / x, lambda x: 2.0 / x),
    "t ** 2.0": (lambda x: x**2.0, lambda x: x**2.0),
    "t ** 0.5": (lambda x: x**0.5, lambda x: x**0.5),
    "2.0 ** t": (lambda x: 2.0**x, lambda x: 2.0**x),
    "maximum(t, 0.9)": (lambda x: mg.maximum(x, 0.9), lambda x: x.clamp(min=0.9)),
    "where(c, t, 0.0)": (lambda x: mg.where(x > 1.0, x, 0.0),
                         lambda x: x.where(x > 1.0, 0.0)),
    "clip(t, 0.6, 1.5)": (lambda x: x.clip(0.6, 1.5), lambda x: x.clamp(0.6, 1.5)),
    "mean * 0.5": (lambda x: x.mean(axis=0) * 0.5, lambda x: x.mean(0) * 0.5),
}


@pytest.mark.parametrize("name", list(SCALAR_OPS))
def test_python_scalars_keep_float32(torch, name: str, rng: np.random.Generator) -> None:
    mg_fn, t_fn = SCALAR_OPS[name]
    a = positive(rng, (3, 4), np.float32)
    compare(torch, mg_fn, t_fn, [a], rng)
    assert mg_fn(mg.tensor(a)).dtype == np.float32


# --------------------------------------------------------------------- kinks
def test_max_ties_match_amax(torch) -> None:
    a = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], dtype=np.float32)
    rng = np.random.default_rng(0)
    for axis in (None, 0, 1):
        compare(torch, lambda x, ax=axis: x.max(axis=ax),
                lambda x, ax=axis: x.amax(dim=_dims(ax, 2)), [a], rng)
        compare(torch, lambda x, ax=axis: x.min(axis=ax),
                lambda x, ax=axis: x.amin(dim=_dims(ax, 2)), [-a], rng)


def test_pairwise_ties_match(torch) -> None:
    a = np.array([1.0, 2.0, -3.0, 0.0], dtype=np.float32)
    b = np.array([1.0, 0.0, -3.0, 5.0], dtype=np.float32)
    rng = np.random.default_rng(1)
    compare(torch, mg.maximum, lambda x, y: x.maximum(y), [a, b], rng)
    compare(torch, mg.minimum, lambda x, y: x.minimum(y), [a, b], rng)


def test_abs_relu_clip_at_kinks(torch) -> None:
    a = np.array([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    rng = np.random.default_rng(2)
    compare(torch, mg.abs, lambda x: x.abs(), [a], rng)
    compare(torch, mg.relu, lambda x: x.relu(), [a], rng)
    compare(torch, lambda x: x.clip(0.0, 1.0), lambda x: x.clamp(0.0, 1.0), [a], rng)


def test_relu_and_clip_of_infinities(torch) -> None:
    a = np.array([-np.inf, -1.0, 0.0, 2.0, np.inf], dtype=np.float32)
    ta = torch.from_numpy(a)
    np.testing.assert_array_equal(mg.relu(mg.tensor(a)).numpy(), ta.relu().numpy())
    np.testing.assert_array_equal(mg.tensor(a).clip(-1.0, 1.0).numpy(),
                                  ta.clamp(-1.0, 1.0).numpy())
    np.testing.assert_array_equal(mg.tensor(a).abs().numpy(), ta.abs().numpy())
    np.testing.assert_allclose(mg.tensor(a).sigmoid().numpy(), ta.sigmoid().numpy(),
                               rtol=1e-6)
