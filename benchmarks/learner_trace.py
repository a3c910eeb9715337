"""How much code a learner reads to follow ``(x * w).tanh().sum().backward()``.

Runs that line under a tracer and lists every minigrad function that ran, with the
lines it spans (decorators included), then the files and the total: the code one
has to read to follow the line from the operator to the leaf's ``.grad``.

    python benchmarks/learner_trace.py [-v]
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

import minigrad as mg

ROOT = os.path.dirname(mg.__file__)


def functions_run() -> set[tuple[str, int, str]]:
    """(file, first line, name) of each minigrad function the line calls."""
    x = mg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    w = mg.tensor(np.array([3.0, 4.0]), requires_grad=True)
    seen: set = set()

    def tracer(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(ROOT):
            seen.add((code.co_filename, code.co_firstlineno, code.co_name))

    sys.settrace(tracer)
    try:
        (x * w).tanh().sum().backward()
    finally:
        sys.settrace(None)
    return seen


def spans(path: str) -> dict[int, int]:
    """First line (of the decorators, or the ``def``) -> number of lines, per function."""
    out = {}
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            first = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
            out[first] = out[node.lineno] = node.end_lineno - first + 1
    return out


def main() -> None:
    per_file: dict[str, int] = {}
    seen = sorted(functions_run())
    known = {path: spans(path) for path in {s[0] for s in seen}}
    for path, line, name in seen:
        n = known[path].get(line, 1)
        rel = os.path.relpath(path, os.path.dirname(ROOT))
        per_file[rel] = per_file.get(rel, 0) + n
        if "-v" in sys.argv:
            print(f"{rel}:{line} {name}: {n} lines")
    print(f"{len(per_file)} files, {sum(per_file.values())} lines in {len(seen)} functions")
    for rel, n in sorted(per_file.items()):
        print(f"  {rel}: {n}")


if __name__ == "__main__":
    main()
