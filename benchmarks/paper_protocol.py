"""Wall time of the Batch Normalization paper's protocol: minigrad vs PyTorch, one thread.

The protocol is ``python -m models.paper_bn``'s main runs: the 784-100-100-100-10 sigmoid
MLP without and with BN (before each sigmoid), plain SGD (``paper_bn.DEFAULT_LR``), batches of
60 Fashion-MNIST images, 50,000 steps each; every 500 steps an evaluation (test accuracy
on the 10,000 test images, BN with running statistics, and the sigmoid-input
percentiles of the last hidden layer over 1,000 test images, BN with their batch
statistics).

Both frameworks start from the same weights and get the same batches from one minigrad
``DataLoader`` (so the data pipeline costs the same in both); a step is forward, loss,
backward, SGD update and reading the loss as a Python float. ``train`` is the time of the
steps alone, ``+ eval`` adds the evaluations. The script prints one table with the ratios
(minigrad / PyTorch) and checks that the first losses agree.

    python benchmarks/paper_protocol.py               # the full 2 x 50,000 steps
    python benchmarks/paper_protocol.py --steps 2000  # a shorter check
"""

from __future__ import annotations


from _single_thread import torch  # first: one thread for every library

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the models package

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import DataLoader
from models import paper_bn
from models.nets import paper_mlp


LR = paper_bn.DEFAULT_LR
EVAL_EVERY = 500
CHECK_STEPS = 5  # the first losses of the two frameworks must agree


# ----------------------------------------------------------------------------- minigrad
class MinigradRun:
    def __init__(self, bn: bool, data: paper_bn.Data) -> None:
        mg.manual_seed(0)
        self.model = paper_mlp(bn=bn)
        self.opt = mg.optim.SGD(self.model.parameters(), lr=LR)
        self.data = data

    def step(self, x: mg.Tensor, y: mg.Tensor) -> float:
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def evaluate(self) -> float:
        paper_bn.percentiles(paper_bn.last_sigmoid_inputs(self.model, self.data.probe_x))
        return paper_bn.test_accuracy(self.model, self.data.test_x, self.data.test_y)


# ----------------------------------------------------------------------------- PyTorch
class TorchRun:
    def __init__(self, bn: bool, data: paper_bn.Data, like: nn.Sequential) -> None:
        layers: list[Any] = [torch.nn.Flatten()]
        for m in like:
            if isinstance(m, nn.Linear):
                lin = torch.nn.Linear(m.in_features, m.out_features)
                with torch.no_grad():  # the same initial weights as minigrad's network
                    lin.weight.copy_(torch.from_numpy(m.weight.numpy()))
                    lin.bias.copy_(torch.from_numpy(m.bias.numpy()))
                layers.append(lin)
            elif isinstance(m, nn.BatchNorm1d):
                layers.append(torch.nn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum))
            elif isinstance(m, nn.Sigmoid):
                layers.append(torch.nn.Sigmoid())
        self.model = torch.nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.data = data
        self.test_x = torch.from_numpy(data.test_x)
        self.probe_x = torch.from_numpy(data.probe_x)

    def step(self, x: mg.Tensor, y: mg.Tensor) -> float:
        loss = torch.nn.functional.cross_entropy(self.model(torch.from_numpy(x.numpy())),
                                                 torch.from_numpy(y.numpy()))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def evaluate(self) -> float:
        with torch.no_grad():
            h, last = self.probe_x, None
            for m in self.model:  # BN with the probe images' own statistics, as minigrad's
                if isinstance(m, torch.nn.Sigmoid):
                    last = h
                if isinstance(m, torch.nn.BatchNorm1d):
                    h = torch.nn.functional.batch_norm(h, None, None, m.weight, m.bias,
                                                       training=True, eps=m.eps)
                else:
                    h = m(h)
            np.percentile(last.numpy(), paper_bn.PERCENTILES, axis=0)
            self.model.eval()
            correct = 0
            for i in range(0, len(self.test_x), 2000):
                scores = self.model(self.test_x[i:i + 2000])
                correct += int((scores.argmax(1).numpy() == self.data.test_y[i:i + 2000]).sum())
            self.model.train()
        return correct / len(self.test_x)


# ----------------------------------------------------------------------------- the protocol
def protocol(run: Any, data: paper_bn.Data, steps: int) -> dict[str, Any]:
    """``steps`` training steps with an evaluation every ``EVAL_EVERY``; the seconds spent
    in steps and in evaluations, the first losses and the final accuracy."""
    loader = DataLoader(data.train, batch_size=60, shuffle=True, drop_last=True, seed=0)
    train_s = eval_s = 0.0
    losses: list[float] = []
    t = time.perf_counter()
    acc = run.evaluate()
    eval_s += time.perf_counter() - t
    step = 0
    while step < steps:
        for x, y in loader:
            t = time.perf_counter()
            loss = run.step(x, y)
            train_s += time.perf_counter() - t
            step += 1
            if step <= CHECK_STEPS:
                losses.append(loss)
            if step % EVAL_EVERY == 0 or step == steps:
                t = time.perf_counter()
                acc = run.evaluate()
                eval_s += time.perf_counter() - t
            if step == steps:
                break
    return {"train": train_s, "eval": eval_s, "losses": losses, "acc": acc}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=paper_bn.PAPER_STEPS,
                   help="steps per network (default: the paper's 50,000)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if torch is None:
        print("PyTorch is not installed: only minigrad would run, so there is nothing to "
              "compare", file=sys.stderr)
        return 1
    data = paper_bn.load_data(paper_bn.DataSpec())
    print(f"paper protocol: 2 x {args.steps} steps, batch 60, eval every {EVAL_EVERY}; "
          f"one thread; minigrad vs PyTorch {torch.__version__}", flush=True)
    rows = []
    for bn in (False, True):
        mini = MinigradRun(bn, data)
        results = {"minigrad": protocol(mini, data, args.steps),
                   "pytorch": protocol(TorchRun(bn, data, paper_mlp_like(bn)), data, args.steps)}
        a, b = results["minigrad"]["losses"], results["pytorch"]["losses"]
        if not np.allclose(a, b, rtol=1e-4, atol=1e-5):
            print(f"warning: the first losses differ: minigrad {a} vs PyTorch {b}",
                  file=sys.stderr)
        rows.append(("with BN" if bn else "without BN", results))
        for fw, r in results.items():
            print(f"  {rows[-1][0]:>10} {fw:>8}: train {r['train']:7.1f} s, + eval "
                  f"{r['train'] + r['eval']:7.1f} s, final test accuracy {r['acc']:.4f}",
                  flush=True)
    print()
    print("| network | minigrad train (s) | PyTorch train (s) | ratio | minigrad + eval (s) | "
          "PyTorch + eval (s) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    totals = np.zeros(4)
    for name, r in [*rows, ("both (the protocol)", None)]:
        if r is None:
            vals = totals
        else:
            m, t = r["minigrad"], r["pytorch"]
            vals = np.array([m["train"], t["train"], m["train"] + m["eval"],
                             t["train"] + t["eval"]])
            totals += vals
        print(f"| {name} | {vals[0]:.1f} | {vals[1]:.1f} | {vals[0] / vals[1]:.2f} | "
              f"{vals[2]:.1f} | {vals[3]:.1f} | {vals[2] / vals[3]:.2f} |")
    return 0


def paper_mlp_like(bn: bool) -> nn.Sequential:
    """minigrad's network with the seed the minigrad run used: its weights for PyTorch."""
    mg.manual_seed(0)
    return paper_mlp(bn=bn)


if __name__ == "__main__":
    sys.exit(main())
