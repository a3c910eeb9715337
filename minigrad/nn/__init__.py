"""Neural-network layers (`Module` and friends), initialisers and `functional`.

``import minigrad.nn as nn`` then ``nn.Sequential(nn.Linear(784, 100), nn.ReLU(), ...)``;
``minigrad.nn.functional`` holds the same computations as plain functions.
"""

from . import functional, init, utils
from .batchnorm import BatchNorm1d, BatchNorm2d
from .container import ModuleList, Sequential
from .layers import (AvgPool2d, Conv2d, CrossEntropyLoss, Dropout, Flatten, Identity, Linear,
                     LogSoftmax, MaxPool2d, MSELoss, ReLU, Sigmoid, Softmax, Tanh)
from .module import IncompatibleKeys, Module, Parameter, StateDictError

from ._sync_batchnorm import SyncBatchNorm  # noqa: E402 - after the modules it builds on

__all__ = ["AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout",
           "Flatten", "Identity", "IncompatibleKeys", "Linear", "LogSoftmax", "MSELoss",
           "MaxPool2d", "Module", "ModuleList", "Parameter", "ReLU", "Sequential", "Sigmoid",
           "Softmax", "StateDictError", "SyncBatchNorm", "Tanh", "functional", "init", "utils"]
