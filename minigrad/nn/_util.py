"""Small helpers shared by the layers' ops: argument checks and array plumbing."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..backend import xp_of
from ..errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError
from ..tensor import Tensor


def raw(x: Any) -> Any:
    """The backend array behind a Tensor (other values pass through)."""
    return x._data if isinstance(x, Tensor) else x


def as_tensor(x: Any, op: str) -> Tensor:
    """``x`` as a Tensor; arrays and lists are wrapped (constants, no gradient)."""
    if isinstance(x, Tensor):
        return x
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return Tensor._wrap(x)
    try:
        return Tensor(x)
    except Exception as exc:
        raise DTypeError(f"{op}: expected a Tensor or an array, got {type(x).__name__}") from exc


def pair(op: str, v: Any, what: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints as ``(height, width)``, each at least ``minimum``."""
    try:
        out = (operator.index(v),) * 2 if not isinstance(v, (tuple, list)) else tuple(
            operator.index(e) for e in v)
    except TypeError:
        raise ArgumentTypeError(f"{op}: {what} must be an int or a pair of ints, "
                                f"got {v!r}") from None
    if len(out) != 2 or min(out) < minimum:
        raise ArgumentError(f"{op}: {what} must be an int or a pair of ints, each >= "
                            f"{minimum}, got {v!r}")
    return out  # type: ignore[return-value]


def check_float(op: str, **tensors: Any) -> None:
    """Every named tensor has one floating-point dtype, or raise naming them all."""
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    for name, dt in dtypes.items():
        if np.dtype(dt).kind != "f":
            raise DTypeError(f"{op}: {name} must be floating point, got dtype {dt}; "
                             "convert it first, e.g. x.astype(mg.float32)")
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{n} {d}" for n, d in dtypes.items())
        raise DTypeError(f"{op}: operands must share one dtype, got {listing}; convert one "
                         "of them with .astype(...)")


def check_ndim(op: str, x: Any, ndim: int, layout: str) -> None:
    if x.ndim != ndim:
        raise ShapeError(f"{op}: expected a {ndim}-D input {layout}, got shape {tuple(x.shape)}")


def pad_spatial(x: Any, padding: tuple[int, int], value: float = 0.0) -> Any:
    """``x`` (N, C, H, W) with ``padding`` rows/columns of ``value`` on each side."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    xp = xp_of(x)
    # Filling a fresh buffer is several times faster than np.pad.
    if value == 0:
        out = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    else:
        out = xp.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def crop_spatial(x: Any, padding: tuple[int, int]) -> Any:
    """Undo `pad_spatial`: drop ``padding`` rows/columns on each side (a view)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return x[:, :, ph:x.shape[2] - ph, pw:x.shape[3] - pw]


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1
