"""Communicators: one small class per way of talking to the other processes.

A communicator moves raw arrays (NumPy or CuPy) between the processes of one job. Every
process runs the same program, and every collective is called by every process in the
same order; each process is one *rank* of a *world* of ``size`` ranks.

``LocalCommunicator``
    A world of one: each collective returns a copy of its input. What ``init()`` gives a
    process that was not launched by ``mpiexec``, so code written for many processes runs
    unchanged in one.
``MPICommunicator``
    MPI through ``mpi4py`` (``pip install minigrad[mpi]``), for CPUs. CuPy arrays are
    copied to the host and back, since the MPI wheels are not CUDA-aware.
``NCCLCommunicator``
    NVIDIA's NCCL through CuPy's ``cupyx.distributed``, for one GPU per process; NumPy
    arrays are copied to the GPU and back.

Each collective first exchanges a small signature of what every rank passed (which
collective, shape, dtype): ranks that disagree raise `DistributedError` on every rank,
instead of reading each other's memory wrongly or waiting forever. Every communicator
counts the collectives it ran and the seconds they took (``calls``, ``seconds``), which
is how the benchmark measures the share of a step spent communicating.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

from .. import backend
from ..errors import DistributedError, NotSupportedError

#: The reductions ``all_reduce`` knows. ``"mean"`` is the sum divided by the world size.
REDUCE_OPS = ("sum", "mean", "max", "min", "prod")
_KINDS = {"all_reduce": 1, "all_gather": 2, "broadcast": 3}
_MAX_DIMS = 16

#: Environment variables a launcher sets to the number of processes: MPICH/Hydra and
#: Intel MPI (PMI), Open MPI, PMIx-based launchers, MVAPICH.
LAUNCH_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
LAUNCH_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def launched_world() -> tuple[int, int] | None:
    """``(rank, size)`` when an MPI launcher (``mpiexec``) started this process, else None."""
    for size_var, rank_var in zip(LAUNCH_SIZE_VARS, LAUNCH_RANK_VARS):
        size, rank = os.environ.get(size_var), os.environ.get(rank_var)
        if size is not None and rank is not None:
            try:
                return int(rank), int(size)
            except ValueError:
                continue
    return None


def is_array(x: Any) -> bool:
    """A NumPy or CuPy array (what a communicator moves)."""
    return isinstance(x, np.ndarray) or backend.device_of(x) == "cuda"


class Communicator:
    """What every backend offers: ``rank``, ``size`` and four collectives on raw arrays.

    Subclasses implement ``_all_reduce``, ``_all_gather``, ``_broadcast``, ``_barrier``
    and ``abort``; the public methods check the arguments, check that every rank agrees,
    and time the call. Results are new arrays on the input's device; inputs are never
    changed.
    """

    backend = ""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size = int(rank), int(size)
        self.calls = 0        # collectives run so far
        self.seconds = 0.0    # wall time spent in them

    # ------------------------------------------------------------ collectives
    def all_reduce(self, a: Any, op: str = "sum") -> Any:
        """The element-wise reduction (``op`` in `REDUCE_OPS`) of every rank's ``a``."""
        if op not in REDUCE_OPS:
            raise DistributedError(f"all_reduce: op must be one of {REDUCE_OPS}, got {op!r}")
        if op == "mean" and getattr(a, "dtype", np.dtype(float)).kind not in "fc":
            raise DistributedError(f"all_reduce: op='mean' needs a floating-point array, got "
                                   f"dtype {a.dtype}; use op='sum' for integers")
        t0 = time.perf_counter()
        self._agree("all_reduce", a, REDUCE_OPS.index(op))
        out = self._all_reduce(a, "sum" if op == "mean" else op)
        if op == "mean":
            out = out / out.dtype.type(self.size)
        self._count(t0)
        return out

    def all_gather(self, a: Any) -> Any:
        """Every rank's ``a`` stacked in rank order: shape ``(size, *a.shape)``."""
        t0 = time.perf_counter()
        self._agree("all_gather", a, 0)
        out = self._all_gather(a)
        self._count(t0)
        return out

    def broadcast(self, a: Any, root: int = 0) -> Any:
        """Rank ``root``'s ``a``, on every rank (the others pass an array of its shape)."""
        if not isinstance(root, (int, np.integer)) or not 0 <= root < self.size:
            raise DistributedError(f"broadcast: root must be a rank in 0..{self.size - 1}, "
                                   f"got {root!r}")
        t0 = time.perf_counter()
        self._agree("broadcast", a, int(root))
        out = self._broadcast(a, int(root))
        self._count(t0)
        return out

    def barrier(self) -> None:
        """Wait until every rank has reached this call."""
        t0 = time.perf_counter()
        self._barrier()
        self._count(t0)

    def abort(self, code: int = 1) -> None:
        """End every process of the job now (after a failure on this rank)."""
        raise NotSupportedError(f"{type(self).__name__} does not define abort()")

    def close(self) -> None:
        """Release what the communicator holds (``mg.distributed.shutdown`` calls it)."""

    # ------------------------------------------------------------ helpers
    def _count(self, t0: float) -> None:
        self.calls += 1
        self.seconds += time.perf_counter() - t0

    def _agree(self, kind: str, a: Any, extra: int) -> None:
        """Check that every rank called the same collective on the same shape and dtype."""
        if not is_array(a):
            raise DistributedError(f"{kind}: expected a NumPy or CuPy array or a Tensor, got "
                                   f"{type(a).__name__}")
        if a.ndim > _MAX_DIMS:
            raise DistributedError(f"{kind}: arrays of more than {_MAX_DIMS} dimensions are "
                                   f"not supported, got shape {tuple(a.shape)}")
        if self.size == 1:
            return
        sig = np.zeros(4 + _MAX_DIMS, np.int64)
        sig[:4] = _KINDS[kind], extra, a.ndim, _dtype_code(a.dtype)
        sig[4:4 + a.ndim] = a.shape
        sigs = self._all_gather_signature(sig)
        if (sigs == sig).all():
            return
        described = "; ".join(f"rank {r}: {_describe(s)}" for r, s in enumerate(sigs))
        raise DistributedError(
            f"{kind} on rank {self.rank}: the ranks disagree ({described}); every rank must "
            f"make the same collective calls in the same order, with arrays of the same shape "
            f"and dtype (and the same op or root)")

    def _all_gather_signature(self, sig: np.ndarray) -> np.ndarray:
        return self._all_gather(sig)

    def _all_reduce(self, a: Any, op: str) -> Any:
        raise NotSupportedError(f"{type(self).__name__} does not define _all_reduce()")

    def _all_gather(self, a: Any) -> Any:
        raise NotSupportedError(f"{type(self).__name__} does not define _all_gather()")

    def _broadcast(self, a: Any, root: int) -> Any:
        raise NotSupportedError(f"{type(self).__name__} does not define _broadcast()")

    def _barrier(self) -> None:
        raise NotSupportedError(f"{type(self).__name__} does not define _barrier()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"

    # A communicator is a handle on the job's processes, not data: copies of a model
    # (copy.deepcopy) share it, as they share the processes.
    def __copy__(self) -> Communicator:
        return self

    def __deepcopy__(self, memo: dict) -> Communicator:
        return self


_DTYPES = [np.dtype(c) for c in "?bBhHiIlLqQefdgFD"]


def _dtype_code(dtype: Any) -> int:
    dtype = np.dtype(dtype)
    return _DTYPES.index(dtype) if dtype in _DTYPES else 999


def _describe(sig: np.ndarray) -> str:
    kind = {v: k for k, v in _KINDS.items()}.get(int(sig[0]), "?")
    code, ndim = int(sig[3]), int(sig[2])
    dtype = _DTYPES[code] if code < len(_DTYPES) else "other dtype"
    extra = ""
    if kind == "all_reduce":
        extra = f" op={REDUCE_OPS[int(sig[1])]!r}"
    elif kind == "broadcast":
        extra = f" root={int(sig[1])}"
    return f"{kind}{extra} of {dtype} {tuple(int(d) for d in sig[4:4 + ndim])}"


# ---------------------------------------------------------------------- a world of one
class LocalCommunicator(Communicator):
    """A world of one process: every collective returns a copy of its input."""

    backend = "local"

    def __init__(self) -> None:
        super().__init__(0, 1)

    def _all_reduce(self, a: Any, op: str) -> Any:
        return a.copy()

    def _all_gather(self, a: Any) -> Any:
        return a[None].copy()

    def _broadcast(self, a: Any, root: int) -> Any:
        return a.copy()

    def _barrier(self) -> None:
        pass

    def abort(self, code: int = 1) -> None:
        os._exit(code)


# ---------------------------------------------------------------------- MPI
class MPICommunicator(Communicator):
    """MPI collectives through mpi4py's buffer interface (no pickling).

    ``init("mpi")`` also installs `abort_on_exception`: an uncaught exception on one rank
    prints its traceback and calls ``MPI_Abort``, which ends every rank of the job;
    without it the other ranks would wait forever in their next collective.
    """

    backend = "mpi"

    def __init__(self, comm: Any = None) -> None:
        mpi = import_mpi()
        self.MPI = mpi
        self.comm = mpi.COMM_WORLD if comm is None else comm
        super().__init__(self.comm.Get_rank(), self.comm.Get_size())
        self._ops = {"sum": mpi.SUM, "max": mpi.MAX, "min": mpi.MIN, "prod": mpi.PROD}

    def _all_reduce(self, a: Any, op: str) -> Any:
        host, back = _on_host(a)
        out = np.empty_like(host)
        self.comm.Allreduce(host, out, op=self._ops[op])
        return back(out)

    def _all_gather(self, a: Any) -> Any:
        host, back = _on_host(a)
        out = np.empty((self.size, *host.shape), host.dtype)
        self.comm.Allgather(host, out)
        return back(out)

    def _broadcast(self, a: Any, root: int) -> Any:
        host, back = _on_host(a)
        buf = host.copy()
        self.comm.Bcast(buf, root=root)
        return back(buf)

    def _barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)


def import_mpi() -> Any:
    """``mpi4py.MPI``, or a `DistributedError` that says what to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            "the MPI backend needs mpi4py and an MPI library: pip install minigrad[mpi] "
            f"(mpi4py and the mpich wheel); importing mpi4py failed: {exc}") from None
    return MPI


def _on_host(a: Any) -> tuple[np.ndarray, Any]:
    """``a`` as a contiguous NumPy array, and the function that puts a result back."""
    if isinstance(a, np.ndarray):
        return _contiguous(a), lambda out: out
    return _contiguous(backend.to_device(a, "cpu")), lambda out: backend.to_device(out, "cuda")


def _contiguous(a: Any) -> Any:
    """``a`` in C order, keeping its shape (``ascontiguousarray`` makes 0-d arrays 1-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def abort_on_exception(comm: Communicator) -> None:
    """Make an uncaught exception on this rank end the whole job instead of hanging it.

    The previous ``sys.excepthook`` still prints the traceback first; then the process
    calls ``comm.abort(1)`` (``MPI_Abort``), and the launcher stops every other rank.
    """
    previous = sys.excepthook

    def hook(kind: type, value: BaseException, tb: Any) -> None:
        try:
            previous(kind, value, tb)
            print(f"minigrad.distributed: rank {comm.rank} of {comm.size} failed; aborting "
                  "the job", file=sys.stderr)
            sys.stderr.flush()
            sys.stdout.flush()
            # The launcher forwards each rank's output through a pipe and stops reading
            # it once MPI_Abort kills the job: give it a moment to pass the traceback on.
            time.sleep(0.5)
        finally:
            comm.abort(1)

    hook.previous = previous  # type: ignore[attr-defined]  # shutdown() restores it
    sys.excepthook = hook


# ---------------------------------------------------------------------- NCCL
class NCCLCommunicator(Communicator):
    """NCCL through ``cupyx.distributed`` (one GPU per process, CuPy arrays).

    Rank and size come from the MPI launcher when there is one (then mpi4py carries
    NCCL's start-up handshake), else from ``RANK``/``WORLD_SIZE``; the GPU is
    ``local rank % GPU count``. Without a launcher, rank 0 serves the handshake on
    ``CUPYX_DISTRIBUTED_HOST:CUPYX_DISTRIBUTED_PORT`` (CuPy's defaults 127.0.0.1:13333).
    """

    backend = "nccl"

    def __init__(self) -> None:
        if not backend.cuda_available():
            raise DistributedError("init('nccl') needs CuPy and a CUDA GPU, and none is usable "
                                   "here; use init('mpi') (or init()) on CPUs")
        cp = backend.get_array_module("cuda")
        try:
            import cupyx.distributed as cxd
        except ImportError as exc:
            raise DistributedError(f"init('nccl'): cupyx.distributed is missing ({exc}); "
                                   "it needs CuPy >= 12 built with NCCL") from None
        launched = launched_world()
        use_mpi = launched is not None
        if use_mpi:
            rank, size = launched
            import_mpi()  # NCCL's handshake goes through mpi4py
        else:
            rank = int(os.environ.get("RANK", "0"))
            size = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("MPI_LOCALRANKID", os.environ.get("LOCAL_RANK", rank)))
        cp.cuda.Device(local % cp.cuda.runtime.getDeviceCount()).use()
        super().__init__(rank, size)
        self.cp = cp
        self.nccl = cxd.init_process_group(size, rank, use_mpi=use_mpi)

    def _on_device(self, a: Any) -> tuple[Any, Any]:
        if isinstance(a, np.ndarray):
            return _contiguous(self.cp.asarray(a)), self.cp.asnumpy
        return _contiguous(a), lambda out: out

    def _all_reduce(self, a: Any, op: str) -> Any:
        dev, back = self._on_device(a)
        out = self.cp.empty_like(dev)
        self.nccl.all_reduce(dev, out, op)
        return back(out)

    def _all_gather(self, a: Any) -> Any:
        dev, back = self._on_device(a)
        out = self.cp.empty((self.size, *dev.shape), dev.dtype)
        self.nccl.all_gather(dev, out, dev.size)
        return back(out)

    def _broadcast(self, a: Any, root: int) -> Any:
        dev, back = self._on_device(a)
        buf = dev.copy()
        self.nccl.broadcast(buf, root)
        return back(buf)

    def _barrier(self) -> None:
        self.nccl.barrier()

    def abort(self, code: int = 1) -> None:
        if launched_world() is not None:
            import_mpi().COMM_WORLD.Abort(code)
        os._exit(code)
