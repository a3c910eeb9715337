"""The text inside the boxes: op labels, tensor labels, small values, DOT quoting.

Everything here turns tape facts into plain strings; nothing keeps a reference to
a tensor or a record.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..autograd.tape import _fmt_param, _fmt_shape
from ..autograd.tape import const_text as tape_const_text

#: longest label line before it is cut with "..."
MAX_LINE = 48


def clip(text: str, limit: int = MAX_LINE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.lru_cache(maxsize=1024)
def shape_text(shape: tuple, dtype: Any, device: str | None = None) -> str:
    """``(3,) float32``, plus the device when it is not the CPU.

    Cached: a big graph repeats a few shapes thousands of times, and turning a
    NumPy dtype into text is slow.
    """
    text = f"{_fmt_shape(tuple(shape))} {dtype}"
    return text if device in (None, "cpu") else f"{text} {device}"


def op_lines(rec: Any) -> list[str]:
    """``["sum(axis=0)"]``: the op and its parameters, one line per parameter if long.

    Parameters that are None or False are left out: they are nearly always the
    defaults, and a box reading ``sum(axis=None, keepdims=False)`` says less than
    ``sum``. The Wengert list (``mg.tape``) still shows every parameter.
    """
    params = [f"{k}={_fmt_param(v)}" for k, v in (rec.params or {}).items()
              if v is not None and v is not False]
    if not params:
        return [rec.name]
    one_line = f"{rec.name}({', '.join(params)})"
    if len(one_line) <= MAX_LINE:
        return [one_line]
    last = len(params) - 1
    return [f"{rec.name}("] + [clip("  " + p + (")" if k == last else ","))
                               for k, p in enumerate(params)]


def const_text(rec: Any, i: int) -> str:
    """How the constant input ``i`` of ``rec`` reads, in the words ``mg.tape`` uses."""
    return clip(tape_const_text(rec, i, number_text))


def number_text(v: Any) -> str:
    """Four significant digits; floats keep a dot so ``2.0`` does not read as an int."""
    if isinstance(v, float):
        text = f"{v:.4g}"
        return text if any(c in text for c in ".ena") else text + ".0"
    return repr(v)


def values_text(array: Any, limit: int, width: int | None = MAX_LINE) -> str:
    """A few numbers of ``array``: all of them up to ``limit``, else the two ends; the
    text is cut at ``width`` characters (None: never)."""
    if hasattr(array, "get"):  # a CuPy array: copy to the host first
        array = array.get()
    a = np.asarray(array)
    if a.size == 1:
        return number_text(a.reshape(()).item())
    flat = a.reshape(-1)
    kind = flat.dtype.kind
    fmt = number_text if kind == "f" else str
    cut = clip if width is not None else (lambda text, *_: text)
    if flat.size <= limit:
        return cut("[" + ", ".join(fmt(x) for x in flat.tolist()) + "]", width)
    head = ", ".join(fmt(x) for x in flat[:2].tolist())
    tail = ", ".join(fmt(x) for x in flat[-2:].tolist())
    return cut(f"[{head}, ..., {tail}]", width)


# ------------------------------------------------------------------ DOT quoting
# Control characters other than tab and newline would end the DOT text (NUL) or be
# dropped silently: they are shown as ``\x00``. A newline becomes DOT's line break.
_CONTROL = {c: f"\\\\x{c:02x}" for c in (*range(32), 127) if c not in (9, 10)}
_CONTROL[10] = "\\n"


def escape(text: Any) -> str:
    """``text`` (made a string) safe inside a double-quoted DOT string, reading as itself.

    Every piece of text that reaches the DOT source goes through here: labels, cluster
    names and the title. Backslashes and quotes are escaped, so a name ending in ``\\``
    or looking like an HTML label (``<b>x</b>``) stays plain text.
    """
    text = str(text).replace("\\", "\\\\").replace('"', '\\"')
    return text.translate(_CONTROL)


# In an HTML-like label a backslash is literal, so a control character shows as \x07.
_HTML = {c: f"\\x{c:02x}" for c in (*range(32), 127)}
_HTML.update({ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"})


def escape_html(text: Any) -> str:
    """``text`` (made a string) safe inside an HTML-like DOT label, reading as itself."""
    return str(text).translate(_HTML)


_RECORD_SPECIAL = str.maketrans({c: "\\" + c for c in "{}|<>"})


def escape_field(text: str) -> str:
    """Text safe inside one field of a ``record`` shaped node."""
    return escape(text).translate(_RECORD_SPECIAL)


def label(lines: list[str], fields: list[str], horizontal: bool) -> str:
    """A quoted DOT label: lines joined by centred line breaks, then record fields.

    With fields (``data ...``, ``grad ...``) the node is a record and the fields sit
    side by side, like micrograd's pictures; ``horizontal`` is False when the layout
    runs left to right, where Graphviz would otherwise stack them.
    """
    if not fields:
        return '"' + "\\n".join(escape(s) for s in lines) + '"'
    head = "\\n".join(escape_field(s) for s in lines)
    body = "|".join([head] + [escape_field(f) for f in fields])
    return '"' + (body if horizontal else "{" + body + "}") + '"'
