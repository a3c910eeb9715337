"""Reductions over axes: sum, mean, var, max, min (and argmax/argmin, no gradient)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd.function import Function, dual
from ..errors import ShapeError
from ._util import keep_shape, norm_axes


class Sum(Function):
    array_backward = True
    op_name = "sum"

    @staticmethod
    def forward(ctx: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        # axis=None (every axis) needs no checking; ctx.axes stays None then.
        axes = None if axis is None else norm_axes("sum", axis, x.ndim, x.shape)
        ctx.in_shape, ctx.axes = x.shape, axes
        return x.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return broadcast_to(_kept(ctx, g, ctx.in_shape), ctx.in_shape)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t.sum(axis=ctx.axes, keepdims=ctx.params.get("keepdims", False))


def _kept(ctx: Any, g: Any, shape: tuple) -> Any:
    """The gradient ``g`` of a reduction of an input of ``shape`` with the reduced axes put
    back as size 1 (they are there already under keepdims), so that it broadcasts."""
    if ctx.params.get("keepdims"):
        return g
    return g.reshape((1,) * len(shape) if ctx.axes is None else keep_shape(shape, ctx.axes))


class Mean(Function):
    array_backward = True
    op_name = "mean"

    @staticmethod
    def forward(ctx: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        axes = norm_axes("mean", axis, x.ndim, x.shape)
        ctx.in_shape, ctx.axes = x.shape, axes
        if x.size == 0:
            raise ShapeError(f"mean of an empty tensor (shape {x.shape}): no values to average")
        return x.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        m = 1
        for a in ctx.axes:
            m *= ctx.in_shape[a]
        return broadcast_to(_kept(ctx, g, ctx.in_shape) * (1.0 / m), ctx.in_shape)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t.mean(axis=ctx.axes, keepdims=ctx.params.get("keepdims", False))


class Var(Function):
    """Variance ``mean((x - mean(x))**2) * m / (m - ddof)`` over ``axis``."""

    array_backward = True
    op_name = "var"

    @staticmethod
    def forward(ctx: Any, x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
        axes = norm_axes("var", axis, x.ndim, x.shape)
        m = 1
        for a in axes:
            m *= x.shape[a]
        if m - ddof <= 0:
            raise ShapeError(f"var needs more than ddof={ddof} values per reduction, got {m} "
                             f"(shape {x.shape}, axis={axis})")
        ctx.in_shape, ctx.axes, ctx.scale = x.shape, axes, 2.0 / (m - ddof)
        ctx.save_for_backward(x)
        return x.var(axis=axes, keepdims=keepdims, ddof=ddof)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        # Recomputing the centred x from the saved input keeps this differentiable.
        return _kept(ctx, g, ctx.in_shape) * ((x - x.mean(axis=ctx.axes, keepdims=True))
                                              * ctx.scale)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        (x,) = ctx.primals
        # d var = 2/(m - ddof) * sum((x - mean) * dx): the mean's own change sums to zero
        xc = x - x.mean(axis=ctx.axes, keepdims=True)
        return (xc * t).sum(axis=ctx.axes, keepdims=ctx.params.get("keepdims", False)) * ctx.scale


class _Extreme(Function):
    """max/min. Ties split the gradient equally among the tied elements."""

    array_backward = True
    reduce: Any = None

    @classmethod
    def forward(cls, ctx: Any, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        name = cls.op_name
        axes = norm_axes(name, axis, x.ndim, x.shape)
        if x.size == 0:
            raise ShapeError(f"{name} of an empty tensor (shape {x.shape}): no value to pick")
        y = cls.reduce(x, axis=axes, keepdims=True)
        mask = x == y
        w = mask / mask.sum(axis=axes, keepdims=True)
        ctx.save_for_backward(w.astype(x.dtype, copy=False))
        ctx.axes = axes
        return y if keepdims else y.reshape(tuple(s for i, s in enumerate(x.shape)
                                                  if i not in axes))

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (w,) = ctx.saved_tensors
        return _kept(ctx, g, tuple(w.shape)) * w

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        (w,) = ctx.saved  # the adjoint of the VJP: ties average their tangents
        return (t * w).sum(axis=ctx.axes, keepdims=ctx.params.get("keepdims", False))


class Max(_Extreme):
    op_name = "max"
    reduce = staticmethod(np.max)


class Min(_Extreme):
    op_name = "min"
    reduce = staticmethod(np.min)


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Sum over ``axis`` (None: all axes; an int; or a tuple of ints)."""
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Arithmetic mean over ``axis``."""
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def var(x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
    """Variance over ``axis``; ``ddof=0`` is the biased (population) estimate."""
    return Var.apply(x, axis=axis, keepdims=keepdims, ddof=ddof)


def std(x: Any, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Any:
    """Standard deviation, ``sqrt(var(x))``."""
    from .unary import sqrt

    return sqrt(var(x, axis=axis, keepdims=keepdims, ddof=ddof))


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Maximum over ``axis``; tied maxima share the gradient equally."""
    return Max.apply(x, axis=axis, keepdims=keepdims)


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Minimum over ``axis``; tied minima share the gradient equally."""
    return Min.apply(x, axis=axis, keepdims=keepdims)


def argmax(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Index of the maximum (an integer tensor, no gradient)."""
    from ..tensor import Tensor

    if x._data.size == 0 and (axis is None or x._data.shape[axis] == 0):
        raise ShapeError(f"argmax over an empty axis (shape {x.shape}, axis={axis}): no "
                         "position to point to")
    return Tensor._wrap(x._data.argmax(axis=axis, keepdims=keepdims))


def argmin(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Index of the minimum (an integer tensor, no gradient)."""
    from ..tensor import Tensor

    if x._data.size == 0 and (axis is None or x._data.shape[axis] == 0):
        raise ShapeError(f"argmin over an empty axis (shape {x.shape}, axis={axis}): no "
                         "position to point to")
    return Tensor._wrap(x._data.argmin(axis=axis, keepdims=keepdims))


# ------------------------------------------- broadcasting and its adjoint, summing back
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

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return _sum_to_array(t, ctx.params["shape"])


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

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t  # broadcast to the output's shape by the caller


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
