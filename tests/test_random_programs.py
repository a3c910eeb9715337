"""Random programs of minigrad ops, run side by side with PyTorch in float64.

Hypothesis draws small programs: leaves of random broadcastable shapes, then a
few steps, each one op of the public API (arithmetic with broadcasting, unary
ops, reductions with ``axis``/``keepdims``, reshapes and indexing, ``where``,
``maximum``, ``concatenate``, ``stack``, ``matmul``, ``softmax``, both
``batch_norm`` implementations, ``conv2d``, pooling, losses, ``detach``, ...)
applied to earlier values. Each program runs in minigrad and in PyTorch on the
same random values, and the same gradient calls are made on both graphs, in
this order:

1. forward values of every step (and BatchNorm's running statistics);
2. ``mg.grad(outputs, A, grad_outputs, create_graph=True, allow_unused=True)``
   over a random subset ``A`` of the values that require grad (leaves or
   intermediates), then the Hessian-vector product ``mg.grad(sum(g_i * v_i), B)``
   (when the cotangents require grad, also its derivative with respect to them);
3. a partial ``mg.grad(outputs, C, retain_graph=True, allow_unused=True)``;
4. ``output.backward(cotangent)`` for each output in turn, accumulating into
   every leaf's ``.grad``: once, twice or with ``create_graph=True``.

Steps 2 and 3 leave the graph to later calls, so state that one call leaks into
the next shows up as a wrong gradient. Non-differentiable points are avoided by
construction: kinks (``abs``, ``relu``, ``clip``, ``maximum``, ``max``,
``max_pool2d``, comparisons feeding ``where``) get a shift or a constant
jitter, and a draw whose values land within a small margin of a kink, or grow
huge, is rejected. A failure prints the program as one line per value.

The runs are deterministic (a fixed seed, no example database). For a longer
search: ``MINIGRAD_FUZZ_EXAMPLES=5000 MINIGRAD_FUZZ_SEED=7 pytest
tests/test_random_programs.py``. The plain tests at the end pin bugs such
programs found.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, reject, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.torch

MAX_EXAMPLES = int(os.environ.get("MINIGRAD_FUZZ_EXAMPLES", "600"))
SEED = int(os.environ.get("MINIGRAD_FUZZ_SEED", "0"))
MARGIN = 1e-4     # distance a value must keep from a kink or a comparison threshold
HUGE = 1e6        # larger values are rejected: float64 round-off would swamp the check
RTOL, ATOL = 1e-7, 1e-9


# ---------------------------------------------------------------- programs
@dataclass
class Step:
    """One value of a program: a leaf, or ``op`` applied to earlier values ``args``."""

    op: str
    args: tuple[int, ...] = ()
    params: dict = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    rg: bool = False   # whether the value requires grad

    def code(self, k: int) -> str:
        args = ", ".join(f"v{a}" for a in self.args)
        params = ", ".join(f"{key}={_show(v)}" for key, v in self.params.items())
        sep = ", " if args and params else ""
        return f"v{k} = {self.op}({args}{sep}{params})  # {self.shape}"


def _show(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"np.array({v.tolist()})"
    if isinstance(v, tuple):
        inner = ", ".join(_show(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return repr(v)


@dataclass
class Program:
    steps: list[Step]
    outputs: tuple[int, ...]
    grad_a: tuple[int, ...]    # create_graph gradient (empty: skip steps 2)
    hvp_b: tuple[int, ...]     # Hessian-vector product inputs
    grad_c: tuple[int, ...]    # later partial gradient (empty: skip step 3)
    seed: int
    implicit: bool = False     # scalar outputs get no explicit grad_outputs (ones)
    backward: str = "plain"    # or "twice" (accumulating), or "create_graph"
    cot_grad: bool = False     # step 2's cotangents require grad (and B includes them)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis shows it
        printer.text(repr(self))

    def __repr__(self) -> str:
        lines = [s.code(k) for k, s in enumerate(self.steps)]
        lines.append(f"outputs={self.outputs} A={self.grad_a} B={self.hvp_b} "
                     f"C={self.grad_c} seed={self.seed} implicit={self.implicit} "
                     f"backward={self.backward!r} cot_grad={self.cot_grad}")
        return "\n" + "\n".join(lines)


# ---------------------------------------------------------------- backends
class MinigradBackend:
    """What the program interpreter needs from minigrad."""

    name = "minigrad"

    def __init__(self) -> None:
        self.states: list[Any] = []

    def leaf(self, a: np.ndarray, rg: bool) -> Any:
        return mg.tensor(a, requires_grad=rg)

    def const(self, a: np.ndarray) -> Any:
        return mg.tensor(a)

    def margin(self, distance: Callable[[], Any]) -> None:
        pass  # the PyTorch run alone decides whether a draw sits too close to a kink

    def unary(self, name: str, x: Any, form: str) -> Any:
        if form == "functional":
            return getattr(F, name)(x)
        return getattr(mg, name)(x) if form == "module" else getattr(x, name)()

    def reduce(self, name: str, x: Any, axis: Any, keepdims: bool, form: str,
               **kw: Any) -> Any:
        if form == "module":
            return getattr(mg, name)(x, axis=axis, keepdims=keepdims, **kw)
        return getattr(x, name)(axis=axis, keepdims=keepdims, **kw)

    def clip(self, x: Any, lo: float | None, hi: float | None) -> Any:
        return x.clip(lo, hi)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return mg.where(cond, a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        return mg.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        return mg.minimum(a, b)

    def transpose(self, x: Any, axes: Any) -> Any:
        return x.transpose() if axes is None else mg.transpose(x, axes)

    def reverse_axes(self, x: Any) -> Any:
        return x.T

    def matrix_transpose(self, x: Any) -> Any:
        return x.mT

    def swapaxes(self, x: Any, a: int, b: int) -> Any:
        return x.swapaxes(a, b)

    def flatten(self, x: Any, start: int) -> Any:
        return x.flatten(start)

    def squeeze(self, x: Any, axis: Any) -> Any:
        return x.squeeze(axis)

    def unsqueeze(self, x: Any, axis: int) -> Any:
        return x.unsqueeze(axis)

    def broadcast_to(self, x: Any, shape: tuple) -> Any:
        return mg.broadcast_to(x, shape)

    def index(self, idx: Any) -> Any:
        return idx

    def concatenate(self, xs: list, axis: int) -> Any:
        return mg.concatenate(xs, axis=axis)

    def stack(self, xs: list, axis: int) -> Any:
        return mg.stack(xs, axis=axis)

    def softmax(self, x: Any, axis: int, log: bool) -> Any:
        return (F.log_softmax if log else F.softmax)(x, axis=axis)

    def batch_norm(self, x: Any, rm: Any, rv: Any, w: Any, b: Any, training: bool,
                   momentum: float, eps: float, impl: str) -> Any:
        self.states += [rm, rv]
        return F.batch_norm(x, rm, rv, w, b, training=training, momentum=momentum, eps=eps,
                            impl=impl)

    def linear(self, x: Any, w: Any, b: Any) -> Any:
        return F.linear(x, w, b)

    def mse_loss(self, a: Any, b: Any, reduction: str) -> Any:
        return F.mse_loss(a, b, reduction=reduction)

    def cross_entropy(self, x: Any, target: np.ndarray, reduction: str, log: bool) -> Any:
        fn = F.nll_loss if log else F.cross_entropy
        return fn(x, mg.tensor(target), reduction=reduction)

    def conv2d(self, x: Any, w: Any, b: Any, stride: Any, padding: Any) -> Any:
        return F.conv2d(x, w, b, stride=stride, padding=padding)

    def pool2d(self, kind: str, x: Any, kernel: Any, stride: Any, padding: Any) -> Any:
        return getattr(F, kind)(x, kernel, stride=stride, padding=padding)

    # gradients
    def grad(self, outs: list, ins: list, gos: list, create_graph: bool = False) -> list:
        return list(mg.grad(outs, ins, grad_outputs=gos, retain_graph=True,
                            create_graph=create_graph, allow_unused=True))

    def backward(self, out: Any, cot: Any, retain: bool, create_graph: bool,
                 leaves: list) -> None:
        out.backward(cot, retain_graph=True if retain else None, create_graph=create_graph)

    def numpy(self, t: Any) -> np.ndarray:
        assert isinstance(t, mg.Tensor), f"expected a Tensor, got {type(t).__name__}"
        # (a NumPy scalar is tolerated here: see test_accumulated_0d_grad_is_an_array)
        assert isinstance(t.data, (np.ndarray, np.generic)), (
            f"a Tensor whose .data is a {type(t.data).__name__}")
        assert t.dtype == np.float64, f"dtype {t.dtype}, expected float64"
        return t.numpy()


class TorchBackend:
    """The same interface on PyTorch; also measures how close values come to kinks."""

    name = "torch"

    def __init__(self, torch: Any) -> None:
        self.t = torch
        self.closest = np.inf
        self.states: list[Any] = []

    def leaf(self, a: np.ndarray, rg: bool) -> Any:
        return self.t.tensor(a, dtype=self.t.float64, requires_grad=rg)

    def const(self, a: np.ndarray) -> Any:
        return self.t.tensor(a)

    def margin(self, distance: Callable[[], Any]) -> None:
        """Note how close a value comes to a kink: ``distance()`` must stay >= MARGIN."""
        with self.t.no_grad():
            d = distance()
        if d.numel():
            self.closest = min(self.closest, float(d.min()))

    def unary(self, name: str, x: Any, form: str) -> Any:
        return getattr(self.t, name)(x)

    def reduce(self, name: str, x: Any, axis: Any, keepdims: bool, form: str,
               **kw: Any) -> Any:
        dims = tuple(range(x.ndim)) if axis is None else axis
        fn = {"sum": self.t.sum, "mean": self.t.mean, "max": self.t.amax,
              "min": self.t.amin}.get(name)
        if x.ndim == 0:
            return getattr(x, {"max": "amax", "min": "amin"}.get(name, name))(**_corr(kw))
        if fn is not None:
            return fn(x, dim=dims, keepdim=keepdims)
        return getattr(self.t, name)(x, dim=dims, keepdim=keepdims, **_corr(kw))

    def clip(self, x: Any, lo: float | None, hi: float | None) -> Any:
        return self.t.clamp(x, lo, hi)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.t.where(cond, a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        return self.t.maximum(a, b)

    def minimum(self, a: Any, b: Any) -> Any:
        return self.t.minimum(a, b)

    def transpose(self, x: Any, axes: Any) -> Any:
        return x.permute(*(axes if axes is not None else reversed(range(x.ndim))))

    def reverse_axes(self, x: Any) -> Any:
        return x.permute(*reversed(range(x.ndim)))

    def matrix_transpose(self, x: Any) -> Any:
        return x.mT

    def swapaxes(self, x: Any, a: int, b: int) -> Any:
        return x.transpose(a, b)

    def flatten(self, x: Any, start: int) -> Any:
        # (torch's flatten returns its input itself when nothing is merged: a new
        # tensor is needed, or a gradient with respect to it would alias the input's)
        return x.reshape(*x.shape[:start], -1)

    def squeeze(self, x: Any, axis: Any) -> Any:
        return x.squeeze() if axis is None else x.squeeze(axis)

    def unsqueeze(self, x: Any, axis: int) -> Any:
        return x.unsqueeze(axis)

    def broadcast_to(self, x: Any, shape: tuple) -> Any:
        return self.t.broadcast_to(x, shape)

    def index(self, idx: Any) -> Any:
        parts = idx if isinstance(idx, tuple) else (idx,)
        out = tuple(self.t.from_numpy(i) if isinstance(i, np.ndarray) else i for i in parts)
        return out if isinstance(idx, tuple) else out[0]

    def concatenate(self, xs: list, axis: int) -> Any:
        return self.t.cat(xs, dim=axis)

    def stack(self, xs: list, axis: int) -> Any:
        return self.t.stack(xs, dim=axis)

    def softmax(self, x: Any, axis: int, log: bool) -> Any:
        return (self.t.log_softmax if log else self.t.softmax)(x, dim=axis)

    def batch_norm(self, x: Any, rm: Any, rv: Any, w: Any, b: Any, training: bool,
                   momentum: float, eps: float, impl: str) -> Any:
        """The paper's formula in PyTorch ops, checked against PyTorch's own kernel.

        Gradients come from the formula: PyTorch 2.13's CPU batch_norm backward is
        wrong for a permuted input whose strides also read as channels-last (shape
        (1, 2, 2, 1), say), and its double backward fails on a bias without weight.
        """
        dims = [0, *range(2, x.ndim)]
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if training:  # the batch variance per channel: a flat one would be a kink
            self.margin(lambda: x.var(dim=dims, correction=0) - 1e-2 + MARGIN)
            mean, var = x.mean(dim=dims, keepdim=True), x.var(dim=dims, correction=0,
                                                               keepdim=True)
        else:
            mean, var = rm.reshape(shape).clone(), rv.reshape(shape).clone()
        y = (x - mean) / (var + eps).sqrt()
        y = y if w is None else y * w.reshape(shape)
        y = y if b is None else y + b.reshape(shape)
        with self.t.no_grad():  # PyTorch's kernel: the reference values, and the running
            ref = self.t.nn.functional.batch_norm(  # statistics updated in place
                x.contiguous(), rm, rv, w, b, training=training, momentum=momentum, eps=eps)
        np.testing.assert_allclose(y.detach().numpy(), ref.numpy(), rtol=1e-9, atol=1e-9)
        self.states += [rm, rv]
        return y

    def linear(self, x: Any, w: Any, b: Any) -> Any:
        return self.t.nn.functional.linear(x, w, b)

    def mse_loss(self, a: Any, b: Any, reduction: str) -> Any:
        return self.t.nn.functional.mse_loss(a, b, reduction=reduction)

    def cross_entropy(self, x: Any, target: np.ndarray, reduction: str, log: bool) -> Any:
        fn = self.t.nn.functional.nll_loss if log else self.t.nn.functional.cross_entropy
        return fn(x, self.t.from_numpy(target), reduction=reduction)

    def conv2d(self, x: Any, w: Any, b: Any, stride: Any, padding: Any) -> Any:
        return self.t.nn.functional.conv2d(x, w, b, stride=stride, padding=padding)

    def pool2d(self, kind: str, x: Any, kernel: Any, stride: Any, padding: Any) -> Any:
        if kind == "max_pool2d":  # a tie for a window's maximum is a kink
            self.margin(lambda: _window_gap(self.t, x, kernel, stride, padding))
        return getattr(self.t.nn.functional, kind)(x, kernel, stride=stride, padding=padding)

    def grad(self, outs: list, ins: list, gos: list, create_graph: bool = False) -> list:
        return list(self.t.autograd.grad(outs, ins, grad_outputs=gos, retain_graph=True,
                                         create_graph=create_graph, allow_unused=True))

    def backward(self, out: Any, cot: Any, retain: bool, create_graph: bool,
                 leaves: list) -> None:
        # PyTorch may keep the seed itself as a leaf's .grad and then accumulate into it
        # in place, changing the seed for the next call: hand it a copy.
        cot = None if cot is None else cot.clone()
        with warnings.catch_warnings():  # create_graph=True warns of a reference cycle
            warnings.simplefilter("ignore", UserWarning)
            out.backward(cot, retain_graph=True if retain else None, create_graph=create_graph)
        # Two leaves may also get one stolen buffer (a[None] + b[None]) and then
        # accumulate into each other's .grad: give each its own.
        for leaf in leaves:
            if leaf.grad is not None:
                leaf.grad = leaf.grad.clone()

    def numpy(self, t: Any) -> np.ndarray:
        if t._is_zerotensor():  # a symbolic zero gradient has no memory to look at
            return np.zeros(tuple(t.shape))
        return t.detach().numpy().copy()


def _window_gap(torch: Any, x: Any, kernel: Any, stride: Any, padding: Any) -> Any:
    """Per pooling window, the gap between its two largest values (padding is -inf)."""
    k, p = (kernel, kernel) if isinstance(kernel, int) else kernel, padding
    pad = (p, p) if isinstance(p, int) else p
    xp = torch.nn.functional.pad(x, (pad[1], pad[1], pad[0], pad[0]), value=-np.inf)
    cols = torch.nn.functional.unfold(xp.flatten(0, 1)[:, None], k,
                                      stride=kernel if stride is None else stride)
    top = cols.sort(dim=1).values
    return top[:, -1] - top[:, -2] if top.shape[1] > 1 else top.new_ones(())


def _corr(kw: dict) -> dict:
    return {"correction": kw["ddof"]} if "ddof" in kw else {}


# ---------------------------------------------------------------- the ops
def _pos(x: Any) -> Any:
    """A positive value made of ``x``, for log, sqrt, fractional powers and divisors."""
    return x * x + 0.5


def _jitter(B: Any, x: Any, p: dict, rng: np.random.Generator) -> Any:
    """``x`` plus a constant that breaks ties a broadcast made, when ``p['jitter']``."""
    if not p.get("jitter"):
        return x
    return x + B.const(rng.uniform(-1.0, 1.0, tuple(x.shape)))


def _top2_gap(x: Any, axis: Any) -> Any:
    """Per reduced slice, the gap between its two largest values (max's kink is a tie)."""
    if x.ndim == 0:
        return x.new_ones(())
    axes = tuple(range(x.ndim)) if axis is None else tuple(a % x.ndim for a in
                                                           np.atleast_1d(axis))
    keep = [d for d in range(x.ndim) if d not in axes]
    flat = x.permute(*keep, *axes).reshape(*[x.shape[d] for d in keep], -1)
    if flat.shape[-1] < 2:
        return flat.new_ones(())
    top = flat.sort(dim=-1).values
    return top[..., -1] - top[..., -2]


def run_unary(B: Any, x: Any, p: dict, rng: Any) -> Any:
    name, form = p["fn"], p["form"]
    if name in ("log", "sqrt"):
        return B.unary(name, _pos(x), form)
    return B.unary(name, x, form)


def run_kink(B: Any, x: Any, p: dict, rng: Any) -> Any:
    s = p["shift"]
    if p["fn"] == "clip":
        lo, hi = p["bounds"]
        lo, hi = (None if lo is None else s + lo), (None if hi is None else s + hi)
        for bound in (lo, hi):
            if bound is not None:
                B.margin(lambda bound=bound: abs(x - bound))
        return B.clip(x, lo, hi)
    B.margin(lambda: abs(x - s))
    return B.unary(p["fn"], x - s, p["form"])


def run_scalar(B: Any, x: Any, p: dict, rng: Any) -> Any:
    c = p["c"]
    return {"add": lambda: x + c, "radd": lambda: c + x, "sub": lambda: x - c,
            "rsub": lambda: c - x, "mul": lambda: x * c, "rmul": lambda: c * x,
            "div": lambda: x / c, "rdiv": lambda: c / _pos(x), "neg": lambda: -x,
            "square": lambda: x ** 2, "cube": lambda: x ** 3,
            "powf": lambda: _pos(x) ** c, "rpow": lambda: abs(c) ** x}[p["kind"]]()


def run_binary(B: Any, a: Any, b: Any, p: dict, rng: Any) -> Any:
    kind = p["kind"]
    if kind in ("maximum", "minimum"):
        b = _jitter(B, b, p, rng)
        B.margin(lambda: abs(a - b))
        return getattr(B, kind)(a, b)
    if kind == "div_raw":  # a divisor of either sign, kept away from 0
        B.margin(lambda: b.abs() - 0.05 + MARGIN)
        return a / b
    return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
            "div": lambda: a / (_pos(b) * p.get("sign", 1.0)),
            "pow": lambda: _pos(a) ** (b * 0.5),
            "mul_detach": lambda: a * b.detach()}[kind]()


def run_where(B: Any, c: Any, a: Any, b: Any, p: dict, rng: Any) -> Any:
    B.margin(lambda: abs(c - p["t"]))
    return B.where(c > p["t"], a, b)


def run_detach(B: Any, x: Any, p: dict, rng: Any) -> Any:
    return x.detach()


def run_self_detach(B: Any, x: Any, p: dict, rng: Any) -> Any:
    """``x`` combined with its own detached copy: first derivatives see one factor only."""
    d = x.detach()
    kind = p["kind"]
    if kind in ("div", "rdiv"):
        B.margin(lambda: x.abs() - 0.05 + MARGIN)
    return {"mul": lambda: x * d, "rmul": lambda: d * x, "div": lambda: x / d,
            "rdiv": lambda: d / x, "add": lambda: d + x * d}[kind]()


def run_reduce(B: Any, x: Any, p: dict, rng: Any) -> Any:
    name, axis, keep = p["fn"], p["axis"], p["keepdims"]
    kw = {"ddof": p["ddof"]} if "ddof" in p else {}
    x = _jitter(B, x, p, rng)
    if name in ("max", "min"):
        B.margin(lambda: _top2_gap(x if name == "max" else -x, axis))
    if name == "std":
        B.margin(lambda: B.reduce("var", x, axis, keep, "method", **kw) - 1e-3 + MARGIN)
    return B.reduce(name, x, axis, keep, p["form"], **kw)


def run_shape(B: Any, x: Any, p: dict, rng: Any) -> Any:
    kind = p["kind"]
    if kind == "reshape":
        return x.reshape(p["shape"])
    if kind == "transpose":
        return B.transpose(x, p["axes"])
    if kind == "T":
        return B.reverse_axes(x)
    if kind == "mT":
        return B.matrix_transpose(x)
    if kind == "swapaxes":
        return B.swapaxes(x, *p["axes"])
    if kind == "flatten":
        return B.flatten(x, p["start"])
    if kind == "squeeze":
        return B.squeeze(x, p["axis"])
    if kind == "unsqueeze":
        return B.unsqueeze(x, p["axis"])
    if kind == "broadcast_to":
        return B.broadcast_to(x, p["shape"])
    return x[B.index(p["idx"])]


def run_join(B: Any, *xs: Any, p: dict, rng: Any) -> Any:
    return getattr(B, p["kind"])(list(xs), p["axis"])


def run_matmul(B: Any, a: Any, b: Any, p: dict, rng: Any) -> Any:
    return a @ b


def run_softmax(B: Any, x: Any, p: dict, rng: Any) -> Any:
    return B.softmax(x, p["axis"], p["log"])


def run_batch_norm(B: Any, x: Any, *wb: Any, p: dict, rng: Any) -> Any:
    c = x.shape[1]
    x = _jitter(B, x, p, rng)
    rm = B.const(rng.standard_normal(c))
    rv = B.const(rng.uniform(0.5, 2.0, c))
    given = iter(wb)  # weight and bias, those that "affine" names, in that order
    w = next(given) if p["affine"] in ("weight", "both") else None
    b = next(given) if p["affine"] in ("bias", "both") else None
    return B.batch_norm(x, rm, rv, w, b, p["training"], p["momentum"], p["eps"], p["impl"])


def run_linear(B: Any, x: Any, w: Any, *b: Any, p: dict, rng: Any) -> Any:
    return B.linear(x, w, b[0] if b else None)


def run_mse(B: Any, a: Any, b: Any, p: dict, rng: Any) -> Any:
    return B.mse_loss(a, b, p["reduction"])


def run_cross_entropy(B: Any, x: Any, p: dict, rng: Any) -> Any:
    target = np.asarray(p["target"], dtype=np.int64)
    return B.cross_entropy(x, target, p["reduction"], p["nll"])


def run_conv2d(B: Any, x: Any, w: Any, *b: Any, p: dict, rng: Any) -> Any:
    return B.conv2d(x, w, b[0] if b else None, p["stride"], p["padding"])


def run_pool2d(B: Any, x: Any, p: dict, rng: Any) -> Any:
    x = _jitter(B, x, p, rng)
    return B.pool2d(p["kind"], x, p["kernel"], p["stride"], p["padding"])


RUNNERS: dict[str, Callable] = {
    "unary": run_unary, "kink": run_kink, "scalar": run_scalar, "binary": run_binary,
    "where": run_where, "detach": run_detach, "self_detach": run_self_detach,
    "reduce": run_reduce, "shape": run_shape,
    "join": run_join, "matmul": run_matmul, "softmax": run_softmax,
    "batch_norm": run_batch_norm, "linear": run_linear, "mse_loss": run_mse,
    "cross_entropy": run_cross_entropy, "conv2d": run_conv2d, "pool2d": run_pool2d,
}


# ---------------------------------------------------------------- drawing programs
small = st.integers(1, 3)


class Builder:
    """Grows a program step by step, tracking each value's shape and requires_grad."""

    def __init__(self, draw: Callable) -> None:
        self.draw = draw
        self.steps: list[Step] = []

    def add(self, op: str, args: tuple, params: dict, shape: tuple, rg: bool | None = None
            ) -> int:
        if rg is None:
            rg = any(self.steps[a].rg for a in args)
        self.steps.append(Step(op, tuple(args), params, tuple(shape), rg))
        return len(self.steps) - 1

    def leaf(self, shape: tuple, rg: bool | None = None) -> int:
        if rg is None:
            rg = self.draw(st.sampled_from([True, True, True, False]))
        return self.add("leaf", (), {}, shape, rg)

    def pick(self, ok: Callable[[tuple], bool] = lambda s: True) -> int | None:
        """An earlier value whose shape passes ``ok`` (recent ones first), or None."""
        cands = [k for k in reversed(range(len(self.steps))) if ok(self.steps[k].shape)]
        return self.draw(st.sampled_from(cands)) if cands else None

    def partner(self, shape_ok: Callable[[tuple], bool], make: Callable[[], tuple]) -> int:
        """An existing value that fits, or a new leaf of a fitting shape."""
        if self.draw(st.booleans()):
            k = self.pick(shape_ok)
            if k is not None:
                return k
        return self.leaf(make())

    def shape(self, k: int) -> tuple:
        return self.steps[k].shape


def broadcastable(a: tuple, b: tuple) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def draw_sub_shape(draw: Callable, shape: tuple) -> tuple:
    """A shape that broadcasts to ``shape``: leading axes dropped, some sizes set to 1."""
    drop = draw(st.integers(0, len(shape)))
    return tuple(1 if draw(st.booleans()) else d for d in shape[drop:])


def draw_axis(draw: Callable, ndim: int, allow_tuple: bool = True) -> Any:
    """None, one axis (maybe negative) or a tuple of distinct axes of an ndim-array."""
    if ndim == 0:
        return None
    kind = draw(st.sampled_from(["none", "int", "tuple"] if allow_tuple else ["int"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in axes)


def reduced_shape(shape: tuple, axis: Any, keepdims: bool) -> tuple:
    return np.zeros(shape).sum(axis=axis, keepdims=keepdims).shape


def draw_unary(b: Builder) -> int | None:
    k = b.pick()
    fn = b.draw(st.sampled_from(["exp", "log", "sqrt", "tanh", "sigmoid"]))
    forms = ["method", "module"] + (["functional"] if fn in ("tanh", "sigmoid") else [])
    return b.add("unary", (k,), {"fn": fn, "form": b.draw(st.sampled_from(forms))},
                 b.shape(k))


def draw_kink(b: Builder) -> int | None:
    k = b.pick()
    fn = b.draw(st.sampled_from(["abs", "relu", "clip"]))
    p: dict = {"fn": fn, "shift": b.draw(st.sampled_from([-0.3, 0.0, 0.4]))}
    if fn == "clip":
        p["bounds"] = b.draw(st.sampled_from([(0.0, 0.5), (0.0, 1.5), (0.0, None),
                                              (None, 0.0)]))
    else:
        p["form"] = b.draw(st.sampled_from(["method", "module"] +
                                           (["functional"] if fn == "relu" else [])))
    return b.add("kink", (k,), p, b.shape(k))


def draw_scalar(b: Builder) -> int | None:
    k = b.pick()
    kind = b.draw(st.sampled_from(["add", "radd", "sub", "rsub", "mul", "rmul", "div",
                                   "rdiv", "neg", "square", "cube", "powf", "rpow"]))
    c = b.draw(st.sampled_from([0.5, -1.5, 2.0, 1.3]))
    return b.add("scalar", (k,), {"kind": kind, "c": c}, b.shape(k))


def draw_binary(b: Builder) -> int | None:
    k = b.pick()
    s = b.shape(k)
    kind = b.draw(st.sampled_from(["add", "sub", "mul", "div", "div_raw", "pow", "maximum",
                                   "minimum", "mul_detach"]))
    if kind == "mul_detach" and b.draw(st.booleans()):
        j = k  # x * x.detach()
    else:
        j = b.partner(lambda t: broadcastable(s, t), lambda: draw_sub_shape(b.draw, s))
    args = (k, j) if b.draw(st.booleans()) else (j, k)
    p: dict = {"kind": kind}
    if kind == "div":
        p["sign"] = b.draw(st.sampled_from([1.0, -1.0]))
    if kind in ("maximum", "minimum"):
        p["jitter"] = b.draw(st.booleans())
    out = np.broadcast_shapes(b.shape(args[0]), b.shape(args[1]))
    rg = b.steps[args[0]].rg or (b.steps[args[1]].rg and kind != "mul_detach")
    return b.add("binary", args, p, out, rg)


def draw_where(b: Builder) -> int | None:
    k = b.pick()
    s = b.shape(k)
    j = b.partner(lambda t: broadcastable(s, t), lambda: draw_sub_shape(b.draw, s))
    out = np.broadcast_shapes(s, b.shape(j))
    c = b.pick(lambda t: broadcastable(out, t) and np.broadcast_shapes(out, t) == out)
    t = b.draw(st.sampled_from([-0.2, 0.0, 0.5]))
    return b.add("where", (c, k, j), {"t": t}, out, b.steps[k].rg or b.steps[j].rg)


def draw_detach(b: Builder) -> int | None:
    k = b.pick()
    return b.add("detach", (k,), {}, b.shape(k), rg=False)


def draw_self_detach(b: Builder) -> int | None:
    k = b.pick()
    kind = b.draw(st.sampled_from(["mul", "rmul", "div", "rdiv", "add"]))
    return b.add("self_detach", (k,), {"kind": kind}, b.shape(k))


def draw_reduce(b: Builder) -> int | None:
    k = b.pick()
    s = b.shape(k)
    fn = b.draw(st.sampled_from(["sum", "mean", "var", "std", "max", "min"]))
    axis = draw_axis(b.draw, len(s))
    keep = b.draw(st.booleans())
    p: dict = {"fn": fn, "axis": axis, "keepdims": keep,
               "form": b.draw(st.sampled_from(["method", "module"]))}
    count = int(np.prod(s) / np.prod(reduced_shape(s, axis, True)))
    if fn in ("var", "std"):
        p["ddof"] = b.draw(st.sampled_from([0, 1])) if count > 1 else 0
    if fn in ("std", "max", "min"):
        p["jitter"] = b.draw(st.booleans())
    return b.add("reduce", (k,), p, reduced_shape(s, axis, keep))


def draw_index(draw: Callable, shape: tuple) -> Any:
    """A NumPy index that PyTorch reads the same way."""
    n = len(shape)
    kinds = ["none"] if n == 0 else ["basic", "int_array", "two_arrays", "mask", "ellipsis"]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "mask":
        size = int(np.prod(shape))
        bits = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        if not any(bits):
            bits[0] = True
        return np.array(bits).reshape(shape)
    if kind in ("int_array", "ellipsis"):
        ax = draw(st.integers(0, n - 1)) if kind == "int_array" else n - 1
        vals = draw(st.lists(st.integers(-shape[ax], shape[ax] - 1), min_size=1, max_size=4))
        pre = (slice(None),) * ax if kind == "int_array" else (Ellipsis,)
        return (*pre, np.array(vals, dtype=np.int64))
    if kind == "two_arrays" and n >= 2:
        m = draw(st.integers(1, 3))
        i = np.array(draw(st.lists(st.integers(0, shape[0] - 1), min_size=m, max_size=m)))
        j = np.array(draw(st.lists(st.integers(-shape[1], shape[1] - 1), min_size=m,
                                   max_size=m)))
        return (i, j)
    parts: list = []
    for d in shape[:draw(st.integers(1, n))]:
        choice = draw(st.sampled_from(["int", "slice", "all", "newaxis"]))
        if choice == "int":
            parts.append(draw(st.integers(-d, d - 1)))
        elif choice == "slice":
            start = draw(st.integers(0, d - 1))
            parts.append(slice(start, draw(st.integers(start + 1, d)),
                               draw(st.sampled_from([None, 1, 2]))))
        elif choice == "newaxis":
            parts.extend([None, slice(None)])
        else:
            parts.append(slice(None))
    return tuple(parts)


def prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def draw_reshape_target(draw: Callable, size: int) -> tuple:
    """A shape of ``size`` elements: its prime factors grouped at random, maybe a -1."""
    dims: list[int] = []
    for f in draw(st.permutations(prime_factors(size))):
        if dims and draw(st.booleans()):
            dims[-1] *= f
        else:
            dims.append(f)
    dims += [1] * draw(st.integers(0, 1))
    dims = list(draw(st.permutations(dims)))
    if dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


def draw_shape_op(b: Builder, kind: str | None = None, k: int | None = None,
                  explicit: bool = False) -> int | None:
    k = b.pick() if k is None else k
    s = b.shape(k)
    n = len(s)
    kinds = ["reshape", "unsqueeze", "broadcast_to", "index", "flatten"]
    if n >= 1:
        kinds += ["transpose", "T", "swapaxes"]
    if n >= 2:
        kinds.append("mT")
    if 1 in s:
        kinds.append("squeeze")
    kind = kind or b.draw(st.sampled_from(kinds))
    p: dict = {"kind": kind}
    x = np.zeros(s)
    if kind == "reshape":
        p["shape"] = draw_reshape_target(b.draw, int(np.prod(s)))
        out = x.reshape(p["shape"]).shape
    elif kind == "transpose":
        perm = b.draw(st.permutations(range(n)))
        p["axes"] = None if not explicit and b.draw(st.booleans()) else tuple(
            a - n if b.draw(st.booleans()) else a for a in perm)
        out = x.transpose(p["axes"]).shape
    elif kind == "T":
        out = x.T.shape
    elif kind == "mT":
        out = x.swapaxes(-1, -2).shape
    elif kind == "swapaxes":
        p["axes"] = (b.draw(st.integers(-n, n - 1)), b.draw(st.integers(-n, n - 1)))
        out = x.swapaxes(*p["axes"]).shape
    elif kind == "flatten":
        p["start"] = b.draw(st.integers(0, max(n - 1, 0)))
        out = x.reshape(s[:p["start"]] + (-1,)).shape
    elif kind == "squeeze":
        ones = [a for a, d in enumerate(s) if d == 1]
        p["axis"] = b.draw(st.sampled_from([None, *ones]))
        out = x.squeeze(p["axis"]).shape
    elif kind == "unsqueeze":
        p["axis"] = b.draw(st.integers(-n - 1, n))
        out = np.expand_dims(x, p["axis"]).shape
    elif kind == "broadcast_to":
        lead = tuple(b.draw(st.lists(small, max_size=max(0, 3 - n))))
        out = lead + tuple(b.draw(small) if d == 1 else d for d in s)
        p["shape"] = out
    else:
        p["idx"] = draw_index(b.draw, s)
        out = x[p["idx"]].shape
    return b.add("shape", (k,), p, out)


def draw_index_op(b: Builder) -> int | None:
    return draw_shape_op(b, "index")


def draw_permute_op(b: Builder) -> int | None:
    """A transpose or swapaxes of a value with 3 or more axes (where order matters most)."""
    k = b.pick(lambda t: len(t) >= 3)
    if k is None:
        return None
    kind = b.draw(st.sampled_from(["transpose", "transpose", "swapaxes", "mT"]))
    return draw_shape_op(b, kind, k, explicit=True)


def draw_join(b: Builder) -> int | None:
    kind = b.draw(st.sampled_from(["concatenate", "stack"]))
    k = b.pick(lambda t: len(t) >= 1) if kind == "concatenate" else b.pick()
    if k is None:
        return None
    s = b.shape(k)
    n = len(s)
    axis = b.draw(st.integers(-n, n - 1)) if kind == "concatenate" else b.draw(
        st.integers(-n - 1, n))
    ax = axis % max(n, 1)

    def fits(t: tuple) -> bool:
        if kind == "stack":
            return t == s
        return len(t) == n and all(t[d] == s[d] for d in range(n) if d != ax)

    def make() -> tuple:
        if kind == "stack":
            return s
        return tuple(b.draw(small) if d == ax else s[d] for d in range(n))

    args = [k] + [b.partner(fits, make) for _ in range(b.draw(st.integers(1, 2)))]
    args = list(b.draw(st.permutations(args)))
    xs = [np.zeros(b.shape(a)) for a in args]
    out = (np.concatenate(xs, axis) if kind == "concatenate" else np.stack(xs, axis)).shape
    return b.add("join", tuple(args), {"kind": kind, "axis": axis}, out)


def draw_matmul(b: Builder) -> int | None:
    k = b.pick(lambda t: len(t) >= 1)
    if k is None:
        return None
    s = b.shape(k)
    left = b.draw(st.booleans())
    inner = s[-1] if left else (s[0] if len(s) == 1 else s[-2])
    m = b.draw(small)
    form = b.draw(st.sampled_from(["vector", "matrix", "batched"]))
    if form == "vector":
        other = (inner,)
    elif form == "matrix":
        other = (inner, m) if left else (m, inner)
    else:
        batch = draw_sub_shape(b.draw, s[:-2]) if len(s) > 2 else (b.draw(small),)
        other = batch + ((inner, m) if left else (m, inner))
    j = b.partner(lambda t: t == other, lambda: other)
    args = (k, j) if left else (j, k)
    out = np.matmul(np.zeros(b.shape(args[0])), np.zeros(b.shape(args[1]))).shape
    return b.add("matmul", args, {}, out)


def draw_softmax(b: Builder) -> int | None:
    k = b.pick(lambda t: len(t) >= 1)
    if k is None:
        return None
    n = len(b.shape(k))
    p = {"axis": b.draw(st.integers(-n, n - 1)), "log": b.draw(st.booleans())}
    return b.add("softmax", (k,), p, b.shape(k))


def draw_batch_norm(b: Builder) -> int | None:
    def make() -> tuple:  # (N, C, *spatial) with at least two values per channel
        return (b.draw(st.integers(2, 3)), b.draw(small),
                *b.draw(st.lists(small, max_size=2)))

    k = b.partner(lambda t: 2 <= len(t) <= 4 and np.prod(t) // t[1] >= 2, make)
    s = b.shape(k)
    p = {"training": b.draw(st.booleans()),
         "impl": b.draw(st.sampled_from(["fused", "composed"])),
         "affine": b.draw(st.sampled_from(["both", "none", "weight", "bias"])),
         "momentum": b.draw(st.sampled_from([0.1, 0.5])),
         "eps": b.draw(st.sampled_from([1e-5, 1e-3])), "jitter": b.draw(st.booleans())}
    args = (k,)
    args += tuple(b.leaf((s[1],)) for _ in range({"both": 2, "none": 0}.get(p["affine"], 1)))
    return b.add("batch_norm", args, p, s)


def draw_linear(b: Builder) -> int | None:
    k = b.pick(lambda t: len(t) >= 1)
    if k is None:
        return None
    s = b.shape(k)
    out_f = b.draw(small)
    args = (k, b.leaf((out_f, s[-1])))
    if b.draw(st.booleans()):
        args += (b.leaf((out_f,)),)
    return b.add("linear", args, {}, s[:-1] + (out_f,))


def draw_mse(b: Builder) -> int | None:
    k = b.pick()
    s = b.shape(k)
    j = b.partner(lambda t: t == s, lambda: s)
    red = b.draw(st.sampled_from(["mean", "sum", "none"]))
    return b.add("mse_loss", (k, j), {"reduction": red}, s if red == "none" else ())


def draw_cross_entropy(b: Builder) -> int | None:
    k = b.pick(lambda t: len(t) == 2)
    if k is None:
        return None
    n, c = b.shape(k)
    target = tuple(b.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    red = b.draw(st.sampled_from(["mean", "sum", "none"]))
    p = {"target": target, "reduction": red, "nll": b.draw(st.booleans())}
    return b.add("cross_entropy", (k,), p, (n,) if red == "none" else ())


def draw_image(b: Builder) -> int:
    """An existing (N, C, H, W) value, or a new leaf of that shape."""
    def make() -> tuple:
        return (b.draw(small), b.draw(small), b.draw(st.integers(2, 4)),
                b.draw(st.integers(2, 4)))

    return b.partner(lambda t: len(t) == 4, make)


def draw_window(b: Builder, shape: tuple, pool: bool) -> dict:
    """Kernel, stride and padding (ints or pairs) that fit an image of ``shape``."""
    kh, kw = b.draw(st.integers(1, 3)), b.draw(st.integers(1, 3))
    ph, pw = b.draw(st.integers(0, kh // 2)), b.draw(st.integers(0, kw // 2))
    kh, kw = min(kh, shape[2] + 2 * ph), min(kw, shape[3] + 2 * pw)
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)
    sh, sw = b.draw(st.integers(1, 2)), b.draw(st.integers(1, 2))
    square = b.draw(st.booleans()) and kh == kw and ph == pw and sh == sw
    p = {"kernel": kh if square else (kh, kw), "stride": sh if square else (sh, sw),
         "padding": ph if square else (ph, pw)}
    if pool and b.draw(st.booleans()):
        p["stride"] = None  # the kernel size
        sh, sw = kh, kw
    p["out_hw"] = ((shape[2] + 2 * ph - kh) // sh + 1, (shape[3] + 2 * pw - kw) // sw + 1)
    return p


def draw_conv2d(b: Builder) -> int | None:
    k = draw_image(b)
    s = b.shape(k)
    p = draw_window(b, s, pool=False)
    kernel = (p["kernel"],) * 2 if isinstance(p["kernel"], int) else p["kernel"]
    out_c = b.draw(small)
    args = (k, b.leaf((out_c, s[1], *kernel)))
    if b.draw(st.booleans()):
        args += (b.leaf((out_c,)),)
    out_hw = p.pop("out_hw")
    return b.add("conv2d", args, p, (s[0], out_c, *out_hw))


def draw_pool2d(b: Builder) -> int | None:
    k = draw_image(b)
    s = b.shape(k)
    p = draw_window(b, s, pool=True)
    p["kind"] = b.draw(st.sampled_from(["max_pool2d", "avg_pool2d"]))
    p["jitter"] = b.draw(st.booleans())
    out_hw = p.pop("out_hw")
    return b.add("pool2d", (k,), p, (s[0], s[1], *out_hw))


DRAWERS = [draw_unary, draw_kink, draw_scalar, draw_binary, draw_binary, draw_where,
           draw_detach, draw_self_detach, *[draw_reduce] * 3, *[draw_shape_op] * 4,
           draw_index_op, draw_index_op, draw_permute_op, draw_join,
           draw_matmul, draw_softmax, draw_batch_norm, draw_batch_norm, draw_linear, draw_mse,
           draw_cross_entropy, draw_conv2d, draw_pool2d]


def draw_subset(draw: Callable, cands: list[int]) -> tuple[int, ...]:
    return tuple(draw(st.lists(st.sampled_from(cands), min_size=1, max_size=3, unique=True)))


@st.composite
def programs(draw: Callable, max_steps: int = 8) -> Program:
    b = Builder(draw)
    base = tuple(draw(small) for _ in range(draw(st.sampled_from([0, 1, 2, 2, 3, 3, 4]))))
    b.leaf(base, rg=True)
    for _ in range(draw(st.integers(0, 2))):
        b.leaf(draw_sub_shape(draw, base))
    for _ in range(draw(st.sampled_from(range(1, max_steps + 1)))):
        draw(st.sampled_from(DRAWERS))(b)
    last = max(k for k, s in enumerate(b.steps) if s.rg)
    if draw(st.booleans()):  # a curved head, so that second derivatives reach every op
        head = draw(st.sampled_from([("unary", {"fn": "tanh", "form": "method"}),
                                     ("scalar", {"kind": "square", "c": 2.0})]))
        last = b.add(head[0], (last,), head[1], b.shape(last))
    rg = [k for k, s in enumerate(b.steps) if s.rg]
    leaves = tuple(k for k in rg if b.steps[k].op == "leaf")
    # The values nothing else uses (the latest three), so that few steps are dead code.
    used = {a for step in b.steps for a in step.args}
    outputs = tuple(k for k in reversed(rg) if k not in used)[:3]
    others = [k for k in rg if k not in outputs]
    if others and draw(st.sampled_from([False, False, True])):
        outputs += (draw(st.sampled_from(others)),)
    # Half the time every leaf: then each op's second derivative is on some path.
    grad_a = draw(st.sampled_from([leaves, draw_subset(draw, rg), ()]))
    hvp_b = draw(st.sampled_from([leaves, draw_subset(draw, rg)]))
    grad_c = draw_subset(draw, rg) if draw(st.booleans()) else ()
    return Program(b.steps, outputs, grad_a, hvp_b, grad_c, draw(st.integers(0, 2 ** 16)),
                   draw(st.booleans()), draw(st.sampled_from(["plain", "twice", "create_graph"])),
                   draw(st.booleans()))


# ---------------------------------------------------------------- running and comparing
def forward(B: Any, prog: Program) -> list:
    """Every value of ``prog`` in backend ``B``; leaves are drawn from ``prog.seed``."""
    vals: list = []
    for k, step in enumerate(prog.steps):
        rng = np.random.default_rng([prog.seed, k])
        if step.op == "leaf":
            vals.append(B.leaf(rng.standard_normal(step.shape), step.rg))
            continue
        xs = [vals[a] for a in step.args]
        vals.append(RUNNERS[step.op](B, *xs, p=step.params, rng=rng))
    return vals


def scenario(B: Any, prog: Program, vals: list) -> dict[str, Any]:
    """The gradient calls of the module docstring, in order; their results as arrays."""
    rng = np.random.default_rng([prog.seed, 10 ** 6])
    outs = [vals[k] for k in prog.outputs]
    cot_arrays = [rng.standard_normal(tuple(o.shape)) for o in outs]
    cots = [B.const(a) for a in cot_arrays]
    if prog.implicit and all(o.ndim == 0 for o in outs):
        cots = [None] * len(outs)
    res: dict[str, Any] = {}

    def store(label: str, ks: tuple, gs: list) -> None:
        for k, g in zip(ks, gs):
            res[f"{label} d/dv{k}"] = None if g is None else B.numpy(g)

    if prog.grad_a:
        vs = [B.const(rng.standard_normal(tuple(vals[k].shape))) for k in prog.grad_a]
        # Cotangents that require grad: d(g . v)/d(cotangent) is a Jacobian-vector
        # product, which differentiates every VJP with respect to its incoming gradient.
        gos = ([B.leaf(a, True) for a in cot_arrays] if prog.cot_grad and cots[0] is not None
               else cots)
        gs = B.grad(outs, [vals[k] for k in prog.grad_a], gos, create_graph=True)
        store("mg.grad(create_graph=True)", prog.grad_a, gs)
        # A gradient that does not require grad is constant: its term adds 0 to the HVP.
        terms = [(g * v).sum() for g, v in zip(gs, vs) if g is not None and g.requires_grad]
        if terms:
            extra = gos if gos is not cots else []
            hv = B.grad([sum(terms[1:], terms[0])], [vals[k] for k in prog.hvp_b] + extra,
                        [None])
            store("Hessian-vector product", prog.hvp_b, hv)
            for i, g in enumerate(hv[len(prog.hvp_b):]):
                res[f"Hessian-vector product d/dcotangent{i}"] = (None if g is None
                                                                  else B.numpy(g))
    if prog.grad_c:
        gs = B.grad(outs, [vals[k] for k in prog.grad_c], cots)
        store("partial mg.grad(retain_graph=True)", prog.grad_c, gs)
    # One backward per output, accumulating (the whole round twice in mode "twice").
    calls = list(zip(outs, cots)) * (2 if prog.backward == "twice" else 1)
    leaves = [vals[k] for k, step in enumerate(prog.steps) if step.op == "leaf" and step.rg]
    for i, (out, cot) in enumerate(calls):
        B.backward(out, cot, i < len(calls) - 1, prog.backward == "create_graph", leaves)
    for k, step in enumerate(prog.steps):
        if step.op == "leaf" and step.rg:
            g = vals[k].grad
            res[f"backward .grad of v{k}"] = None if g is None else B.numpy(g)
    return res


def assert_close(label: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, f"{label}: shape {got.shape}, PyTorch {want.shape}"
    atol = ATOL + RTOL * float(np.abs(want).max(initial=0.0))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=label)


def compare_results(got: dict, want: dict) -> None:
    for label in list(want) + [k for k in got if k not in want]:
        g, w = got.get(label), want.get(label)
        if label.startswith("Hessian"):  # a gradient that is constant may come as None
            g = np.zeros_like(w) if g is None and w is not None else g
            w = np.zeros_like(g) if w is None and g is not None else w
        if w is None or g is None:
            assert g is None and w is None, (
                f"{label}: minigrad gave {'None' if g is None else 'a gradient'}, "
                f"PyTorch {'None' if w is None else 'a gradient'}")
            continue
        assert_close(label, g, w)


def check_program(torch: Any, prog: Program) -> None:
    T = TorchBackend(torch)
    tvals = forward(T, prog)
    if T.closest < MARGIN:
        reject()  # a value sits on a kink or a comparison threshold
    if any(not torch.isfinite(v).all() or v.abs().max() > HUGE for v in tvals if v.numel()):
        reject()
    want = scenario(T, prog, tvals)
    if any(w is not None and (not np.isfinite(w).all() or np.abs(w).max() > HUGE)
           for w in want.values()):
        reject()

    M = MinigradBackend()
    mvals = forward(M, prog)
    for k, (m, t) in enumerate(zip(mvals, tvals)):
        assert_close(f"forward v{k} ({prog.steps[k].op})", M.numpy(m), T.numpy(t))
        assert m.requires_grad == t.requires_grad, f"v{k}.requires_grad"
    for k, (m, t) in enumerate(zip(M.states, T.states)):
        assert_close(f"batch_norm running statistic {k}", M.numpy(m), T.numpy(t))
    compare_results(scenario(M, prog, mvals), want)


FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@seed(SEED)
@FUZZ
@given(prog=programs())
def test_random_program_matches_torch(torch: Any, prog: Program) -> None:
    check_program(torch, prog)


# ---------------------------------------------------------------- regressions
def test_partial_grad_then_backward_does_not_double() -> None:
    x = mg.tensor(np.array([0.7, -1.3]), requires_grad=True)
    w = mg.tensor(np.array([0.5, 2.0]), requires_grad=True)
    loss = (x * (w * 1.0)).sum()
    (gx,) = mg.grad(loss, [x], retain_graph=True)
    np.testing.assert_allclose(gx.numpy(), [0.5, 2.0])
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), [0.7, -1.3])
    np.testing.assert_allclose(x.grad.numpy(), [0.5, 2.0])


def test_grad_after_unused_input_grad_does_not_double() -> None:
    x0 = mg.tensor(np.array([0.7, -1.3]), requires_grad=True)
    x1 = mg.tensor(np.array([2.0]), requires_grad=True)
    loss = (x0 * 3.0).sum()
    assert mg.grad(loss, [x1], retain_graph=True, allow_unused=True) == (None,)
    (g,) = mg.grad(loss, [x0])
    np.testing.assert_allclose(g.numpy(), [3.0, 3.0])


def test_grad_after_unused_create_graph_grad_is_plain() -> None:
    x0 = mg.tensor(np.array([0.7, -1.3]), requires_grad=True)
    x1 = mg.tensor(np.array([2.0]), requires_grad=True)
    loss = (x0 * x0).sum()
    assert mg.grad(loss, [x1], create_graph=True, allow_unused=True) == (None,)
    (g,) = mg.grad(loss, [x0])
    assert isinstance(g.data, np.ndarray)
    np.testing.assert_allclose(g.numpy(), [1.4, -2.6])


@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_batch_norm_mixed_second_derivative(torch: Any, impl: str) -> None:
    rng = np.random.default_rng(3)
    x_np, w_np, b_np = rng.standard_normal((4, 3)), rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    c, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    x, w, b = (mg.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
    loss = (F.batch_norm(x, None, None, w, b, impl=impl) * mg.tensor(c)).sum()
    (gx,) = mg.grad(loss, [x], create_graph=True)
    (gw,) = mg.grad((gx * mg.tensor(v)).sum(), [w])
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
    tl = (torch.nn.functional.batch_norm(tx, None, None, tw, tb, training=True)
          * torch.from_numpy(c)).sum()
    (tgx,) = torch.autograd.grad(tl, [tx], create_graph=True)
    (tgw,) = torch.autograd.grad((tgx * torch.from_numpy(v)).sum(), [tw])
    np.testing.assert_allclose(gx.numpy(), tgx.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gw.numpy(), tgw.numpy(), rtol=1e-9, atol=1e-12)


def test_accumulated_0d_grad_is_an_array() -> None:
    x = mg.tensor(np.array(0.5), requires_grad=True)
    y = x.exp()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(0.5))
    assert isinstance(x.grad.data, np.ndarray), type(x.grad.data)
    x.grad.data[...] = 0.0  # .data is the backend array, writable in place
    assert x.grad.item() == 0.0


def test_grad_with_an_input_listed_twice(torch: Any) -> None:
    x = mg.tensor(np.array([0.7, -1.3]), requires_grad=True)
    gs = mg.grad((x.exp() * x).sum(), [x, x])
    tx = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)
    (tg, _) = torch.autograd.grad((tx.exp() * tx).sum(), [tx, tx])
    assert len(gs) == 2
    for g in gs:
        np.testing.assert_allclose(g.numpy(), tg.numpy(), rtol=1e-12)


def test_gradient_through_detached_factor_is_constant() -> None:
    x = mg.tensor(np.array([0.7, -1.3]), requires_grad=True)
    loss = (x * x.detach() * 0.63).sum()
    (g,) = mg.grad(loss, [x], create_graph=True)
    np.testing.assert_allclose(g.numpy(), 0.63 * np.array([0.7, -1.3]))
    assert not g.requires_grad  # d/dx of x.detach() * 0.63 is 0: no graph to differentiate


def test_hessian_of_detached_numerator_over_value(torch: Any) -> None:
    x = mg.tensor(np.array([0.7, -1.3]), requires_grad=True)
    y = -x
    loss = (y.detach() / y).sum()
    (g,) = mg.grad(loss, [x], create_graph=True)
    assert g.requires_grad
    (h,) = mg.grad(g.sum(), [x])
    tx = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)
    ty = -tx
    (tg,) = torch.autograd.grad((ty.detach() / ty).sum(), [tx], create_graph=True)
    (th,) = torch.autograd.grad(tg.sum(), [tx])
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), th.numpy(), rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), 2 / np.array([0.7, -1.3]) ** 2, rtol=1e-12)
