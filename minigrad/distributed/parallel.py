"""`DataParallel`: one model replica per process, kept identical by averaging gradients.

Each rank runs the same model on its own slice of every batch. Before training, the
replicas are made equal by broadcasting rank 0's parameters and buffers; after each
backward, ``model.sync_gradients()`` replaces every gradient by its average over the
ranks, so the optimiser steps are the same everywhere and the replicas stay equal::

    model = mg.distributed.DataParallel(net)
    loss = F.cross_entropy(model(x_local), y_local)   # the mean over this rank's slice
    opt.zero_grad(); loss.backward()
    model.sync_gradients()                              # the explicit step: not a hook
    opt.step()

With equal slices, the average of the ranks' mean losses is the mean loss of the whole
batch, so these averaged gradients are the full batch's gradient exactly (up to rounding).

Gradients travel in *buckets*: the gradients are flattened and concatenated into a few
arrays of at most ``bucket_cap_mb`` megabytes each (per dtype and device), and each
bucket is one all-reduce, since a collective's fixed cost dwarfs the cost of its bytes
for small layers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import backend
from ..autograd.function import no_grad
from ..creation import as_tensor
from ..errors import ArgumentError, ArgumentTypeError
from ..nn.module import Module
from .collectives import communicator
from .comm import Communicator


class DataParallel(Module):
    """Wrap ``module`` for data-parallel training on every rank of the world.

    Args:
        module: the model; every rank must build the same architecture.
        comm: the communicator (default: the world's, so call ``init()`` first).
        bucket_cap_mb: the most megabytes of gradient in one all-reduce.

    Calling the wrapper calls ``module``. ``state_dict()`` and ``load_state_dict()`` are
    ``module``'s own (no ``module.`` prefix), so a checkpoint loads into a plain model.
    BatchNorm layers still normalize with each rank's own statistics: convert them with
    ``nn.SyncBatchNorm.convert_sync_batchnorm(model)`` first to use the whole batch's.
    """

    def __init__(self, module: Module, comm: Communicator | None = None,
                 bucket_cap_mb: float = 4.0) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise ArgumentTypeError(f"DataParallel: expected a Module, got {type(module).__name__}")
        if not bucket_cap_mb > 0:
            raise ArgumentError(f"DataParallel: bucket_cap_mb must be > 0, got {bucket_cap_mb!r}")
        self.module = module
        object.__setattr__(self, "comm", comm or communicator())
        object.__setattr__(self, "bucket_cap_mb", float(bucket_cap_mb))
        self.broadcast_parameters()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @no_grad()
    def broadcast_parameters(self, root: int = 0) -> None:
        """Copy rank ``root``'s parameters and buffers to every rank (in place)."""
        tensors = [p for p in self.module.parameters()] + \
            [b for b in self.module.buffers() if b is not None]
        for t in tensors:
            t.data = self.comm.broadcast(t.data, root)

    def buckets(self) -> list[list[Any]]:
        """The parameters in the groups that ``sync_gradients`` all-reduces together.

        In reverse order of registration (the order backward finishes them), cut where a
        bucket would pass ``bucket_cap_mb`` or the dtype or device changes.
        """
        cap = self.bucket_cap_mb * 2**20
        out: list[list[Any]] = []
        size, key = 0, None
        for p in reversed([p for p in self.module.parameters() if p.requires_grad]):
            nbytes = p.size * p.dtype.itemsize
            this = (p.dtype, p.device)
            if not out or this != key or size + nbytes > cap:
                out.append([])
                size, key = 0, this
            out[-1].append(p)
            size += nbytes
        return out

    @no_grad()
    def sync_gradients(self) -> None:
        """Replace each parameter's ``.grad`` by its average over the ranks.

        Call it after ``loss.backward()`` and before ``optimizer.step()`` on every rank.
        A rank without a gradient for a parameter counts as zeros; a parameter no rank
        has a gradient for keeps ``.grad = None`` (so weight decay skips it, as without
        data parallelism). One all-reduce per bucket; which ranks had each gradient
        travels in the last bucket.
        """
        buckets = self.buckets()
        if not buckets:
            return
        flags = [0.0 if p.grad is None else 1.0 for bucket in buckets for p in bucket]
        sums = []
        for k, bucket in enumerate(buckets):
            xp = backend.get_array_module(bucket[0].device)
            dt = bucket[0].dtype
            parts = [xp.zeros(p.size, dt) if p.grad is None else p.grad.data.reshape(-1)
                     for p in bucket]
            if k == len(buckets) - 1:  # whose gradients exist, as 0/1 flags
                parts.append(xp.asarray(flags, dt))
            total = self.comm.all_reduce(xp.concatenate(parts), "sum")
            if k == len(buckets) - 1:  # which parameters some rank had a gradient for
                present = backend.to_device(total[-len(flags):] > 0, "cpu")
            total /= total.dtype.type(self.comm.size)  # the average, in one pass
            offsets = np.cumsum([0] + [p.size for p in bucket])
            sums += [(p, total[a:b]) for p, a, b in zip(bucket, offsets[:-1], offsets[1:])]
        for (p, average), has in zip(sums, present):
            if has:
                p.grad = as_tensor(average.reshape(p.shape))

    # The wrapper's checkpoints are the wrapped model's: no "module." prefix.
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> Any:
        return self.module.state_dict(prefix=prefix, keep_vars=keep_vars)

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict)

    def extra_repr(self) -> str:
        return f"world_size={self.comm.size}, bucket_cap_mb={self.bucket_cap_mb:g}"


__all__ = ["DataParallel"]
