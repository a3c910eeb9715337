"""Learning-rate schedules that change an optimiser's ``lr`` once per epoch.

Call ``scheduler.step()`` after the epoch's ``optimizer.step()`` calls::

    sched = mg.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(90):
        train_one_epoch()          # uses opt.param_groups[i]["lr"]
        sched.step()

Each schedule computes the rate from its closed form in ``last_epoch``, so
``load_state_dict`` can jump straight to any epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import (ArgumentError, ArgumentTypeError, MinigradError, MissingKeyError,
                      NotSupportedError)
from .optimizer import Optimizer, check_int, check_number


class LRScheduler:
    """Base class: keeps ``base_lrs`` and ``last_epoch`` and writes each group's ``lr``.

    A subclass implements ``_lr_at(base_lr, epoch)``. On construction the schedule
    records each group's starting rate as ``initial_lr`` and sets epoch 0.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        name = type(self).__name__
        if not isinstance(optimizer, Optimizer):
            raise ArgumentTypeError(f"{name}: expected a minigrad Optimizer, got "
                                    f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        last_epoch = check_int(name, "last_epoch", last_epoch, -1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            missing = [i for i, g in enumerate(optimizer.param_groups) if "initial_lr" not in g]
            if missing:
                raise MissingKeyError(f"{name}: last_epoch={last_epoch} resumes a schedule, but "
                                      f"param group(s) {missing} have no 'initial_lr'; load "
                                      "the optimiser's state_dict first or start with "
                                      "last_epoch=-1")
        self.base_lrs: list[float] = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list[float] = []
        self.step()

    def _check_settings(self, where: str) -> None:
        """Check (and normalise) every number of the schedule; subclasses add their own."""
        self.last_epoch = check_int(where, "last_epoch", self.last_epoch, -1)
        if not isinstance(self.base_lrs, list) or \
                len(self.base_lrs) != len(self.optimizer.param_groups):
            raise ArgumentError(f"{where}: base_lrs={self.base_lrs!r}; expected a list "
                                f"of {len(self.optimizer.param_groups)} learning "
                                "rate(s), one per parameter group")
        self.base_lrs = [check_number(where, f"base_lrs[{i}]", lr, 0.0)
                         for i, lr in enumerate(self.base_lrs)]

    def _lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotSupportedError(f"{type(self).__name__} must define _lr_at()")

    def step(self) -> None:
        """Advance one epoch and set every group's ``lr`` to the schedule's value."""
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        lrs = [self._lr_at(base, self.last_epoch) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group as set by the latest ``step()``."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimiser: options, ``base_lrs``, ``last_epoch``."""
        return {k: (list(v) if isinstance(v, list) else v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a ``state_dict()`` and set the optimiser's rates to match it.

        Every value is checked as the constructor checks it; on an error the
        schedule is left as it was.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise ArgumentError(f"{where}: expected a dict, got "
                                f"{type(state_dict).__name__}")
        unknown = set(state_dict) - set(self.__dict__)
        if unknown or "last_epoch" not in state_dict:
            raise ArgumentError(f"{where}: unexpected keys {sorted(map(str, unknown))} "
                                f"(expected {sorted(self.state_dict())})")
        before = dict(self.__dict__)
        self.__dict__.update({k: (list(v) if isinstance(v, (list, tuple)) else v)
                              for k, v in state_dict.items()})
        try:
            self._check_settings(where)
        except MinigradError:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        self._apply()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr})"


class StepLR(LRScheduler):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs.

    ``lr = base_lr * gamma ** (epoch // step_size)``, as ``torch.optim.lr_scheduler.StepLR``.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        self._check_own("StepLR")
        super().__init__(optimizer, last_epoch)

    def _check_own(self, where: str) -> None:
        self.step_size = check_int(where, "step_size", self.step_size, 1)
        self.gamma = check_number(where, "gamma", self.gamma, 0.0)

    def _check_settings(self, where: str) -> None:
        super()._check_settings(where)
        self._check_own(where)

    def _lr_at(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """Follow half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs.

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``; past
    ``T_max`` the cosine carries on and the rate climbs back, as in PyTorch.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        self._check_own("CosineAnnealingLR")
        super().__init__(optimizer, last_epoch)

    def _check_own(self, where: str) -> None:
        self.T_max = check_int(where, "T_max", self.T_max, 1)
        self.eta_min = check_number(where, "eta_min", self.eta_min, 0.0)

    def _check_settings(self, where: str) -> None:
        super()._check_settings(where)
        self._check_own(where)

    def _lr_at(self, base_lr: float, epoch: int) -> float:
        cos = math.cos(math.pi * epoch / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cos) / 2
