"""Time of one training step of three networks on one CPU thread, minigrad vs PyTorch.

The workloads (float32, softmax cross-entropy, plain SGD with lr 0.1, training mode):

* ``mlp-bn``: the Batch Normalization paper's MNIST network, 784-100-100-100-10 with
  BatchNorm before each sigmoid, batch 60 (hand-written NumPy too: the one in
  ``train_step.py``);
* ``lenet-bn``: LeNet-5 with BatchNorm as in "Dive into Deep Learning":
  conv(1->6, 5x5)-BN-sigmoid-avgpool 2-conv(6->16, 5x5)-BN-sigmoid-avgpool 2-flatten-
  linear(256->120)-BN-sigmoid-linear(120->84)-BN-sigmoid-linear(84->10), batch 256 of
  1x28x28;
* ``resnet``: a small ResNet: conv(1->16, 3x3, pad 1)-BN-ReLU-maxpool 2, then two
  residual blocks at 16x14x14 (conv 3x3-BN-ReLU-conv 3x3-BN, plus the block's input,
  ReLU), global average pooling and linear(16->10), batch 128 of 1x28x28.

Every framework starts from the same weights and batch; the script checks that their
first losses agree, then times them in turns (``chunk`` steps each, so that a change in
machine load hits all alike) and prints the median wall-clock and CPU milliseconds per
step, the system (kernel) time per step, and the ratios to PyTorch.

    python benchmarks/cnn.py [--workload mlp-bn|lenet-bn|resnet|all] [--steps N]
        [--keep-freed-memory on|off]

``--keep-freed-memory on`` (the default) calls ``mg.backend.keep_freed_memory()``
before anything is timed; it is process-wide, so it applies to every framework in the
run alike. ``off`` leaves the C allocator as it is.
"""

from __future__ import annotations


from _single_thread import torch  # first: one thread for every library

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from train_step import LR, torch_step  # the same plain SGD step, timed alike


BATCH = {"mlp-bn": 60, "lenet-bn": 256, "resnet": 128}


# ----------------------------------------------------------------- the networks
def residual_block(m: Any) -> type:
    """conv-BN-ReLU-conv-BN plus the input, then ReLU (channels and size kept), built from
    the module namespace ``m``: minigrad's ``nn`` or ``torch.nn`` (both tensors have
    ``.relu()``)."""

    class Residual(m.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1 = m.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = m.BatchNorm2d(c)
            self.conv2 = m.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = m.BatchNorm2d(c)

        def forward(self, x: Any) -> Any:
            h = self.bn1(self.conv1(x)).relu()
            return (self.bn2(self.conv2(h)) + x).relu()

    return Residual


def layers(m: Any, workload: str) -> list:
    """The workload's layers from ``m`` (minigrad's ``nn`` or ``torch.nn``): one
    description, so both frameworks build the same network, parameters in one order."""
    if workload == "mlp-bn":
        out: list = [m.Flatten()]
        for i, o in ((784, 100), (100, 100), (100, 100)):
            out += [m.Linear(i, o), m.BatchNorm1d(o), m.Sigmoid()]
        return [*out, m.Linear(100, 10)]
    if workload == "lenet-bn":  # d2l's LeNet with BatchNorm
        return [m.Conv2d(1, 6, 5), m.BatchNorm2d(6), m.Sigmoid(), m.AvgPool2d(2),
                m.Conv2d(6, 16, 5), m.BatchNorm2d(16), m.Sigmoid(), m.AvgPool2d(2),
                m.Flatten(), m.Linear(256, 120), m.BatchNorm1d(120), m.Sigmoid(),
                m.Linear(120, 84), m.BatchNorm1d(84), m.Sigmoid(), m.Linear(84, 10)]
    res = residual_block(m)
    return [m.Conv2d(1, 16, 3, padding=1, bias=False), m.BatchNorm2d(16), m.ReLU(),
            m.MaxPool2d(2), res(16), res(16), m.AvgPool2d(14), m.Flatten(), m.Linear(16, 10)]


def minigrad_net(workload: str) -> nn.Module:
    return nn.Sequential(*layers(nn, workload))


def torch_net(workload: str, weights: list[np.ndarray]) -> Any:
    net = torch.nn.Sequential(*layers(torch.nn, workload))
    params = list(net.parameters())
    if len(params) != len(weights):
        raise SystemExit(f"{workload}: torch has {len(params)} parameters, minigrad "
                         f"{len(weights)}")
    with torch.no_grad():
        for p, w in zip(params, weights):
            p.copy_(torch.from_numpy(w))
    return net


# ----------------------------------------------------------------- one step each
def minigrad_step(net: nn.Module, params: list, x: mg.Tensor, y: np.ndarray) -> float:
    for p in params:
        p.grad = None
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    for p in params:  # plain SGD in place, as mg.optim.SGD does
        p.data -= LR * p.grad.data
    return loss.item()


# ----------------------------------------------------------------- timing
def _sys_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


@dataclass
class Timing:
    """Per framework: median wall and CPU milliseconds per step, mean system ms per step."""

    wall_ms: float
    cpu_ms: float
    sys_ms: float


def time_steps(steps_by_name: dict[str, Callable[[], float]], steps: int, warmup: int,
               chunk: int = 5) -> dict[str, Timing]:
    """Time each framework's step, the frameworks taking turns ``chunk`` steps at a time.

    CPU time (of this process) is reported beside wall time: on a shared machine a
    step that waits for a core shows up in the wall time only.
    """
    for f in steps_by_name.values():
        for _ in range(warmup):
            f()
    wall: dict[str, list[float]] = {k: [] for k in steps_by_name}
    cpu: dict[str, list[float]] = {k: [] for k in steps_by_name}
    sys_s = dict.fromkeys(steps_by_name, 0.0)
    for _ in range(max(1, steps // chunk)):
        for k, f in steps_by_name.items():
            s0 = _sys_seconds()
            for _ in range(chunk):
                t0, c0 = time.perf_counter(), time.process_time()
                f()
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
            sys_s[k] += _sys_seconds() - s0
    return {k: Timing(1e3 * statistics.median(wall[k]), 1e3 * statistics.median(cpu[k]),
                      1e3 * sys_s[k] / len(wall[k])) for k in steps_by_name}


def run(workload: str, steps: int, warmup: int) -> dict[str, Timing]:
    rng = np.random.default_rng(0)
    n = BATCH[workload]
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    mg.manual_seed(0)
    net = minigrad_net(workload)
    weights = [p.numpy().copy() for p in net.parameters()]
    params = list(net.parameters())
    xt = mg.tensor(x)
    steps_by_name: dict[str, Callable[[], float]] = {
        "minigrad": lambda: minigrad_step(net, params, xt, y)}
    if workload == "mlp-bn":  # the hand-written NumPy network of train_step.py
        from train_step import VARIANTS, NumpyMLP  # noqa: PLC0415

        hand = NumpyMLP(weights, VARIANTS["bn"])
        x2 = x.reshape(n, -1)
        steps_by_name["numpy"] = lambda: hand.step(x2, y)
    if torch is not None:
        tnet = torch_net(workload, weights)
        tparams = list(tnet.parameters())
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        steps_by_name["pytorch"] = lambda: torch_step(tnet, tparams, tx, ty)
    first = {k: [f() for _ in range(3)] for k, f in steps_by_name.items()}
    ref = np.array(first["minigrad"])
    for k, v in first.items():
        if float(np.max(np.abs(np.array(v) - ref))) > 1e-4 * max(1.0, float(np.max(ref))):
            raise SystemExit(f"{workload}: {k} disagrees with minigrad on the first losses: "
                             f"{v} vs {ref.tolist()}")
    return time_steps(steps_by_name, steps, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", choices=[*BATCH, "all"], default="all")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed steps per framework (default: 400 mlp-bn, 60 lenet-bn and "
                         "resnet)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--keep-freed-memory", choices=["on", "off"], default="on")
    args = ap.parse_args()
    keep = args.keep_freed_memory
    if keep == "on" and not mg.backend.keep_freed_memory():
        keep = "on (not available here: the C library is not glibc)"
    print(f"training step (forward, backward, SGD), one thread, float32; "
          f"keep_freed_memory: {keep}")
    print(f"{'workload':9s} {'framework':10s} {'wall ms':>8s} {'cpu ms':>8s} {'sys ms':>7s} "
          f"{'wall vs torch':>14s} {'cpu vs torch':>13s}")
    for workload in BATCH if args.workload == "all" else [args.workload]:
        steps = args.steps or (400 if workload == "mlp-bn" else 60)
        res = run(workload, steps, args.warmup)
        ref = res.get("pytorch")
        for k, t in res.items():
            vs_wall = f"{t.wall_ms / ref.wall_ms:.2f}x" if ref else "-"
            vs_cpu = f"{t.cpu_ms / ref.cpu_ms:.2f}x" if ref else "-"
            print(f"{workload:9s} {k:10s} {t.wall_ms:8.2f} {t.cpu_ms:8.2f} {t.sys_ms:7.2f} "
                  f"{vs_wall:>14s} {vs_cpu:>13s}", flush=True)

if __name__ == "__main__":
    main()
