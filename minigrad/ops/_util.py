"""Small helpers shared by the primitives: axis checks, broadcasting back."""

from __future__ import annotations

import operator
from typing import Any

from ..autograd.function import Function, dual
from ..errors import ShapeError


def shape_of(x: Any) -> tuple:
    """The shape of an array, Tensor or Python scalar (``()``)."""
    return x.shape if hasattr(x, "shape") else ()


def norm_axes(op: str, axis: Any, ndim: int, shape: tuple) -> tuple[int, ...]:
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if not isinstance(axis, (tuple, list)) else axis
    out = []
    for a in axes:
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}") from None
        if not -max(ndim, 1) <= a < max(ndim, 1):  # a 0-d tensor has axes 0 and -1
            raise ShapeError(f"{op}: axis {a} is out of range for a tensor of shape {shape} "
                             f"(ndim {ndim})")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(out)) if ndim else ()


def keep_shape(shape: tuple, axes: tuple) -> tuple:
    """``shape`` with the reduced ``axes`` kept as size 1."""
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _sum_to_array(g: Any, shape: tuple) -> Any:
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    r = g.sum(axis=axes, keepdims=True) if axes else g
    return r.reshape(shape) if lead else r


class SumTo(Function):
    """Sum a broadcast gradient back to ``shape`` (the VJP of broadcasting)."""

    array_backward = True
    op_name = "sum_to"

    @staticmethod
    def forward(ctx: Any, g: Any, shape: tuple) -> Any:
        ctx.in_shape = g.shape
        return _sum_to_array(g, shape)

    @staticmethod
    def backward(ctx: Any, gy: Any) -> Any:
        return broadcast_to(gy, ctx.in_shape)


class BroadcastTo(Function):
    """Repeat along new or size-1 axes without copying."""

    array_backward = True
    op_name = "broadcast_to"

    @staticmethod
    def forward(ctx: Any, x: Any, shape: tuple) -> Any:
        ctx.in_shape = x.shape
        from ..backend import xp_of

        return xp_of(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx: Any, gy: Any) -> Any:
        return sum_to(gy, ctx.in_shape)


_sum_to = dual(SumTo)
_broadcast_to = dual(BroadcastTo)


def sum_to(g: Any, shape: tuple) -> Any:
    """Sum ``g`` (array or Tensor) down to ``shape``; a no-op when it already fits."""
    if g.shape == shape:
        return g
    return _sum_to(g, shape=shape)


def broadcast_to(g: Any, shape: tuple) -> Any:
    """Broadcast ``g`` (array or Tensor) to ``shape``; a no-op when it already fits."""
    if tuple(g.shape) == tuple(shape):
        return g
    return _broadcast_to(g, shape=tuple(shape))
