"""The affine map of a fully connected layer, as one fused op: ``y = x @ W.T + b``."""

from __future__ import annotations

from typing import Any

from ..autograd.function import Function
from ..backend import xp_of
from ..errors import ShapeError
from ..tensor import Tensor
from ._util import as_tensor, check_float

_ONES: dict = {}


def sum_rows(g: Any) -> Any:
    """``g.sum(axis=0)`` for a 2-D array or Tensor.

    On arrays it is a vector-matrix product with a cached row of ones: BLAS does
    a column sum of a tall matrix about twice as fast as NumPy's reduction.
    """
    if isinstance(g, Tensor):
        return g.sum(axis=0)
    key = (type(g), g.shape[0], g.dtype)
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) > 64:
            _ONES.clear()
        ones = _ONES[key] = xp_of(g).ones(g.shape[0], dtype=g.dtype)
    return ones @ g


class Linear(Function):
    """``y = x @ W.T + b`` for ``x`` of shape (..., in), ``W`` (out, in), ``b`` (out,).

    VJP, with ``g = dL/dy`` flattened to (M, out) and ``x`` to (M, in):
    ``dL/dx = g @ W``, ``dL/dW = g.T @ x``, ``dL/db = g`` summed over rows.
    Each is a matrix product, so the backward is again differentiable.
    """

    array_backward = True
    op_name = "linear"

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, b: Any = None) -> Any:
        y = x @ w.T
        if b is not None:
            y += b
        ctx.save_for_backward(x, w)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        x, w = ctx.saved_tensors
        e = ctx.needs_input_grad
        gx = g @ w if e[0] else None
        if x.ndim != 2:  # fold every leading axis into the rows of one matrix
            g = g.reshape(-1, w.shape[0])
            x = x.reshape(-1, w.shape[1])
        gw = g.T @ x if e[1] else None
        if len(e) == 2:
            return gx, gw
        if not e[2]:
            return gx, gw, None
        ones = _ONES.get((type(g), g.shape[0], g.dtype))  # the common case of sum_rows, inline
        return gx, gw, ones @ g if ones is not None else sum_rows(g)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias``: the layer of `minigrad.nn.Linear`.

    ``x`` is (..., in_features), ``weight`` (out_features, in_features) and
    ``bias`` (out_features,) or None. The result is (..., out_features).
    """
    x = as_tensor(x, "linear")
    if weight.ndim != 2:
        raise ShapeError(f"linear: weight must be 2-D (out_features, in_features), got shape "
                         f"{tuple(weight.shape)}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear: input of shape {tuple(x.shape)} does not fit weight of shape "
                         f"{tuple(weight.shape)}; expected the input's last dimension to be "
                         f"{weight.shape[1]}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ShapeError(f"linear: bias must have shape ({weight.shape[0]},) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)}")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        check_float("linear", input=x, weight=weight, bias=bias)
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)
