"""Data-parallel training steps on 1 and 2 processes: steps/s and the share spent communicating.

The model is the paper's MLP (784-100-100-100-10, sigmoid) with SyncBatchNorm, batch 60
(the global batch: 30 rows per process on two), float32, SGD. Each configuration runs
under ``mpiexec -n P`` with one BLAS thread per process; rank 0 reports:

* ``steps/s``: median over blocks of steps of the whole step (forward, backward,
  ``sync_gradients``, SGD update);
* ``comm``: the share of that time inside collectives (the communicator's own clock:
  SyncBatchNorm's all_gather and all_reduce, the gradient buckets' all_reduce), which
  includes waiting for the slower rank.

For scale, one process without any of it: minigrad with plain BatchNorm1d and PyTorch
CPU (one thread), the same network. Hand-written NumPy has no counterpart here: the
question is what communication costs, not what autograd does.

    python benchmarks/distributed.py [--steps 300]
"""

from __future__ import annotations

import os

import _single_thread  # noqa: F401 - first: one thread for every library

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import minigrad as mg  # noqa: E402
import minigrad.nn.functional as F  # noqa: E402
from minigrad import nn  # noqa: E402
from models.nets import paper_mlp  # noqa: E402

BATCH = 60
BLOCK = 25  # steps per timed block


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((rows, 784), dtype=np.float32), rng.integers(0, 10, rows)


def worker(steps: int, sync: bool) -> dict:
    """One rank's timed run (``sync``: SyncBatchNorm and DataParallel)."""
    comm = mg.distributed.init() if sync else None
    size, rank = (comm.size, comm.rank) if comm else (1, 0)
    mg.manual_seed(0)
    net = paper_mlp(bn=True)
    if sync:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    model = mg.distributed.DataParallel(net) if sync else net
    opt = mg.optim.SGD(model.parameters(), lr=0.1)
    x_np, y_np = _data(BATCH, 1)
    rows = slice(rank * BATCH // size, (rank + 1) * BATCH // size)
    x, y = mg.tensor(x_np[rows]), mg.tensor(y_np[rows])
    blocks, shares = [], []
    for b in range(steps // BLOCK + 1):  # the first block warms up
        comm_before = comm.seconds if comm else 0.0
        t0 = time.perf_counter()
        for _ in range(BLOCK):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            if sync:
                model.sync_gradients()
            opt.step()
        dt = time.perf_counter() - t0
        if b:
            blocks.append(BLOCK / dt)
            shares.append(((comm.seconds if comm else 0.0) - comm_before) / dt)
    return {"steps_per_s": statistics.median(blocks), "comm_share": statistics.median(shares),
            "calls_per_step": (comm.calls / ((steps // BLOCK + 1) * BLOCK)) if comm else 0}


def torch_steps(steps: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    layers, fan_in = [], 784
    for _ in range(3):
        layers += [torch.nn.Linear(fan_in, 100), torch.nn.BatchNorm1d(100), torch.nn.Sigmoid()]
        fan_in = 100
    model = torch.nn.Sequential(*layers, torch.nn.Linear(100, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x_np, y_np = _data(BATCH, 1)
    x, y = torch.tensor(x_np), torch.tensor(y_np)
    blocks = []
    for b in range(steps // BLOCK + 1):
        t0 = time.perf_counter()
        for _ in range(BLOCK):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if b:
            blocks.append(BLOCK / (time.perf_counter() - t0))
    return statistics.median(blocks)


def launch(processes: int, steps: int) -> dict:
    mpiexec = Path(sys.executable).with_name("mpiexec")
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(processes),
           sys.executable, __file__, "--worker", "--steps", str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = worker(args.steps, sync=True)
        if mg.distributed.rank() == 0:
            print(json.dumps(result), flush=True)
        return

    rows = [("minigrad, BatchNorm1d, no MPI", worker(args.steps, sync=False)),
            ("minigrad, SyncBN + DataParallel, mpiexec -n 1", launch(1, args.steps)),
            ("minigrad, SyncBN + DataParallel, mpiexec -n 2", launch(2, args.steps))]
    ref = rows[0][1]["steps_per_s"]
    print(f"paper MLP with BN, batch {BATCH} (global), float32, one thread per process, "
          f"{args.steps} steps\n")
    print(f"{'':48s} {'steps/s':>8s} {'vs plain':>9s} {'comm':>6s} {'collectives/step':>17s}")
    for name, r in rows:
        print(f"{name:48s} {r['steps_per_s']:8.1f} {r['steps_per_s'] / ref:8.2f}x "
              f"{r['comm_share']:6.1%} {r['calls_per_step']:17.1f}")
    t = torch_steps(args.steps)
    if t is not None:
        print(f"{'PyTorch CPU, BatchNorm1d, one process':48s} {t:8.1f} {t / ref:8.2f}x")


if __name__ == "__main__":
    main()
