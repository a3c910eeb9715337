"""Optimisers (`SGD`, `Adam`) and learning-rate schedules, with PyTorch's names and rules."""

from . import lr_scheduler
from .adam import Adam
from .lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["SGD", "Adam", "CosineAnnealingLR", "LRScheduler", "Optimizer", "StepLR",
           "lr_scheduler"]
