"""Module scopes: the dotted paths that place ops in nested module boxes.

``nn.Module`` pushes a ``Scope(path, kind)`` while it runs, so every record made
inside knows the dotted path of its module (``"layers.1"``; ``""`` for the
outermost module) and the module's class name. Paths nest like folders:
``""`` contains ``"layers"`` which contains ``"layers.1"``.
"""

from __future__ import annotations

from collections.abc import Iterable


def ancestors(path: str) -> list[str]:
    """``"a.b"`` -> ``["", "a", "a.b"]``: the outermost module first, ``path`` last."""
    if path == "":
        return [""]
    parts = path.split(".")
    return [""] + [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


def depth(path: str) -> int:
    """0 for the outermost module, 1 for its children, and so on."""
    return 0 if path == "" else path.count(".") + 1


def parent(path: str) -> str | None:
    return None if path == "" else ancestors(path)[-2]


def common_scope(paths: Iterable[str | None]) -> str | None:
    """The innermost module containing all ``paths`` (None if one is outside modules)."""
    common: list[str] | None = None
    for p in paths:
        if p is None:
            return None
        parts = p.split(".") if p else []
        if common is None:
            common = parts
        else:
            n = 0
            while n < min(len(common), len(parts)) and common[n] == parts[n]:
                n += 1
            common = common[:n]
    return None if common is None else ".".join(common)


def scope_label(path: str, kinds: dict[str, str]) -> str:
    """``layers.1: BatchNorm1d``; ``(root): Net`` for the outermost module."""
    shown = path or "(root)"
    kind = kinds.get(path)
    return f"{shown}: {kind}" if kind else shown
