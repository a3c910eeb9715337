"""Tape, records and reverse mode."""

from . import forward, observers
from .anomaly import detect_anomaly, is_anomaly_enabled
from .forward import jvp
from .api import grad
from .checkpoint import checkpoint
from .functional import hessian, hvp, jacobian, vjp
from .function import (NO_GRAD, Edge, Function, enable_grad, is_grad_enabled, no_grad,
                       set_grad_enabled)
from .tape import Tape, tape

__all__ = ["NO_GRAD", "Edge", "Function", "Tape", "checkpoint", "detect_anomaly", "enable_grad",
           "forward", "grad", "hessian", "hvp", "is_anomaly_enabled", "is_grad_enabled",
           "jacobian", "jvp", "no_grad", "observers", "set_grad_enabled", "tape", "vjp"]
