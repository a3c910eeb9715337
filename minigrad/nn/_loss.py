"""Losses: softmax cross-entropy (one fused op), negative log-likelihood, mean squared error."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd.function import Function
from ..backend import xp_of
from ..errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError
from ..tensor import Tensor
from ._activation import softmax_fn
from ._util import as_tensor, check_float

_REDUCTIONS = ("mean", "sum", "none")


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, C) against integer classes (N,).

    Per row: ``loss = log(sum(exp(z))) - z[target]``; it is computed from
    ``z - max(z)`` so that no exponential overflows. The VJP is the classic
    ``dL/dz = (softmax(z) - onehot(target)) * g`` (divided by N for the mean).
    """

    array_backward = True
    op_name = "cross_entropy"

    @staticmethod
    def forward(ctx: Any, logits: Any, target: Any = None, reduction: str = "mean") -> Any:
        n = logits.shape[0]
        xp = xp_of(logits)
        z = logits - logits.max(axis=1, keepdims=True)
        picked = z[xp.arange(n), target]
        p = xp.exp(z, out=z)  # z is this op's own array: exponentiate it in place
        s = p.sum(axis=1, keepdims=True)
        losses = np.log(s[:, 0])
        losses -= picked
        p /= s  # now the softmax, which is all the backward needs
        ctx.save_for_backward(logits, p)
        if reduction == "none":
            return losses
        total = losses.sum()
        return total / n if reduction == "mean" else total

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        logits, p = ctx.saved_tensors
        target, reduction = ctx.params["target"], ctx.params["reduction"]
        n = logits.shape[0]
        if reduction == "none":
            scale = g.reshape(n, 1)
        elif reduction == "mean":
            scale = g * (1.0 / n)
        else:
            scale = g
        if not isinstance(g, Tensor):  # plain backward: (softmax - onehot) * scale
            d = p * scale  # a new array; the saved softmax stays as it is
            d[xp_of(d).arange(n), target] -= scale[:, 0] if reduction == "none" else scale
            return d
        # create_graph: recompute the softmax as a recorded op, so the gradient
        # is itself differentiable with respect to the logits.
        onehot = xp_of(p._data).zeros(p.shape, dtype=p.dtype)
        onehot[xp_of(onehot).arange(n), target] = 1
        return (softmax_fn(logits, axis=1) - onehot) * scale

    @staticmethod
    def jvp(ctx: Any, tz: Any) -> Any:
        # d(logsumexp(z) - z[target]) = sum(softmax(z) * dz) - dz[target], per row
        _, p = ctx.saved
        target, reduction = ctx.params["target"], ctx.params["reduction"]
        n = p.shape[0]
        per_row = (p * tz).sum(axis=1) - tz[xp_of(p).arange(n), target]
        if reduction == "none":
            return per_row
        return per_row.sum() / n if reduction == "mean" else per_row.sum()


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ArgumentError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _class_target(op: str, scores: Tensor, target: Any) -> Any:
    """Check ``target`` against scores (N, C); return it as a backend integer array."""
    sd = scores._data
    if sd.ndim != 2:
        raise ShapeError(f"{op}: expected scores of shape (N, C), got shape {tuple(sd.shape)}")
    t = target._data if isinstance(target, Tensor) else target
    if not hasattr(t, "dtype"):
        t = np.asarray(t)
        if t.size == 0:
            t = t.astype(np.int64)
    n, c = sd.shape
    if t.dtype.kind not in "iu":
        raise DTypeError(_target_dtype_message(op, t, n, c))
    if t.shape != (n,):
        raise ShapeError(f"{op}: target must have shape ({n},) for scores of shape ({n}, {c}), "
                         f"got {tuple(t.shape)}")
    if type(sd) is np.ndarray:  # on the GPU a range check would need a device sync
        if n and (t.min() < 0 or t.max() >= c):
            i = int(np.flatnonzero((t < 0) | (t >= c))[0])
            raise IndexOutOfRangeError(f"{op}: target[{i}] = {int(t[i])} is out of range: the "
                                       f"scores (shape ({n}, {c})) have {c} classes, 0 to "
                                       f"{c - 1}")
    elif xp_of(t) is not xp_of(sd):
        t = xp_of(sd).asarray(t)
    return t


def _target_dtype_message(op: str, t: Any, n: int, c: int) -> str:
    """What to do with a target that is not integer class indices."""
    msg = f"{op}: target must hold integer class indices, got dtype {t.dtype}"
    if t.shape == (n, c):  # one-hot rows (or probabilities): the index of each row's 1
        return (f"{msg} and shape {tuple(t.shape)}, like one-hot rows; pass the class of each "
                "row instead: target.argmax(axis=1)")
    if t.dtype.kind == "f":
        return f"{msg}; if it holds whole numbers, convert it: target.astype(mg.int64)"
    return msg


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy between ``logits`` (N, C) and class indices ``target`` (N,).

    Equals ``-log_softmax(logits)[range(N), target]`` averaged over the batch
    (``reduction="mean"``), summed (``"sum"``) or per sample (``"none"``).
    """
    if reduction not in _REDUCTIONS:
        _check_reduction("cross_entropy", reduction)
    if not isinstance(logits, Tensor):
        logits = as_tensor(logits, "cross_entropy")
    if logits._data.dtype.kind != "f":
        check_float("cross_entropy", logits=logits)
    t = _class_target("cross_entropy", logits, target)
    # The classes are a parameter of the op, not an input: they get no gradient.
    return CrossEntropy.apply(logits, target=t, reduction=reduction)


def nll_loss(log_probs: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood: ``-log_probs[range(N), target]``, reduced like `cross_entropy`.

    ``log_probs`` is (N, C), usually the output of `log_softmax`.
    """
    _check_reduction("nll_loss", reduction)
    log_probs = as_tensor(log_probs, "nll_loss")
    t = _class_target("nll_loss", log_probs, target)
    picked = -log_probs[xp_of(t).arange(t.shape[0]), t]
    if reduction == "mean":
        return picked.mean()
    return picked.sum() if reduction == "sum" else picked


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """Mean squared error ``mean((input - target) ** 2)`` (or its sum, or per element).

    ``input`` and ``target`` must have the same shape: a silent broadcast of, say,
    (N, 1) against (N,) would compare every prediction with every target.
    """
    _check_reduction("mse_loss", reduction)
    input = as_tensor(input, "mse_loss")  # noqa: A001
    target = as_tensor(target, "mse_loss")
    if tuple(input.shape) != tuple(target.shape):
        raise ShapeError(f"mse_loss: input has shape {tuple(input.shape)} but target has shape "
                         f"{tuple(target.shape)}; they must match")
    check_float("mse_loss", input=input, target=target)
    d = input - target
    sq = d * d
    if reduction == "mean":
        return sq.mean()
    return sq.sum() if reduction == "sum" else sq
