"""Regenerate every picture of docs/img/ that minigrad draws.

    python -m minigrad.viz.docs_pictures            # write docs/img/*
    python -m minigrad.viz.docs_pictures --check    # exit 1 if a committed one is stale

The pictures are made from fixed data, and minigrad numbers records from 1 in every
picture, so the DOT text of a picture depends only on the code that draws it. Each
SVG carries the SHA-256 of its DOT text in a comment; ``--check`` (and the test
suite) recompute the DOT text, which needs no Graphviz, and compare. Each SVG also
gets a small PNG thumbnail (``*.thumb.png``) for the README.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import creation
from ..nn import functional as F
from .derivation import draw_derivation
from .draw import draw_graph
from .output import Graph, run_dot, write_atomic
from .stepper import draw_backward, step_backward

IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
STAMP = re.compile(r"<!-- minigrad-dot-sha256: ([0-9a-f]{64}) -->")
#: a README thumbnail: at most this wide (inches at 96 dpi), cut to this many pixels high
THUMB_WIDTH = 9.2
THUMB_HEIGHT = 900


def bn_inputs() -> tuple:
    """A batch of 4 samples with 3 channels, and the affine parameters, named as in the paper."""
    rng = np.random.default_rng(2015)
    x = creation.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True,
                        name="x")
    gamma = creation.tensor(np.array([1.5, 0.5, 1.0], np.float32), requires_grad=True, name="γ")
    beta = creation.tensor(np.array([0.1, -0.2, 0.0], np.float32), requires_grad=True, name="β")
    return x, gamma, beta


def bn(impl: str) -> tuple:
    """``y = BN(x)`` in training mode and a loss ``L = sum(y * y)`` (so dL/dx is not 0)."""
    x, gamma, beta = bn_inputs()
    y = F.batch_norm(x, None, None, gamma, beta, training=True, impl=impl)
    y.name = "y"
    loss = (y * y).sum()
    loss.name = "L"
    return y, loss, (x, gamma, beta)


def forward(impl: str) -> Graph:
    y, _, _ = bn(impl)
    what = ("every step of Algorithm 1 is a recorded op, named after its quantity"
            if impl == "composed" else "one op: forward and a hand-derived gradient")
    return draw_graph(y, legend=True, title=f"BatchNorm, impl=\"{impl}\": {what}")


def backward(impl: str) -> Graph:
    _, loss, ins = bn(impl)
    what = ("one VJP per primitive: the engine walks the whole chain"
            if impl == "composed" else "the whole layer is ONE VJP call (hand-derived)")
    return draw_backward(loss, list(ins), title=f"loss.backward(), impl=\"{impl}\": {what}")


def derivation(impl: str) -> Graph:
    _, loss, ins = bn(impl)
    what = ("the chain rule through every primitive, as recorded ops"
            if impl == "composed" else
            "the hand-derived VJP written in tensor ops (drawn for reading, not a cost count: "
            "a plain backward runs it as one call)")
    return draw_derivation(loss, list(ins),
                           title=f"create_graph=True, impl=\"{impl}\": {what}")


#: file name -> what draws it
PICTURES: dict[str, Callable[[], Graph]] = {
    "bn-composed-forward.svg": lambda: forward("composed"),
    "bn-fused-forward.svg": lambda: forward("fused"),
    "bn-composed-backward.svg": lambda: backward("composed"),
    "bn-fused-backward.svg": lambda: backward("fused"),
    "bn-composed-derivation.svg": lambda: derivation("composed"),
    "bn-fused-derivation.svg": lambda: derivation("fused"),
}
#: the offline player of the composed BatchNorm's backward
PLAYER = "bn-composed-backward-steps.html"


def dot_hash(graph: Graph) -> str:
    return hashlib.sha256(graph.source.encode("utf-8")).hexdigest()


def stamped_svg(graph: Graph) -> bytes:
    """The SVG of ``graph`` with the hash of its DOT text after the XML prologue."""
    svg = run_dot(graph.source, "svg", None, graph).decode("utf-8")
    stamp = f"<!-- minigrad-dot-sha256: {dot_hash(graph)} -->\n"
    head, sep, rest = svg.partition("?>\n")
    return ((head + sep + stamp + rest) if sep else stamp + svg).encode("utf-8")


def thumbnail(graph: Graph) -> bytes:
    """A PNG at most ``THUMB_WIDTH`` wide; a tall picture is cut to its top part, which
    stays readable at page width (the README links each one to the whole SVG)."""
    source = graph.source.replace("digraph minigrad {",
                                  f'digraph minigrad {{\n\tsize="{THUMB_WIDTH},1000"', 1)
    png = run_dot(source, "png", None, graph)
    try:
        from PIL import Image  # matplotlib brings it; without it the thumbnail is uncut
    except ImportError:
        return png
    img = Image.open(io.BytesIO(png))
    if img.height <= THUMB_HEIGHT:
        return png
    out = io.BytesIO()
    img.crop((0, 0, img.width, THUMB_HEIGHT)).save(out, format="PNG")
    return out.getvalue()


def player_page() -> tuple[str, str]:
    """The player's HTML and the hash of its frames' DOT text."""
    _, loss, ins = bn("composed")
    stepper = step_backward(loss, list(ins))
    digest = hashlib.sha256("".join(stepper[k].source for k in range(len(stepper)))
                            .encode("utf-8")).hexdigest()
    return stepper, digest


def stale(img: Path = IMG) -> list[str]:
    """The pictures whose committed file was not drawn from today's DOT text."""
    out = []
    for name, make in PICTURES.items():
        path = img / name
        found = STAMP.search(path.read_text(encoding="utf-8")) if path.exists() else None
        if found is None or found[1] != dot_hash(make()):
            out.append(name)
        if not (img / name.replace(".svg", ".thumb.png")).exists():
            out.append(name.replace(".svg", ".thumb.png"))
    path = img / PLAYER
    _, digest = player_page()
    if not path.exists() or f"minigrad-dot-sha256: {digest}" not in path.read_text("utf-8"):
        out.append(PLAYER)
    return out


def write_all(img: Path = IMG) -> list[Path]:
    img.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in PICTURES.items():
        graph = make()
        write_atomic(img / name, stamped_svg(graph))
        write_atomic(img / name.replace(".svg", ".thumb.png"), thumbnail(graph))
        written += [img / name, img / name.replace(".svg", ".thumb.png")]
    stepper, digest = player_page()
    stepper.save(img / PLAYER)
    page = (img / PLAYER).read_text("utf-8").replace(
        "<head>", f"<head>\n<!-- minigrad-dot-sha256: {digest} -->", 1)
    write_atomic(img / PLAYER, page.encode("utf-8"))
    written.append(img / PLAYER)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minigrad.viz.docs_pictures",
                                     description="Regenerate the pictures in docs/img/.")
    parser.add_argument("--check", action="store_true",
                        help="only report stale pictures (exit status 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"stale: docs/img/{name}")
        if bad:
            print("regenerate with: python -m minigrad.viz.docs_pictures")
        return 1 if bad else 0
    for p in write_all():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
