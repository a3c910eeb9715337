"""Forward mode: `mg.jvp`, a Jacobian-vector product in one forward pass, with no tape.

Every primitive has a third method beside ``forward`` and ``backward``::

    @staticmethod
    def jvp(ctx, *tangents):            # one tangent per input (arrays), after forward ran
        (y,) = ctx.saved                # what forward saved, raw arrays
        return tangents[0] * (1 - y * y)   # one tangent per output

While `mg.jvp` runs, each input Tensor may carry a tangent (a direction in input
space). `Function.apply` runs the op's forward as usual and then its ``jvp`` on
the tangents of its inputs; the result becomes the tangent of the output. Nothing
is recorded: the primal and the tangent travel together, op by op.

What a rule sees:

* ``ctx``: the op's ``ctx`` right after ``forward`` (``ctx.saved``, ``ctx.params``,
  whatever forward set on it), plus ``ctx.primals`` (the input arrays) and
  ``ctx.outputs`` (what forward returned).
* one tangent per input: an array of the input's shape, or `ZERO` for an input
  without one (a constant, a parameter not being differentiated, ``None``).
  `ZERO` is a symbolic zero: ``ZERO * a``, ``a @ ZERO``, ``ZERO.sum()`` are `ZERO`
  and ``ZERO + a`` is ``a``, so a rule is written as for dense tangents and terms
  that are known to vanish cost nothing. ``dense(t, like)`` makes it an array.

A rule returns one tangent per output (an array, or `ZERO`). A tangent may keep the
shape broadcasting gave it and any float dtype: it is broadcast to the output's
shape and cast to its dtype here, once for every op.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .. import backend as _backend
from ..errors import DTypeError, GraphError, ShapeError
from . import function as fn_mod
from .function import _local, _record, _special, _tensor, no_grad


class _Zero:
    """The tangent of a value that does not depend on the inputs: a symbolic zero."""

    __array_ufunc__ = None  # NumPy (and CuPy) defer to the operators below
    __array_priority__ = 1e6

    def __repr__(self) -> str:
        return "ZERO"

    def _zero(self, *args: Any, **kwargs: Any) -> _Zero:
        return self

    def _other(self, other: Any) -> Any:
        return other

    __mul__ = __rmul__ = __truediv__ = __matmul__ = __rmatmul__ = _zero
    __neg__ = __pos__ = __getitem__ = _zero
    sum = mean = reshape = transpose = swapaxes = squeeze = astype = copy = _zero
    __add__ = __radd__ = _other

    def __sub__(self, other: Any) -> Any:
        return other if other is self else -other

    def __rsub__(self, other: Any) -> Any:
        return other

    @property
    def T(self) -> _Zero:
        return self


#: the symbolic zero tangent
ZERO = _Zero()


def dense(t: Any, like: Any) -> Any:
    """The tangent ``t`` as an array: zeros shaped like ``like`` when it is `ZERO`."""
    if t is not ZERO:
        return t
    xp = _backend.xp_of(like) if hasattr(like, "shape") else _backend.np
    return xp.zeros_like(like, dtype=getattr(like, "dtype", float))


def linear(t: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn(t)`` for an op that is linear in this input: `ZERO` maps to `ZERO`."""
    return ZERO if t is ZERO else fn(t)


def tangent_of(t: Any) -> Any:
    """The tangent the running `mg.jvp` gave the Tensor ``t``, or `ZERO`."""
    tt = getattr(t, "_tangent", None)
    if tt is None or tt[0] is not _local.tangents:
        return ZERO
    return tt[1]


def refuse_inplace(t: Any, op: str) -> None:
    """In-place changes inside `mg.jvp` would leave a tensor's tangent stale."""
    if tangent_of(t) is not ZERO:
        raise GraphError(f"{op}: in-place change of a tensor that carries a tangent inside "
                         "mg.jvp; its tangent would not follow; use the out-of-place form")


_special_lock = threading.Lock()


def count_special(delta: int) -> None:
    """Change the count of running forward-mode and anomaly blocks (all threads): under a
    lock, since two threads may enter or leave at once."""
    with _special_lock:
        _special[0] += delta


def _set_tangent(t: Any, tangent: Any) -> None:
    t._tangent = (_local.tangents, tangent)


# ------------------------------------------------------------------ the op, in apply
def special_apply(cls: type, ctx: Any, inputs: tuple, arrays: list, edges: list,
                  record: bool, constant: bool, params: dict, out: Any) -> Any:
    """`Function.apply`'s ending while forward mode or anomaly detection is on somewhere."""
    st = _local
    record = record and st.grad
    if st.anomaly:
        from .anomaly import caller_line, check_forward

        ctx.source = caller_line()
    if record:
        ys = _record(ctx, inputs, arrays, edges, constant, params, out)
    else:
        ctx.params = params
        ys = tuple([_tensor(o, None, 0) for o in out]) if type(out) is tuple else _tensor(
            out, None, 0)
    if st.anomaly:
        check_forward(ctx, arrays, out)
    if st.tangents is not None:
        _push_tangents(cls, ctx, inputs, arrays, out, ys)
    return ys


def _push_tangents(cls: type, ctx: Any, inputs: tuple, arrays: list, out: Any,
                   ys: Any) -> None:
    """Run the op's JVP on its inputs' tangents; give the outputs theirs."""
    T = fn_mod._Tensor
    tans = [tangent_of(t) if isinstance(t, T) else ZERO for t in inputs]
    if all(t is ZERO for t in tans):
        return
    if cls.jvp is None:
        name = cls.op_name or cls.__name__.lower()
        raise GraphError(f"{name}: this op has no forward-mode rule, so mg.jvp (and "
                         "forward-mode jacobian) cannot go through it; define "
                         "jvp(ctx, *tangents) beside its forward and backward")
    ctx.primals, ctx.outputs = arrays, out
    res = cls.jvp(ctx, *tans)
    res = res if type(res) is tuple else (res,)
    outs, ys = (out, ys) if type(out) is tuple else ((out,), (ys,))
    if len(res) != len(outs):
        raise GraphError(f"{ctx.name}.jvp returned {len(res)} tangent(s) but the op has "
                         f"{len(outs)} output(s)")
    for o, y, r in zip(outs, ys, res):
        if r is not ZERO and r is not None and o.dtype.kind in "fc":
            _set_tangent(y, _fit(ctx, o, r))


def _fit(ctx: Any, o: Any, r: Any) -> Any:
    """Tangent ``r`` in the output's shape and dtype."""
    if isinstance(r, fn_mod._Tensor):
        r = r._data
    xp = _backend.xp_of(o)
    if not hasattr(r, "shape"):
        return xp.full(o.shape, r, dtype=o.dtype)
    if r.shape != o.shape:
        try:
            r = xp.broadcast_to(r, o.shape).copy()
        except ValueError:
            raise ShapeError(f"{ctx.name}.jvp returned a tangent of shape {tuple(r.shape)} "
                             f"for an output of shape {tuple(o.shape)}") from None
    return r if r.dtype == o.dtype else r.astype(o.dtype)


fn_mod._special_apply = special_apply


# ------------------------------------------------------------------ mg.jvp
def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _raw(x: Any, what: str) -> Any:
    T = fn_mod._Tensor
    if isinstance(x, T):
        return x._data
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return x
    raise DTypeError(f"jvp: {what} must be Tensors or arrays, got {type(x).__name__}")


def jvp(fn: Callable[..., Any], primals: Any, tangents: Any) -> tuple[Any, Any]:
    """``fn(*primals)`` and its Jacobian times ``tangents``, in one forward pass.

    ``primals`` and ``tangents`` are tuples (or single values) of Tensors or arrays of
    matching shapes (a tangent of None: that primal is not differentiated); ``fn``
    returns a Tensor or a tuple of Tensors. Returns ``(outputs, output_tangents)``
    shaped like what ``fn`` returned. Nothing is recorded on the tape: every op
    computes its output and that output's tangent together (the op's ``jvp`` rule).
    Tensors ``fn`` uses besides the primals (parameters, say) are constants here: their
    tangent is zero. Changing a tensor that carries a tangent in place raises.
    """
    ps, ts = _as_tuple(primals), _as_tuple(tangents)
    if len(ps) != len(ts):
        raise ShapeError(f"jvp: {len(ps)} primal(s) but {len(ts)} tangent(s); give one "
                         "tangent per primal")
    if _local.tangents is not None:
        raise GraphError("jvp: forward mode cannot be nested (mg.jvp inside the function of "
                         "another mg.jvp)")
    xs, dirs = [], []
    for k, (p, t) in enumerate(zip(ps, ts)):
        a = _raw(p, "primals")
        xs.append(_tensor(a, None, 0))
        if t is None:  # not differentiated: a tangent of zero
            dirs.append(None)
            continue
        d = _raw(t, "tangents")
        if a.dtype.kind not in "fc":
            raise DTypeError(f"jvp: primal {k} has dtype {a.dtype}; only floating-point "
                             "inputs have tangents")
        if tuple(d.shape) != tuple(a.shape):
            raise ShapeError(f"jvp: tangent {k} has shape {tuple(d.shape)} but its primal "
                             f"has shape {tuple(a.shape)}; they must match")
        dirs.append(d if d.dtype == a.dtype else d.astype(a.dtype))
    token = object()
    _local.tangents = token
    count_special(1)
    try:
        for x, d in zip(xs, dirs):
            if d is not None:
                _set_tangent(x, d)
        with no_grad():
            out = fn(*xs)
        outs = _as_tuple(out)
        tangents_out = []
        for o in outs:
            if not isinstance(o, fn_mod._Tensor):
                raise GraphError(f"jvp: the function must return Tensors, got "
                                 f"{type(o).__name__}")
            tangents_out.append(_tensor(dense(tangent_of(o), o._data), None, 0))
    finally:
        _local.tangents = None
        count_special(-1)
    if isinstance(out, (tuple, list)):
        return tuple(outs), tuple(tangents_out)
    return out, tangents_out[0]
