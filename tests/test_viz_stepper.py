"""Backward step by step: the stepper and the text trace follow the real engine, and the
saved player works offline in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.autograd import observers


def small():
    x = mg.tensor([1.0, 2.0], requires_grad=True, name="x")
    w = mg.tensor([0.5, -1.0], requires_grad=True, name="w")
    b = mg.tensor(0.25, requires_grad=True, name="b")
    return ((x * w + b).tanh()).sum(), x, w, b


def bn_loss():
    rng = np.random.default_rng(1)
    x = mg.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="x")
    g = mg.tensor(rng.standard_normal(3), requires_grad=True, name="γ")
    b = mg.tensor(rng.standard_normal(3), requires_grad=True, name="β")
    y = F.batch_norm(x, None, None, g, b, impl="composed")
    return (y * y).sum(), (x, g, b)



def test_one_frame_per_vjp_call_in_the_engines_order():
    loss, x, w, b = small()
    seen = []
    with observers.observing_backward(lambda rec, gin, gout: seen.append(rec)):
        loss.backward(retain_graph=True)
    assert observers._backward_watched[0] == 0  # nobody listens once the block ends
    stepper = mg.viz.step_backward(loss)
    assert len(stepper) == len(seen) == len(mg.tape(loss))
    assert [s.record for s in stepper.steps] == seen
    assert [s.record.seq for s in stepper.steps] == sorted((r.seq for r in seen), reverse=True)


def test_values_are_the_engines_and_nothing_is_touched():
    loss, (x, g, b) = bn_loss()
    stepper = mg.viz.step_backward(loss)
    assert x.grad is None and g.grad is None  # no .grad touched
    sent: dict[int, np.ndarray] = {}
    for st in stepper.steps:
        for e, gi in zip(st.record.edges, st.sent):
            if gi is not None and e.leaf is not None:
                sent[id(e.leaf)] = sent.get(id(e.leaf), 0) + np.asarray(gi)
    loss.backward()  # the graph was not freed
    for t in (x, g, b):
        np.testing.assert_allclose(sent[id(t)], t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_each_frame_highlights_the_step_and_greys_what_is_done():
    loss, x, w, b = small()
    stepper = mg.viz.step_backward(loss)
    n = len(stepper)
    for k in range(n):
        src = stepper[k].source
        current = re.findall(r'(op\d+) \[label="([^"]*)"[^\]]*class=current', src)
        assert len(current) == 1
        number = mg.tape(loss).number(stepper.steps[k].record)
        assert current[0][0] == f"op{number}" and f"VJP step {k + 1} of {n}" in current[0][1]
        assert len(re.findall(r"class=done\b", src)) == k
        assert "class=received" in src and "class=sends" in src
        assert f"backward step {k + 1} of {n}" in src
    assert stepper[-1].source == stepper[n - 1].source
    with pytest.raises(IndexError, match=f"frames 0 to {n - 1}"):
        stepper[n]
    # step 1 is the sum: it receives the seed and sends ones to the tanh's output
    assert "dL/dv4 = 1.0" in stepper[0].source and "sends dL/dv3 += [1.0, 1.0]" in \
        stepper[0].source


def test_trace_backward_one_line_per_vjp_with_the_values():
    loss, x, w, b = small()
    text = mg.trace_backward(loss)
    assert mg.viz.trace_backward is mg.trace_backward
    lines = text.splitlines()
    steps = [ln for ln in lines if ln.startswith("step ")]
    assert len(steps) == len(mg.tape(loss)) == 4
    assert steps[0].startswith("step 1/4  #4 sum(v3)  receives dL/dv4 = 1.0")
    assert "sends dL/dx += " in steps[-1] and "dL/dw += " in steps[-1]
    loss.backward(retain_graph=True)
    got = float(re.search(r"result dL/db = (\S+)", text)[1])
    assert got == pytest.approx(b.grad.item(), rel=1e-3)
    only_b = mg.trace_backward(loss, inputs=b)
    assert "result dL/db" in only_b and "result dL/dx" not in only_b


def test_save_frames_as_svg_and_png(tmp_path):
    stepper = mg.viz.step_backward(small()[0])
    out = stepper.save(tmp_path / "frames", png=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"step_00{k}.{s}" for k in range(1, 5) for s in ("png", "svg")])
    assert (out / "step_001.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (out / "step_002.svg").read_text()
    with pytest.raises(mg.MinigradError, match="html"):
        stepper.save(tmp_path / "x.txt")


def test_the_player_is_one_offline_page_and_shows_in_jupyter(tmp_path):
    stepper = mg.viz.step_backward(small()[0])
    page = stepper.save(tmp_path / "player.html").read_text()
    assert page.count("<svg") == len(stepper) == page.count('class="mg-frame"')
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from the network
    assert "<script>" in page and "<script src" not in page
    html = stepper._repr_html_()
    assert html.count("<svg") == len(stepper) and "mg-slider" in html


def browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


needs_browser = pytest.mark.skipif(
    browser() is None, reason="no headless Chromium (scripts/setup.sh installs Debian's "
    "`chromium`; elsewhere install Chromium or Chrome)")


def run_browser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-extensions", *args],
                          capture_output=True, timeout=120, check=False)


@needs_browser
def test_player_steps_in_a_real_browser(tmp_path):
    loss, _ = bn_loss()
    stepper = mg.viz.step_backward(loss)
    page = stepper.save(tmp_path / "player.html")
    tp = mg.tape(loss)
    for step in (1, 3, len(stepper)):
        proc = run_browser("--dump-dom", f"{page.as_uri()}#step={step}")
        dom = proc.stdout.decode("utf-8", "replace")
        player = re.search(r'<div class="mg-player"[^>]*>', dom)
        assert player, proc.stderr.decode()[-2000:]
        want = f"op{tp.number(stepper.steps[step - 1].record)}"
        assert f'data-step="{step}"' in player[0] and f'data-op="{want}"' in player[0]
        active = re.findall(r'<div class="mg-frame mg-active" data-step="(\d+)"', dom)
        assert active == [str(step - 1)]  # exactly one frame shown: the one asked for


@needs_browser
def test_player_screenshot_is_not_blank(tmp_path):
    from PIL import Image, ImageStat

    # a picture taller than the window: the player scrolls the step's op into view
    page = mg.viz.step_backward(bn_loss()[0]).save(tmp_path / "player.html")
    shot = tmp_path / "shot.png"
    run_browser(f"--screenshot={shot}", "--window-size=900,700", f"{page.as_uri()}#step=7")
    assert shot.exists()
    img = Image.open(shot).convert("L")
    assert ImageStat.Stat(img).stddev[0] > 10  # a picture, not a blank page
    colours = Image.open(shot).convert("RGB").getcolors(1 << 20)
    orange = sum(n for n, (r, g, b) in colours if r > 240 and 200 < g < 225 and b < 110)
    assert orange > 200  # the highlighted op (fill #ffd54f) is on screen


def test_big_backwards_are_refused_not_hung():
    x = mg.tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(400):
        y = y * 0.5
    loss = y.sum()
    with pytest.raises(mg.viz.GraphTooLargeError, match="max_nodes"):
        mg.viz.step_backward(loss, max_nodes=100)
    stepper = mg.viz.step_backward(loss)  # 401 steps: frames one by one are fine
    assert len(stepper) == 401 and "class=current" in stepper[200].source
    with pytest.raises(mg.MinigradError, match="frames a player holds"):
        stepper.html()
    assert "frames a player holds" in stepper._repr_html_()  # advice, not a hang


def test_two_displays_of_one_stepper_are_two_players():
    stepper = mg.viz.step_backward(small()[0])
    ids = {re.search(r'class="mg-player" id="(\w+)"', stepper._repr_html_())[1] for _ in range(2)}
    assert len(ids) == 2


def test_trace_shows_whole_numbers_not_cut_text():
    x = mg.tensor([-0.38281, 0.19382, 0.18901, 0.21374, 0.16491, -0.37867], requires_grad=True,
                  name="x")
    text = mg.trace_backward((x * 1.0).sum())
    assert "result dL/dx = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]" in text
    y = mg.tensor(np.full(6, 2.0), requires_grad=True, name="y")
    assert "dL/dy += [-0.3828, 0.1938, 0.189, 0.2137, 0.1649, -0.3787]" in \
        mg.trace_backward((x * y).sum(), inputs=y)
