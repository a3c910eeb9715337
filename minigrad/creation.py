"""Factories: tensor, zeros, ones, full, arange, rand, randn and friends."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from . import backend
from . import random as _random
from .errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError
from .tensor import Tensor


def _shape(shape: tuple, op: str) -> tuple[int, ...]:
    """``zeros(2, 3)`` and ``zeros((2, 3))`` alike: the sizes as a tuple of ints >= 0."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        sizes = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise ArgumentTypeError(f"{op}: sizes must be ints, got shape {tuple(shape)!r}") from None
    if any(n < 0 for n in sizes):
        raise ShapeError(f"{op}: sizes must be >= 0, got shape {sizes}")
    return sizes


def _check_grad_dtype(op: str, dtype: Any, requires_grad: bool) -> None:
    """Refuse ``requires_grad`` for a non-float dtype before anything is made or drawn."""
    if requires_grad and dtype is not None and np.dtype(dtype).kind != "f":
        raise DTypeError(f"{op}: only floating-point tensors can require grad, got dtype "
                         f"{np.dtype(dtype)}; use e.g. dtype=mg.float32")


def _new(array: Any, requires_grad: bool, name: str | None = None) -> Tensor:
    t = Tensor._wrap(array)
    t.name = name
    if requires_grad:
        t.requires_grad = True
    return t


def tensor(data: Any, dtype: Any = None, device: str | None = None,
           requires_grad: bool = False, name: str | None = None) -> Tensor:
    """A new leaf tensor holding a copy of ``data``.

    Python floats (and lists of them) give float32; NumPy/CuPy arrays keep their
    dtype; Python ints give int64, which cannot require grad.
    """
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad, name=name)


def as_tensor(data: Any, dtype: Any = None, device: str | None = None,
              requires_grad: bool = False, name: str | None = None) -> Tensor:
    """A leaf tensor that shares ``data``'s memory when it can (like ``torch.as_tensor``).

    A NumPy/CuPy array already of the wanted dtype and device is wrapped without a
    copy, so later writes to the array show in the tensor; anything else (a list, a
    Tensor, another dtype or device) is converted as ``mg.tensor`` does.
    """
    if (hasattr(data, "shape") and not isinstance(data, Tensor)
            and (dtype is None or np.dtype(dtype) == data.dtype)
            and (device is None or backend.check_device(device) == backend.device_of(data))):
        if backend.device_of(data) == "cuda":
            backend.cuda_in_use = True
        return _new(data, requires_grad, name)
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad, name=name)


def _xp(device: str | None) -> Any:
    dev = backend.check_device(device)
    xp = backend.get_array_module(dev)
    if dev == "cuda":
        backend.cuda_in_use = True
    return xp


def zeros(*shape: Any, dtype: Any = np.float32, device: str | None = None,
          requires_grad: bool = False, name: str | None = None) -> Tensor:
    """A tensor of zeros (float32 unless ``dtype`` says otherwise)."""
    _check_grad_dtype("zeros", dtype, requires_grad)
    return _new(_xp(device).zeros(_shape(shape, "zeros"), dtype=dtype), requires_grad, name)


def ones(*shape: Any, dtype: Any = np.float32, device: str | None = None,
         requires_grad: bool = False, name: str | None = None) -> Tensor:
    """A tensor of ones."""
    _check_grad_dtype("ones", dtype, requires_grad)
    return _new(_xp(device).ones(_shape(shape, "ones"), dtype=dtype), requires_grad, name)


def full(shape: Any, fill_value: Any, dtype: Any = None, device: str | None = None,
         requires_grad: bool = False, name: str | None = None) -> Tensor:
    """A tensor filled with ``fill_value`` (float32 for a Python float)."""
    if dtype is None:
        dtype = np.float32 if isinstance(fill_value, float) else np.asarray(fill_value).dtype
    _check_grad_dtype("full", dtype, requires_grad)
    shape = _shape((shape,) if isinstance(shape, int) else tuple(shape), "full")
    return _new(_xp(device).full(shape, fill_value, dtype=dtype), requires_grad, name)


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False,
               name: str | None = None) -> Tensor:
    """Zeros with ``t``'s shape, dtype and device."""
    xp = backend.xp_of(t._data)
    return _new(xp.zeros(t._data.shape, dtype=dtype or t._data.dtype), requires_grad, name)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False,
              name: str | None = None) -> Tensor:
    """Ones with ``t``'s shape, dtype and device."""
    xp = backend.xp_of(t._data)
    return _new(xp.ones(t._data.shape, dtype=dtype or t._data.dtype), requires_grad, name)


def arange(start: Any, stop: Any = None, step: Any = 1, dtype: Any = None,
           device: str | None = None, requires_grad: bool = False,
           name: str | None = None) -> Tensor:
    """Evenly spaced values in ``[start, stop)``, as NumPy's ``arange``."""
    if stop is None:
        start, stop = 0, start
    if dtype is None and any(isinstance(v, float) for v in (start, stop, step)):
        dtype = np.float32
    if step == 0:
        raise ArgumentError(f"arange: step must be nonzero, got step={step!r} (start={start!r}, "
                            f"stop={stop!r})")
    _check_grad_dtype("arange", dtype, requires_grad)
    return _new(_xp(device).arange(start, stop, step, dtype=dtype), requires_grad, name)


def rand(*shape: Any, dtype: Any = np.float32, device: str | None = None,
         requires_grad: bool = False, name: str | None = None) -> Tensor:
    """Uniform samples in ``[0, 1)``."""
    def uniform(gen: Any, dev: str, shp: tuple) -> Any:
        return gen.random(shp, dtype=np.float64) if dev == "cpu" else gen.random_sample(shp)

    return _sampled("rand", uniform, shape, dtype, device, requires_grad, name)


def randn(*shape: Any, dtype: Any = np.float32, device: str | None = None,
          requires_grad: bool = False, name: str | None = None) -> Tensor:
    """Standard normal samples."""
    def normal(gen: Any, dev: str, shp: tuple) -> Any:
        return gen.standard_normal(shp)

    return _sampled("randn", normal, shape, dtype, device, requires_grad, name)


def _sampled(op: str, draw: Any, shape: tuple, dtype: Any, device: str | None,
             requires_grad: bool, name: str | None) -> Tensor:
    """A tensor of ``draw(generator, device, shape)``: samples from the device's generator."""
    _check_grad_dtype(op, dtype, requires_grad)
    shp = _shape(shape, op)
    dev = backend.check_device(device)
    a = draw(_random.generator(dev), dev, shp)
    return _new(_xp(dev).asarray(a, dtype=dtype), requires_grad, name)
