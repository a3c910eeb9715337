"""Showing and saving pictures: the ``Graph`` class, ``save`` and the missing-``dot`` error.

Building a picture only makes DOT text, which needs nothing but Python. Turning it
into SVG/PNG/PDF (and showing it in Jupyter) runs Graphviz's ``dot`` program.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import graphviz

from ..errors import ArgumentError, ArgumentTypeError, MinigradError
from ..io import write_atomic as _write_atomic

INSTALL_HINT = (
    "Graphviz's `dot` program was not found, so the picture cannot be rendered. "
    "Install Graphviz itself (the Python package alone is not enough): "
    "`apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS), "
    "`conda install graphviz` (conda), or https://graphviz.org/download/ -- then "
    "restart Python. Without it, `graph.source` still gives the DOT text, and "
    "mg.viz.save(graph, 'graph.dot') still writes it.")


class DrawingValueError(ArgumentError):
    """A drawing option or path with a value ``mg.viz`` cannot use; the message says which."""


class DrawingTypeError(ArgumentTypeError):
    """``mg.viz`` got an argument of the wrong type (e.g. not a Tensor)."""


class GraphvizNotFoundError(graphviz.ExecutableNotFound, MinigradError):
    """Graphviz's ``dot`` is not installed; the message says how to install it."""

    def __init__(self, message: str = INSTALL_HINT) -> None:
        RuntimeError.__init__(self, message)  # the parent formats its own message


class RenderError(MinigradError, RuntimeError):
    """Graphviz's ``dot`` ran but failed; the message quotes what it said."""


#: seconds ``dot`` may run before rendering gives up (``Graph.timeout``, ``save(timeout=)``)
RENDER_TIMEOUT = 30.0


class RenderTimeoutError(MinigradError, TimeoutError):
    """Graphviz's ``dot`` ran longer than the timeout; the message says how to draw less."""


def timeout_message(graph: Any, timeout: float) -> str:
    n = graph.source.count(" [label=")
    return (f"render: Graphviz's `dot` did not finish laying out this picture ({n} nodes) "
            f"within {timeout:g} s, so it was stopped. Draw less: collapse=1 (or a set of "
            "module class names such as {'BatchNorm2d'}) folds modules into boxes, "
            "max_depth=k draws only the last k ops; or allow more time with timeout= "
            "(Graph.timeout for Jupyter). graph.source still gives the DOT text.")


class Graph(graphviz.Digraph):
    """A ``graphviz.Digraph`` that renders with a timeout and explains a missing ``dot``.

    Show it in Jupyter by leaving it as the last expression of a cell; ``.source``
    is the DOT text; ``.render("name", format="svg")`` writes a file (or use
    ``mg.viz.save(graph, "name.svg")``). ``dot`` runs at most ``timeout`` seconds
    (``RENDER_TIMEOUT``, 30 s, unless set on the graph or passed to ``pipe``,
    ``render`` or ``save``); past that a ``RenderTimeoutError`` says how to draw
    less, and a Jupyter cell shows that advice instead of hanging.
    """

    timeout: float | None = RENDER_TIMEOUT

    def pipe(self, format: str | None = None, *args: Any, encoding: str | None = None,
             timeout: float | None = None, **kwargs: Any) -> Any:
        """The picture rendered by ``dot`` in ``format`` (bytes, or text with ``encoding``)."""
        kwargs.pop("quiet", None)
        if args or any(v is not None for v in kwargs.values()) or self.engine != "dot":
            # another layout engine, renderer or formatter: graphviz's own way, no timeout
            return self._graphviz_pipe(format, *args, encoding=encoding, **kwargs)
        data = run_dot(self.source, format or self.format or "svg",
                       self.timeout if timeout is None else timeout, self)
        return data.decode(encoding) if encoding else data

    def _graphviz_pipe(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().pipe(*args, **kwargs)
        except graphviz.ExecutableNotFound:
            raise GraphvizNotFoundError() from None

    def render(self, filename: Any = None, directory: Any = None, view: bool = False,
               cleanup: bool = False, format: str | None = None, *,
               outfile: Any = None, timeout: float | None = None, **kwargs: Any) -> str:
        """Write the picture to a file like ``graphviz.Digraph.render``, within ``timeout``.

        ``outfile`` names the file (its suffix gives the format); otherwise the DOT
        source is saved as ``filename`` and the picture next to it (``g.gv.svg``).
        """
        if view or kwargs:
            try:
                return super().render(filename, directory, view, cleanup, format,
                                      outfile=outfile, **kwargs)
            except graphviz.ExecutableNotFound:
                raise GraphvizNotFoundError() from None
        if outfile is not None:
            target = Path(outfile)
            fmt = format or FORMATS.get(target.suffix.lower()) or self.format or "pdf"
        else:
            fmt = format or self.format or "pdf"
            source_path = Path(self.save(filename, directory))
            target = Path(f"{source_path}.{fmt}")
        data = self.pipe(format=fmt, timeout=timeout)
        write_atomic(target, data)
        if cleanup and outfile is None:
            source_path.unlink()
        return str(target)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> dict:
        # In a notebook a missing `dot` or a picture too big to lay out should read as
        # advice, not as a traceback or a cell that never finishes.
        try:
            return super()._repr_mimebundle_(include, exclude, **kwargs)
        except graphviz.ExecutableNotFound:
            return {"text/plain": INSTALL_HINT}
        except RenderTimeoutError as exc:
            return {"text/plain": str(exc)}


def run_dot(source: str, fmt: str, timeout: float | None, graph: Any = None,
            what: str = "render: Graphviz's dot could not render this picture") -> bytes:
    """Run ``dot -T<fmt>`` on ``source``; stop it after ``timeout`` seconds.

    A failing ``dot`` raises `RenderError`: ``what``, then what ``dot`` said."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFoundError()
    try:
        proc = subprocess.run([exe, f"-T{fmt}"], input=source.encode("utf-8"),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderTimeoutError(timeout_message(graph if graph is not None else
                                                 graphviz.Source(source), timeout)) from None
    if proc.returncode != 0:
        said = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise RenderError(f"{what}: {said}")
    return proc.stdout


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves no half file (see `mg.io`)."""
    _write_atomic(path, lambda f: f.write(data))


#: file suffix -> Graphviz output format
FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg"}
DOT_SUFFIXES = (".dot", ".gv")


def save(graph: graphviz.Digraph, path: str | os.PathLike,
         timeout: float | None = RENDER_TIMEOUT) -> Path:
    """Write ``graph`` to ``path``; the suffix picks the format.

    ``.svg``, ``.png``, ``.pdf``, ``.jpg`` run Graphviz's ``dot``, for at most
    ``timeout`` seconds (30 by default; None waits for ever); ``.dot`` and ``.gv``
    write the DOT text and need no Graphviz at all. Returns the path.
    """
    if not (hasattr(graph, "source") and hasattr(graph, "pipe")):
        raise DrawingTypeError(f"save: expected a graph from mg.viz.draw_graph, got "
                               f"{type(graph).__name__}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in DOT_SUFFIXES:
        write_atomic(p, graph.source.encode("utf-8"))
        return p
    fmt = FORMATS.get(suffix)
    if fmt is None:
        known = ", ".join([*FORMATS, *DOT_SUFFIXES])
        raise DrawingValueError(f"save: cannot tell the format from {p.name!r}; end the file "
                                f"name with one of {known}")
    data = run_dot(graph.source, fmt, timeout, graph,
                   what=f"save: Graphviz's dot could not render {p.name!r}")
    write_atomic(p, data)
    return p
