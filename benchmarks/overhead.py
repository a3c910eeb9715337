"""Per-op overhead of the tape: a chain of 200 elementwise ops on a (16,) tensor.

Runs minigrad, hand-written NumPy (forward and backward by hand, no autograd) and
PyTorch CPU (when installed) in one process with one thread, and prints
microseconds per op and the ratios.

    python benchmarks/overhead.py [--ops 200] [--repeat 200]
"""

from __future__ import annotations


import _single_thread  # noqa: F401 - first: one thread for every library

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import minigrad as mg


def best_of(fns: dict[Any, Callable[[], object]], repeat: int,
            rounds: int = 7) -> dict[Any, float]:
    """Per function, the fastest of ``rounds`` means of ``repeat`` calls, in seconds.

    The functions take turns round by round, so a change in machine load touches all of
    them alike, and the clock is this thread's CPU time (``time.thread_time``), which does
    not count the time other processes hold the core. The minimum is the estimate least
    disturbed by other work on the machine.
    """
    best = {k: float("inf") for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.thread_time()
            for _ in range(repeat):
                fn()
            best[k] = min(best[k], (time.thread_time() - t0) / repeat)
    return best


def chain_minigrad(x0: np.ndarray, c: np.ndarray, n: int, backward: bool) -> None:
    x = mg.tensor(x0, requires_grad=True)
    cc = mg.tensor(c)
    h = x
    for i in range(n):
        k = i % 3
        h = h * cc if k == 0 else (h + cc if k == 1 else h.tanh())
    loss = h.sum()
    if backward:
        loss.backward()


def chain_numpy(x0: np.ndarray, c: np.ndarray, n: int, backward: bool) -> None:
    h = x0
    saved = []
    for i in range(n):
        k = i % 3
        if k == 0:
            h = h * c
        elif k == 1:
            h = h + c
        else:
            h = np.tanh(h)
            saved.append(h)
    h.sum()
    if backward:
        g = np.ones_like(h)
        for i in reversed(range(n)):
            k = i % 3
            if k == 0:
                g = g * c
            elif k == 2:
                y = saved.pop()
                g = g * (1 - y * y)


def chain_torch(torch: object, x0: np.ndarray, c: np.ndarray, n: int, backward: bool) -> None:
    x = torch.tensor(x0, requires_grad=True)
    cc = torch.tensor(c)
    h = x
    for i in range(n):
        k = i % 3
        h = h * cc if k == 0 else (h + cc if k == 1 else h.tanh())
    loss = h.sum()
    if backward:
        loss.backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(16).astype(np.float32)
    c = (rng.standard_normal(16) * 0.5).astype(np.float32)
    n = args.ops
    fns: dict[str, Callable[[bool], object]] = {
        "minigrad": lambda b: chain_minigrad(x0, c, n, b),
        "numpy (by hand)": lambda b: chain_numpy(x0, c, n, b)}
    try:
        import torch

        torch.set_num_threads(1)
        fns["pytorch cpu"] = lambda b: chain_torch(torch, x0, c, n, b)
    except ImportError:
        print("(PyTorch not installed: its row is skipped)")
    times = best_of({(k, b): (lambda f=f, b=b: f(b)) for k, f in fns.items()
                     for b in (False, True)}, args.repeat)
    rows = {k: (times[(k, False)], times[(k, True)]) for k in fns}
    us = {k: (f * 1e6 / n, fb * 1e6 / n) for k, (f, fb) in rows.items()}
    print(f"chain of {n} elementwise ops (mul, add, tanh) on a (16,) float32 tensor, "
          "sum, backward; one thread")
    print(f"{'':18s} {'fwd us/op':>10s} {'fwd+bwd us/op':>14s} {'vs numpy':>9s} {'vs torch':>9s}")
    for k, (f, fb) in us.items():
        vs_np = fb / us["numpy (by hand)"][1]
        vs_t = f"{fb / us['pytorch cpu'][1]:.2f}x" if "pytorch cpu" in us else "-"
        print(f"{k:18s} {f:10.2f} {fb:14.2f} {vs_np:8.2f}x {vs_t:>9s}")


if __name__ == "__main__":
    main()
