"""Solutions to notebook 03 (broadcasting and reductions)."""

from __future__ import annotations

import numpy as np


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Exercise 1: sum away the axes broadcasting prepended, then (keeping them) the axes
    where the input had size 1 but the gradient does not."""
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True).reshape(shape)


def lse(z, detach: bool):
    """Exercise 2: the stable log-sum-exp. Its derivative with respect to m is zero (m is
    added once and subtracted inside), so detaching m changes no gradient."""
    m = z.max(axis=1, keepdims=True)
    m = m.detach() if detach else m
    return m + (z - m).exp().sum(axis=1, keepdims=True).log()


def bag_grad(idx: np.ndarray, w: np.ndarray, rows: int) -> np.ndarray:
    """Exercise 3: every occurrence of word t in sentence s sends w[s] to row t of E."""
    g = np.zeros((rows, w.shape[1]))
    np.add.at(g, idx, np.repeat(w[:, None, :], idx.shape[1], axis=1))
    return g


zero_rows = [3, 4]   # never looked up in [[0, 2, 2], [5, 2, 1]]
busiest_row = 2      # twice in sentence 0, once in sentence 1: 2 w[0] + w[1]
