"""Solutions to notebook 02 (reverse mode by hand)."""

from __future__ import annotations

import numpy as np

import minigrad as mg


def walk(u: np.ndarray, k: float) -> tuple[np.ndarray, float]:
    """Exercise 1: L = sum(sigmoid(k * u)) + k * k, walked backwards in NumPy."""
    ku = k * u                       # mul(k, u)
    sg = 1 / (1 + np.exp(-ku))       # sigmoid(ku)
    g_s, g_kk = 1.0, 1.0             # add(s, kk)
    g_k = g_kk * k + g_kk * k        # kk = mul(k, k): k on both sides
    g_sg = g_s * np.ones_like(sg)    # s = sum(sg)
    g_ku = g_sg * sg * (1 - sg)      # sg = sigmoid(ku)
    g_u = g_ku * k                   # ku = mul(k, u): u's share ...
    g_k += (g_ku * u).sum()          # ... and k's, summed over the broadcast
    return g_u, float(g_k)


class Swish(mg.Function):
    """Exercise 2: f(x) = x sigmoid(x); the VJP multiplies f'(x) by gy, in tensor ops so
    that gradgradcheck can differentiate it again."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x / (1 + np.exp(-x))

    @staticmethod
    def backward(ctx, gy):
        (x,) = ctx.saved_tensors
        s = mg.sigmoid(x)
        return gy * s * (1 + x * (1 - s))


def softmax_jacobian(z: mg.Tensor) -> np.ndarray:
    """Exercise 3: one backward per output, seeded with a one-hot adjoint: row i of J."""
    p = mg.nn.functional.softmax(z, axis=0)
    n = p.shape[0]
    rows = [mg.grad(p, z, grad_outputs=mg.tensor(np.eye(n)[i], dtype=p.dtype),
                    retain_graph=True)[0].numpy() for i in range(n)]
    return np.stack(rows)


def closed_form(p: np.ndarray) -> np.ndarray:
    """J = diag(p) - p p^T. Its rows sum to zero: the outputs always sum to one, so moving
    every logit together (the direction of ones) changes nothing."""
    return np.diag(p) - np.outer(p, p)
