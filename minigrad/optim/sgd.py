"""Stochastic gradient descent, with optional momentum, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import HyperparameterError
from .optimizer import Optimizer, check_bool, check_number


class SGD(Optimizer):
    """Stochastic gradient descent, step for step the same as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p                  # L2 penalty (if weight_decay)
        buf = g                                   # first step
        buf = momentum * buf + (1 - dampening) * g    # later steps
        g = g + momentum * buf if nesterov else buf   # (if momentum)
        p = p - lr * g

    Args:
        params: tensors to optimise (``model.parameters()``) or a list of group dicts.
        lr: learning rate (required, >= 0).
        momentum: momentum factor, >= 0 (usually below 1); 0 means plain SGD.
        dampening: how much of the new gradient is left out of the buffer, in ``[0, 1]``.
        weight_decay: L2 penalty coefficient, >= 0.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).

    Every number must be finite: a NaN or infinite option raises
    ``mg.HyperparameterError`` here rather than turning the weights into NaN at the
    first step (a string raises ``mg.HyperparameterTypeError``).
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    def _check_options(self, group: dict[str, Any], where: str) -> None:
        super()._check_options(group, where)
        group["momentum"] = check_number(where, "momentum", group["momentum"], 0.0)
        group["dampening"] = check_number(where, "dampening", group["dampening"], 0.0, 1.0)
        group["nesterov"] = check_bool(where, "nesterov", group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise HyperparameterError(
                f"{where}: nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _update(self, param: Any, grad: Any, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        wd, momentum = group["weight_decay"], group["momentum"]
        if wd:
            grad = grad + wd * param
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        param -= group["lr"] * grad
