"""`Optimizer`: the shared machinery of every optimiser.

An optimiser holds *parameter groups*: each group is a dict with a list of
parameters under ``"params"`` and that group's options (``lr``, ``momentum``, ...).
Passing a plain list of tensors makes one group; passing a list of dicts gives
each dict its own options, falling back to the constructor's for the rest::

    opt = mg.optim.SGD([{"params": backbone, "lr": 1e-3},
                        {"params": head}], lr=1e-2, momentum=0.9)

Per-parameter state (momentum buffers, Adam's moments) lives in ``opt.state``,
keyed by the parameter tensor. Updates change ``p._data`` in place, outside the
tape, and bump the parameter's version counter so that a graph recorded before
the step notices the change.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import backend
from ..autograd.function import enable_grad
from ..tensor import Tensor


def _is_float_dtype(dtype: Any) -> bool:
    return np.dtype(dtype).kind == "f"


def _follow_device(state: dict[str, Any], arr: Any) -> None:
    """Move state arrays to the parameter's device (after ``model.to(device)``)."""
    xp = backend.xp_of(arr)
    for k, v in state.items():
        if hasattr(v, "shape") and backend.xp_of(v) is not xp:
            state[k] = backend.to_device(v, backend.device_of(arr))


class Optimizer:
    """Base class: param groups, ``zero_grad``, ``state_dict``/``load_state_dict``.

    A subclass passes its default options to ``__init__`` and implements
    ``_update(p, grad, state, group)``, which changes one parameter's array in
    place given its gradient array (same dtype and device as the parameter).
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        name = type(self).__name__
        if isinstance(params, (Tensor, dict)):
            raise TypeError(
                f"{name}: params should be an iterable of Tensors or of dicts (param groups), "
                f"got a single {type(params).__name__}; wrap it in a list: [p]")
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError(f"{name}: got an empty parameter list; pass model.parameters() "
                             "or a non-empty list of tensors that require grad")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (others from the defaults)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict with a 'params' entry, "
                            f"got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}.add_param_group: the group has no 'params' entry "
                             f"(keys: {sorted(param_group)})")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{name}: a parameter group has an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {i} of a group is a {type(p).__name__}; "
                                "expected a minigrad Tensor")
            if not _is_float_dtype(p.dtype):
                raise TypeError(f"{name}: parameter {i} has dtype {p.dtype}; only "
                                "floating-point tensors can be optimised")
            if not p.requires_grad:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) does not require "
                                 "grad, so it would never receive a gradient; create it with "
                                 "requires_grad=True or leave it out")
            if not p.is_leaf:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) is not a leaf (it "
                                 "was computed by an op); optimise the leaf it came from, or "
                                 ".detach().requires_grad_() it")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ValueError(f"{name}: some parameters appear more than once (within a group "
                             "or in several groups); each parameter may be given only once")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"{name}: unknown option(s) {sorted(unknown)} in a parameter "
                             f"group; expected some of {sorted(self.defaults)}")
        self._check_options(group)
        group["params"] = params
        self.param_groups.append(group)

    def _check_options(self, group: dict[str, Any]) -> None:
        """Validate one group's options (subclasses extend this)."""
        lr = group["lr"]
        if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or not lr >= 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate lr={lr!r}; "
                             "expected a number >= 0")
        wd = group.get("weight_decay", 0.0)
        if wd < 0:
            raise ValueError(f"{type(self).__name__}: invalid weight_decay={wd!r}; "
                             "expected a number >= 0")

    # ------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter (``.grad = None``) before the next backward.

        With ``set_to_none=False`` existing gradients are filled with zeros instead.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad._data.fill(0)
                    p.grad._bump()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; return ``closure()`` if given.

        ``closure`` (optional) re-evaluates the model and returns the loss; it runs
        with gradient recording on, before the update.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                arr = p._data
                grad = p.grad._data if isinstance(p.grad, Tensor) else p.grad
                if grad.shape != arr.shape:
                    raise ValueError(f"{type(self).__name__}.step: a parameter of shape "
                                     f"{tuple(arr.shape)} has a gradient of shape "
                                     f"{tuple(grad.shape)}")
                if grad.dtype != arr.dtype or backend.xp_of(grad) is not backend.xp_of(arr):
                    grad = backend.to_device(grad, backend.device_of(arr)).astype(arr.dtype)
                state = self.state.setdefault(p, {})
                if backend.cuda_in_use and state:
                    _follow_device(state, arr)
                self._update(arr, grad, state, group)
                p._bump()
        return loss

    def _update(self, param: Any, grad: Any, state: dict[str, Any],
                group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the optimiser, laid out as PyTorch's.

        ``{"state": {i: {...}}, "param_groups": [{options..., "params": [i, ...]}]}``
        where ``i`` numbers the parameters across all groups in order. State arrays
        are copied into Tensors, so the snapshot does not change as training goes on;
        ``mg.save`` writes it to disk.
        """
        groups: list[dict[str, Any]] = []
        state: dict[int, dict[str, Any]] = {}
        i = 0  # parameters are numbered across groups, in order (each appears once)
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = list(range(i, i + len(group["params"])))
            groups.append(packed)
            for p in group["params"]:
                if self.state.get(p):
                    state[i] = {k: Tensor._wrap(v.copy()) if hasattr(v, "shape") else v
                                for k, v in self.state[p].items()}
                i += 1
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned (possibly via ``mg.save``/``mg.load``).

        The optimiser must have been built over parameters of the same shapes, in the
        same groups and order. State arrays are copied onto each parameter's device;
        floating-point state takes the parameter's dtype.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and "
                             f"'param_groups', got {type(state_dict).__name__}"
                             + (f" with keys {sorted(state_dict)}"
                                if isinstance(state_dict, dict) else ""))
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the saved state has {len(saved_groups)} "
                             f"parameter group(s), this optimiser has {len(self.param_groups)}")
        params: dict[int, Tensor] = {}
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {gi} has "
                                 f"{len(saved['params'])} parameter(s) in the saved state "
                                 f"but {len(group['params'])} here")
            for i, p in zip(saved["params"], group["params"]):
                params[int(i)] = p
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, entry in state_dict["state"].items():
            i = int(key)
            if i not in params:
                raise ValueError(f"{name}.load_state_dict: state for parameter {i}, which no "
                                 "group lists")
            p = params[i]
            restored = {}
            for k, v in entry.items():
                if isinstance(v, Tensor):
                    v = v._data
                if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                    if tuple(v.shape) != p.shape:
                        raise ValueError(f"{name}.load_state_dict: state {k!r} of parameter "
                                         f"{i} has shape {tuple(v.shape)}, but the parameter "
                                         f"has shape {p.shape}")
                    v = backend.to_device(v, p.device)
                    v = v.astype(p.dtype) if _is_float_dtype(v.dtype) else v.copy()
                elif hasattr(v, "shape"):
                    v = backend.to_device(v, "cpu").item()  # a 0-d array holds a number
                restored[k] = v
            new_state[p] = restored
        for saved, group in zip(saved_groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = tuple(v) if isinstance(v, list) else copy.deepcopy(v)
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {opts}")
        return "\n".join(lines) + "\n)"
