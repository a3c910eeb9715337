"""Fused batch normalization on the GPU: CUDA kernels for CuPy arrays.

`BatchNormOp` (``batchnorm.py``) calls these on ``cuda`` for float32 and float64 inputs
(float16 inputs reach them converted to float32, where their statistics are taken);
every other case keeps the array code written against ``xp``. The mathematics is the
same as there: this module only changes how the passes over the data are made.

How the kernels see the data. An input ``(N, C, *spatial)`` is C-contiguous, so it is
a matrix of ``rows = N`` rows and ``width = C * inner`` columns, ``inner =
prod(spatial)`` (1 for ``(N, C)``), and column ``col`` belongs to channel ``col /
inner``. A per-channel sum is a sum down the columns, then across the ``inner``
columns of each channel:

1. *partials*: a grid of 32 x 8 thread blocks. The 32 threads of a warp take 32
   neighbouring columns, so every load reads consecutive addresses (coalesced) whatever
   the layout; the 8 threads of a column and the ``gy`` blocks of the grid's y axis
   split its rows. Each block writes one partial sum per column.
2. *finish*: one block per channel adds that channel's partial sums (``gy`` rows of
   ``inner`` columns) and turns them into the per-channel results.
3. one elementwise kernel writes the full-size output; element ``i`` of the
   C-contiguous array is in channel ``(i / inner) % C``.

Forward (training): partials of ``d = x - shift`` and ``d * d`` with ``shift`` the
channel's first value ``x[0, c, 0, ...]`` (shifted sums: one pass, and no cancellation
in ``E[d**2] - E[d]**2`` because ``shift`` is close to the mean compared with the
spread); finish gives mean, biased variance, 1/std, and the affine ``scale`` and
``shift`` of ``y = x * scale + shift``; the elementwise kernel writes ``y``.
Backward (training): partials of ``dy`` and ``dy * (x - mean)`` in one pass; finish
gives ``dbeta``, ``dgamma`` and the coefficients of ``dx = k * (dy - (x - mean) * c_xc
- c_one)``; the elementwise kernel writes ``dx``. Sums accumulate in the input's type
(float32 or float64). Evaluation uses the same kernels with the running statistics.

The kernels are compiled on first use (``functools.lru_cache``), and CuPy is reached
through `minigrad.backend` only when a CuPy array arrives: importing minigrad never
imports CuPy.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .. import backend

#: Threads of a partial-sum block: 32 columns (one warp) by 8 rows.
BLOCK_X, BLOCK_Y = 32, 8
#: Threads of a finish block (one block per channel).
FINISH_THREADS = 256
#: A thread of the partial-sum kernels sums at least this many rows (fewer blocks
#: along y), so that the partial sums stay small next to the data.
MIN_ROWS_PER_THREAD = 16
#: Blocks per multiprocessor that the partial-sum grid aims for.
BLOCKS_PER_SM = 4

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

#: The index arithmetic of the kernels, as C expressions on non-negative long longs (C's
#: integer division truncates, which for non-negative values is Python's ``//``).
#: The CUDA source is built from these strings, and the CPU tests evaluate the very
#: same strings with NumPy to check that every element is visited once, in the right
#: channel.
INDEX = {
    # partials: the column of this thread, the first row it sums, and its row step
    "column": "bx * BLOCK_X + tx",
    "first_row": "by * BLOCK_Y + ty",
    "row_step": "gy * BLOCK_Y",
    # partials: where (row, col) of the (rows, width) matrix is in memory
    "element": "row * width + col",
    # partials: the channel's first value x[0, c, 0, ...], the shift of the sums
    "shift_index": "(col / inner) * inner",
    # partials: the channel of a column (to read that channel's mean in backward)
    "channel_of_column": "col / inner",
    # partials: where block row `by` puts its partial sum of column `col`
    "partial_out": "by * width + col",
    # finish: the t-th of channel c's gy * inner partial sums
    "partial_in": "(t / inner) * width + c * inner + t % inner",
    # elementwise: the channel of element i of a C-contiguous (N, C, *spatial) array
    "channel_of_element": "(i / inner) % channels",
}

_PARTIALS = r"""
// Partial sums down the columns of a (rows, width) matrix, width = C * inner.
// acc1 and acc2 are two per-column sums of one pass over the data; block row `by`
// covers the rows by*BLOCK_Y + ty, stepping by gy*BLOCK_Y, and writes its two sums
// of column `col` to p[partial_out] and p[gy*width + partial_out].
extern "C" __global__ void NAME(ARGS, ACC* __restrict__ p,
                                const long long rows, const long long width,
                                const long long inner)
{
    __shared__ ACC s1[BLOCK_Y][BLOCK_X];
    __shared__ ACC s2[BLOCK_Y][BLOCK_X];
    const long long bx = blockIdx.x, by = blockIdx.y, gy = gridDim.y;
    const long long tx = threadIdx.x, ty = threadIdx.y;
    const long long col = {column};
    ACC acc1 = 0, acc2 = 0;
    if (col < width) {
        PROLOGUE
        for (long long row = {first_row}; row < rows; row += {row_step}) {
            const long long at = {element};
            BODY
        }
    }
    // Add the BLOCK_Y sums of each column (a tree over ty); every thread takes part
    // in every __syncthreads(), including those of columns past the edge.
    s1[ty][tx] = acc1;
    s2[ty][tx] = acc2;
    __syncthreads();
    for (int h = BLOCK_Y / 2; h > 0; h /= 2) {
        if (ty < h) {
            s1[ty][tx] += s1[ty + h][tx];
            s2[ty][tx] += s2[ty + h][tx];
        }
        __syncthreads();
    }
    if (ty == 0 && col < width) {
        p[{partial_out}] = s1[0][tx];
        p[gy * width + {partial_out}] = s2[0][tx];
    }
}
"""

# Forward: the sums of d = x - shift and of d * d, shift = the channel's first value.
_STATS_PROLOGUE = "const ACC shift = (ACC)x[{shift_index}];"
_STATS_BODY = "const ACC d = (ACC)x[at] - shift; acc1 += d; acc2 += d * d;"
# Backward: the sums of dy and of dy * (x - mean).
_GRAD_PROLOGUE = "const ACC mu = (ACC)mean[{channel_of_column}];"
_GRAD_BODY = "const ACC g = (ACC)dy[at]; acc1 += g; acc2 += g * ((ACC)x[at] - mu);"

_FINISH = r"""
// One block per channel c: add the channel's gy * inner partial sums of p (each of the
// two halves of p), leaving the totals s1 and s2 in thread 0.
__device__ void channel_totals(const ACC* __restrict__ p, const long long c,
                               const long long width, const long long inner,
                               const long long gy, ACC* s1, ACC* s2)
{
    const long long n = gy * inner;
    ACC a1 = 0, a2 = 0;
    for (long long t = threadIdx.x; t < n; t += blockDim.x) {
        const long long at = {partial_in};
        a1 += p[at];
        a2 += p[gy * width + at];
    }
    s1[threadIdx.x] = a1;
    s2[threadIdx.x] = a2;
    __syncthreads();
    for (int h = FINISH_THREADS / 2; h > 0; h /= 2) {
        if (threadIdx.x < h) {
            s1[threadIdx.x] += s1[threadIdx.x + h];
            s2[threadIdx.x] += s2[threadIdx.x + h];
        }
        __syncthreads();
    }
}

// Forward: out = [mean | var | inv_std | scale | shift], each C long, from the shifted
// sums. y = x * scale + shift with scale = gamma * inv_std and shift = beta - mean * scale
// (gamma = 1 and beta = 0 when they are absent).
extern "C" __global__ void bn_stats_finish(const T* __restrict__ x, const ACC* __restrict__ p,
                                           const T* __restrict__ gamma,
                                           const T* __restrict__ beta, T* __restrict__ out,
                                           const long long rows, const long long channels,
                                           const long long inner, const long long gy,
                                           const double eps, const int has_gamma,
                                           const int has_beta)
{
    __shared__ ACC s1[FINISH_THREADS];
    __shared__ ACC s2[FINISH_THREADS];
    const long long c = blockIdx.x;
    channel_totals(p, c, channels * inner, inner, gy, s1, s2);
    if (threadIdx.x == 0) {
        const ACC m = (ACC)(rows * inner);          // values per channel
        const ACC d = s1[0] / m;                    // mean - shift
        ACC var = s2[0] / m - d * d;                // E[(x - shift)^2] - (E[x - shift])^2
        if (var < 0) var = 0;                       // rounding, for a constant channel
        const T mean = (T)((ACC)x[c * inner] + d);
        const T inv_std = (T)1 / SQRT((T)var + (T)eps);
        const T scale = has_gamma ? gamma[c] * inv_std : inv_std;
        out[c] = mean;
        out[channels + c] = (T)var;
        out[2 * channels + c] = inv_std;
        out[3 * channels + c] = scale;
        out[4 * channels + c] = has_beta ? beta[c] - mean * scale : -mean * scale;
    }
}

// Backward: out = [dgamma | dbeta | k | c_one | c_xc], each C long, from the sums of dy
// and dy * (x - mean). dx = k * (dy - ((x - mean) * c_xc + c_one)): in training
// k = gamma * inv_std, c_xc = inv_std * dgamma / m and c_one = dbeta / m; in
// evaluation the statistics are constants, dx = k * dy, and c_one = c_xc = 0.
extern "C" __global__ void bn_grad_finish(const ACC* __restrict__ p,
                                          const T* __restrict__ inv_std,
                                          const T* __restrict__ gamma, T* __restrict__ out,
                                          const long long rows, const long long channels,
                                          const long long inner, const long long gy,
                                          const int has_gamma, const int training)
{
    __shared__ ACC s1[FINISH_THREADS];
    __shared__ ACC s2[FINISH_THREADS];
    const long long c = blockIdx.x;
    channel_totals(p, c, channels * inner, inner, gy, s1, s2);
    if (threadIdx.x == 0) {
        const T m = (T)(rows * inner);
        const T dbeta = (T)s1[0];
        const T dgamma = (T)s2[0] * inv_std[c];
        out[c] = dgamma;
        out[channels + c] = dbeta;
        out[2 * channels + c] = has_gamma ? gamma[c] * inv_std[c] : inv_std[c];
        out[3 * channels + c] = training ? dbeta / m : (T)0;
        out[4 * channels + c] = training ? inv_std[c] * dgamma / m : (T)0;
    }
}
"""

# y = x * a[c] + b[c]: the training forward (a = scale, b = shift), the evaluation
# forward, and the evaluation backward (a = k, b = 0).
_AFFINE = """
const long long c = {channel_of_element};
y = x * a[c] + b[c];
"""

# dx of the training backward; coef = [dgamma | dbeta | k | c_one | c_xc] from
# bn_grad_finish, each `channels` long.
_DX = """
const long long c = {channel_of_element};
const T k = coef[2 * channels + c], c_one = coef[3 * channels + c];
const T c_xc = coef[4 * channels + c];
dx = (dy - ((x - mean[c]) * c_xc + c_one)) * k;
"""


def _fill(template: str, **extra: str) -> str:
    """Put the `INDEX` expressions (and ``extra`` pieces) into a source template."""
    out = template
    for key, value in extra.items():
        out = out.replace(key, value)
    for key, expr in INDEX.items():
        out = out.replace("{" + key + "}", f"({expr})")
    return out


def cuda_source(ctype: str) -> str:
    """The CUDA C++ source of the reduction kernels for ``float`` or ``double`` data."""
    head = (f"#define BLOCK_X {BLOCK_X}\n#define BLOCK_Y {BLOCK_Y}\n"
            f"#define FINISH_THREADS {FINISH_THREADS}\ntypedef {ctype} T;\ntypedef {ctype} ACC;\n"
            f"#define SQRT {'sqrtf' if ctype == 'float' else 'sqrt'}\n")
    stats = _fill(_PARTIALS, NAME="bn_stats_partials", ARGS="const T* __restrict__ x",
                  PROLOGUE=_STATS_PROLOGUE, BODY=_STATS_BODY)
    grad = _fill(_PARTIALS, NAME="bn_grad_partials",
                 ARGS="const T* __restrict__ dy, const T* __restrict__ x, "
                      "const T* __restrict__ mean",
                 PROLOGUE=_GRAD_PROLOGUE, BODY=_GRAD_BODY)
    return head + stats + grad + _fill(_FINISH)


# ------------------------------------------------------------------ launch geometry
def geometry(shape: tuple) -> tuple[int, int, int]:
    """``(rows, channels, inner)`` of an input of ``shape`` ``(N, C, *spatial)``."""
    return shape[0], shape[1], math.prod(shape[2:])


def partial_grid(rows: int, width: int, sm_count: int) -> tuple[int, int]:
    """The grid ``(gx, gy)`` of a partial-sum kernel over a (rows, width) matrix.

    ``gx`` blocks cover the columns; ``gy`` splits the rows when the columns alone give
    too few blocks to fill ``sm_count`` multiprocessors (a wide matrix needs 1, a tall
    and narrow one more), keeping at least `MIN_ROWS_PER_THREAD` rows per thread.
    """
    gx = -(-width // BLOCK_X)
    wanted = -(-BLOCKS_PER_SM * sm_count // gx)
    most = -(-rows // (BLOCK_Y * MIN_ROWS_PER_THREAD))
    return gx, max(1, min(wanted, most, 65535))


# ------------------------------------------------------------------ compiled kernels
def handles(x: Any) -> bool:
    """Whether ``x`` is a non-empty float32/float64 CuPy array (what these kernels take)."""
    cp = backend._cupy  # set once minigrad has made a CUDA array; never imported here
    return cp is not None and isinstance(x, cp.ndarray) and x.dtype in _CTYPES and x.size > 0


class _Kernels:
    """The four reduction kernels of one dtype, compiled together for the current GPU."""

    def __init__(self, cp: Any, dtype: np.dtype) -> None:
        module = cp.RawModule(code=cuda_source(_CTYPES[dtype]))
        self.stats_partials = module.get_function("bn_stats_partials")
        self.grad_partials = module.get_function("bn_grad_partials")
        self.stats_finish = module.get_function("bn_stats_finish")
        self.grad_finish = module.get_function("bn_grad_finish")
        self.sm_count = _sm_count(cp)


def _sm_count(cp: Any) -> int:
    """The GPU's number of multiprocessors (it only tunes the grid, so a guess will do)."""
    try:
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.runtime.getDevice())
        return max(1, int(props["multiProcessorCount"]))
    except Exception:  # a CuPy without this property: a count of today's large GPUs
        return 128


@functools.cache
def _kernels(dtype: np.dtype, device_id: int) -> _Kernels:
    return _Kernels(backend._cupy, dtype)


@functools.cache
def _elementwise() -> tuple[Any, Any]:
    """The two elementwise kernels (CuPy compiles each per dtype on first call)."""
    cp = backend._cupy
    affine = cp.ElementwiseKernel(
        "T x, raw T a, raw T b, int64 inner, int64 channels", "T y",
        _fill(_AFFINE), "minigrad_bn_affine")
    dx = cp.ElementwiseKernel(
        "T dy, T x, raw T mean, raw T coef, int64 inner, int64 channels", "T dx",
        _fill(_DX), "minigrad_bn_dx")
    return affine, dx


def _setup(x: Any) -> tuple[Any, _Kernels, int, int, int]:
    cp = backend._cupy
    return cp, _kernels(x.dtype, cp.cuda.runtime.getDevice()), *geometry(x.shape)


def _partial_sums(kernel: Any, k: _Kernels, arrays: tuple, rows: int, width: int,
                  inner: int, dtype: np.dtype) -> tuple[Any, int]:
    """Launch a partial-sum kernel; return its two halves of partial sums and ``gy``."""
    cp = backend._cupy
    gx, gy = partial_grid(rows, width, k.sm_count)
    p = cp.empty(2 * gy * width, dtype=dtype)
    kernel((gx, gy), (BLOCK_X, BLOCK_Y),
           (*arrays, p, np.int64(rows), np.int64(width), np.int64(inner)))
    return p, gy


def _rows(v: Any, channels: int) -> list:
    """The per-channel rows of a finish kernel's output, each ``channels`` long."""
    return [v[j * channels:(j + 1) * channels] for j in range(5)]


# ------------------------------------------------------------------ what BatchNormOp calls
def normalize_with_batch_stats(x: Any, gamma: Any, beta: Any,
                               eps: float) -> tuple[Any, Any, Any, Any]:
    """Training forward: ``y``, the batch mean, biased variance and 1/std (as the CPU path).

    ``gamma``/``beta`` are None or arrays of ``x``'s dtype.
    """
    cp, k, rows, channels, inner = _setup(x)
    x = cp.ascontiguousarray(x)
    p, gy = _partial_sums(k.stats_partials, k, (x,), rows, channels * inner, inner, x.dtype)
    out = cp.empty(5 * channels, dtype=x.dtype)
    g = out if gamma is None else cp.ascontiguousarray(gamma)  # a placeholder when absent
    b = out if beta is None else cp.ascontiguousarray(beta)
    k.stats_finish((channels,), (FINISH_THREADS,),
                   (x, p, g, b, out, np.int64(rows), np.int64(channels), np.int64(inner),
                    np.int64(gy), np.float64(eps), np.int32(gamma is not None),
                    np.int32(beta is not None)))
    mean, var, inv_std, scale, shift = _rows(out, channels)
    y = _elementwise()[0](x, scale, shift, inner, channels)
    return y, mean, var, inv_std


def normalize_with_running_stats(x: Any, gamma: Any, beta: Any, mean: Any,
                                 inv_std: Any) -> Any:
    """Evaluation forward: ``y = x * a + b`` per channel (one elementwise kernel)."""
    a = inv_std if gamma is None else gamma * inv_std
    b = -mean * a
    if beta is not None:
        b += beta
    _, channels, inner = geometry(x.shape)
    return _elementwise()[0](x, a, b, inner, channels)


def _vjp(dy: Any, x: Any, gamma: Any, mean: Any, inv_std: Any, need_dx: bool,
         training: bool) -> tuple[Any, Any, Any]:
    cp, k, rows, channels, inner = _setup(x)
    x, dy = cp.ascontiguousarray(x), cp.ascontiguousarray(dy)
    mean, inv_std = cp.ascontiguousarray(mean), cp.ascontiguousarray(inv_std)
    p, gy = _partial_sums(k.grad_partials, k, (dy, x, mean), rows, channels * inner, inner,
                          x.dtype)
    out = cp.empty(5 * channels, dtype=x.dtype)
    g = out if gamma is None else cp.ascontiguousarray(gamma)
    k.grad_finish((channels,), (FINISH_THREADS,),
                  (p, inv_std, g, out, np.int64(rows), np.int64(channels), np.int64(inner),
                   np.int64(gy), np.int32(gamma is not None), np.int32(training)))
    dgamma, dbeta, scale, zero, _ = _rows(out, channels)
    if not need_dx:
        return None, dgamma, dbeta
    affine, dx_kernel = _elementwise()
    if training:
        dx = dx_kernel(dy, x, mean, out, inner, channels)
    else:  # dx = dy * k: the affine kernel with b = c_one, which is 0 here
        dx = affine(dy, scale, zero, inner, channels)
    return dx, dgamma, dbeta


def batch_stats_vjp(dy: Any, x: Any, gamma: Any, mean: Any, inv_std: Any,
                    need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Training backward: ``dx, dgamma, dbeta`` (``dx`` None without ``need_dx``)."""
    return _vjp(dy, x, gamma, mean, inv_std, need_dx, True)


def running_stats_vjp(dy: Any, x: Any, gamma: Any, mean: Any, inv_std: Any,
                      need_dx: bool = True) -> tuple[Any, Any, Any]:
    """Evaluation backward: ``dx = dy * gamma/std``; ``dgamma``, ``dbeta`` as in training."""
    return _vjp(dy, x, gamma, mean, inv_std, need_dx, False)
