"""Backward, step by step: ``mg.viz.step_backward`` and ``mg.trace_backward``.

Both run the real engine once (``mg.grad`` with ``retain_graph=True``, so no
``.grad`` is touched and the graph stays usable) while a backward observer
(``mg.autograd.observers.observing_backward``) notes every VJP call: the record,
the gradients it received and the gradients it sent. The order and the values are
therefore the engine's own, not a re-enactment.

``trace_backward`` prints one line per VJP call. ``step_backward`` draws one
picture per call: the forward graph with the op whose VJP runs highlighted, the
gradient it receives written on it, the gradients it sends written on the arrows
to its inputs, and the ops already done greyed out.
"""

from __future__ import annotations

import html
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..autograd.api import grad as mg_grad
from ..autograd.function import NO_GRAD
from ..autograd.engine import unbroadcast
from ..autograd.observers import observing_backward
from ..autograd.tape import Tape
from ..errors import GraphError, IndexOutOfRangeError, MinigradError
from ..tensor import Tensor
from . import labels
from .draw import MAX_NODES, check_options, check_roots, copy_picture, refuse_early, too_large
from .emit import emit
from .model import Builder, Node, Picture
from .output import (RENDER_TIMEOUT, DrawingTypeError, DrawingValueError, Graph, run_dot,
                     write_atomic)


@dataclass
class Step:
    """One VJP call: the record, what it received (per output) and sent (per input)."""

    record: Any
    received: tuple
    sent: tuple  # per input: the gradient in the input's shape, or None


def observe_backward(fn: str, loss: Any, inputs: Any) -> tuple[Tape, list[Step], list]:
    """Run the engine on ``loss`` and note each VJP call, in the order it ran them."""
    T = Tensor
    if not isinstance(loss, T):
        raise DrawingTypeError(f"{fn}: loss must be a Tensor, got {type(loss).__name__}")
    if loss.grad_fn is None:
        raise GraphError(f"{fn}: the loss has no recorded history, so backward has no step "
                         "to show; compute it from tensors created with requires_grad=True")
    tape = Tape((loss,))
    if inputs is None:
        ins = leaves_of(tape)
    else:
        ins = check_roots(fn, (inputs,))
    steps: list[Step] = []

    def note(rec: Any, grads_in: tuple, grads_out: tuple) -> None:
        sent = tuple(None if g is None or e is NO_GRAD else fitted(g, e)
                     for e, g in zip(rec.edges, grads_out))
        steps.append(Step(rec, tuple(grads_in), sent))

    with observing_backward(note):
        grads = mg_grad(loss, ins, retain_graph=True, allow_unused=True)
    return tape, steps, list(zip(ins, grads))


def leaves_of(tape: Tape) -> list:
    """The leaves that require grad, in the order the tape first uses them."""
    out, seen = [], set()
    for rec in tape.records:
        for e in rec.edges:
            if e.leaf is not None and id(e.leaf) not in seen:
                seen.add(id(e.leaf))
                out.append(e.leaf)
    return out


def fitted(g: Any, e: Any) -> Any:
    """A VJP's gradient in its input's shape (the engine sums broadcast axes away too)."""
    g = g.data if isinstance(g, Tensor) else g
    return unbroadcast(g, tuple(e.shape)) if tuple(g.shape) != tuple(e.shape) else g


def value_name(tape: Tape, rec: Any, i: int) -> str:
    return tape.var_name((rec, i))


def input_name(tape: Tape, e: Any) -> str:
    return tape.var_name(e)


# --------------------------------------------------------------------- text trace
def trace_backward(loss: Any, inputs: Any = None, value_limit: int = 6) -> str:
    """The backward pass of ``loss`` as text: one line per VJP call, in the engine's order.

    Each line names the step, the record (numbered as in ``mg.tape(loss)``), the
    gradient it received for its output and the gradient it sent to each input
    (``dL/dv3 = [...]``; up to ``value_limit`` numbers each). ``inputs``: the
    tensors to differentiate with respect to (default: every leaf that requires
    grad). No ``.grad`` is touched and the graph is not freed.
    """
    tape, steps, results = observe_backward("trace_backward", loss, inputs)
    top = loss.name or "L"
    n = len(steps)
    width = len(str(n))
    lines = [f"backward of {tape.var_name((loss.grad_fn, 0)) if loss.name is None else top}:"
             f" {n} VJP calls, seed d{top}/d{top} = 1"]
    for k, st in enumerate(steps, 1):
        rec = st.record
        args = ", ".join(input_name(tape, e) if e is not NO_GRAD
                         else labels.const_text(rec, i) for i, e in enumerate(rec.edges))
        got = "; ".join(f"d{top}/d{value_name(tape, rec, i)} = "
                        f"{labels.values_text(g, value_limit, None)}"
                        for i, g in enumerate(st.received) if g is not None)
        sent = "; ".join(f"d{top}/d{input_name(tape, e)} += "
                         f"{labels.values_text(g, value_limit, None)}"
                         for e, g in zip(rec.edges, st.sent) if g is not None)
        lines.append(f"step {k:>{width}}/{n}  #{tape.number(rec)} {rec.name}({args})  "
                     f"receives {got}  sends {sent or 'nothing'}")
    for t, g in results:
        if g is not None:
            lines.append(f"result d{top}/d{tape.var_name(t)} = "
                         f"{labels.values_text(g.data, value_limit, None)}")
    return "\n".join(lines)


# --------------------------------------------------------------------- pictures
def draw_backward(loss: Any, inputs: Any = None, *, rankdir: str = "TB",
                  title: str | None = None, legend: bool = True,
                  max_nodes: int | None = MAX_NODES) -> Graph:
    """Draw the plain backward pass of ``loss``: one box per VJP call the engine makes.

    This is what ``loss.backward()`` runs (no ``create_graph``): starting from the
    seed, each box is one record's VJP, in the engine's order (``1.`` runs first),
    and an arrow carries the gradient of a value from the VJP that sends it to the
    VJP of the op that made the value, or to the gradient of a leaf. A fused op
    with a hand-derived gradient is one box; the same formula composed from
    primitives is one box per primitive. Compare ``draw_derivation``, which draws
    the ops *inside* each VJP as recorded under ``create_graph=True``.
    """
    refuse_early("draw_backward", Tape((loss,)).records if isinstance(loss, Tensor)
                 else [], max_nodes)
    tape, steps, results = observe_backward("draw_backward", loss, inputs)
    top = loss.name or "L"
    pic = Picture(top=top)
    nodes, edges = pic.nodes, pic.edges
    nodes["seed"] = Node("seed", "seed", ["seed", f"d{top}/d{top} = 1"])
    box_of = {}
    for k, st in enumerate(steps, 1):
        rec = st.record
        nid = f"vjp{tape.number(rec)}"
        box_of[rec] = nid
        how = ("hand-derived" if not type(rec).__module__.startswith("minigrad.ops")
               else "primitive")
        nodes[nid] = Node(nid, "backward_op", [f"{k}. VJP of {rec.name} #{tape.number(rec)}",
                                               how])
    wanted = {id(t): g for t, g in results}
    leaf_ids: dict[int, str] = {}
    for st in steps:
        rec = st.record
        src = box_of[rec]
        if st.record is loss.grad_fn:
            edges.append(("seed", src, ""))
        for e, g in zip(rec.edges, st.sent):
            if g is None:
                continue
            name = f"d{top}/d{tape.var_name(e)}"
            if e.record is not None:
                dst = box_of.get(e.record)
                if dst is None:
                    continue
            else:
                if id(e.leaf) not in wanted:
                    continue
                dst = leaf_ids.get(id(e.leaf))
                if dst is None:
                    dst = leaf_ids[id(e.leaf)] = f"leaf{len(leaf_ids)}"
                    nodes[dst] = Node(dst, "grad_output", [name, labels.shape_text(
                        tuple(e.shape), e.dtype)])
            pic.edges.append((src, dst, ""))
            pic.edge_attrs[(src, dst)] = f' [label="{labels.escape(name)}" fontsize=9]'
    return emit(pic, check_options("draw_backward", rankdir, 1), title, legend)


class BackwardStepper:
    """The frames of a backward pass: ``len(stepper)``, ``stepper[k]`` (a Graph),
    ``stepper.save(path)``; shows as a player in Jupyter."""

    def __init__(self, tape: Tape, steps: list[Step], top: str, rankdir: str,
                 value_limit: int, max_nodes: int | None = MAX_NODES) -> None:
        self.steps = steps
        self.top = top
        self.rankdir = rankdir
        self.value_limit = value_limit
        b = Builder(tape.var_name, number=tape.number, show_values=False, show_grads=False,
                    value_limit=value_limit)
        b.add_records(tape.records)
        root = b.add_root(tape.roots[0])
        self._base = b.finish()
        self._base.top = top
        if max_nodes is not None and len(self._base.nodes) > max_nodes:
            # Folding modules would hide the very ops whose steps are shown: refuse.
            raise too_large("step_backward", len(self._base.nodes), max_nodes)
        self._tape_lines = [tape.line(r) for r in tape.records]
        self._root = root
        # Everything a frame needs, as strings: node ids and texts, never records.
        self._ops = [f"op{tape.number(st.record)}" for st in steps]
        self._names = [f"#{tape.number(st.record)} {st.record.name}" for st in steps]
        self._outs = [[b.value_id(st.record, i) for i in range(len(st.received))]
                      for st in steps]
        self._ins = [[self._input_node(b, st.record, i) for i in range(len(st.sent))]
                     for st in steps]
        self._grad_names = [[value_name(tape, st.record, i) for i in range(len(st.received))]
                            for st in steps]
        self._input_names = [[input_name(tape, e) if e is not NO_GRAD else ""
                              for e in st.record.edges] for st in steps]
        self._received = [[None if g is None else labels.values_text(g, value_limit)
                           for g in st.received] for st in steps]
        self._sent = [[None if g is None else labels.values_text(g, value_limit)
                       for g in st.sent] for st in steps]
        self._svgs: dict[int, str] = {}

    @staticmethod
    def _input_node(b: Builder, rec: Any, i: int) -> str | None:
        e = rec.edges[i]
        if e.record is not None:
            return b.value_id(e.record, e.index)
        if e.leaf is not None:
            return b._leaf_ids.get(id(e.leaf))
        return None

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, k: int) -> Graph:
        n = len(self.steps)
        if isinstance(k, bool) or not isinstance(k, int):
            raise DrawingTypeError(f"step_backward: a frame index must be an int, got "
                            f"{type(k).__name__}")
        if not -n <= k < n:
            raise StepIndexError(f"step_backward: frame {k} does not exist; this backward "
                                 f"has {n} VJP calls, frames 0 to {n - 1}")
        return self.frame(k % n)

    def frame(self, k: int) -> Graph:
        """Picture ``k``: the op whose VJP runs now, with what it receives and sends."""
        pic = copy_picture(self._base)
        nodes = pic.nodes
        top = self.top
        for j in range(k):  # the ops whose VJP already ran
            done = nodes.get(self._ops[j])
            if done is not None:
                done.kind = "done"
        cur = nodes[self._ops[k]]
        cur.kind = "current"
        cur.lines = [*cur.lines, f"VJP step {k + 1} of {len(self)}"]
        for name, text, vid in zip(self._grad_names[k], self._received[k], self._outs[k]):
            if text is not None:
                nodes[vid].fields = [f"d{top}/d{name} = {text}"]
                nodes[vid].kind = "received"
        attrs: dict[tuple[str, str], str] = {}
        for src, name, text in zip(self._ins[k], self._input_names[k], self._sent[k]):
            if src is None or text is None:
                continue
            label = labels.escape(f"sends d{top}/d{name} += {text}")
            attrs[(src, self._ops[k])] = (f' [color="#c0392b" penwidth=2.5 dir=back '
                                          f'fontcolor="#c0392b" fontsize=9 label="{label}" '
                                          'class=sends]')
        pic.edge_attrs = attrs
        title = f"backward step {k + 1} of {len(self)}: the VJP of {self._names[k]}"
        return emit(pic, self.rankdir, title, legend=True)

    # ------------------------------------------------------------- showing
    def svg(self, k: int, timeout: float | None = RENDER_TIMEOUT) -> str:
        if k not in self._svgs:
            text = run_dot(self[k].source, "svg", timeout, self[k]).decode("utf-8")
            self._svgs[k] = text[text.index("<svg"):]  # inline: no XML prologue
        return self._svgs[k]

    def html(self, timeout: float | None = RENDER_TIMEOUT, player_id: str = "mgstep") -> str:
        """One self-contained page: every frame as inline SVG and a small player script.

        ``timeout`` bounds the rendering of all the frames together.
        """
        if len(self) > MAX_FRAMES:
            raise DrawingValueError(
                f"step_backward: this backward makes {len(self)} VJP calls, more than the "
                f"{MAX_FRAMES} frames a player holds; step through part of it (inputs= an "
                "intermediate tensor, or the loss of one layer), look at single frames "
                "(stepper[k]), or save them to a folder (stepper.save('frames')).")
        deadline = None if timeout is None else time.monotonic() + timeout
        parts = []
        for k in range(len(self)):
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            parts.append(f'<div class="mg-frame" data-step="{k}" '
                         f'data-op="{html.escape(self._ops[k])}" hidden>{self.svg(k, left)}</div>')
        frames = "\n".join(parts)
        names = "|".join(self._names)
        return PLAYER.format(id=player_id, n=len(self), frames=frames,
                             names=html.escape(names, quote=True), last=len(self) - 1)

    def _repr_html_(self) -> str:
        try:
            return self.html(player_id=f"mgstep{next(_player_ids)}")  # unique per display
        except MinigradError as exc:  # no dot, or too slow: advice instead of a hang
            return f"<pre>{html.escape(str(exc))}</pre>"

    def save(self, path: str | os.PathLike, png: bool = False,
             timeout: float | None = RENDER_TIMEOUT) -> Path:
        """``x.html``: one offline player; a folder: ``step_001.svg``... (and .png if asked)."""
        p = Path(path)
        if p.suffix.lower() in (".html", ".htm"):
            title = html.escape(f"Backward of {self.top}, step by step ({len(self)} VJP calls)")
            page = PAGE.format(title=title, player=self.html(timeout))
            write_atomic(p, page.encode("utf-8"))
            return p
        if p.suffix:
            raise StepIndexError(f"step_backward.save: {p.name!r} is neither an .html file "
                                 "nor a folder; give 'player.html' or a folder name")
        p.mkdir(parents=True, exist_ok=True)
        width = max(3, len(str(len(self))))
        for k in range(len(self)):
            stem = p / f"step_{k + 1:0{width}d}"
            write_atomic(stem.with_suffix(".svg"), self.svg(k, timeout).encode("utf-8"))
            if png:
                write_atomic(stem.with_suffix(".png"), run_dot(self[k].source, "png", timeout))
        return p


_player_ids = itertools.count(1)

#: the most frames a player page holds (each is an inline SVG)
MAX_FRAMES = 300


class StepIndexError(IndexOutOfRangeError):
    """A frame that does not exist, or a path ``save`` cannot use."""


def step_backward(loss: Any, inputs: Any = None, *, rankdir: str = "TB", value_limit: int = 4,
                  max_nodes: int | None = MAX_NODES) -> BackwardStepper:
    """Step through the backward pass of ``loss``, one picture per VJP call.

    ``len(stepper)`` is the number of VJP calls the engine makes, in its order;
    ``stepper[k]`` is a ``graphviz.Digraph`` of the forward graph in which the op
    whose VJP runs at step ``k`` is highlighted (orange), the gradient it receives is
    written into its output, the gradients it sends are written on red arrows back
    to its inputs, and the ops already done are greyed out. In Jupyter the stepper
    shows as a player (previous/next buttons, a slider, the arrow keys);
    ``stepper.save("backward.html")`` writes the same player as one offline page
    (``#step=3`` in its address opens step 3), ``stepper.save("frames")`` one
    ``.svg`` per step (``png=True`` adds ``.png``).

    ``inputs``: what to differentiate with respect to (default: every leaf that
    requires grad). The engine runs once, with ``retain_graph=True``: no ``.grad``
    is touched and the graph stays usable. See also ``mg.trace_backward``.
    """
    refuse_early("step_backward", Tape((loss,)).records if isinstance(loss, Tensor)
                 else [], max_nodes)
    tape, steps, _ = observe_backward("step_backward", loss, inputs)
    if not steps:
        raise GraphError("step_backward: backward made no VJP call (nothing reaches the "
                         "inputs)")
    return BackwardStepper(tape, steps, loss.name or "L", check_options(
        "step_backward", rankdir, value_limit), value_limit, max_nodes)


# The player: frames are hidden divs; a script shows one. It reads ``#step=k`` (1-based)
# from the address, so a page can be opened at any step, and writes it back.
PLAYER = """<div class="mg-player" id="{id}" data-names="{names}">
<style>
#{id} .mg-bar {{ font: 14px sans-serif; margin: 4px 0; }}
#{id} .mg-frame svg {{ max-width: 100%; height: auto; }}
#{id}.mg-fit .mg-frame svg {{ max-height: 80vh; width: auto; }}
#{id} .mg-frame {{ overflow: auto; max-height: 85vh; }}
#{id}.mg-fit .mg-frame {{ cursor: zoom-in; }}
#{id}:not(.mg-fit) .mg-frame {{ cursor: zoom-out; }}
#{id} .mg-bar button {{ font-size: 14px; }}
</style>
<div class="mg-bar">
<button class="mg-prev" title="previous step (left arrow)">&#9664; prev</button>
<input class="mg-slider" type="range" min="0" max="{last}" value="0">
<button class="mg-next" title="next step (right arrow)">next &#9654;</button>
<span class="mg-label"></span>
<span class="mg-hint" style="color:#777">(click the picture to see all of it)</span>
</div>
{frames}
<script>
(function () {{
  var root = document.getElementById("{id}");
  var frames = root.querySelectorAll(".mg-frame");
  var names = root.getAttribute("data-names").split("|");
  var slider = root.querySelector(".mg-slider");
  var label = root.querySelector(".mg-label");
  var n = {n}, cur = 0;
  function show(k, push) {{
    k = Math.max(0, Math.min(n - 1, k));
    frames[cur].hidden = true; frames[cur].classList.remove("mg-active");
    cur = k;
    frames[k].hidden = false; frames[k].classList.add("mg-active");
    slider.value = k;
    label.textContent = "step " + (k + 1) + " of " + n + ": VJP of " + names[k];
    root.setAttribute("data-step", String(k + 1));
    root.setAttribute("data-op", frames[k].getAttribute("data-op"));
    if (push && root.getAttribute("data-own-hash") === "1") {{
      history.replaceState(null, "", "#step=" + (k + 1));
    }}
    focusCurrent();
  }}
  function focusCurrent() {{
    if (root.classList.contains("mg-fit")) return;
    // Scroll the frame's own box (not the page) so the highlighted op is in the middle.
    var box = frames[cur], node = box.querySelector(".current");
    if (!node) return;
    var r = node.getBoundingClientRect(), b = box.getBoundingClientRect();
    box.scrollTop += (r.top + r.height / 2) - (b.top + b.height / 2);
    box.scrollLeft += (r.left + r.width / 2) - (b.left + b.width / 2);
  }}
  for (var i = 0; i < frames.length; i++) {{
    frames[i].onclick = function () {{ root.classList.toggle("mg-fit"); focusCurrent(); }};
  }}
  function fromHash() {{
    var m = /step=(\\d+)/.exec(location.hash);
    return m ? parseInt(m[1], 10) - 1 : 0;
  }}
  root.querySelector(".mg-prev").onclick = function () {{ show(cur - 1, true); }};
  root.querySelector(".mg-next").onclick = function () {{ show(cur + 1, true); }};
  slider.oninput = function () {{ show(parseInt(slider.value, 10), true); }};
  root.tabIndex = 0;
  root.addEventListener("keydown", function (ev) {{
    if (ev.key === "ArrowLeft") {{ show(cur - 1, true); ev.preventDefault(); }}
    if (ev.key === "ArrowRight") {{ show(cur + 1, true); ev.preventDefault(); }}
  }});
  if (document.body && document.body.getAttribute("data-mg-page") === "1") {{
    root.setAttribute("data-own-hash", "1");  // a saved page: the address is ours
    document.addEventListener("keydown", function (ev) {{
      if (ev.target === root) return;
      if (ev.key === "ArrowLeft") show(cur - 1, true);
      if (ev.key === "ArrowRight") show(cur + 1, true);
    }});
    window.addEventListener("hashchange", function () {{ show(fromHash(), false); }});
    show(fromHash(), false);
  }} else {{
    show(0, false);
  }}
}})();
</script>
</div>"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>body {{ font-family: sans-serif; margin: 12px; }}</style>
</head>
<body data-mg-page="1">
<h3>{title}</h3>
<p>Previous / next, the slider or the arrow keys step through the VJP calls in the
order the engine runs them; <code>#step=k</code> in the address opens step k.</p>
{player}
</body></html>
"""
