"""Solutions to notebook 09 (training with BatchNorm)."""

from __future__ import annotations

import copy

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import DataLoader


def _train(model, train_set, lr: float, steps: int, watch=None) -> None:
    opt = mg.optim.SGD(model.parameters(), lr=lr)
    batches = DataLoader(train_set, batch_size=60, shuffle=True, seed=0)
    step = 0
    while step < steps:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            if watch is not None:
                watch(model)
            opt.step()
            step += 1
            if step == steps:
                return


def without_bias(make_mlp, train_set, evaluate, steps: int):
    """Exercise 1: the largest |gradient| of a hidden bias over training, and the probe
    accuracy with and without those biases (same seed, same batches, lr 1.0)."""
    largest = [0.0]

    def watch(model):
        for layer in list(model)[:-1]:
            if isinstance(layer, nn.Linear):
                largest[0] = max(largest[0], float(np.abs(layer.bias.grad.numpy()).max()))

    mg.manual_seed(0)
    with_bias = make_mlp(bn=True)
    mg.manual_seed(0)
    no_bias = make_mlp(bn=True)
    for k, layer in enumerate(no_bias):
        if isinstance(layer, nn.Linear) and k < len(no_bias) - 1:
            replacement = nn.Linear(layer.in_features, layer.out_features, bias=False)
            with mg.no_grad():
                replacement.weight[...] = layer.weight
            no_bias[k] = replacement
    _train(with_bias, train_set, 1.0, steps, watch)
    _train(no_bias, train_set, 1.0, steps)
    return largest[0], no_bias, evaluate(with_bias)[0], evaluate(no_bias)[0]


def cumulative_statistics(make_mlp, train_set, evaluate, test_x, test_y, steps: int,
                          num_batches: int | None = None):
    """Exercise 2: momentum=None during training, then Algorithm 2's population statistics."""
    mg.manual_seed(0)
    model = make_mlp(bn=True)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.momentum = None
    _train(model, train_set, 1.0, steps)
    acc_running = evaluate(model, test_x, test_y)[0]
    mg.nn.utils.recompute_bn_stats(model.eval(), DataLoader(train_set, batch_size=60,
                                                            shuffle=True, seed=1),
                                   num_batches=num_batches)
    return model, acc_running, evaluate(model, test_x, test_y)[0]


def scaled_pair(make_mlp, train_set, steps: int = 100, eps: float = 0.0):
    """Exercise 3: W and 10 W with learning rates 1 and 100, on the same batches."""
    mg.manual_seed(0)
    net_a = make_mlp(bn=True)
    for m in net_a.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eps = eps
    net_b = copy.deepcopy(net_a)
    with mg.no_grad():
        net_b[1].weight *= 10
    opt_a = mg.optim.SGD(net_a.parameters(), lr=1.0)
    rest = [p for p in net_b.parameters() if p is not net_b[1].weight]
    opt_b = mg.optim.SGD([{"params": [net_b[1].weight], "lr": 100.0}, {"params": rest}], lr=1.0)
    batches = DataLoader(train_set, batch_size=60, shuffle=True, seed=0)
    for _, (x, y) in zip(range(steps), batches):
        for net, opt in ((net_a, opt_a), (net_b, opt_b)):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net_a, net_b
