"""The process world and the collectives on it: ``init``, ``rank``, ``all_reduce``, ...

One world per process, made by `init` and kept here. The collectives accept NumPy or
CuPy arrays (and return arrays) or Tensors (and return Tensors). On Tensors ``sum`` and
``mean`` reductions, ``all_gather`` and ``broadcast`` are differentiable: each is an
``mg.Function`` whose backward is the matching collective on the gradient (the adjoint of
"every rank gets the sum" is again "every rank gets the sum"), so a loss built from them
back-propagates across processes, as long as every rank runs that backward too.
"""

from __future__ import annotations

import sys
from typing import Any

from ..autograd.forward import dense
from ..autograd.function import Function, is_grad_enabled
from ..creation import as_tensor
from ..errors import DistributedError
from ..tensor import Tensor
from .comm import (Communicator, LocalCommunicator, MPICommunicator, NCCLCommunicator,
                   abort_on_exception, launched_world)

#: What ``init(backend=...)`` accepts (None picks one, see `init`).
BACKENDS = ("local", "mpi", "nccl")

_world: list[Communicator | None] = [None]


def init(backend: str | None = None) -> Communicator:
    """Join the job's world of processes and return its communicator.

    ``backend=None`` picks ``"mpi"`` when an MPI launcher started this process
    (``mpiexec -n N python ...``; seen from ``PMI_SIZE``, ``OMPI_COMM_WORLD_SIZE``, ...)
    and ``"local"``, a world of one, otherwise. ``"nccl"`` (GPUs, CuPy) must be asked
    for. Under MPI an uncaught exception on any rank aborts the whole job (see
    ``comm.abort_on_exception``). Calling ``init`` again returns the same world;
    asking for another backend then is an error (call `shutdown` first).
    """
    if backend is not None and backend not in BACKENDS:
        raise DistributedError(f"init: backend must be one of {BACKENDS} or None, got "
                               f"{backend!r}")
    launched = launched_world()
    if backend is None:
        backend = "mpi" if launched is not None else "local"
    current = _world[0]
    if current is not None:
        if current.backend != backend:
            raise DistributedError(f"init({backend!r}): this process already joined a "
                                   f"{current.backend!r} world; call "
                                   "mg.distributed.shutdown() first to change backends")
        return current
    if backend == "local" and launched is not None and launched[1] > 1:
        raise DistributedError(
            f"init('local'): this process is rank {launched[0]} of {launched[1]} started by "
            "an MPI launcher; a world of one here would train each rank alone. Use "
            "init('mpi') or init()")
    if backend == "local":
        comm: Communicator = LocalCommunicator()
    elif backend == "mpi":
        comm = MPICommunicator()
        abort_on_exception(comm)
    else:
        comm = NCCLCommunicator()
        if launched is not None:
            abort_on_exception(comm)
    _world[0] = comm
    return comm


def is_initialized() -> bool:
    """Whether `init` has been called (and not undone by `shutdown`)."""
    return _world[0] is not None


def shutdown() -> None:
    """Leave the world: later collectives need a new `init`. The MPI library itself stays
    initialised until the process exits (mpi4py finalizes it then)."""
    comm, _world[0] = _world[0], None
    previous = getattr(sys.excepthook, "previous", None)
    if previous is not None:
        sys.excepthook = previous
    if comm is not None:
        comm.close()


def communicator() -> Communicator:
    """The world's communicator; a clear error before `init`."""
    comm = _world[0]
    if comm is None:
        raise DistributedError(
            "minigrad.distributed is not initialised: call mg.distributed.init() first (it "
            "joins the MPI job under mpiexec, or makes a world of one process otherwise)")
    return comm


def rank() -> int:
    """This process's rank, ``0 .. world_size() - 1``."""
    return communicator().rank


def world_size() -> int:
    """The number of processes in the world."""
    return communicator().size


def barrier() -> None:
    """Wait until every rank has called ``barrier()``."""
    communicator().barrier()


def all_reduce(x: Any, op: str = "sum", comm: Communicator | None = None) -> Any:
    """Every rank's ``x`` reduced element-wise (``op`` in ``sum, mean, max, min, prod``).

    Returns a new array or Tensor, the same on every rank; ``x`` is not changed. For a
    Tensor, ``sum`` and ``mean`` are differentiable; ``max``, ``min`` and ``prod`` are
    not, and refuse a Tensor that requires grad while grad mode is on.
    """
    comm = comm or communicator()
    if not isinstance(x, Tensor):
        return comm.all_reduce(x, op)
    if op in ("sum", "mean"):
        return _AllReduce.apply(x, op=op, comm=comm)
    if x.requires_grad and is_grad_enabled():
        raise DistributedError(f"all_reduce(op={op!r}) has no gradient; detach the tensor "
                               "or call it under mg.no_grad()")
    return as_tensor(comm.all_reduce(x.data, op))


def all_gather(x: Any, comm: Communicator | None = None) -> Any:
    """Every rank's ``x`` stacked in rank order, shape ``(world_size, *x.shape)``.

    Every rank must pass the same shape and dtype. Differentiable on Tensors.
    """
    comm = comm or communicator()
    if not isinstance(x, Tensor):
        return comm.all_gather(x)
    return _AllGather.apply(x, comm=comm)


def broadcast(x: Any, root: int = 0, comm: Communicator | None = None) -> Any:
    """Rank ``root``'s ``x`` on every rank (the others pass an array of the same shape and
    dtype, whose values are ignored). Differentiable on Tensors."""
    comm = comm or communicator()
    if not isinstance(x, Tensor):
        return comm.broadcast(x, root)
    return _Broadcast.apply(x, root=root, comm=comm)


class _AllReduce(Function):
    """``y = sum (or mean) over ranks of x``; its VJP is the same reduction of dy."""

    op_name = "all_reduce"

    @staticmethod
    def forward(ctx: Any, x: Any, op: str, comm: Communicator) -> Any:
        return comm.all_reduce(x, op)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> Tensor:
        return all_reduce(dy, ctx.params["op"], ctx.params["comm"])

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        # Linear: the same reduction of the tangents. Every rank must join the
        # collective, so a symbolic zero travels as real zeros.
        return ctx.params["comm"].all_reduce(dense(t, ctx.primals[0]), ctx.params["op"])


class _AllGather(Function):
    """``y[r] = x on rank r``; the VJP for this rank's x is row ``rank`` of the sum of dy."""

    op_name = "all_gather"

    @staticmethod
    def forward(ctx: Any, x: Any, comm: Communicator) -> Any:
        return comm.all_gather(x)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> Tensor:
        comm = ctx.params["comm"]
        return all_reduce(dy, "sum", comm)[comm.rank]

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return ctx.params["comm"].all_gather(dense(t, ctx.primals[0]))


class _Broadcast(Function):
    """``y = x on the root``; the VJP is the sum of dy on the root and zero elsewhere."""

    op_name = "broadcast"

    @staticmethod
    def forward(ctx: Any, x: Any, root: int, comm: Communicator) -> Any:
        return comm.broadcast(x, root)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> Tensor:
        comm = ctx.params["comm"]
        total = all_reduce(dy, "sum", comm)
        return total if comm.rank == ctx.params["root"] else total * 0

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return ctx.params["comm"].broadcast(dense(t, ctx.primals[0]), ctx.params["root"])
