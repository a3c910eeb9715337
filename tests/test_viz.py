"""mg.viz: the DOT text of forward graphs, derivations, module clusters and collapsing.

Most checks read the DOT text (``graph.source``) so they run without Graphviz; the
rendering tests skip with the reason when ``dot`` is not installed. Modules are
simulated by running code in a ``Scope`` with ``in_scope``, as ``nn.Module`` does.
"""

from __future__ import annotations

import gc
import html
import re
import shutil
import subprocess
import time
import weakref
from contextlib import contextmanager

import graphviz
import numpy as np
import pytest

import minigrad as mg
from minigrad.nn.module import Scope, in_scope

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's `dot` is not installed")

NODE_RE = re.compile(r"^\s*(\w+) \[label=\"((?:[^\"\\]|\\.)*)\"(.*)\]$", re.M)
EDGE_RE = re.compile(r"^\s*(\w+) -> (\w+)(.*)$", re.M)


# ------------------------------------------------------------------ helpers
def nodes(g: graphviz.Digraph) -> dict[str, tuple[str, str]]:
    """node id -> (label with line breaks as \\n, attribute text)."""
    return {m[1]: (m[2], m[3]) for m in NODE_RE.finditer(g.source)}


def edges(g: graphviz.Digraph) -> list[tuple[str, str, str]]:
    return [(m[1], m[2], m[3]) for m in EDGE_RE.finditer(g.source)]


def kind(attrs: str) -> str:
    return re.search(r"class=(\w+)", attrs)[1]


def of_kind(g: graphviz.Digraph, k: str) -> dict[str, str]:
    """node id -> label, for the nodes of one kind."""
    return {n: lab for n, (lab, a) in nodes(g).items() if kind(a) == k}


def clusters(g: graphviz.Digraph) -> dict[str, tuple[str | None, set[str]]]:
    """cluster label -> (label of the enclosing cluster, ids of the nodes directly in it)."""
    out: dict[str, tuple[str | None, set[str]]] = {}
    stack: list[str] = []
    for line in g.source.splitlines():
        s = line.strip()
        if s.startswith("subgraph cluster"):
            stack.append("?")
        elif s.startswith('label="') and stack and stack[-1] == "?":
            name = re.match(r'label="((?:[^"\\]|\\.)*)"', s)[1]
            stack[-1] = name
            out[name] = (stack[-2] if len(stack) > 1 else None, set())
        elif s == "}" and stack:
            stack.pop()
        else:
            m = re.match(r"(\w+) \[label=", s)
            if m and stack:
                out[stack[-1]][1].add(m[1])
    return out


class Parameter(mg.Tensor):
    """Stands in for nn.Parameter: the picture goes by the class name."""


@contextmanager
def scope(path: str, kind: str):
    with in_scope(Scope(path, kind)):
        yield


def mlp():
    """A loss through simulated modules: (root) MLP > layers > layers.{0,1,2}."""
    x = mg.tensor(np.ones((4, 3)), name="x", requires_grad=True)
    w1 = Parameter(np.full((3, 5), 0.1), requires_grad=True, name="layers.0.weight")
    b1 = Parameter(np.zeros(5), requires_grad=True, name="layers.0.bias")
    w2 = Parameter(np.full((5, 2), 0.1), requires_grad=True, name="layers.2.weight")
    with scope("", "MLP"):
        with scope("layers.0", "Linear"):
            h = x @ w1 + b1
        with scope("layers.1", "ReLU"):
            h = h.relu()
        with scope("layers.2", "Linear"):
            h = h @ w2
        loss = (h * 2.0).mean()
    loss.name = "loss"
    return loss, (x, w1, b1, w2)


def small():
    x = mg.tensor(2.0, requires_grad=True, name="x")
    w = mg.tensor([1.0, 2.0, 3.0], requires_grad=True, name="w")
    return (x * w).tanh().sum(axis=0), x, w


# ------------------------------------------------------------ forward graph
def test_forward_graph_structure_and_labels():
    y, x, w = small()
    g = mg.viz.draw_graph(y)
    assert isinstance(g, graphviz.Digraph)
    ns = nodes(g)
    ops = {n: lab for n, lab in of_kind(g, "op").items()}
    assert len(ops) == 3 and len(ns) == 3 + 3 + 2  # ops, their outputs, two leaves
    assert len(edges(g)) == 7
    seqs = [1, 2, 3]  # a picture numbers its records from 1, like mg.tape
    labels = sorted(ops.values())
    assert labels == sorted([f"mul\\n#{seqs[0]}", f"tanh\\n#{seqs[1]}",
                             f"sum(axis=0)\\n#{seqs[2]}"])
    # tensor labels follow the Wengert list: names, shapes, dtypes
    assert ns["x0"][0] == "x\\n() float32" and ns["x1"][0] == "w\\n(3,) float32"
    assert ns[f"v{seqs[0]}"][0] == f"v{seqs[0]}\\n(3,) float32"
    assert (f"op{seqs[1]}", f"v{seqs[1]}", "") in edges(g)


def test_unnamed_leaves_use_tape_names():
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0], requires_grad=True)
    y = a * b + a
    tape_text = str(mg.tape(y))
    g = mg.viz.draw_graph(y)
    leaf_names = sorted(lab.split("\\n")[0] for lab in of_kind(g, "input").values())
    assert leaf_names == ["x0", "x1"]
    assert "x0" in tape_text and "x1" in tape_text


def test_op_params_and_array_abbreviation():
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x[:, np.array([0, 2, 1])].sum(axis=1, keepdims=True)
    ops = list(of_kind(mg.viz.draw_graph(y), "op").values())
    assert any(lab.startswith("sum(axis=1, keepdims=True)") for lab in ops)
    assert any("array(3,)" in lab and lab.startswith("getitem(") for lab in ops)


def test_styles_of_inputs_parameters_constants_outputs():
    x = mg.tensor([1.0, 2.0], requires_grad=True, name="x")
    p = Parameter([0.5, 0.5], requires_grad=True, name="scale")
    fake = mg.tensor([1.0, 1.0], requires_grad=True, name="weight")  # the name is not enough
    y = (x * p * fake + 3.0).sum()
    g = mg.viz.draw_graph(y)
    inputs = sorted(lab.split("\\n")[0] for lab in of_kind(g, "input").values())
    assert inputs == ["weight", "x"]
    assert [lab.split("\\n")[0] for lab in of_kind(g, "param").values()] == ["scale"]
    assert list(of_kind(g, "const").values()) == ["3.0"]
    assert len(of_kind(g, "output")) == 1
    attrs = {kind(a): a for _, a in nodes(g).values()}
    fills = {k: re.search(r'fillcolor="([^"]+)"', attrs[k])[1]
             for k in ("input", "param", "const", "output", "op", "value")}
    assert len(set(fills.values())) == len(fills)  # each kind looks different


def test_several_roots_and_repeated_root():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    a, b = x * 2.0, x.exp()
    g = mg.viz.draw_graph(a, b, a)
    assert len(of_kind(g, "output")) == 2
    g2 = mg.viz.draw_graph([a, b])
    assert g2.source == g.source


def test_show_values_and_grads_micrograd_style():
    a = mg.tensor(2.0, requires_grad=True, name="a")
    b = mg.tensor(-3.0, requires_grad=True, name="b")
    c = mg.tensor(10.0, requires_grad=True, name="c")
    L = (a * b + c) * mg.tensor(-2.0, requires_grad=True, name="f")
    L.name = "L"
    L.backward()
    g = mg.viz.draw_graph(L, show_values=True, show_grads=True)
    ns = nodes(g)
    a_label = next(lab for lab, _ in ns.values() if lab.startswith("a\\n"))
    assert a_label == "a\\n() float32|data 2.0|grad 6.0"
    assert "Mrecord" in ns["x0"][1]
    out = next(lab for lab, a in ns.values() if kind(a) == "output")
    assert "data -8.0" in out
    # left to right: fields are wrapped so they still sit side by side
    lr = mg.viz.draw_graph(L, show_values=True, rankdir="LR")
    assert "rankdir=LR" in lr.source
    assert "{a\\n() float32|data 2.0}" in lr.source


def test_values_of_large_tensors_are_shortened_and_unsaved_values_recomputed():
    x = mg.tensor(np.arange(100.0), requires_grad=True, name="x")
    y = (x * 2.0).exp().sum()
    labels = [lab for lab, _ in nodes(mg.viz.draw_graph(y, show_values=True)).values()]
    x_label = next(lab for lab in labels if lab.startswith("x\\n"))
    assert "data [0.0, 1.0, ..., 98.0, 99.0]" in x_label
    # 2x is saved by nothing: its value is found by replaying the mul
    assert any("data [0.0, 2.0, ..., 196.0, 198.0]" in lab for lab in labels)
    assert not any("data ?" in lab or "not kept" in lab for lab in labels)


def test_device_is_shown_only_when_not_cpu():
    from minigrad.viz.labels import shape_text

    assert shape_text((2, 3), np.dtype("float32"), "cpu") == "(2, 3) float32"
    assert shape_text((2,), np.dtype("float64"), "cuda") == "(2,) float64 cuda"
    if mg.cuda_available():
        x = mg.tensor([1.0, 2.0], requires_grad=True, device="cuda")
        g = mg.viz.draw_graph((x * 2.0).sum(), show_values=True)
        assert "(2,) float32 cuda" in g.source and "data [1.0, 2.0]" in g.source


def test_bad_options():
    y, _, _ = small()
    with pytest.raises(ValueError, match="rankdir"):
        mg.viz.draw_graph(y, rankdir="up")
    with pytest.raises(ValueError, match="max_depth"):
        mg.viz.draw_graph(y, max_depth=-1)
    assert "rankdir=LR" in mg.viz.draw_graph(y, rankdir="lr").source


def test_max_depth_cuts_history():
    x = mg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(10):
        y = y * 1.5
    g = mg.viz.draw_graph(y, max_depth=3)
    assert len(of_kind(g, "op")) == 3
    cut = of_kind(g, "cut")
    assert len(cut) == 1 and "(history not drawn)" in next(iter(cut.values()))
    assert "style=\"dashed\"" in nodes(g)[next(iter(cut))][1]
    only_root = mg.viz.draw_graph(y, max_depth=0)
    assert len(nodes(only_root)) == 1 and not edges(only_root)


def test_multi_output_op():
    class Split(mg.Function):
        @staticmethod
        def forward(ctx, a):
            return a[:1].copy(), a[1:].copy()

        @staticmethod
        def backward(ctx, g0, g1):
            return mg.concatenate([g0, g1])

    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    lo, hi = Split.apply(x)
    y = lo.sum() + hi.sum()
    g = mg.viz.draw_graph(y)
    seq = 1
    ns = nodes(g)
    assert ns[f"v{seq}_0"][0].startswith(f"v{seq}.0\\n(1,)")
    assert ns[f"v{seq}_1"][0].startswith(f"v{seq}.1\\n(2,)")
    assert ns[f"op{seq}"][0] == f"split\\n#{seq}"


# --------------------------------------------------------- bad input, no history
def test_roots_that_are_not_tensors():
    with pytest.raises(TypeError, match=r"draw_graph: .*argument 0 is a float: 3\.0"):
        mg.viz.draw_graph(3.0)
    x = mg.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match="argument 1 is a ndarray"):
        mg.viz.draw_graph(x, np.ones(2))
    with pytest.raises(TypeError, match="at least one Tensor"):
        mg.viz.draw_graph()


def test_tensor_without_history_is_one_node():
    t = mg.tensor([1.0, 2.0], name="plain")
    g = mg.viz.draw_graph(t, show_values=True, show_grads=True)
    assert len(nodes(g)) == 1 and not edges(g)
    assert "plain" in g.source and "data [1.0, 2.0]" in g.source
    leaf = mg.tensor(1.0, requires_grad=True)
    assert kind(next(iter(nodes(mg.viz.draw_graph(leaf)).values()))[1]) == "input"


def test_labels_with_dot_special_characters_are_escaped():
    x = mg.tensor([1.0], requires_grad=True, name='a"{b}|<c>\\')
    g = mg.viz.draw_graph((x * 2.0).sum(), show_values=True)
    assert 'a\\"\\{b\\}\\|\\<c\\>\\\\' in g.source
    plain = mg.viz.draw_graph((x * 2.0).sum())
    assert 'label="a\\"{b}|<c>\\\\\\n' in plain.source
    if HAS_DOT:
        assert b"<svg" in g.pipe(format="svg") and b"<svg" in plain.pipe(format="svg")


# Text that once made invalid DOT: a final backslash, an HTML-like label, a NUL, quotes,
# record characters, a newline, a backslash sequence, non-ASCII.
AWKWARD = ["ends in \\", "<b>bold</b>", "<<html>>", "nul\0here", 'say "hi"', "{a|b} <c>",
           "two\nlines", "\\n stays", "tab\there", "bell\x07\x7f", "\u00e9 \u2713"]


def run_dot(source: str) -> str:
    """The SVG that Graphviz's ``dot`` makes of ``source``; fails the test if it refuses."""
    done = subprocess.run(["dot", "-Tsvg"], input=source.encode("utf-8"), capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return done.stdout.decode("utf-8")


def svg_texts(svg: str) -> list[str]:
    """The pieces of text an SVG from ``dot`` shows, unescaped."""
    return [html.unescape(t).replace("\xa0", " ")
            for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def shown(text: str) -> list[str]:
    """The lines ``text`` should render as: control characters other than tab as \\xNN."""
    visible = "".join(c if c in "\t\n" or 32 <= ord(c) != 127 else f"\\x{ord(c):02x}"
                      for c in text)
    return visible.split("\n")


@needs_dot
@pytest.mark.parametrize("text", AWKWARD, ids=repr)
def test_any_text_gives_valid_dot_that_reads_as_itself(text, tmp_path):
    x = mg.tensor([1.0, 2.0], requires_grad=True, name=text)
    with scope(text, "Net"):
        y = (x * 2.0).sum()
    y.name = text
    # the title, the two tensors' names (the module's path too, but with its class name)
    for g, least in ((mg.viz.draw_graph(y, title=text), 3),
                     (mg.viz.draw_graph(y, show_values=True, show_grads=True, title=text), 1),
                     (mg.viz.draw_derivation(y, x, title=text), 1)):
        texts = svg_texts(run_dot(g.source))
        for line in shown(text):
            assert texts.count(line) >= least, (line, texts)
        assert mg.viz.save(g, tmp_path / "g.svg").read_text(encoding="utf-8").count("<svg") == 1


def test_escape_is_the_one_quoting_function():
    from minigrad.viz.labels import escape

    assert escape("a\\") == "a\\\\"
    assert escape('"') == '\\"'
    assert escape("a\0b\x1f") == "a\\\\x00b\\\\x1f"
    assert escape("a\nb") == "a\\nb"
    assert escape(3) == "3"
    g = mg.viz.draw_graph(mg.tensor([1.0], requires_grad=True) * 2, title="<b>x</b>\\")
    assert 'label="<b>x</b>\\\\" labelloc=t' in g.source


def test_a_failing_dot_run_raises_render_error(tmp_path):
    if not HAS_DOT:
        pytest.skip("Graphviz's `dot` is not installed")
    broken = graphviz.Digraph(body=["\tthis is not DOT [\n"])
    with pytest.raises(mg.viz.RenderError, match=r"save: Graphviz's dot could not render "
                                                 r"'g\.svg': .*syntax error"):
        mg.viz.save(broken, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.parametrize("value", [123, 1.5, b"x", ["x"]])
def test_names_must_be_strings(value):
    x = mg.tensor([1.0], requires_grad=True, name="x")
    y = x * 2
    for t in (x, y):
        with pytest.raises(mg.DTypeError, match=r"^name must be a str or None, got "
                                                f"{type(value).__name__}"):
            t.name = value
    with pytest.raises(mg.DTypeError, match=r"^tensor: name must be a str or None"):
        mg.tensor([1.0], name=value)
    with pytest.raises(mg.DTypeError, match=r"name must be a str or None"):
        mg.zeros(2, name=value)
    assert x.name == "x" and y.name is None
    assert "x" in str(mg.tape(y)) and "x" in mg.viz.draw_graph(y).source  # both still work
    y.name = None


# --------------------------------------------------------------- derivation
def test_gradient_made_with_create_graph_draws_like_any_tensor():
    y, x, w = small()
    (gx,) = mg.grad(y, x, create_graph=True)
    g = mg.viz.draw_graph(gx)
    tp = mg.tape(gx)  # the picture numbers records as this tape does
    forward_seqs = {tp.number(r) for r in tp if r.seq < y.grad_fn.seq}
    op_seqs = {int(n[2:]) for n in of_kind(g, "op")}
    backward_seqs = {int(n[2:]) for n in of_kind(g, "backward_op")}
    assert forward_seqs <= op_seqs  # reads the forward values it needs
    assert backward_seqs and min(backward_seqs) > max(forward_seqs)  # and backward ops


def test_engine_tag_marks_backward_ops():
    y, x, w = small()
    (gx,) = mg.grad(y, x, create_graph=True)
    last_forward = y.grad_fn.seq
    tp = mg.tape(gx)
    first = tp[0]  # a forward record drawn in the picture: it is #1 there
    tagged = [rec for rec in tp if rec.seq > last_forward]
    for rec in tagged:
        rec.backward_of = first.seq  # what the engine would record
    g = mg.viz.draw_graph(gx)
    backward_ops = of_kind(g, "backward_op")
    assert len(backward_ops) == len(tagged) > 0
    assert all("in backward of #1" in lab for lab in backward_ops.values())
    for rec in tagged:
        rec.backward_of = last_forward  # not drawn: named by its global number
    labs = of_kind(mg.viz.draw_graph(gx), "backward_op").values()
    assert all(f"in backward of record seq {last_forward}" in lab for lab in labs)


def test_derivation_two_clusters_derivative_labels_and_saved_edges():
    y, x, w = small()
    g = mg.viz.draw_derivation(y, [x, w])
    cl = clusters(g)
    assert set(cl) == {"forward", "backward"}
    fwd, bwd = cl["forward"][1], cl["backward"][1]
    ns = nodes(g)
    outputs = {lab.split("\\n")[0] for lab in of_kind(g, "grad_output").values()}
    assert outputs == {"dL/dx", "dL/dw"}
    assert set(of_kind(g, "grad_output")) <= bwd
    grads = {lab.split("\\n")[0] for lab in of_kind(g, "grad").values()}
    v0, v1 = "v1", "v2"
    assert f"dL/d{v0}" in grads and f"dL/d{v1}" in grads
    assert all(kind(ns[n][1]) == "backward_op" for n in bwd if n.startswith("op"))
    assert all(kind(ns[n][1]) == "op" for n in fwd if n.startswith("op"))
    saved = [(s, d) for s, d, a in edges(g) if "style=dashed" in a]
    assert saved, "backward reads forward values, so there must be dashed edges"
    # each comes from a "saved ..." note inside the backward cluster: no edge crosses
    assert all(s in bwd and d in bwd and kind(ns[s][1]) == "saved" for s, d in saved)
    assert not [(s, d) for s, d, _ in edges(g) if (s in fwd) != (d in fwd)
                and not s.startswith("_side")]
    # x and w are read by the backward muls: d(x*w)/dw = x
    assert {ns[s][0] for s, _ in saved} >= {"saved x", "saved w"}


def test_derivation_named_output_intermediate_input_and_grad_values():
    x = mg.tensor([1.0, 2.0], requires_grad=True, name="x")
    h = x * x
    h.name = "h"
    loss = (h * 3.0).sum()
    loss.name = "loss"
    g = mg.viz.draw_derivation(loss, [h, x], show_grads=True, show_values=True)
    firsts = {lab.split("\\n")[0] for lab in of_kind(g, "grad_output").values()}
    assert firsts == {"dloss/dh", "dloss/dx"}
    x_label = next(lab for n, (lab, _) in nodes(g).items() if lab.startswith("x\\n"))
    assert "grad [6.0, 12.0]" in x_label  # d(3 x^2)/dx, micrograd style in the forward node


def test_derivation_does_not_touch_grad_or_free_the_graph():
    y, x, w = small()
    assert x.grad is None
    y.backward(retain_graph=True)
    gx_before, gw_before = x.grad, w.grad
    vals = (gx_before.numpy().copy(), gw_before.numpy().copy())
    mg.viz.draw_derivation(y, [x, w], show_grads=True)
    mg.viz.draw_graph(y, show_values=True, show_grads=True)
    assert x.grad is gx_before and w.grad is gw_before
    np.testing.assert_array_equal(x.grad.numpy(), vals[0])
    np.testing.assert_array_equal(w.grad.numpy(), vals[1])
    assert all(rec.saved is not None for rec in mg.tape(y))
    y.backward()  # the forward graph is still usable
    np.testing.assert_allclose(x.grad.numpy(), 2 * vals[0])


def test_derivation_matches_mg_grad():
    y, x, w = small()
    g = mg.viz.draw_derivation(y, [x, w], show_values=True)
    gx, gw = mg.grad(y, [x, w])
    out = {lab.split("\\n")[0]: lab for lab in of_kind(g, "grad_output").values()}
    assert f"data {gx.item():.4g}" in out["dL/dx"]


def test_derivation_bad_input():
    y, x, w = small()
    unused = mg.tensor(1.0, requires_grad=True, name="u")
    with pytest.raises(mg.GraphError, match=r"input 1 \(u\) was not used"):
        mg.viz.draw_derivation(y, [x, unused])
    with pytest.raises(TypeError, match="output must be a Tensor"):
        mg.viz.draw_derivation([y], x)
    with pytest.raises(TypeError, match="argument 0 is a str"):
        mg.viz.draw_derivation(y, "x")
    with pytest.raises(mg.GraphError, match="no recorded history"):
        mg.viz.draw_derivation(mg.tensor(1.0), x)


# ------------------------------------------------------------------ modules
def test_module_clusters_nest_by_path():
    loss, (x, w1, b1, w2) = mlp()
    g = mg.viz.draw_graph(loss)
    cl = clusters(g)
    assert cl["(root): MLP"][0] is None
    assert cl["layers"][0] == "(root): MLP"
    assert cl["layers.0: Linear"][0] == "layers"
    assert cl["layers.1: ReLU"][0] == "layers"
    assert cl["layers.2: Linear"][0] == "layers"
    ns = nodes(g)
    where = {n: name for name, (_, members) in cl.items() for n in members}
    by_name = {lab.split("\\n")[0]: n for n, (lab, _) in ns.items()}
    assert where[by_name["layers.0.weight"]] == "layers.0: Linear"
    assert where[by_name["layers.2.weight"]] == "layers.2: Linear"
    assert by_name["x"] not in where  # the model's input stays outside the model
    assert where[by_name["loss"]] == "(root): MLP"
    matmuls = [n for n, lab in of_kind(g, "op").items() if lab.startswith("matmul")]
    assert {where[n] for n in matmuls} == {"layers.0: Linear", "layers.2: Linear"}


def test_collapse_by_class_name():
    loss, _ = mlp()
    full = mg.viz.draw_graph(loss)
    g = mg.viz.draw_graph(loss, collapse={"Linear"})
    boxes = of_kind(g, "module")
    assert sorted(boxes.values()) == ["layers.0: Linear\\n2 ops", "layers.2: Linear\\n1 op"]
    assert not of_kind(g, "param")  # parameters live inside the boxes now
    assert [lab for lab in of_kind(g, "op").values() if lab.startswith("matmul")] == []
    ns = nodes(g)
    by_label = {lab: n for n, lab in boxes.items()}
    m0, m2 = by_label["layers.0: Linear\\n2 ops"], by_label["layers.2: Linear\\n1 op"]
    x_id = next(n for n, (lab, _) in ns.items() if lab.startswith("x\\n"))
    es = {(s, d) for s, d, _ in edges(g)}
    assert (x_id, m0) in es  # external input -> box
    outs0 = [d for s, d in es if s == m0]
    assert len(outs0) == 1 and kind(ns[outs0[0]][1]) == "value"  # box -> external output
    assert any(d == m2 for _, d in es) and any(s == m2 for s, _ in es)
    assert len(nodes(g)) < len(nodes(full))
    assert clusters(g)["layers"][0] == "(root): MLP"


def test_collapse_by_depth():
    loss, _ = mlp()
    whole = mg.viz.draw_graph(loss, collapse=0)
    ns = nodes(whole)
    assert sorted(kind(a) for _, a in ns.values()) == ["input", "module", "output"]
    assert next(iter(of_kind(whole, "module").values())) == "(root): MLP\\n6 ops"
    assert len(edges(whole)) == 2
    children = mg.viz.draw_graph(loss, collapse=1)
    assert sorted(of_kind(children, "module").values()) == ["layers\\n4 ops"]
    deep = mg.viz.draw_graph(loss, collapse=5)  # deeper than any module: nothing folds
    assert deep.source == mg.viz.draw_graph(loss).source


def test_collapse_bad_filters():
    loss, _ = mlp()
    with pytest.raises(ValueError, match=r"'Linaer'.*Linear, MLP, ReLU"):
        mg.viz.draw_graph(loss, collapse={"Linaer"})
    with pytest.raises(ValueError, match="0 or more"):
        mg.viz.draw_graph(loss, collapse=-1)
    with pytest.raises(TypeError, match="collapse"):
        mg.viz.draw_graph(loss, collapse=True)
    with pytest.raises(TypeError, match="strings"):
        mg.viz.draw_graph(loss, collapse={3.5})
    assert mg.viz.draw_graph(loss, collapse=set()).source == mg.viz.draw_graph(loss).source
    assert len(of_kind(mg.viz.draw_graph(loss, collapse="ReLU"), "module")) == 1
    y, _, _ = small()
    with pytest.raises(ValueError, match="no op in this graph ran inside a module"):
        mg.viz.draw_graph(y, collapse={"Linear"})


def test_data_without_grad_stays_outside_modules_and_feeds_folded_boxes():
    images = mg.tensor([[1.0] * 3] * 2, name="images")  # no grad: ops keep it as a constant
    w = Parameter(np.ones((3, 2)), requires_grad=True, name="fc.weight")
    with scope("", "Net"), scope("fc", "Linear"):
        y = (images @ w * 2.0).sum()
    g = mg.viz.draw_graph(y)
    data = of_kind(g, "tensor")
    assert list(data.values()) == ["images\\n(2, 3) float32"]
    in_clusters = {n for _, members in clusters(g).values() for n in members}
    assert next(iter(data)) not in in_clusters
    assert any(lab == "2.0" and n in in_clusters for n, lab in of_kind(g, "const").items())
    folded = mg.viz.draw_graph(y, collapse={"Linear"})
    box = next(iter(of_kind(folded, "module")))
    assert (next(iter(of_kind(folded, "tensor"))), box) in {(s, d) for s, d, _ in edges(folded)}
    assert not of_kind(folded, "const") and not of_kind(folded, "param")


def test_derivation_links_data_read_by_backward_to_the_forward_tensor():
    images = mg.tensor([[1.0, 2.0], [3.0, 4.0]], name="images")  # no grad
    w = mg.tensor([0.5, 0.25], requires_grad=True, name="w")
    loss = ((images * w) ** 2).sum()  # mul's backward multiplies by the saved images
    g = mg.viz.draw_derivation(loss, w)
    data = of_kind(g, "tensor")
    assert list(data.values()) == ["images\\n(2, 2) float32"]  # one node, in both passes' story
    (node,) = data
    assert node in clusters(g)["forward"][1]
    ns = nodes(g)
    assert any(ns[s][0] == "saved images" and "style=dashed" in a for s, _, a in edges(g))


def test_long_op_parameters_wrap_one_per_line():
    class Scale(mg.Function):
        @staticmethod
        def forward(ctx, a, factor, long_parameter_name, another_parameter):
            return a * factor

        @staticmethod
        def backward(ctx, g):
            return g * ctx.params["factor"]

    x = mg.tensor([1.0], requires_grad=True)
    y = Scale.apply(x, factor=3.0, long_parameter_name="some text", another_parameter=(1, 2))
    (label,) = of_kind(mg.viz.draw_graph(y), "op").values()
    assert label.split("\\n") == ["scale(", "  factor=3.0,", "  long_parameter_name='some text',",
                                   "  another_parameter=(1, 2))", "#1"]


def test_collapse_keeps_module_outputs_used_inside_and_outside():
    x = mg.tensor([1.0, 2.0], requires_grad=True, name="x")
    with scope("block", "Block"):
        h = x.exp()
        inner = h * 2.0
    y = (inner + h).sum()  # h leaves the block as well as being used inside it
    g = mg.viz.draw_graph(y, collapse={"Block"})
    box = next(iter(of_kind(g, "module")))
    es = [(s, d) for s, d, _ in edges(g)]
    outs = [d for s, d in es if s == box]
    assert len(outs) == 2  # h and inner
    assert all((d, box) not in es for d in outs)  # no arrow back into the box


# ---------------------------------------------------------------- rendering
@needs_dot
def test_render_svg_png_pdf_and_dot(tmp_path):
    loss, _ = mlp()
    g = mg.viz.draw_graph(loss, show_values=True, collapse={"ReLU"})
    svg = mg.viz.save(g, tmp_path / "g.svg")
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert "layers.0: Linear" in svg.read_text()
    assert mg.viz.save(g, tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert mg.viz.save(g, str(tmp_path / "g.PDF")).read_bytes()[:4] == b"%PDF"
    out = g.render(outfile=tmp_path / "r.svg")
    assert (tmp_path / "r.svg").exists() and out.endswith("r.svg")
    assert "image/svg+xml" in g._repr_mimebundle_()
    y, x, w = small()
    assert b"<svg" in mg.viz.draw_derivation(y, [x, w], show_grads=True).pipe(format="svg")


def test_save_dot_text_and_bad_paths(tmp_path):
    y, _, _ = small()
    g = mg.viz.draw_graph(y)
    assert mg.viz.save(g, tmp_path / "g.dot").read_text() == g.source
    assert mg.viz.save(g, tmp_path / "g.gv").read_text() == g.source
    with pytest.raises(ValueError, match=r"\.svg"):
        mg.viz.save(g, tmp_path / "g.txt")
    with pytest.raises(TypeError, match="save"):
        mg.viz.save("digraph {}", tmp_path / "g.svg")


def test_missing_dot_gives_install_advice(tmp_path, monkeypatch):
    y, _, _ = small()
    g = mg.viz.draw_graph(y)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere on the path
    with pytest.raises(mg.viz.GraphvizNotFoundError) as err:
        g.pipe(format="svg")
    msg = str(err.value)
    for hint in ("apt-get install graphviz", "brew install graphviz", "conda install graphviz",
                 ".source"):
        assert hint in msg
    assert isinstance(err.value, graphviz.ExecutableNotFound)
    with pytest.raises(mg.viz.GraphvizNotFoundError):
        g.render(outfile=tmp_path / "g.svg")
    with pytest.raises(mg.viz.GraphvizNotFoundError):
        mg.viz.save(g, tmp_path / "g.png")
    with pytest.raises(mg.viz.GraphvizNotFoundError):  # a plain graphviz graph too
        mg.viz.save(graphviz.Digraph(), tmp_path / "plain.svg")
    assert "apt-get install graphviz" in g._repr_mimebundle_()["text/plain"]
    assert mg.viz.save(g, tmp_path / "g.dot").read_text() == g.source  # DOT needs no dot


# ------------------------------------------------------ drawing keeps nothing
def test_pictures_hold_no_tensors_or_records():
    loss, params = mlp()
    loss.backward(retain_graph=True)
    refs = [weakref.ref(loss), weakref.ref(loss.grad_fn)] + [weakref.ref(p) for p in params]
    rec_refs = [weakref.ref(rec) for rec in mg.tape(loss)]
    pictures = [mg.viz.draw_graph(loss, show_values=True, show_grads=True, collapse=1),
                mg.viz.draw_derivation(loss, list(params), show_values=True, show_grads=True)]
    text = [p.source for p in pictures]
    del loss, params
    gc.collect()
    assert all(r() is None for r in refs + rec_refs)
    assert [p.source for p in pictures] == text
    for p in pictures:
        assert all(isinstance(line, str) for line in p.body)


def test_drawing_leaves_no_garbage_cycles():
    y, x, w = small()
    gc.collect()
    gc.disable()
    try:
        mg.viz.draw_graph(y, show_values=True)
        mg.viz.draw_derivation(y, [x, w], show_values=True)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_big_graph_builds_quickly():
    x = mg.tensor(np.ones(4), requires_grad=True)
    y = x
    for _ in range(2000):
        y = (y * 0.5).tanh()
    start = time.perf_counter()
    g = mg.viz.draw_graph(y, max_nodes=None)  # past the default limit when asked
    elapsed = time.perf_counter() - start
    assert len(of_kind(g, "op")) == 4000
    assert elapsed < 5.0  # about 0.2 s on a laptop; the bound only catches blow-ups


def test_derivation_of_a_gradient_keeps_forward_edges_solid():
    # Drawing the derivation of a first derivative: its forward ops were made by a
    # backward, yet edges between them are data flow, not saved values.
    x = mg.tensor(0.5, requires_grad=True, name="x")
    (d1,) = mg.grad(x.tanh(), x, create_graph=True)
    g = mg.viz.draw_derivation(d1, x)
    cl = clusters(g)
    fwd, bwd = cl["forward"][1], cl["backward"][1]
    saved = [(s, d) for s, d, a in edges(g) if "style=dashed" in a]
    assert saved and all(s in bwd and d in bwd for s, d in saved)
    inside = [(s, d, a) for s, d, a in edges(g) if s in fwd and d in fwd]
    assert inside and not any("style=dashed" in a for _, _, a in inside)
