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



# glibc's mallopt parameters (malloc.h). The mmap threshold is set to the largest value
# glibc accepts on a 64-bit system (DEFAULT_MMAP_THRESHOLD_MAX: 4 MiB * sizeof(long)); the
# trim threshold to the largest an int holds.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 2 ** 31 - 1


def keep_freed_memory() -> bool:
    """Have the C allocator keep freed memory for reuse instead of handing it back to the OS.

    A training step allocates and frees the same large arrays (activations, im2col
    columns, gradients) every time. By default glibc serves each allocation above a
    threshold (128 KiB, rising to at most 32 MiB as it sees large blocks freed) with a
    fresh ``mmap`` and unmaps it on free, so every step pays the kernel to map, zero
    and unmap those pages again: with a small CNN that can be a fifth of the step,
    spent in page faults. After this call, blocks of up to 32 MiB come from the heap,
    and freed heap memory is returned to the OS only when more than 2 GiB lies free at
    its top, so the next step reuses the same pages.

    The cost: the process keeps its peak heap instead of shrinking after it. The
    setting is process-wide (NumPy, PyTorch and every other library share the
    allocator) and lasts until the process ends. It needs glibc (Linux); elsewhere it
    does nothing. Returns True when the settings were applied. Setting the environment
    variables ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647``
    before Python starts does the same.
    """
    import ctypes  # noqa: PLC0415 - only needed here
    import platform  # noqa: PLC0415

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    return libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok
