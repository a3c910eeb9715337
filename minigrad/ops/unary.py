"""Elementwise functions of one tensor, and dtype/device conversions."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..autograd.function import Function, dual
from ..errors import ArgumentError


class Pointwise(Function):
    """``y = f(x)`` elementwise, whose VJP is ``g * slope(v)``.

    ``v`` is the one value forward saves for it: the input, the output, or something
    cheaper such as a mask. Saving the input or the output keeps the derivative
    differentiable under ``create_graph``; a value computed from them (a mask, a sign)
    comes back as a constant, which is right where its derivative is 0.
    """

    array_backward = True


def _pointwise(name: str, f: Any, keep: Any, slope: Any, doc: str) -> type:
    """A `Pointwise` op class from its function, what backward keeps (``_input``,
    ``_output`` or a function of both) and its derivative in terms of that."""
    if keep is _output:
        def forward(ctx: Any, x: Any) -> Any:
            y = f(x)
            ctx.save_for_backward(y)
            return y
    else:
        def forward(ctx: Any, x: Any) -> Any:
            y = f(x)
            ctx.save_for_backward(x if keep is _input else keep(x, y))
            return y

    def backward(ctx: Any, g: Any) -> Any:
        (v,) = ctx.saved_tensors
        return g * slope(v)

    def jvp(ctx: Any, t: Any) -> Any:  # forward mode: the same derivative, times the tangent
        return t * slope(ctx.saved[0])

    body = {"op_name": name, "forward": staticmethod(forward),
            "backward": staticmethod(backward), "jvp": staticmethod(jvp), "__doc__": doc,
            "__module__": __name__}
    return type(name.capitalize() if name != "relu" else "ReLU", (Pointwise,), body)


def _input(x: Any, y: Any) -> Any:
    return x


def _output(x: Any, y: Any) -> Any:
    return y


def _sigmoid(x: Any) -> Any:
    # 1/(1+exp(-x)) overflows for very negative x; the tanh form never does.
    y = x * 0.5
    # In place on that new array (one allocation for the whole formula); a 0-d result
    # is a NumPy scalar, which cannot be written, and a CuPy array gets its own tanh.
    y = np.tanh(y, out=y) if type(y) is np.ndarray else backend.xp_of(y).tanh(y)
    y *= 0.5
    y += 0.5
    return y


# name, forward, what backward needs, and the derivative in terms of it
Exp = _pointwise("exp", np.exp, _output, lambda y: y, "e ** x; its derivative is itself.")
Log = _pointwise("log", np.log, _input, lambda x: 1 / x, "The natural logarithm.")
Sqrt = _pointwise("sqrt", np.sqrt, _output, lambda y: 0.5 / y, "The square root.")
Tanh = _pointwise("tanh", np.tanh, _output, lambda y: 1 - y * y, "The hyperbolic tangent.")
Sigmoid = _pointwise("sigmoid", _sigmoid, _output, lambda y: y * (1 - y),
                     "1 / (1 + e ** -x), computed as (1 + tanh(x / 2)) / 2.")
Abs = _pointwise("abs", np.abs, lambda x, y: np.sign(x), lambda s: s,
                 "|x|; the gradient at 0 is 0 (the subgradient PyTorch picks too).")
ReLU = _pointwise("relu", lambda x: np.maximum(x, 0), lambda x, y: x > 0, lambda m: m,
                  "max(x, 0) (not x * mask: -inf * 0 would be nan); the gradient at 0 is 0, "
                  "as in PyTorch.")


class Clip(Function):
    """Clamp into ``[a_min, a_max]``; gradient 1 inside (bounds included), 0 outside."""

    array_backward = True
    op_name = "clip"

    @staticmethod
    def forward(ctx: Any, x: Any, a_min: Any = None, a_max: Any = None) -> Any:
        if a_min is None and a_max is None:
            raise ArgumentError("clip needs a_min or a_max; both are None")
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
    if dtype.kind != "f":  # only floating-point tensors carry gradients
        return Tensor._wrap(x._data.astype(dtype))
    return AsType.apply(x, dtype=dtype)


def to_device(x: Any, device: str) -> Any:
    return ToDevice.apply(x, device=device)

