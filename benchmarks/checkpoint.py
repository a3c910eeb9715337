"""Peak memory and time of a deep MLP's training step, with and without `mg.checkpoint`.

The model: ``depth`` blocks of ``Linear(width, width)`` + tanh, a batch of ``batch``
rows, float32, loss ``mean(h ** 2)``; one forward and one backward. Three ways:

* ``plain``: every block's intermediates are kept for backward;
* ``per block``: each block is ``mg.checkpoint(block, h)``: only the block boundaries
  are kept, and each block runs twice (see below: here that keeps as much);
* ``segments``: ``sqrt(depth)`` segments of ``sqrt(depth)`` blocks each, the classic
  trade-off: memory of order ``sqrt(depth)`` blocks for one extra forward pass.

Peak memory is what ``tracemalloc`` sees (NumPy reports its buffers to it), above the
memory held before the step (weights, input). Hand-written NumPy (forward and backward
by hand, every activation kept) is the reference for the plain step. PyTorch's buffers
are invisible to tracemalloc, so for it only the time of the plain and the
checkpointed step (``torch.utils.checkpoint``, one block each) is printed.

    python benchmarks/checkpoint.py [--depth 32] [--width 256] [--batch 1024]

Checkpointing single blocks saves nothing here: a block's input is the previous
block's output, which the plain step keeps anyway (tanh saves its output), so both
keep one activation per block. Segments keep one per segment, plus one segment's
worth while it is recomputed.
"""

from __future__ import annotations


from _single_thread import torch  # first: one thread for every library

import argparse
import math
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import nn



def blocks_of(depth: int, width: int) -> list:
    mg.manual_seed(0)
    return [nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(depth)]


def segment(blocks: list) -> Callable:
    def run(h: mg.Tensor) -> mg.Tensor:
        for b in blocks:
            h = b(h)
        return h
    return run


def step(blocks: list, x: mg.Tensor, groups: int) -> None:
    """Forward and backward; ``groups`` blocks per checkpoint (0: no checkpoint)."""
    h = x
    if groups == 0:
        h = segment(blocks)(h)
    else:
        for i in range(0, len(blocks), groups):
            h = mg.checkpoint(segment(blocks[i:i + groups]), h)
    (h * h).mean().backward()


def numpy_step(ws: list, bs: list, x: np.ndarray) -> None:
    """The plain step by hand: every activation kept, then the backward."""
    hs = [x]
    for w, b in zip(ws, bs):
        hs.append(np.tanh(hs[-1] @ w.T + b))
    g = 2 * hs[-1] / hs[-1].size
    for k in range(len(ws) - 1, -1, -1):
        g = g * (1 - hs[k + 1] ** 2)
        _gw, _gb = g.T @ hs[k], g.sum(axis=0)
        g = g @ ws[k]


def measure(fn: Callable[[], Any]) -> tuple[float, float]:
    """(peak MiB above the start, seconds) of one call."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20, seconds


def torch_times(depth: int, width: int, batch: int, x: np.ndarray) -> tuple[float, float]:
    from torch.utils.checkpoint import checkpoint as tcp

    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh())
              for _ in range(depth)]
    xt = torch.tensor(x)

    def run(use: bool) -> float:
        t = time.perf_counter()
        h = xt
        for b in blocks:
            h = tcp(b, h, use_reentrant=False) if use else b(h)
        (h * h).mean().backward()
        return time.perf_counter() - t

    run(False), run(True)  # warm-up
    return run(False), run(True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1024)
    a = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((a.batch, a.width)).astype(np.float32)
    blocks = blocks_of(a.depth, a.width)
    xm = mg.tensor(x)
    seg = max(1, round(math.sqrt(a.depth)))
    step(blocks, xm, 0)  # warm-up
    rows = []
    for name, groups in (("plain", 0), ("per block", 1), (f"segments of {seg}", seg)):
        for p in (q for b in blocks for q in b.parameters()):
            p.grad = None
        rows.append((f"minigrad, {name}", *measure(lambda g=groups: step(blocks, xm, g))))
    ws = [b[0].weight.numpy() for b in blocks]
    bs = [b[0].bias.numpy() for b in blocks]
    rows.append(("NumPy by hand, plain", *measure(lambda: numpy_step(ws, bs, x))))
    act = a.batch * a.width * 4 / 2**20
    print(f"depth {a.depth}, width {a.width}, batch {a.batch}, float32: one activation "
          f"{act:.2f} MiB")
    print(f"{'':28s} {'peak MiB':>9s} {'vs plain':>9s} {'time s':>8s} {'vs plain':>9s}")
    for name, mib, sec in rows:
        print(f"{name:28s} {mib:9.1f} {mib / rows[0][1]:9.2f} {sec:8.3f} "
              f"{sec / rows[0][2]:9.2f}")
    if torch is not None:
        plain, ckpt = torch_times(a.depth, a.width, a.batch, x)
        print(f"PyTorch: plain {plain:.3f} s, torch.utils.checkpoint per block {ckpt:.3f} s "
              f"({ckpt / plain:.2f}x); its memory is not visible to tracemalloc")


if __name__ == "__main__":
    main()
