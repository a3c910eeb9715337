"""`DataLoader`: iterate over a dataset in (shuffled) mini-batches, resumably."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .. import backend
from .. import random as _random
from ..errors import ArgumentError, ArgumentTypeError, InvalidStateError, ShapeError
from ..tensor import Tensor
from .sampler import SamplerError


def collate(items: list[Any]) -> Any:
    """Stack a list of examples into one batch, field by field.

    Each example may be a Tensor, an array, a number, or a tuple/list/dict of
    those (all examples alike); the result has the same structure with a new
    leading batch axis. Python floats become float32, as in ``mg.tensor``.
    """
    first = items[0]
    if isinstance(first, (tuple, list)):
        if any(not isinstance(it, (tuple, list)) or len(it) != len(first) for it in items):
            raise ArgumentError("collate: examples have different structures; every "
                                f"example must be a {type(first).__name__} of "
                                f"{len(first)} fields")
        return tuple(collate([it[i] for it in items]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: collate([it[k] for it in items]) for k in first}
    arrays = [it._data if isinstance(it, Tensor) else it for it in items]
    if hasattr(arrays[0], "shape") and not isinstance(arrays[0], np.generic):
        xp = backend.xp_of(arrays[0])
        try:
            return xp.stack(arrays)
        except ValueError as exc:
            shapes = sorted({tuple(a.shape) for a in arrays})
            raise ShapeError(f"collate: cannot stack examples of shapes {shapes[:4]}; every "
                             "example's field must have the same shape") from exc
    out = np.asarray(arrays)
    if out.dtype == object:
        raise ArgumentTypeError(f"collate: cannot batch examples of type "
                                f"{type(first).__name__}; expected Tensors, arrays, numbers, "
                                "or tuples/dicts of them")
    return out.astype(np.float32) if type(first) is float else out


class DataLoader:
    """Mini-batches of a dataset, as Tensors.

    ``for x, y in DataLoader(ds, batch_size=64, shuffle=True, seed=0): ...``

    Args:
        dataset: a ``Dataset`` (anything with ``len`` and ``[i]``).
        batch_size: examples per batch.
        shuffle: visit the examples in a new random order every epoch.
        drop_last: skip the last batch when it would be smaller than ``batch_size``.
        seed: the shuffle seed. Epoch ``e``'s order depends only on ``(seed, e)``, so
            it is the same on every run. With ``seed=None`` a seed is drawn from
            minigrad's generator when the loader is built, so ``mg.manual_seed``
            makes it reproducible.
        device: put batches on this device (default: where the data is).
        sampler: the indices to visit instead (e.g. a ``DistributedSampler``); the
            loader calls its ``set_epoch(epoch)`` at the start of each pass, if it has
            one. Not with ``shuffle=True`` (the sampler decides the order).

    A batch is a Tensor, or a tuple of Tensors when the examples have several
    fields (``(image, label)``). Datasets with an ``arrays`` attribute or a
    ``get_batch(indices)`` method (``TensorDataset``, ``MNIST``) are batched with
    one fancy-index per array; others by stacking ``dataset[i]`` item by item.

    Each ``iter(loader)`` (each ``for`` loop) is one epoch; ``loader.epoch`` counts
    them. ``state_dict()`` records the position, epoch and batch, so that after
    ``load_state_dict`` the next loop yields exactly the batches an uninterrupted
    run would have yielded next.
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int | None = None,
                 device: str | None = None, sampler: Any = None) -> None:
        if sampler is not None and shuffle:
            raise SamplerError("DataLoader: give either shuffle=True or a sampler, not both; "
                               "the sampler decides the order")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise ArgumentTypeError(f"DataLoader: expected a Dataset (with __len__ and "
                                    f"__getitem__), got {type(dataset).__name__}")
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
                or batch_size < 1:
            raise ArgumentError(f"DataLoader: batch_size must be a positive int, got "
                                f"{batch_size!r}")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ArgumentError(f"DataLoader: seed must be a non-negative int or None, "
                                f"got {seed!r}")
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.device = backend.check_device(device) if device is not None else None
        if self.device is not None:
            backend.get_array_module(self.device)  # fail now, clearly, if CuPy is missing
        if seed is None and self.shuffle:
            seed = int(_random.generator("cpu").integers(0, 2**63 - 1))
        self.seed = None if seed is None else int(seed)
        self.epoch = 0      # the epoch the next (or current) pass goes through
        self._batch = 0     # batches of that epoch already handed out
        self._fresh = True  # False while a pass is under way (or was abandoned)
        self._token = 0     # identifies the newest iterator; older ones stop working

    def __len__(self) -> int:
        n = len(self.dataset if self.sampler is None else self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The example indices, in the order epoch ``epoch`` visits them."""
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            return np.fromiter(iter(self.sampler), dtype=np.int64)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        # one generator per (seed, epoch): any epoch's order can be rebuilt on its own
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def set_epoch(self, epoch: int) -> None:
        """Make the next loop start at the beginning of epoch ``epoch``."""
        self.epoch, self._batch, self._fresh = int(epoch), 0, True
        self._token += 1

    def __iter__(self) -> Iterator[Any]:
        self._token += 1
        return self._run(self._token)

    def _run(self, token: int) -> Iterator[Any]:
        # runs from the first next(): an iterator made but never used changes nothing
        self._check(token)
        if not self._fresh:  # the previous pass was abandoned: move on to a new epoch
            self.epoch += 1
            self._batch = 0
        self._fresh = False
        epoch, start = self.epoch, self._batch
        order = self.order(epoch)
        for b in range(start, len(self)):
            indices = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = self._fetch(indices)
            self._batch = b + 1
            yield batch
            self._check(token)
        self.epoch = epoch + 1
        self._batch = 0
        self._fresh = True

    def _check(self, token: int) -> None:
        if token != self._token:
            raise InvalidStateError("DataLoader: this iterator was superseded by a newer "
                                    "iter(loader) (or by load_state_dict/set_epoch); use one "
                                    "loop over a loader at a time")

    def _fetch(self, indices: np.ndarray) -> Any:
        ds = self.dataset
        get_batch = getattr(ds, "get_batch", None)
        if get_batch is not None:
            fields = get_batch(indices)
            if isinstance(fields, list):
                fields = tuple(fields)
        elif getattr(ds, "arrays", None) is not None:
            fields = tuple(a[_on_device_of(indices, a)] for a in ds.arrays)
        else:
            fields = collate([ds[int(i)] for i in indices])
        return self._wrap(fields)

    def _wrap(self, fields: Any) -> Any:
        if isinstance(fields, tuple):
            out = tuple(self._wrap(f) for f in fields)
            return out[0] if len(out) == 1 else out
        if isinstance(fields, dict):
            return {k: self._wrap(v) for k, v in fields.items()}
        if isinstance(fields, Tensor):
            fields = fields._data
        if self.device is not None and backend.device_of(fields) != self.device:
            return Tensor(fields, device=self.device)  # one copy, and the device is registered
        return Tensor._wrap(fields)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The loader's position: ``epoch``, ``batch`` (batches of it already handed
        out), and what fixes the order (``seed``, ``batch_size``, ...)."""
        return {"epoch": self.epoch, "batch": self._batch, "seed": self.seed,
                "shuffle": self.shuffle, "batch_size": self.batch_size,
                "drop_last": self.drop_last, "num_examples": len(self.dataset)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from ``state_dict()``: the next loop yields the rest of that epoch.

        Everything is checked before anything changes: on an error the loader is as
        it was.
        """
        where = "DataLoader.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise ArgumentTypeError(f"{where}: expected a dict from DataLoader.state_dict(), "
                                    f"got {type(state_dict).__name__}")
        for key in ("shuffle", "batch_size", "drop_last", "num_examples"):
            if key in state_dict and state_dict[key] != self.state_dict()[key]:
                raise ArgumentError(
                    f"{where}: the saved loader had {key}={state_dict[key]!r} but this one "
                    f"has {self.state_dict()[key]!r}; the batches would not continue the "
                    "saved run")
        missing = {"epoch", "batch"} - set(state_dict)
        if missing:
            raise ArgumentError(f"{where}: missing keys {sorted(missing)}; expected "
                                "'epoch' and 'batch'")
        epoch = _whole(where, "epoch", state_dict["epoch"], 0)
        batch = _whole(where, "batch", state_dict["batch"], 0)
        if batch > len(self):
            raise ArgumentError(f"{where}: batch={batch} is outside 0..{len(self)}")
        seed = state_dict.get("seed")
        if seed is not None:
            self.seed = _whole(where, "seed", seed, 0)
        self.epoch = epoch
        self._batch = batch
        self._fresh = True
        self._token += 1

    def __repr__(self) -> str:
        return (f"DataLoader({type(self.dataset).__name__} of {len(self.dataset)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, epoch={self.epoch})")


def _whole(where: str, key: str, value: Any, low: int) -> int:
    """``value`` as an int ``>= low``; a saved position must be a whole number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"{where}: {key}={value!r} is a {type(value).__name__}; "
                                f"expected an int >= {low}")
    if value < low:
        raise ArgumentError(f"{where}: {key}={value!r}; expected an int >= {low}")
    return int(value)


def _on_device_of(indices: np.ndarray, array: Any) -> Any:
    """The index array on the same device as ``array`` (CuPy wants device indices)."""
    if backend.xp_of(array) is np:
        return indices
    return backend.to_device(indices, "cuda")
