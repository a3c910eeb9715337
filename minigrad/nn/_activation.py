"""Activations and dropout: softmax, log-softmax, dropout (relu, sigmoid, tanh are core ops)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import random as _random
from ..autograd.function import Function, dual
from ..backend import device_of, xp_of
from ..errors import ArgumentError, ShapeError
from ..ops import relu as _relu
from ..ops import sigmoid as _sigmoid
from ..ops import tanh as _tanh
from ..ops.unary import Exp
from ..tensor import Tensor
from ._util import as_tensor, check_float

_exp = dual(Exp)


def _check_axis(op: str, x: Tensor, axis: int) -> None:
    if not -x.ndim <= axis < max(x.ndim, 1) or x.ndim == 0:
        raise ShapeError(f"{op}: axis {axis} is out of range for an input of shape "
                         f"{tuple(x.shape)}")


class Softmax(Function):
    """``y = exp(x) / sum(exp(x))`` along ``axis``.

    VJP: ``dL/dx = y * (g - sum(g * y))``, the sum along ``axis``; it only uses the
    output ``y``, so under ``create_graph`` it stays connected to this record.
    """

    array_backward = True
    op_name = "softmax"

    @staticmethod
    def forward(ctx: Any, x: Any, axis: int = -1) -> Any:
        # Subtracting the maximum changes nothing mathematically and keeps exp finite.
        y = np.exp(x - x.max(axis=axis, keepdims=True))
        y /= y.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (y,) = ctx.saved_tensors
        axis = ctx.params.get("axis", -1)
        return y * (g - (g * y).sum(axis=axis, keepdims=True))

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        y, axis = ctx.outputs, ctx.params.get("axis", -1)
        return y * (t - (t * y).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """``y = x - log(sum(exp(x)))`` along ``axis``, computed without overflow.

    VJP: ``dL/dx = g - exp(y) * sum(g)``, the sum along ``axis``.
    """

    array_backward = True
    op_name = "log_softmax"

    @staticmethod
    def forward(ctx: Any, x: Any, axis: int = -1) -> Any:
        z = x - x.max(axis=axis, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(z)
        return z

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (y,) = ctx.saved_tensors
        axis = ctx.params.get("axis", -1)
        return g - _exp(y) * g.sum(axis=axis, keepdims=True)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        y, axis = ctx.outputs, ctx.params.get("axis", -1)
        return t - (np.exp(y) * t).sum(axis=axis, keepdims=True)


softmax_fn = dual(Softmax)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along ``axis``: positive values that sum to 1."""
    x = as_tensor(x, "softmax")
    check_float("softmax", input=x)
    _check_axis("softmax", x, axis)
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``log(softmax(x))`` along ``axis``, stable for large inputs."""
    x = as_tensor(x, "log_softmax")
    check_float("log_softmax", input=x)
    _check_axis("log_softmax", x, axis)
    return LogSoftmax.apply(x, axis=axis)


def relu(x: Tensor) -> Tensor:
    """``max(x, 0)`` elementwise (gradient 0 at 0)."""
    return _relu(x)


def sigmoid(x: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))`` elementwise."""
    return _sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent elementwise."""
    return _tanh(x)


class Dropout(Function):
    """``y = x * mask`` where ``mask`` is 0 with probability ``p`` and ``1/(1-p)`` otherwise.

    The scaling keeps the expected value of each element unchanged, so nothing
    needs rescaling at evaluation time. VJP: ``dL/dx = g * mask`` (the same mask).
    """

    array_backward = True
    op_name = "dropout"

    @staticmethod
    def forward(ctx: Any, x: Any, p: float) -> Any:
        dev = device_of(x)
        gen = _random.generator(dev)
        if dev == "cpu":
            u = gen.random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
        else:
            u = gen.random_sample(x.shape, dtype=x.dtype)
        if p >= 1.0:
            mask = xp_of(x).zeros(x.shape, dtype=x.dtype)
        else:
            mask = (u >= p).astype(x.dtype)
            mask *= 1.0 / (1.0 - p)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (mask,) = ctx.saved_tensors
        return g * mask

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return t * ctx.saved[0]


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    Returns ``x`` itself when ``training`` is False or ``p`` is 0. The draws come
    from minigrad's generator, so ``mg.manual_seed`` makes them reproducible.
    """
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    x = as_tensor(x, "dropout")
    if not training or p == 0.0:
        return x
    check_float("dropout", input=x)
    return Dropout.apply(x, p=float(p))
