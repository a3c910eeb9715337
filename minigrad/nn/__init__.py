"""Neural-network layers (`Module` and friends), initialisers and `functional`.

``import minigrad.nn as nn`` then ``nn.Sequential(nn.Linear(784, 100), nn.ReLU(), ...)``;
``minigrad.nn.functional`` holds the same computations as plain functions.
"""

from . import functional, init
from .container import ModuleList, Sequential
from .layers import (
                     AvgPool2d,
                     Conv2d,
                     CrossEntropyLoss,
                     Dropout,
                     Flatten,
                     Identity,
                     Linear,
                     LogSoftmax,
                     MaxPool2d,
                     MSELoss,
                     ReLU,
                     Sigmoid,
                     Softmax,
                     Tanh,
)
from .module import IncompatibleKeys, Module, Parameter, StateDictError

# ---- BatchNorm: BatchNorm1d / BatchNorm2d (and F.batch_norm) live in .batchnorm;
# ---- they are imported and added to __all__ here when that module is wired in.

__all__ = ["AvgPool2d", "Conv2d", "CrossEntropyLoss", "Dropout", "Flatten", "Identity",
           "IncompatibleKeys", "Linear", "LogSoftmax", "MSELoss", "MaxPool2d", "Module",
           "ModuleList", "Parameter", "ReLU", "Sequential", "Sigmoid", "Softmax",
           "StateDictError", "Tanh", "functional", "init"]
