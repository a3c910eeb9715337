"""``collapse=``: fold module instances into single boxes so a big model stays readable."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .output import DrawingTypeError, DrawingValueError
from .model import OWNED_KINDS, Node, Picture
from .scopes import ancestors, depth, parent, scope_label


def chosen_paths(spec: Any, kinds: dict[str, str]) -> set[str]:
    """The module paths that ``collapse=spec`` folds (outermost ones win later)."""
    if spec is None:
        return set()
    every = {a for p in kinds for a in ancestors(p)}
    if isinstance(spec, bool) or not isinstance(spec, (int, str, Iterable)):
        raise DrawingTypeError(f"collapse: expected a set of module class names or a depth (int), "
                        f"got {type(spec).__name__}")
    if isinstance(spec, int):
        if spec < 0:
            raise DrawingValueError(f"collapse: a depth must be 0 or more, got {spec} "
                             "(0 folds the outermost module into one box)")
        return {p for p in every if depth(p) == spec}
    names = {spec} if isinstance(spec, str) else set(spec)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise DrawingTypeError(f"collapse: module class names must be strings, got {bad[0]!r}")
    if not names:
        return set()
    seen = {k for v in kinds.values() for k in v.split("/")}
    unknown = sorted(names - seen)
    if unknown:
        where = (f"the module classes that recorded ops here are {', '.join(sorted(seen))}"
                 if seen else "no op in this graph ran inside a module")
        raise DrawingValueError(
            f"collapse: no op in this graph ran directly inside a module of class "
            f"{', '.join(map(repr, unknown))}; {where}. (A container whose children do "
            f"all the work has no ops of its own: fold it by depth, e.g. collapse=1.)")
    return {p for p, k in kinds.items() if names & set(k.split("/"))}


def collapse(pic: Picture, spec: Any) -> None:
    """Fold every chosen module instance into one box, in place.

    Arrows from outside into the module go to the box; tensors the module makes and
    something outside uses (or that are roots) stay visible, with an arrow from the
    box. Everything else inside -- ops, intermediate tensors, parameters and
    constants used only there -- is hidden; the box's label counts the ops.
    """
    chosen = chosen_paths(spec, pic.scope_kinds)
    if not chosen:
        return
    nodes = pic.nodes
    group: dict[str, str] = {}  # hidden node id -> id of the box that replaces it
    boxes: dict[tuple, Node] = {}  # (phase, module path) -> its box
    by_id: dict[str, Node] = {}
    ops: dict[str, int] = {}
    for node in list(nodes.values()):
        if node.producer is not None or node.scope is None or not node.kind.endswith("op"):
            continue
        top = next((a for a in ancestors(node.scope) if a in chosen), None)
        if top is None:
            continue
        key = (node.phase, top)
        box = boxes.get(key)
        if box is None:
            bid = f"m{len(boxes)}"
            box = boxes[key] = by_id[bid] = Node(
                bid, "module", [scope_label(top, pic.scope_kinds)], phase=node.phase,
                scope=parent(top))
            ops[bid] = 0
        ops[box.id] += 1
        group[node.id] = box.id

    users: dict[str, list[str]] = {}
    for src, dst, _ in pic.edges:
        users.setdefault(src, []).append(dst)
    kept_outputs: dict[str, str] = {}  # visible tensor made inside -> its box
    for node in list(nodes.values()):
        if node.id in group:
            continue
        if node.producer is not None:
            box_id = group.get(node.producer)
            if box_id is None:
                continue
            if node.root or any(group.get(d) != box_id for d in users.get(node.id, ())):
                kept_outputs[node.id] = box_id
                node.scope = by_id[box_id].scope
            else:
                group[node.id] = box_id
        elif node.kind in OWNED_KINDS and not node.root:
            inside = {group.get(d) for d in users.get(node.id, ())}
            if len(inside) == 1 and None not in inside:
                group[node.id] = inside.pop()  # a parameter or constant used only inside

    edges = []
    seen = set()
    for src, dst, kind in pic.edges:
        s, d = group.get(src, src), group.get(dst, dst)
        if s == d or kept_outputs.get(src) == d:
            continue  # inside one box, or a kept output feeding its own module again
        if (s, d, kind) not in seen:
            seen.add((s, d, kind))
            edges.append((s, d, kind))
    pic.edges = edges
    for nid in group:
        del nodes[nid]
    for box in by_id.values():
        n = ops[box.id]
        box.lines.append(f"{n} op" + ("" if n == 1 else "s"))
        nodes[box.id] = box
