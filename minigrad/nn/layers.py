"""The standard layers: Linear, Conv2d, activations, pooling, Flatten, Dropout, losses."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from .. import backend
from ..errors import ArgumentError, ArgumentTypeError, ShapeError
from ..ops import relu as _relu
from ..ops import sigmoid as _sigmoid
from ..ops import tanh as _tanh
from ..tensor import Tensor
from . import functional as F
from . import init
from ._linear import Linear as _LinearOp
from ._util import as_tensor, pair
from .module import Module, Parameter, current_scope


def _where() -> str:
    """The calling layer's path in the model, for error messages ('' outside a model)."""
    scope = current_scope()
    if scope is not None and scope.path:
        return f" '{scope.path}'"
    return ""


def _empty(shape: tuple, device: str | None, dtype: Any) -> Parameter:
    xp = backend.get_array_module(backend.check_device(device))
    return Parameter(xp.empty(shape, dtype=np.float32 if dtype is None else dtype))


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed layer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return x



def _weight_and_bias(layer: Module, shape: tuple, bias: bool, device: str | None,
                     dtype: Any) -> None:
    """Give ``layer`` a ``weight`` of ``shape`` and a ``bias`` with one value per output
    (``shape[0]``), or a bias of None; then initialize them (``reset_parameters``)."""
    layer.weight = _empty(shape, device, dtype)
    if bias:
        layer.bias = _empty((shape[0],), device, dtype)
    else:
        layer.register_parameter("bias", None)
    layer.reset_parameters()


def _default_init(weight: Parameter, bias: Parameter | None) -> None:
    """PyTorch's default for Linear and Conv2d: kaiming_uniform(a=sqrt(5)) for the weight,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1.0 / math.sqrt(init._fan(weight, "fan_in"))
        init.uniform_(bias, -bound, bound)


def _sizes(op: str, **sizes: Any) -> None:
    """Layer sizes are ints >= 1 (``Linear(3.5, 2)`` would fail later, far from the cause)."""
    for what, n in sizes.items():
        try:
            n = operator.index(n)
        except TypeError:
            raise ArgumentTypeError(f"{op}: {what} must be an int, got {type(n).__name__} "
                                    f"{n!r}") from None
        if n < 1:
            raise ArgumentError(f"{op}: {what} must be positive, got {n}")


class Linear(Module):
    """A fully connected layer: ``y = x @ weight.T + bias``.

    ``weight`` is (out_features, in_features) and ``bias`` (out_features,);
    both start as U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: str | None = None, dtype: Any = None) -> None:
        super().__init__()
        _sizes("Linear", in_features=in_features, out_features=out_features)
        self.in_features = in_features
        self.out_features = out_features
        _weight_and_bias(self, (out_features, in_features), bias, device, dtype)

    def reset_parameters(self) -> None:
        _default_init(self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        params = self._parameters  # (direct lookups: this runs on every call)
        w, b = params["weight"], params["bias"]
        if not isinstance(x, Tensor):  # an array or a list: a constant input, as in F.linear
            x = as_tensor(x, f"Linear{_where()}")
        data = getattr(x, "_data", None)
        if data is None or data.ndim == 0 or data.shape[-1] != self.in_features:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ShapeError(f"Linear{_where()} ({self.extra_repr()}): expected input of shape "
                             f"(..., {self.in_features}), got {shape}")
        if data.dtype != w._data.dtype or (b is not None and b._data.dtype != w._data.dtype):
            return F.linear(x, w, b)  # it raises the dtype error
        # The checks above are all F.linear would make, so call the op directly.
        return _LinearOp.apply(x, w) if b is None else _LinearOp.apply(x, w, b)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Conv2d(Module):
    """A 2-D convolution layer over (N, C, H, W) inputs.

    ``weight`` is (out_channels, in_channels, kh, kw) and ``bias`` (out_channels,),
    initialised as PyTorch does: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    ``fan_in = in_channels * kh * kw``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, bias: bool = True, device: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__()
        _sizes("Conv2d", in_channels=in_channels, out_channels=out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair("Conv2d", kernel_size, "kernel_size", 1)
        self.stride = pair("Conv2d", stride, "stride", 1)
        self.padding = pair("Conv2d", padding, "padding", 0)
        _weight_and_bias(self, (out_channels, in_channels) + self.kernel_size, bias, device,
                         dtype)

    def reset_parameters(self) -> None:
        _default_init(self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(f"Conv2d{_where()} ({self.extra_repr()}): expected input of shape "
                             f"(N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s


class ReLU(Module):
    """``max(x, 0)`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return _relu(x)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return _sigmoid(x)


class Tanh(Module):
    """``tanh(x)`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return _tanh(x)


class Softmax(Module):
    """Softmax along ``axis`` (PyTorch calls it ``dim``)."""

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    """``log(softmax(x))`` along ``axis``, computed stably."""

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, self.axis)


class Flatten(Module):
    """Collapse axes ``start_dim`` to ``end_dim`` into one: (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        n = len(shape)
        s, e = self.start_dim, self.end_dim
        if not (-n <= s < n and -n <= e < n) or s % n > e % n:
            raise ShapeError(f"Flatten{_where()} (start_dim={s}, end_dim={e}): does not fit an "
                             f"input of shape {shape}")
        s, e = s % n, e % n
        return x.reshape(shape[:s] + (-1,) + shape[e + 1:])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Zero each element with probability ``p`` while training, scaling the rest by 1/(1-p).

    In evaluation mode (``model.eval()``) it passes the input through.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ArgumentError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _Pool2d(Module):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        name = type(self).__name__
        self.kernel_size = pair(name, kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else pair(name, stride, "stride", 1)
        self.padding = pair(name, padding, "padding", 0)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4:
            raise ShapeError(f"{type(self).__name__}{_where()}: expected input of shape "
                             f"(N, C, H, W), got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The maximum of each ``kernel_size`` window; ``stride`` defaults to the kernel size."""

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """The mean of each ``kernel_size`` window; ``stride`` defaults to the kernel size."""

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class CrossEntropyLoss(Module):
    """``F.cross_entropy(logits, target)`` as a module."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(logits, target, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(CrossEntropyLoss):
    """``F.mse_loss(input, target)`` as a module."""

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002
        return F.mse_loss(input, target, self.reduction)
