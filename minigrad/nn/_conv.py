"""2-D convolution as im2col + one matrix product, and its two gradient ops.

For an input ``x`` (N, C, H, W) and a kernel ``w`` (F, C, kh, kw), im2col copies
every receptive field into the columns of ``cols`` (N, C*kh*kw, Ho*Wo); then
``y = w.reshape(F, -1) @ cols`` is the whole convolution, (N, F, Ho*Wo), already
in (N, F, Ho, Wo) order. The array work, and the choices that keep it to few
passes over memory (the columns are built a slice of the batch at a time and never
kept for backward), live in `_conv_arrays`.

The VJP has two parts, each an op of its own so that it can be differentiated
again (double backward):

* `Conv2dInputGrad`: ``dL/dx = col2im(w.T @ g)`` (a transposed convolution);
* `Conv2dWeightGrad`: ``dL/dw = sum over n of g[n] @ cols[n].T``.

The three ops are each other's VJPs, so the set is closed under differentiation.
"""

from __future__ import annotations

from typing import Any

from ..autograd.function import Function, dual
from ..autograd.forward import ZERO, linear
from ..errors import ShapeError
from ..tensor import Tensor
from . import _conv_arrays as ca
from ._util import as_tensor, check_float, check_ndim, pair


class Conv2d(Function):
    """Cross-correlation of ``x`` (N, C, H, W) with ``w`` (F, C, kh, kw), plus bias (F,)."""

    array_backward = True
    op_name = "conv2d"

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, b: Any = None, stride: tuple = (1, 1),
                padding: tuple = (0, 0)) -> Any:
        ctx.stride, ctx.padding, ctx.x_shape = stride, padding, tuple(x.shape)
        ctx.save_for_backward(x, w)
        return ca.conv_forward(x, w, b, stride, padding)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        stride, padding = ctx.stride, ctx.padding
        if isinstance(g, Tensor):  # create_graph: gradients as recorded, differentiable ops
            gx = conv2d_input_grad(g, w, x_shape=ctx.x_shape, stride=stride,
                                   padding=padding) if need[0] else None
            gw = conv2d_weight_grad(x, g, kernel=tuple(w.shape[2:]), stride=stride,
                                    padding=padding) if need[1] else None
            gb = g.sum(axis=(0, 2, 3)) if len(need) > 2 and need[2] else None
        else:  # plain backward, on arrays
            gx, gw = ca.conv_backward(x, w, g, stride, padding, need[0], need[1])
            gb = ca.bias_grad(g) if len(need) > 2 and need[2] else None
        return (gx, gw) if len(need) == 2 else (gx, gw, gb)

    @staticmethod
    def jvp(ctx: Any, tx: Any, tw: Any, tb: Any = ZERO) -> Any:
        # Bilinear in (x, w), plus the bias: conv(dx, w) + conv(x, dw) + db
        x, w = ctx.primals[:2]
        p = {"stride": ctx.params.get("stride", (1, 1)),
             "padding": ctx.params.get("padding", (0, 0))}
        return (linear(tx, lambda t: conv2d_raw(t, w, **p))
                + linear(tw, lambda t: conv2d_raw(x, t, **p))
                + linear(tb, lambda t: t.reshape(1, -1, 1, 1)))


class Conv2dInputGrad(Function):
    """``dL/dx`` of a convolution: ``col2im(w.T @ g)`` for ``g`` (N, F, Ho, Wo).

    This is a transposed convolution of ``g`` with ``w``. It is linear in ``g``
    and in ``w``; its VJPs are a convolution (for ``g``) and a weight gradient
    (for ``w``).
    """

    array_backward = True
    op_name = "conv2d_input_grad"

    @staticmethod
    def forward(ctx: Any, g: Any, w: Any, x_shape: tuple, stride: tuple,
                padding: tuple) -> Any:
        ctx.stride, ctx.padding = stride, padding
        ctx.save_for_backward(g, w)
        return ca.input_grad(g, w, tuple(x_shape), stride, padding)

    @staticmethod
    def backward(ctx: Any, gg: Any) -> Any:
        g, w = ctx.saved_tensors
        need, stride, padding = ctx.needs_input_grad, ctx.stride, ctx.padding
        return (conv2d_raw(gg, w, stride=stride, padding=padding) if need[0] else None,
                conv2d_weight_grad(gg, g, kernel=tuple(w.shape[2:]), stride=stride,
                                   padding=padding) if need[1] else None)

    @staticmethod
    def jvp(ctx: Any, tg: Any, tw: Any) -> Any:
        g, w = ctx.primals
        return (linear(tg, lambda t: conv2d_input_grad(t, w, **ctx.params))
                + linear(tw, lambda t: conv2d_input_grad(g, t, **ctx.params)))


class Conv2dWeightGrad(Function):
    """``dL/dw`` of a convolution: ``sum_n g[n] @ im2col(x)[n].T``, shape (F, C, kh, kw)."""

    array_backward = True
    op_name = "conv2d_weight_grad"

    @staticmethod
    def forward(ctx: Any, x: Any, g: Any, kernel: tuple, stride: tuple, padding: tuple) -> Any:
        ctx.stride, ctx.padding, ctx.x_shape = stride, padding, tuple(x.shape)
        ctx.save_for_backward(x, g)
        return ca.weight_grad(x, g, tuple(kernel), stride, padding)

    @staticmethod
    def backward(ctx: Any, gw: Any) -> Any:
        x, g = ctx.saved_tensors
        need, stride, padding = ctx.needs_input_grad, ctx.stride, ctx.padding
        return (conv2d_input_grad(g, gw, x_shape=ctx.x_shape, stride=stride,
                                  padding=padding) if need[0] else None,
                conv2d_raw(x, gw, stride=stride, padding=padding) if need[1] else None)

    @staticmethod
    def jvp(ctx: Any, tx: Any, tg: Any) -> Any:
        x, g = ctx.primals
        return (linear(tx, lambda t: conv2d_weight_grad(t, g, **ctx.params))
                + linear(tg, lambda t: conv2d_weight_grad(x, t, **ctx.params)))


conv2d_raw = dual(Conv2d)
conv2d_input_grad = dual(Conv2dInputGrad)
conv2d_weight_grad = dual(Conv2dWeightGrad)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch) of a batch of images.

    ``x`` is (N, C, H, W), ``weight`` (F, C, kh, kw), ``bias`` (F,) or None;
    ``stride`` and ``padding`` (zeros) are ints or (height, width) pairs. The
    result is (N, F, Ho, Wo) with ``Ho = (H + 2*padding - kh) // stride + 1``.
    """
    x = as_tensor(x, "conv2d")
    st = pair("conv2d", stride, "stride", 1)
    pd = pair("conv2d", padding, "padding", 0)
    check_ndim("conv2d", x, 4, "(N, C, H, W)")
    if weight.ndim != 4:
        raise ShapeError(f"conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), got "
                         f"shape {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ShapeError(f"conv2d: input has {x.shape[1]} channels (shape {tuple(x.shape)}) but "
                         f"weight of shape {tuple(weight.shape)} expects {weight.shape[1]}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ShapeError(f"conv2d: bias must have shape ({weight.shape[0]},) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)}")
    hp, wp = x.shape[2] + 2 * pd[0], x.shape[3] + 2 * pd[1]
    if hp < weight.shape[2] or wp < weight.shape[3]:
        raise ShapeError(f"conv2d: kernel {weight.shape[2]}x{weight.shape[3]} is larger than the "
                         f"padded input {hp}x{wp} (input shape {tuple(x.shape)}, padding {pd})")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        check_float("conv2d", input=x, weight=weight, bias=bias)
    if bias is None:
        return Conv2d.apply(x, weight, stride=st, padding=pd)
    return Conv2d.apply(x, weight, bias, stride=st, padding=pd)
