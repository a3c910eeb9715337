"""The reference networks, written with minigrad's public API only.

``paper_mlp`` is the network of the Batch Normalization paper's MNIST experiment
(Ioffe & Szegedy, 2015, section 4.1): three fully connected hidden layers of 100
sigmoid units, weights drawn from a small Gaussian, and with ``bn=True`` a BatchNorm
layer before each sigmoid. ``cnn`` is a small convolutional network of conv-BN-ReLU
blocks, pooling and a linear head; ``bn=False`` gives the same CNN without BN.

``build(name, ...)`` picks one by its command-line name (see ``MODELS``).
"""

from __future__ import annotations

from minigrad import nn

#: The hidden layer sizes of the paper's network (784-100-100-100-10).
PAPER_HIDDEN = (100, 100, 100)


def paper_mlp(bn: bool = False, bn_impl: str = "fused", weight_scale: float = 1.0,
              hidden: tuple[int, ...] = PAPER_HIDDEN, in_features: int = 784,
              classes: int = 10, dropout: float = 0.0) -> nn.Sequential:
    """The paper's MLP: ``Flatten``, then per hidden layer ``Linear [-> BatchNorm1d] -> Sigmoid``.

    Weights are drawn from N(0, (weight_scale / sqrt(fan_in))**2): the paper says only
    "initialized to small random Gaussian values", and this scale keeps the first
    sigmoid inputs near unit variance, so ``weight_scale`` says how far one strays
    from it. Biases start at zero. With BN, the Linear layers keep their bias (as in
    the paper's ``Wu + b``, which BN makes redundant) so the two networks have the same
    layers apart from BN. ``dropout > 0`` puts ``nn.Dropout(dropout)`` after each sigmoid.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = in_features
    for width in hidden:
        linear = nn.Linear(fan_in, width)
        nn.init.normal_(linear.weight, 0.0, weight_scale / fan_in ** 0.5)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if bn:
            layers.append(nn.BatchNorm1d(width, impl=bn_impl))
        layers.append(nn.Sigmoid())
        if dropout:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    head = nn.Linear(fan_in, classes)
    nn.init.normal_(head.weight, 0.0, weight_scale / fan_in ** 0.5)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


def _conv_block(cin: int, cout: int, bn: bool, bn_impl: str) -> list[nn.Module]:
    # With BN the conv's bias is redundant (BN subtracts the per-channel mean).
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout, impl=bn_impl))
    layers.append(nn.ReLU())
    return layers


def cnn(bn: bool = True, bn_impl: str = "fused", channels: tuple[int, int] = (32, 64),
        hidden: int = 128, classes: int = 10) -> nn.Sequential:
    """A small CNN for 1x28x28 images.

    Two stages of ``conv3x3 [-> BatchNorm2d] -> ReLU -> MaxPool2d(2)`` (28 -> 14 -> 7),
    then ``Flatten -> Linear [-> BatchNorm1d] -> ReLU -> Linear``. Convolutions and
    Linear layers keep PyTorch's default initialisation.
    """
    c1, c2 = channels
    layers: list[nn.Module] = []
    layers += _conv_block(1, c1, bn, bn_impl)
    layers.append(nn.MaxPool2d(2))
    layers += _conv_block(c1, c2, bn, bn_impl)
    layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm1d(hidden, impl=bn_impl))
    layers += [nn.ReLU(), nn.Linear(hidden, classes)]
    return nn.Sequential(*layers)


#: Command-line names: what ``--model`` accepts, each a builder ``f(bn_impl, **kw)``.
MODELS = {
    "mlp": lambda bn_impl="fused", **kw: paper_mlp(bn=False, bn_impl=bn_impl, **kw),
    "mlp-bn": lambda bn_impl="fused", **kw: paper_mlp(bn=True, bn_impl=bn_impl, **kw),
    "cnn": lambda bn_impl="fused", **kw: cnn(bn=False, bn_impl=bn_impl, **kw),
    "cnn-bn": lambda bn_impl="fused", **kw: cnn(bn=True, bn_impl=bn_impl, **kw),
}


def build(name: str, bn_impl: str = "fused", **kwargs) -> nn.Sequential:
    """Build the model called ``name`` (one of ``MODELS``) with the given BN implementation."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](bn_impl=bn_impl, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """The number of scalar parameters of ``model``."""
    return sum(p.size for p in model.parameters())


__all__ = ["MODELS", "PAPER_HIDDEN", "build", "cnn", "count_parameters", "paper_mlp"]
