"""2-D convolution as im2col + one matrix product, and its two gradient ops.

For an input ``x`` (N, C, H, W) and a kernel ``w`` (F, C, kh, kw), im2col copies
every receptive field into the columns of ``cols`` (N, C*kh*kw, Ho*Wo); then
``y = w.reshape(F, -1) @ cols`` is the whole convolution, (N, F, Ho*Wo), already
in (N, F, Ho, Wo) order.

The VJP has two parts, each an op of its own so that it can be differentiated
again (double backward):

* `Conv2dInputGrad`: ``dL/dx = col2im(w.T @ g)`` (a transposed convolution);
* `Conv2dWeightGrad`: ``dL/dw = sum over n of g[n] @ cols[n].T``.

The three ops are each other's VJPs, so the set is closed under differentiation.
"""

from __future__ import annotations

from typing import Any

from ..autograd.function import Function, dual
from ..backend import xp_of
from ..errors import ShapeError
from ..tensor import Tensor
from ._util import as_tensor, check_float, check_ndim, crop_spatial, out_size, pad_spatial, pair


def _as_strided(x: Any) -> Any:
    xp = xp_of(x)
    return xp.lib.stride_tricks.as_strided


def im2col(x: Any, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> Any:
    """The receptive fields of ``x`` (N, C, H, W) as columns: (N, C*kh*kw, Ho*Wo)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = out_size(h, kh, sh, padding[0]), out_size(w, kw, sw, padding[1])
    xp_ = pad_spatial(x, padding)
    s = xp_.strides
    # A view (N, C, kh, kw, Ho, Wo): element [n, c, a, b, i, j] is x[n, c, i*sh + a, j*sw + b].
    view = _as_strided(xp_)(xp_, (n, c, kh, kw, ho, wo),
                            (s[0], s[1], s[2], s[3], s[2] * sh, s[3] * sw))
    return view.reshape(n, c * kh * kw, ho * wo)  # the one copy


def col2im(cols: Any, x_shape: tuple, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> Any:
    """The adjoint of `im2col`: add every column entry back onto its pixel."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    out = xp_of(cols).zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    # One strided add per kernel offset; overlapping windows accumulate.
    for a in range(kh):
        for b in range(kw):
            out[:, :, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw] += cols[:, :, a, b]
    return crop_spatial(out, padding)


def _weight_grad(g3: Any, cols: Any, w_shape: tuple) -> Any:
    # (N, F, L) @ (N, L, CKK) is N small products; summing them is cheaper than
    # transposing both operands into one long product.
    return (g3 @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(w_shape)


def _bias_grad(g: Any) -> Any:
    if isinstance(g, Tensor):
        return g.sum(axis=(0, 2, 3))
    n, f = g.shape[:2]
    return (g.reshape(n, f, -1) @ xp_of(g).ones(g.shape[2] * g.shape[3], dtype=g.dtype)).sum(
        axis=0)


class Conv2d(Function):
    """Cross-correlation of ``x`` (N, C, H, W) with ``w`` (F, C, kh, kw), plus bias (F,)."""

    array_backward = True
    op_name = "conv2d"

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, b: Any = None, stride: tuple = (1, 1),
                padding: tuple = (0, 0)) -> Any:
        n = x.shape[0]
        f, _, kh, kw = w.shape
        ho = out_size(x.shape[2], kh, stride[0], padding[0])
        wo = out_size(x.shape[3], kw, stride[1], padding[1])
        cols = im2col(x, (kh, kw), stride, padding)
        y = w.reshape(f, -1) @ cols  # (N, F, Ho*Wo): the one GEMM (batched over N)
        if b is not None:
            y += b.reshape(f, 1)
        ctx.save_for_backward(x, w, cols)
        return y.reshape(n, f, ho, wo)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        x, w, cols = ctx.saved_tensors
        e = ctx.needs_input_grad
        stride, padding = ctx.params.get("stride", (1, 1)), ctx.params.get("padding", (0, 0))
        kernel = tuple(w.shape[2:])
        if isinstance(g, Tensor):  # create_graph: gradients as recorded, differentiable ops
            gx = conv2d_input_grad(g, w, x_shape=tuple(x.shape), stride=stride,
                                   padding=padding) if e[0] else None
            gw = conv2d_weight_grad(x, g, kernel=kernel, stride=stride,
                                    padding=padding) if e[1] else None
        else:  # plain backward: reuse the columns saved by the forward pass
            n, f = g.shape[:2]
            g3 = g.reshape(n, f, -1)
            gx = col2im(w.reshape(f, -1).T @ g3, x.shape, kernel, stride,
                        padding) if e[0] else None
            gw = _weight_grad(g3, cols, w.shape) if e[1] else None
        if len(e) == 2:
            return gx, gw
        return gx, gw, _bias_grad(g) if e[2] else None


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
        n, f = g.shape[:2]
        ctx.save_for_backward(g, w)
        return col2im(w.reshape(f, -1).T @ g.reshape(n, f, -1), x_shape, tuple(w.shape[2:]),
                      stride, padding)

    @staticmethod
    def backward(ctx: Any, gg: Any) -> Any:
        g, w = ctx.saved_tensors
        e, p = ctx.needs_input_grad, ctx.params
        return (conv2d_raw(gg, w, stride=p["stride"], padding=p["padding"])
                if e[0] else None,
                conv2d_weight_grad(gg, g, kernel=tuple(w.shape[2:]), stride=p["stride"],
                                   padding=p["padding"]) if e[1] else None)


class Conv2dWeightGrad(Function):
    """``dL/dw`` of a convolution: ``sum_n g[n] @ im2col(x)[n].T``, shape (F, C, kh, kw)."""

    array_backward = True
    op_name = "conv2d_weight_grad"

    @staticmethod
    def forward(ctx: Any, x: Any, g: Any, kernel: tuple, stride: tuple, padding: tuple) -> Any:
        n, f = g.shape[:2]
        ctx.save_for_backward(x, g)
        cols = im2col(x, kernel, stride, padding)
        return _weight_grad(g.reshape(n, f, -1), cols, (f, x.shape[1]) + tuple(kernel))

    @staticmethod
    def backward(ctx: Any, gw: Any) -> Any:
        x, g = ctx.saved_tensors
        e, p = ctx.needs_input_grad, ctx.params
        return (conv2d_input_grad(g, gw, x_shape=tuple(x.shape), stride=p["stride"],
                                  padding=p["padding"]) if e[0] else None,
                conv2d_raw(x, gw, stride=p["stride"], padding=p["padding"])
                if e[1] else None)


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
