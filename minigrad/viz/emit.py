"""Writing a ``Picture`` as DOT, with clusters for the passes and the modules.

The lines are written straight into the ``graphviz.Digraph`` body: building a graph
of thousands of ops this way takes a few milliseconds per thousand nodes, several
times faster than calling ``Digraph.node`` for each.
"""

from __future__ import annotations

from .labels import escape, label
from .model import Node, Picture
from .output import Graph
from .scopes import ancestors, scope_label
from .styles import (
    CLUSTER_STYLE,
    EDGE_ATTRS,
    EDGE_STYLES,
    GRAPH_ATTRS,
    MODULE_FILLS,
    NODE_ATTRS,
    TENSOR_KINDS,
    attrs,
)


def location(node: Node, kinds: dict[str, str]) -> tuple:
    """The chain of clusters a node sits in, outermost first."""
    where: list[tuple] = []
    if node.phase is not None:
        where.append(("phase", node.phase))
    if node.scope is not None:
        for a in ancestors(node.scope):
            # The outermost path "" is only a box when we know the module's class.
            if a or a in kinds:
                where.append(("module", a))
    return tuple(where)


def emit(pic: Picture, rankdir: str = "TB", title: str | None = None) -> Graph:
    """The DOT text of ``pic`` in a ``Graph``; clusters nest like the locations."""
    graph_attrs = dict(GRAPH_ATTRS, rankdir=rankdir)
    g = Graph(name="minigrad", graph_attr=graph_attrs, node_attr=NODE_ATTRS,
              edge_attr=EDGE_ATTRS)
    if title:  # written here, quoted by `escape` like every label (not by graphviz's rules)
        g.body.append(f'\tlabel="{escape(title)}" labelloc=t\n')
    horizontal = rankdir in ("TB", "BT")
    style_cache: dict[tuple, str] = {}
    members: dict[tuple, list[str]] = {(): []}
    places: dict[tuple, tuple] = {}  # (phase, scope) -> location, computed once each
    for node in pic.nodes.values():
        record = bool(node.fields) and node.kind in TENSOR_KINDS
        key = (node.kind, record)
        style = style_cache.get(key)
        if style is None:
            style = style_cache[key] = attrs(node.kind, record)
        text = label(node.lines, node.fields if record else [], horizontal)
        line = f"\t{node.id} [label={text} {style}]\n"
        where = places.get((node.phase, node.scope))
        if where is None:
            where = places[node.phase, node.scope] = location(node, pic.scope_kinds)
            for k in range(len(where) + 1):  # every enclosing cluster, outermost first
                members.setdefault(where[:k], [])
        members[where].append(line)

    children: dict[tuple, list[tuple]] = {}
    for where in members:
        if where:
            children.setdefault(where[:-1], []).append(where)
    g.body.extend(members[()])
    write_clusters(g.body, (), members, children, pic.scope_kinds, "\t", [0])
    g.body.extend(f"\t{s} -> {d}{EDGE_STYLES[k]}\n" for s, d, k in pic.edges)
    return g


def write_clusters(body: list, where: tuple, members: dict, children: dict,
                   kinds: dict[str, str], indent: str, counter: list[int]) -> None:
    """Append the clusters inside ``where`` to ``body``, depth first."""
    for child in children.get(where, ()):
        counter[0] += 1
        kind, name = child[-1]
        if kind == "phase":
            text, style = name, CLUSTER_STYLE[name]
        else:
            shade = MODULE_FILLS[sum(k == "module" for k, _ in child) % len(MODULE_FILLS)]
            text, style = scope_label(name, kinds), f'{CLUSTER_STYLE["module"]} fillcolor="{shade}"'
        body.append(f"{indent}subgraph cluster_{counter[0]} {{\n")
        body.append(f'{indent}\tlabel="{escape(text)}" {style}\n')
        body.extend(indent + line for line in members[child])
        write_clusters(body, child, members, children, kinds, indent + "\t", counter)
        body.append(f"{indent}}}\n")
