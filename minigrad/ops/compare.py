"""Comparisons and logic: results are boolean tensors, outside the tape."""

from __future__ import annotations

from typing import Any

import numpy as np


def _raw(x: Any) -> Any:
    from ..tensor import Tensor

    return x._data if isinstance(x, Tensor) else x


def _make(ufunc: Any, name: str) -> Any:
    def compare(a: Any, b: Any) -> Any:
        from ..errors import ShapeError
        from ..tensor import Tensor

        try:
            return Tensor._wrap(ufunc(_raw(a), _raw(b)))
        except ValueError as exc:
            raise ShapeError(f"{name}: cannot compare shapes {np.shape(_raw(a))} and "
                             f"{np.shape(_raw(b))}: {exc}") from None

    compare.__name__ = name
    compare.__doc__ = f"Elementwise ``{name}`` (a boolean tensor, no gradient)."
    return compare


equal = _make(np.equal, "equal")
not_equal = _make(np.not_equal, "not_equal")
less = _make(np.less, "less")
less_equal = _make(np.less_equal, "less_equal")
greater = _make(np.greater, "greater")
greater_equal = _make(np.greater_equal, "greater_equal")
logical_and = _make(np.logical_and, "logical_and")
logical_or = _make(np.logical_or, "logical_or")


def logical_not(a: Any) -> Any:
    """Elementwise not (a boolean tensor, no gradient)."""
    from ..tensor import Tensor

    return Tensor._wrap(np.logical_not(_raw(a)))
