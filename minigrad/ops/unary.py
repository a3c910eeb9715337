"""Elementwise functions of one tensor, and dtype/device conversions."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..autograd.function import Function, dual


class Exp(Function):
    array_backward = True
    op_name = "exp"

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (y,) = ctx.saved_tensors
        return g * y

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t * ctx.outputs


class Log(Function):
    array_backward = True
    op_name = "log"

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return g / x

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t / ctx.primals[0]


class Sqrt(Function):
    array_backward = True
    op_name = "sqrt"

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        y = np.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (y,) = ctx.saved_tensors
        return g / (y * 2)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t / (ctx.outputs * 2)


class Abs(Function):
    """|x|; the gradient at 0 is 0 (the subgradient PyTorch picks too)."""

    array_backward = True
    op_name = "abs"

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.save_for_backward(np.sign(x))
        return np.abs(x)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (s,) = ctx.saved_tensors
        return g * s

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t * ctx.saved[0]


class Tanh(Function):
    array_backward = True
    op_name = "tanh"

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        y = ctx.outputs
        return t * (1 - y * y)


class Sigmoid(Function):
    array_backward = True
    op_name = "sigmoid"

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        # 1/(1+exp(-x)) overflows for very negative x; the tanh form never does.
        y = np.tanh(x * 0.5)
        y *= 0.5
        y += 0.5
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (y,) = ctx.saved_tensors
        return g * (y * (1 - y))

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        y = ctx.outputs
        return t * (y * (1 - y))


class ReLU(Function):
    """max(x, 0); the gradient at 0 is 0, as in PyTorch."""

    array_backward = True
    op_name = "relu"

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        ctx.save_for_backward(x > 0)
        return np.maximum(x, 0)  # not x * mask: -inf * 0 would be nan

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (mask,) = ctx.saved_tensors
        return g * mask

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t * ctx.saved[0]


class Clip(Function):
    """Clamp into ``[a_min, a_max]``; gradient 1 inside (bounds included), 0 outside."""

    array_backward = True
    op_name = "clip"

    @staticmethod
    def forward(ctx: Any, x: Any, a_min: Any = None, a_max: Any = None) -> Any:
        if a_min is None and a_max is None:
            raise ValueError("clip needs a_min or a_max")
        inside = backend.xp_of(x).ones(x.shape, bool)
        if a_min is not None:
            inside &= x >= a_min
        if a_max is not None:
            inside &= x <= a_max
        ctx.save_for_backward(inside)
        return np.clip(x, a_min, a_max)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (inside,) = ctx.saved_tensors
        return g * inside

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t * ctx.saved[0]


class AsType(Function):
    array_backward = True
    op_name = "astype"

    @staticmethod
    def forward(ctx: Any, x: Any, dtype: Any) -> Any:
        ctx.in_dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g.astype(ctx.in_dtype)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t.astype(ctx.params["dtype"])


class Clone(Function):
    array_backward = True
    op_name = "clone"

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        return x.copy()

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t


class ToDevice(Function):
    """A copy to another device; the gradient travels back the same way."""

    op_name = "to"

    @staticmethod
    def forward(ctx: Any, x: Any, device: str) -> Any:
        ctx.src = backend.device_of(x)
        return backend.to_device(x, device)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g.to(ctx.src)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return backend.to_device(t, ctx.params["device"])


exp = Exp.apply
log = dual(Log)
sqrt = Sqrt.apply
abs = Abs.apply  # noqa: A001 - NumPy's name
tanh = Tanh.apply
sigmoid = Sigmoid.apply
relu = ReLU.apply
clone = Clone.apply


def clip(x: Any, a_min: Any = None, a_max: Any = None) -> Any:
    """Clamp ``x`` into ``[a_min, a_max]`` (either bound may be None)."""
    return Clip.apply(x, a_min=a_min, a_max=a_max)


def astype(x: Any, dtype: Any) -> Any:
    """``x`` converted to ``dtype``; gradients flow only into floating-point results."""
    from ..tensor import Tensor

    dtype = np.dtype(dtype)
    if dtype.kind not in "fc":
        return Tensor._wrap(x._data.astype(dtype))
    return AsType.apply(x, dtype=dtype)


def to_device(x: Any, device: str) -> Any:
    return ToDevice.apply(x, device=device)

