"""BatchNorm helpers: population statistics after training, and folding for inference.

``recompute_bn_stats`` replaces the running statistics that training left behind (an
exponential average dominated by the last few hundred batches, taken while the weights
were still moving) with the population estimate of the paper's Algorithm 2, computed
with the final weights. ``fold_batchnorm`` then removes BatchNorm from the inference
network altogether: in evaluation it is a fixed affine map per channel, which the layer
before it can absorb.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np

from ..autograd.function import no_grad
from ..backend import xp_of
from ..errors import ArgumentError
from .batchnorm import _BatchNorm
from .container import Sequential
from .layers import Conv2d, Identity, Linear
from .module import Module, Parameter


def recompute_bn_stats(model: Module, loader: Iterable, num_batches: int | None = None) -> Module:
    """Recompute every BatchNorm's running statistics over ``loader`` (Algorithm 2).

    For each BatchNorm layer that tracks running statistics, over the batches ``B`` (each
    of ``m`` values per channel)::

        E[x]   = mean over batches of mu_B
        Var[x] = mean over batches of m/(m-1) * sigma_B**2     (the unbiased estimate)

    which is ``m/(m-1) * E_B[sigma_B**2]`` when every batch has the same size. The
    BatchNorm layers run in training mode (batch statistics, as the network was
    trained) with ``momentum=None``; every other module keeps its current mode, so call
    ``model.eval()`` first to keep Dropout off. Modes and momenta are restored
    afterwards, no gradients are recorded, and nothing but the running statistics (and
    ``num_batches_tracked``, the number of batches used) changes.

    A batch from ``loader`` that is a tuple or list (``(x, y)`` from a DataLoader)
    contributes its first element; ``num_batches`` limits how many batches are used.
    Returns ``model``.
    """
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return model
    before = [(bn, bn.momentum, bn.running_mean._data.copy(), bn.running_var._data.copy(),
               bn.num_batches_tracked._data.copy()) for bn in bns]
    modes = [(m, m.training) for m in model.modules()]
    seen = 0
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average: every batch weighs the same
            bn.training = True
        with no_grad():
            for batch in loader:
                if num_batches is not None and seen >= num_batches:
                    break
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
                seen += 1
        done = seen > 0
    except BaseException:
        done = False
        raise
    finally:
        for m, training in modes:
            m.training = training
        for bn, momentum, mean, var, count in before:
            bn.momentum = momentum
            if not done:  # nothing (or only part) averaged: keep the old statistics
                for t, old in ((bn.running_mean, mean), (bn.running_var, var),
                               (bn.num_batches_tracked, count)):
                    t._data[...] = old
                    t._bump()
    if seen == 0:
        raise ArgumentError("recompute_bn_stats: the loader gave no batches; the running "
                            "statistics are unchanged")
    return model


def fold_batchnorm(model: Module) -> Module:
    """A copy of ``model`` for inference, with BatchNorm folded into the layer before it.

    In evaluation a BatchNorm computes ``y = s * z + t`` per channel, with
    ``s = gamma / sqrt(running_var + eps)`` and ``t = beta - running_mean * s``. When
    ``z`` comes straight from a `Linear` or `Conv2d` (``z = W x + b``) inside a
    `Sequential`, the pair is the single layer ``y = (s W) x + (s b + t)``: the copy
    gets that weight and bias and an `Identity` where the BatchNorm was. BatchNorms
    without running statistics, or not right after such a layer, stay as they are.

    The copy is returned in evaluation mode (it equals the original only there); the
    original model is not changed.
    """
    folded = copy.deepcopy(model)
    for seq in [m for m in folded.modules() if isinstance(m, Sequential)]:
        names = list(seq._modules)
        for prev, name in zip(names, names[1:]):
            layer, bn = seq._modules[prev], seq._modules[name]
            if (isinstance(layer, (Linear, Conv2d)) and isinstance(bn, _BatchNorm)
                    and bn.track_running_stats and layer.weight.shape[0] == bn.num_features):
                _fold_into(layer, bn)
                seq.add_module(name, Identity())
    return folded.eval()


def _fold_into(layer: Linear | Conv2d, bn: _BatchNorm) -> None:
    """Give ``layer`` the weight and bias of ``bn(layer(x))`` in evaluation mode."""
    w = layer.weight._data
    xp = xp_of(w)
    f64 = np.float64
    scale = 1 / xp.sqrt(bn.running_var._data.astype(f64) + bn.eps)
    shift = -bn.running_mean._data.astype(f64) * scale
    if bn.affine:
        shift = shift * bn.weight._data.astype(f64) + bn.bias._data.astype(f64)
        scale = scale * bn.weight._data.astype(f64)
    bias = shift if layer.bias is None else layer.bias._data.astype(f64) * scale + shift
    scale = scale.reshape((-1,) + (1,) * (w.ndim - 1))  # one factor per output row/filter
    layer.weight = Parameter((w.astype(f64) * scale).astype(w.dtype))
    layer.bias = Parameter(bias.astype(w.dtype))
