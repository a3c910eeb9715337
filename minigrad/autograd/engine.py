"""Reverse mode: walk the records that lead to the outputs in reverse tape order.

Every record carries the sequence number it got when it was made, and a record's
inputs were always made before it, so visiting records from the highest number
to the lowest visits every consumer of a value before the value's producer: by
the time a record is reached, the gradient of each of its outputs is complete.
The walk is a loop over a sorted list, so a graph 100,000 ops deep needs no
recursion.

``run_backward`` is the whole algorithm: order the records, seed the outputs,
then for each record call its VJP and add what it returns to the gradients
pending for its inputs. The functions below it each do one of those steps.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import xp_of
from ..errors import ArgumentTypeError, GraphError, ShapeError
from . import function as fn_mod
from .anomaly import checked_vjp
from .observers import _backward_watched, notify_backward
from .function import NO_GRAD, Edge, Function, _freed_message, _leaf_edge, _local, _tensor
from .hooks import run_leaf_hooks, run_record_hooks
from .hooks import used as hooks_used


def run_backward(roots: Sequence[Any], grads: Sequence[Any], retain_graph: bool,
                 create_graph: bool, inputs: Sequence[Any] | None = None) -> Any:
    """The engine behind ``Tensor.backward`` and ``mg.grad``.

    With ``inputs=None`` gradients accumulate into every reachable leaf's
    ``.grad``; otherwise the gradients of ``inputs`` are returned as a list and
    no ``.grad`` is touched. Under ``create_graph`` gradients are Tensors (so the
    VJPs are recorded); otherwise raw arrays.
    """
    _check_roots(roots)
    records = collect(roots)
    wanted = {_key(edge_of(t)): k for k, t in enumerate(inputs or ())}
    if inputs is not None:
        records = _prune(records, wanted)
    # The gradient pending for each value, keyed by `_key`. It lives for this call only:
    # nothing is left on a record for a later backward.
    pending: dict[Any, Any] = {}
    found: list[Any] = [None] * len(wanted)  # the gradients of wanted non-leaf values
    prev_mode, _local.grad = _local.grad, create_graph
    vjp = checked_vjp(_vjp) if _local.anomaly else _vjp
    hooked = hooks_used[0]  # were gradient hooks ever registered (Tensor.register_hook)
    try:
        for r, g in zip(roots, grads):
            _accumulate(pending, _key(edge_of(r)), _seed(r, g, create_graph))
        for rec in records:
            g = pending.pop(rec, None)  # the gradient of its (first) output
            gs = (g,) if len(rec.out_meta) == 1 else _output_grads(pending, rec, g)
            if gs[0] is None:  # nothing flowed into this record
                continue
            if hooked and rec.hooks:
                gs = run_record_hooks(rec, gs, create_graph)
            if wanted:
                _capture(rec, gs, wanted, found)
            out = vjp(rec, gs, create_graph)
            if _backward_watched[0]:  # someone steps through backward (mg.viz)
                notify_backward(rec, gs, out)
            for e, gi in zip(rec.edges, out):
                if gi is None or e is NO_GRAD:
                    continue
                if gi.shape != e.shape or (gi.dtype is not e.dtype and gi.dtype != e.dtype):
                    gi = _fit(rec, e, gi)  # undo broadcasting; cast back a mixed dtype
                src = e.record
                key = e.leaf if src is None else src if e.index == 0 else (src, e.index)
                cur = pending.get(key)  # (`_accumulate`, inline: it runs once per edge)
                pending[key] = gi if cur is None else cur + gi
            if not retain_graph:
                rec.saved = None  # free what forward saved (and the inputs it names)
                rec._saved_inputs = ()
    finally:
        _local.grad = prev_mode
    if inputs is None:
        _store_leaf_grads(pending, grads, create_graph)
        return None
    return _wanted_grads(pending, wanted, found, create_graph)


def _wanted_grads(pending: dict, wanted: dict, found: list, create_graph: bool) -> list:
    """The gradients ``mg.grad`` asked for, in its order (None for an unused input)."""
    for leaf, g in pending.items():
        k = wanted.get(leaf)
        if k is not None and isinstance(leaf, fn_mod._Tensor):
            found[k] = run_leaf_hooks(leaf, g, create_graph) if _hooked(leaf) else g
    return [g if g is None or create_graph else _tensor(g, None, 0) for g in found]


def collect(roots: Sequence[Any]) -> list[Function]:
    """Every record reachable from ``roots``' creators, highest sequence number first."""
    stack = [r._edge.record for r in roots if r._edge is not None]
    seen = set()
    records = []
    while stack:
        rec = stack.pop()
        if rec in seen:
            continue
        seen.add(rec)
        records.append(rec)
        for e in rec.edges:
            if e.record is not None:
                stack.append(e.record)
    records.sort(key=_by_seq, reverse=True)
    return records


_by_seq = operator.attrgetter("seq")


def edge_of(t: Any) -> Edge:
    """Where tensor ``t`` came from: its record and output index, or itself as a leaf."""
    return t._edge if t._edge is not None else _leaf_edge(t)


def _key(e: Edge) -> Any:
    """What identifies a value: its leaf; its record, for a record's first (usually only)
    output; ``(record, index)`` for another output."""
    return e.leaf if e.record is None else _out_key(e.record, e.index)


def _out_key(rec: Function, i: int) -> Any:
    return rec if i == 0 else (rec, i)


def _accumulate(pending: dict, key: Any, g: Any) -> None:
    """Add ``g`` to the gradient pending for the value ``key``."""
    cur = pending.get(key)
    pending[key] = g if cur is None else cur + g


def _output_grads(pending: dict, rec: Function, g0: Any) -> list:
    """The gradients of a multi-output record's outputs, taken out of ``pending``: zeros
    for an output nothing flowed into, unless nothing flowed in at all (then all None)."""
    gs = [g0] + [pending.pop((rec, i), None) for i in range(1, len(rec.out_meta))]
    return gs if all(g is None for g in gs) else _fill_zeros(rec, gs)


def _vjp(rec: Function, gs: Sequence[Any], create_graph: bool) -> Sequence[Any]:
    """Call ``rec``'s backward with one gradient per output; one gradient per input back.

    A primitive (``array_backward``) gets raw arrays unless the backward is recorded;
    everything else gets Tensors.
    """
    if rec.saved is None:  # freed by an earlier backward
        raise GraphError(_freed_message(rec))
    cls = type(rec)
    if create_graph:
        mark = next(fn_mod._seq)  # the records made from here on are this VJP's
        out = _checked(rec, cls.backward(rec, *[_as_tensor(g) for g in gs]), True)
        _tag(out, mark, rec.seq)
        return [_as_tensor(o) for o in out]
    if cls.array_backward:  # a primitive: trusted to return arrays of the right kind
        out = cls.backward(rec, *gs)
        if type(out) is not tuple:
            out = (out,)
        return out if len(out) == len(rec.edges) else _checked(rec, out, False)
    out = _checked(rec, cls.backward(rec, *[_as_tensor(g) for g in gs]), True)
    return [o._data if isinstance(o, fn_mod._Tensor) else o for o in out]


def _checked(rec: Function, out: Any, check_types: bool) -> tuple:
    """What a backward returned, as one gradient (or None) per input."""
    if type(out) is not tuple:
        out = (out,)
    if len(out) != len(rec.edges):
        raise GraphError(f"{rec.name}.backward returned {len(out)} gradient(s) but the op "
                         f"has {len(rec.edges)} input(s); return one gradient (or None) "
                         "per input")
    for k, o in enumerate(out if check_types else ()):
        if o is not None and not hasattr(o, "shape"):
            raise GraphError(f"{rec.name}.backward returned a {type(o).__name__} for input "
                             f"{k}; expected a Tensor, an array or None")
    return out


def _fit(rec: Function, e: Edge, g: Any) -> Any:
    """``g`` in the shape and dtype of the input ``e``: broadcasting is undone here, once
    for every op, by summing over the broadcast axes; dtypes are cast back (an op can
    mix float32 and float64, as PyTorch allows)."""
    shape, dtype = e.shape, e.dtype
    if g.shape != shape:
        g = unbroadcast(g, tuple(shape), rec, e)
    if g.dtype != dtype:
        g = g.astype(dtype)
    return g


def unbroadcast(g: Any, shape: tuple, rec: Any = None, e: Any = None) -> Any:
    """Sum ``g`` (array or Tensor) down to ``shape``, the shape it was broadcast from."""
    gshape = tuple(g.shape)
    lead = len(gshape) - len(shape)
    if lead < 0 or any(s not in (1, gs) for s, gs in zip(shape, gshape[lead:])):
        if rec is None:
            raise ShapeError(f"unbroadcast: a gradient of shape {gshape} cannot be summed "
                             f"to shape {shape}")
        k = next(k for k, x in enumerate(rec.edges) if x is e)
        raise ShapeError(f"{rec.name}.backward returned a gradient of shape {gshape} for "
                         f"input {k}, whose shape is {shape}")
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and gshape[lead + i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


def _store_leaf_grads(pending: dict, seeds: Sequence[Any], create_graph: bool) -> None:
    """Add the leaves' gradients into their ``.grad``."""
    T = fn_mod._Tensor
    # The caller's seed arrays count as seen: one must never become a leaf's .grad.
    seen_ids = {id(g._data if isinstance(g, T) else g) for g in seeds if g is not None}
    for leaf, g in pending.items():
        if not isinstance(leaf, T):
            continue  # a record nothing reached (it was not on the way)
        if _hooked(leaf):
            g = run_leaf_hooks(leaf, g, create_graph)
        if create_graph:
            leaf.grad = g if leaf.grad is None else leaf.grad + g
            continue
        if leaf.grad is not None:
            g = leaf.grad._data + g
            if isinstance(g, np.generic):  # NumPy adds two 0-d arrays into a scalar
                g = np.asarray(g)
        elif id(g) in seen_ids or not getattr(g.flags, "writeable", True):
            g = g.copy()  # never hand two leaves (or a read-only view) one buffer
        seen_ids.add(id(g))
        if leaf.grad is None:
            leaf.grad = _tensor(g, None, 0)
        else:
            leaf.grad._data = g


def _check_roots(roots: Sequence[Any]) -> None:
    for r in roots:
        if not isinstance(r, fn_mod._Tensor):
            raise ArgumentTypeError(f"backward: expected Tensors as outputs, got "
                                    f"{type(r).__name__}")
        if not r._rg:
            raise GraphError(
                "backward: the output does not require grad and has no recorded history; "
                "did you create it under no_grad(), from tensors without requires_grad=True, "
                "or call .detach()?")


def _seed(root: Any, grad: Any, create_graph: bool) -> Any:
    """The gradient the walk starts from: ones for a single value, else ``grad``."""
    data = root._data
    if grad is None and data.size == 1:
        g = xp_of(data).ones_like(data)
    else:
        g = _given_seed(root, grad)
    if create_graph:
        keep = isinstance(grad, fn_mod._Tensor) and grad.dtype == data.dtype
        return grad if keep else _tensor(g, None, 0)
    return g


def _given_seed(root: Any, grad: Any) -> Any:
    """``grad`` (needed unless the root is a single value) as an array like the root's."""
    if grad is None:
        raise GraphError(
            f"backward: the output has shape {tuple(root.shape)}, not a single value; "
            "gradients are only implied for scalar outputs, so pass grad= (a tensor of "
            "the output's shape, e.g. ones_like(output)) to say which vector-Jacobian "
            "product you want")
    data = root._data
    g = grad._data if isinstance(grad, fn_mod._Tensor) else grad
    if not hasattr(g, "shape"):
        g = data * 0 + g
    if tuple(g.shape) != tuple(root.shape):
        raise ShapeError(
            f"backward: grad has shape {tuple(g.shape)} but the output has shape "
            f"{tuple(root.shape)}; they must match")
    return g if g.dtype == data.dtype else g.astype(data.dtype)


def _as_tensor(g: Any) -> Any:
    return g if g is None or isinstance(g, fn_mod._Tensor) else _tensor(g, None, 0)


def _fill_zeros(rec: Function, gs: list) -> list:
    """Zeros for the outputs of a multi-output record that nothing flowed into."""
    ref = next(g for g in gs if g is not None)
    xp = xp_of(ref._data if isinstance(ref, fn_mod._Tensor) else ref)
    return [xp.zeros(*meta) if g is None else g for g, meta in zip(gs, rec.out_meta)]


def _tag(grads: tuple, mark: int, seq: int) -> None:
    """Mark the records a create_graph backward of record ``seq`` just made."""
    stack = [g._edge.record for g in grads if getattr(g, "_edge", None) is not None]
    while stack:
        r = stack.pop()
        if r.seq > mark and r.backward_of is None:
            r.backward_of = seq
            stack.extend(e.record for e in r.edges if e.record is not None)


def _capture(rec: Function, gs: Sequence[Any], wanted: dict, found: list) -> None:
    """Keep the complete gradient of a wanted output of ``rec``."""
    for i, g in enumerate(gs):
        k = wanted.get(_out_key(rec, i))
        if k is not None:
            found[k] = g


def _prune(records: list[Function], wanted: dict) -> list[Function]:
    """Keep only the records through which a gradient can reach a wanted value."""
    useful: set = set()
    for rec in reversed(records):  # lowest sequence number first
        if any(_out_key(rec, i) in wanted for i in range(len(rec.out_meta))) or any(
                e.record in useful if e.record is not None else e.leaf in wanted
                for e in rec.edges if e is not NO_GRAD):
            useful.add(rec)
    return [rec for rec in records if rec in useful]


def _hooked(leaf: Any) -> bool:
    """Whether hooks are registered on the leaf's gradient (Tensor.register_hook)."""
    return hooks_used[0] and bool(getattr(leaf, "_hooks", None))
