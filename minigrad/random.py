"""Random numbers, reproducible on both backends after `mg.manual_seed`."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend

_cpu = np.random.default_rng()
_seed: int | None = None


def manual_seed(seed: int) -> None:
    """Seed every generator minigrad uses (NumPy's, and CuPy's when it is in use)."""
    global _cpu, _seed
    _seed = int(seed)
    _cpu = np.random.default_rng(_seed)
    if backend._cupy is not None:
        backend._cupy.random.seed(_seed)


def generator(device: str = "cpu") -> Any:
    """The generator that draws for ``device`` (a NumPy Generator or CuPy's random module)."""
    if device == "cpu":
        return _cpu
    cp = backend.get_array_module("cuda")
    if _seed is not None and not getattr(cp.random, "_minigrad_seeded", False):
        cp.random.seed(_seed)
        cp.random._minigrad_seeded = True
    return cp.random


def get_state() -> dict:
    """The CPU generator's state, as plain data (for checkpoints)."""
    return _cpu.bit_generator.state


def set_state(state: dict) -> None:
    """Restore the CPU generator's state from ``get_state()``."""
    _cpu.bit_generator.state = state
