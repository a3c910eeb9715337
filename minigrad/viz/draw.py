"""``draw_graph``: a picture of the recorded operations behind some tensors."""

from __future__ import annotations

from typing import Any

from ..autograd import function as fn_mod
from ..autograd.tape import Tape
from .collapse import collapse as fold
from .emit import emit
from .model import Builder
from .output import Graph

RANKDIRS = ("TB", "LR", "BT", "RL")


def draw_graph(*roots: Any, show_values: bool = False, show_grads: bool = False,
               rankdir: str = "TB", collapse: Any = None, max_depth: int | None = None,
               value_limit: int = 6, title: str | None = None, legend: bool = False) -> Graph:
    """Draw the forward graph that produced ``roots`` (one or more Tensors).

    Boxes are ops, labelled like the Wengert list of ``mg.tape(*roots)``: the op and
    its parameters (``sum(axis=0)``) over its record number (``#3``). Ellipses are
    tensors: their name (``v3`` for the output of record ``#3``, ``x0``... for
    unnamed leaves), shape and dtype, and the device when it is not the CPU.
    Colours tell the kinds apart: blue for inputs (leaves that require grad),
    yellow for parameters (``nn.Parameter``), grey ellipses for tensors that do not
    require grad (a batch of data), grey notes for the numbers and small constants
    an op was given, green for the roots. A gradient made with ``create_graph=True``
    is drawn like any tensor; see ``draw_derivation`` for both passes side by side.

    ``show_values`` / ``show_grads``: write ``data ...`` / ``grad ...`` into each
    tensor (up to ``value_limit`` numbers, else the first and last two). The tape
    only keeps the intermediate values an op saved for backward: others read
    ``data ?``. Only leaves have a ``.grad``.
    ``rankdir``: ``"TB"`` (top to bottom), ``"LR"``, ``"BT"`` or ``"RL"``.
    ``collapse``: module class names (``{"BatchNorm2d"}``) or a depth (``1`` folds
    every child of the outermost module) to draw those module instances as one box.
    ``max_depth``: draw only the last ``max_depth`` ops before the roots; older
    inputs show as dashed stubs. ``title``: a caption above the picture.
    ``legend``: add a box explaining the colours and shapes used.

    Returns a ``Graph`` (a ``graphviz.Digraph``): it shows itself in Jupyter,
    ``.source`` is the DOT text, ``mg.viz.save(graph, "g.svg")`` writes a file.
    Drawing changes nothing: no ``.grad``, no freeing, no reference kept.
    """
    roots = check_roots("draw_graph", roots)
    rankdir = check_options("draw_graph", rankdir, value_limit)
    if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int)
                                  or max_depth < 0):
        raise ValueError(f"draw_graph: max_depth must be None or an int >= 0, got {max_depth!r}")
    tape = Tape(roots)
    records = tape.records
    if max_depth is not None:
        records = within_depth(records, roots, max_depth)
    b = Builder(tape.var_name, number=tape.number, show_values=show_values, show_grads=show_grads,
                value_limit=value_limit)
    b.add_records(records)
    for r in roots:
        b.add_root(r)
    pic = b.finish()
    fold(pic, collapse)
    return emit(pic, rankdir, title, legend)


def check_roots(fn: str, roots: tuple) -> list:
    """Roots as a list of distinct Tensors; a list or tuple of them is unpacked too."""
    if len(roots) == 1 and isinstance(roots[0], (list, tuple)):
        roots = tuple(roots[0])
    if not roots:
        raise TypeError(f"{fn}: expected at least one Tensor to draw")
    T = fn_mod._Tensor
    out: list = []
    for k, r in enumerate(roots):
        if not isinstance(r, T):
            shown = repr(r)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise TypeError(f"{fn}: expected Tensors, but argument {k} is a "
                            f"{type(r).__name__}: {shown}")
        if not any(r is o for o in out):
            out.append(r)
    return out


def check_options(fn: str, rankdir: Any, value_limit: Any) -> str:
    """The validated ``rankdir`` (upper case)."""
    if not isinstance(rankdir, str) or rankdir.upper() not in RANKDIRS:
        raise ValueError(f"{fn}: rankdir must be one of {', '.join(RANKDIRS)}, got {rankdir!r}")
    if isinstance(value_limit, bool) or not isinstance(value_limit, int) or value_limit < 1:
        raise ValueError(f"{fn}: value_limit must be an int >= 1, got {value_limit!r}")
    return rankdir.upper()


def within_depth(records: list, roots: list, max_depth: int) -> list:
    """The records at most ``max_depth`` ops away from a root (the root's op is 1 away)."""
    far = max_depth + 1
    dist: dict[Any, int] = {}
    for r in roots:
        if r.grad_fn is not None:
            dist[r.grad_fn] = 1
    for rec in reversed(records):  # newest first: every user before what it uses
        d = dist.get(rec, far)
        if d >= max_depth:
            continue
        for e in rec.edges:
            if e.record is not None and dist.get(e.record, far) > d + 1:
                dist[e.record] = d + 1
    return [rec for rec in records if dist.get(rec, far) <= max_depth]
