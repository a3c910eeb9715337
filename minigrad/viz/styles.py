"""One look per kind of node, so a picture can be read at a glance.

Each node also carries its kind as the SVG ``class`` attribute, so a notebook can
restyle the pictures with CSS and a test can find nodes by kind.
"""

from __future__ import annotations

#: kind -> DOT attributes (besides the label)
STYLES: dict[str, dict[str, str]] = {
    # operations: boxes
    "op": {"shape": "box", "style": "rounded,filled", "fillcolor": "#e8e8e8"},
    "backward_op": {"shape": "box", "style": "rounded,filled", "fillcolor": "#f9d5dc"},
    "module": {"shape": "box3d", "style": "filled", "fillcolor": "#d6e4f5"},
    # tensors: ellipses (records when they show values)
    "value": {"shape": "ellipse", "style": "filled", "fillcolor": "white"},
    "input": {"shape": "ellipse", "style": "filled", "fillcolor": "#bfdcff"},
    "param": {"shape": "ellipse", "style": "filled,bold", "fillcolor": "#ffe08a"},
    "const": {"shape": "note", "style": "filled", "fillcolor": "#f2f2f2",
              "fontcolor": "#555555", "fontsize": "9"},
    "tensor": {"shape": "ellipse", "style": "filled", "fillcolor": "#f2f2f2"},
    "output": {"shape": "ellipse", "style": "filled,bold", "fillcolor": "#b8ecb3",
               "penwidth": "2"},
    "grad": {"shape": "ellipse", "style": "filled", "fillcolor": "#fde6ea"},
    "grad_output": {"shape": "ellipse", "style": "filled,bold", "fillcolor": "#f7a8b8",
                    "penwidth": "2"},
    "cut": {"shape": "ellipse", "style": "dashed", "fontcolor": "#555555"},
    # where the backward pass starts: dL/dL = 1 (or the grad_output given)
    "seed": {"shape": "doublecircle", "style": "filled,bold", "fillcolor": "#f7a8b8",
             "color": "#c0392b", "margin": "0.02"},
    # a value the forward pass saved, shown where backward reads it
    "saved": {"shape": "note", "style": "filled,dashed", "fillcolor": "#fff5f5",
              "color": "#c0392b", "fontcolor": "#7b241c", "fontsize": "9"},
    # one op of the picture a stepper is showing, and what it is done with
    "current": {"shape": "box", "style": "rounded,filled,bold", "fillcolor": "#ffd54f",
                "color": "#e65100", "penwidth": "3"},
    "done": {"shape": "box", "style": "rounded,filled", "fillcolor": "#f4f4f4",
             "color": "#bbbbbb", "fontcolor": "#999999"},
    "received": {"shape": "ellipse", "style": "filled,bold", "fillcolor": "#ffe9a8",
                 "color": "#e65100"},
}

#: what each kind means, for the legend (in this order)
MEANING: dict[str, str] = {
    "input": "input (requires grad)",
    "param": "parameter",
    "tensor": "data (no grad)",
    "const": "constant given to an op",
    "op": "op of the forward pass (#k: its number)",
    "value": "value an op made",
    "output": "output",
    "module": "module folded into one box",
    "cut": "history not drawn",
    "seed": "seed: where backward starts",
    "backward_op": "op of the backward pass",
    "saved": "value saved by forward, read by backward",
    "grad": "gradient dL/dv",
    "grad_output": "gradient asked for",
    "current": "op whose VJP runs in this step",
    "received": "the gradient it receives",
    "done": "op whose VJP already ran",
}

#: edge kind -> DOT attributes; "" is an ordinary data-flow edge
EDGE_STYLES: dict[str, str] = {
    "": "",
    # A backward op reading a forward value. constraint=false keeps the two passes
    # laid out side by side instead of stretching one to line up with the other.
    "saved": ' [style=dashed color="#c0392b" class=saved]',
}

#: tensor kinds whose node becomes a record when values or gradients are shown
TENSOR_KINDS = frozenset({"value", "input", "param", "tensor", "output", "grad", "grad_output",
                          "cut", "seed", "received"})

GRAPH_ATTRS = {"fontname": "Helvetica", "fontsize": "11", "nodesep": "0.25",
               "ranksep": "0.35"}
NODE_ATTRS = {"fontname": "Helvetica", "fontsize": "10", "height": "0.3"}
EDGE_ATTRS = {"arrowsize": "0.6", "color": "#444444", "fontname": "Helvetica"}
CLUSTER_STYLE = {
    "forward": 'style="rounded" color="#2e7d32" fontcolor="#2e7d32"',
    "backward": 'style="rounded" color="#c0392b" fontcolor="#c0392b"',
    "module": 'style="rounded,filled" color="#7a9cc6" fontcolor="#2b4c7e"',
}
#: module boxes alternate shades by nesting depth, so nested boxes stand apart
MODULE_FILLS = ("#eef4fb", "#f9fbfe")


def attrs(kind: str, record: bool) -> str:
    """The DOT attribute text for a node of ``kind`` (``record``: it shows fields)."""
    style = dict(STYLES[kind])
    if record:
        style["shape"] = "Mrecord"
    parts = [f'{k}="{v}"' for k, v in style.items()]
    parts.append(f"class={kind}")
    return " ".join(parts)
