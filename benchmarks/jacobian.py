"""Forward- versus reverse-mode Jacobians, on a tall and on a wide function.

``f(x) = tanh(W2 @ tanh(W1 @ x))`` with ``x`` of ``n`` values, a hidden layer of
``hidden`` and ``m`` outputs, float64:

* tall: ``n = 4`` inputs, ``m = 1024`` outputs: forward mode needs 4 JVPs (one per
  column), reverse mode 1024 VJPs (one per row);
* wide: ``n = 1024``, ``m = 4``: the other way round.

Each pass costs about as much as one evaluation of ``f``, so the mode with fewer
passes wins by about the ratio of the two dimensions: the crossover a learner should
see. Side by side: ``mg.jacobian(f, x, mode=...)``; the closed form by hand in NumPy
(``diag(1 - y2^2) W2 diag(1 - y1^2) W1``, the reference, one pass); PyTorch's
``torch.autograd.functional.jacobian`` with ``strategy="reverse-mode"`` row by row
(``vectorize=False``, the same algorithm as minigrad's) and with
``strategy="forward-mode"`` (PyTorch requires ``vectorize=True`` for it: all columns
in one batched pass through vmap, a different algorithm). The three are checked to
agree before timing; the best of ``--repeat`` runs is printed.

    python benchmarks/jacobian.py [--big 1024] [--small 4] [--hidden 64] [--repeat 3]
"""

from __future__ import annotations


from _single_thread import torch  # first: one thread for every library

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import minigrad as mg



def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def case(name: str, n: int, hidden: int, m: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((hidden, n)) / np.sqrt(n)
    w2 = rng.standard_normal((m, hidden)) / np.sqrt(hidden)
    x = rng.standard_normal(n)
    W1, W2 = mg.tensor(w1), mg.tensor(w2)

    def f(v: mg.Tensor) -> mg.Tensor:
        return (W2 @ (W1 @ v).tanh()).tanh()

    def by_hand() -> np.ndarray:
        y1 = np.tanh(w1 @ x)
        y2 = np.tanh(w2 @ y1)
        return (1 - y2 ** 2)[:, None] * (w2 @ ((1 - y1 ** 2)[:, None] * w1))

    rows = [("NumPy closed form", *best(by_hand, repeat))]
    want = rows[0][2]
    for mode in ("forward", "reverse"):
        sec, j = best(lambda mode=mode: mg.jacobian(f, mg.tensor(x), mode=mode).numpy(), repeat)
        rows.append((f"minigrad {mode}", sec, j))
    if torch is not None:
        t1, t2, tx = torch.tensor(w1), torch.tensor(w2), torch.tensor(x)

        def tf(v: Any) -> Any:
            return torch.tanh(t2 @ torch.tanh(t1 @ v))

        jac = torch.autograd.functional.jacobian
        sec, j = best(lambda: jac(tf, tx, strategy="forward-mode", vectorize=True).numpy(),
                      repeat)
        rows.append(("PyTorch forward (vmap)", sec, j))
        sec, j = best(lambda: jac(tf, tx, strategy="reverse-mode").numpy(), repeat)
        rows.append(("PyTorch reverse (by rows)", sec, j))
    for label, _, j in rows:
        np.testing.assert_allclose(j, want, rtol=1e-10, atol=1e-12, err_msg=label)
    print(f"\n{name}: {n} inputs -> {hidden} hidden -> {m} outputs (Jacobian {m} x {n})")
    ref = rows[0][1]
    print(f"  {'':28s} {'ms':>9s} {'vs NumPy':>10s}")
    for label, sec, _ in rows:
        print(f"  {label:28s} {sec * 1e3:9.2f} {sec / ref:10.1f}")
    print(f"  minigrad reverse / forward: {rows[2][1] / rows[1][1]:.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--big", type=int, default=1024)
    ap.add_argument("--small", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    case("tall", a.small, a.hidden, a.big, a.repeat)
    case("wide", a.big, a.hidden, a.small, a.repeat)


if __name__ == "__main__":
    main()
