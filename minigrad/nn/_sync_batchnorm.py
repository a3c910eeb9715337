"""`SyncBatchNorm`: batch normalization over the whole batch when it is split across ranks.

Under data parallelism each rank sees only its slice of every batch. A plain BatchNorm
layer then normalizes each slice with that slice's own mean and variance, which is not
what one process would compute on the whole batch (and is noisier the smaller the
slices). `SyncBatchNorm` computes the statistics of the whole batch, so its outputs and
gradients are those of BatchNorm on the concatenated batch.

Forward. Each rank summarizes its slice per channel as ``(count, mean, M2)``, ``M2``
being the sum of squared deviations from the slice's own mean; one ``all_gather``
brings every rank's summary to every rank, and Chan et al.'s rule combines them
exactly::

    n    = sum_r n_r
    mean = sum_r n_r * mean_r / n
    M2   = sum_r M2_r + sum_r n_r * (mean_r - mean) ** 2       var = M2 / n

No ``E[x**2] - E[x]**2`` (which cancels catastrophically when the mean is large), and
unequal or empty slices weigh exactly what they hold. The running variance is updated
with the unbiased ``M2 / (n - 1)`` of the global count.

Backward. BatchNorm's gradient (``docs/batchnorm-derivation.md``) is::

    dx = gamma / sqrt(var + eps) * (dy - sum(dy) / n - x_hat * sum(dy * x_hat) / n)

where the sums run over the whole batch, because every output depends on every input
through the mean and variance. So the backward all-reduces the two per-channel sums
``[sum(dy), sum(dy * x_hat)]`` of every slice, in ONE all-reduce, and then each rank
computes its own rows of ``dx``. ``dgamma`` and ``dbeta`` are those sums over the rank's
own slice: the gradient of this rank's part of the loss, which `DataParallel` averages
like every other parameter's gradient.

Every rank must run each SyncBatchNorm layer's forward and backward (an empty slice
still joins the collectives). Second derivatives work: under ``create_graph=True`` the
backward is recorded with differentiable collectives.
"""

from __future__ import annotations

from typing import Any

from .. import backend
from ..autograd.forward import ZERO
from ..autograd.function import Function, is_grad_enabled
from ..distributed import collectives
from ..distributed.comm import Communicator
from ..errors import DTypeError, ShapeError
from ..ops import concatenate
from ..tensor import Tensor
from .batchnorm import (BatchNorm1d, BatchNorm2d, _BatchNorm, _check_shapes, _update_factor,
                        batch_norm)
from .module import Module


def sync_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                    weight: Tensor | None = None, bias: Tensor | None = None,
                    training: bool = True, momentum: float | None = 0.1, eps: float = 1e-5, *,
                    num_batches_tracked: Tensor | None = None,
                    comm: Communicator | None = None) -> Tensor:
    """Batch normalization of ``x`` (each rank's slice) with the whole batch's statistics.

    The arguments are `batch_norm`'s; ``comm`` is the communicator (default: the
    world's). In training every rank must call it, with the same channels and dtype;
    the slices may differ in length, down to zero rows. With ``training=False`` the
    running statistics are used and nothing is communicated.
    """
    if not isinstance(x, Tensor):
        raise DTypeError(f"sync_batch_norm: expected a Tensor input, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise DTypeError(f"sync_batch_norm: expected a floating-point input, got dtype "
                         f"{x.dtype}")
    if not training:
        return batch_norm(x, running_mean, running_var, weight, bias, training=False,
                          momentum=momentum, eps=eps)
    _check_shapes(x, running_mean=running_mean, running_var=running_var, weight=weight,
                  bias=bias)
    comm = comm or collectives.communicator()
    count, mean, var = global_moments(x.data, comm)
    if count <= 1:
        raise ShapeError(f"sync_batch_norm: expected more than 1 value per channel when "
                         f"training, got {count} in all across {comm.size} rank(s) (this "
                         f"rank's input has shape {tuple(x.shape)})")
    if running_mean is not None:
        factor = _update_factor(momentum, num_batches_tracked)
        _fold(running_mean, mean, factor)
        _fold(running_var, var * (count / (count - 1)), factor)
    xp = backend.xp_of(x.data)
    dt = x.dtype
    inv_std = 1 / xp.sqrt(var.astype(dt) + dt.type(eps))
    return SyncBatchNormOp.apply(x, weight, bias, mean=mean.astype(dt), inv_std=inv_std,
                                 count=count, eps=eps, comm=comm)


def global_moments(x: Any, comm: Communicator) -> tuple[int, Any, Any]:
    """The whole batch's per-channel count, mean and biased variance (float64 arrays).

    One ``all_gather`` of every rank's ``(count, mean, M2)``, combined exactly (Chan et
    al.) in rank order, so that every rank gets the same numbers.
    """
    xp = backend.xp_of(x)
    c = x.shape[1]
    axes = (0, *range(2, x.ndim))
    n_local = x.size // c if c else 0
    x64 = x.astype(xp.float64, copy=False)
    summary = xp.zeros(1 + 2 * c, xp.float64)
    summary[0] = n_local
    if n_local:
        mean_local = x64.mean(axis=axes)
        shape = (1, c) + (1,) * (x.ndim - 2)
        summary[1:1 + c] = mean_local
        summary[1 + c:] = ((x64 - mean_local.reshape(shape)) ** 2).sum(axis=axes)
    parts = comm.all_gather(summary)
    counts, means, m2 = parts[:, :1], parts[:, 1:1 + c], parts[:, 1 + c:]
    n = int(round(float(counts.sum())))
    if n == 0:
        return 0, xp.zeros(c), xp.zeros(c)
    mean = (counts * means).sum(axis=0) / n
    deviation = means - mean
    return n, mean, (m2.sum(axis=0) + (counts * deviation * deviation).sum(axis=0)) / n


def _fold(running: Tensor, stat: Any, factor: Any) -> None:
    """``r = (1 - factor) * r + factor * stat``, written through ``.data`` (versioned)."""
    r = running.data
    running.data = (r * (1.0 - factor) + factor * stat).astype(r.dtype, copy=False)


class SyncBatchNormOp(Function):
    """``(x, gamma, beta) -> y`` normalized with given global statistics.

    ``mean``, ``inv_std`` (per channel) and ``count`` (values per channel in the whole
    batch) come from `global_moments`; the backward all-reduces ``[sum(dy),
    sum(dy * x_hat)]`` once and applies BatchNorm's closed form with the global sums.
    """

    op_name = "sync_batch_norm"
    array_backward = True

    @staticmethod
    def forward(ctx: Any, x: Any, gamma: Any, beta: Any, mean: Any, inv_std: Any, count: int,
                eps: float, comm: Communicator) -> Any:
        shape = _channel_shape(x)
        scale = inv_std if gamma is None else gamma.astype(x.dtype, copy=False) * inv_std
        shift = -mean * scale
        if beta is not None:
            shift = shift + beta.astype(x.dtype, copy=False)
        ctx.save_for_backward(x, gamma)
        return x * scale.reshape(shape) + shift.reshape(shape)

    @staticmethod
    def backward(ctx: Any, dy: Any) -> tuple:
        if is_grad_enabled():  # create_graph: record a differentiable backward
            dx, dgamma, dbeta = _vjp_graph(ctx, dy)
        else:
            dx, dgamma, dbeta = _vjp_arrays(ctx, dy)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dgamma if need[1] else None,
                dbeta if need[2] else None)

    @staticmethod
    def jvp(ctx: Any, tx: Any, tgamma: Any, tbeta: Any) -> Any:
        # y = gamma * x_hat + beta, and x_hat moves with the whole batch's statistics:
        # t_hat = inv_std * (tx - mean(tx) - x_hat * mean(x_hat * tx)), means over every
        # rank's values, from one all-reduce (the forward twin of the backward's).
        x, gamma = ctx.saved
        p = ctx.params
        shape, c, n = _channel_shape(x), x.shape[1], p["count"]
        axes = (0, *range(2, x.ndim))
        x_hat = (x - p["mean"].reshape(shape)) * p["inv_std"].reshape(shape)
        t_hat = ZERO
        if tx is not ZERO:
            local = backend.xp_of(x).concatenate([tx.sum(axis=axes),
                                                  (tx * x_hat).sum(axis=axes)])
            total = p["comm"].all_reduce(local, "sum")
            t_hat = p["inv_std"].reshape(shape) * (tx - (total[:c] / n).reshape(shape)
                                                   - x_hat * (total[c:] / n).reshape(shape))
        scale = 1 if gamma is None else gamma.astype(x.dtype, copy=False).reshape(shape)
        return scale * t_hat + tgamma.reshape(shape) * x_hat + tbeta.reshape(shape)


def _channel_shape(x: Any) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _vjp_arrays(ctx: Any, dy: Any) -> tuple[Any, Any, Any]:
    """The plain backward on arrays: one all-reduce of the two per-channel sums."""
    x, gamma = ctx.saved_tensors
    p = ctx.params
    xp = backend.xp_of(x)
    shape, c, n = _channel_shape(x), x.shape[1], p["count"]
    axes = (0, *range(2, x.ndim))
    x_hat = (x - p["mean"].reshape(shape)) * p["inv_std"].reshape(shape)
    local = xp.concatenate([dy.sum(axis=axes), (dy * x_hat).sum(axis=axes)])
    dbeta, dgamma = local[:c], local[c:]
    dx = None
    if ctx.needs_input_grad[0]:
        total = p["comm"].all_reduce(local, "sum")
        k = p["inv_std"] if gamma is None else gamma.astype(x.dtype, copy=False) * p["inv_std"]
        dx = k.reshape(shape) * (dy - (total[:c] / n).reshape(shape)
                                 - x_hat * (total[c:] / n).reshape(shape))
    if gamma is not None:
        dgamma, dbeta = dgamma.astype(gamma.dtype, copy=False), dbeta.astype(gamma.dtype,
                                                                             copy=False)
    return dx, dgamma, dbeta


def _vjp_graph(ctx: Any, dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The same closed form in Tensor ops, the statistics recomputed from x through
    differentiable all-reduces, so that the gradient can be differentiated again."""
    x, gamma = ctx.saved_tensors
    p = ctx.params
    comm, n = p["comm"], p["count"]
    shape, c = _channel_shape(x), x.shape[1]
    axes = (0, *range(2, x.ndim))
    mean = collectives.all_reduce(x.sum(axis=axes), "sum", comm).reshape(shape) / n
    xc = x - mean
    var = collectives.all_reduce((xc * xc).sum(axis=axes), "sum", comm).reshape(shape) / n
    inv_std = 1 / (var + p["eps"]).sqrt()
    x_hat = xc * inv_std
    dbeta, dgamma = dy.sum(axis=axes), (dy * x_hat).sum(axis=axes)
    total = collectives.all_reduce(concatenate([dbeta, dgamma]), "sum", comm)
    k = inv_std if gamma is None else gamma.reshape(shape) * inv_std
    dx = k * (dy - total[:c].reshape(shape) / n - x_hat * (total[c:].reshape(shape) / n))
    return dx, dgamma, dbeta


class SyncBatchNorm(_BatchNorm):
    """Batch normalization with statistics over the whole batch, split across ranks.

    Same arguments, parameters and buffers as `BatchNorm1d`/`BatchNorm2d`, for inputs
    ``(N, C)`` and ``(N, C, *spatial)``; ``comm`` picks the communicator (default: the
    world's, so call ``mg.distributed.init()`` first). In training the mean and variance
    are those of every rank's slice together (see the module docstring); in evaluation
    the running statistics are used and nothing is communicated. In a world of one
    process it runs the fused BatchNorm op itself, so it equals BatchNorm exactly.
    """

    _ranks = tuple(range(2, 33))
    _layout = "(N, {c}) or (N, {c}, *spatial)"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 comm: Communicator | None = None, device: str | None = None,
                 dtype: Any = None) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)
        object.__setattr__(self, "comm", comm)

    def forward(self, x: Tensor) -> Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        comm = self.comm or collectives.communicator() if use_batch_stats else None
        if comm is None or comm.size == 1:  # nothing to share: plain BatchNorm
            return super().forward(x)
        # A rank's slice may hold one row or none; the whole batch's count is checked
        # once it is known.
        self._check_layout(x)
        track = self.training and self.track_running_stats
        return sync_batch_norm(x, self.running_mean if track else None,
                               self.running_var if track else None, self.weight, self.bias,
                               training=True, momentum=self.momentum, eps=self.eps,
                               num_batches_tracked=self.num_batches_tracked if track else None,
                               comm=comm)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    @classmethod
    def convert_sync_batchnorm(cls, module: Module,
                               comm: Communicator | None = None) -> Module:
        """Replace every `BatchNorm1d`/`BatchNorm2d` in ``module`` by a `SyncBatchNorm`.

        The new layers take over the old ones' parameters and buffers (the same Tensor
        objects, so an optimiser built before still updates them) and training flag.
        Children are replaced in place; the return value is ``module``, or its
        replacement when ``module`` itself is a BatchNorm layer.
        """
        if isinstance(module, (BatchNorm1d, BatchNorm2d)):
            return _sync_copy(cls, module, comm)
        for name, child in list(module.named_children()):
            new = cls.convert_sync_batchnorm(child, comm)
            if new is not child:
                module.add_module(name, new)
        return module


def _sync_copy(cls: type[SyncBatchNorm], bn: _BatchNorm,
               comm: Communicator | None) -> SyncBatchNorm:
    new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
              track_running_stats=bn.track_running_stats, comm=comm)
    for name in ("weight", "bias"):
        if bn.affine:
            setattr(new, name, getattr(bn, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        new.register_buffer(name, getattr(bn, name))
    new.train(bn.training)
    return new


__all__ = ["SyncBatchNorm", "SyncBatchNormOp", "global_moments", "sync_batch_norm"]
