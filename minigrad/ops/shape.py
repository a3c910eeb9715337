"""Ops that move values around: reshape, transpose, indexing, joining, selecting."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..autograd.function import Function, dual
from ..autograd.forward import dense
from ..errors import ArgumentError, ShapeError
from .reduce import BroadcastTo


def _share_version(out: Any, x: Any) -> Any:
    """Views share the version counter of their base, so writes through either count."""
    if x._vc is None:
        x._vc = [0]
    out._vc = x._vc
    return out


class Reshape(Function):
    array_backward = True
    op_name = "reshape"

    @staticmethod
    def forward(ctx: Any, x: Any, shape: tuple) -> Any:
        ctx.in_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g.reshape(ctx.in_shape)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t.reshape(ctx.params["shape"])


class Transpose(Function):
    array_backward = True
    op_name = "transpose"

    @staticmethod
    def forward(ctx: Any, x: Any, axes: Any = None) -> Any:
        if axes is None:
            axes = tuple(range(x.ndim))[::-1]
        elif sorted(a % max(x.ndim, 1) for a in axes) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {tuple(axes)} are not a permutation of the "
                             f"{x.ndim} axes of a tensor of shape {x.shape}")
        ctx.inv = tuple(np.argsort([a % x.ndim for a in axes]))
        return x.transpose(axes)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g.transpose(ctx.inv)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        axes = ctx.params.get("axes")
        return t.transpose(axes) if axes is not None else t.transpose()


class SwapAxes(Function):
    array_backward = True
    op_name = "swapaxes"

    @staticmethod
    def forward(ctx: Any, x: Any, a: int, b: int) -> Any:
        return x.swapaxes(a, b)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g.swapaxes(ctx.params["a"], ctx.params["b"])

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t.swapaxes(ctx.params["a"], ctx.params["b"])


class Squeeze(Function):
    array_backward = True
    op_name = "squeeze"

    @staticmethod
    def forward(ctx: Any, x: Any, axis: Any = None) -> Any:
        ctx.in_shape = x.shape
        return x.squeeze(axis=axis)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g.reshape(ctx.in_shape)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t.squeeze(axis=ctx.params.get("axis"))


def raw_index(idx: Any) -> Any:
    """An index with Tensors and lists replaced by backend arrays."""
    from ..tensor import Tensor

    def conv(i: Any) -> Any:
        if isinstance(i, Tensor):
            return i._data
        if isinstance(i, list):
            return np.asarray(i)
        return i

    if isinstance(idx, tuple):
        return tuple(conv(i) for i in idx)
    return conv(idx)


def _int_index(idx: Any) -> tuple:
    """The index as a tuple with boolean masks turned into integer arrays (for add.at)."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    out: list = []
    for i in idx:
        if hasattr(i, "dtype") and i.dtype == bool:
            out.extend(i.nonzero())
        else:
            out.append(i)
    return tuple(out)


class GetItem(Function):
    """``x[idx]``: basic slicing and integer-array indexing."""

    array_backward = True
    op_name = "getitem"

    @staticmethod
    def forward(ctx: Any, x: Any, idx: Any) -> Any:
        ctx.in_shape = x.shape
        return x[idx]

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return scatter_add(g, idx=ctx.params["idx"], shape=ctx.in_shape)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t[ctx.params["idx"]]


class ScatterAdd(Function):
    """Zeros of ``shape`` with ``g`` added at ``idx``; repeated indices accumulate."""

    array_backward = True
    op_name = "scatter_add"

    @staticmethod
    def forward(ctx: Any, g: Any, idx: Any, shape: tuple) -> Any:
        xp = backend.xp_of(g)
        out = xp.zeros(shape, dtype=g.dtype)
        full = idx if isinstance(idx, tuple) else (idx,)
        if not any(hasattr(i, "shape") for i in full):
            out[idx] = g  # basic indexing never repeats an element
        elif xp is np:
            np.add.at(out, _int_index(idx), g)
        else:
            import cupyx  # noqa: PLC0415 - only on the GPU

            cupyx.scatter_add(out, _int_index(idx), g)
        return out

    @staticmethod
    def backward(ctx: Any, gg: Any) -> Any:
        return gg[ctx.params["idx"]]

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        p = ctx.params
        return ScatterAdd.forward(ctx, t, p["idx"], p["shape"])


scatter_add = dual(ScatterAdd)


class Concatenate(Function):
    array_backward = True
    op_name = "concatenate"

    @staticmethod
    def forward(ctx: Any, *xs: Any, axis: int = 0) -> Any:
        ctx.sizes = [x.shape[axis] for x in xs]
        return backend.xp_of(xs[0]).concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        axis = ctx.params.get("axis", 0) % g.ndim
        out, start = [], 0
        for n in ctx.sizes:
            out.append(g[(slice(None),) * axis + (slice(start, start + n),)])
            start += n
        return tuple(out)

    @staticmethod
    def jvp(ctx: Any, *ts: Any) -> Any:
        xs = [dense(t, x) for t, x in zip(ts, ctx.primals)]
        return backend.xp_of(ctx.outputs).concatenate(xs, axis=ctx.params.get("axis", 0))


class Stack(Function):
    array_backward = True
    op_name = "stack"

    @staticmethod
    def forward(ctx: Any, *xs: Any, axis: int = 0) -> Any:
        ctx.n = len(xs)
        return backend.xp_of(xs[0]).stack(xs, axis=axis)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        axis = ctx.params.get("axis", 0) % g.ndim
        return tuple(g[(slice(None),) * axis + (i,)] for i in range(ctx.n))

    @staticmethod
    def jvp(ctx: Any, *ts: Any) -> Any:
        xs = [dense(t, x) for t, x in zip(ts, ctx.primals)]
        return backend.xp_of(ctx.outputs).stack(xs, axis=ctx.params.get("axis", 0))


class Where(Function):
    """``cond ? a : b`` elementwise; ``cond`` gets no gradient."""

    array_backward = True
    op_name = "where"

    @staticmethod
    def forward(ctx: Any, cond: Any, a: Any, b: Any) -> Any:
        out = np.where(cond, a, b)
        ctx.save_for_backward(backend.xp_of(out).asarray(cond, dtype=bool))
        return out

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (c,) = ctx.saved_tensors
        ga = g * c
        return None, ga, (g - ga if ctx.needs_input_grad[2] else None)

    @staticmethod
    def jvp(ctx: Any, tc: Any, ta: Any, tb: Any) -> Any:
        (c,) = ctx.saved
        _, a, b = ctx.primals
        return backend.xp_of(ctx.outputs).where(c, dense(ta, a), dense(tb, b))


class _Pairwise(Function):
    """maximum/minimum; where the two are equal the gradient is split in half."""

    array_backward = True
    pick: Any = None

    @classmethod
    def forward(cls, ctx: Any, a: Any, b: Any) -> Any:
        out = cls.pick(a, b)
        wa = (out == a) * 1.0 - (a == b) * 0.5
        ctx.save_for_backward(wa.astype(out.dtype, copy=False))
        return out

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (wa,) = ctx.saved_tensors
        ga = g * wa
        return ga, (g - ga if ctx.needs_input_grad[1] else None)

    @staticmethod
    def jvp(ctx: Any, ta: Any, tb: Any) -> Any:
        (wa,) = ctx.saved
        return ta * wa + tb * (1 - wa)


class Maximum(_Pairwise):
    op_name = "maximum"
    pick = staticmethod(np.maximum)


class Minimum(_Pairwise):
    op_name = "minimum"
    pick = staticmethod(np.minimum)


# ------------------------------------------------------------------ public API
def reshape(x: Any, shape: Any) -> Any:
    """The same values in a new shape (one entry may be -1)."""
    if isinstance(shape, int):
        shape = (shape,)
    return _share_version(Reshape.apply(x, shape=tuple(shape)), x)


def transpose(x: Any, axes: Any = None) -> Any:
    """Permute axes (reverse them when ``axes`` is None)."""
    return _share_version(Transpose.apply(x, axes=tuple(axes) if axes is not None else None), x)


def swapaxes(x: Any, a: int, b: int) -> Any:
    """Exchange two axes."""
    return _share_version(SwapAxes.apply(x, a=a, b=b), x)


def flatten(x: Any, start_axis: int = 0) -> Any:
    """Collapse the axes from ``start_axis`` on into one."""
    shape = x.shape
    start_axis %= max(len(shape), 1)
    return reshape(x, shape[:start_axis] + (-1,))


def squeeze(x: Any, axis: Any = None) -> Any:
    """Drop axes of size 1 (all of them, or those in ``axis``)."""
    return _share_version(Squeeze.apply(x, axis=axis), x)


def unsqueeze(x: Any, axis: int) -> Any:
    """Insert an axis of size 1 at position ``axis``."""
    shape = list(x.shape)
    n = len(shape) + 1
    if not -n <= axis < n:
        raise ShapeError(f"unsqueeze: axis {axis} is out of range for a result of {n} dims "
                         f"(input shape {tuple(shape)})")
    shape.insert(axis % n, 1)
    return reshape(x, tuple(shape))


def broadcast_to(x: Any, shape: Any) -> Any:
    """Repeat ``x`` along new or size-1 axes to ``shape``; gradients are summed back."""
    return _share_version(BroadcastTo.apply(x, shape=tuple(shape)), x)


def getitem(x: Any, idx: Any) -> Any:
    """``x[idx]``; repeated integer indices accumulate their gradients."""
    idx = raw_index(idx)
    out = GetItem.apply(x, idx=idx)
    parts = idx if isinstance(idx, tuple) else (idx,)
    if not any(hasattr(i, "shape") for i in parts):
        _share_version(out, x)  # basic indexing makes a view of x's memory
    return out


def concatenate(tensors: Any, axis: int = 0) -> Any:
    """Join tensors along an existing axis."""
    if isinstance(tensors, (list, tuple)) and not tensors:
        raise ArgumentError("concatenate: expected one tensor or more, got an empty sequence")
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors: Any, axis: int = 0) -> Any:
    """Join tensors along a new axis."""
    if isinstance(tensors, (list, tuple)) and not tensors:
        raise ArgumentError("stack: expected one tensor or more, got an empty sequence")
    return Stack.apply(*tensors, axis=axis)


def where(cond: Any, a: Any, b: Any) -> Any:
    """Elementwise ``a`` where ``cond`` is true, else ``b`` (with broadcasting)."""
    # The condition goes in as it came (a Tensor keeps its version counter, so changing
    # it in place before backward is caught).
    return Where.apply(cond, a, b)


def maximum(a: Any, b: Any) -> Any:
    """Elementwise maximum; ties split the gradient evenly."""
    return Maximum.apply(a, b)


def minimum(a: Any, b: Any) -> Any:
    """Elementwise minimum; ties split the gradient evenly."""
    return Minimum.apply(a, b)
