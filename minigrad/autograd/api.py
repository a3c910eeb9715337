"""`mg.grad`: gradients as return values, without touching ``.grad``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ArgumentError, ArgumentTypeError, GraphError
from . import function as fn_mod
from .engine import run_backward


def _as_list(x: Any) -> list:
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None,
         retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool = False) -> tuple:
    """d(outputs)/d(inputs) contracted with ``grad_outputs``: one gradient per input.

    ``retain_graph`` defaults to ``create_graph``. With ``create_graph=True`` the
    returned gradients are themselves on the tape and can be differentiated or
    drawn. An input that the outputs do not depend on raises, unless
    ``allow_unused=True`` (then its gradient is None).
    """
    T = fn_mod._Tensor
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    for t in ins:
        if not isinstance(t, T):
            raise ArgumentTypeError(f"grad: inputs must be Tensors, got {type(t).__name__}")
        if not t._rg:
            raise GraphError("grad: an input does not require grad, so it has no gradient; "
                             "create it with requires_grad=True")
    gos: Sequence[Any] = [None] * len(outs) if grad_outputs is None else _as_list(grad_outputs)
    if len(gos) != len(outs):
        raise ArgumentError(f"grad: {len(outs)} outputs but {len(gos)} grad_outputs; give one "
                            "grad_output per output (None for a scalar output)")
    if retain_graph is None:
        retain_graph = create_graph
    # An input listed twice gets its gradient twice: the engine sees each once.
    unique = list({id(t): t for t in ins}.values())
    found = run_backward(outs, gos, retain_graph, create_graph, inputs=unique)
    by_id = {id(t): g for t, g in zip(unique, found)}
    result = [by_id[id(t)] for t in ins]
    for k, r in enumerate(result):
        if r is None and not allow_unused:
            raise GraphError(f"grad: input {k} (shape {tuple(ins[k].shape)}) was not used to "
                             "compute the outputs; pass allow_unused=True to get None for it")
    return tuple(result)
