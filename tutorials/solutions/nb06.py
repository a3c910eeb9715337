"""Solutions to notebook 06 (internal covariate shift)."""

from __future__ import annotations

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import DataLoader


def saturation_at_start(sigmoid_mlp, sigmoid_inputs, saturated_fraction, probe):
    """Exercise 1: a function of the weight scale: saturated fraction of each hidden layer
    of a freshly built network, before any training."""
    def fractions(weight_scale: float) -> list[float]:
        mg.manual_seed(0)
        net = sigmoid_mlp(weight_scale=weight_scale)
        with mg.no_grad():
            return [saturated_fraction(z) for z in sigmoid_inputs(net, probe)]
    return fractions


def mixed_inputs(sigmoid_mlp, trained, probe):
    """Exercise 2: the initial network (rebuilt from the same seed) and hidden layer 3's
    inputs from the trained third Linear (layer 5) on the initial layers 0-4."""
    mg.manual_seed(0)
    initial = sigmoid_mlp()
    with mg.no_grad():
        z_mixed = trained[5](initial[:5](probe)).numpy()
    return initial, z_mixed


def sigmoid_mlp_bn(hidden=(100, 100, 100)) -> nn.Sequential:
    """Exercise 3: the notebook's network with BatchNorm1d before each sigmoid."""
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = 784
    for width in hidden:
        linear = nn.Linear(fan_in, width)
        nn.init.normal_(linear.weight, 0.0, 1 / fan_in ** 0.5)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.BatchNorm1d(width), nn.Sigmoid()]
        fan_in = width
    layers.append(nn.Linear(fan_in, 10))
    return nn.Sequential(*layers)


def train_bn(train_set, sigmoid_inputs, saturated_fraction, probe, steps: int, every: int):
    """Train ``sigmoid_mlp_bn`` as the notebook trains the plain network; the saturated
    fraction per hidden layer every ``every`` steps (probe normalized with running stats)."""
    mg.manual_seed(0)
    model = sigmoid_mlp_bn()
    opt = mg.optim.SGD(model.parameters(), lr=0.5)
    saturated = []

    def measure() -> None:
        model.eval()
        with mg.no_grad():
            saturated.append([saturated_fraction(z) for z in sigmoid_inputs(model, probe)])
        model.train()

    measure()
    step = 0
    while step < steps:
        for x, y in DataLoader(train_set, batch_size=60, shuffle=True, seed=0):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % every == 0:
                measure()
            if step == steps:
                break
    return model, np.array(saturated)
