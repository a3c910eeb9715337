"""From tape records to a picture made of plain strings.

A record becomes an op node (a box) and one tensor node per output (an ellipse);
each input edge of the record becomes an arrow from the input's node. Node ids
follow the Wengert list: ``op3`` is record ``#3``, ``v3`` its output (``v3_1`` the
second output of a multi-output op), ``x0``... the leaves, ``c3_1`` the constant
input 1 of record ``#3``.

The builder reads records and tensors; the finished ``Picture`` holds only
strings, so a drawing cannot keep a record or a tensor alive.

Backward ops: ``draw_derivation`` tells the two passes apart by itself. Elsewhere a
record counts as a backward op when it carries ``backward_of`` (the ``#seq`` of the
forward record whose backward made it): an engine that sets this tag while running
a ``create_graph`` backward gets those ops drawn as such, with a line saying which
forward op they differentiate. Without the tag they are drawn as ordinary ops.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..autograd.function import NO_GRAD
from ..autograd.engine import edge_of
from ..tensor import Tensor
from . import labels
from .scopes import common_scope
from .styles import TENSOR_KINDS


@dataclass
class Node:
    """One node of the picture: its kind (the style), label lines and placement."""

    id: str
    kind: str
    lines: list[str]
    fields: list[str] = field(default_factory=list)
    phase: str | None = None  # "forward" or "backward" in a derivation, else None
    scope: str | None = None  # dotted path of the module it ran in (None: no module)
    producer: str | None = None  # for a tensor made by an op: that op's node id
    root: bool = False


@dataclass
class Picture:
    """Nodes, edges ``(src, dst, kind)`` and the class names seen at each module path."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    scope_kinds: dict[str, str] = field(default_factory=dict)
    #: ``(left, right)``: two nodes drawn side by side, left first (forward on the left)
    side_by_side: tuple[str, str] | None = None
    #: extra DOT attributes for some edges ``(src, dst)``, replacing their kind's style
    edge_attrs: dict[tuple[str, str], str] = field(default_factory=dict)
    #: the name of the output being differentiated, for the legend's ``dL/dv``
    top: str = "L"


#: leaf kinds that belong to the module using them (folded away with it by ``collapse``)
OWNED_KINDS = frozenset({"param", "const"})


_MISSING = object()


def constant_value(c: Any) -> Any:
    """The value of a constant a record kept (``_MISSING`` if it kept only a description)."""
    if isinstance(c, weakref.ref):
        c = c()
        if c is None:
            return _MISSING
    if isinstance(c, Tensor):
        return c.data
    if isinstance(c, tuple) and c and c[0] == "array":
        return _MISSING
    return c


def leaf_kind(t: Any) -> str:
    """``param`` for an ``nn.Parameter``, ``input`` for another leaf that requires grad,
    ``tensor`` for one that does not (drawn on its own: ops keep those as constants)."""
    if type(t).__name__ == "Parameter":
        return "param"
    return "input" if t.requires_grad else "tensor"


class Builder:
    """Walks records oldest first and adds their nodes and edges to a ``Picture``.

    ``names`` is the Wengert-list naming (``Tape.var_name``). ``derivative``,
    ``data`` and ``grad`` map a value -- ``(record, out_index)`` for an op output,
    ``id(tensor)`` for a tensor -- to a ``dL/dv`` label, its data or its gradient;
    a derivation uses them to label the backward graph. ``leaf_grads=False`` shows
    only those gradients, not the ``.grad`` of leaves.
    """

    def __init__(self, names: Callable[[Any], str], *, number: Callable[[Any], int],
                 show_values: bool, show_grads: bool,
                 value_limit: int, leaf_grads: bool = True,
                 phase_of: Callable[[Any], str | None] | None = None,
                 derivative: dict | None = None, data: dict | None = None,
                 grad: dict | None = None) -> None:
        self.pic = Picture()
        self.names = names
        # The picture numbers records 1, 2, ... like the Wengert list of ``mg.tape``, so
        # it reads (and its DOT text is) the same whatever ran before; ``record.seq``
        # keeps the global number.
        self.number = number
        self._by_seq: dict[int, int] = {}  # global seq -> number here (for backward_of)
        self.show_values = show_values
        self.show_grads = show_grads
        self.value_limit = value_limit
        self.leaf_grads = leaf_grads
        self.phase_of = phase_of
        self.derivative = derivative or {}
        self.extra_data = data or {}
        self.extra_grad = grad or {}
        self._leaf_ids: dict[int, str] = {}  # id(leaf tensor) -> node id
        # id(array) -> (array, node id) of drawn leaves; the array is held so its id
        # cannot be reused while the builder runs
        self._arrays: dict[int, tuple[Any, str]] = {}
        self._device: dict[str, str] = {}
        self._data: dict[str, Any] = {}  # node id -> array shown as "data ..."
        self._grad: dict[str, Any] = {}  # node id -> array (or None) shown as "grad ..."

    # ------------------------------------------------------------------ records
    def add_records(self, records: list[Any]) -> None:
        """Add ``records`` (oldest first); inputs made by records not in the list are cut."""
        nodes, edges = self.pic.nodes, self.pic.edges
        for rec in records:
            seq = self.number(rec)
            self._by_seq[rec.seq] = seq
            op_id = f"op{seq}"
            phase = self.phase_of(rec) if self.phase_of is not None else None
            made_by = getattr(rec, "backward_of", None)  # the optional engine tag (see above)
            kind = "backward_op" if phase == "backward" or made_by is not None else "op"
            lines = labels.op_lines(rec)
            lines.append(f"#{seq}" + (" (freed)" if rec.saved is None else ""))
            if made_by is not None:
                k = self._by_seq.get(made_by)
                lines.append(f"in backward of #{k}" if k is not None
                             else f"in backward of record seq {made_by}")
            scope = getattr(rec.module, "path", None)
            if scope is not None:
                self._note_scope(scope, getattr(rec.module, "kind", "?"))
            nodes[op_id] = Node(op_id, kind, lines, phase=phase, scope=scope)

            device = None
            for i, e in enumerate(rec.edges):
                if e.record is not None:
                    src = self._value_in((e.record, e.index))
                elif e.leaf is not None:
                    src = self.leaf(e.leaf)
                else:
                    src = self._const(rec, i)
                edges.append((src, op_id, ""))
                device = device or self._device.get(src)
            if "device" in (rec.params or {}):  # a move to another device (``t.to``)
                device = rec.params["device"]

            many = len(rec.out_meta) > 1
            for i, (shape, dtype) in enumerate(rec.out_meta):
                vid = f"v{seq}_{i}" if many else f"v{seq}"
                vkind = "grad" if (rec, i) in self.derivative else "value"
                nodes[vid] = Node(vid, vkind, self._value_lines((rec, i), shape, dtype, device),
                                  phase=phase, scope=scope, producer=op_id)
                if device:
                    self._device[vid] = device
                edges.append((op_id, vid, ""))
                self._extras(vid, (rec, i))
            if self.show_values:
                if rec.saved:
                    self._saved_values(rec)
                self._replay(rec)

    def value_id(self, rec: Any, i: int) -> str:
        """The node id of output ``i`` of ``rec``: ``v3`` (``v3_1`` for multi-output ops)."""
        k = self.number(rec)
        return f"v{k}_{i}" if len(rec.out_meta) > 1 else f"v{k}"

    def _value_lines(self, key: Any, shape: tuple, dtype: Any, device: str | None) -> list[str]:
        name = self.names(key)
        deriv = self.derivative.get(key)
        if deriv:
            return [deriv, f"{name}  {labels.shape_text(shape, dtype, device)}"]
        return [name, labels.shape_text(shape, dtype, device)]

    def _value_in(self, e: tuple) -> str:
        """The node of an op output used as an input; a dashed stub if it is not drawn."""
        rec, i = e
        vid = self.value_id(rec, i)
        if vid not in self.pic.nodes:
            shape, dtype = rec.out_meta[i]
            lines = self._value_lines(e, shape, dtype, None)
            lines.append("(history not drawn)")
            phase = self.phase_of(rec) if self.phase_of is not None else None
            self.pic.nodes[vid] = Node(vid, "cut", lines, phase=phase)
            self._extras(vid, e)
        return vid

    def leaf(self, t: Any, kind: str | None = None) -> str:
        """The node of a tensor without history (made once, however often it is used)."""
        nid = self._leaf_ids.get(id(t))
        if nid is not None:
            return nid
        nid = f"x{len(self._leaf_ids)}"
        self._leaf_ids[id(t)] = nid
        device = t.device
        shape = labels.shape_text(t.shape, t.dtype, device)
        deriv = self.derivative.get(id(t))
        name = self.names(t)
        if name == "?":  # the tape names only leaves that require grad, and roots
            name = t.name or "const"
        lines = [deriv, shape] if deriv else [name, shape]
        self.pic.nodes[nid] = Node(nid, kind or leaf_kind(t), lines)
        self._arrays.setdefault(id(t._data), (t._data, nid))
        self._device[nid] = device
        if self.show_values:
            self._data[nid] = t._data
        if self.show_grads and self.leaf_grads and t.requires_grad:
            self._grad[nid] = None if t.grad is None else t.grad._data
        self._extras(nid, id(t))
        return nid

    def _const(self, rec: Any, i: int) -> str:
        c = (rec.consts or {}).get(i)
        if callable(c) and not isinstance(c, Tensor):
            c = c()  # a weak reference
        if c is not None and id(c) in self.derivative:
            # A gradient with no history of its own (the seed, or one built from it)
            # enters the backward graph as a constant: show it as the derivative it is.
            return self.leaf(c, kind="grad")
        if isinstance(c, Tensor) and c.size > 1:
            # A tensor that does not require grad, like a batch of images: data that
            # comes in from outside, so it gets its own node outside the module boxes.
            # A backward op that reads it gets a fresh Tensor around the same array:
            # recognise the array, so the picture shows the one tensor it is.
            known = self._arrays.get(id(c._data))
            return known[1] if known is not None else self.leaf(c)
        cid = f"c{self.number(rec)}_{i}"
        self.pic.nodes[cid] = Node(cid, "const", [labels.const_text(rec, i)])
        return cid

    def _replay(self, rec: Any) -> None:
        """Recompute the outputs of ``rec`` from its inputs' values, for ``show_values``.

        The tape keeps only the values an op saved for backward; the others are found
        by running the op's forward again on its inputs' values (a primitive's forward
        is a pure function of its inputs and parameters). Ops whose forward does more
        (a fused layer that updates running statistics) are never replayed, and a
        value whose inputs are unknown stays unknown.
        """
        cls = type(rec)
        if not cls.__module__.startswith("minigrad.ops"):
            return
        arrays = []
        for i, e in enumerate(rec.edges):
            if e.record is not None:
                a = self._data.get(self.value_id(e.record, e.index))
            elif e.leaf is not None:
                a = e.leaf.data
            else:
                a = constant_value((rec.consts or {}).get(i, _MISSING))
            if a is _MISSING or a is None and e is not NO_GRAD:
                return
            arrays.append(a)
        try:
            out = cls.forward(object.__new__(cls), *arrays, **(rec.params or {}))
        except Exception:  # noqa: BLE001 - a value we cannot show is shown as not kept
            return
        outs = out if isinstance(out, tuple) else (out,)
        for i, a in enumerate(outs):
            self._data.setdefault(self.value_id(rec, i), a)

    def _saved_values(self, rec: Any) -> None:
        """Recover values the record saved for backward: inputs or outputs it kept."""
        for a, src in zip(rec.saved, rec.saved_from):
            if src is None or not hasattr(a, "shape"):
                continue
            if src < 0:
                nid = self.value_id(rec, -1 - src)
            else:
                p, j = rec.edges[src].record, rec.edges[src].index
                if p is None:
                    continue  # a leaf (its data is known) or a constant (its label shows it)
                nid = self.value_id(p, j)
            self._data.setdefault(nid, a)

    def _extras(self, nid: str, key: Any) -> None:
        if key in self.extra_data:
            self._data[nid] = self.extra_data[key]
        if self.show_grads and key in self.extra_grad:
            self._grad[nid] = self.extra_grad[key]

    def _note_scope(self, path: str, kind: str) -> None:
        known = self.pic.scope_kinds.get(path)
        if known is None:
            self.pic.scope_kinds[path] = kind
        elif kind not in known.split("/"):
            self.pic.scope_kinds[path] = f"{known}/{kind}"

    # -------------------------------------------------------------------- roots
    def add_root(self, t: Any, kind: str | None = None) -> str:
        """Mark ``t`` as a root: an output when it has history (or ``kind`` if given).

        Only leaves show a gradient: minigrad keeps no ``.grad`` for other tensors.
        """
        if t.grad_fn is None:
            nid = self.leaf(t, kind)
            if kind:
                self.pic.nodes[nid].kind = kind
        else:
            e = edge_of(t)
            nid = self._value_in((e.record, e.index))
            self.pic.nodes[nid].kind = kind or "output"
        self.pic.nodes[nid].root = True
        if self.show_values:
            self._data[nid] = t._data
        return nid

    # ------------------------------------------------------------------- finish
    def finish(self) -> Picture:
        """Place parameters and constants in their users' module; write the value fields.

        Other leaves (the inputs) stay outside every module box: they come from
        outside the model, even when only one layer reads them.
        """
        pic = self.pic
        users: dict[str, list[Node]] = {}
        for src, dst, _ in pic.edges:
            users.setdefault(src, []).append(pic.nodes[dst])
        for node in pic.nodes.values():
            if node.producer is not None or node.kind == "cut":
                continue
            used_by = users.get(node.id)
            if not used_by:
                continue
            if node.kind in OWNED_KINDS:
                node.scope = common_scope([u.scope for u in used_by])
            phases = {u.phase for u in used_by}
            node.phase = "forward" if "forward" in phases else next(iter(phases))
        if self.show_values or self.show_grads:
            for nid, node in pic.nodes.items():
                if node.kind not in TENSOR_KINDS:
                    continue  # ops, and constants (whose label is their value)
                fields = []
                if self.show_values:
                    a = self._data.get(nid)
                    text = ("(not kept)" if a is None
                            else labels.values_text(a, self.value_limit))
                    fields.append(f"data {text}")
                if self.show_grads and nid in self._grad:
                    g = self._grad[nid]
                    text = "None" if g is None else labels.values_text(g, self.value_limit)
                    fields.append(f"grad {text}")
                node.fields = fields
        return pic
