"""Stateless neural-network functions: ``import minigrad.nn.functional as F``.

Every function takes Tensors and returns a Tensor recorded on the tape. The
heavier ones (linear, conv2d, pooling, softmax, cross_entropy, dropout) are
single fused ops with a hand-written VJP; each VJP is itself made of
differentiable ops, so ``create_graph=True`` works through them.
"""

from ._activation import dropout, log_softmax, relu, sigmoid, softmax, tanh
from ._conv import conv2d
from ._linear import linear
from ._loss import cross_entropy, mse_loss, nll_loss
from ._pool import avg_pool2d, max_pool2d

from .batchnorm import batch_norm

__all__ = ["avg_pool2d", "batch_norm", "conv2d", "cross_entropy", "dropout", "linear",
           "log_softmax",
           "max_pool2d", "mse_loss", "nll_loss", "relu", "sigmoid", "softmax", "tanh"]
