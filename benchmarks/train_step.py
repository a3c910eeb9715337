"""Time of one training step (forward, backward, SGD update) on one CPU thread.

Two models, each written three times and started from the same weights:

* ``mlp``: 784-100-100-100-10 with sigmoid, batch 60, softmax cross-entropy;
* ``cnn``: batch 64 of 1x28x28, conv(1->8, 3x3, pad 1)-ReLU-maxpool 2-conv(8->16, 3x3,
  pad 1)-ReLU-maxpool 2-linear(784->10), softmax cross-entropy.

``minigrad`` uses ``minigrad.nn``; ``numpy`` is forward and backward written by hand
with the same algorithms (im2col + GEMM, pairwise-max pooling) and no autograd;
``pytorch`` (CPU, when installed) uses ``torch.nn``. All three use an inline SGD
step. The script prints the median milliseconds per step and the ratios, and
checks that the three agree on the losses of the first steps.

    python benchmarks/train_step.py [--model mlp|cnn|all] [--steps 300]
        [--variant plain|bn] [--bn-impl fused|composed]

Variants: ``--variant`` names an entry of ``VARIANTS``, which says what to put
after each hidden linear/conv layer (e.g. a normalisation layer) in each
framework; ``plain`` puts nothing. ``bn`` puts BatchNorm (training mode, affine,
eps 1e-5, momentum 0.1) after each hidden Linear (before the sigmoid) and after
each conv (before the ReLU): ``nn.BatchNorm1d/2d`` in minigrad (``--bn-impl``
picks its implementation), ``torch.nn.BatchNorm1d/2d``, and `HandBatchNorm` in
the NumPy code. With it, the running statistics of the three are compared too.
"""

from __future__ import annotations


from _single_thread import torch  # first: one thread for every library

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn


LR = 0.1
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


# ----------------------------------------------------------------- variants (the hook)
@dataclass
class Variant:
    """What goes after each hidden layer, per framework: ``f(features, is_conv) -> layer``.

    A None entry means "nothing"; a variant that the hand-written NumPy code does
    not implement sets ``numpy_ok=False`` and that column is skipped. The NumPy
    layer (``numpy_after``) is an object with ``n_params`` (its parameters follow
    those of the layer before it in the flat weight list, as in ``nn.Module``),
    ``forward(z, *params) -> y`` (it may overwrite ``z``) and
    ``backward(dy, *params) -> (dz, *param_grads)`` (it may overwrite ``dy``); if it
    has running statistics, ``running_stats() -> list of arrays``.
    """

    minigrad_after: Callable[[int, bool], Any] | None = None
    torch_after: Callable[[int, bool], Any] | None = None
    numpy_ok: bool = True
    numpy_after: Callable[[int, bool], Any] | None = None


def bn_variant(impl: str = "fused") -> Variant:
    """BatchNorm after each hidden layer; ``impl`` is minigrad's implementation."""
    return Variant(
        lambda n, conv: (nn.BatchNorm2d if conv else nn.BatchNorm1d)(
            n, eps=BN_EPS, momentum=BN_MOMENTUM, impl=impl),
        lambda n, conv: (torch.nn.BatchNorm2d if conv else torch.nn.BatchNorm1d)(
            n, eps=BN_EPS, momentum=BN_MOMENTUM),
        numpy_ok=True,
        numpy_after=lambda n, conv: HandBatchNorm(n))


VARIANTS: dict[str, Variant] = {"plain": Variant(), "bn": bn_variant("fused")}


# ----------------------------------------------------------------- data
def batch(model: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if model == "mlp":
        x = rng.random((60, 784), dtype=np.float32)
    else:
        x = rng.random((64, 1, 28, 28), dtype=np.float32)
    return x, rng.integers(0, 10, size=x.shape[0])


# ----------------------------------------------------------------- minigrad
def minigrad_model(model: str, variant: Variant) -> nn.Module:
    def after(n: int, conv: bool) -> list:
        return [variant.minigrad_after(n, conv)] if variant.minigrad_after else []

    if model == "mlp":
        layers: list = []
        for i, o in ((784, 100), (100, 100), (100, 100)):
            layers += [nn.Linear(i, o), *after(o, False), nn.Sigmoid()]
        return nn.Sequential(*layers, nn.Linear(100, 10))
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), *after(8, True), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), *after(16, True), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


def minigrad_step(net: nn.Module, params: list, x: mg.Tensor, y: np.ndarray) -> float:
    net.zero_grad()
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    for p in params:  # plain SGD on the raw arrays, in place (what mg.optim does too)
        p._data -= LR * p.grad._data
    return loss.item()


# ----------------------------------------------------------------- NumPy by hand
def _softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    s = p.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(n), y]))
    p /= s
    p[np.arange(n), y] -= 1
    p *= 1.0 / n
    return loss, p


class HandBatchNorm:
    """Training-mode batch normalization of (N, C) or (N, C, H, W), by hand.

    Per channel, over the ``m`` values it has in the batch: ``x_hat = (x - mean) /
    sqrt(var + eps)`` with the biased variance, ``y = gamma * x_hat + beta``; the
    running mean and running (unbiased) variance are updated as in ``torch.nn``.
    Backward::

        dbeta = sum(dy),  dgamma = sum(dy * x_hat),
        dx = k * dy - (k * dgamma / m) * x_hat - k * dbeta / m,  k = gamma / sqrt(var + eps)

    Per-channel sums are matrix-vector products with vectors of ones: over N for
    (N, C); for (N, C, H, W) over N (as an (N, C*H*W) matrix) and then over H*W.
    Forward and backward each allocate one full-size array (their result).
    """

    n_params = 2  # gamma, beta

    def __init__(self, c: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM) -> None:
        self.c, self.eps, self.momentum = c, eps, momentum
        self.running_mean = np.zeros(c, dtype=np.float32)
        self.running_var = np.ones(c, dtype=np.float32)
        self.ones_n: np.ndarray | None = None
        self.ones_s: np.ndarray | None = None
        self.x_hat: np.ndarray | None = None
        self.inv_std: np.ndarray | None = None

    def _channel_sums(self, a: np.ndarray) -> np.ndarray:
        n = a.shape[0]
        if self.ones_n is None or self.ones_n.shape[0] != n or self.ones_n.dtype != a.dtype:
            self.ones_n = np.ones(n, dtype=a.dtype)
        if a.ndim == 2:
            return self.ones_n @ a
        s = a.size // (n * self.c)
        if self.ones_s is None or self.ones_s.shape[0] != s or self.ones_s.dtype != a.dtype:
            self.ones_s = np.ones(s, dtype=a.dtype)
        return (self.ones_n @ a.reshape(n, -1)).reshape(self.c, s) @ self.ones_s

    def forward(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """``x`` (owned by the caller, overwritten with x_hat) -> a new array ``y``."""
        shape = (self.c,) + (1,) * (x.ndim - 2)  # broadcasts along axis 1
        m = x.size // self.c
        mean = self._channel_sums(x) / m
        x -= mean.reshape(shape)
        y = np.square(x)
        var = self._channel_sums(y) / m
        inv_std = 1 / np.sqrt(var + x.dtype.type(self.eps))
        x *= inv_std.reshape(shape)  # now x_hat
        np.multiply(x, gamma.reshape(shape), out=y)
        y += beta.reshape(shape)
        self.x_hat, self.inv_std = x, inv_std
        mom = self.momentum
        self.running_mean *= 1 - mom
        self.running_mean += mom * mean
        self.running_var *= 1 - mom
        self.running_var += (mom * m / (m - 1)) * var
        return y

    def backward(self, dy: np.ndarray, gamma: np.ndarray,
                 beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``dy`` (overwritten) -> ``(dx, dgamma, dbeta)``."""
        x_hat = self.x_hat
        shape = (self.c,) + (1,) * (dy.ndim - 2)
        m = dy.size // self.c
        g_beta = self._channel_sums(dy)
        dx = np.multiply(dy, x_hat)
        g_gamma = self._channel_sums(dx)
        k = gamma * self.inv_std
        np.multiply(x_hat, (k * (-1 / m) * g_gamma).reshape(shape), out=dx)
        dy *= k.reshape(shape)
        dx += dy
        dx += (k * (-1 / m) * g_beta).reshape(shape)
        self.x_hat = None
        return dx, g_gamma, g_beta

    def running_stats(self) -> list[np.ndarray]:
        return [self.running_mean, self.running_var]


def _hand_layers(variant: Variant, sizes: tuple[int, ...], conv: bool) -> list:
    return [variant.numpy_after(n, conv) for n in sizes] if variant.numpy_after else []


class NumpyMLP:
    """The MLP with forward and backward written out by hand."""

    def __init__(self, weights: list[np.ndarray], variant: Variant = VARIANTS["plain"]) -> None:
        # W1, b1, [after-1 params], W2, b2, [after-2 params], W3, b3, [...], W4, b4
        self.w = [a.copy() for a in weights]
        self.after = _hand_layers(variant, (100, 100, 100), False)
        per = 2 + (self.after[0].n_params if self.after else 0)
        self.off = [per * k for k in range(4)]  # index of each Linear's W in self.w
        self.ones: np.ndarray | None = None

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        w, off, after = self.w, self.off, self.after
        if self.ones is None or self.ones.shape[0] != x.shape[0]:
            self.ones = np.ones(x.shape[0], dtype=x.dtype)  # column sums as a GEMV
        acts = [x]
        h = x
        for k in range(3):
            z = h @ w[off[k]].T
            z += w[off[k] + 1]
            if after:
                z = after[k].forward(z, *w[off[k] + 2:off[k + 1]])
            z *= 0.5  # sigmoid(z) = (1 + tanh(z/2)) / 2, in place
            np.tanh(z, out=z)
            z *= 0.5
            z += 0.5
            acts.append(z)
            h = z
        logits = h @ w[off[3]].T
        logits += w[off[3] + 1]
        loss, d = _softmax_xent(logits, y)
        grads: list = [None] * len(w)
        for k in range(3, -1, -1):
            if after and k < 3:
                d, *g_after = after[k].backward(d, *w[off[k] + 2:off[k + 1]])
                grads[off[k] + 2:off[k + 1]] = g_after
            grads[off[k]] = d.T @ acts[k]
            grads[off[k] + 1] = self.ones @ d
            if k:
                a = acts[k]
                d = d @ w[off[k]]
                d *= a * (1 - a)
        for p, g in zip(w, grads):
            p -= LR * g
        return loss

    def running_stats(self) -> list[np.ndarray]:
        return [s for layer in self.after for s in getattr(layer, "running_stats", list)()]


def _im2col(x: np.ndarray) -> np.ndarray:
    """3x3 windows of x padded by 1: (N, C*9, H*W)."""
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2, w + 2), dtype=x.dtype)
    xp[:, :, 1:-1, 1:-1] = x
    s = xp.strides
    v = as_strided(xp, (n, c, 3, 3, h, w), (s[0], s[1], s[2], s[3], s[2], s[3]))
    return v.reshape(n, c * 9, h * w)


def _col2im(cols: np.ndarray, shape: tuple) -> np.ndarray:
    n, c, h, w = shape
    cols = cols.reshape(n, c, 3, 3, h, w)
    gp = np.zeros((n, c, h + 2, w + 2), dtype=cols.dtype)
    for a in range(3):
        for b in range(3):
            gp[:, :, a:a + h, b:b + w] += cols[:, :, a, b]
    return gp[:, :, 1:-1, 1:-1]


def _pool_fwd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2x2 max pooling as two pairwise maxima (along W, then along H)."""
    n, c, h, w = x.shape
    x3 = x.reshape(n * c * h, w // 2, 2)
    right = x3[..., 1] > x3[..., 0]
    m = np.maximum(x3[..., 0], x3[..., 1]).reshape(n * c * h // 2, 2, w // 2)
    low = m[:, 1] > m[:, 0]
    return np.maximum(m[:, 0], m[:, 1]).reshape(n, c, h // 2, w // 2), right, low


def _pool_bwd(g: np.ndarray, right: np.ndarray, low: np.ndarray, shape: tuple) -> np.ndarray:
    n, c, h, w = shape
    g2 = g.reshape(n * c * h // 2, w // 2)
    gm = np.empty((n * c * h // 2, 2, w // 2), dtype=g.dtype)
    np.multiply(g2, low, out=gm[:, 1])
    np.subtract(g2, gm[:, 1], out=gm[:, 0])
    gm2 = gm.reshape(n * c * h, w // 2)
    gx = np.empty((n * c * h, w // 2, 2), dtype=g.dtype)
    np.multiply(gm2, right, out=gx[..., 1])
    np.subtract(gm2, gx[..., 1], out=gx[..., 0])
    return gx.reshape(shape)


class NumpyCNN:
    """The CNN with forward and backward written out by hand."""

    def __init__(self, weights: list[np.ndarray], variant: Variant = VARIANTS["plain"]) -> None:
        # K1, c1, [after-1 params], K2, c2, [after-2 params], W, b
        self.w = [a.copy() for a in weights]
        self.after = _hand_layers(variant, (8, 16), True)
        self.per = 2 + (self.after[0].n_params if self.after else 0)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        per, after = self.per, self.after
        k1, c1, *ap1 = self.w[:per]
        k2, c2, *ap2 = self.w[per:2 * per]
        wl, bl = self.w[2 * per:]
        n = x.shape[0]
        cols1 = _im2col(x)
        z1 = (k1.reshape(8, -1) @ cols1).reshape(n, 8, 28, 28)
        z1 += c1.reshape(8, 1, 1)
        if after:  # z1 becomes the layer's output (a new array), ReLU in place on it
            z1 = after[0].forward(z1, *ap1)
        a1 = np.maximum(z1, 0, out=z1 if after else None)
        p1, r1, l1 = _pool_fwd(a1)
        cols2 = _im2col(p1)
        z2 = (k2.reshape(16, -1) @ cols2).reshape(n, 16, 14, 14)
        z2 += c2.reshape(16, 1, 1)
        if after:
            z2 = after[1].forward(z2, *ap2)
        a2 = np.maximum(z2, 0, out=z2 if after else None)
        p2, r2, l2 = _pool_fwd(a2)
        flat = p2.reshape(n, -1)
        logits = flat @ wl.T
        logits += bl
        loss, d = _softmax_xent(logits, y)

        g_wl = d.T @ flat
        g_bl = d.sum(axis=0)
        g = (d @ wl).reshape(p2.shape)
        g = _pool_bwd(g, r2, l2, a2.shape)
        g *= z2 > 0  # (after an in-place ReLU, z2 > 0 exactly where its input was)
        if after:
            g, *g_ap2 = after[1].backward(g, *ap2)
        g3 = g.reshape(n, 16, -1)
        g_k2 = (g3 @ cols2.transpose(0, 2, 1)).sum(axis=0).reshape(k2.shape)
        g_c2 = g3.sum(axis=(0, 2))
        g = _col2im(k2.reshape(16, -1).T @ g3, p1.shape)
        g = _pool_bwd(g, r1, l1, a1.shape)
        g *= z1 > 0
        if after:
            g, *g_ap1 = after[0].backward(g, *ap1)
        g3 = g.reshape(n, 8, -1)
        g_k1 = (g3 @ cols1.transpose(0, 2, 1)).sum(axis=0).reshape(k1.shape)
        g_c1 = g3.sum(axis=(0, 2))
        grads = (g_k1, g_c1, g_k2, g_c2, g_wl, g_bl) if not after else (
            g_k1, g_c1, *g_ap1, g_k2, g_c2, *g_ap2, g_wl, g_bl)
        for p, gr in zip(self.w, grads):
            p -= LR * gr
        return loss

    def running_stats(self) -> list[np.ndarray]:
        return [s for layer in self.after for s in getattr(layer, "running_stats", list)()]


# ----------------------------------------------------------------- PyTorch
def torch_model(model: str, variant: Variant, weights: list[np.ndarray]) -> Any:
    tnn = torch.nn

    def after(n: int, conv: bool) -> list:
        return [variant.torch_after(n, conv)] if variant.torch_after else []

    if model == "mlp":
        layers: list = []
        for i, o in ((784, 100), (100, 100), (100, 100)):
            layers += [tnn.Linear(i, o), *after(o, False), tnn.Sigmoid()]
        net = tnn.Sequential(*layers, tnn.Linear(100, 10))
    else:
        net = tnn.Sequential(
            tnn.Conv2d(1, 8, 3, padding=1), *after(8, True), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(8, 16, 3, padding=1), *after(16, True), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Flatten(), tnn.Linear(16 * 7 * 7, 10))
    with torch.no_grad():
        for p, w in zip(net.parameters(), weights):
            p.copy_(torch.from_numpy(w))
    return net


def torch_step(net: Any, params: list, x: Any, y: Any) -> float:
    for p in params:
        p.grad = None
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    with torch.no_grad():
        for p in params:
            p.sub_(p.grad, alpha=LR)
    return loss.item()


# ----------------------------------------------------------------- timing
def median_ms(steps_by_name: dict[str, Callable[[], float]], steps: int,
              warmup: int, chunk: int = 10) -> dict[str, float]:
    """Median ms per step of each framework.

    The frameworks take turns, ``chunk`` steps at a time, so that a change in
    machine load during the run affects all of them alike.
    """
    for f in steps_by_name.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in steps_by_name}
    for _ in range(max(1, steps // chunk)):
        for k, f in steps_by_name.items():
            for _ in range(chunk):
                t0 = time.thread_time()  # CPU time: other processes' turns do not count
                f()
                times[k].append(time.thread_time() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def _running_stats(named_buffers: Any) -> list[np.ndarray]:
    """The running means and variances among a module's buffers, in module order."""
    return [np.asarray(b.numpy(), dtype=np.float64) for name, b in named_buffers
            if name.rsplit(".", 1)[-1] in ("running_mean", "running_var")]


def run(model: str, variant: Variant, steps: int, warmup: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x, y = batch(model, rng)
    mg.manual_seed(0)
    net = minigrad_model(model, variant)
    weights = [p.numpy() for p in net.parameters()]
    params = list(net.parameters())
    xt = mg.tensor(x)
    steps_by_name: dict[str, Callable[[], float]] = {
        "minigrad": lambda: minigrad_step(net, params, xt, y)}
    stats_by_name: dict[str, Callable[[], list[np.ndarray]]] = {
        "minigrad": lambda: _running_stats(net.named_buffers())}
    if variant.numpy_ok:
        hand = (NumpyMLP if model == "mlp" else NumpyCNN)(weights, variant)
        steps_by_name["numpy"] = lambda: hand.step(x, y)
        stats_by_name["numpy"] = lambda: [s.astype(np.float64) for s in hand.running_stats()]
    if torch is not None:
        tnet = torch_model(model, variant, weights)
        tparams = list(tnet.parameters())
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        steps_by_name["pytorch"] = lambda: torch_step(tnet, tparams, tx, ty)
        stats_by_name["pytorch"] = lambda: _running_stats(tnet.named_buffers())

    # The same start and the same batch: the first losses must agree.
    first = {k: [f() for _ in range(3)] for k, f in steps_by_name.items()}
    ref = np.array(first["minigrad"])
    for k, v in first.items():
        err = float(np.max(np.abs(np.array(v) - ref)))
        if err > 1e-4 * max(1.0, float(np.max(np.abs(ref)))):
            raise SystemExit(f"{model}: {k} disagrees with minigrad on the first losses: "
                             f"{v} vs {ref.tolist()}")
    # ... and so must the running statistics they have gathered (if any).
    ref_stats = stats_by_name["minigrad"]()
    for k in steps_by_name:
        stats = stats_by_name[k]()
        if len(stats) != len(ref_stats):
            raise SystemExit(f"{model}: {k} has {len(stats)} running statistics, minigrad "
                             f"{len(ref_stats)}")
        for i, (a, r) in enumerate(zip(stats, ref_stats)):
            err = float(np.max(np.abs(a - r)))
            if err > 1e-4 * max(1.0, float(np.max(np.abs(r)))):
                raise SystemExit(f"{model}: {k} disagrees with minigrad on running "
                                 f"statistic {i} (max abs difference {err:.3g})")
    return median_ms(steps_by_name, steps, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["mlp", "cnn", "all"], default="all")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed steps per framework (default: 400 for mlp, 60 for cnn)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="plain")
    ap.add_argument("--bn-impl", choices=["fused", "composed"], default="fused",
                    help="minigrad's BatchNorm implementation for --variant bn")
    args = ap.parse_args()
    models = ["mlp", "cnn"] if args.model == "all" else [args.model]
    variant = bn_variant(args.bn_impl) if args.variant == "bn" else VARIANTS[args.variant]
    impl = f" (minigrad impl {args.bn_impl!r})" if args.variant == "bn" else ""
    print(f"training step (forward, backward, SGD), one thread, float32, variant "
          f"{args.variant!r}{impl}; median ms/step")
    print(f"{'model':6s} {'framework':10s} {'ms/step':>9s} {'vs numpy':>9s} {'vs torch':>9s}")
    for model in models:
        steps = args.steps or (400 if model == "mlp" else 60)
        res = run(model, variant, steps, args.warmup)
        for k, ms in res.items():
            vs_np = f"{ms / res['numpy']:.2f}x" if "numpy" in res else "-"
            vs_t = f"{ms / res['pytorch']:.2f}x" if "pytorch" in res else "-"
            print(f"{model:6s} {k:10s} {ms:9.3f} {vs_np:>9s} {vs_t:>9s}")


if __name__ == "__main__":
    main()
