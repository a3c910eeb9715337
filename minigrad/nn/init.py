"""Initialisers that fill a tensor in place (without recording), with PyTorch's formulas.

Each draws from minigrad's generator, so ``mg.manual_seed`` makes them
reproducible, and returns the tensor it filled.

The scaled ones keep activations from growing or shrinking layer after layer:
with ``fan_in`` inputs per unit, a weight variance of ``gain**2 / fan_in`` keeps
the variance of a pre-activation close to that of the inputs (Kaiming/He);
Xavier/Glorot averages ``fan_in`` and ``fan_out`` to balance forward and backward.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import random as _random
from ..autograd.function import no_grad
from ..backend import xp_of
from ..errors import ArgumentError, ArgumentTypeError, ShapeError
from ..tensor import Tensor


def _fill(tensor: Tensor, values: Any) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise ArgumentTypeError(f"init: expected a Tensor or Parameter, got "
                                f"{type(tensor).__name__}")
    with no_grad():
        arr = xp_of(tensor._data).asarray(values, dtype=tensor.dtype)
        tensor.data[...] = arr
    return tensor


def _draw(tensor: Tensor, kind: str, a: float, b: float) -> Tensor:
    """Fill with U(a, b) (``kind="uniform"``) or N(a, b**2) (``"normal"``)."""
    if not isinstance(tensor, Tensor):
        raise ArgumentTypeError(f"init: expected a Tensor or Parameter, got "
                                f"{type(tensor).__name__}")
    gen = _random.generator(tensor.device)
    if kind == "uniform":
        values = gen.uniform(a, b, size=tensor.shape)
    else:
        values = gen.normal(a, b, size=tensor.shape)
    return _fill(tensor, values)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor by which ``nonlinearity`` shrinks the standard deviation, to undo it.

    ``linear``, ``conv*d``, ``sigmoid``: 1; ``tanh``: 5/3; ``relu``: sqrt(2);
    ``leaky_relu``: sqrt(2 / (1 + slope**2)) (slope ``param``, default 0.01);
    ``selu``: 3/4.
    """
    if nonlinearity in ("linear", "identity", "conv1d", "conv2d", "conv3d", "sigmoid",
                        "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ArgumentError(f"calculate_gain: negative slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ArgumentError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fans(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel): in/out times the kernel's size."""
    if tensor.ndim < 2:
        raise ShapeError(f"init: fan in and fan out need a tensor with at least 2 dimensions, "
                         f"got shape {tuple(tensor.shape)}")
    receptive = int(np.prod(tensor.shape[2:])) if tensor.ndim > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ArgumentError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with values drawn uniformly from [a, b)."""
    return _draw(tensor, "uniform", a, b)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with values drawn from N(mean, std**2)."""
    return _draw(tensor, "normal", mean, std)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    if not isinstance(tensor, Tensor):
        raise ArgumentTypeError(f"init: expected a Tensor or Parameter, got "
                                f"{type(tensor).__name__}")
    with no_grad():
        tensor.data[...] = val
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot and Bengio, 2010)."""
    fan_in, fan_out = _fans(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _draw(tensor, "uniform", -a, a)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std**2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fans(tensor)
    return _draw(tensor, "normal", 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan)`` (He et al., 2015).

    ``a`` is the negative slope of a leaky ReLU; ``a = sqrt(5)`` gives
    ``bound = 1 / sqrt(fan_in)``, the default of `Linear` and `Conv2d`.
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return _draw(tensor, "uniform", -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:
    """N(0, std**2) with ``std = gain / sqrt(fan)``."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return _draw(tensor, "normal", 0.0, std)
