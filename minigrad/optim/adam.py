"""Adam: adaptive moment estimation."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .. import backend
from ..errors import HyperparameterError, HyperparameterTypeError
from .optimizer import Optimizer, check_number


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), step for step the same as ``torch.optim.Adam``.

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        g = g + weight_decay * p                  # L2 penalty (coupled, as in torch's Adam)
        m = beta1 * m + (1 - beta1) * g           # running mean of gradients
        v = beta2 * v + (1 - beta2) * g * g       # running mean of squared gradients
        m_hat = m / (1 - beta1 ** t)              # bias corrections: m and v start at 0
        v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    State per parameter: ``step`` (an int), ``exp_avg`` (m) and ``exp_avg_sq`` (v).

    Args:
        params: tensors to optimise or a list of group dicts.
        lr: learning rate.
        betas: decay rates of the two moment estimates, each in ``[0, 1)``.
        eps: added to the denominator for numerical stability.
        weight_decay: L2 penalty coefficient, >= 0.

    Every number must be finite and in its range, or ``mg.HyperparameterError`` says
    which option is wrong.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay})

    def _check_options(self, group: dict[str, Any], where: str) -> None:
        super()._check_options(group, where)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)):
            raise HyperparameterTypeError(f"{where}: betas={betas!r} is a "
                                          f"{type(betas).__name__}; expected a pair of "
                                          "numbers in [0, 1)")
        if len(betas) != 2:
            raise HyperparameterError(f"{where}: invalid betas={betas!r}; expected two numbers "
                                      "in [0, 1)")
        group["betas"] = tuple(check_number(where, f"betas[{i}]", b, 0.0, 1.0, high_open=True)
                               for i, b in enumerate(betas))
        group["eps"] = check_number(where, "eps", group["eps"], 0.0)

    def _update(self, param: Any, grad: Any, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        xp = backend.xp_of(param)
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param)
            state["exp_avg_sq"] = xp.zeros_like(param)
        state["step"] += 1
        step = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param
        # m moves towards g by (1 - beta1): the same arithmetic as torch's lerp_
        m += (1 - beta1) * (grad - m)
        v *= beta2
        v += (1 - beta2) * (grad * grad)
        step_size = group["lr"] / (1 - beta1 ** step)
        denom = xp.sqrt(v) / math.sqrt(1 - beta2 ** step)
        denom += group["eps"]
        param -= step_size * (m / denom)
