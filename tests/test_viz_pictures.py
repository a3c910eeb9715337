"""Pictures that explain themselves: names from the formula, numbering, seed, legend,
big graphs, the backward stepper and the generated pictures in docs/img."""

from __future__ import annotations

import re
import time

import pytest

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F

PAPER = ["μ_B", "x−μ_B", "σ²_B", "√(σ²_B+ε)", "x̂", "γx̂+β"]


def bn_composed(n: int = 4, c: int = 3):
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((n, c)).astype(np.float32), requires_grad=True, name="x")
    gamma = mg.tensor(np.ones(c, np.float32), requires_grad=True, name="γ")
    beta = mg.tensor(np.zeros(c, np.float32), requires_grad=True, name="β")
    y = F.batch_norm(x, mg.zeros(c), mg.ones(c), gamma, beta, impl="composed")
    return (y * y).sum(), x, gamma, beta


def labels_of(g) -> list[str]:
    return re.findall(r'label="([^"]*)"', g.source)


def test_composed_batchnorm_names_the_papers_quantities():
    loss, x, *_ = bn_composed()
    text = str(mg.tape(loss))
    for name in PAPER:
        assert f"{name} = " in text
    firsts = {lab.split("\\n")[0] for lab in labels_of(mg.viz.draw_graph(loss))}
    assert set(PAPER) <= firsts


def test_composed_batchnorm_names_in_evaluation():
    x = mg.randn(4, 3, requires_grad=True)
    y = F.batch_norm(x, mg.zeros(3), mg.ones(3), training=False, impl="composed")
    text = str(mg.tape(y))
    assert "x−E[x] = " in text and "x̂ = " in text and "√(Var[x]+ε)" in text


def test_numbering_starts_at_one_in_every_picture():
    for _ in range(2):  # the second picture is made after many more records
        loss, *_ = bn_composed()
        ops = re.findall(r"\\n#(\d+)", mg.viz.draw_graph(loss).source)
        assert sorted(map(int, ops)) == list(range(1, len(ops) + 1))
        assert str(mg.tape(loss)).startswith("#1 ")


def test_a_tensors_own_name_shows():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.name = "hidden"
    src = mg.viz.draw_graph(h.sum()).source
    assert 'label="hidden\\n' in src or 'label="hidden' in src


def test_derivation_draws_the_seed_a_legend_and_no_gradient_from_nowhere():
    loss, x, gamma, beta = bn_composed()
    g = mg.viz.draw_derivation(loss, [x, gamma, beta])
    src = g.source
    seeds = re.findall(r'(\w+) \[label="seed\\ndL/dL = 1"[^\]]*class=seed', src)
    assert len(seeds) == 1
    assert re.search(rf"\t{seeds[0]} -> op\d+", src), "the first VJP reads the seed"
    assert "class=legend" in src and "seed: where backward starts" in src
    # every gradient node has an incoming arrow: none appears out of nowhere
    grads = re.findall(r'\t(\w+) \[label="dL/d[^"]*"[^\]]*class=grad\b', src)
    assert grads and all(re.search(rf" -> {n}\b", src) for n in grads)


def test_forward_is_drawn_left_of_backward():
    loss, x, *_ = bn_composed()
    svg = mg.viz.draw_derivation(loss, x).pipe(format="svg").decode()
    xs = {}
    for name in ("forward", "backward"):
        block = svg[svg.index(f">{name}</text>") - 400: svg.index(f">{name}</text>")]
        xs[name] = float(re.findall(r'x="([-\d.]+)"', block)[-1])
    assert xs["forward"] < xs["backward"]


def test_show_values_has_no_unknown_intermediates():
    loss, x, *_ = bn_composed(2, 2)
    src = mg.viz.draw_derivation(loss, x, show_values=True, show_grads=True).source
    assert "data ?" not in src and "not kept" not in src
    assert src.count("data ") > 20


def chain(n_ops: int):
    x = mg.tensor(np.ones(3, np.float32), requires_grad=True, name="x")
    y = x
    for _ in range(n_ops // 2):
        y = (y * 0.5).tanh()
    return y.sum()


def test_a_20000_op_graph_is_refused_within_seconds():
    loss = chain(20_000)
    start = time.perf_counter()
    with pytest.raises(mg.viz.GraphTooLargeError, match=r"max_depth=.*collapse=1") as err:
        mg.viz.draw_graph(loss)
    with pytest.raises(mg.viz.GraphTooLargeError):
        mg.viz.draw_derivation(loss, loss.grad_fn and mg.tape(loss)[0].edges[0].leaf)
    assert time.perf_counter() - start < 10.0  # refused before anything is laid out
    assert isinstance(err.value, mg.MinigradError) and "20001 ops" in str(err.value)
    assert len(mg.viz.draw_graph(loss, max_depth=10).source) < 20_000  # the advice works


class Deep(mg.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.blocks = mg.nn.Sequential(*[mg.nn.Sequential(mg.nn.Linear(2, 2), mg.nn.Tanh())
                                         for _ in range(n)])

    def forward(self, x):
        return self.blocks(x).sum()


def test_a_20000_op_model_graph_is_collapsed_within_seconds():
    loss = Deep(10_000)(mg.randn(1, 2))  # 2 ops per block
    assert len(mg.tape(loss)) >= 20_000
    start = time.perf_counter()
    g = mg.viz.draw_graph(loss)
    assert time.perf_counter() - start < 30.0
    assert "modules folded (collapse=1)" in g.source
    assert g.source.count("class=module") >= 1 and g.source.count("[label=") < 100


def test_rendering_has_a_timeout_and_a_notebook_never_hangs(tmp_path):
    g = mg.viz.draw_graph(chain(400))
    with pytest.raises(mg.viz.RenderTimeoutError, match=r"collapse=1.*max_depth"):
        g.pipe(format="svg", timeout=0.001)
    with pytest.raises(TimeoutError):
        mg.viz.save(g, tmp_path / "g.svg", timeout=0.001)
    with pytest.raises(mg.viz.RenderTimeoutError):
        g.render(outfile=tmp_path / "g.svg", timeout=0.001)
    assert not (tmp_path / "g.svg").exists()
    g.timeout = 0.001
    bundle = g._repr_mimebundle_()
    assert "did not finish" in bundle["text/plain"] and "image/svg+xml" not in bundle
    assert mg.viz.RENDER_TIMEOUT == mg.viz.Graph.timeout == 30.0


def test_bad_drawing_options_raise_minigrad_errors(tmp_path):
    loss, *_ = bn_composed()
    cases = [lambda: mg.viz.draw_graph(loss, rankdir="up"),
             lambda: mg.viz.draw_graph(loss, collapse=-1),
             lambda: mg.viz.draw_graph(loss, max_nodes=0),
             lambda: mg.viz.draw_graph("loss"),
             lambda: mg.viz.save(mg.viz.draw_graph(loss), tmp_path / "g.txt"),
             lambda: mg.viz.step_backward(loss)[99],
             lambda: mg.viz.step_backward(3.0)]
    for case in cases:
        with pytest.raises(mg.MinigradError):
            case()


def vjp_boxes(g) -> list[str]:
    return re.findall(r'label="(\d+\. VJP of [^"]*)"', g.source)


def test_plain_backward_fused_is_one_vjp_composed_is_a_chain():
    x, gamma, beta = (t for t in bn_composed()[1:])
    y_f = F.batch_norm(x, None, None, gamma, beta, impl="fused")
    y_c = F.batch_norm(x, None, None, gamma, beta, impl="composed")
    fused = vjp_boxes(mg.viz.draw_backward((y_f * y_f).sum(), [x, gamma, beta]))
    composed = vjp_boxes(mg.viz.draw_backward((y_c * y_c).sum(), [x, gamma, beta]))
    # the loss's own two VJPs (sum, mul), then the layer
    assert [b.split("\\n")[0] for b in fused] == ["1. VJP of sum #3", "2. VJP of mul #2",
                                                  "3. VJP of batch_norm #1"]
    assert fused[-1].endswith("hand-derived")
    assert len(composed) == 2 + len(mg.tape(y_c)) == 13
    assert all(b.endswith("primitive") for b in composed)
    numbers = [int(re.match(r"(\d+)\.", b)[1]) for b in composed]
    assert numbers == list(range(1, 14))  # the engine's order


def test_plain_backward_starts_at_the_seed_and_ends_at_the_gradients():
    loss, x, gamma, beta = bn_composed()
    src = mg.viz.draw_backward(loss, [x, gamma, beta]).source
    assert re.search(r"\tseed -> vjp\d+", src)
    for name in ("dL/dx", "dL/dγ", "dL/dβ"):
        assert re.search(rf'leaf\d+ \[label="{name}\\n', src), name
    assert x.grad is None  # drawing runs backward without touching .grad


def test_pipe_keeps_graphviz_options():
    g = mg.viz.draw_graph(chain(4))
    assert b"<svg" in g.pipe(format="svg", engine="neato")
    assert g.pipe(format="svg", encoding="utf-8").lstrip().startswith("<?xml")
