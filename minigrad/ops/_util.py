"""Small helpers shared by the primitives: shapes and axis checks."""

from __future__ import annotations

import operator
from typing import Any

from ..errors import ArgumentTypeError, ShapeError


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
            raise ArgumentTypeError(f"{op}: axis must be an int or a tuple of ints, "
                                    f"got {axis!r}") from None
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
