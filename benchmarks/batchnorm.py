"""BatchNorm forward + backward in training mode: composed vs fused vs NumPy vs PyTorch.

Four implementations of one training step of batch normalization (batch statistics,
running statistics updated, gradients of the input, gamma and beta):

* minigrad ``impl="composed"``: primitive Tensor ops, gradient by autodiff;
* minigrad ``impl="fused"``: one op with a hand-derived backward;
* NumPy by hand: the textbook fused forward and backward, no autograd at all;
* PyTorch CPU (when installed): ``torch.nn.functional.batch_norm``.

Everything runs in one process on one thread, interleaved round by round so that
all rows see the same machine. Prints the median time of each, the ratios, and the
peak memory allocated during one step (tracemalloc) as a multiple of the input's
size (not for PyTorch, whose allocations tracemalloc does not see).

    python benchmarks/batchnorm.py [--quick] [--dtype float32|float64|both]
"""

from __future__ import annotations


import _single_thread  # noqa: F401 - first: one thread for every library

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import minigrad as mg
from minigrad.nn.batchnorm import batch_norm

SHAPES = [(60, 100), (256, 1024), (2048, 4096), (64, 32, 28, 28)]


def numpy_step(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, rm: np.ndarray,
               rv: np.ndarray, dy: np.ndarray, eps: float = 1e-5,
               momentum: float = 0.1) -> tuple:
    """Training-mode BN forward and backward written directly in NumPy."""
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = xc * inv_std
    y = x_hat * gamma.reshape(shape) + beta.reshape(shape)
    rm *= 1 - momentum
    rm += momentum * mu.reshape(-1)
    rv *= 1 - momentum
    rv += momentum * m / (m - 1) * var.reshape(-1)
    dbeta = dy.sum(axis=axes, keepdims=True)
    dgamma = (dy * x_hat).sum(axis=axes, keepdims=True)
    dx = (gamma.reshape(shape) * inv_std / m) * (m * dy - dbeta - x_hat * dgamma)
    return y, dx, dgamma.reshape(-1), dbeta.reshape(-1)


def steps(shape: tuple, dtype: Any, torch: Any) -> dict[str, Callable[[], object]]:
    """One zero-argument callable per implementation, all on the same data."""
    rng = np.random.default_rng(0)
    c = shape[1]
    x0 = rng.standard_normal(shape).astype(dtype)
    dy0 = rng.standard_normal(shape).astype(dtype)
    g0 = (rng.standard_normal(c) + 1).astype(dtype)
    b0 = rng.standard_normal(c).astype(dtype)
    out: dict[str, Callable[[], object]] = {}

    def minigrad_step(impl: str) -> Callable[[], object]:
        x = mg.tensor(x0, requires_grad=True)
        w = mg.tensor(g0, requires_grad=True)
        b = mg.tensor(b0, requires_grad=True)
        rm, rv = mg.zeros(c, dtype=dtype), mg.ones(c, dtype=dtype)
        dy = mg.tensor(dy0)

        def step() -> object:
            x.grad = w.grad = b.grad = None
            y = batch_norm(x, rm, rv, w, b, training=True, impl=impl)
            y.backward(dy)
            return y, x.grad, w.grad, b.grad

        return step

    out["composed"] = minigrad_step("composed")
    out["fused"] = minigrad_step("fused")
    nrm, nrv = np.zeros(c, dtype), np.ones(c, dtype)
    out["numpy"] = lambda: numpy_step(x0, g0, b0, nrm, nrv, dy0)
    if torch is not None:
        tx = torch.tensor(x0, requires_grad=True)
        tw = torch.tensor(g0, requires_grad=True)
        tb = torch.tensor(b0, requires_grad=True)
        trm = torch.zeros(c, dtype=tx.dtype)
        trv = torch.ones(c, dtype=tx.dtype)
        tdy = torch.tensor(dy0)

        def torch_step() -> object:
            tx.grad = tw.grad = tb.grad = None
            y = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=True)
            y.backward(tdy)
            return y, tx.grad

        out["torch"] = torch_step
    return out


def time_all(fns: dict[str, Callable[[], object]], rounds: int, inner: int) -> dict[str, float]:
    """Median over ``rounds`` of the mean of ``inner`` calls, seconds; rows interleaved."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[k].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_memory(fn: Callable[[], object]) -> int:
    """Bytes allocated at the peak of one call, beyond what was live before it."""
    fn()  # warm caches (e.g. the tape's first-use allocations)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        tracemalloc.stop()
    return peak - base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a rough run)")
    ap.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
        print("(PyTorch not installed: its column is skipped)")
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    names = ["composed", "fused", "numpy", "torch"] if torch is not None else [
        "composed", "fused", "numpy"]
    print("BatchNorm training step (forward + backward), one thread; median ms, and peak "
          "memory allocated during a step in multiples of the input's size")
    for dtype in dtypes:
        print(f"\n{dtype}")
        head = "".join(f"{n + ' ms':>12s}" for n in names)
        print(f"{'shape':>18s}{head}{'comp/fused':>12s}{'fused/torch':>12s}"
              f"{'mem fused':>10s}{'composed':>9s}{'numpy':>7s}")
        for shape in SHAPES:
            size = int(np.prod(shape))
            fns = steps(shape, np.dtype(dtype), torch)
            big = size * np.dtype(dtype).itemsize > 16 << 20
            rounds = (5 if big else 9) if args.quick else (11 if big else 25)
            inner = 1 if big else max(1, 200_000 // size) * (1 if args.quick else 3)
            t = time_all(fns, rounds, inner)
            mem = {k: peak_memory(fns[k]) / (size * np.dtype(dtype).itemsize)
                   for k in ("fused", "composed", "numpy")}
            row = "".join(f"{t[n] * 1e3:12.3f}" for n in names)
            vs_torch = f"{t['fused'] / t['torch']:11.2f}x" if "torch" in t else f"{'-':>12s}"
            print(f"{shape!s:>18s}{row}{t['composed'] / t['fused']:11.2f}x{vs_torch}"
                  f"{mem['fused']:9.1f}x{mem['composed']:8.1f}x{mem['numpy']:6.1f}x",
                  flush=True)


if __name__ == "__main__":
    main()
