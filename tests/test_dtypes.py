"""Dtype rules: float32 by default, NumPy arrays keep theirs, gradients match their inputs.

Also the factories' dtypes and shapes, and reproducible random numbers after
``mg.manual_seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import minigrad as mg


# ------------------------------------------------------------------ mg.tensor
@pytest.mark.parametrize("data", [1.5, [1.0, 2.0], [[0.5], [1.5]], [1, 2.5]])
def test_python_floats_give_float32(data: Any) -> None:
    t = mg.tensor(data)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), np.asarray(data, dtype=np.float32))


@pytest.mark.parametrize("data", [3, [1, 2, 3], [[1], [2]]])
def test_python_ints_give_int64(data: Any) -> None:
    t = mg.tensor(data)
    assert t.dtype == np.int64
    assert not t.requires_grad


def test_bools_give_bool() -> None:
    assert mg.tensor([True, False]).dtype == np.bool_


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int32, np.int64,
                                   np.uint8])
def test_numpy_arrays_keep_their_dtype(dtype: Any) -> None:
    a = np.arange(6).reshape(2, 3).astype(dtype)
    t = mg.tensor(a)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), a)


def test_numpy_scalars_keep_their_dtype() -> None:
    assert mg.tensor(np.float64(1.5)).dtype == np.float64
    assert mg.tensor(np.float32(1.5)).dtype == np.float32


def test_explicit_dtype_wins() -> None:
    assert mg.tensor([1, 2], dtype=mg.float64).dtype == np.float64
    assert mg.tensor(np.ones(2), dtype=np.float32).dtype == np.float32
    assert mg.tensor(1.5, dtype="float16").dtype == np.float16


def test_tensor_copies_its_input() -> None:
    a = np.array([1.0, 2.0])
    t = mg.tensor(a)
    a[0] = 100.0
    assert t.numpy()[0] == 1.0
    u = mg.tensor(t)
    t.data[1] = 50.0
    assert u.numpy()[1] == 2.0
    n = t.numpy()
    n[0] = -1.0
    assert t.numpy()[0] == 1.0


# -------------------------------------------------------------- op result dtypes
SCALAR_OPS: dict[str, Callable[[mg.Tensor], mg.Tensor]] = {
    "t + 1.5": lambda t: t + 1.5,
    "1.5 + t": lambda t: 1.5 + t,
    "t - 2": lambda t: t - 2,
    "2.0 - t": lambda t: 2.0 - t,
    "t * 0.1": lambda t: t * 0.1,
    "3 * t": lambda t: 3 * t,
    "t / 7.0": lambda t: t / 7.0,
    "1.0 / t": lambda t: 1.0 / t,
    "t ** 2": lambda t: t**2,
    "t ** 0.5": lambda t: t**0.5,
    "2.0 ** t": lambda t: 2.0**t,
    "maximum": lambda t: mg.maximum(t, 0.5),
    "minimum": lambda t: mg.minimum(1.0, t),
    "where": lambda t: mg.where(t > 1.0, t, 0.25),
    "clip": lambda t: t.clip(0.2, 1.2),
    "mean": lambda t: t.mean(),
    "var": lambda t: t.var(ddof=1),
    "std": lambda t: t.std(),
    "sigmoid": lambda t: t.sigmoid(),
    "exp log sqrt": lambda t: t.exp().log().sqrt(),
}


@pytest.mark.parametrize("name", list(SCALAR_OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_scalars_do_not_promote(name: str, dtype: Any) -> None:
    fn = SCALAR_OPS[name]
    x = mg.tensor(np.array([0.5, 1.0, 2.0], dtype=dtype), requires_grad=True)
    y = fn(x)
    assert y.dtype == dtype
    y.sum().backward()
    assert x.grad.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_have_the_dtype_of_their_input(dtype: Any) -> None:
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((3, 4)).astype(dtype), requires_grad=True)
    w = mg.tensor(rng.standard_normal((4, 2)).astype(dtype), requires_grad=True)
    b = mg.tensor(rng.standard_normal(2).astype(dtype), requires_grad=True)
    loss = ((x @ w + b).tanh() ** 2).mean() + x.var(axis=0).sum() + w.max()
    assert loss.dtype == dtype
    loss.backward()
    for t in (x, w, b):
        assert t.grad.dtype == dtype
        assert t.grad.shape == t.shape
    (g,) = mg.grad((x * x).sum(), x)
    assert g.dtype == dtype


def test_gradients_keep_input_dtype_in_mixed_precision() -> None:
    """A float32 input combined with a float64 one still gets a float32 gradient."""
    x32 = mg.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    w64 = mg.tensor(np.array([3.0, 4.0]), requires_grad=True)
    y = (x32 * w64).sum()
    assert y.dtype == np.float64
    y.backward()
    assert w64.grad.dtype == np.float64
    assert x32.grad.dtype == np.float32
    np.testing.assert_allclose(x32.grad.numpy(), [3.0, 4.0])


def test_astype_gradient_dtypes() -> None:
    x = mg.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64
    (y * 3.0).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_integer_arithmetic_stays_integer() -> None:
    t = mg.tensor([1, 2, 3])
    assert (t + 1).dtype == np.int64
    assert (t * t).dtype == np.int64
    assert t.sum().dtype == np.int64
    assert (t > 1).dtype == np.bool_
    assert t.argmax().dtype.kind == "i"


# ------------------------------------------------------------------ factories
def test_factory_dtypes_and_shapes() -> None:
    assert mg.zeros(2, 3).dtype == np.float32 and mg.zeros(2, 3).shape == (2, 3)
    assert mg.zeros((2, 3)).shape == (2, 3)
    assert mg.ones(4).dtype == np.float32
    assert mg.ones(2, dtype=mg.float64).dtype == np.float64
    assert mg.full((2,), 1.5).dtype == np.float32
    assert mg.full(3, 7).dtype == np.int64
    assert mg.full((2, 2), 0.5, dtype=mg.float64).dtype == np.float64
    assert mg.arange(5).dtype == np.int64
    assert mg.arange(0.0, 1.0, 0.25).dtype == np.float32
    assert mg.arange(2, 8, 2).dtype == np.int64
    assert mg.rand(3, 2).dtype == np.float32 and mg.rand(3, 2).shape == (3, 2)
    assert mg.randn(4).dtype == np.float32
    assert mg.randn(2, dtype=mg.float64).dtype == np.float64
    np.testing.assert_array_equal(mg.zeros(3).numpy(), np.zeros(3))
    np.testing.assert_array_equal(mg.ones(3).numpy(), np.ones(3))
    np.testing.assert_array_equal(mg.full((2,), 1.5).numpy(), [1.5, 1.5])
    np.testing.assert_array_equal(mg.arange(0.0, 1.0, 0.25).numpy(), [0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(mg.arange(2, 8, 2).numpy(), [2, 4, 6])
    r = mg.rand(1000).numpy()
    assert r.min() >= 0.0 and r.max() < 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_like_factories_follow_their_argument(dtype: Any) -> None:
    t = mg.tensor(np.arange(6).reshape(3, 2).astype(dtype))
    z, o = mg.zeros_like(t), mg.ones_like(t)
    assert z.dtype == dtype and o.dtype == dtype
    assert z.shape == (3, 2) and o.shape == (3, 2)
    np.testing.assert_array_equal(z.numpy(), 0)
    np.testing.assert_array_equal(o.numpy(), 1)
    assert mg.zeros_like(t, dtype=mg.float64).dtype == np.float64


def test_factories_with_requires_grad() -> None:
    for t in (mg.zeros(2, requires_grad=True), mg.ones(2, requires_grad=True),
              mg.full((2,), 1.0, requires_grad=True), mg.rand(2, requires_grad=True),
              mg.randn(2, requires_grad=True), mg.arange(0.0, 2.0, requires_grad=True),
              mg.zeros_like(mg.ones(2), requires_grad=True)):
        assert t.requires_grad and t.is_leaf
    z = mg.zeros(3, requires_grad=True)
    (z * 2.0).sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [2.0, 2.0, 2.0])


def test_manual_seed_reproducible() -> None:
    mg.manual_seed(123)
    a1, b1 = mg.rand(5).numpy(), mg.randn(2, 3).numpy()
    mg.manual_seed(123)
    a2, b2 = mg.rand(5).numpy(), mg.randn(2, 3).numpy()
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    mg.manual_seed(124)
    assert not np.array_equal(mg.rand(5).numpy(), a1)
    c = mg.rand(5).numpy()
    assert not np.array_equal(c, mg.rand(5).numpy())  # the stream moves on
