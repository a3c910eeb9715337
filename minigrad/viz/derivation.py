"""``draw_derivation``: the forward pass and the backward pass that differentiates it.

With ``create_graph=True`` the engine runs each op's ``backward`` in tensor ops, so
the gradients are themselves recorded on the tape: the backward pass is a graph
too. This module computes those gradients with ``mg.grad`` and draws both graphs
side by side.

How the two passes are told apart: the forward records are the ones reachable
from the output before ``mg.grad`` runs; every record ``mg.grad`` creates is newer
than all of them (sequence numbers only grow), so any newer record in the picture
belongs to the backward pass. A backward op that uses a forward value -- one saved
for backward, or a leaf -- gets a dashed arrow from it.

How gradient nodes get their ``dL/dv`` names: besides the inputs asked for, the
derivation asks ``mg.grad`` for the gradient of every forward value on the way to
them (handles made from the records, at no cost: the engine already computes them
and only hands them back). Each returned gradient is the very tensor the backward
pass used, so its node can be labelled with the forward value it is the
derivative of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..autograd.api import grad as mg_grad
from ..autograd.engine import collect, edge_of
from ..autograd.tape import Tape
from ..backend import xp_of
from ..creation import as_tensor
from ..errors import GraphError
from ..tensor import Tensor
from .draw import MAX_NODES, check_options, check_roots, fit, refuse_early
from .emit import emit
from .model import Builder, Node
from .output import DrawingTypeError, Graph


def draw_derivation(output: Any, inputs: Any, grad_output: Any = None, *,
                    show_values: bool = False, show_grads: bool = False, rankdir: str = "TB",
                    collapse: Any = None, value_limit: int = 6,
                    title: str | None = None, legend: bool = True,
                    max_nodes: int | None = MAX_NODES) -> Graph:
    """Draw how ``d output / d inputs`` is computed: forward and backward side by side.

    The gradients are computed here with ``mg.grad(output, inputs,
    create_graph=True, retain_graph=True)``: no ``.grad`` is touched and the forward
    graph stays usable. The "forward" cluster is the graph of ``output``; the
    "backward" cluster is the graph of the gradients, with each gradient labelled
    as the derivative it holds (``dL/dx``, ``dL/dv3``; ``L`` is the output's name
    when it has one). The backward pass starts at the seed (``dL/dL = 1``, or
    ``grad_output``), drawn as a double circle. Where the backward pass reads a value
    the forward pass saved, a small "saved x̂" note inside the backward cluster
    stands for it (a dashed red arrow goes from the note to the op that reads it),
    so no arrow crosses the forward graph. The forward cluster is always on the
    left; ``legend`` (on by default) adds a box explaining colours and shapes.

    ``inputs``: a Tensor or a list of Tensors (leaves or intermediate results).
    ``grad_output``: the seed gradient when ``output`` is not a single number.
    ``show_grads`` writes each forward tensor's derivative into it, micrograd
    style; the other options are those of ``draw_graph``.
    """
    T = Tensor
    if not isinstance(output, T):
        raise DrawingTypeError(f"draw_derivation: output must be a Tensor, got "
                               f"{type(output).__name__}")
    ins = check_roots("draw_derivation", (inputs,))
    rankdir = check_options("draw_derivation", rankdir, value_limit)
    if output.grad_fn is None:
        raise GraphError("draw_derivation: the output has no recorded history, so there is "
                         "nothing to differentiate; compute it from tensors created with "
                         "requires_grad=True, outside mg.no_grad()")

    forward = collect([output])  # newest first
    refuse_early("draw_derivation", forward * 3, max_nodes)  # backward: about twice as many
    is_forward = set(forward)
    last_forward = forward[0].seq

    seed = seed_tensor(output, grad_output)
    asked = {key_of(t) for t in ins}  # the engine keeps one gradient per value
    handles = [T._wrap(np.broadcast_to(np.zeros((), dtype=dtype), shape), rec, i)
               for rec in on_the_way(forward[::-1], ins)
               for i, (shape, dtype) in enumerate(rec.out_meta) if (rec, i) not in asked]
    grads = mg_grad(output, ins + handles, grad_outputs=seed, retain_graph=True,
                    create_graph=True, allow_unused=True)
    tape = Tape((output, *ins, *[g for g in grads if g is not None]))
    for k, g in enumerate(grads[: len(ins)]):
        if g is None:
            raise GraphError(f"draw_derivation: input {k} ({name_of(tape, ins[k])}) was not "
                             "used to compute the output, so it has no derivative to draw")

    top = output.name or "L"
    derivative: dict[Any, str] = {id(seed): f"d{top}/d{top}"}
    data: dict[Any, Any] = {}  # gradient value -> its array
    grad_of: dict[Any, Any] = {}  # forward value -> its gradient's array
    pairs = [(name_of(tape, t), key_of(t), g) for t, g in zip(ins, grads)]
    pairs += [(tape.var_name(key_of(h)), key_of(h), g)
              for h, g in zip(handles, grads[len(ins):])]
    for name, fwd_key, g in pairs:
        if g is None:
            continue
        gkey = key_of(g)
        text = f"d{top}/d{name}"
        old = derivative.get(gkey)
        if old is None:
            derivative[gkey] = text
        elif text not in old.split(" = "):
            derivative[gkey] = f"{old} = {text}"
        data[gkey] = g._data
        grad_of[fwd_key] = g._data
    del handles, pairs

    def phase_of(rec: Any) -> str:  # mg.grad's records are newer than the whole forward
        return "forward" if rec in is_forward or rec.seq <= last_forward else "backward"

    b = Builder(tape.var_name, number=tape.number, show_values=show_values, show_grads=show_grads,
                value_limit=value_limit, leaf_grads=False, phase_of=phase_of,
                derivative=derivative, data=data, grad=grad_of)
    b.add_records(tape.records)
    b.add_root(output)
    seed_id = b.leaf(seed, kind="seed")  # the very tensor the first VJP receives
    results = [b.add_root(g, kind="grad_output") for g in grads[: len(ins)]]
    pic = b.finish()
    for nid in results:
        pic.nodes[nid].phase = "backward"
    seed_node = pic.nodes[seed_id]
    seed_node.kind, seed_node.phase = "seed", "backward"
    one = grad_output is None
    seed_node.lines = ["seed", f"d{top}/d{top}" + (" = 1" if one else "")]
    stub_saved_values(pic)
    pic.top = top
    pic, title = fit("draw_derivation", pic, collapse, max_nodes, title)
    first = next((n.id for n in pic.nodes.values() if n.phase == "forward"), None)
    if first is not None:
        pic.side_by_side = (first, seed_id)
    return emit(pic, rankdir, title, legend)


def seed_tensor(output: Any, grad_output: Any) -> Any:
    """The gradient backward starts from, as a leaf the picture can draw.

    It requires grad, so the ops the backward pass applies to it are recorded too:
    every gradient in the picture then has a visible history back to the seed.
    """
    T = Tensor
    data = output.data
    xp = xp_of(data)
    if grad_output is None:
        if output.size != 1:
            raise GraphError(f"draw_derivation: the output has shape {tuple(output.shape)}, "
                             "not a single value; pass grad_output= (a tensor of the "
                             "output's shape) to say which vector-Jacobian product to draw")
        seed = xp.ones_like(data)
    else:
        g = grad_output.data if isinstance(grad_output, T) else grad_output
        seed = xp.asarray(g, dtype=data.dtype) * xp.ones_like(data)  # a copy, broadcast
    return as_tensor(seed).requires_grad_()


def stub_saved_values(pic: Any) -> None:
    """Draw each forward value the backward pass reads as a "saved ..." note inside the
    backward cluster, instead of an arrow that would cross the forward graph.

    A backward op reading a forward value reads what forward saved. Which pass an op
    is in is asked of its phase, not its kind: when the output drawn is itself a
    gradient, its forward ops were made by a backward and have the backward kind.
    """
    nodes = pic.nodes
    stubs: dict[str, str] = {}
    edges = []
    for s, d, k in pic.edges:
        if nodes[d].phase == "backward" and nodes[s].phase == "forward":
            stub = stubs.get(s)
            if stub is None:
                stub = stubs[s] = f"saved_{s}"
                name = nodes[s].lines[0]
                nodes[stub] = Node(stub, "saved", [f"saved {name}"], phase="backward")
            edges.append((stub, d, "saved"))
        else:
            edges.append((s, d, k))
    pic.edges = edges


def key_of(t: Any) -> Any:
    """How the picture knows a value: ``(record, index)`` for op outputs, else ``id``."""
    e = edge_of(t)
    return (e.record, e.index) if e.record is not None else id(t)


def name_of(tape: Tape, t: Any) -> str:
    return tape.var_name(edge_of(t))


def on_the_way(records: list, ins: Sequence[Any]) -> list:
    """The records (oldest first) through which a gradient reaches one of ``ins``.

    These are exactly the records whose backward ``mg.grad`` runs, so asking for
    their outputs' gradients as well changes nothing in what it computes.
    """
    leaves = {id(t) for t in ins if t.grad_fn is None}
    values = {key_of(t) for t in ins if t.grad_fn is not None}
    useful: set = set()
    for rec in records:
        if any((rec, i) in values for i in range(len(rec.out_meta))) or any(
                e.record in useful if e.record is not None else id(e.leaf) in leaves
                for e in rec.edges):
            useful.add(rec)
    return [rec for rec in records if rec in useful]
