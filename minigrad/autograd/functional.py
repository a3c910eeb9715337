"""Function transforms built on the two modes: `vjp`, `jacobian`, `hessian`, `hvp`.

* `vjp` is reverse mode packaged as a function: run ``fn`` once, then pull back as
  many cotangents as you like.
* `jacobian` builds the whole matrix, by rows (one VJP per output element,
  ``mode="reverse"``) or by columns (one JVP per input element, ``mode="forward"``).
  The same matrix either way; the cheaper mode is the one with fewer passes: forward
  for a tall Jacobian (few inputs, many outputs), reverse for a wide one.
* `hessian` and `hvp` are reverse over reverse: the gradient is computed with
  ``create_graph=True``, and that gradient is differentiated again by reverse mode.
  Every VJP in minigrad is made of differentiable ops (``gradgradcheck`` checks it),
  so this works through every op; forward over reverse would also need a JVP of every
  op that appears *inside* a VJP, and tangents that survive ``saved_tensors``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backend import xp_of
from ..errors import ArgumentError, GraphError, ShapeError
from . import function as fn_mod
from .api import grad
from .forward import jvp


def _leaves(inputs: tuple, keep: bool = False) -> tuple:
    """Fresh leaves that require grad, sharing the inputs' arrays (no copy); with ``keep``,
    an input that requires grad is used itself, so that results built from it under
    ``create_graph`` stay connected to it."""
    out = []
    for k, x in enumerate(inputs):
        if keep and isinstance(x, fn_mod._Tensor) and x._rg:
            out.append(x)
            continue
        a = x._data if isinstance(x, fn_mod._Tensor) else x
        if not hasattr(a, "dtype") or a.dtype.kind not in "fc":
            raise GraphError(f"input {k} must be a floating-point Tensor or array, got "
                             f"{getattr(a, 'dtype', type(a).__name__)}")
        t = fn_mod._tensor(a, None, 0)
        t._rg = True
        out.append(t)
    return tuple(out)


def _as_tuple(x: Any) -> tuple[tuple, bool]:
    """``x`` as a tuple, and whether it was one."""
    if isinstance(x, (tuple, list)):
        return tuple(x), True
    return (x,), False


def _grads(outs: tuple, xs: tuple, cotangents: list, create_graph: bool) -> tuple:
    """d(outs)/d(xs) contracted with ``cotangents``; zeros where nothing depends."""
    live = [(o, c) for o, c in zip(outs, cotangents) if o.requires_grad]
    if not live:
        gs: list = [None] * len(xs)
    else:
        gs = list(grad([o for o, _ in live], list(xs), [c for _, c in live],
                       retain_graph=True, create_graph=create_graph, allow_unused=True))
    return tuple(fn_mod._tensor(xp_of(x._data).zeros_like(x._data), None, 0) if g is None
                 else g for g, x in zip(gs, xs))


def vjp(fn: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., tuple]]:
    """``fn(*primals)`` and a function that pulls cotangents back through it.

    ``vjp_fn(*cotangents)`` takes one cotangent per output of ``fn`` (its shape) and
    returns one gradient per primal: ``sum_j cotangent_j . d output_j / d primal``.
    It can be called any number of times.
    """
    xs = _leaves(primals)
    out = fn(*xs)
    outs, multi = _as_tuple(out)
    for o in outs:
        if not isinstance(o, fn_mod._Tensor):
            raise GraphError(f"vjp: the function must return Tensors, got {type(o).__name__}")

    def vjp_fn(*cotangents: Any) -> tuple:
        if len(cotangents) != len(outs):
            raise ShapeError(f"vjp_fn: {len(outs)} output(s) but {len(cotangents)} "
                             "cotangent(s); give one per output")
        return _grads(outs, xs, list(cotangents), create_graph=False)

    shown = tuple(o.detach() for o in outs)
    return (shown if multi else shown[0]), vjp_fn


def _unit(shape: tuple, k: int, like: Any) -> Any:
    e = xp_of(like).zeros(shape, dtype=like.dtype)
    e.reshape(-1)[k] = 1
    return e


def _nest(blocks: list, multi_out: bool, multi_in: bool) -> Any:
    """``blocks[i][j]`` as torch.autograd.functional.jacobian shapes its result."""
    rows = [tuple(r) if multi_in else r[0] for r in blocks]
    return tuple(rows) if multi_out else rows[0]


def _reverse_blocks(fn: Callable[..., Any], xs: tuple, create_graph: bool) -> tuple:
    """The Jacobian's blocks by rows (one VJP per output element), and whether ``fn``
    returned a tuple."""
    out = fn(*xs)
    outs, multi_out = _as_tuple(out)
    blocks = []
    for o in outs:
        rows: list = [[] for _ in xs]
        for k in range(o.size):
            gs = _grads((o,), xs, [_unit(o.shape, k, o._data)], create_graph)
            for j, g in enumerate(gs):
                rows[j].append(g)
        blocks.append([_stack(r, o.shape + x.shape, x, -1) for r, x in zip(rows, xs)])
    return blocks, multi_out


def _forward_blocks(fn: Callable[..., Any], xs: tuple) -> tuple:
    """The Jacobian's blocks by columns (one JVP per input element), and whether ``fn``
    returned a tuple."""
    from .function import no_grad

    with no_grad():
        outs, multi_out = _as_tuple(fn(*xs))
    blocks = [[] for _ in outs]
    for j, x in enumerate(xs):
        cols: list = [[] for _ in outs]
        for k in range(x.size):
            tans: list = [None] * len(xs)  # the other inputs stay out: no work for them
            tans[j] = _unit(x.shape, k, x._data)
            _, ts = jvp(fn, xs, tuple(tans))
            for i, t in enumerate(_as_tuple(ts)[0]):
                cols[i].append(t)
        for i, o in enumerate(outs):
            blocks[i].append(_stack(cols[i], o.shape + x.shape, o, o.ndim))
    return blocks, multi_out


def _stack(parts: list, shape: tuple, like: Any, axis: int) -> Any:
    """Rows (``axis`` 0 after flattening) or columns stacked into one block of ``shape``."""
    from ..ops import reshape, stack

    xp = xp_of(like._data)
    if not parts:
        return fn_mod._tensor(xp.zeros(shape, dtype=like.dtype), None, 0)
    if axis == -1:  # rows: each part has the input's shape
        if any(p._edge is not None for p in parts):  # create_graph: keep the graph
            return reshape(stack(parts), shape)
        return fn_mod._tensor(xp.stack([p._data for p in parts]).reshape(shape), None, 0)
    # columns: each part has the output's shape; the input's axes go last
    return fn_mod._tensor(xp.stack([p._data for p in parts], axis=axis).reshape(shape), None, 0)


def jacobian(fn: Callable[..., Any], inputs: Any, mode: str = "reverse",
             create_graph: bool = False) -> Any:
    """The Jacobian of ``fn`` at ``inputs``: ``J[i][j] = d output_i / d input_j``.

    For one input and one output (neither given as a tuple) the result is a Tensor of
    shape ``output.shape + input.shape``; otherwise nested tuples as in
    ``torch.autograd.functional.jacobian``. ``mode="reverse"`` builds it by rows (one
    VJP per output element), ``mode="forward"`` by columns (one JVP per input
    element). ``create_graph`` (reverse mode) keeps the result differentiable, with
    respect to the inputs themselves where they require grad.
    """
    if mode not in ("reverse", "forward"):
        raise ArgumentError(f"jacobian: mode must be 'reverse' or 'forward', got {mode!r}")
    ins, multi_in = _as_tuple(inputs)
    xs = _leaves(ins, keep=create_graph)
    if mode == "forward":
        if create_graph:
            raise GraphError("jacobian: create_graph needs mode='reverse'")
        blocks, multi_out = _forward_blocks(fn, xs)
    else:
        blocks, multi_out = _reverse_blocks(fn, xs, create_graph)
    return _nest(blocks, multi_out, multi_in)


def hessian(fn: Callable[..., Any], inputs: Any) -> Any:
    """The Hessian of a scalar-valued ``fn``: ``H[i][j] = d^2 fn / d input_i d input_j``.

    One input (not a tuple): a Tensor of shape ``input.shape + input.shape``; several:
    nested tuples. Reverse over reverse: the Jacobian of the gradient.
    """
    ins, multi_in = _as_tuple(inputs)

    def gradient(*xs: Any) -> tuple:
        y = _scalar(fn(*xs), "hessian")
        return _grads((y,), xs, [None], create_graph=True)

    blocks, _ = _reverse_blocks(gradient, _leaves(ins), False)
    rows = [tuple(r) if multi_in else r[0] for r in blocks]
    return tuple(rows) if multi_in else rows[0]


def _scalar(y: Any, op: str) -> Any:
    if not isinstance(y, fn_mod._Tensor) or y.size != 1:
        shape = getattr(y, "shape", type(y).__name__)
        raise ShapeError(f"{op}: the function must return a single-valued Tensor, got {shape}")
    return y


def hvp(fn: Callable[..., Any], primals: Any, v: Any) -> tuple[Any, Any]:
    """``fn(*primals)`` and the Hessian of the scalar ``fn`` times ``v``, without the Hessian.

    Reverse over reverse: ``g = grad(fn)(x)`` with ``create_graph=True``, then
    ``H v = grad(<g, v>)``: two backward passes, whatever the size of ``x``.
    ``primals`` and ``v`` are Tensors (or tuples of them, then ``hvp`` is a tuple).
    """
    ins, multi = _as_tuple(primals)
    vs, _ = _as_tuple(v)
    if len(vs) != len(ins):
        raise ShapeError(f"hvp: {len(ins)} primal(s) but {len(vs)} vector(s)")
    xs = _leaves(ins)
    for k, (x, u) in enumerate(zip(xs, vs)):
        if tuple(u.shape) != x.shape:
            raise ShapeError(f"hvp: v[{k}] has shape {tuple(u.shape)} but primal {k} has "
                             f"shape {x.shape}")
    y = _scalar(fn(*xs), "hvp")
    gs = _grads((y,), xs, [None], create_graph=True)
    hv = _grads(gs, xs, list(vs), create_graph=False)
    return y.detach(), (hv if multi else hv[0])
