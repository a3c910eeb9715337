"""`mg.gradcheck` and `mg.gradgradcheck`: they pass on correct code and catch wrong derivatives.

A deliberately wrong user Function must make gradcheck raise `mg.GradcheckError`
naming the input, the element, and the analytical and numerical values, which
are checked against the values worked out by hand.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import minigrad as mg


def leaf(values: Any, name: str | None = None, dtype: Any = np.float64) -> mg.Tensor:
    """A leaf that requires grad."""
    return mg.tensor(np.asarray(values, dtype=dtype), requires_grad=True, name=name)


def reported(message: str) -> tuple[float, float]:
    """The analytical and numerical values a GradcheckError message reports."""
    m = re.search(r"analytical\s+(?:np\.float64\()?([-+0-9.eE]+)\)?\s+vs\s+numerical\s+"
                  r"(?:np\.float64\()?([-+0-9.eE]+)", message)
    assert m, f"no analytical/numerical values in: {message}"
    return float(m.group(1)), float(m.group(2))


class SquareWrongBackward(mg.Function):
    """x ** 2 whose backward claims 3x instead of 2x."""

    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> mg.Tensor:
        (x,) = ctx.saved_tensors
        return g * x * 3.0


class MulWrongSecondInput(mg.Function):
    """a * b with the gradient of b wrong (a + 1 instead of a)."""

    @staticmethod
    def forward(ctx: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> tuple:
        a, b = ctx.saved_tensors
        return g * b, g * (a + 1.0)


class CubeFrozenSecond(mg.Function):
    """x ** 3 whose backward treats the saved x as a constant: first derivative right,
    second derivative wrong (the dependence of 3x^2 on x is lost)."""

    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> mg.Tensor:
        (x,) = ctx.saved_tensors
        frozen = mg.tensor(x.numpy())  # a constant copy: no path back to x
        return g * frozen * frozen * 3.0


class CubeDetachedBackward(mg.Function):
    """x ** 3 whose backward leaves the graph entirely (gradient as a plain constant)."""

    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> mg.Tensor:
        (x,) = ctx.saved_tensors
        return mg.tensor(3.0 * x.numpy() ** 2 * g.numpy())


class Cube(mg.Function):
    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> mg.Tensor:
        (x,) = ctx.saved_tensors
        return g * x * x * 3.0


# ----------------------------------------------------------------- passing cases
def test_gradcheck_passes_on_correct_functions() -> None:
    rng = np.random.default_rng(0)
    x = leaf(rng.standard_normal((2, 3)))
    w = leaf(rng.standard_normal((3, 2)))
    assert mg.gradcheck(lambda a, b: (a @ b).tanh(), [x, w]) is True
    assert mg.gradcheck(Cube.apply, [x]) is True
    assert mg.gradcheck(lambda a: a.exp().sum(), x) is True  # a single tensor as inputs
    assert mg.gradgradcheck(Cube.apply, [x]) is True
    assert mg.gradgradcheck(lambda a, b: (a @ b).sigmoid(), [x, w]) is True


def test_gradcheck_with_constant_and_multiple_outputs() -> None:
    x = leaf([0.5, -1.0, 2.0])
    c = mg.tensor(np.array([1.0, 2.0, 3.0]))
    assert mg.gradcheck(lambda a, k: (a * k, a.exp()), [x, c])
    assert mg.gradgradcheck(lambda a, k: (a * k * a, a.tanh()), [x, c])


def test_gradcheck_upcasts_float32_inputs() -> None:
    """float32 inputs are checked in float64, so the default tolerances hold."""
    x = leaf([0.3, 0.7, -1.1], dtype=np.float32)
    assert mg.gradcheck(lambda a: a.tanh() ** 3, [x])
    assert x.dtype == np.float32 and x.grad is None


def test_gradcheck_needs_an_input_requiring_grad() -> None:
    with pytest.raises(ValueError):
        mg.gradcheck(lambda a: a * 2.0, [mg.tensor(np.ones(2))])


def test_gradgradcheck_with_given_grad_outputs() -> None:
    x = leaf([0.2, 0.9])
    assert mg.gradgradcheck(lambda a: a.exp() * a, [x], grad_outputs=np.array([1.0, -2.0]))


# ----------------------------------------------------------------- failing cases
def test_wrong_backward_raises_naming_input_element_and_values() -> None:
    a = np.array([1.0, 2.0, 3.0])
    x = leaf(a)
    with pytest.raises(mg.GradcheckError) as info:
        mg.gradcheck(SquareWrongBackward.apply, [x])
    msg = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "input 0" in msg
    # the worst mismatch is at the largest x: analytical 3x, numerical 2x
    assert "element (2,)" in msg
    analytical, numerical = reported(msg)
    assert analytical == pytest.approx(3 * a[2])
    assert numerical == pytest.approx(2 * a[2], rel=1e-6)


def test_wrong_gradient_of_named_second_input() -> None:
    a = np.array([[1.0, -2.0], [0.5, 4.0]])
    b = np.array([[3.0, 1.0], [2.0, -1.0]])
    x, y = leaf(a, name="a"), leaf(b, name="weight")
    with pytest.raises(mg.GradcheckError) as info:
        mg.gradcheck(MulWrongSecondInput.apply, [x, y])
    msg = str(info.value)
    assert "weight" in msg
    m = re.search(r"element \((\d+), (\d+)\)", msg)
    assert m
    i, j = int(m.group(1)), int(m.group(2))
    analytical, numerical = reported(msg)
    assert numerical == pytest.approx(a[i, j], rel=1e-6, abs=1e-6)
    assert analytical == pytest.approx(a[i, j] + 1.0)


def test_gradcheck_fails_for_a_gradient_that_is_off_by_a_little() -> None:
    class Slightly(mg.Function):
        @staticmethod
        def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
            return np.sin(x)

        @staticmethod
        def backward(ctx: Any, g: mg.Tensor) -> mg.Tensor:
            return g * 0.99  # cos(0) = 1, off by 1%

    with pytest.raises(mg.GradcheckError, match="element"):
        mg.gradcheck(Slightly.apply, [leaf([0.0, 0.0])])


def test_gradcheck_catches_a_dropped_gradient() -> None:
    """An output that depends on x numerically but not on the tape must fail."""
    x = leaf([1.0, 2.0])
    with pytest.raises(mg.GradcheckError):
        mg.gradcheck(lambda a: a.detach() * 2.0, [x])


def test_gradcheck_catches_a_partly_dropped_gradient() -> None:
    x = leaf([1.0, 2.0])
    with pytest.raises(mg.GradcheckError):
        mg.gradcheck(lambda a: a * 2.0 + a.detach() ** 2, [x])


def test_gradgradcheck_detects_wrong_second_derivative() -> None:
    x = leaf([0.5, -1.0, 2.0])
    assert mg.gradcheck(CubeFrozenSecond.apply, [x])  # first order is right
    with pytest.raises(mg.GradcheckError) as info:
        mg.gradgradcheck(CubeFrozenSecond.apply, [x])
    assert "input 0" in str(info.value)


def test_gradgradcheck_detects_fully_detached_backward() -> None:
    x = leaf([0.5, -1.0, 2.0])
    assert mg.gradcheck(CubeDetachedBackward.apply, [x])
    with pytest.raises(mg.GradcheckError):
        mg.gradgradcheck(CubeDetachedBackward.apply, [x])


def test_gradcheck_leaves_inputs_untouched() -> None:
    a = np.array([0.1, 0.2, 0.3])
    x = leaf(a)
    mg.gradcheck(lambda t: (t * t).exp(), [x])
    np.testing.assert_array_equal(x.numpy(), a)
    assert x.grad is None
