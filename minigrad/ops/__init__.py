"""The primitive operations. Each is a `Function` with forward and VJP side by side."""

from .arith import (Add, Div, MatMul, Mul, Neg, Pow, PowConst, Sub, add, div, matmul, mul, neg,
                    pow, sub)
from .compare import (equal, greater, greater_equal, less, less_equal, logical_and, logical_not,
                      logical_or, not_equal)
from .reduce import (BroadcastTo, Max, Mean, Min, Sum, SumTo, Var, argmax, argmin, max, mean, min,
                     std, sum, sum_to, var)
from .shape import (Concatenate, GetItem, Maximum, Minimum, Reshape, ScatterAdd, Squeeze, Stack,
                    SwapAxes, Transpose, Where, broadcast_to, concatenate, flatten, getitem,
                    maximum, minimum, raw_index, reshape, scatter_add, squeeze, stack, swapaxes,
                    transpose, unsqueeze, where)
from .unary import (Abs, AsType, Clip, Clone, Exp, Log, ReLU, Sigmoid, Sqrt, Tanh, ToDevice, abs,
                    astype, clip, clone, exp, log, relu, sigmoid, sqrt, tanh, to_device)

__all__ = [name for name in dir() if not name.startswith("_")]
