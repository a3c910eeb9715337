"""User-defined `mg.Function`s: forward/backward, saved tensors, checks on what backward returns.

Covers the ctx API (``save_for_backward``, ``saved_tensors``, ``needs_input_grad``,
params), first and second derivatives of Functions whose backward is written in
tensor ops, the errors raised for a backward that returns the wrong number or
shape of gradients, and Functions that opt into ``array_backward``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import minigrad as mg


def leaf(values: Any) -> mg.Tensor:
    """A float64 leaf that requires grad."""
    return mg.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


class Cube(mg.Function):
    """x ** 3, with the backward written in tensor ops."""

    seen: list = []  # noqa: RUF012 - what backward was handed, for inspection

    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx: Any, gy: mg.Tensor) -> mg.Tensor:
        (x,) = ctx.saved_tensors
        Cube.seen.append((type(gy), type(x), ctx.needs_input_grad))
        return gy * 3.0 * x * x


class MyExp(mg.Function):
    """exp(x) saving its output; backward reuses the output."""

    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
        y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, gy: mg.Tensor) -> mg.Tensor:
        (y,) = ctx.saved_tensors
        return gy * y


class ScaledMul(mg.Function):
    """a * b * scale, a keyword parameter; reports which inputs need a gradient."""

    @staticmethod
    def forward(ctx: Any, a: np.ndarray, b: np.ndarray, scale: float = 1.0) -> np.ndarray:
        ctx.save_for_backward(a, b)
        return a * b * scale

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> tuple:
        a, b = ctx.saved_tensors
        s = ctx.params["scale"]
        ga = g * b * s if ctx.needs_input_grad[0] else None
        gb = g * a * s if ctx.needs_input_grad[1] else None
        return ga, gb


def test_cube_forward_backward_and_ctx() -> None:
    Cube.seen.clear()
    a = np.array([1.0, -2.0, 0.5])
    x = leaf(a)
    y = Cube.apply(x)
    assert isinstance(y, mg.Tensor)
    assert y.requires_grad and isinstance(y.grad_fn, Cube)
    np.testing.assert_allclose(y.numpy(), a**3)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * a**2)
    gy_type, x_type, needs = Cube.seen[-1]
    assert gy_type is mg.Tensor and x_type is mg.Tensor
    assert needs == (True,)


def test_record_name_and_tape_line() -> None:
    x = leaf([1.0, 2.0])
    y = Cube.apply(x)
    assert y.grad_fn.name == "cube"
    assert "cube(" in str(mg.tape(y))


def test_user_function_gradcheck_and_gradgradcheck() -> None:
    x = leaf([0.7, -1.2, 1.9])
    assert mg.gradcheck(Cube.apply, [x])
    assert mg.gradgradcheck(Cube.apply, [x])
    assert mg.gradcheck(MyExp.apply, [x])
    assert mg.gradgradcheck(MyExp.apply, [x])


def test_second_derivative_of_user_function_by_hand() -> None:
    a = np.array([0.5, 2.0])
    x = leaf(a)
    (g,) = mg.grad(Cube.apply(x).sum(), x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), 3 * a**2)
    (g2,) = mg.grad(g.sum(), x)
    np.testing.assert_allclose(g2.numpy(), 6 * a)
    (h,) = mg.grad(MyExp.apply(x).sum(), x, create_graph=True)
    (h2,) = mg.grad(h.sum(), x)
    np.testing.assert_allclose(h2.numpy(), np.exp(a))


def test_params_and_needs_input_grad() -> None:
    a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    x, y = leaf(a), leaf(b)
    out = ScaledMul.apply(x, y, scale=2.5)
    assert out.grad_fn.params == {"scale": 2.5}
    assert out.grad_fn.needs_input_grad == (True, True)
    np.testing.assert_allclose(out.numpy(), a * b * 2.5)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), b * 2.5)
    np.testing.assert_allclose(y.grad.numpy(), a * 2.5)
    # a constant operand: needs_input_grad says so, and backward may return None for it
    x2 = leaf(a)
    out2 = ScaledMul.apply(x2, mg.tensor(b), scale=-1.0)
    assert out2.grad_fn.needs_input_grad == (True, False)
    out2.sum().backward()
    np.testing.assert_allclose(x2.grad.numpy(), -b)
    assert mg.gradcheck(lambda p, q: ScaledMul.apply(p, q, scale=0.3), [leaf(a), leaf(b)])
    assert mg.gradgradcheck(lambda p, q: ScaledMul.apply(p, q, scale=0.3), [leaf(a), leaf(b)])


def test_function_not_recorded_without_grad() -> None:
    x = leaf([1.0])
    with mg.no_grad():
        y = Cube.apply(x)
    assert not y.requires_grad and y.grad_fn is None
    c = mg.tensor(np.array([2.0]))
    z = Cube.apply(c)
    assert not z.requires_grad and z.grad_fn is None
    np.testing.assert_allclose(z.numpy(), [8.0])


def test_forward_receives_arrays() -> None:
    seen = []

    class Probe(mg.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            seen.append(type(x))
            return x + 1

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g

    Probe.apply(leaf([1.0]))
    assert seen == [np.ndarray]


# ------------------------------------------------------------ bad backwards
class TwoInputsOneGrad(mg.Function):
    @staticmethod
    def forward(ctx: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> mg.Tensor:
        return g


class OneInputThreeGrads(mg.Function):
    @staticmethod
    def forward(ctx: Any, a: np.ndarray) -> np.ndarray:
        return a * 2

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> tuple:
        return g, g, g


class WrongShapeGrad(mg.Function):
    @staticmethod
    def forward(ctx: Any, a: np.ndarray) -> np.ndarray:
        return a * 2

    @staticmethod
    def backward(ctx: Any, g: mg.Tensor) -> mg.Tensor:
        return g.sum()


def test_wrong_number_of_gradients_names_the_op() -> None:
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    with pytest.raises(mg.GraphError, match=r"twoinputsonegrad.*1.*2"):
        TwoInputsOneGrad.apply(x, y).sum().backward()
    with pytest.raises(mg.GraphError, match=r"oneinputthreegrads.*3.*1"):
        OneInputThreeGrads.apply(x).sum().backward()


def test_wrong_number_of_gradients_raises_under_create_graph() -> None:
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    with pytest.raises(mg.GraphError, match="twoinputsonegrad"):
        mg.grad(TwoInputsOneGrad.apply(x, y).sum(), [x, y], create_graph=True)


def test_wrong_gradient_shape_names_the_op_and_shapes() -> None:
    x = leaf([1.0, 2.0])
    with pytest.raises(mg.ShapeError, match=r"wrongshapegrad.*\(\).*\(2,\)"):
        WrongShapeGrad.apply(x).sum().backward()
    assert x.grad is None


def test_wrong_gradient_shape_raises_under_create_graph() -> None:
    x = leaf([1.0, 2.0])
    with pytest.raises(mg.ShapeError, match="wrongshapegrad"):
        mg.grad(WrongShapeGrad.apply(x).sum(), x, create_graph=True)


# ----------------------------------------------------------- array_backward
class FastSquare(mg.Function):
    """x ** 2 whose backward uses only what arrays and Tensors share."""

    array_backward = True
    kinds: list = []  # noqa: RUF012

    @staticmethod
    def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        FastSquare.kinds.append((type(g), type(x)))
        return g * x * 2.0


def test_array_backward_function_plain_and_create_graph() -> None:
    FastSquare.kinds.clear()
    a = np.array([1.5, -0.5])
    x = leaf(a)
    FastSquare.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * a)
    assert FastSquare.kinds[-1] == (np.ndarray, np.ndarray)  # the fast path gets arrays
    (g,) = mg.grad(FastSquare.apply(x).sum(), x, create_graph=True)
    assert FastSquare.kinds[-1] == (mg.Tensor, mg.Tensor)
    np.testing.assert_allclose(g.numpy(), 2 * a)
    (g2,) = mg.grad(g.sum(), x)
    np.testing.assert_allclose(g2.numpy(), [2.0, 2.0])
    assert mg.gradcheck(FastSquare.apply, [leaf(a)])
    assert mg.gradgradcheck(FastSquare.apply, [leaf(a)])


def test_array_backward_wrong_number_of_gradients_raises() -> None:
    class FastTwoInputsOneGrad(mg.Function):
        array_backward = True

        @staticmethod
        def forward(ctx: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return a * b

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g

    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    with pytest.raises(mg.GraphError, match="fasttwoinputsonegrad"):
        FastTwoInputsOneGrad.apply(x, y).sum().backward()


def test_op_name_overrides_the_record_name() -> None:
    class Renamed(mg.Function):
        op_name = "my_square"

        @staticmethod
        def forward(ctx: Any, x: np.ndarray) -> np.ndarray:
            return x * x

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g

    y = Renamed.apply(leaf([1.0]))
    assert y.grad_fn.name == "my_square"
    assert "my_square(" in str(mg.tape(y))
