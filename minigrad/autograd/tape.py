"""`mg.tape(*roots)`: the recorded operations behind some tensors, as a Wengert list.

The tape is not a global list: each record points to the records of its inputs,
so the tape of some roots is every record reachable from them, in the order the
sequence numbers give (execution order). Records that nothing refers to any more
are freed by Python like any other object, so the tape never grows without bound.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ArgumentTypeError
from . import function as fn_mod
from .engine import collect
from .function import NO_GRAD, Edge, Function


def _fmt_shape(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _fmt_param(v: Any) -> str:
    if hasattr(v, "shape") and getattr(v, "size", 2) > 1:
        return f"array{_fmt_shape(tuple(v.shape))}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt_param(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, slice):
        parts = ["" if p is None else str(p) for p in (v.start, v.stop, v.step)]
        return ":".join(parts[:2] if v.step is None else parts)
    if v is Ellipsis:
        return "..."
    if hasattr(v, "name") and hasattr(v, "itemsize"):
        return str(v)  # a dtype
    return repr(v)


def const_text(rec: Function, i: int, number: Callable[[Any], str] = repr) -> str:
    """How the constant input ``i`` of ``rec`` reads: its value if it is a number,
    else its name or ``const(shape)``; ``const`` once a weakly held one is gone; ``None``
    for an input passed as None (e.g. batch_norm without running statistics)."""
    consts = rec.consts or {}
    if i in consts and consts[i] is None:
        return "None"
    c = consts.get(i)
    T = fn_mod._Tensor
    if isinstance(c, weakref.ref):
        c = c()
    if isinstance(c, T):
        return number(c.item()) if c.size == 1 else c.name or f"const{_fmt_shape(c.shape)}"
    if isinstance(c, tuple) and c and c[0] == "array":
        return f"const{_fmt_shape(tuple(c[1]))}"
    if c is None:
        return "const"
    return number(c.item()) if hasattr(c, "item") else repr(c)


class Tape:
    """The records leading to some roots, oldest first. Iterate it, index it, print it."""

    def __init__(self, roots: tuple) -> None:
        T = fn_mod._Tensor
        for r in roots:
            if not isinstance(r, T):
                raise ArgumentTypeError(f"tape: expected Tensors, got {type(r).__name__}")
        self.roots = roots
        self.records: list[Function] = collect(roots)[::-1]
        # Numbers local to this tape (1, 2, ...): a printout reads the same whatever ran
        # before it. The global number stays on the record (``record.seq``).
        self._num = {rec: k for k, rec in enumerate(self.records, 1)}
        self._names: dict[Any, str] = {}
        leaf_count = 0
        for rec in self.records:
            for i, name in rec.out_names.items():
                if name:
                    self._names[(rec, i)] = name
            for e in rec.edges:
                if e.leaf is not None and e.leaf not in self._names:
                    self._names[e.leaf] = e.leaf.name or f"x{leaf_count}"
                    leaf_count += 1
        for r in roots:
            e = r._edge
            if r.name and e is not None:
                self._names[(e.record, e.index)] = r.name
            elif e is None and r not in self._names:
                self._names[r] = r.name or f"x{leaf_count}"
                leaf_count += 1

    def __iter__(self) -> Iterator[Function]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Function:
        return self.records[i]

    def number(self, rec: Function) -> int:
        """The record's number in this tape: 1 for the oldest (``rec.seq`` is global)."""
        return self._num.get(rec, rec.seq)

    def var_name(self, edge: Any) -> str:
        """The Wengert-list name of a value: ``v<k>`` for the output of this tape's record
        ``#k``, names for named values and leaves.

        ``edge`` is an `Edge`, a ``(record, output index)`` pair or a leaf Tensor.
        """
        if isinstance(edge, Edge):
            edge = edge.leaf if edge.record is None else (edge.record, edge.index)
        if type(edge) is tuple:
            node, idx = edge
            name = self._names.get(edge)
            if name:
                return name
            k = self.number(node)
            return f"v{k}" if len(node.out_meta) == 1 else f"v{k}.{idx}"
        return self._names.get(edge, "?")

    def line(self, rec: Function) -> str:
        """One Wengert-list line for ``rec``."""
        args = [self.var_name(e) if e is not NO_GRAD else const_text(rec, i)
                for i, e in enumerate(rec.edges)]
        params = [f"{k}={_fmt_param(v)}" for k, v in (rec.params or {}).items()]
        outs = ", ".join(self.var_name((rec, i)) for i in range(len(rec.out_meta)))
        meta = ", ".join(f"{_fmt_shape(tuple(s))} {d}" for s, d in rec.out_meta)
        where = f"  in {rec.module}" if rec.module is not None else ""
        freed = "  (freed)" if rec.saved is None else ""
        return (f"#{self.number(rec):<4d} {outs} = {rec.name}({', '.join(args + params)})"
                f"    # {meta}{where}{freed}")

    def __str__(self) -> str:
        if not self.records:
            return "<empty tape: the roots have no recorded history>"
        return "\n".join(self.line(r) for r in self.records)

    def __repr__(self) -> str:
        return f"<Tape of {len(self.records)} records>\n{self}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def tape(*roots: Any) -> Tape:
    """The recorded operations that lead to ``roots``, in execution order."""
    return Tape(roots)
