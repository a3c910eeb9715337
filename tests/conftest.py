"""Shared fixtures: the device under test, the PyTorch oracle, float64 helpers.

``pytest --device cuda`` (or ``MINIGRAD_TEST_DEVICE=cuda``) runs the device-aware
tests on the GPU; without CuPy or a GPU they skip with the reason.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import minigrad as mg


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default=os.environ.get("MINIGRAD_TEST_DEVICE", "cpu"),
                     choices=["cpu", "cuda"], help="device for device-aware tests")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> str:
    dev = request.config.getoption("--device")
    if dev == "cuda" and not mg.cuda_available():
        pytest.skip("--device cuda: CuPy or a CUDA GPU is not available on this machine")
    return dev


@pytest.fixture(scope="session")
def torch():
    """PyTorch CPU as an oracle; tests using it skip cleanly where it is not installed."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (oracle tests skip)")
    torch.set_num_threads(1)
    return torch


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed() -> None:
    mg.manual_seed(0)
