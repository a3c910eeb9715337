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
restored for the recomputation, so dropout draws the same mask. CuPy's generator has no
state to save: on the GPU each checkpoint draws a seed from it and seeds it with that
before its forward and again before the recomputation, so the masks agree too (but differ
from those of a run without the checkpoint, whose stream is not reseeded). The
buffers of the modules found (BatchNorm's running statistics) are put back after the
recomputation, so a batch is folded into them once, as in the plain run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import backend as _backend
from .. import random as _random
from ..errors import GraphError
from . import function as fn_mod
from .api import grad
from .function import Function, enable_grad, is_grad_enabled, no_grad


class Checkpoint(Function):
    """The one record of a checkpointed call; ``run`` (a parameter) re-runs ``fn``."""

    op_name = "checkpoint"

    @staticmethod
    def forward(ctx: Any, *arrays: Any, run: Callable[[], Any], n_args: int) -> Any:
        ctx.rng, ctx.device_seed = _random.get_state(), _device_seed()
        with no_grad():
            outs = run()
        # The Tensor arguments, for the recomputation: saved, so that backward frees them
        ctx.save_for_backward(*[a for a, t in zip(arrays, run.args) if run.is_tensor(t)])
        ctx.multi = type(outs) is tuple
        return tuple(o._data for o in outs) if ctx.multi else outs._data

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        run = ctx.params["run"]
        saved = iter(ctx.saved_tensors)  # raises if one was changed in place since
        need = ctx.needs_input_grad
        create = is_grad_enabled()  # create_graph: the gradients must reach the inputs
        mark = next(fn_mod._seq)
        state, buffers = _random.get_state(), _buffers(run.modules)
        _random.set_state(ctx.rng)
        if ctx.device_seed is not None:
            _backend._cupy.random.seed(ctx.device_seed)
        try:
            with enable_grad():
                xs = [_input(next(saved), need[k], create) if run.is_tensor(a) else a
                      for k, a in enumerate(run.args)]
                out = run.fn(*xs)
        finally:  # the recomputation must not count twice: random draws, running stats
            _random.set_state(state)
            for b, values in buffers:
                b._data[...] = values
        outs = out if isinstance(out, tuple) else (out,)
        sources = xs + list(run.params)
        _check_reached(outs, mark, sources)
        targets = [t for t, k in zip(sources, range(len(need)))
                   if isinstance(t, fn_mod._Tensor) and need[k]]
        live = [(o, g) for o, g in zip(outs, grads) if o.requires_grad and g is not None]
        if not live or not targets:
            return (None,) * len(need)
        gs = iter(grad([o for o, _ in live], targets, [g for _, g in live],
                       retain_graph=create, create_graph=create, allow_unused=True))
        return tuple(next(gs) if isinstance(t, fn_mod._Tensor) and need[k] else None
                     for k, t in enumerate(sources))


def _device_seed() -> int | None:
    """When the GPU is in use: a fresh seed for CuPy's generator, which it is seeded with
    now and again before the recomputation (its state cannot be saved and restored like
    the CPU generator's), so both draw the same numbers. None on the CPU."""
    if not _backend.cuda_in_use or _backend._cupy is None:
        return None
    gen = _random.generator("cuda")  # seeded from mg.manual_seed first, if it is due
    seed = int(gen.randint(0, 2**31 - 1))
    gen.seed(seed)
    return seed


def _input(a: Any, needs_grad: bool, create: bool) -> Any:
    """What the recomputation gets for the argument ``a``: a fresh leaf with its values;
    under create_graph, a recorded copy of ``a`` itself, so that the gradients computed
    from it stay connected to ``a`` and can be differentiated again."""
    if needs_grad and create:
        from ..ops import clone

        return clone(a)
    t = fn_mod._tensor(a._data, None, 0)
    t._rg = needs_grad
    return t


def _check_reached(outs: tuple, mark: int, sources: list) -> None:
    """Everything the recomputed graph reaches must be one of ``sources``."""
    leaves = {id(t) for t in sources if isinstance(t, fn_mod._Tensor) and t._edge is None}
    stops = {id(t._edge.record) for t in sources
             if isinstance(t, fn_mod._Tensor) and t._edge is not None}
    stack = [o._edge.record for o in outs if isinstance(o, fn_mod._Tensor) and o._edge]
    seen: set = set()
    while stack:
        rec = stack.pop()
        if id(rec) in seen or id(rec) in stops:
            continue
        seen.add(id(rec))
        if rec.seq < mark:
            raise GraphError(f"checkpoint: the function used a tensor made by {rec.name} "
                             f"(record #{rec.seq}) that is not one of its arguments; pass it "
                             "as an argument so its gradient can flow back")
        for e in rec.edges:
            if e.leaf is not None and id(e.leaf) not in leaves:
                raise GraphError(
                    f"checkpoint: the function used a tensor of shape {e.leaf.shape} that "
                    "requires grad but is neither an argument nor found in its closure, "
                    "defaults or module; pass it as an argument")
            if e.record is not None:
                stack.append(e.record)


def _captured(fn: Any) -> tuple[list, list]:
    """The leaf tensors requiring grad that ``fn`` holds (module parameters, closure cells
    and defaults: Tensors, Modules, and lists or tuples of them), and the modules."""
    objs: list = [fn, getattr(fn, "__self__", None)]
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            objs.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    objs.extend(getattr(fn, "__defaults__", None) or ())
    found: dict = {}
    modules: dict = {}
    for o in objs:
        for item in (o if isinstance(o, (list, tuple)) else (o,)):
            _collect_leaves(item, found, modules)
    return list(found.values()), list(modules.values())


def _collect_leaves(o: Any, found: dict, modules: dict) -> None:
    if isinstance(o, fn_mod._Tensor):
        if o._rg and o._edge is not None:
            raise GraphError("checkpoint: the function holds a tensor with history (made by "
                             f"{o._edge.record.name}); pass it as an argument instead")
        if o._rg:
            found[id(o)] = o
    elif callable(getattr(o, "parameters", None)) and hasattr(o, "_parameters"):
        modules[id(o)] = o
        for p in o.parameters():
            if p._rg:
                found[id(p)] = p


def _buffers(modules: list) -> list:
    """The modules' buffers with a copy of their values (running statistics, say)."""
    seen: dict = {}
    for m in modules:
        for b in m.buffers():
            seen[id(b)] = (b, b._data.copy())
    return list(seen.values())


_TENSOR = object()  # where a Tensor argument goes in the template of the arguments


class _Run:
    """``fn`` with its arguments: what the record needs to run it again."""

    def __init__(self, fn: Callable[..., Any], args: tuple, params: list,
                 modules: list) -> None:
        self.fn, self.params, self.modules = fn, params, modules
        self._args: tuple | None = args  # until the forward ran; then only a template
        self.args = tuple(_TENSOR if self.is_tensor(a) else a for a in args)

    @staticmethod
    def is_tensor(a: Any) -> bool:
        return a is _TENSOR or isinstance(a, fn_mod._Tensor)

    def __call__(self) -> Any:
        args, self._args = self._args, None  # the record must not keep the inputs alive
        out = self.fn(*args)
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
    found, modules = _captured(fn)
    params = [p for p in found if not any(p is a for a in args)]
    return Checkpoint.apply(*args, *params, run=_Run(fn, args, params, modules),
                            n_args=len(args))
