"""Showing and saving pictures: the ``Graph`` class, ``save`` and the missing-``dot`` error.

Building a picture only makes DOT text, which needs nothing but Python. Turning it
into SVG/PNG/PDF (and showing it in Jupyter) runs Graphviz's ``dot`` program.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import graphviz

from ..errors import ArgumentError, ArgumentTypeError, MinigradError

INSTALL_HINT = (
    "Graphviz's `dot` program was not found, so the picture cannot be rendered. "
    "Install Graphviz itself (the Python package alone is not enough): "
    "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS), "
    "`conda install graphviz` (conda), or https://graphviz.org/download/ -- then "
    "restart Python. Without it, `graph.source` still gives the DOT text, and "
    "mg.viz.save(graph, 'graph.dot') still writes it.")


class GraphvizNotFoundError(graphviz.ExecutableNotFound, MinigradError):
    """Graphviz's ``dot`` is not installed; the message says how to install it."""

    def __init__(self, message: str = INSTALL_HINT) -> None:
        RuntimeError.__init__(self, message)  # the parent formats its own message


class RenderError(MinigradError, RuntimeError):
    """Graphviz's ``dot`` ran but failed; the message quotes what it said."""


def _stderr(exc: Exception) -> str:
    err = getattr(exc, "stderr", None) or b""
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
    return text.strip() or str(exc)


class Graph(graphviz.Digraph):
    """A ``graphviz.Digraph`` that explains how to install Graphviz when ``dot`` is missing.

    Show it in Jupyter by leaving it as the last expression of a cell; ``.source``
    is the DOT text; ``.render("name", format="svg")`` writes a file (or use
    ``mg.viz.save(graph, "name.svg")``).
    """

    def pipe(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().pipe(*args, **kwargs)
        except GraphvizNotFoundError:
            raise
        except graphviz.ExecutableNotFound:
            raise GraphvizNotFoundError() from None

    def render(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().render(*args, **kwargs)
        except GraphvizNotFoundError:
            raise
        except graphviz.ExecutableNotFound:
            raise GraphvizNotFoundError() from None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> dict:
        # In a notebook a missing `dot` should read as advice, not as a traceback.
        try:
            return super()._repr_mimebundle_(include, exclude, **kwargs)
        except graphviz.ExecutableNotFound:
            return {"text/plain": INSTALL_HINT}


#: file suffix -> Graphviz output format
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg"}
DOT_SUFFIXES = (".dot", ".gv")


def save(graph: graphviz.Digraph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path``; the suffix picks the format.

    ``.svg``, ``.png``, ``.pdf``, ``.jpg`` run Graphviz's ``dot``; ``.dot`` and
    ``.gv`` write the DOT text and need no Graphviz at all. Returns the path.
    """
    if not (hasattr(graph, "source") and hasattr(graph, "pipe")):
        raise ArgumentTypeError(f"save: expected a graph from mg.viz.draw_graph, got "
                                f"{type(graph).__name__}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in DOT_SUFFIXES:
        p.write_text(graph.source, encoding="utf-8")
        return p
    fmt = FORMATS.get(suffix)
    if fmt is None:
        known = ", ".join([*FORMATS, *DOT_SUFFIXES])
        raise ArgumentError(f"save: cannot tell the format from {p.name!r}; end the file name "
                            f"with one of {known}")
    try:
        data = graph.pipe(format=fmt)
    except GraphvizNotFoundError:
        raise
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFoundError() from None
    except graphviz.CalledProcessError as exc:
        raise RenderError(f"save: Graphviz's dot could not render {p.name!r}: "
                          f"{_stderr(exc)}") from None
    p.write_bytes(data)
    return p
