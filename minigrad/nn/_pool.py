"""Max and average pooling over (N, C, H, W) images.

Two ways to visit the windows:

* tiled: when the windows tile the image exactly (stride == kernel, no
  padding, sizes divisible), pooling is separable: pool each row along W
  through a reshape to (rows, Wo, kw), then the result along H. Every step is a
  few elementwise ops on long, nearly contiguous runs, the fastest NumPy can do.
* windows: otherwise, one strided view of the (padded) input per kernel offset
  ``(a, b)``: ``x[:, :, a::sh, b::sw]`` (cut to Ho x Wo); reductions combine the
  kh*kw views elementwise, and gradients are written back through the same views.

Max pooling remembers which element won (the first one in row-major order on
ties, as in PyTorch): ``sel`` is a boolean "the second one won" for two
candidates, otherwise the winner's index. Its VJP (`MaxUnpool2d`) sends each
gradient to its window's winner; that op's VJP (`MaxGather2d`) reads values at
the winners, and vice versa, so both orders of differentiation are covered.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd.function import Function, dual
from ..backend import xp_of
from ..errors import ShapeError
from ..tensor import Tensor
from ._util import as_tensor, check_float, check_ndim, crop_spatial, out_size, pad_spatial, pair
from ._util import raw as _raw


# ----------------------------------------------------------------- building blocks
def _tiles(x_shape: tuple, kernel: tuple, stride: tuple, padding: tuple) -> bool:
    """Whether the windows tile the image exactly (the separable fast path applies)."""
    return (kernel == stride and padding == (0, 0) and x_shape[2] % kernel[0] == 0
            and x_shape[3] % kernel[1] == 0)


def _windows(xp_: Any, kernel: tuple, stride: tuple, out_hw: tuple) -> list:
    """One strided view per kernel offset: view ``a*kw + b`` holds ``x[.., i*sh+a, j*sw+b]``."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    return [xp_[:, :, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw]
            for a in range(kh) for b in range(kw)]


def _running_max(views: list) -> tuple[Any, Any]:
    """Elementwise max of equally shaped arrays and which one won (first on ties)."""
    if len(views) == 1:
        return views[0].copy(), None
    if len(views) == 2:
        a, b = views
        return np.maximum(a, b), b > a
    xp = xp_of(views[0])
    m = views[0].copy()
    idx = xp.zeros(m.shape, dtype=np.uint8 if len(views) < 256 else np.int32)
    for j, v in enumerate(views[1:], 1):
        better = v > m  # strict, so an earlier equal value keeps the win
        np.maximum(m, v, out=m)
        # where(), not idx[better] = j: a masked assignment on the GPU counts the mask's
        # True values on the host first, which waits for the device
        idx = xp.where(better, idx.dtype.type(j), idx)
    return m, idx


def _scatter(g: Any, sel: Any, views: list, accumulate: bool) -> None:
    """Write (or add) ``g`` into the view that won each position, zeros into the others."""
    if len(views) == 1:
        if accumulate:
            views[0] += g
        else:
            views[0][...] = g
    elif len(views) == 2:
        if accumulate:
            views[1] += g * sel
            views[0] += g * ~sel
        else:
            np.multiply(g, sel, out=views[1])
            np.subtract(g, views[1], out=views[0])  # g where the first one won, else 0
    else:
        for j, v in enumerate(views):
            if accumulate:
                v += g * (sel == j)
            else:
                np.multiply(g, sel == j, out=v)


def _pick(views: list, sel: Any) -> Any:
    """The value of the view that won at each position (the adjoint of `_scatter`)."""
    if len(views) == 1:
        return views[0].copy()
    xp = xp_of(views[0])
    if len(views) == 2:
        return xp.where(sel, views[1], views[0])
    out = views[0].copy()
    for j, v in enumerate(views[1:], 1):
        xp.copyto(out, v, where=sel == j)
    return out


def _sum_of(views: list) -> Any:
    """The elementwise sum of equally shaped arrays, as one new array (no other temporaries)."""
    if len(views) == 1:
        return views[0].copy()
    out = views[0] + views[1]
    for v in views[2:]:
        out += v
    return out


def _geometry(x_shape: tuple, kernel: tuple, stride: tuple, padding: tuple) -> tuple:
    n, c, h, w = x_shape
    return n, c, h, w, out_size(h, kernel[0], stride[0], padding[0]), out_size(
        w, kernel[1], stride[1], padding[1])


def _note_geometry(ctx: Any, x_shape: tuple, kernel: tuple, stride: tuple,
                   padding: tuple) -> tuple:
    """Keep the window's geometry and the input's shape on ``ctx`` for backward; return
    ``_geometry``."""
    ctx.geometry = {"kernel": kernel, "stride": stride, "padding": padding}
    ctx.x_shape = x_shape
    return _geometry(x_shape, kernel, stride, padding)


# ----------------------------------------------------------------- max pooling
class MaxPool2d(Function):
    """The maximum of each kh x kw window (stride sh, sw; padding counts as -inf)."""

    array_backward = True
    op_name = "max_pool2d"

    @staticmethod
    def forward(ctx: Any, x: Any, kernel: tuple, stride: tuple, padding: tuple) -> Any:
        n, c, h, w, ho, wo = _note_geometry(ctx, x.shape, kernel, stride, padding)
        if _tiles(x.shape, kernel, stride, padding):
            (kh, kw) = kernel
            x3 = x.reshape(n * c * h, wo, kw)
            m, sel_w = _running_max([x3[..., j] for j in range(kw)])  # along W
            m3 = m.reshape(n * c * ho, kh, wo)
            y, sel_h = _running_max([m3[:, i] for i in range(kh)])  # then along H
            ctx.save_for_backward(sel_w, sel_h)
            return y.reshape(n, c, ho, wo)
        xp_ = pad_spatial(x, padding, value=-np.inf)
        y, sel = _running_max(_windows(xp_, kernel, stride, (ho, wo)))
        ctx.save_for_backward(sel, None)
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        sel_a, sel_b = ctx.saved_tensors
        return max_unpool2d(g, sel_a, sel_b, x_shape=tuple(ctx.x_shape), **ctx.geometry)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        # Piecewise linear: each window's tangent is its winner's
        return _max_gather2d(t, *ctx.saved, **ctx.params)


class MaxUnpool2d(Function):
    """The VJP of max pooling: each window's gradient goes to its winner, zeros elsewhere."""

    array_backward = True
    op_name = "max_unpool2d"

    @staticmethod
    def forward(ctx: Any, g: Any, sel_a: Any, sel_b: Any, x_shape: tuple, kernel: tuple,
                stride: tuple, padding: tuple) -> Any:
        ctx.geometry = {"kernel": kernel, "stride": stride, "padding": padding}
        n, c, h, w, ho, wo = _geometry(x_shape, kernel, stride, padding)
        xp = xp_of(g)
        ctx.save_for_backward(sel_a, sel_b)
        if _tiles(x_shape, kernel, stride, padding):
            (kh, kw) = kernel
            gm = xp.empty((n * c * ho, kh, wo), dtype=g.dtype)
            _scatter(g.reshape(n * c * ho, wo), sel_b, [gm[:, i] for i in range(kh)], False)
            gx = xp.empty((n * c * h, wo, kw), dtype=g.dtype)
            _scatter(gm.reshape(n * c * h, wo), sel_a, [gx[..., j] for j in range(kw)], False)
            return gx.reshape(x_shape)
        gpad = xp.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=g.dtype)
        overlap = stride[0] < kernel[0] or stride[1] < kernel[1]
        _scatter(g, sel_a, _windows(gpad, kernel, stride, (ho, wo)), accumulate=overlap)
        return crop_spatial(gpad, padding)

    @staticmethod
    def backward(ctx: Any, gg: Any) -> Any:
        sel_a, sel_b = ctx.saved_tensors
        return max_gather2d(gg, sel_a, sel_b, **ctx.geometry), None, None

    @staticmethod
    def jvp(ctx: Any, tg: Any, ta: Any, tb: Any) -> Any:
        return _max_unpool2d(tg, *ctx.primals[1:], **ctx.params)


class MaxGather2d(Function):
    """The adjoint of `MaxUnpool2d`: read each window's winner from ``v`` (N, C, H, W)."""

    array_backward = True
    op_name = "max_gather2d"

    @staticmethod
    def forward(ctx: Any, v: Any, sel_a: Any, sel_b: Any, kernel: tuple, stride: tuple,
                padding: tuple) -> Any:
        ctx.geometry = {"kernel": kernel, "stride": stride, "padding": padding}
        n, c, h, w, ho, wo = _geometry(v.shape, kernel, stride, padding)
        ctx.x_shape = v.shape
        ctx.save_for_backward(sel_a, sel_b)
        if _tiles(v.shape, kernel, stride, padding):
            (kh, kw) = kernel
            v3 = v.reshape(n * c * h, wo, kw)
            m = _pick([v3[..., j] for j in range(kw)], sel_a)
            m3 = m.reshape(n * c * ho, kh, wo)
            return _pick([m3[:, i] for i in range(kh)], sel_b).reshape(n, c, ho, wo)
        vp = pad_spatial(v, padding)
        return _pick(_windows(vp, kernel, stride, (ho, wo)), sel_a)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        sel_a, sel_b = ctx.saved_tensors
        return (max_unpool2d(g, sel_a, sel_b, x_shape=tuple(ctx.x_shape), **ctx.geometry),
                None, None)

    @staticmethod
    def jvp(ctx: Any, tv: Any, ta: Any, tb: Any) -> Any:
        return _max_gather2d(tv, *ctx.primals[1:], **ctx.params)


_max_unpool2d = dual(MaxUnpool2d)
_max_gather2d = dual(MaxGather2d)


def max_unpool2d(g: Any, sel_a: Any, sel_b: Any, **params: Any) -> Any:
    # The winners are constants: hand them over as plain arrays, never as graph inputs.
    return _max_unpool2d(g, _raw(sel_a), _raw(sel_b), **params)


def max_gather2d(v: Any, sel_a: Any, sel_b: Any, **params: Any) -> Any:
    return _max_gather2d(v, _raw(sel_a), _raw(sel_b), **params)


# ----------------------------------------------------------------- average pooling
class AvgPool2d(Function):
    """The mean of each kh x kw window (padding counts as zeros in the mean)."""

    array_backward = True
    op_name = "avg_pool2d"

    @staticmethod
    def forward(ctx: Any, x: Any, kernel: tuple, stride: tuple, padding: tuple) -> Any:
        n, c, h, w, ho, wo = _note_geometry(ctx, x.shape, kernel, stride, padding)
        if _tiles(x.shape, kernel, stride, padding):
            (kh, kw) = kernel
            x3 = x.reshape(n * c * h, wo, kw)
            m3 = _sum_of([x3[..., j] for j in range(kw)]).reshape(n * c * ho, kh, wo)  # along W
            y = _sum_of([m3[:, i] for i in range(kh)]).reshape(n, c, ho, wo)  # then along H
        else:
            y = _sum_of(_windows(pad_spatial(x, padding), kernel, stride, (ho, wo)))
        y *= 1.0 / (kernel[0] * kernel[1])  # one scaling of the sums, in place
        return y

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return avg_unpool2d(g, x_shape=tuple(ctx.x_shape), **ctx.geometry)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return avg_pool2d_raw(t, **ctx.params)


class AvgUnpool2d(Function):
    """The VJP of average pooling: spread ``g / (kh*kw)`` evenly over each window."""

    array_backward = True
    op_name = "avg_unpool2d"

    @staticmethod
    def forward(ctx: Any, g: Any, x_shape: tuple, kernel: tuple, stride: tuple,
                padding: tuple) -> Any:
        ctx.geometry = {"kernel": kernel, "stride": stride, "padding": padding}
        n, c, h, w, ho, wo = _geometry(x_shape, kernel, stride, padding)
        xp = xp_of(g)
        scale = 1.0 / (kernel[0] * kernel[1])
        if _tiles(x_shape, kernel, stride, padding):
            # Scale g into the first row of each window (kw strided writes), then copy
            # that row to the others (contiguous runs): faster than one copy of a
            # broadcast view, whose innermost loop would be kw elements long.
            (kh, kw) = kernel
            gx = xp.empty((n * c * ho, kh, wo, kw), dtype=g.dtype)
            first = gx[:, 0]
            g2 = g.reshape(n * c * ho, wo)
            for j in range(kw):
                xp.multiply(g2, scale, out=first[..., j])
            for i in range(1, kh):
                gx[:, i] = first
            return gx.reshape(x_shape)
        gs = g * scale
        gpad = xp.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]), dtype=g.dtype)
        for v in _windows(gpad, kernel, stride, (ho, wo)):
            v += gs
        return crop_spatial(gpad, padding)

    @staticmethod
    def backward(ctx: Any, gg: Any) -> Any:
        return avg_pool2d_raw(gg, **ctx.geometry)

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return avg_unpool2d(t, **ctx.params)


avg_pool2d_raw = dual(AvgPool2d)
avg_unpool2d = dual(AvgUnpool2d)


# ----------------------------------------------------------------- public functions
def _pool_args(op: str, x: Any, kernel_size: Any, stride: Any, padding: Any) -> tuple:
    x = as_tensor(x, op)
    k = pair(op, kernel_size, "kernel_size", 1)
    s = k if stride is None else pair(op, stride, "stride", 1)
    p = pair(op, padding, "padding", 0)
    check_ndim(op, x, 4, "(N, C, H, W)")
    check_float(op, input=x)
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise ShapeError(f"{op}: padding {p} must be at most half the kernel size {k} "
                         f"(input shape {tuple(x.shape)})")
    hp, wp = x.shape[2] + 2 * p[0], x.shape[3] + 2 * p[1]
    if hp < k[0] or wp < k[1]:
        raise ShapeError(f"{op}: kernel {k[0]}x{k[1]} is larger than the padded input "
                         f"{hp}x{wp} (input shape {tuple(x.shape)}, padding {p})")
    return x, k, s, p


def max_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """The maximum over each ``kernel_size`` window of ``x`` (N, C, H, W).

    ``stride`` defaults to ``kernel_size`` (non-overlapping windows). The
    gradient of each window goes to its maximum (the first one, on ties).
    """
    x, k, s, p = _pool_args("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d.apply(x, kernel=k, stride=s, padding=p)


def avg_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """The mean over each ``kernel_size`` window of ``x`` (N, C, H, W).

    ``stride`` defaults to ``kernel_size``; zero padding is counted in the mean,
    as PyTorch does by default.
    """
    x, k, s, p = _pool_args("avg_pool2d", x, kernel_size, stride, padding)
    return AvgPool2d.apply(x, kernel=k, stride=s, padding=p)
