"""Batch normalization (Ioffe & Szegedy, 2015): `batch_norm`, `BatchNorm1d`, `BatchNorm2d`.

For every channel ``c`` (axis 1 of the input), over the ``m`` values that channel has in
the batch (all of axis 0 and every spatial axis)::

    mu      = mean(x)                       # the batch mean
    var     = mean((x - mu) ** 2)           # the *biased* batch variance (divides by m)
    x_hat   = (x - mu) / sqrt(var + eps)
    y       = gamma * x_hat + beta

The same function comes in two implementations, chosen with ``impl=``:

``"composed"``
    The formulas above written with public Tensor ops. The tape records every primitive
    (mean, sub, pow, mean, add, sqrt, div, mul, add) and reverse mode derives the gradient
    by itself. Easy to read, and slow: every intermediate is a full-size array.
``"fused"`` (the default)
    One `Function`, `BatchNormOp`: a forward and a backward that each make two passes
    over the data and allocate only their result, with the hand-derived gradient
    (``docs/batchnorm-derivation.md``)::

        dbeta  = sum(dy)
        dgamma = sum(dy * x_hat)
        dx     = gamma / (m * sqrt(var + eps)) * (m * dy - dbeta - x_hat * dgamma)

Both agree to rounding, and both have correct second derivatives.

Running statistics. In training the batch statistics are folded into ``running_mean`` and
``running_var`` in place: ``r = (1 - momentum) * r + momentum * batch_stat``. The variance
folded in is the *unbiased* one, ``var * m / (m - 1)``, because the running variance
estimates the population's, while normalization itself uses the biased ``var``.
``momentum=None`` makes the running values the plain average of all batch statistics so
far (the paper's Algorithm 2), which needs the batch count ``num_batches_tracked``. In
evaluation the running statistics replace the batch's: each channel then goes through one
fixed affine map, ``y = x * gamma / sqrt(running_var + eps) + (beta - ...)``.

Precision. Both implementations return the input's dtype. A float16 input is computed in
float32 (as PyTorch does for half inputs): a float16 sum of squared deviations overflows
(at 65504) for a batch of modest spread, which would make the variance inf and every
output 0. The running statistics keep their own dtype; a float16 running statistic that
overflows all the same warns.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

from .. import backend
from ..autograd.forward import ZERO, linear
from ..autograd.function import Function, is_grad_enabled
from ..errors import ArgumentError, ArgumentTypeError, DTypeError, ShapeError
from ..tensor import Tensor
from . import _bn_cuda
from .module import Module, Parameter, current_scope

IMPLS = ("fused", "composed")

# The fused kernels walk the data in blocks of about this many bytes per array, so that
# the second operation on a block finds it still in the CPU's cache (a pass over a large
# array that comes straight from main memory costs several times more).
_BLOCK_BYTES = 1 << 18


# --------------------------------------------------------------------------- functional
def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = True, momentum: float | None = 0.1, eps: float = 1e-5,
               impl: str = "fused", *, num_batches_tracked: Tensor | None = None) -> Tensor:
    """Normalize each channel of ``x`` (axis 1) to zero mean and unit variance, then scale
    by ``weight`` (gamma) and shift by ``bias`` (beta).

    ``x`` is ``(N, C)`` or ``(N, C, *spatial)``; statistics are per channel over every
    other axis, so a channel has ``m = N * prod(spatial)`` values. With ``training=True``
    the batch's own mean and biased variance are used, and when ``running_mean`` and
    ``running_var`` are given they are updated in place (variance unbiased, ``m/(m-1)``).
    With ``training=False`` the running statistics are used instead and nothing changes.

    ``momentum=None`` keeps a cumulative average and then needs ``num_batches_tracked``
    (an integer tensor of shape ``()``). When given, that counter is incremented by every
    training call that updates the running statistics, whatever the momentum.
    ``weight``/``bias`` of None mean gamma = 1, beta = 0. ``impl`` picks ``"fused"`` (one
    op, hand-written gradient) or ``"composed"`` (primitive ops, autodiff gradient).
    """
    if impl not in IMPLS:
        raise ArgumentError(f"batch_norm: impl must be one of {IMPLS}, got {impl!r}")
    if not isinstance(x, Tensor):
        raise ArgumentTypeError(f"batch_norm: expected a Tensor input, got "
                                f"{type(x).__name__}; wrap an array with mg.as_tensor(x)")
    if x.dtype.kind != "f":
        raise DTypeError(f"batch_norm: expected a floating-point input, got dtype {x.dtype}")
    _check_shapes(x, running_mean=running_mean, running_var=running_var, weight=weight,
                  bias=bias)
    if (running_mean is None) != (running_var is None):
        raise ArgumentError("batch_norm: give both running_mean and running_var, or neither")
    if training:
        _check_batch_size(x)
    elif running_mean is None:
        raise ArgumentError("batch_norm: training=False normalizes with the running "
                            "statistics, so running_mean and running_var must be given")
    factor = 0.0
    if training and running_mean is not None:
        factor = _update_factor(momentum, num_batches_tracked)
    if impl == "composed":
        return _batch_norm_composed(x, running_mean, running_var, weight, bias, training,
                                    factor, eps)
    y = BatchNormOp.apply(x, weight, bias, running_mean, running_var, training=training,
                          momentum=factor, eps=eps)
    if training and running_mean is not None:
        running_mean._bump()  # changed in place by the op: backwards that saved them must know
        running_var._bump()
    return y


def _check_shapes(x: Tensor, **per_channel: Tensor | None) -> None:
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: expected an input of shape (N, C) or (N, C, *spatial), "
                         f"got shape {tuple(x.shape)} ({x.ndim}-D)")
    c = x.shape[1]
    for name, t in per_channel.items():
        if t is not None and tuple(t.shape) != (c,):
            raise ShapeError(f"batch_norm: {name} has shape {tuple(t.shape)}, expected ({c},) "
                             f"for an input of shape {tuple(x.shape)} with {c} channels")


def _check_batch_size(x: Tensor, where: str = "batch_norm") -> None:
    """Batch statistics need two values per channel: one value has variance 0 and x_hat = 0."""
    if x.shape[1] == 0 or x.size // x.shape[1] <= 1:
        m = 0 if x.shape[1] == 0 else x.size // x.shape[1]
        raise ShapeError(f"{where}: training needs more than 1 value per channel for the "
                         f"batch statistics, but an input of shape {tuple(x.shape)} has {m} per "
                         "channel (its variance would be 0 and every output beta); use a "
                         "larger batch, or eval() mode to normalize with running statistics")


def _update_factor(momentum: float | None, num_batches_tracked: Tensor | None) -> Any:
    """The weight of this batch in the running average; counts the batch if asked to.

    A float, except for ``momentum=None`` on the GPU: there ``1 / count`` stays a 0-d
    device array, so that no training step waits to read the count back.
    """
    if num_batches_tracked is not None:
        num_batches_tracked._data[...] += 1
        num_batches_tracked._bump()
    if momentum is not None:
        return float(momentum)
    if num_batches_tracked is None:
        raise ArgumentError("batch_norm: momentum=None (a cumulative average) needs "
                            "num_batches_tracked, the number of batches averaged so far")
    count = num_batches_tracked._data
    if type(count) is not np.ndarray:  # on the GPU: reading the count would wait for it
        return 1.0 / count  # a 0-d float64 device array, used like the float below
    return 1.0 / int(num_batches_tracked.item())


def _compute_dtype(dtype: Any) -> np.dtype:
    """The dtype the statistics are computed in: float32 for float16, else ``dtype`` itself."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def _fold_batch_stats(running_mean: Any, running_var: Any, mean: Any, var: Any, m: int,
                      factor: float) -> None:
    """``r = (1 - factor) * r + factor * batch_stat`` on the raw arrays, in place.

    ``var`` is the biased batch variance; the running variance gets the unbiased
    ``var * m / (m - 1)``. Done on arrays, so it is never recorded on the tape.
    """
    for what, r, stat in (("running_mean", running_mean, mean),
                          ("running_var", running_var, var * (m / (m - 1)))):
        with np.errstate(over="ignore"):  # an overflow is reported just below
            r *= 1.0 - factor
            r += factor * stat
        if r.dtype.itemsize < 4 and not bool(backend.xp_of(r).isfinite(r).all()):
            _warn_overflow(what, r.dtype)


def _warn_overflow(what: str, dtype: Any) -> None:
    """A half-precision running statistic out of range would silently zero eval outputs."""
    warnings.warn(f"batch_norm: {what} overflowed {dtype} (largest value "
                  f"{float(np.finfo(dtype).max):g}), so evaluation will normalize with inf; "
                  f"keep the running statistics in float32 (BatchNorm(..., dtype=mg.float32) "
                  f"with float16 inputs works)", RuntimeWarning, stacklevel=4)


# --------------------------------------------------------------------------- composed
def _batch_norm_composed(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                         weight: Tensor | None, bias: Tensor | None, training: bool,
                         factor: float, eps: float) -> Tensor:
    """The paper's formulas in Tensor ops; autodiff finds the gradient.

    Each intermediate is named after its quantity in the paper's Algorithm 1 (``μ_B``,
    ``σ²_B``, ``x̂``...; Algorithm 2's ``E[x]`` and ``Var[x]`` in evaluation), so
    ``mg.tape`` and ``mg.viz`` show the formula rather than numbers. A float16 input is
    converted to float32 first and the result back (see the module's docstring); the
    conversions are recorded, so gradients flow through them.
    """
    out_dtype = x.dtype
    ct = _compute_dtype(out_dtype)
    x = x.astype(ct, copy=False)
    axes = (0, *range(2, x.ndim))              # every axis but the channel axis
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # a per-channel value, broadcastable
    if training:
        mu = _named(x.mean(axis=axes, keepdims=True), "μ_B")
        xc = _named(x - mu, "x−μ_B")
        sq = _named(xc ** 2, "(x−μ_B)²")
        var = _named(sq.mean(axis=axes, keepdims=True), "σ²_B")  # biased: divides by m
        if running_mean is not None:
            _fold_batch_stats(running_mean._data, running_var._data, mu._data.reshape(-1),
                              var._data.reshape(-1), x.size // x.shape[1], factor)
            running_mean._bump()
            running_var._bump()
        v = "σ²_B"
    else:
        mean = _named(running_mean.astype(ct).reshape(shape), "E[x]")
        xc = _named(x - mean, "x−E[x]")
        var = _named(running_var.astype(ct).reshape(shape), "Var[x]")
        v = "Var[x]"
    y = _named(xc / _named(_named(var + eps, f"{v}+ε").sqrt(), f"√({v}+ε)"), "x̂")
    if weight is not None:
        y = _named(y * weight.astype(ct, copy=False).reshape(shape), "γx̂")
    if bias is not None:
        y = _named(y + bias.astype(ct, copy=False).reshape(shape),
                   "γx̂+β" if weight is not None else "x̂+β")
    return y.astype(out_dtype, copy=False)


def _named(t: Tensor, name: str) -> Tensor:
    t.name = name
    return t


# --------------------------------------------------------------------------- fused
class _ChannelView:
    """How the fused kernels see ``x``: a 2-D array cut into cache-sized blocks of rows.

    ``(N, C)`` stays as it is and a channel is a column. ``(N, C, *S)`` becomes
    ``(N*C, prod(S))`` and a row is one channel of one sample. Either way, a per-channel
    sum over a block of rows is one matrix-vector product with a vector of ones (BLAS,
    faster than ``sum(axis=...)``), and a per-channel value becomes a column operand.

    Reductions write one partial result per block (per row for ``(N*C, S)``, per block
    and channel for ``(N, C)``) into an array, which `total` folds into per-channel
    values. A view depends only on the shape and dtype, so views are cached and reused.
    """

    def __init__(self, shape: tuple, dtype: Any, xp: Any, block_bytes: int) -> None:
        n, c = shape[0], shape[1]
        self.n, self.c = n, c
        self.by_row = len(shape) > 2
        cols = math.prod(shape[2:])
        rows, width = (n * c, cols) if self.by_row else (n, c)
        self.shape = (rows, width)
        self.m = n * cols if self.by_row else n  # values per channel
        self.xp, self.dtype = xp, dtype
        step = rows
        if xp is np:  # a GPU gains nothing from blocks and pays a launch per block
            step = max(1, block_bytes // max(1, width * dtype.itemsize))
        self.blocks = [slice(i, min(i + step, rows)) for i in range(0, rows, step)]
        # Rows per block: the number of values behind each partial result of an (N, C) view.
        self.counts = xp.asarray([s.stop - s.start for s in self.blocks], dtype=dtype)
        self.ones = xp.ones(width if self.by_row else min(step, rows), dtype)
        self.scratch = xp.empty((min(step, rows), width), dtype)  # one block, reused

    def per_channel(self, v: Any) -> Any:
        """A length-C vector as an operand that broadcasts against the 2-D view."""
        v = v.astype(self.dtype, copy=False)
        return self.xp.tile(v, self.n)[:, None] if self.by_row else v

    def part(self, coef: Any, s: slice) -> Any:
        """The rows of a per-channel operand that go with block ``s``."""
        return coef[s] if self.by_row else coef

    def partials(self) -> Any:
        """Room for one reduction's partial results."""
        return self.xp.empty(self.shape[0] if self.by_row else (len(self.blocks), self.c),
                             self.dtype)

    def sum_into(self, p: Any, k: int, s: slice, a: Any) -> Any:
        """Block ``k`` (rows ``s``, array ``a``): its per-channel sums into ``p``; returned."""
        if self.by_row:
            return self.xp.matmul(a, self.ones, out=p[s])
        return self.xp.matmul(self.ones[: a.shape[0]], a, out=p[k])

    def dot_into(self, p: Any, k: int, s: slice, a: Any, b: Any) -> None:
        """Block ``k``: the per-channel sums of ``a * b`` into ``p``, without a temporary.

        On the CPU the product goes through the scratch block, which ``a`` or ``b`` may
        be (it is overwritten then)."""
        if self.xp is np:  # the product into the scratch block, then BLAS: faster here
            prod = np.multiply(a, b, out=self.scratch[: a.shape[0]])
            self.sum_into(p, k, s, prod)
            return
        spec, i = ("ij,ij->i", s) if self.by_row else ("ij,ij->j", k)
        if self.xp is np:
            np.einsum(spec, a, b, out=p[i])
        else:
            p[i] = self.xp.einsum(spec, a, b)

    def total(self, p: Any) -> Any:
        """Per-channel sums of the partial results ``p``."""
        if self.by_row:
            return p.reshape(self.n, self.c).sum(axis=0)
        return p[0] if len(self.blocks) == 1 else p.sum(axis=0)

    def mean_and_var(self, means: Any, sq_devs: Any) -> tuple[Any, Any]:
        """Combine per-part means and sums of squared deviations (Chan et al.'s rule).

        ``var = (sum of the parts' squared deviations from their own means
        + sum of count * (part mean - mean)**2) / m``: exact, and free of the
        cancellation that ``E[x**2] - E[x]**2`` suffers.
        """
        if self.by_row:
            means, sq_devs = means.reshape(self.n, self.c), sq_devs.reshape(self.n, self.c)
            counts = self.shape[1]
        elif len(self.blocks) == 1:
            return means[0], sq_devs[0] / self.m
        else:
            counts = self.counts[:, None]
        mean = (counts * means).sum(axis=0) / self.m
        d = means - mean
        return mean, (sq_devs.sum(axis=0) + (counts * d * d).sum(axis=0)) / self.m


def _channel_view(shape: tuple, dtype: Any, xp: Any) -> _ChannelView:
    return _cached_view(shape, dtype, xp, _BLOCK_BYTES)


@functools.lru_cache(maxsize=16)
def _cached_view(shape: tuple, dtype: Any, xp: Any, block_bytes: int) -> _ChannelView:
    return _ChannelView(shape, dtype, xp, block_bytes)


def _normalize_with_batch_stats(x: Any, gamma: Any, beta: Any, eps: float,
                                v: _ChannelView) -> tuple[Any, Any, Any, Any]:
    """Training forward on arrays: ``y``, the batch mean, biased variance and 1/std.

    Two passes over ``x``. The first takes each block's mean and the squares of its
    deviations from it (the centred block lives in a reused scratch buffer, in cache),
    which combine into the batch mean and variance. The second writes
    ``y = x * (gamma/std) + (beta - mean * gamma/std)``.
    """
    xp = v.xp
    x2 = x.reshape(v.shape)
    means, sq_devs = v.partials(), v.partials()
    for k, s in enumerate(v.blocks):
        block = x2[s]
        centred = v.scratch[: block.shape[0]]
        mu = v.sum_into(means, k, s, block)
        mu /= v.shape[1] if v.by_row else block.shape[0]
        xp.subtract(block, mu[:, None] if v.by_row else mu, out=centred)
        v.dot_into(sq_devs, k, s, centred, centred)
    mean, var = v.mean_and_var(means, sq_devs)
    inv_std = 1 / xp.sqrt(var + v.dtype.type(eps))
    scale = inv_std if gamma is None else gamma * inv_std
    shift = -mean * scale if beta is None else beta - mean * scale
    scale, shift = v.per_channel(scale), v.per_channel(shift)
    y = xp.empty(v.shape, v.dtype)
    for s in v.blocks:
        yb = y[s]
        xp.multiply(x2[s], v.part(scale, s), out=yb)
        yb += v.part(shift, s)
    return y.reshape(x.shape), mean, var, inv_std


def _batch_stats_vjp(dy: Any, x: Any, gamma: Any, mean: Any, inv_std: Any, v: _ChannelView,
                     need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Training backward on arrays: ``dx, dgamma, dbeta`` from the closed form.

    ``x_hat`` is not stored: the first pass rebuilds ``x - mean`` in the ``dx`` buffer
    and takes the sums of ``dy`` and ``dy * (x - mean)``; the second turns the buffer
    into ``dx`` in place. Without ``need_dx`` (an input that needs no gradient) the
    second pass is skipped and the first uses the scratch block instead.
    """
    xp = v.xp
    x2, dy2 = x.reshape(v.shape), dy.reshape(v.shape)
    dx = xp.empty(v.shape, v.dtype) if need_dx else None
    mean_c = v.per_channel(mean)
    sum_dy, sum_dy_xc = v.partials(), v.partials()
    for k, s in enumerate(v.blocks):
        g = dy2[s]
        d = dx[s] if need_dx else v.scratch[: g.shape[0]]
        xp.subtract(x2[s], v.part(mean_c, s), out=d)  # dx holds x - mean for now
        v.sum_into(sum_dy, k, s, g)
        v.dot_into(sum_dy_xc, k, s, g, d)
    dbeta = v.total(sum_dy)
    dgamma = v.total(sum_dy_xc) * inv_std
    if not need_dx:
        return None, dgamma, dbeta
    # dx = gamma * inv_std * (dy - dbeta/m - x_hat * dgamma/m), x_hat = (x - mean) * inv_std
    c_xc = v.per_channel(inv_std * dgamma / v.m)
    c_one = v.per_channel(dbeta / v.m)
    k = v.per_channel(inv_std if gamma is None else gamma * inv_std)
    for s in v.blocks:
        d = dx[s]
        d *= v.part(c_xc, s)
        d += v.part(c_one, s)
        xp.subtract(dy2[s], d, out=d)
        d *= v.part(k, s)
    return dx.reshape(x.shape), dgamma, dbeta


def _normalize_with_running_stats(x: Any, gamma: Any, beta: Any, mean: Any, inv_std: Any,
                                  v: _ChannelView) -> Any:
    """Evaluation forward on arrays: one affine map per channel, ``y = x * a + b``."""
    xp, dt = v.xp, v.dtype
    a = inv_std if gamma is None else gamma * inv_std
    b = -mean * a
    if beta is not None:
        b += beta
    x2 = x.reshape(v.shape)
    a, b = v.per_channel(a), v.per_channel(b)
    y = xp.empty(v.shape, dt)
    for s in v.blocks:
        yb = y[s]
        xp.multiply(x2[s], v.part(a, s), out=yb)
        yb += v.part(b, s)
    return y.reshape(x.shape)


def _running_stats_vjp(dy: Any, x: Any, gamma: Any, mean: Any, inv_std: Any, v: _ChannelView,
                       need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Evaluation backward on arrays: ``dx = dy * gamma/std`` per channel, one pass."""
    xp = v.xp
    k = v.per_channel(inv_std if gamma is None else gamma * inv_std)
    mean_c = v.per_channel(mean)
    x2, dy2 = x.reshape(v.shape), dy.reshape(v.shape)
    dx = xp.empty(v.shape, v.dtype) if need_dx else None
    sum_dy, sum_dy_xc = v.partials(), v.partials()
    for j, s in enumerate(v.blocks):
        g = dy2[s]
        d = dx[s] if need_dx else v.scratch[: g.shape[0]]
        xp.subtract(x2[s], v.part(mean_c, s), out=d)  # x - mean, for dgamma
        v.sum_into(sum_dy, j, s, g)
        v.dot_into(sum_dy_xc, j, s, g, d)
        if need_dx:
            xp.multiply(g, v.part(k, s), out=d)
    dx = None if dx is None else dx.reshape(x.shape)
    return dx, v.total(sum_dy_xc) * inv_std, v.total(sum_dy)


class BatchNormOp(Function):
    """Fused batch normalization: ``(x, gamma, beta, running_mean, running_var) -> y``.

    ``gamma``/``beta`` may be None (no affine part); the running statistics may be None
    in training. In training the forward also folds the batch statistics into the
    running arrays it is handed (it has them at hand); the functional `batch_norm`
    bumps their versions afterwards. Either way it saves the input, gamma, and the mean
    and 1/std it normalized with (copies of the running values in evaluation, so later
    updates of the running statistics do not change this op's gradient).

    Backward has two paths. A plain backward runs the closed form on arrays with the
    mean and 1/std saved by forward. A backward that must itself be differentiated
    (``create_graph=True``) cannot use those saved values: they depend on ``x``, but
    would enter the new graph as constants, and every second derivative through them
    would be lost. That path rebuilds them from the saved input with Tensor ops, so the
    gradient's own graph reaches ``x`` through the statistics too.
    """

    op_name = "batch_norm"
    # A plain backward is handed raw arrays (and saved_tensors gives arrays): the fast
    # path below is written for them. Under create_graph it is handed Tensors.
    array_backward = True

    @staticmethod
    def forward(ctx: Any, x: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any,
                training: bool, momentum: float, eps: float) -> Any:
        out_dtype = x.dtype
        dt = _compute_dtype(out_dtype)  # float16 data is normalized in float32
        x_in, x = x, x.astype(dt, copy=False)
        gamma_dt = None if gamma is None else gamma.astype(dt, copy=False)
        beta_dt = None if beta is None else beta.astype(dt, copy=False)
        xp = backend.xp_of(x)
        # On the GPU (float32/float64) the CUDA kernels of _bn_cuda; ctx.view None says so.
        cuda = _bn_cuda.handles(x)
        v = ctx.view = None if cuda else _channel_view(x.shape, dt, xp)
        if training:
            if cuda:
                y, mean, var, inv_std = _bn_cuda.normalize_with_batch_stats(x, gamma_dt, beta_dt,
                                                                            eps)
            else:
                y, mean, var, inv_std = _normalize_with_batch_stats(x, gamma_dt, beta_dt, eps, v)
            if running_mean is not None:
                _fold_batch_stats(running_mean, running_var, mean, var, x.size // x.shape[1],
                                  momentum)
        else:
            mean = running_mean.astype(dt, copy=True)
            inv_std = 1 / xp.sqrt(running_var.astype(dt) + dt.type(eps))
            if cuda:
                y = _bn_cuda.normalize_with_running_stats(x, gamma_dt, beta_dt, mean, inv_std)
            else:
                y = _normalize_with_running_stats(x, gamma_dt, beta_dt, mean, inv_std, v)
        ctx.save_for_backward(x_in, gamma, mean, inv_std)  # the input, not its float32 copy
        return y.astype(out_dtype, copy=False)

    @staticmethod
    def backward(ctx: Any, dy: Any) -> tuple:
        if is_grad_enabled():  # create_graph: dy is a Tensor and this backward is recorded
            dx, dgamma, dbeta = _vjp_graph(ctx, dy)
        else:
            dx, dgamma, dbeta = _vjp_arrays(ctx, dy)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dgamma if need[1] else None,
                dbeta if need[2] else None, None, None)

    @staticmethod
    def jvp(ctx: Any, tx: Any, tgamma: Any, tbeta: Any, t_mean: Any, t_var: Any) -> Any:
        return _jvp_arrays(ctx, tx, tgamma, tbeta)


def _vjp_arrays(ctx: Any, dy: Any) -> tuple[Any, Any, Any]:
    """The plain backward, on raw arrays (float16 ones in float32, as the forward)."""
    x, gamma, mean, inv_std = ctx.saved_tensors
    out_dtype = x.dtype
    x, dy = x.astype(mean.dtype, copy=False), dy.astype(mean.dtype, copy=False)
    gamma_dt = None if gamma is None else gamma.astype(x.dtype, copy=False)
    training = ctx.params["training"]
    if ctx.view is None:  # the forward ran the CUDA kernels: so does the backward
        vjp = _bn_cuda.batch_stats_vjp if training else _bn_cuda.running_stats_vjp
        dx, dgamma, dbeta = vjp(dy, x, gamma_dt, mean, inv_std, ctx.needs_input_grad[0])
    else:
        vjp = _batch_stats_vjp if training else _running_stats_vjp
        dx, dgamma, dbeta = vjp(dy, x, gamma_dt, mean, inv_std, ctx.view,
                                ctx.needs_input_grad[0])
    if gamma is not None:
        dgamma = dgamma.astype(gamma.dtype, copy=False)
        dbeta = dbeta.astype(gamma.dtype, copy=False)
    if dx is not None:
        dx = dx.astype(out_dtype, copy=False)
    return dx, dgamma, dbeta


def _vjp_graph(ctx: Any, dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The same closed form in Tensor ops, everything that depends on x recomputed from x.

    Under ``create_graph`` the saved input comes back connected to the graph, so this
    backward is differentiable: its derivative reaches x through x_hat and through
    the mean and variance, as the true second derivative does.
    """
    x, gamma, mean, inv_std = ctx.saved_tensors
    out_dtype = x.dtype
    x, dy = x.astype(mean.dtype, copy=False), dy.astype(mean.dtype, copy=False)
    training = ctx.params["training"]
    axes = (0, *range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    if training:  # not the saved mean and inv_std: they would enter as constants
        mean = x.mean(axis=axes, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
        inv_std = 1 / (var + ctx.params["eps"]).sqrt()
    else:  # the running statistics are constants indeed
        mean, inv_std = mean.reshape(shape), inv_std.reshape(shape)
    x_hat = (x - mean) * inv_std
    dbeta = dy.sum(axis=axes, keepdims=True)
    dgamma = (dy * x_hat).sum(axis=axes, keepdims=True)
    k = inv_std if gamma is None else gamma.reshape(shape) * inv_std
    if training:  # the batch statistics depend on x: two more terms
        dx = k * (dy - dbeta / m - x_hat * (dgamma / m))
    else:
        dx = k * dy
    dgamma, dbeta = dgamma.reshape(x.shape[1]), dbeta.reshape(x.shape[1])
    if gamma is not None:
        dgamma, dbeta = dgamma.astype(gamma.dtype, copy=False), dbeta.astype(gamma.dtype,
                                                                               copy=False)
    return dx.astype(out_dtype, copy=False), dgamma, dbeta


def _jvp_arrays(ctx: Any, tx: Any, tgamma: Any, tbeta: Any) -> Any:
    """Forward mode, hand-derived: ``dy = dgamma * x_hat + gamma * dx_hat + dbeta`` with

        dx_hat = inv_std * (dx - mean(dx) - x_hat * mean(x_hat * dx))    (training)
        dx_hat = inv_std * dx                                            (evaluation)

    the means per channel. In training the mean and variance move with ``x``: the two
    subtracted terms are their tangents. The running statistics are constants here, as
    they are for the VJP.
    """
    x, gamma, mean, inv_std = ctx.saved
    axes = (0, *range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    inv_std, mean = inv_std.reshape(shape), mean.reshape(shape)
    x_hat = (x - mean) * inv_std
    dx_hat = ZERO
    if tx is not ZERO:
        if ctx.params["training"]:
            tx = (tx - tx.mean(axis=axes, keepdims=True)
                  - x_hat * (x_hat * tx).mean(axis=axes, keepdims=True))
        dx_hat = tx * inv_std
    g = 1 if gamma is None else gamma.astype(x.dtype, copy=False).reshape(shape)
    return (linear(tgamma, lambda t: t.reshape(shape) * x_hat) + dx_hat * g
            + linear(tbeta, lambda t: t.reshape(shape)))


# --------------------------------------------------------------------------- modules
class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share; they differ only in the ranks they accept."""

    _ranks: tuple[int, ...] = ()
    _layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, impl: str = "fused",
                 device: str | None = None, dtype: Any = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, int) or num_features < 1:
            raise ArgumentError(f"{name}: num_features must be a positive int, got "
                                f"{num_features!r}")
        if impl not in IMPLS:
            raise ArgumentError(f"{name}: impl must be one of {IMPLS}, got {impl!r}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.impl = impl
        xp = backend.get_array_module(backend.check_device(device))
        dt = np.float32 if dtype is None else np.dtype(dtype)
        if affine:
            self.weight = Parameter(xp.ones(num_features, dt))
            self.bias = Parameter(xp.zeros(num_features, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor._wrap(xp.zeros(num_features, dt)))
            self.register_buffer("running_var", Tensor._wrap(xp.ones(num_features, dt)))
            self.register_buffer("num_batches_tracked", Tensor._wrap(xp.zeros((), np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches seen."""
        if self.track_running_stats:
            for t, value in ((self.running_mean, 0), (self.running_var, 1),
                             (self.num_batches_tracked, 0)):
                t._data.fill(value)
                t._bump()

    def reset_parameters(self) -> None:
        """Running statistics reset, gamma = 1 and beta = 0."""
        self.reset_running_stats()
        if self.affine:
            for t, value in ((self.weight, 1), (self.bias, 0)):
                t._data.fill(value)
                t._bump()

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        # Batch statistics in training, and always without running statistics to use.
        use_batch_stats = self.training or not self.track_running_stats
        track = self.training and self.track_running_stats
        stats = (self.running_mean, self.running_var) if self.track_running_stats else (
            None, None)
        return batch_norm(x, stats[0], stats[1], self.weight, self.bias,
                          training=use_batch_stats, momentum=self.momentum, eps=self.eps,
                          impl=self.impl,
                          num_batches_tracked=self.num_batches_tracked if track else None)

    def _check_input(self, x: Any) -> None:
        batch = self.training or not self.track_running_stats  # normalizes with batch stats
        shape = getattr(x, "shape", ())
        c = self.num_features
        if (isinstance(x, Tensor) and len(shape) in self._ranks and shape[1] == c
                and (not batch or (c and x.size // c > 1))):
            return  # the common case, decided without building the layer's label
        where = self._check_layout(x)
        if batch:
            _check_batch_size(x, where)

    def _check_layout(self, x: Any) -> str:
        """Check that ``x`` is a Tensor of this layer's layout; return the layer's label."""
        shape = tuple(getattr(x, "shape", ()))
        where = f"{type(self).__name__}{_layer_path()} ({self.num_features})"
        if not isinstance(x, Tensor):
            raise ArgumentTypeError(f"{where}: expected a Tensor, got {type(x).__name__}; wrap an "
                                    "array with mg.as_tensor(x)")
        expected = self._layout.format(c=self.num_features)
        if len(shape) not in self._ranks:
            raise ShapeError(f"{where}: expected an input of shape {expected}, got shape {shape} "
                             f"({len(shape)}-D)")
        if shape[1] != self.num_features:
            raise ShapeError(f"{where}: expected an input of shape {expected}, got shape {shape} "
                             f"({shape[1]} channels along axis 1)")
        return where

    def extra_repr(self) -> str:
        s = (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
             f"affine={self.affine}, track_running_stats={self.track_running_stats}")
        return s if self.impl == "fused" else s + f", impl={self.impl!r}"


def _layer_path() -> str:
    """The calling layer's path in the model (`` 'features.1'``), for error messages."""
    scope = current_scope()
    if scope is not None and scope.path:
        return f" '{scope.path}'"
    return ""


class BatchNorm1d(_BatchNorm):
    """Batch normalization over ``(N, C)`` or ``(N, C, L)`` inputs, per channel ``C``.

    ``weight`` (gamma, ones) and ``bias`` (beta, zeros) are learned when ``affine``.
    Buffers ``running_mean``, ``running_var`` (unbiased) and ``num_batches_tracked``
    exist when ``track_running_stats``; training updates them with ``momentum``
    (``None``: a cumulative average) and evaluation normalizes with them. Without
    running statistics the batch's own statistics are used in evaluation too.
    ``impl`` picks the ``"fused"`` op or the ``"composed"`` one (see `batch_norm`).
    """

    _ranks = (2, 3)
    _layout = "(N, {c}) or (N, {c}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization over ``(N, C, H, W)`` inputs, per channel ``C``.

    Statistics are taken over the batch and every spatial position, ``m = N * H * W``
    values per channel. Otherwise the same as `BatchNorm1d`.
    """

    _ranks = (4,)
    _layout = "(N, {c}, H, W)"
