"""`Dataset` and `TensorDataset`: indexable collections of examples."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .. import backend
from ..errors import ArgumentError, ArgumentTypeError, IndexOutOfRangeError, ShapeError
from ..tensor import Tensor


class Dataset(ABC):
    """A collection of examples: ``len(ds)`` and ``ds[i]`` for ``0 <= i < len(ds)``.

    Subclass it and implement ``__len__`` and ``__getitem__`` (returning a Tensor,
    an array, a number, or a tuple/dict of them). ``DataLoader`` then batches the
    items by stacking them.

    A dataset whose examples sit in whole arrays can be batched much faster: give
    it an ``arrays`` attribute (a tuple of arrays sharing their first axis) or a
    ``get_batch(indices)`` method returning an array or a tuple of arrays for an
    integer index array. ``DataLoader`` then gathers a batch with one fancy-index
    per array instead of one ``__getitem__`` call per example.
    """

    @abstractmethod
    def __len__(self) -> int:
        """The number of examples."""

    @abstractmethod
    def __getitem__(self, index: int) -> Any:
        """Example number ``index``."""


def _as_array(x: Any, where: str) -> Any:
    if isinstance(x, Tensor):
        return x._data
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return x  # a NumPy or CuPy array, used as is (no copy)
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ArgumentTypeError(f"{where}: cannot make an array from {type(x).__name__}")
    return arr.astype(np.float32) if arr.dtype == np.float64 else arr


class TensorDataset(Dataset):
    """Examples taken along the first axis of one or more arrays.

    ``TensorDataset(x, y)`` has ``len(x)`` examples; item ``i`` is ``(x[i], y[i])``
    as Tensors (a bare Tensor when there is a single array). Accepts Tensors,
    NumPy/CuPy arrays and nested lists (Python floats become float32, as in
    ``mg.tensor``). The arrays are shared, not copied; they are in ``.arrays``.
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ArgumentError("TensorDataset: expected at least one tensor or array, "
                                "got none")
        arrays = tuple(_as_array(t, "TensorDataset") for t in tensors)
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ShapeError(f"TensorDataset: argument {i} is a scalar; each argument "
                                 "needs a first axis that indexes the examples")
        lengths = [a.shape[0] for a in arrays]
        if len(set(lengths)) != 1:
            raise ShapeError(f"TensorDataset: all arguments must have the same length along "
                             f"the first axis, got lengths {lengths}")
        self.arrays = arrays

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def __getitem__(self, index: int) -> Any:
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise ArgumentTypeError(f"TensorDataset: index must be an int, got "
                                    f"{type(index).__name__}")
        if not -n <= index < n:
            raise IndexOutOfRangeError(f"TensorDataset: index {index} is out of range for {n} "
                                       f"examples; expected -{n} <= index < {n}")
        items = tuple(Tensor._wrap(a[index].copy()) for a in self.arrays)
        return items[0] if len(items) == 1 else items

    def __repr__(self) -> str:
        fields = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in self.arrays)
        return f"TensorDataset({len(self)} examples: {fields}, {backend.device_of(self.arrays[0])})"
