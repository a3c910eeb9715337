"""Convolution on raw arrays: the forward pass and both gradients, with few passes over memory.

Everything here takes and returns NumPy (or CuPy) arrays; `_conv.py` wraps it in
differentiable ops. Shapes: input ``x`` (N, C, H, W), kernel ``w`` (F, C, kh, kw),
output and its gradient ``g`` (N, F, Ho, Wo); ``K = C*kh*kw`` and ``L = Ho*Wo``.

How each pass is laid out, and why:

* forward: im2col is a strided *view* (N, C, kh, kw, Ho, Wo) of the padded input
  that costs nothing; one reshape to ``cols`` (N, K, L) copies it into the layout a
  GEMM needs (a BLAS matrix cannot have overlapping rows, so this copy cannot be
  avoided in NumPy). ``w (F, K) @ cols`` is then one batched GEMM whose result is
  already (N, F, Ho, Wo).
* weight gradient: ``sum_n (cols[n] @ g[n].T).T`` with the columns saved by the
  forward pass. N small products beat one long product over N*L (measured: the long
  inner dimension makes OpenBLAS's single call up to 3x slower here).
* input gradient, two ways, chosen by which touches less memory:

  - col2im: ``gcols = w.T @ g`` (N, K, L), then one strided add per kernel offset
    (kh*kw adds, never a scatter). With stride 1 the adds run in "full-width"
    coordinates: the gradient is padded to the input's row length, so that each
    offset's block is a contiguous run of a flattened image instead of Ho short
    rows, which NumPy adds several times faster.
  - transposed convolution as a convolution: with stride 1 the input gradient is
    the convolution of the gradient, padded by ``k-1-p``, with the kernel rotated by
    180 degrees and its channel axes swapped. That is one im2col copy and one GEMM
    that writes the result in place, with no adds; it wins when ``F*H*W`` is
    small next to ``C*Ho*Wo`` (e.g. "same" 3x3 convolutions with F == C).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import xp_of
from ._util import crop_spatial, out_size, pad_spatial


#: How many bytes of im2col columns the CPU path builds at a time. The columns of a
#: whole batch are several times the input's size; building them a slice of the batch
#: at a time into one reused buffer that stays in a core's L2 cache, and consuming
#: each slice right away, saves writing them all to memory and reading them back
#: (measured: 15-20% of a small CNN's training step).
CHUNK_BYTES = 1 << 20


def _as_strided(x: Any) -> Any:
    return xp_of(x).lib.stride_tricks.as_strided


def window_view(x: Any, kernel: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int]) -> Any:
    """A view (N, C, kh, kw, Ho, Wo) of ``x``: element [n, c, a, b, i, j] is the padded
    ``x[n, c, i*sh + a, j*sw + b]`` (no copy beyond the padding)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    ho, wo = out_size(h, kh, sh, padding[0]), out_size(w, kw, sw, padding[1])
    xp_ = pad_spatial(x, padding)
    s = xp_.strides
    return _as_strided(xp_)(xp_, (n, c, kh, kw, ho, wo),
                            (s[0], s[1], s[2], s[3], s[2] * sh, s[3] * sw))


def im2col(x: Any, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> Any:
    """The receptive fields of ``x`` (N, C, H, W) as columns: (N, C*kh*kw, Ho*Wo)."""
    v = window_view(x, kernel, stride, padding)
    n, c, kh, kw, ho, wo = v.shape
    return v.reshape(n, c * kh * kw, ho * wo)  # the one copy


def _column_slices(x: Any, kernel: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int]) -> Any:
    """Yield ``(start, stop, cols)``: the im2col columns (m, K, L) of images start:stop.

    On the CPU each slice is built in one reused buffer of about `CHUNK_BYTES`, so it is
    overwritten by the next one: use it before asking for the next. A pointwise (1x1,
    stride 1, unpadded) convolution needs no columns: the input is its own. On a GPU
    the whole batch is one slice (big kernels suit it better than many small ones).
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    if kernel == (1, 1) and stride == (1, 1) and padding == (0, 0):
        yield 0, n, x.reshape(n, c, h * w)
        return
    v = window_view(x, kernel, stride, padding)
    k, length = c * kh * kw, v.shape[4] * v.shape[5]
    xp = xp_of(x)
    if xp is not np:
        yield 0, n, v.reshape(n, k, length)
        return
    step = max(1, min(n, CHUNK_BYTES // (k * length * x.itemsize)))
    buf = np.empty((step,) + v.shape[1:], dtype=x.dtype)
    for i in range(0, n, step):
        m = min(step, n - i)
        np.copyto(buf[:m], v[i:i + m])
        yield i, i + m, buf[:m].reshape(m, k, length)


def conv_forward(x: Any, w: Any, b: Any, stride: tuple[int, int],
                 padding: tuple[int, int]) -> Any:
    """The convolution (N, F, Ho, Wo) of ``x`` with ``w``, plus the bias ``b`` (or None)."""
    n = x.shape[0]
    f, _, kh, kw = w.shape
    ho = out_size(x.shape[2], kh, stride[0], padding[0])
    wo = out_size(x.shape[3], kw, stride[1], padding[1])
    xp = xp_of(x)
    y = xp.empty((n, f, ho * wo), dtype=x.dtype)
    wf = w.reshape(f, -1)
    for i, j, cols in _column_slices(x, (kh, kw), stride, padding):
        xp.matmul(wf, cols, out=y[i:j])  # one batched GEMM per slice, straight into y
    if b is not None:
        y += b.reshape(f, 1)
    return y.reshape(n, f, ho, wo)


def weight_grad(x: Any, g: Any, kernel: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int]) -> Any:
    """``dL/dw`` (F, C, kh, kw) from the input ``x`` and the output gradient ``g``.

    ``sum_n (cols[n] @ g[n].T).T``, with the columns rebuilt slice by slice (cheaper
    than keeping the whole batch's from the forward pass: see `CHUNK_BYTES`).
    ``cols[n] @ g[n].T`` (K, F) rather than ``g[n] @ cols[n].T`` (F, K): the same
    products, but OpenBLAS runs this form 1.5-1.7x faster at these sizes.
    """
    n, f = g.shape[:2]
    c = x.shape[1]
    g3 = g.reshape(n, f, -1)
    xp = xp_of(g)
    acc = xp.zeros((c * kernel[0] * kernel[1], f), dtype=g.dtype)
    for i, j, cols in _column_slices(x, kernel, stride, padding):
        acc += (cols @ g3[i:j].transpose(0, 2, 1)).sum(axis=0)
    return acc.T.reshape((f, c) + tuple(kernel))


def bias_grad(g: Any) -> Any:
    """``dL/db`` (F,): ``g`` summed over the batch and both spatial axes."""
    n, f = g.shape[:2]
    # A GEMV against ones reads g once, faster than a reduction over two axes.
    ones = xp_of(g).ones(g.shape[2] * g.shape[3], dtype=g.dtype)
    return (g.reshape(n, f, -1) @ ones).sum(axis=0)


# ----------------------------------------------------------------- input gradient
def input_grad(g: Any, w: Any, x_shape: tuple, stride: tuple[int, int],
               padding: tuple[int, int]) -> Any:
    """``dL/dx`` (N, C, H, W) of a convolution, for ``g`` (N, F, Ho, Wo)."""
    f, c, kh, kw = w.shape
    ho, wo = g.shape[2:]
    h, wd = x_shape[2:]
    if stride == (1, 1):
        if padding[0] < kh and padding[1] < kw and f * h * wd <= 2 * c * ho * wo:
            return _input_grad_as_conv(g, w, padding)
        return _col2im_full_width(g, w, x_shape, padding)
    gcols = w.reshape(f, -1).T @ g.reshape(g.shape[0], f, -1)
    return col2im(gcols, x_shape, (kh, kw), stride, padding)


def _input_grad_as_conv(g: Any, w: Any, padding: tuple[int, int]) -> Any:
    """Stride 1: ``dL/dx`` as the convolution of ``g`` padded by ``k-1-p`` with the
    kernel rotated by 180 degrees, input and output channels swapped."""
    kh, kw = w.shape[2:]
    w_rot = xp_of(w).ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return conv_forward(g, w_rot, None, (1, 1), (kh - 1 - padding[0], kw - 1 - padding[1]))


def _col2im_full_width(g: Any, w: Any, x_shape: tuple, padding: tuple[int, int]) -> Any:
    """Stride 1: ``dL/dx`` as ``col2im(w.T @ g)``, with the adds in full-width coordinates.

    ``g`` is first padded with zero columns to the padded input's width ``Wp``, so that
    output position (i, j) sits at flat index ``i*Wp + j``: the same offset it has from
    its window's corner in the flattened padded input. Kernel offset (a, b) then adds
    its columns to the flattened image at ``a*Wp + b``, one contiguous run of
    ``(Ho-1)*Wp + Wo`` elements per image and channel. The zero columns land on pixels
    that no window of that offset touches, so they add nothing. On the CPU the columns
    are made and added a slice of the batch at a time (see `CHUNK_BYTES`).
    """
    n, f, ho, wo = g.shape
    c, h, wd = x_shape[1:]
    kh, kw = w.shape[2:]
    hp, wp = h + 2 * padding[0], wd + 2 * padding[1]
    run = (ho - 1) * wp + wo
    xp = xp_of(g)
    g_full = xp.zeros((n, f, ho, wp), dtype=g.dtype)
    g_full[:, :, :, :wo] = g
    g_runs = g_full.reshape(n, f, ho * wp)[:, :, :run]
    wt = w.reshape(f, -1).T
    k = c * kh * kw
    step = n if xp is not np else max(1, min(n, CHUNK_BYTES // (k * run * g.itemsize)))
    buf = xp.empty((step, k, run), dtype=g.dtype)
    out = xp.zeros((n, c, hp * wp), dtype=g.dtype)
    for i in range(0, n, step):
        m = min(step, n - i)
        cols = xp.matmul(wt, g_runs[i:i + m], out=buf[:m]).reshape(m, c, kh, kw, run)
        o = out[i:i + m]
        for a in range(kh):
            for b in range(kw):
                off = a * wp + b
                o[:, :, off:off + run] += cols[:, :, a, b]
    return crop_spatial(out.reshape(n, c, hp, wp), padding)


def col2im(cols: Any, x_shape: tuple, kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> Any:
    """The adjoint of `im2col`: add every column entry back onto its pixel (any stride)."""
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
