"""`mg.detect_anomaly()`: stop at the first op that makes a NaN or an infinity.

Inside the block every op checks what it produced: a forward output, or (in
backward) the gradients its VJP returned. The first one that holds a NaN or an
infinity although none of what it was given did raises `GraphError` naming the op,
its record number and the line of the user's code that called the op's forward
(captured while the block is on, and kept on the record as ``record.source``).

Off, it costs nothing: `Function.apply` tests one counter it tests anyway for
forward mode, and backward one flag per call.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..backend import xp_of
from ..errors import GraphError
from .forward import count_special
from .function import _local

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


@contextmanager
def detect_anomaly() -> Iterator[None]:
    """Raise at the first NaN/Inf an op produces, forward or backward (this thread)."""
    prev = _local.anomaly
    _local.anomaly = True
    count_special(1)
    try:
        yield
    finally:
        _local.anomaly = prev
        count_special(-1)


def is_anomaly_enabled() -> bool:
    """Whether `detect_anomaly` is on in this thread."""
    return _local.anomaly


def caller_line() -> str | None:
    """``file:line`` of the innermost frame outside the minigrad package."""
    f = sys._getframe(1)
    while f is not None:
        name = f.f_code.co_filename
        if not os.path.abspath(name).startswith(_PACKAGE):
            return f"{name}:{f.f_lineno}"
        f = f.f_back
    return None


def _bad(a: Any) -> bool:
    """Whether the array ``a`` (or a Tensor's array) holds a NaN or an infinity."""
    a = getattr(a, "_data", a)
    if isinstance(a, float):
        return not math.isfinite(a)
    if not hasattr(a, "dtype") or a.dtype.kind not in "fc":
        return False
    return not bool(xp_of(a).isfinite(a).all())


def _where(rec: Any) -> str:
    num = f"record #{rec.seq}" if rec.seq >= 0 else "not recorded"
    src = f", called at {rec.source}" if rec.source else ""
    return f"{rec.name} ({num}{src})"


def check_forward(ctx: Any, arrays: list, out: Any) -> None:
    """Raise if the op's output is not finite although its inputs were."""
    outs = out if type(out) is tuple else (out,)
    for k, o in enumerate(outs):
        if _bad(o) and not any(_bad(a) for a in arrays):
            raise GraphError(f"detect_anomaly: {_where(ctx)} produced nan/inf in its output "
                             f"{k} from finite inputs")


def checked_vjp(vjp: Any) -> Any:
    """``vjp`` (the engine's call of a record's backward) followed by the anomaly check."""
    def run(rec: Any, gs: list, create_graph: bool) -> Any:
        out = vjp(rec, gs, create_graph)
        for k, g in enumerate(out):
            if g is not None and _bad(g) and not any(_bad(x) for x in gs if x is not None):
                raise GraphError(f"detect_anomaly: the backward of {_where(rec)} produced "
                                 f"nan/inf in the gradient of its input {k} from finite "
                                 "gradients of its outputs")
        return out

    return run
