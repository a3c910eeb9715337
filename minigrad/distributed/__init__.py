"""Data-parallel training over several processes: MPI on CPUs, NCCL on GPUs.

Launch one process per CPU core (or GPU) with ``mpiexec -n N python train.py``; each
calls ``mg.distributed.init()`` and becomes one *rank* of the world. Then:

* collectives on arrays and Tensors: `all_reduce`, `all_gather`, `broadcast`, `barrier`,
  with `rank` and `world_size`;
* `DataParallel` keeps one model replica per rank equal (rank 0's weights at the start,
  averaged gradients at every step);
* ``mg.nn.SyncBatchNorm`` normalizes with the statistics of the whole batch, across
  ranks, instead of each rank's slice;
* ``mg.data.DistributedSampler`` hands each rank its share of every epoch.

Without ``mpiexec``, ``init()`` makes a world of one process, so the same script runs
alone. Install the MPI parts with ``pip install minigrad[mpi]``.
"""

from ..errors import DistributedError
from .collectives import (BACKENDS, all_gather, all_reduce, barrier, broadcast, communicator,
                          init, is_initialized, rank, shutdown, world_size)
from .comm import (REDUCE_OPS, Communicator, LocalCommunicator, MPICommunicator,
                   NCCLCommunicator, launched_world)
from .parallel import DataParallel

__all__ = ["BACKENDS", "REDUCE_OPS", "Communicator", "DataParallel", "DistributedError",
           "LocalCommunicator", "MPICommunicator", "NCCLCommunicator", "all_gather",
           "all_reduce", "barrier", "broadcast", "communicator", "init", "is_initialized",
           "launched_world", "rank", "shutdown", "world_size"]
