"""Gradients of every differentiable primitive, checked against finite differences.

Each op is run in float64 on inputs drawn by hypothesis (broadcasting shape pairs,
axes, permutations), its forward value is compared with NumPy, and its VJP with
central differences through ``mg.gradcheck``. Elementwise ops and matmul are also
checked to second order with ``mg.gradgradcheck``. Inputs stay clear of points
where an op is not differentiable (kinks of abs/relu/clip/max, log/sqrt near 0).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import minigrad as mg

SETTINGS = settings(max_examples=20, deadline=None)
FEW = settings(max_examples=12, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)
SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
PAIRS = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)

Maker = Callable[[np.random.Generator, tuple], np.ndarray]


# ----------------------------------------------------------------- input makers
def normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Standard normal values."""
    return rng.standard_normal(shape)


def small(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Values in [-1.5, 1.5] (exponents)."""
    return rng.uniform(-1.5, 1.5, shape)


def positive(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Values in [0.5, 2] (log, sqrt, bases of a power)."""
    return rng.uniform(0.5, 2.0, shape)


def nonzero(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Values with magnitude in [0.3, 2] and a random sign (divisors, abs, relu)."""
    return rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def grid(offset: float) -> Maker:
    """Integers plus ``offset`` plus small noise: two grids with offsets 0.25 and 0.75
    never come closer than 0.3, so maximum/minimum never see ties."""

    def make(rng: np.random.Generator, shape: tuple) -> np.ndarray:
        return rng.integers(-3, 3, shape) + offset + rng.uniform(-0.1, 0.1, shape)

    return make


def distinct(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Values 0.3 apart in random order (max/min without ties)."""
    n = int(np.prod(shape, dtype=int))
    return (rng.permutation(n) * 0.3 - 0.15 * n + rng.uniform(-0.05, 0.05, n)).reshape(shape)


def leaf(a: np.ndarray, name: str | None = None) -> mg.Tensor:
    """A float64 leaf that requires grad."""
    return mg.tensor(np.asarray(a, dtype=np.float64), requires_grad=True, name=name)


def check_forward(out: mg.Tensor, expected: np.ndarray) -> None:
    """Forward value, shape and dtype agree with a NumPy computation."""
    expected = np.asarray(expected)
    assert out.shape == expected.shape
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------ binary elementwise
BINARY: dict[str, tuple[Callable, Callable, Maker, Maker]] = {
    "add": (lambda a, b: a + b, np.add, normal, normal),
    "sub": (lambda a, b: a - b, np.subtract, normal, normal),
    "mul": (lambda a, b: a * b, np.multiply, normal, normal),
    "div": (lambda a, b: a / b, np.divide, normal, nonzero),
    "pow": (lambda a, b: a**b, np.power, positive, small),
    "mg.add": (mg.add, np.add, normal, normal),
    "mg.sub": (mg.sub, np.subtract, normal, normal),
    "mg.mul": (mg.mul, np.multiply, normal, normal),
    "mg.div": (mg.div, np.divide, normal, nonzero),
    "mg.pow": (mg.pow, np.power, positive, small),
    "maximum": (mg.maximum, np.maximum, grid(0.25), grid(0.75)),
    "minimum": (mg.minimum, np.minimum, grid(0.25), grid(0.75)),
}


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(shapes=PAIRS, seed=SEEDS)
def test_binary_broadcasting_gradcheck(name: str, shapes, seed: int) -> None:
    fn, ref, make_a, make_b = BINARY[name]
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a, b = make_a(rng, sa), make_b(rng, sb)
    x, y = leaf(a), leaf(b)
    out = fn(x, y)
    check_forward(out, ref(a, b))
    assert out.shape == shapes.result_shape
    assert mg.gradcheck(fn, [x, y])


@pytest.mark.parametrize("name", ["add", "mul", "div", "pow", "maximum"])
@FEW
@given(shapes=PAIRS, seed=SEEDS)
def test_binary_gradient_of_one_side_only(name: str, shapes, seed: int) -> None:
    """With one operand constant, the other still gets the right (summed-back) gradient."""
    fn, _, make_a, make_b = BINARY[name]
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a, b = make_a(rng, sa), make_b(rng, sb)
    const_b = mg.tensor(b)
    assert mg.gradcheck(lambda x: fn(x, const_b), [leaf(a)])
    const_a = mg.tensor(a)
    assert mg.gradcheck(lambda y: fn(const_a, y), [leaf(b)])


def test_reflected_operators_with_python_numbers(rng: np.random.Generator) -> None:
    a = positive(rng, (2, 3))
    fns: list[tuple[Callable, Callable]] = [
        (lambda x: 2.0 + x, lambda v: 2.0 + v),
        (lambda x: 2.0 - x, lambda v: 2.0 - v),
        (lambda x: 3.0 * x, lambda v: 3.0 * v),
        (lambda x: 2.0 / x, lambda v: 2.0 / v),
        (lambda x: 1.5**x, lambda v: 1.5**v),
        (lambda x: x - 1, lambda v: v - 1),
        (lambda x: x / 4, lambda v: v / 4),
    ]
    for fn, ref in fns:
        x = leaf(a)
        check_forward(fn(x), ref(a))
        assert mg.gradcheck(fn, [x])


def test_numpy_array_on_the_left_gives_a_tensor(rng: np.random.Generator) -> None:
    a, c = normal(rng, (3,)), normal(rng, (2, 3))
    x = leaf(a)
    out = c * x
    assert isinstance(out, mg.Tensor)
    check_forward(out, c * a)
    assert mg.gradcheck(lambda t: c - t * c, [x])


@pytest.mark.parametrize("c", [2, 3, 0.5, -1.5, 1, 0, -2])
@FEW
@given(shape=SHAPES, seed=SEEDS)
def test_pow_constant_exponent(c: float, shape: tuple, seed: int) -> None:
    a = positive(np.random.default_rng(seed), shape)
    x = leaf(a)
    check_forward(x**c, a**c)
    assert mg.gradcheck(lambda t: t**c, [x])


def test_pow_integer_exponent_of_negative_base(rng: np.random.Generator) -> None:
    a = nonzero(rng, (5,))
    x = leaf(a)
    check_forward(x**3, a**3)
    assert mg.gradcheck(lambda t: t**3, [x])
    assert mg.gradcheck(lambda t: t**2, [x])


# ----------------------------------------------------------------------- matmul
@SETTINGS
@given(shapes=mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2,
                                             max_side=3), seed=SEEDS)
def test_matmul_1d_2d_batched_broadcast(shapes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a, b = normal(rng, sa), normal(rng, sb)
    x, y = leaf(a), leaf(b)
    check_forward(x @ y, a @ b)
    assert mg.gradcheck(lambda p, q: p @ q, [x, y])
    assert mg.gradcheck(mg.matmul, [x, y])


@pytest.mark.parametrize("sa, sb", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)),
                                    ((2, 3), (3, 4)), ((4, 2, 3), (3, 2)), ((3,), (2, 3, 4)),
                                    ((2, 1, 2, 3), (5, 3, 2)), ((2, 3, 4), (4,))])
def test_matmul_fixed_shapes(sa: tuple, sb: tuple, rng: np.random.Generator) -> None:
    a, b = normal(rng, sa), normal(rng, sb)
    x, y = leaf(a), leaf(b)
    check_forward(x @ y, a @ b)
    assert mg.gradcheck(lambda p, q: p @ q, [x, y])
    # gradient of one side only
    assert mg.gradcheck(lambda p: p @ mg.tensor(b), [leaf(a)])
    assert mg.gradcheck(lambda q: mg.tensor(a) @ q, [leaf(b)])


# ------------------------------------------------------------------------ unary
UNARY: dict[str, tuple[Callable, Callable, Maker]] = {
    "neg": (lambda x: -x, np.negative, normal),
    "mg.neg": (mg.neg, np.negative, normal),
    "exp": (lambda x: x.exp(), np.exp, normal),
    "mg.exp": (mg.exp, np.exp, normal),
    "log": (lambda x: x.log(), np.log, positive),
    "mg.log": (mg.log, np.log, positive),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, positive),
    "mg.sqrt": (mg.sqrt, np.sqrt, positive),
    "abs": (lambda x: x.abs(), np.abs, nonzero),
    "mg.abs": (mg.abs, np.abs, nonzero),
    "builtin abs": (abs, np.abs, nonzero),
    "tanh": (lambda x: x.tanh(), np.tanh, normal),
    "mg.tanh": (mg.tanh, np.tanh, normal),
    "sigmoid": (lambda x: x.sigmoid(), lambda v: 1 / (1 + np.exp(-v)), normal),
    "mg.sigmoid": (mg.sigmoid, lambda v: 1 / (1 + np.exp(-v)), normal),
    "relu": (lambda x: x.relu(), lambda v: np.maximum(v, 0), nonzero),
    "mg.relu": (mg.relu, lambda v: np.maximum(v, 0), nonzero),
    "clip": (lambda x: x.clip(-0.5, 0.5), lambda v: np.clip(v, -0.5, 0.5), grid(0.25)),
    "mg.clip": (lambda x: mg.clip(x, -0.5, 0.5), lambda v: np.clip(v, -0.5, 0.5),
                grid(0.25)),
    "clip lower": (lambda x: x.clip(a_min=0.0), lambda v: np.maximum(v, 0.0), grid(0.5)),
    "clip upper": (lambda x: x.clip(a_max=0.0), lambda v: np.minimum(v, 0.0), grid(0.5)),
}


@pytest.mark.parametrize("name", list(UNARY))
@FEW
@given(shape=SHAPES, seed=SEEDS)
def test_unary_gradcheck(name: str, shape: tuple, seed: int) -> None:
    fn, ref, make = UNARY[name]
    a = make(np.random.default_rng(seed), shape)
    x = leaf(a)
    out = fn(x)
    assert out.shape == shape
    np.testing.assert_allclose(out.numpy(), ref(a), rtol=1e-12, atol=1e-15)
    assert mg.gradcheck(fn, [x])


def test_clip_gradient_is_one_inside_and_zero_outside(rng: np.random.Generator) -> None:
    a = np.array([-2.0, -0.3, 0.1, 0.4, 1.7])
    x = leaf(a)
    x.clip(-0.5, 0.5).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), ((a >= -0.5) & (a <= 0.5)).astype(float))


def test_astype_roundtrip_gradients() -> None:
    a = np.array([[0.25, -1.5, 3.0]])
    w = np.array([2.0, -1.0, 0.5])
    # float64 -> float32: the gradient comes back as float64
    x = leaf(a)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * mg.tensor(w.astype(np.float32))).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), np.broadcast_to(w, a.shape))
    # float32 -> float64: the gradient comes back as float32
    x32 = mg.tensor(a.astype(np.float32), requires_grad=True)
    y64 = x32.astype(mg.float64)
    assert y64.dtype == np.float64
    (y64 * mg.tensor(w)).sum().backward()
    assert x32.grad.dtype == np.float32
    np.testing.assert_allclose(x32.grad.numpy(), np.broadcast_to(w, a.shape))
    # mg.astype and .float()/.double() go through the same op
    assert mg.gradcheck(lambda t: mg.astype(t, np.float32).double() * 3.0, [leaf(a)],
                        eps=1e-2, atol=1e-4)
    assert mg.gradcheck(lambda t: t.float().astype(np.float64) ** 2, [leaf(a)],
                        eps=1e-2, atol=1e-3, rtol=1e-2)


def test_astype_to_integer_has_no_gradient() -> None:
    x = leaf(np.array([1.7, -2.2]))
    y = x.astype(np.int64)
    assert y.dtype == np.int64
    assert not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), [1, -2])


# ------------------------------------------------------------------- reductions
@st.composite
def shape_and_axis(draw: st.DrawFn, min_dims: int = 0) -> tuple[tuple, object, bool]:
    """A shape, an axis spec for it (None, int, negative int or tuple) and keepdims."""
    shape = draw(array_shapes(min_dims=min_dims, max_dims=3, min_side=1, max_side=4))
    nd = len(shape)
    kinds = ["none"] + (["int", "neg", "tuple"] if nd else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        axis: object = None
    elif kind == "int":
        axis = draw(st.integers(0, nd - 1))
    elif kind == "neg":
        axis = draw(st.integers(-nd, -1))
    else:
        picked = draw(st.lists(st.integers(0, nd - 1), unique=True, max_size=nd))
        axis = tuple(draw(st.sampled_from([a, a - nd])) for a in picked)
    return shape, axis, draw(st.booleans())


def _count(shape: tuple, axis: object) -> int:
    """How many values each reduction over ``axis`` combines."""
    if axis is None:
        return int(np.prod(shape, dtype=int))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return int(np.prod([shape[a] for a in axes], dtype=int))


REDUCTIONS: dict[str, tuple[Callable, Callable, Maker, int]] = {
    "sum": (lambda x, ax, kd: x.sum(axis=ax, keepdims=kd),
            lambda a, ax, kd: a.sum(axis=ax, keepdims=kd), normal, 0),
    "mg.sum": (lambda x, ax, kd: mg.sum(x, axis=ax, keepdims=kd),
               lambda a, ax, kd: a.sum(axis=ax, keepdims=kd), normal, 0),
    "mean": (lambda x, ax, kd: x.mean(axis=ax, keepdims=kd),
             lambda a, ax, kd: a.mean(axis=ax, keepdims=kd), normal, 0),
    "var ddof0": (lambda x, ax, kd: x.var(axis=ax, keepdims=kd),
                  lambda a, ax, kd: a.var(axis=ax, keepdims=kd), normal, 0),
    "var ddof1": (lambda x, ax, kd: mg.var(x, axis=ax, keepdims=kd, ddof=1),
                  lambda a, ax, kd: a.var(axis=ax, keepdims=kd, ddof=1), normal, 1),
    "std ddof0": (lambda x, ax, kd: x.std(axis=ax, keepdims=kd),
                  lambda a, ax, kd: a.std(axis=ax, keepdims=kd), normal, 1),
    "std ddof1": (lambda x, ax, kd: mg.std(x, axis=ax, keepdims=kd, ddof=1),
                  lambda a, ax, kd: a.std(axis=ax, keepdims=kd, ddof=1), normal, 1),
    "max": (lambda x, ax, kd: x.max(axis=ax, keepdims=kd),
            lambda a, ax, kd: a.max(axis=ax, keepdims=kd), distinct, 0),
    "mg.max": (lambda x, ax, kd: mg.max(x, axis=ax, keepdims=kd),
               lambda a, ax, kd: a.max(axis=ax, keepdims=kd), distinct, 0),
    "min": (lambda x, ax, kd: x.min(axis=ax, keepdims=kd),
            lambda a, ax, kd: a.min(axis=ax, keepdims=kd), distinct, 0),
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
@SETTINGS
@given(case=shape_and_axis(), seed=SEEDS)
def test_reduction_gradcheck(name: str, case: tuple, seed: int) -> None:
    fn, ref, make, ddof = REDUCTIONS[name]
    shape, axis, keepdims = case
    if _count(shape, axis) <= ddof:
        return  # nothing to average over (var needs more than ddof values)
    a = make(np.random.default_rng(seed), shape)
    x = leaf(a)
    out = fn(x, axis, keepdims)
    expected = np.asarray(ref(a, axis, keepdims))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-11, atol=1e-12)
    assert mg.gradcheck(lambda t: fn(t, axis, keepdims), [x])


@pytest.mark.parametrize("op", ["max", "min"])
def test_extreme_ties_share_gradient_equally(op: str) -> None:
    a = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, -5.0]])
    if op == "min":
        a = -a
    x = leaf(a)
    getattr(x, op)(axis=1).sum().backward()
    expected = np.array([[0, 0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3, 0]])
    np.testing.assert_allclose(x.grad.numpy(), expected)
    x2 = leaf(a)
    getattr(x2, op)().backward()  # over everything: the two tied rows-wide extremes
    flat = a.ravel()
    best = flat.max() if op == "max" else flat.min()
    hits = (a == best).astype(float)
    np.testing.assert_allclose(x2.grad.numpy(), hits / hits.sum())


@pytest.mark.parametrize("op", [mg.maximum, mg.minimum])
def test_pairwise_ties_split_half_half(op: Callable) -> None:
    a = np.array([1.0, 2.0, 3.0])
    b = np.array([1.0, 0.0, 3.0])
    x, y = leaf(a), leaf(b)
    op(x, y).sum().backward()
    wins = (a > b) if op is mg.maximum else (a < b)
    expected_x = np.where(a == b, 0.5, wins.astype(float))
    np.testing.assert_allclose(x.grad.numpy(), expected_x)
    np.testing.assert_allclose(y.grad.numpy(), 1 - expected_x)


def test_abs_and_relu_gradient_at_zero_is_zero() -> None:
    x = leaf(np.array([-1.0, 0.0, 2.0]))
    x.abs().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [-1.0, 0.0, 1.0])
    z = leaf(np.array([-1.0, 0.0, 2.0]))
    z.relu().sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [0.0, 0.0, 1.0])


# ------------------------------------------------------------------- shape ops
@FEW
@given(shape=SHAPES, seed=SEEDS, data=st.data())
def test_reshape(shape: tuple, seed: int, data: st.DataObject) -> None:
    a = normal(np.random.default_rng(seed), shape)
    n = a.size
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    d = data.draw(st.sampled_from(divisors))
    targets = [(d, n // d), (n,), (-1,), (d, -1), (1, n, 1)] + ([()] if n == 1 else [])
    target = data.draw(st.sampled_from(targets))
    x = leaf(a)
    check_forward(x.reshape(target), a.reshape(target))
    check_forward(mg.reshape(x, target), a.reshape(target))
    assert mg.gradcheck(lambda t: t.reshape(target) * np.arange(1.0, n + 1).reshape(
        a.reshape(target).shape), [x])
    assert mg.gradcheck(lambda t: t.view(*a.reshape(target).shape), [x])


@FEW
@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=3), seed=SEEDS, data=st.data())
def test_transpose(shape: tuple, seed: int, data: st.DataObject) -> None:
    a = normal(np.random.default_rng(seed), shape)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    neg = tuple(p - len(shape) for p in perm)
    x = leaf(a)
    check_forward(x.transpose(perm), a.transpose(perm))
    check_forward(x.transpose(*neg), a.transpose(perm))
    check_forward(x.T, a.T)
    check_forward(mg.transpose(x), a.transpose())
    weights = np.arange(1.0, a.size + 1).reshape(a.transpose(perm).shape)
    assert mg.gradcheck(lambda t: t.transpose(perm) * weights, [x])
    assert mg.gradcheck(lambda t: t.transpose(*neg) * weights, [x])
    assert mg.gradcheck(lambda t: t.T * weights.reshape(a.T.shape), [x])


@FEW
@given(shape=array_shapes(min_dims=2, max_dims=4, max_side=3), seed=SEEDS, data=st.data())
def test_swapaxes(shape: tuple, seed: int, data: st.DataObject) -> None:
    a = normal(np.random.default_rng(seed), shape)
    nd = len(shape)
    i = data.draw(st.integers(-nd, nd - 1))
    j = data.draw(st.integers(-nd, nd - 1))
    x = leaf(a)
    expected = a.swapaxes(i, j)
    check_forward(x.swapaxes(i, j), expected)
    check_forward(mg.swapaxes(x, i, j), expected)
    check_forward(x.mT, a.swapaxes(-1, -2))
    weights = np.arange(1.0, a.size + 1).reshape(expected.shape)
    assert mg.gradcheck(lambda t: t.swapaxes(i, j) * weights, [x])


@FEW
@given(shape=array_shapes(min_dims=0, max_dims=4, max_side=3), seed=SEEDS, data=st.data())
def test_flatten(shape: tuple, seed: int, data: st.DataObject) -> None:
    a = normal(np.random.default_rng(seed), shape)
    start = data.draw(st.integers(0, max(len(shape) - 1, 0)))
    x = leaf(a)
    out = x.flatten(start)
    expected = a.reshape(shape[:start] + (-1,))
    check_forward(out, expected)
    check_forward(mg.flatten(x, start), expected)
    weights = np.arange(1.0, a.size + 1).reshape(expected.shape)
    assert mg.gradcheck(lambda t: t.flatten(start) * weights, [x])


@FEW
@given(shape=array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=2), seed=SEEDS,
       data=st.data())
def test_squeeze(shape: tuple, seed: int, data: st.DataObject) -> None:
    a = normal(np.random.default_rng(seed), shape)
    ones = [i for i, s in enumerate(shape) if s == 1]
    axis = data.draw(st.sampled_from([None] + ones + [tuple(ones)] + [i - len(shape)
                                                                        for i in ones]))
    x = leaf(a)
    expected = a.squeeze(axis=axis)
    check_forward(x.squeeze(axis), expected)
    check_forward(mg.squeeze(x, axis), expected)
    weights = np.arange(1.0, a.size + 1).reshape(expected.shape)
    assert mg.gradcheck(lambda t: t.squeeze(axis) * weights, [x])


@FEW
@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=3), seed=SEEDS, data=st.data())
def test_unsqueeze(shape: tuple, seed: int, data: st.DataObject) -> None:
    a = normal(np.random.default_rng(seed), shape)
    n = len(shape) + 1
    axis = data.draw(st.integers(-n, n - 1))
    x = leaf(a)
    expected = np.expand_dims(a, axis)
    check_forward(x.unsqueeze(axis), expected)
    check_forward(mg.unsqueeze(x, axis), expected)
    check_forward(x.expand_dims(axis), expected)
    weights = np.arange(1.0, a.size + 1).reshape(expected.shape)
    assert mg.gradcheck(lambda t: t.unsqueeze(axis) * weights, [x])


@SETTINGS
@given(target=array_shapes(min_dims=0, max_dims=3, max_side=3), seed=SEEDS, data=st.data())
def test_broadcast_to(target: tuple, seed: int, data: st.DataObject) -> None:
    lead = data.draw(st.integers(0, len(target)))
    shape = tuple(data.draw(st.sampled_from([1, n])) for n in target[lead:])
    a = normal(np.random.default_rng(seed), shape)
    x = leaf(a)
    expected = np.broadcast_to(a, target)
    check_forward(x.broadcast_to(target), expected)
    check_forward(mg.broadcast_to(x, target), expected)
    weights = np.arange(1.0, expected.size + 1).reshape(target)
    assert mg.gradcheck(lambda t: t.broadcast_to(target) * weights, [x])


# --------------------------------------------------------------------- getitem
INDICES: dict[str, object] = {
    "int": 1,
    "negative int": -1,
    "slice": slice(1, 3),
    "step slice": slice(None, None, 2),
    "negative step": slice(None, None, -1),
    "tuple of slices": (slice(0, 2), slice(1, None)),
    "int and slice": (2, slice(None, None, -2)),
    "ellipsis": (Ellipsis, 0),
    "newaxis": (None, slice(1, 3), None),
    "int array": np.array([0, 2]),
    "int list repeated": [0, 0, 3, 0],
    "int array repeated 2d": np.array([[1, 1], [3, 1]]),
    "two arrays repeated": (np.array([0, 0, 1, 0]), np.array([2, 2, 0, 2])),
    "array and slice": (np.array([3, 3, 1]), slice(1, None)),
    "slice and array": (slice(None), np.array([0, 0, 4])),
    "bool mask rows": np.array([True, False, True, True]),
    "bool mask full": "full-mask",
    "bool mask cols": (slice(None), np.array([False, True, True, False, True])),
    "bool list": [False, True, False, True],
}


def _index(name: str, a: np.ndarray) -> object:
    idx = INDICES[name]
    if isinstance(idx, str):
        return a > 0.1
    return idx


@pytest.mark.parametrize("name", list(INDICES))
def test_getitem(name: str, rng: np.random.Generator) -> None:
    a = normal(rng, (4, 5))
    idx = _index(name, a)
    np_idx = np.asarray(idx) if isinstance(idx, list) else idx
    expected = a[np_idx]
    x = leaf(a)
    check_forward(x[idx], expected)
    check_forward(mg.getitem(x, idx), expected)
    weights = np.arange(1.0, expected.size + 1).reshape(expected.shape)
    assert mg.gradcheck(lambda t: t[idx] * weights, [x])
    # the gradient by hand: scatter-add the weights back, repeats accumulating
    x.grad = None
    (x[idx] * weights).sum().backward()
    positions = np.arange(a.size).reshape(a.shape)[np_idx].ravel()
    by_hand = np.bincount(positions, weights=weights.ravel(), minlength=a.size)
    np.testing.assert_allclose(x.grad.numpy(), by_hand.reshape(a.shape))


def test_getitem_repeated_indices_accumulate_by_count(rng: np.random.Generator) -> None:
    a = normal(rng, (5,))
    x = leaf(a)
    idx = [0, 0, 0, 2, 4, 4]
    x[idx].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 1.0, 0.0, 2.0])


def test_getitem_with_tensor_indices(rng: np.random.Generator) -> None:
    a = normal(rng, (4, 3))
    x = leaf(a)
    rows = mg.tensor([2, 2, 0])
    mask = mg.tensor(a[:, 0] > 0)
    check_forward(x[rows], a[[2, 2, 0]])
    check_forward(x[mask], a[a[:, 0] > 0])
    assert mg.gradcheck(lambda t: t[rows] * 2.0, [x])
    assert mg.gradcheck(lambda t: t[mask] ** 2, [x])


# ------------------------------------------------------- concatenate, stack, where
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_concatenate(axis: int, rng: np.random.Generator) -> None:
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    sizes = [1, 3, 2]
    ax = axis % 3
    arrays = []
    for s, n in zip(shapes, sizes):
        s = list(s)
        s[ax] = n
        arrays.append(normal(rng, tuple(s)))
    xs = [leaf(a) for a in arrays]
    expected = np.concatenate(arrays, axis=axis)
    check_forward(mg.concatenate(xs, axis=axis), expected)
    weights = np.arange(1.0, expected.size + 1).reshape(expected.shape)
    assert mg.gradcheck(lambda *ts: mg.concatenate(ts, axis=axis) * weights, xs)
    # a constant among the inputs gets no gradient; the others still do
    c = mg.tensor(arrays[1])
    assert mg.gradcheck(lambda p, q: mg.concatenate([p, c, q], axis=axis) * weights,
                        [xs[0], xs[2]])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack(axis: int, rng: np.random.Generator) -> None:
    arrays = [normal(rng, (2, 3)) for _ in range(3)]
    xs = [leaf(a) for a in arrays]
    expected = np.stack(arrays, axis=axis)
    check_forward(mg.stack(xs, axis=axis), expected)
    weights = np.arange(1.0, expected.size + 1).reshape(expected.shape)
    assert mg.gradcheck(lambda *ts: mg.stack(ts, axis=axis) * weights, xs)


@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3),
       seed=SEEDS)
def test_where_broadcasting(shapes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sc, sa, sb = shapes.input_shapes
    cond = rng.random(sc) > 0.5
    a, b = normal(rng, sa), normal(rng, sb)
    x, y = leaf(a), leaf(b)
    check_forward(mg.where(cond, x, y), np.where(cond, a, b))
    check_forward(mg.where(mg.tensor(cond), x, y), np.where(cond, a, b))
    assert mg.gradcheck(lambda p, q: mg.where(cond, p, q), [x, y])
    assert mg.gradcheck(lambda p: mg.where(cond, p, 0.5), [x])
    assert mg.gradcheck(lambda q: mg.where(cond, -1.0, q), [y])


# ------------------------------------------------------------ second derivatives
GRADGRAD_UNARY: dict[str, tuple[Callable, Maker]] = {
    "neg": (lambda x: -x, normal),
    "exp": (mg.exp, normal),
    "log": (mg.log, positive),
    "sqrt": (mg.sqrt, positive),
    "abs": (mg.abs, nonzero),
    "tanh": (mg.tanh, normal),
    "sigmoid": (mg.sigmoid, normal),
    "relu": (mg.relu, nonzero),
    "clip": (lambda x: x.clip(-0.5, 0.5), grid(0.25)),
    "pow 3": (lambda x: x**3, normal),
    "pow 2": (lambda x: x**2, normal),
    "pow -1.5": (lambda x: x**-1.5, positive),
    "rpow": (lambda x: 1.7**x, normal),
    "rdiv": (lambda x: 2.0 / x, nonzero),
    "astype": (lambda x: x.astype(np.float64) * x, normal),
    "sum": (lambda x: x.sum(axis=0) ** 2, normal),
    "mean": (lambda x: x.mean(axis=-1, keepdims=True) * x, normal),
    "var": (lambda x: x.var(axis=1, ddof=1), normal),
    "std": (lambda x: x.std(), normal),
    "max": (lambda x: x.max(axis=0) * x.sum(), distinct),
    "getitem repeated": (lambda x: x[[0, 0, 1]] ** 2, normal),
    "getitem mask": (lambda x: x[np.array([True, False])] ** 3, normal),
    "reshape transpose": (lambda x: x.reshape(-1).reshape((3, 2)).T ** 2, normal),
}


@pytest.mark.parametrize("name", list(GRADGRAD_UNARY))
def test_unary_gradgradcheck(name: str, rng: np.random.Generator) -> None:
    fn, make = GRADGRAD_UNARY[name]
    x = leaf(make(rng, (2, 3)))
    assert mg.gradgradcheck(fn, [x])


GRADGRAD_BINARY: dict[str, tuple[Callable, Maker, Maker]] = {
    "add": (lambda a, b: a + b, normal, normal),
    "sub": (lambda a, b: a - b, normal, normal),
    "mul": (lambda a, b: a * b, normal, normal),
    "div": (lambda a, b: a / b, normal, nonzero),
    "pow": (lambda a, b: a**b, positive, small),
    "maximum": (mg.maximum, grid(0.25), grid(0.75)),
    "minimum": (mg.minimum, grid(0.25), grid(0.75)),
    "where": (lambda a, b: mg.where(np.array([True, False, True]), a * b, b), normal, normal),
    "concatenate": (lambda a, b: mg.concatenate([a * b, b], axis=-1), normal, normal),
    "stack": (lambda a, b: mg.stack([a, a * b], axis=1) ** 2, normal, normal),
}


@pytest.mark.parametrize("name", list(GRADGRAD_BINARY))
@pytest.mark.parametrize("sa, sb", [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 3))])
def test_binary_gradgradcheck(name: str, sa: tuple, sb: tuple,
                              rng: np.random.Generator) -> None:
    fn, make_a, make_b = GRADGRAD_BINARY[name]
    if name in ("concatenate", "stack") and sa != sb:
        sb = sa
    x, y = leaf(make_a(rng, sa)), leaf(make_b(rng, sb))
    assert mg.gradgradcheck(fn, [x, y])


@pytest.mark.parametrize("sa, sb", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)),
                                    ((2, 3), (3, 2)), ((2, 2, 3), (3, 2)),
                                    ((2, 1, 2, 3), (3, 3, 1))])
def test_matmul_gradgradcheck(sa: tuple, sb: tuple, rng: np.random.Generator) -> None:
    x, y = leaf(normal(rng, sa)), leaf(normal(rng, sb))
    assert mg.gradgradcheck(lambda p, q: p @ q, [x, y])
    assert mg.gradgradcheck(lambda p, q: (p @ q) ** 2, [x, y])


@FEW
@given(shapes=PAIRS, seed=SEEDS)
def test_broadcasting_mul_div_gradgradcheck(shapes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    x, y = leaf(normal(rng, sa)), leaf(nonzero(rng, sb))
    assert mg.gradgradcheck(lambda p, q: p * q / q.exp(), [x, y])


@pytest.mark.parametrize("op", ["tanh", "sigmoid", "log", "sqrt", "exp", "relu", "abs"])
def test_pointwise_vjp_leaves_saved_values_and_seed_alone(op: str) -> None:
    # The VJPs of these ops write into temporaries of their own; a second backward
    # through the same graph, the output and the caller's seed must not see it.
    x = mg.tensor(np.array([0.3, 1.7, 2.5], np.float32), requires_grad=True)
    y = getattr(x, op)()
    before = y.numpy().copy()
    seed = np.array([1.0, -2.0, 0.5], np.float32)
    y.backward(seed.copy(), retain_graph=True)
    first = x.grad.numpy().copy()
    x.grad = None
    y.backward(seed, retain_graph=True)
    np.testing.assert_array_equal(x.grad.numpy(), first)
    np.testing.assert_array_equal(y.numpy(), before)
    np.testing.assert_array_equal(seed, [1.0, -2.0, 0.5])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_backward_twice_gives_the_same_gradient(reduction: str) -> None:
    z = mg.tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    loss = mg.nn.functional.cross_entropy(z, np.array([0, 2, 1, 2]), reduction=reduction)
    seed = None if reduction != "none" else np.array([1.0, 2.0, 3.0, 4.0])
    loss.backward(seed, retain_graph=True)
    first = z.grad.numpy().copy()
    z.grad = None
    loss.backward(seed)
    np.testing.assert_array_equal(z.grad.numpy(), first)
