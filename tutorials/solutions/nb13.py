"""Solutions to notebook 13 (forward and reverse mode)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import minigrad as mg


class Hypot(mg.Function):
    """Exercise 1: z = sqrt(a² + b²), with its VJP and its JVP."""

    @staticmethod
    def forward(ctx, a, b):
        z = np.sqrt(a * a + b * b)
        ctx.save_for_backward(a, b, z)
        return z

    @staticmethod
    def backward(ctx, g):
        # Reverse: one gradient per input, the output's gradient split between them.
        a, b, z = ctx.saved_tensors
        return g * a / z, g * b / z

    @staticmethod
    def jvp(ctx, ta, tb):
        # Forward: one tangent for the output, the inputs' tangents summed into it.
        a, b = ctx.primals
        return (a * ta + b * tb) / ctx.outputs


def jacobian_by_jvp(fn: Callable[[mg.Tensor], mg.Tensor], x: mg.Tensor) -> np.ndarray:
    """Exercise 2: one JVP per input element; the tangent it returns is a *column* of J."""
    x = mg.tensor(x.numpy(), dtype=x.dtype)
    columns = []
    for j in range(x.shape[0]):
        e = np.zeros(x.shape, dtype=x.numpy().dtype)
        e[j] = 1.0
        _, tangent = mg.jvp(fn, (x,), (mg.tensor(e),))
        columns.append(tangent[0].numpy() if isinstance(tangent, tuple) else tangent.numpy())
    return np.stack(columns, axis=1)


def conjugate_gradient(matvec: Callable[[np.ndarray], np.ndarray], b: np.ndarray,
                       tol: float = 1e-10, max_iter: int | None = None) -> np.ndarray:
    """Solve A d = b for a symmetric positive definite A known only through ``matvec``."""
    d = np.zeros_like(b)
    r = b.copy()                  # residual b - A d
    p = r.copy()
    rr = r @ r
    for _ in range(max_iter or 2 * b.size):
        if np.sqrt(rr) <= tol * max(1.0, np.linalg.norm(b)):
            break
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        d += alpha * p
        r -= alpha * Ap
        rr, rr_old = r @ r, rr
        p = r + (rr / rr_old) * p
    return d


def newton_direction(f: Callable[[mg.Tensor], mg.Tensor], x: mg.Tensor) -> np.ndarray:
    """Exercise 3: solve H d = -grad f(x) by conjugate gradient, touching H only through hvp."""
    x = mg.tensor(x.numpy(), dtype=mg.float64)
    _, vjp_fn = mg.vjp(f, x)
    (g,) = vjp_fn(mg.tensor(1.0, dtype=mg.float64))

    def hessian_times(v: np.ndarray) -> np.ndarray:
        _, (hv,) = mg.hvp(f, (x,), (mg.tensor(v),))
        return hv.numpy()

    return conjugate_gradient(hessian_times, -g.numpy())
