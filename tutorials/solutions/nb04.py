"""Solutions to notebook 04 (drawing graphs)."""

from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import nn


def third(x: float) -> float:
    """Exercise 1: three nested mg.grad calls, each with create_graph=True."""
    t = mg.tensor(x, dtype=mg.float64, requires_grad=True)
    (d1,) = mg.grad(t.tanh(), t, create_graph=True)
    (d2,) = mg.grad(d1, t, create_graph=True)
    (d3,) = mg.grad(d2, t, create_graph=True)
    return d3.item()


def closed_form(x: float) -> float:
    """tanh''' = (-2ts)' = -2(s^2 - 2t^2 s) = -2(1 - t^2)(1 - 3t^2) with t = tanh x."""
    t = np.tanh(x)
    return float(-2 * (1 - t ** 2) * (1 - 3 * t ** 2))


# Exercise 2: sigmoid's VJP reads its output s (for y(1 - y)); each mul's VJP reads the
# other input of the product: a and v.
saved_values = {"a", "s", "v"}


def deep_model() -> nn.Sequential:
    """Exercise 3: three Linear + Tanh pairs and a final Linear."""
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


# collapse={"Linear"} folds the four Linear modules only (each one fused `linear` op), so the
# tanh ops stay drawn; collapse=1 folds all seven children of the Sequential.
folded_boxes = {"Linear": 4, 1: 7}
