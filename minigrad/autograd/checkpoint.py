"""`mg.checkpoint(fn, *args)`: trade compute for memory.

``fn`` runs under ``no_grad``, so none of its intermediate values is kept; the tape
gets one record, ``checkpoint``, from ``fn``'s inputs to its outputs. When backward
reaches that record, it runs ``fn`` again with grad mode on (the same inputs, the same
random numbers) and backpropagates through the fresh graph, which is freed right
after. The gradients are those of the plain run, bit for bit: the same ops run on the
same values in the same order.

What flows back: the Tensor arguments, and the parameters ``fn`` uses without being
given them, found where Python keeps them: ``fn`` itself when it is a Module (or a
bound method of one), its closure and its default arguments (Tensors, Modules, and
lists or tuples of them). A tensor that requires grad reached any other way (a
global, an attribute of some other object) cannot be connected to the record: the
backward finds it in the recomputed graph and raises, rather than leave its gradient
out. Random numbers: the CPU generator's state is saved before the forward and
restored for the recomputation, so dropout draws the same mask; CuPy's generator is
not restored (a dropout inside a checkpoint on the GPU would draw a new mask).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import random as _random
from ..errors import GraphError
from . import function as fn_mod
from .api import grad
from .engine import collect
from .function import Function, enable_grad, is_grad_enabled, no_grad


class Checkpoint(Function):
    """The one record of a checkpointed call; ``run`` (a parameter) re-runs ``fn``."""

    op_name = "checkpoint"

    @staticmethod
    def forward(ctx: Any, *arrays: Any, run: Callable[[], Any], n_args: int) -> Any:
        ctx.rng = _random.get_state()
        with no_grad():
            outs = run()
        ctx.save_for_backward(*[a for a in arrays if hasattr(a, "shape")])
        ctx.multi = type(outs) is tuple
        return tuple(o._data for o in outs) if ctx.multi else outs._data

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        ctx.saved_tensors  # noqa: B018 - raises if an input was changed in place since
        run = ctx.params["run"]
        need = ctx.needs_input_grad
        args, params = run.args, run.params
        leaves = [_leaf(a, need[k]) for k, a in enumerate(args)]
        mark = next(fn_mod._seq)
        state = _random.get_state()
        _random.set_state(ctx.rng)
        try:
            with enable_grad():
                out = run.fn(*leaves)
        finally:
            _random.set_state(state)
        outs = out if isinstance(out, tuple) else (out,)
        targets = [t for t, k in zip(leaves + list(params), range(len(need)))
                   if isinstance(t, fn_mod._Tensor) and need[k]]
        _check_reached(outs, mark, set(map(id, leaves + list(params))))
        live = [(o, g) for o, g in zip(outs, grads) if o.requires_grad and g is not None]
        if not live or not targets:
            return (None,) * len(need)
        create = is_grad_enabled()
        gs = iter(grad([o for o, _ in live], targets, [g for _, g in live],
                       retain_graph=create, create_graph=create, allow_unused=True))
        return tuple(next(gs) if isinstance(t, fn_mod._Tensor) and need[k] else None
                     for k, t in enumerate(leaves + list(params)))


def _leaf(a: Any, needs_grad: bool) -> Any:
    """A fresh leaf with ``a``'s values for the recomputation (other values as they are)."""
    if not isinstance(a, fn_mod._Tensor):
        return a
    t = fn_mod._tensor(a._data, None, 0)
    t._rg = needs_grad
    return t


def _check_reached(outs: tuple, mark: int, known: set) -> None:
    """Everything the recomputed graph reaches must be an input of the record."""
    for rec in collect([o for o in outs if isinstance(o, fn_mod._Tensor)]):
        if rec.seq < mark:
            raise GraphError(f"checkpoint: the function used a tensor made by {rec.name} "
                             f"(record #{rec.seq}) that is not one of its arguments; pass it "
                             "as an argument so its gradient can flow back")
        for e in rec.edges:
            if e.leaf is not None and id(e.leaf) not in known:
                raise GraphError(
                    f"checkpoint: the function used a tensor of shape {e.leaf.shape} that "
                    "requires grad but is neither an argument nor found in its closure, "
                    "defaults or module; pass it as an argument")


def _captured(fn: Any) -> list:
    """The leaf tensors requiring grad that ``fn`` holds: module parameters, closure cells
    and defaults (Tensors, Modules, and lists or tuples of them)."""
    objs: list = [fn, getattr(fn, "__self__", None)]
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            objs.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    objs.extend(getattr(fn, "__defaults__", None) or ())
    found: dict = {}
    for o in objs:
        for item in (o if isinstance(o, (list, tuple)) else (o,)):
            _collect_leaves(item, found)
    return list(found.values())


def _collect_leaves(o: Any, found: dict) -> None:
    if isinstance(o, fn_mod._Tensor):
        if o._rg and o._edge is not None:
            raise GraphError("checkpoint: the function holds a tensor with history (made by "
                             f"{o._edge.record.name}); pass it as an argument instead")
        if o._rg:
            found[id(o)] = o
    elif callable(getattr(o, "parameters", None)) and hasattr(o, "_parameters"):
        for p in o.parameters():
            if p._rg:
                found[id(p)] = p


class _Run:
    """``fn`` with its arguments: what the record needs to run it again."""

    def __init__(self, fn: Callable[..., Any], args: tuple, params: list) -> None:
        self.fn, self.args, self.params = fn, args, params

    def __call__(self) -> Any:
        out = self.fn(*self.args)
        if isinstance(out, list):
            out = tuple(out)
        for o in out if isinstance(out, tuple) else (out,):
            if not isinstance(o, fn_mod._Tensor):
                raise GraphError(f"checkpoint: the function must return Tensors, got "
                                 f"{type(o).__name__}")
        return out

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)


def checkpoint(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` without keeping its intermediate values; they are recomputed in backward.

    Same values and gradients as ``fn(*args)``; the memory of ``fn``'s intermediates is
    traded for running ``fn`` a second time during backward. Without grad mode (or
    under ``mg.jvp``) it is simply ``fn(*args)``.
    """
    if not is_grad_enabled():
        return fn(*args)
    params = [p for p in _captured(fn) if not any(p is a for a in args)]
    return Checkpoint.apply(*args, *params, run=_Run(fn, args, params), n_args=len(args))
