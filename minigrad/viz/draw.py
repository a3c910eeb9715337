"""``draw_graph``: a picture of the recorded operations behind some tensors."""

from __future__ import annotations

import copy
from typing import Any

from ..autograd.tape import Tape
from ..tensor import Tensor
from .collapse import collapse as fold
from .emit import emit
from .model import Builder, Picture
from .output import DrawingTypeError, DrawingValueError, Graph

RANKDIRS = ("TB", "LR", "BT", "RL")

#: the most nodes a picture may have before modules are folded or drawing is refused
MAX_NODES = 2000


class GraphTooLargeError(DrawingValueError):
    """A picture would have more nodes than ``max_nodes``; the message says what to do."""


def draw_graph(*roots: Any, show_values: bool = False, show_grads: bool = False,
               rankdir: str = "TB", collapse: Any = None, max_depth: int | None = None,
               value_limit: int = 6, title: str | None = None, legend: bool = False,
               max_nodes: int | None = MAX_NODES) -> Graph:
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
    ``max_nodes`` (``MAX_NODES``, 2000, by default): a bigger picture would take
    Graphviz minutes to lay out and be unreadable anyway. Above it, ops that ran
    inside modules are folded automatically (``collapse=1``, then ``collapse=0``)
    and the title says so; a graph that still does not fit raises
    ``GraphTooLargeError`` saying how to draw less. ``None`` lifts the limit.

    Returns a ``Graph`` (a ``graphviz.Digraph``): it shows itself in Jupyter,
    ``.source`` is the DOT text, ``mg.viz.save(graph, "g.svg")`` writes a file.
    Drawing changes nothing: no ``.grad``, no freeing, no reference kept.
    """
    roots = check_roots("draw_graph", roots)
    rankdir = check_options("draw_graph", rankdir, value_limit)
    if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int)
                                  or max_depth < 0):
        raise DrawingValueError(f"draw_graph: max_depth must be None or an int >= 0, "
                                f"got {max_depth!r}")
    tape = Tape(roots)
    records = tape.records
    if max_depth is not None:
        records = within_depth(records, roots, max_depth)
    refuse_early("draw_graph", records, max_nodes)
    b = Builder(tape.var_name, number=tape.number, show_values=show_values, show_grads=show_grads,
                value_limit=value_limit)
    b.add_records(records)
    for r in roots:
        b.add_root(r)
    pic = b.finish()
    pic, title = fit("draw_graph", pic, collapse, max_nodes, title)
    return emit(pic, rankdir, title, legend)


def too_large(fn: str, n: int, max_nodes: int, what: str = "nodes") -> GraphTooLargeError:
    return GraphTooLargeError(
        f"{fn}: this picture would have {n} {what}, more than max_nodes={max_nodes}; "
        "Graphviz would take minutes to lay it out, and it could not be read. Draw less: "
        "max_depth=k draws only the last k ops before the output, collapse=1 (or a set of "
        "module class names, e.g. {'BatchNorm2d'}) folds the ops that ran inside modules "
        "into boxes, or draw one layer's output instead of the loss. max_nodes=None "
        "lifts the limit.")


def refuse_early(fn: str, records: list, max_nodes: int | None) -> None:
    """Refuse before building anything when nothing could be folded: no op ran in a module."""
    if max_nodes is None:
        return
    check_max_nodes(fn, max_nodes)
    if len(records) > max_nodes and not any(rec.module is not None for rec in records):
        raise too_large(fn, len(records), max_nodes, "ops")


def check_max_nodes(fn: str, max_nodes: Any) -> None:
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise DrawingValueError(f"{fn}: max_nodes must be None or an int >= 1, "
                                 f"got {max_nodes!r}")


def fit(fn: str, pic: Picture, collapse: Any, max_nodes: int | None,
        title: str | None) -> tuple[Picture, str | None]:
    """Fold ``collapse``; past ``max_nodes``, fold modules by depth 1 then 0, or refuse."""
    fold(pic, collapse)
    if max_nodes is None or len(pic.nodes) <= max_nodes:
        return pic, title
    n = len(pic.nodes)
    if collapse is None and pic.scope_kinds:
        for depth in (1, 0):
            folded = copy_picture(pic)
            fold(folded, depth)
            if len(folded.nodes) <= max_nodes:
                note = (f"modules folded (collapse={depth}): the full picture has {n} nodes, "
                        f"more than max_nodes={max_nodes}")
                return folded, f"{title}\n{note}" if title else note
    raise too_large(fn, n, max_nodes)


def copy_picture(pic: Picture) -> Picture:
    """A copy that folding can change without touching ``pic`` (nodes copied one level)."""
    nodes = {k: copy.copy(n) for k, n in pic.nodes.items()}
    return Picture(nodes, list(pic.edges), dict(pic.scope_kinds), pic.side_by_side,
                   dict(pic.edge_attrs), pic.top)


def check_roots(fn: str, roots: tuple) -> list:
    """Roots as a list of distinct Tensors; a list or tuple of them is unpacked too."""
    if len(roots) == 1 and isinstance(roots[0], (list, tuple)):
        roots = tuple(roots[0])
    if not roots:
        raise DrawingTypeError(f"{fn}: expected at least one Tensor to draw")
    T = Tensor
    out: list = []
    for k, r in enumerate(roots):
        if not isinstance(r, T):
            shown = repr(r)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise DrawingTypeError(f"{fn}: expected Tensors, but argument {k} is a "
                            f"{type(r).__name__}: {shown}")
        if not any(r is o for o in out):
            out.append(r)
    return out


def check_options(fn: str, rankdir: Any, value_limit: Any) -> str:
    """The validated ``rankdir`` (upper case)."""
    if not isinstance(rankdir, str) or rankdir.upper() not in RANKDIRS:
        raise DrawingValueError(f"{fn}: rankdir must be one of {', '.join(RANKDIRS)}, "
                                f"got {rankdir!r}")
    if isinstance(value_limit, bool) or not isinstance(value_limit, int) or value_limit < 1:
        raise DrawingValueError(f"{fn}: value_limit must be an int >= 1, got {value_limit!r}")
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
