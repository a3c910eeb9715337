"""Solutions to notebook 08 (deriving the fused gradient)."""

from __future__ import annotations

import statistics
import time

import numpy as np

import minigrad as mg


class BatchNormEval(mg.Function):
    """Exercise 1: with fixed statistics each row is an affine map of itself, so
    dx = gamma * dy / sqrt(var_run + eps); the statistics get no gradient (None)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, eps=1e-5):
        ctx.eps = eps
        ctx.save_for_backward(x, gamma, running_mean, running_var)
        inv_std = 1 / np.sqrt(running_var + eps)
        return (x - running_mean) * (gamma * inv_std) + beta

    @staticmethod
    def backward(ctx, dy):
        x, gamma, running_mean, running_var = ctx.saved_tensors
        inv_std = 1 / (running_var + ctx.eps).sqrt()
        x_hat = (x - running_mean) * inv_std
        return dy * (gamma * inv_std), (dy * x_hat).sum(axis=0), dy.sum(axis=0), None, None


def bn_eval(x, gamma, beta, running_mean, running_var):
    return BatchNormEval.apply(x, gamma, beta, running_mean, running_var, eps=1e-5)


def small_batch_times(impls: dict, repeats: int = 200) -> dict:
    """Exercise 2: median seconds of forward + backward at the paper's size, (60, 100)."""
    x = mg.tensor(mg.randn(60, 100).numpy(), requires_grad=True)
    g = mg.ones(100, requires_grad=True)
    b = mg.zeros(100, requires_grad=True)
    dy = mg.randn(60, 100)

    def once(fn) -> float:
        x.grad = g.grad = b.grad = None
        start = time.perf_counter()
        fn(x, g, b).backward(dy)
        return time.perf_counter() - start

    for fn in impls.values():
        once(fn)  # warm-up
    return {name: statistics.median(once(fn) for _ in range(repeats))
            for name, fn in impls.items()}


def buggy(BatchNormFused):
    """Exercise 3: the notebook's fused BN with inv_std taken from x.numpy() in backward:
    a constant to the tape, so the backward's own derivative misses a term."""
    class BatchNormNumpyStd(mg.Function):
        @staticmethod
        def forward(ctx, x, gamma, beta, eps=1e-5):
            return BatchNormFused.forward(ctx, x, gamma, beta, eps=eps)

        @staticmethod
        def backward(ctx, dy):
            x, gamma = ctx.saved_tensors
            m = x.shape[0]
            mu = x.mean(axis=0)
            inv_std = mg.tensor(1 / np.sqrt(x.numpy().var(axis=0) + ctx.eps), dtype=x.dtype)
            x_hat = (x - mu) * inv_std
            dbeta = dy.sum(axis=0)
            dgamma = (dy * x_hat).sum(axis=0)
            return (gamma * inv_std) * (dy - dbeta / m - x_hat * (dgamma / m)), dgamma, dbeta

    return lambda x, gamma, beta: BatchNormNumpyStd.apply(x, gamma, beta, eps=1e-5)


# The first derivative is still right (the value of inv_std is right); its derivative with
# respect to x is lost, so the second derivatives are wrong.
gradcheck_passes = True
gradgradcheck_passes = False
