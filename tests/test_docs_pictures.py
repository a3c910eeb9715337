"""The pictures in docs/img/ are generated: a committed one that today's code would draw
differently is stale, and this test says how to regenerate it."""

from __future__ import annotations

from pathlib import Path

from minigrad.viz import docs_pictures

ROOT = Path(__file__).resolve().parents[1]


def test_committed_pictures_are_what_the_code_draws_today():
    bad = docs_pictures.stale()
    assert not bad, (f"stale pictures in docs/img: {', '.join(bad)}; regenerate them with "
                     "`python -m minigrad.viz.docs_pictures` and commit the result")


def test_a_changed_picture_is_caught(tmp_path):
    name = "bn-fused-forward.svg"
    svg = (docs_pictures.IMG / name).read_text(encoding="utf-8")
    (tmp_path / name).write_text(svg.replace("minigrad-dot-sha256: ", "minigrad-dot-sha256: 0"
                                             )[:-1], encoding="utf-8")
    assert name in docs_pictures.stale(tmp_path)


def test_readme_shows_thumbnails_linked_to_the_full_pictures():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in docs_pictures.PICTURES:
        thumb = name.replace(".svg", ".thumb.png")
        assert "[![" in readme and f"(docs/img/{thumb})](docs/img/{name})" in readme, name
    assert "<td" not in readme.split("## See the graph")[1].split("\n## ")[0]
