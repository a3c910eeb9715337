"""Reverse mode: walk the records that lead to the outputs in reverse tape order.

Every record carries the sequence number it got when it was made, and a record's
inputs were always made before it, so visiting records from the highest number
to the lowest visits every consumer of a value before the value's producer: by
the time a record is reached, the gradient of each of its outputs is complete.
The walk is a loop over a sorted list, so a graph 100,000 ops deep needs no
recursion.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from ..backend import xp_of
from ..errors import GraphError, ShapeError
from . import function as fn_mod
from .function import Function, _freed_message, _local


def collect(roots: Sequence[Any]) -> list[Function]:
    """Every record reachable from ``roots``' creators, highest sequence number first."""
    stack = [r._node for r in roots if r._node is not None]
    seen = set()
    nodes = []
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        nodes.append(n)
        for e in n.edges:
            if type(e) is tuple:
                stack.append(e[0])
    nodes.sort(key=_by_seq, reverse=True)
    return nodes


_by_seq = operator.attrgetter("seq")


def _seed(root: Any, grad: Any, create_graph: bool) -> Any:
    T = fn_mod._Tensor
    if grad is None:
        if root._data.size != 1:
            raise GraphError(
                f"backward: the output has shape {tuple(root.shape)}, not a single value; "
                "gradients are only implied for scalar outputs, so pass grad= (a tensor of "
                "the output's shape, e.g. ones_like(output)) to say which vector-Jacobian "
                "product you want")
        g = xp_of(root._data).ones_like(root._data)
    else:
        g = grad._data if isinstance(grad, T) else grad
        if not hasattr(g, "shape"):
            g = root._data * 0 + g
        if tuple(g.shape) != tuple(root.shape):
            raise ShapeError(
                f"backward: grad has shape {tuple(g.shape)} but the output has shape "
                f"{tuple(root.shape)}; they must match")
        if g.dtype != root._data.dtype:
            g = g.astype(root._data.dtype)
    if create_graph:
        return grad if isinstance(grad, T) else T._wrap(g)
    return g


def run_backward(roots: Sequence[Any], grads: Sequence[Any], retain_graph: bool,
                 create_graph: bool, inputs: Sequence[Any] | None = None) -> Any:
    """The engine behind ``Tensor.backward`` and ``mg.grad``.

    With ``inputs=None`` gradients accumulate into every reachable leaf's
    ``.grad``; otherwise the gradients of ``inputs`` are returned as a list and
    no ``.grad`` is touched.
    """
    T = fn_mod._Tensor
    for r in roots:
        if not isinstance(r, T):
            raise TypeError(f"backward: expected Tensors as outputs, got {type(r).__name__}")
        if not r._rg:
            raise GraphError(
                "backward: the output does not require grad and has no recorded history; "
                "did you create it under no_grad(), from tensors without requires_grad=True, "
                "or call .detach()?")
    nodes = collect(roots)
    want: dict[Any, int] = {}  # (record, index) or leaf -> position in inputs
    result: list[Any] = []
    if inputs is not None:
        result = [None] * len(inputs)
        for k, t in enumerate(inputs):
            want[_key(t)] = k
        nodes = _prune(nodes, want)
    leaf_grads: dict[Any, Any] = {}  # leaf Tensor -> accumulated gradient
    # record -> the gradient pending for its output(s). Kept per call, never on the
    # records: a gradient delivered to a record this call does not run must vanish
    # with the call, not wait there for a later backward.
    pending: dict[Any, Any] = {}

    prev_grad = _local.grad
    prev_unpack = _local.unpack
    _local.grad = create_graph
    # Plain backward feeds raw arrays to primitives; create_graph feeds graph Tensors.
    _local.unpack = 2 if create_graph else 0
    try:
        for r, g in zip(roots, grads):
            _deliver(_key(r), _seed(r, g, create_graph), leaf_grads, pending)
        for n in nodes:
            g = pending.pop(n, None)
            if g is None:
                continue
            if n.saved is None:  # freed by an earlier backward
                raise GraphError(_freed_message(n))
            if want:
                _capture(n, g, want, result)
            cls = n.__class__
            if create_graph:
                mark = next(fn_mod._seq)  # records made from here on belong to n's backward
            if cls.array_backward and len(n.out_meta) == 1:  # the fast path
                in_grads = cls.backward(n, g)
                if in_grads.__class__ is not tuple:
                    in_grads = (in_grads,)
            else:
                in_grads = _call_backward(n, g, create_graph)
            if create_graph:
                _tag(in_grads, mark, n.seq)
            edges = n.edges
            if len(in_grads) != len(edges):
                raise GraphError(_count_message(n, len(in_grads)))
            # An op with several inputs can mix dtypes (float32 * float64); each
            # gradient is cast back to its input's dtype, as PyTorch does.
            mixed = len(edges) > 1
            for e, gi in zip(edges, in_grads):
                if e is None or gi is None:
                    continue
                if type(e) is tuple:
                    p = e[0]
                    if mixed:  # (builtin dtypes are singletons: `is` settles most cases)
                        dt = p.out_meta[e[1]][1]
                        if gi.dtype is not dt and gi.dtype != dt:
                            gi = gi.astype(dt)
                    if len(p.out_meta) == 1:
                        pg = pending.get(p)
                        pending[p] = gi if pg is None else pg + gi
                    else:
                        _deliver(e, gi, leaf_grads, pending)
                else:
                    if mixed and gi.dtype is not e._data.dtype and gi.dtype != e._data.dtype:
                        gi = gi.astype(e._data.dtype)
                    cur = leaf_grads.get(e)
                    leaf_grads[e] = gi if cur is None else cur + gi
            if not retain_graph:
                n.saved = None
                n._saved_from = ()  # saved input tensors go with their arrays
    finally:
        _local.grad = prev_grad
        _local.unpack = prev_unpack

    if inputs is not None:
        for leaf, g in leaf_grads.items():
            k = want.get(leaf)
            if k is not None:
                result[k] = g if create_graph else T._wrap(g)
        for k, r in enumerate(result):
            if r is not None and not isinstance(r, T):
                result[k] = T._wrap(r)
        return result

    # The caller's seed arrays count as seen: one must never become a leaf's .grad.
    seen_ids = {id(g._data if isinstance(g, T) else g) for g in grads if g is not None}
    for leaf, g in leaf_grads.items():
        if create_graph:
            leaf.grad = g if leaf.grad is None else leaf.grad + g
            continue
        if leaf.grad is not None:
            g = leaf.grad._data + g
        elif id(g) in seen_ids or not getattr(g.flags, "writeable", True):
            g = g.copy()  # never hand two leaves (or a read-only view) one buffer
        seen_ids.add(id(g))
        if leaf.grad is None:
            leaf.grad = T._wrap(g)
        else:
            leaf.grad._data = g
    return None


def _deliver(edge: Any, g: Any, leaf_grads: dict, pending: dict) -> None:
    """Add ``g`` to the gradient pending for ``edge`` (a record output or a leaf)."""
    if type(edge) is tuple:
        n, i = edge
        if len(n.out_meta) == 1:
            cur = pending.get(n)
            pending[n] = g if cur is None else cur + g
            return
        gs = pending.get(n)
        if gs is None:
            gs = pending[n] = [None] * len(n.out_meta)
        cur = gs[i]
        gs[i] = g if cur is None else cur + g
    else:
        cur = leaf_grads.get(edge)
        leaf_grads[edge] = g if cur is None else cur + g


def _tag(grads: tuple, mark: int, seq: int) -> None:
    """Mark the records a create_graph backward of record ``seq`` just made."""
    stack = [g._node for g in grads if g is not None and getattr(g, "_node", None) is not None]
    while stack:
        r = stack.pop()
        if r.seq > mark and r.backward_of is None:
            r.backward_of = seq
            stack.extend(e[0] for e in r.edges if type(e) is tuple)


def _key(t: Any) -> Any:
    return (t._node, t._idx) if t._node is not None else t


def _capture(n: Function, g: Any, want: dict, result: list) -> None:
    """Record the complete gradient of a wanted non-leaf output of ``n``."""
    T = fn_mod._Tensor
    gs = g if isinstance(g, list) else [g]
    for i, gi in enumerate(gs):
        k = want.get((n, i))
        if k is not None and gi is not None:
            result[k] = gi if isinstance(gi, T) else T._wrap(gi)


def _prune(nodes: list[Function], want: dict) -> list[Function]:
    """Keep only the records through which a gradient can reach a wanted input."""
    useful: set = set()
    for n in reversed(nodes):  # lowest sequence number first
        for i in range(len(n.out_meta)):
            if (n, i) in want:
                useful.add(n)
        for e in n.edges:
            if e is None:
                continue
            if (type(e) is tuple and e[0] in useful) or (type(e) is not tuple and e in want):
                useful.add(n)
                break
    return [n for n in nodes if n in useful]


def _call_backward(n: Function, g: Any, create_graph: bool) -> tuple:
    """Call the record's backward with grads of the right kind; check what it returns."""
    T = fn_mod._Tensor
    multi = len(n.out_meta) > 1
    if multi:
        gs = list(g)
        for i, gi in enumerate(gs):
            if gi is None:  # materialise zeros for outputs nothing flowed into
                shape, dtype = n.out_meta[i]
                ref = next(x for x in gs if x is not None)
                raw = ref._data if isinstance(ref, T) else ref
                gs[i] = xp_of(raw).zeros(shape, dtype)
                if create_graph:
                    gs[i] = T._wrap(gs[i])
    else:
        gs = [g]
    cls = type(n)
    if create_graph or cls.array_backward:
        out = cls.backward(n, *gs)
    else:
        _local.unpack = 1
        try:
            out = cls.backward(n, *[T._wrap(x) for x in gs])
        finally:
            _local.unpack = 0
    if type(out) is not tuple:
        out = (out,)
    if len(out) != len(n.edges):
        raise GraphError(_count_message(n, len(out)))
    if not cls.array_backward:  # a user's backward: check what it returned
        out = tuple(_checked_grad(n, i, e, o, create_graph)
                    for i, (e, o) in enumerate(zip(n.edges, out)))
    elif create_graph:
        out = tuple(o if o is None or isinstance(o, T) else T._wrap(o) for o in out)
    return out


def _count_message(n: Function, got: int) -> str:
    return (f"{n.name}.backward returned {got} gradient(s) but the op has "
            f"{len(n.edges)} input(s); return one gradient (or None) per input")


def _checked_grad(n: Function, i: int, e: Any, o: Any, create_graph: bool) -> Any:
    """A user backward's gradient for input ``i``, as the engine needs it."""
    T = fn_mod._Tensor
    if o is None or e is None:
        return None
    raw = o._data if isinstance(o, T) else o
    if not hasattr(raw, "shape"):
        raise GraphError(f"{n.name}.backward returned a {type(o).__name__} for input {i}; "
                         "expected a Tensor, an array or None")
    if isinstance(e, T):
        shape, dtype = e.shape, e.dtype
    else:
        shape, dtype = e[0].out_meta[e[1]]
    if tuple(raw.shape) != tuple(shape):
        raise ShapeError(
            f"{n.name}.backward returned a gradient of shape {tuple(raw.shape)} for "
            f"input {i}, whose shape is {tuple(shape)}")
    if create_graph:
        o = o if isinstance(o, T) else T._wrap(o)
        return o if o.dtype == dtype else o.astype(dtype)
    return raw if raw.dtype == dtype else raw.astype(dtype)
