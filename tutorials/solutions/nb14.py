"""Solutions to notebook 14 (inside backward)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn


def clip_norm_hook(max_norm: float) -> Callable[[mg.Tensor], mg.Tensor | None]:
    """Exercise 1: a gradient hook that rescales the gradient to norm ``max_norm`` if larger.

    Scaling the whole gradient keeps its direction; clipping each element would not.
    """
    def hook(grad: mg.Tensor) -> mg.Tensor | None:
        norm = float(np.sqrt((grad.numpy().astype(np.float64) ** 2).sum()))
        if norm <= max_norm:
            return None  # None: keep the gradient as it is
        return grad * (max_norm / norm)
    return hook


def sigmoid_output_grad_norms(model: nn.Module, x: mg.Tensor, y: mg.Tensor) -> list[float]:
    """Exercise 2: |dL/d(output of each Sigmoid)|, first hidden layer first.

    A forward hook sees each Sigmoid's output as it is made and registers a tensor hook on
    it; backward then calls those hooks from the last layer to the first, so each one writes
    into its layer's slot rather than appending.
    """
    sigmoids = [m for m in model.modules() if isinstance(m, nn.Sigmoid)]
    norms = [0.0] * len(sigmoids)

    def watch(layer: int) -> Callable:
        def forward_hook(module: nn.Module, inputs: tuple, output: mg.Tensor) -> None:
            def grad_hook(grad: mg.Tensor) -> None:
                norms[layer] = float(np.linalg.norm(grad.numpy()))
            output.register_hook(grad_hook)
        return forward_hook

    handles = [m.register_forward_hook(watch(i)) for i, m in enumerate(sigmoids)]
    try:
        F.cross_entropy(model(x), y).backward()
    finally:
        for handle in handles:
            handle.remove()
    return norms


def run_in_segments(model: nn.Sequential, x: mg.Tensor, segments: int) -> mg.Tensor:
    """Exercise 3: run ``model`` as ``segments`` checkpointed pieces of about equal length."""
    bounds = np.linspace(0, len(model), segments + 1).round().astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        x = mg.checkpoint(model[int(start):int(stop)], x)
    return x
