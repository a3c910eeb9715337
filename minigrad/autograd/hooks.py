"""Gradient hooks: `Tensor.register_hook` and `Tensor.retain_grad`.

A hook is a function of a gradient, called during backward (and `mg.grad`) once
the gradient of its tensor is complete, before it flows on. It may return a
replacement (a Tensor of the same shape) or None to leave it as it is. Hooks run in
the order they were registered, each seeing what the previous one returned, and
`retain_grad` keeps the final value in ``.grad`` (it runs last, as in PyTorch).

Where they live: a leaf keeps its hooks itself; an op's output keeps them on its
record (``record.hooks``, by output index), because the engine meets gradients at
records, and a record outlives the Tensor object when only its value is needed.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

from ..errors import ArgumentTypeError, GraphError, ShapeError
from . import function as fn_mod

_ids = itertools.count()
#: whether any gradient hook was ever registered: until then backward skips looking for them
used = [False]
_RETAIN = "retain_grad"  # the key of retain_grad's hook: it runs after the others


def next_id() -> int:
    """A fresh key for a hook (keys keep registration order)."""
    return next(_ids)


class RemovableHandle:
    """What ``register_hook`` returns: ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks: dict, key: Any) -> None:
        self._hooks = hooks
        self._key = key

    def remove(self) -> None:
        """Unregister the hook (removing it twice is harmless)."""
        self._hooks.pop(self._key, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _store(t: Any) -> dict:
    """The dictionary of hooks on ``t``'s gradient, made on first use."""
    used[0] = True
    e = t._edge
    if e is None:
        hooks = getattr(t, "_hooks", None)
        if hooks is None:
            hooks = t._hooks = {}
        return hooks
    rec = e.record
    if rec.hooks is None:
        rec.hooks = {}
    return rec.hooks.setdefault(e.index, {})


def register_hook(t: Any, fn: Any) -> RemovableHandle:
    """Call ``fn(grad)`` with ``t``'s gradient; see `Tensor.register_hook`."""
    if not callable(fn):
        raise ArgumentTypeError(f"register_hook: expected a function, got {type(fn).__name__}")
    if not t._rg:
        raise GraphError("register_hook: the tensor does not require grad, so no gradient "
                         "will ever reach a hook on it")
    hooks = _store(t)
    key = next(_ids)
    hooks[key] = fn
    return RemovableHandle(hooks, key)


def retain_grad(t: Any) -> None:
    """Keep a non-leaf tensor's gradient in its ``.grad`` (a leaf does anyway)."""
    if not t._rg:
        raise GraphError("retain_grad: the tensor does not require grad")
    if t._edge is None:
        return
    ref = weakref.ref(t)

    def keep(g: Any) -> None:
        owner = ref()
        if owner is None:
            return
        if fn_mod._local.grad:  # create_graph: .grad keeps the gradient's own graph
            owner.grad = g if owner.grad is None else owner.grad + g
            return
        arr = g._data.copy() if owner.grad is None else owner.grad._data + g._data
        owner.grad = fn_mod._tensor(arr, None, 0)

    _store(t)[_RETAIN] = keep


def _call(hooks: dict, g: Any, create_graph: bool) -> Any:
    """Run ``hooks`` on the gradient ``g`` (an array, or a Tensor under create_graph)."""
    gt = g if create_graph else fn_mod._tensor(g, None, 0)
    for key in sorted(hooks, key=lambda k: k == _RETAIN):  # retain_grad last
        new = hooks[key](gt)
        if new is None:
            continue
        if not isinstance(new, fn_mod._Tensor):
            new = fn_mod._tensor(new, None, 0)
        if new.shape != gt.shape:
            raise ShapeError(f"a gradient hook returned a gradient of shape {new.shape} for "
                             f"a tensor of shape {gt.shape}; a replacement must keep the shape")
        gt = new
    return gt if create_graph else gt._data


def run_record_hooks(rec: Any, gs: list, create_graph: bool) -> list:
    """The gradients of ``rec``'s outputs after the hooks on them ran."""
    gs = list(gs)
    for i, hooks in rec.hooks.items():
        if hooks and gs[i] is not None:
            gs[i] = _call(hooks, gs[i], create_graph)
    return gs


def run_leaf_hooks(leaf: Any, g: Any, create_graph: bool) -> Any:
    """A leaf's gradient after the hooks on it ran."""
    return _call(leaf._hooks, g, create_graph)
