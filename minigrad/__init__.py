"""minigrad: a small tape-based reverse-mode autograd framework on NumPy and CuPy.

``import minigrad as mg`` gives tensors and their ops (``mg.tensor``, ``mg.exp``, ...),
gradients (``backward``, ``mg.grad``, ``mg.tape``), custom ops (``mg.Function``),
checks (``mg.gradcheck``) and the subpackages ``mg.nn``, ``mg.optim``, ``mg.data`` and
``mg.viz``.
"""

from . import backend
from .autograd import (Function, Tape, enable_grad, grad, is_grad_enabled, no_grad,
                       set_grad_enabled, tape)
from .autograd import checkpoint, detect_anomaly, hessian, hvp, jacobian, jvp, vjp
from .backend import cuda_available, synchronize
from .creation import (arange, as_tensor, full, ones, ones_like, rand, randn, tensor, zeros,
                       zeros_like)
from .errors import (ArgumentError, ArgumentTypeError, CheckpointError, DTypeError, DataFileError,
                     DeviceError, GradcheckError, GraphError, HyperparameterError,
                     HyperparameterTypeError, IndexOutOfRangeError, InvalidStateError,
                     MinigradError, MissingAttributeError, MissingFileError, MissingKeyError,
                     NotSupportedError, ShapeError)
from .gradcheck import gradcheck, gradgradcheck
from .ops import (abs, add, argmax, argmin, astype, broadcast_to, clip, concatenate, div, equal,
                  exp, flatten, getitem, greater, greater_equal, less, less_equal, log, matmul,
                  max, maximum, mean, min, minimum, mul, neg, not_equal, pow, relu, reshape,
                  sigmoid, sqrt, squeeze, stack, std, sub, sum, swapaxes, tanh, transpose,
                  unsqueeze, var, where)
from .random import manual_seed
from .tensor import Tensor, bool_, float16, float32, float64, int8, int16, int32, int64, uint8

# Subpackages, after the core they are built on.
from . import data, optim  # noqa: E402
from .io import load, save  # noqa: E402
from . import viz  # noqa: E402
from .viz import trace_backward  # noqa: E402
from . import nn  # noqa: E402
from . import distributed  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ArgumentError", "ArgumentTypeError", "CheckpointError", "DTypeError", "DataFileError",
    "DeviceError", "Function", "GradcheckError", "GraphError", "HyperparameterError",
    "HyperparameterTypeError", "IndexOutOfRangeError", "InvalidStateError", "MinigradError",
    "MissingAttributeError", "MissingFileError", "MissingKeyError",
    "NotSupportedError", "ShapeError", "Tape", "Tensor", "abs", "add",
    "arange", "argmax", "argmin", "as_tensor", "astype",
    "backend", "bool_", "broadcast_to", "checkpoint", "clip", "concatenate", "cuda_available",
    "data", "detect_anomaly", "distributed", "div", "hessian", "hvp", "jacobian", "jvp", "vjp",
    "enable_grad", "equal", "exp", "flatten", "float16", "float32", "float64", "full",
    "getitem", "grad", "gradcheck", "gradgradcheck", "greater", "greater_equal", "int16",
    "int32", "int64", "int8", "is_grad_enabled", "less", "less_equal", "load", "log",
    "manual_seed", "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "neg", "nn",
    "no_grad", "not_equal", "ones", "ones_like", "optim", "pow", "rand", "randn", "relu",
    "reshape", "save", "set_grad_enabled", "sigmoid", "sqrt", "squeeze", "stack", "std", "sub",
    "sum", "swapaxes", "synchronize", "tanh", "tape", "tensor", "trace_backward", "transpose",
    "uint8",
    "unsqueeze", "var", "viz", "where", "zeros", "zeros_like",
]
