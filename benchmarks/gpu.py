"""minigrad on the GPU (CuPy), side by side with PyTorch CUDA in the same run.

Three parts, each timed with CUDA events after a warm-up, reporting the median of many
runs (a run's time is the span between two events recorded around it on the GPU's
timeline, so it includes any gap the host leaves between kernel launches):

1. BatchNorm forward + backward in training mode, float32, at (256, 64, 56, 56) and
   (4096, 4096): minigrad ``impl="composed"``, ``impl="fused"`` (the CUDA kernels of
   ``minigrad/nn/_bn_cuda.py``) and ``torch.nn.functional.batch_norm``. For fused BN the
   achieved bandwidth is set against the device's copy bandwidth (a large device-to-
   device copy, counted as one read and one write). Bytes counted for BN: 5 passes over
   the input's size (x read and y written forward; dy and x read and dx written
   backward), the least any implementation must move; minigrad's kernels make 8 (x is
   read twice forward, dy and x twice backward), shown too.
2. One training step (forward, loss, backward, SGD with momentum) of the paper's MLP
   with BN (batch 60) and of the BN CNN (batch 64) from ``models.nets``, against the
   same networks in PyTorch with the same weights.
3. The same minigrad step captured once in a CUDA graph and replayed: possible only
   because the step never waits for the device (no host round trip). Skipped, with the
   reason printed, if capture fails.

    python benchmarks/gpu.py [--quick]

Without CuPy and a GPU it prints one line saying so and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for `models`

import minigrad as mg  # noqa: E402
import minigrad.nn.functional as F  # noqa: E402
from minigrad import backend, nn  # noqa: E402
from minigrad.nn.batchnorm import batch_norm  # noqa: E402

BN_SHAPES = [(256, 64, 56, 56), (4096, 4096)]
BN_PASSES = 5      # the least traffic of BN forward + backward, in input-sized passes
KERNEL_PASSES = 8  # what the fused CUDA kernels move


# ---------------------------------------------------------------------- timing
def cuda_median_ms(cp: Any, fn: Callable[[], Any], warmup: int, runs: int) -> float:
    """Median time of ``fn`` in milliseconds, measured with CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    cp.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(runs):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


def torch_median_ms(torch: Any, fn: Callable[[], Any], warmup: int, runs: int) -> float:
    """The same for PyTorch, with its own events (on its current stream)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def load_torch() -> tuple[Any, str]:
    """PyTorch with CUDA, or None and the reason."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} has no CUDA here"
    return torch, ""


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f}x" if a and b else "     -"


# ---------------------------------------------------------------------- 1. BatchNorm
def copy_bandwidth(cp: Any, nbytes: int, warmup: int, runs: int) -> float:
    """GB/s of a device-to-device copy of ``nbytes`` (one read plus one write)."""
    src = cp.ones(nbytes // 4, dtype=cp.float32)
    dst = cp.empty_like(src)
    ms = cuda_median_ms(cp, lambda: cp.copyto(dst, src), warmup, runs)
    return 2 * src.nbytes / (ms * 1e-3) / 1e9


def bench_batchnorm(cp: Any, torch: Any, shape: tuple, warmup: int, runs: int) -> dict:
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape, dtype=np.float32)
    dy_np = rng.standard_normal(shape, dtype=np.float32)
    c = shape[1]
    out: dict = {}
    for impl in ("composed", "fused"):
        x = mg.tensor(x_np, device="cuda", requires_grad=True)
        dy = mg.tensor(dy_np, device="cuda")
        w = mg.ones(c, device="cuda", requires_grad=True)
        b = mg.zeros(c, device="cuda", requires_grad=True)
        rm, rv = mg.zeros(c, device="cuda"), mg.ones(c, device="cuda")

        def step(x: Any = x, dy: Any = dy, w: Any = w, b: Any = b, rm: Any = rm, rv: Any = rv,
                 impl: str = impl) -> None:
            x.grad = w.grad = b.grad = None  # time the gradients, not their accumulation
            batch_norm(x, rm, rv, w, b, training=True, impl=impl).backward(dy)

        out[impl] = cuda_median_ms(cp, step, warmup, runs)
        del x, dy, step
    if torch is not None:
        xt = torch.tensor(x_np, device="cuda", requires_grad=True)
        dyt = torch.tensor(dy_np, device="cuda")
        wt = torch.ones(c, device="cuda", requires_grad=True)
        bt = torch.zeros(c, device="cuda", requires_grad=True)
        rmt, rvt = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")

        def torch_step() -> None:
            xt.grad = wt.grad = bt.grad = None
            torch.nn.functional.batch_norm(xt, rmt, rvt, wt, bt, training=True).backward(dyt)

        out["torch"] = torch_median_ms(torch, torch_step, warmup, runs)
    return out


# ---------------------------------------------------------------------- 2. training steps
def torch_twin(torch: Any, model: nn.Sequential) -> Any:
    """The same network in PyTorch, layer by layer, with the same weights and buffers."""
    tnn = torch.nn
    layers = []
    for m in model:
        if isinstance(m, nn.Flatten):
            layers.append(tnn.Flatten())
        elif isinstance(m, nn.Linear):
            layers.append(tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None))
        elif isinstance(m, nn.Conv2d):
            layers.append(tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                     m.padding, bias=m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            cls = tnn.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else tnn.BatchNorm2d
            layers.append(cls(m.num_features, eps=m.eps, momentum=m.momentum))
        elif isinstance(m, nn.MaxPool2d):
            layers.append(tnn.MaxPool2d(m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.ReLU):
            layers.append(tnn.ReLU())
        elif isinstance(m, nn.Sigmoid):
            layers.append(tnn.Sigmoid())
        else:
            raise TypeError(f"no PyTorch twin for {type(m).__name__}")
    net = tnn.Sequential(*layers)
    state = {k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()}
    net.load_state_dict(state)
    return net.cuda()


def bench_step(cp: Any, torch: Any, name: str, batch: int, warmup: int, runs: int) -> dict:
    from models import nets

    mg.manual_seed(0)
    model = nets.build(name)
    twin = torch_twin(torch, model) if torch is not None else None
    model.to("cuda")
    rng = np.random.default_rng(1)
    x_np = rng.uniform(0, 1, (batch, 1, 28, 28)).astype(np.float32)
    y_np = rng.integers(0, 10, batch)
    x, y = mg.tensor(x_np, device="cuda"), mg.tensor(y_np, device="cuda")
    opt = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step() -> Any:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    out = {"minigrad": cuda_median_ms(cp, step, warmup, runs)}
    if twin is not None:
        xt, yt = torch.tensor(x_np, device="cuda"), torch.tensor(y_np, device="cuda")
        topt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)

        def torch_step() -> None:
            loss = torch.nn.functional.cross_entropy(twin(xt), yt)
            topt.zero_grad()
            loss.backward()
            topt.step()

        out["torch"] = torch_median_ms(torch, torch_step, warmup, runs)
    return out


# ---------------------------------------------------------------------- 3. CUDA graph
def bench_graph(cp: Any, name: str, batch: int, warmup: int, runs: int) -> tuple[float, str]:
    """Replay time of one captured training step (SGD), or 0 and why it failed."""
    from models import nets

    mg.manual_seed(0)
    model = nets.build(name).to("cuda")
    rng = np.random.default_rng(1)
    cp.cuda.Device().synchronize()  # the model was copied over on the default stream
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        x = mg.tensor(rng.uniform(0, 1, (batch, 1, 28, 28)).astype(np.float32), device="cuda")
        y = mg.tensor(rng.integers(0, 10, batch), device="cuda")
        opt = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step() -> Any:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        for _ in range(3):  # compile the kernels, make the momentum buffers
            step()
        stream.synchronize()
        try:
            stream.begin_capture()
            try:
                loss = step()
            except Exception:  # report what broke the capture, not the failed end
                with contextlib.suppress(Exception):
                    stream.end_capture()
                raise
            graph = stream.end_capture()
        except Exception as exc:  # a synchronisation inside the step, or no graph support
            return 0.0, f"{type(exc).__name__}: {exc}".splitlines()[0]
        ms = cuda_median_ms(cp, lambda: graph.launch(stream=stream), warmup, runs)
        stream.synchronize()
        if not np.isfinite(loss.item()):
            return 0.0, "the replayed step gave a non-finite loss"
    return ms, ""


# ---------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = parser.parse_args()
    if not mg.cuda_available():
        why = (backend._cupy_error or "").split("(", 1)[-1].split(")", 1)[0]
        print(f"benchmarks/gpu.py: nothing to measure, CuPy and a CUDA GPU are needed ({why}); "
              "see docs/gpu.md")
        return 0
    cp = backend.get_array_module("cuda")
    torch, why = load_torch()
    warmup, runs = (3, 10) if args.quick else (10, 50)
    dev = cp.cuda.runtime.getDeviceProperties(cp.cuda.runtime.getDevice())
    name = dev.get("name", b"?")
    print(f"device: {name.decode() if isinstance(name, bytes) else name}, CuPy {cp.__version__}"
          + (f", PyTorch {torch.__version__}" if torch else f" ({why}: no PyTorch column)"))
    print(f"timing: CUDA events, median of {runs} runs after {warmup} warm-up runs\n")

    copy_gbs = copy_bandwidth(cp, (1 << 28) if args.quick else (1 << 30), warmup, runs)
    print(f"device-to-device copy: {copy_gbs:,.0f} GB/s (read + write)\n")
    print("BatchNorm forward + backward, training, float32 (ms)")
    print(f"{'shape':>20} {'composed':>9} {'fused':>9} {'torch':>9}  {'comp/fused':>10} "
          f"{'fused/torch':>11}  fused GB/s (5 passes, 8 passes) vs copy")
    for shape in BN_SHAPES:
        t = bench_batchnorm(cp, torch, shape, warmup, runs)
        nbytes = int(np.prod(shape)) * 4
        gbs = [p * nbytes / (t["fused"] * 1e-3) / 1e9 for p in (BN_PASSES, KERNEL_PASSES)]
        tt = t.get("torch")
        print(f"{str(shape):>20} {t['composed']:9.3f} {t['fused']:9.3f} "
              f"{tt if tt else float('nan'):9.3f}  {ratio(t['composed'], t['fused']):>10} "
              f"{ratio(t['fused'], tt):>11}  {gbs[0]:,.0f}, {gbs[1]:,.0f} "
              f"({gbs[0] / copy_gbs:.0%}, {gbs[1] / copy_gbs:.0%})")

    print("\nTraining step: forward, cross-entropy, backward, SGD momentum (ms)")
    print(f"{'model':>12} {'batch':>5} {'minigrad':>9} {'torch':>9} {'mg/torch':>9} "
          f"{'graph':>9} {'eager/graph':>11}")
    for model, batch in (("mlp-bn", 60), ("cnn-bn", 64)):
        t = bench_step(cp, torch, model, batch, warmup, runs)
        g_ms, g_why = bench_graph(cp, model, batch, warmup, runs)
        tt = t.get("torch")
        print(f"{model:>12} {batch:5d} {t['minigrad']:9.3f} "
              f"{tt if tt else float('nan'):9.3f} {ratio(t['minigrad'], tt):>9} "
              f"{g_ms if g_ms else float('nan'):9.3f} {ratio(t['minigrad'], g_ms):>11}")
        if g_why:
            print(f"{'':>12} CUDA graph skipped: {g_why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
