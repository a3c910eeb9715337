"""Writing a ``Picture`` as DOT, with clusters for the passes and the modules.

The lines are written straight into the ``graphviz.Digraph`` body: building a graph
of thousands of ops this way takes a few milliseconds per thousand nodes, several
times faster than calling ``Digraph.node`` for each.
"""

from __future__ import annotations

from .labels import escape, escape_html, label
from .model import Node, Picture
from .output import Graph
from .scopes import ancestors, scope_label
from .styles import (
    CLUSTER_STYLE,
    EDGE_ATTRS,
    EDGE_STYLES,
    GRAPH_ATTRS,
    MEANING,
    MODULE_FILLS,
    NODE_ATTRS,
    STYLES,
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


def emit(pic: Picture, rankdir: str = "TB", title: str | None = None,
         legend: bool = False) -> Graph:
    """The DOT text of ``pic`` in a ``Graph``; clusters nest like the locations.

    ``legend`` adds one box that explains the colours and shapes the picture uses.
    """
    graph_attrs = dict(GRAPH_ATTRS, rankdir=rankdir)
    if pic.side_by_side:
        graph_attrs["newrank"] = "true"  # lets a rank=same group span two clusters
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

    if pic.side_by_side:
        # Two invisible points, one in each cluster, on one rank and joined by an
        # invisible edge: the first cluster is laid out left of the second (forward
        # left, backward right). Points, because Graphviz refuses such a flat edge
        # next to a node drawn as a record.
        for k, nid in enumerate(pic.side_by_side):
            where = (("phase", pic.nodes[nid].phase),) if pic.nodes[nid].phase else ()
            anchor = f"\t_side{k} [shape=point style=invis width=0 height=0 label=\"\"]\n"
            members.setdefault(where, []).append(anchor)
    children: dict[tuple, list[tuple]] = {}
    for where in members:
        if where:
            children.setdefault(where[:-1], []).append(where)
    g.body.extend(members[()])
    write_clusters(g.body, (), members, children, pic.scope_kinds, "\t", [0])
    special = pic.edge_attrs
    g.body.extend(f"\t{s} -> {d}{special.get((s, d)) or EDGE_STYLES[k]}\n"
                  for s, d, k in pic.edges)
    if pic.side_by_side:
        g.body.append("\t{rank=same; _side0; _side1}\n")
        g.body.append("\t_side0 -> _side1 [style=invis]\n")
    if legend:
        g.body.append(legend_line(pic))
    return g


def legend_line(pic: Picture) -> str:
    """A node whose HTML label shows, for each kind drawn, its look and its meaning."""
    kinds = {n.kind for n in pic.nodes.values()}
    if any(k == "saved" for _, _, k in pic.edges):
        kinds.add("saved")
    rows = []
    for kind, meaning in MEANING.items():
        if kind not in kinds:
            continue
        style = STYLES[kind]
        fill = style.get("fillcolor", "white")
        border = ' style="dashed"' if "dashed" in style.get("style", "") else ""
        rows.append(f'<tr><td bgcolor="{fill}" width="22"{border}> </td>'
                    f'<td align="left">{escape_html(meaning.replace("dL/", f"d{pic.top}/"))}'
                    '</td></tr>')
    if pic.edge_attrs:
        rows.append('<tr><td><font color="#c0392b">&lt;===</font></td>'
                    '<td align="left">the gradient it sends to an input</td></tr>')
    if any(k == "saved" for _, _, k in pic.edges):
        rows.append('<tr><td><font color="#c0392b">- - &gt;</font></td>'
                    '<td align="left">backward reads a saved value</td></tr>')
    if not rows:
        return ""
    table = ('<table border="0" cellborder="1" cellspacing="2" cellpadding="2">'
             '<tr><td colspan="2"><b>legend</b></td></tr>' + "".join(rows) + "</table>")
    return f"\tlegend [label=<{table}> shape=plaintext fontsize=9 class=legend]\n"


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
