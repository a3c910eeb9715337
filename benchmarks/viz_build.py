"""Time to build the DOT text of a large graph with ``mg.viz.draw_graph``.

The graph is MLP-like: ``--layers`` blocks of ``h = tanh(h @ W + b)`` (3 ops each)
inside simulated module scopes, plus a loss, so about ``3 * layers`` recorded ops
(5,001 by default). Only the drawing is timed (records -> ``.source``), not
Graphviz's layout, which takes far longer on any graph this size.

    python benchmarks/viz_build.py [--layers 1666] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import minigrad as mg
from minigrad.nn.module import Scope, in_scope


def build(layers: int, width: int = 8) -> mg.Tensor:
    rng = np.random.default_rng(0)
    h = mg.tensor(rng.standard_normal((4, width)), name="x", requires_grad=True)
    for k in range(layers):
        W = mg.tensor(rng.standard_normal((width, width)) * 0.3, requires_grad=True,
                      name=f"layers.{k}.weight")
        b = mg.tensor(np.zeros(width), requires_grad=True, name=f"layers.{k}.bias")
        with in_scope(Scope(f"layers.{k}", "Block")):
            h = (h @ W + b).tanh()
    return (h * h).mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1666)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    loss = build(args.layers)
    n_ops = len(mg.tape(loss))
    cases = {
        "draw_graph": lambda: mg.viz.draw_graph(loss).source,
        "draw_graph(collapse={'Block'})": lambda: mg.viz.draw_graph(
            loss, collapse={"Block"}).source,
        "draw_graph(show_values=True)": lambda: mg.viz.draw_graph(
            loss, show_values=True).source,
    }
    print(f"graph: {n_ops} recorded ops")
    for name, fn in cases.items():
        fn()
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            text = fn()
            times.append(time.perf_counter() - t0)
        print(f"{name:34s} {statistics.median(times) * 1e3:8.1f} ms  "
              f"({len(text) / 1e6:.2f} MB of DOT)")


if __name__ == "__main__":
    main()
