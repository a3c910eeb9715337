"""Tape, records and reverse mode."""

from . import observers
from .api import grad
from .function import (NO_GRAD, Edge, Function, enable_grad, is_grad_enabled, no_grad,
                       set_grad_enabled)
from .tape import Tape, tape

__all__ = ["NO_GRAD", "Edge", "Function", "Tape", "enable_grad", "grad", "is_grad_enabled",
           "no_grad", "observers", "set_grad_enabled", "tape"]
