"""Arithmetic: + - * / ** @ and negation, with NumPy broadcasting.

A VJP here returns gradients in the broadcast (output) shape; the engine sums
each back to its input's shape (``unbroadcast`` in ``autograd/engine.py``), so
broadcasting is undone in one place for every op.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd.forward import ZERO
from ..autograd.function import Function
from ..errors import ShapeError
from ._util import shape_of
from .reduce import sum_to


class Add(Function):
    array_backward = True
    op_name = "add"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        return a + b

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g, g

    @staticmethod
    def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
        return ta + tb


class Sub(Function):
    array_backward = True
    op_name = "sub"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        return a - b

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g, (-g if ctx.needs_input_grad[1] else None)

    @staticmethod
    def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
        return ta - tb


class Mul(Function):
    array_backward = True
    op_name = "mul"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (g * b if need_a else None), (g * a if need_b else None)

    @staticmethod
    def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
        a, b = ctx.primals
        return ta * b + a * tb


class Div(Function):
    array_backward = True
    op_name = "div"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        a, b = ctx.saved_tensors
        ga = g / b
        gb = -ga * a / b if ctx.needs_input_grad[1] else None
        return (ga if ctx.needs_input_grad[0] else None), gb

    @staticmethod
    def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
        b = ctx.primals[1]
        return (ta - ctx.outputs * tb) / b


class Neg(Function):
    array_backward = True
    op_name = "neg"

    @staticmethod
    def forward(ctx: Any, a: Any) -> Any:
        return -a

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return -g

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return -t


class PowConst(Function):
    """``x ** c`` for a constant Python number ``c``."""

    array_backward = True
    op_name = "pow"

    @staticmethod
    def forward(ctx: Any, x: Any, c: float) -> Any:
        ctx.save_for_backward(x)
        return x ** c

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        c = ctx.params["c"]
        if c == 2:
            return g * (x * 2)
        return g * (x ** (c - 1) * c)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        (x,) = ctx.primals
        c = ctx.params["c"]
        return t * (x ** (c - 1) * c)


class Pow(Function):
    """``a ** b`` where the exponent is a tensor too."""

    array_backward = True
    op_name = "pow"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        y = a ** b
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        from .unary import log

        a, b, y = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        ga = g * b * a ** (b - 1) if need_a else None
        gb = None
        if need_b:  # log(a) only when the exponent needs it: it is nan for a < 0
            # math.log keeps a Python base weakly typed, so float32 stays float32
            gb = g * y * (log(a) if hasattr(a, "shape") else math.log(a))
        return ga, gb

    @staticmethod
    def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
        a, b = ctx.primals
        y = ctx.outputs
        out = ta * (b * a ** (b - 1))
        if tb is not ZERO:  # log(a) only when the exponent moves: it is nan for a < 0
            out = out + tb * (y * np.log(a))
        return out


class MatMul(Function):
    """Matrix product with NumPy's rules: 1-D operands and batched broadcasting."""

    array_backward = True
    op_name = "matmul"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        if getattr(a, "ndim", 0) == 0 or getattr(b, "ndim", 0) == 0:
            raise ShapeError(f"matmul needs operands with at least one dimension, got shapes "
                             f"{shape_of(a)} and {shape_of(b)}; use * for scalars")
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        if a.ndim == 2 and b.ndim == 2:  # the common case, without reshapes
            return (g @ b.T if need_a else None), (a.T @ g if need_b else None)
        # Promote 1-D operands to matrices as NumPy does, then undo it.
        a2 = a if a.ndim > 1 else a.reshape((1, a.shape[0]))
        b2 = b if b.ndim > 1 else b.reshape((b.shape[0], 1))
        gshape = tuple(g.shape)
        if a.ndim == 1 and b.ndim == 1:
            gshape = (1, 1)
        elif a.ndim == 1:
            gshape = gshape[:-1] + (1, gshape[-1])
        elif b.ndim == 1:
            gshape = gshape + (1,)
        g2 = g.reshape(gshape)
        ga = gb = None
        if need_a:
            ga = sum_to(g2 @ b2.swapaxes(-1, -2), tuple(a2.shape)).reshape(tuple(a.shape))
        if need_b:
            gb = sum_to(a2.swapaxes(-1, -2) @ g2, tuple(b2.shape)).reshape(tuple(b.shape))
        return ga, gb

    @staticmethod
    def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
        a, b = ctx.primals
        return ta @ b + a @ tb


def _const(x: Any) -> Any:
    """Turn a list operand into an array; Tensors, arrays and numbers pass through."""
    if isinstance(x, (list, tuple)):
        import numpy as np

        return np.asarray(x)
    return x

add = Add.apply
sub = Sub.apply
mul = Mul.apply
div = Div.apply
neg = Neg.apply


def pow(a: Any, b: Any) -> Any:  # noqa: A001 - mirrors the operator's name
    """``a ** b``; a constant Python-number exponent is a parameter of the op."""
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return PowConst.apply(a, c=b)
    return Pow.apply(_const(a), _const(b))


def matmul(a: Any, b: Any) -> Any:
    """``a @ b`` (NumPy's matmul rules, batched dimensions broadcast)."""
    return MatMul.apply(_const(a), _const(b))

