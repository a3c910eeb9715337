"""`DistributedSampler`: each rank's share of a dataset, epoch by epoch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import MinigradError


class SamplerError(MinigradError, ValueError):
    """A sampler got arguments it cannot use, or was combined with ``shuffle=True``."""


class DistributedSampler:
    """The example indices one rank visits in an epoch: every ``num_replicas``-th of a
    (shuffled) order, starting at ``rank``.

    ``DataLoader(dataset, batch_size=b, sampler=DistributedSampler(dataset))`` on every
    rank: in each epoch the ranks' shares are disjoint and together cover the dataset.
    Epoch ``e``'s order depends only on ``(seed, e)``, the same on every rank; a
    `DataLoader` given the sampler calls `set_epoch` itself at the start of each pass
    (call it yourself when iterating the sampler directly).

    Unless ``drop_last``, the order is padded with its own first indices up to a
    multiple of ``num_replicas`` so that every rank gets the same number of examples
    (every rank must take the same number of steps); with ``drop_last`` the tail is
    left out instead. ``num_replicas`` and ``rank`` default to the world's
    (``mg.distributed.init()`` first).
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            from ..distributed import communicator
            comm = communicator()
            num_replicas = comm.size if num_replicas is None else num_replicas
            rank = comm.rank if rank is None else rank
        if not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
            raise SamplerError(f"DistributedSampler: num_replicas must be a positive int, "
                               f"got {num_replicas!r}")
        if not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise SamplerError(f"DistributedSampler: rank must be in 0..{num_replicas - 1}, "
                               f"got {rank!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise SamplerError(f"DistributedSampler: seed must be a non-negative int, got "
                               f"{seed!r}")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0

    def _total(self) -> int:
        """Examples visited per epoch by all ranks together."""
        n, r = len(self.dataset), self.num_replicas
        return n // r * r if self.drop_last else -(-n // r) * r

    def __len__(self) -> int:
        return self._total() // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order from now on."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, in visiting order."""
        n = len(self.dataset)
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(n)
                 if self.shuffle else np.arange(n))
        total = self._total()
        order = order[:total] if total <= n else np.resize(order, total)  # pad by repeating
        return order[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __repr__(self) -> str:
        return (f"DistributedSampler(rank={self.rank}, num_replicas={self.num_replicas}, "
                f"shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch})")
