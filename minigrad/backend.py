"""Devices and array modules.

minigrad writes every op once against an array module ``xp``: NumPy for the
``"cpu"`` device, CuPy for ``"cuda"``. CuPy is optional and imported only when a
CUDA tensor is first asked for, so the CPU path never pays for it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .errors import DeviceError

_cupy: ModuleType | None = None
_cupy_error: str | None = None
# Set once a CUDA array has been made; until then every array is NumPy and the
# per-op device check can be skipped.
cuda_in_use = False

DEVICES = ("cpu", "cuda")


def _load_cupy() -> ModuleType:
    global _cupy, _cupy_error
    if _cupy is not None:
        return _cupy
    if _cupy_error is not None:
        raise DeviceError(_cupy_error)
    try:
        import cupy  # noqa: PLC0415 - optional dependency, imported on demand

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise DeviceError("no CUDA device is visible")
    except Exception as exc:  # ImportError, CUDA driver errors, no device
        _cupy_error = (
            "device 'cuda' needs CuPy and an NVIDIA GPU, but it is not usable here "
            f"({type(exc).__name__}: {exc}). Install the CuPy build that matches your "
            "CUDA toolkit, e.g. `pip install minigrad[cuda12]` (cupy-cuda12x) or "
            "`pip install minigrad[cuda13]` (cupy-cuda13x), or stay on device 'cpu'."
        )
        raise DeviceError(_cupy_error) from None
    _cupy = cupy
    return cupy


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        _load_cupy()
    except DeviceError:
        return False
    return True


def synchronize(device: Any = "cuda") -> None:
    """Wait until the GPU has finished all the work queued so far; a no-op on ``"cpu"``.

    CuPy launches kernels asynchronously: a call returns before the GPU is done, so
    read a clock only after synchronising, or the time measures the launch, not the
    work. Without CuPy (or on ``"cpu"``) there is nothing to wait for.
    """
    if check_device(device) == "cuda" and _cupy is not None:
        _cupy.cuda.Device().synchronize()


def check_device(device: Any) -> str:
    """Normalise a device spec (``None``, ``"cpu"``, ``"cuda"``, ``"cuda:0"``)."""
    if device is None:
        return "cpu"
    name = str(device)
    if name.startswith("cuda:"):
        name = "cuda"  # one GPU per process; the index is accepted for familiarity
    if name not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
    return name


def get_array_module(device: str) -> ModuleType:
    """The array module (``numpy`` or ``cupy``) that holds data on ``device``."""
    if device == "cpu":
        return np
    return _load_cupy()


def device_of(array: Any) -> str:
    """``"cpu"`` for NumPy arrays and scalars, ``"cuda"`` for CuPy arrays."""
    if isinstance(array, np.ndarray) or _cupy is None:
        return "cpu"
    return "cuda" if isinstance(array, _cupy.ndarray) else "cpu"


def xp_of(array: Any) -> ModuleType:
    """The array module of ``array``."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    return np


def to_device(array: Any, device: str) -> Any:
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    global cuda_in_use
    if device == "cpu":
        if _cupy is not None and isinstance(array, _cupy.ndarray):
            return _cupy.asnumpy(array)
        return np.asarray(array)
    cp = _load_cupy()
    cuda_in_use = True
    return cp.asarray(array)
