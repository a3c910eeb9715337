"""Check analytical gradients against central finite differences in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autograd.api import grad as _grad
from .backend import xp_of
from .errors import ArgumentError, GradcheckError
from .tensor import Tensor


def _outputs(fn: Callable, inputs: Sequence[Any]) -> list[Tensor]:
    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o for o in outs if isinstance(o, Tensor)]


def _as_float64(inputs: Sequence[Any]) -> list[Any]:
    out = []
    for t in inputs:
        if isinstance(t, Tensor) and t.requires_grad:
            c = Tensor._wrap(t._data.astype(np.float64))
            c.name = t.name
            c.requires_grad = True
            out.append(c)
        else:
            out.append(t)
    return out


def gradcheck(fn: Callable, inputs: Sequence[Any] | Any, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3) -> bool:
    """Compare ``fn``'s Jacobian from backward with central differences.

    Every input Tensor that requires grad is copied to float64 and perturbed
    element by element; each output element's gradient comes from one backward.
    Returns True, or raises `GradcheckError` naming the input, the element, the
    analytical and the numerical value of the worst mismatch.
    """
    inputs = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    xs = _as_float64(inputs)
    diff = [i for i, t in enumerate(xs) if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ArgumentError("gradcheck: no input requires grad; create the inputs to check "
                            "with requires_grad=True")
    outs = _outputs(fn, xs)
    # Numerical Jacobian: perturb each input element, read every output element.
    # (Grad mode stays on: fn may itself take gradients, as in gradgradcheck.)
    numeric: dict[int, list] = {i: [] for i in diff}
    for i in diff:
        flat = xs[i]._data.reshape(-1)
        for k in range(flat.size):
            old = flat[k].item()
            flat[k] = old + eps
            plus = [o.numpy().ravel().astype(np.float64) for o in _outputs(fn, xs)]
            flat[k] = old - eps
            minus = [o.numpy().ravel().astype(np.float64) for o in _outputs(fn, xs)]
            flat[k] = old
            numeric[i].append([(p - m) / (2 * eps) for p, m in zip(plus, minus)])
    # Analytical Jacobian: one backward per output element. An output without
    # history has an analytical Jacobian of zero, which the numbers must confirm.
    worst = None
    for oi, o in enumerate(outs):
        for j in range(o.size):
            if o.requires_grad:
                seed = xp_of(o._data).zeros(o.shape, dtype=o.dtype)
                seed.reshape(-1)[j] = 1
                gs = _grad([o], [xs[i] for i in diff], grad_outputs=[Tensor._wrap(seed)],
                           retain_graph=True, allow_unused=True)
            else:
                gs = (None,) * len(diff)
            for i, g in zip(diff, gs):
                a = np.zeros(xs[i].size) if g is None else g.numpy().ravel()
                for k in range(xs[i].size):
                    n = numeric[i][k][oi][j]
                    err = abs(a[k] - n) - (atol + rtol * abs(n))
                    bad = not np.isfinite(a[k]) or not np.isfinite(n) or err > 0
                    if bad and (worst is None or not np.isfinite(err) or err > worst[0]):
                        worst = (err if np.isfinite(err) else np.inf, i, k, oi, j, a[k], n)
    if worst is not None:
        _, i, k, oi, j, a, n = worst
        name = inputs[i].name if isinstance(inputs[i], Tensor) and inputs[i].name else f"input {i}"
        idx = np.unravel_index(k, xs[i].shape) if xs[i].ndim else ()
        oidx = np.unravel_index(j, outs[oi].shape) if outs[oi].ndim else ()
        raise GradcheckError(
            f"gradcheck failed for {name}, element {tuple(int(v) for v in idx)}, of output "
            f"{oi} element {tuple(int(v) for v in oidx)}: analytical {float(a)!r} vs "
            f"numerical {float(n)!r} (atol={atol}, rtol={rtol}, eps={eps})")
    return True


def gradgradcheck(fn: Callable, inputs: Sequence[Any] | Any, grad_outputs: Any = None,
                  eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  seed: int = 0) -> bool:
    """Check second derivatives: gradcheck of ``x -> grad(fn(x), x, v, create_graph=True)``.

    ``v`` (random unless ``grad_outputs`` is given) is differentiated too, so the
    check also covers the backward's dependence on the incoming gradient.
    """
    inputs = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    xs = _as_float64(inputs)
    diff = [i for i, t in enumerate(xs) if isinstance(t, Tensor) and t.requires_grad]
    outs = _outputs(fn, xs)
    rng = np.random.default_rng(seed)
    if grad_outputs is None:
        # on each output's device: v meets the outputs in the first derivative
        vs = [Tensor(rng.standard_normal(o.shape), dtype=np.float64, device=o.device,
                     requires_grad=True) for o in outs]
    else:
        gos = grad_outputs if isinstance(grad_outputs, (list, tuple)) else [grad_outputs]
        vs = [Tensor(np.asarray(g.numpy() if isinstance(g, Tensor) else g, dtype=np.float64),
                     device=o.device, requires_grad=True) for g, o in zip(gos, outs)]
    n_in = len(xs)

    def first_derivative(*args: Any) -> tuple:
        ins, v = list(args[:n_in]), list(args[n_in:])
        ys = _outputs(fn, ins)
        gs = _grad(ys, [ins[i] for i in diff], grad_outputs=v, create_graph=True,
                   allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return gradcheck(first_derivative, xs + vs, eps=eps, atol=atol, rtol=rtol)
