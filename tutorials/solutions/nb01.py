"""Solutions to notebook 01 (tensors and the tape)."""

from __future__ import annotations

import numpy as np

# Exercise 1: z = (a * b + b).exp().sum() is four records, in the order they run.
predicted_ops = ["mul", "add", "exp", "sum"]


def dz_da(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """With u = a*b + b and z = sum(exp(u)): dz/da = exp(u) * b."""
    return np.exp(a * b + b) * b


def dz_db(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b is used twice, so its two contributions exp(u) * a and exp(u) add up."""
    return np.exp(a * b + b) * (a + 1)


# Exercise 2: each backward adds 2c = [2, 4] into c.grad: three of them give [6, 12].
grad_after_three = np.array([6.0, 12.0])


def fresh_gradient(c, s):
    """Reset the accumulated gradient (what opt.zero_grad() does), then one backward."""
    c.grad = None
    s.backward(retain_graph=True)
    return c.grad.numpy()


# Exercise 3: under no_grad nothing is recorded: an empty tape and a one-node picture. For
# backward, mul keeps its inputs (x, and the constant 2: each is the other's derivative);
# sum needs only its input's shape, so x * 2 is kept by no record, and nothing reads e.
records_no_grad = 0
edges_no_grad = 0
value_saved = {"x": True, "x * 2": False, "e": False}
