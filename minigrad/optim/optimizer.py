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
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .. import backend
from ..autograd.function import enable_grad
from ..errors import (ArgumentError, ArgumentTypeError, DTypeError, HyperparameterError,
                      HyperparameterTypeError, NotSupportedError, ShapeError)
from ..tensor import Tensor


def check_number(where: str, key: str, value: Any, low: float, high: float = math.inf,
                 high_open: bool = False, low_open: bool = False) -> float:
    """``value`` as a float when it is a finite real number in ``[low, high]``.

    ``high_open``/``low_open`` leave that end out. Anything else raises
    ``HyperparameterError`` (``HyperparameterTypeError`` for a non-number) naming
    ``where`` (the optimiser or schedule), ``key``, the value and the range expected.
    """
    expected = "a finite number " + _range_text(low, high, low_open, high_open)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise HyperparameterTypeError(f"{where}: {key}={value!r} is a {type(value).__name__}; "
                                      f"expected {expected}")
    number = float(value)
    if (not math.isfinite(number) or number < low or number > high
            or (low_open and number == low) or (high_open and number == high)):
        raise HyperparameterError(f"{where}: invalid {key}={value!r}; expected {expected}")
    return number


def check_int(where: str, key: str, value: Any, low: int) -> int:
    """``value`` as an int when it is an integer ``>= low``, else a ``HyperparameterError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise HyperparameterTypeError(f"{where}: {key}={value!r} is a {type(value).__name__}; "
                                      f"expected an int >= {low}")
    if value < low:
        raise HyperparameterError(f"{where}: invalid {key}={value!r}; expected an int >= {low}")
    return int(value)


def check_bool(where: str, key: str, value: Any) -> bool:
    """``value`` when it is a bool (True/False), else a ``HyperparameterTypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise HyperparameterTypeError(f"{where}: {key}={value!r} is a {type(value).__name__}; "
                                      "expected True or False")
    return bool(value)


def _range_text(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _is_float_dtype(dtype: Any) -> bool:
    return np.dtype(dtype).kind == "f"


def _follow_device(state: dict[str, Any], arr: Any) -> None:
    """Move state arrays to the parameter's device (after ``model.to(device)``)."""
    xp = backend.xp_of(arr)
    for k, v in state.items():
        if hasattr(v, "shape") and backend.xp_of(v) is not xp:
            state[k] = backend.to_device(v, backend.device_of(arr))


def _check_param(name: str, i: int, p: Any) -> None:
    """A parameter must be a floating-point leaf Tensor that requires grad."""
    if not isinstance(p, Tensor):
        raise ArgumentTypeError(f"{name}: parameter {i} of a group is a {type(p).__name__}; "
                                "expected a minigrad Tensor")
    if not _is_float_dtype(p.dtype):
        raise DTypeError(f"{name}: parameter {i} has dtype {p.dtype}; only floating-point "
                         "tensors can be optimised")
    if not p.requires_grad:
        raise ArgumentError(f"{name}: parameter {i} (shape {p.shape}) does not require "
                            "grad, so it would never receive a gradient; create it with "
                            "requires_grad=True or leave it out")
    if not p.is_leaf:
        raise ArgumentError(f"{name}: parameter {i} (shape {p.shape}) is not a leaf (it "
                            "was computed by an op); optimise the leaf it came from, or "
                            ".detach().requires_grad_() it")


#: Options of PyTorch's optimisers that minigrad's lack, with the value that means "off":
#: a torch state dict loads when they are off, and is refused (unknown option) otherwise.
_TORCH_DEFAULTS = {"maximize": False, "foreach": None, "differentiable": False,
                   "fused": None, "capturable": False, "amsgrad": False,
                   "decoupled_weight_decay": False}


def _is_torch_default(key: str, value: Any) -> bool:
    return key in _TORCH_DEFAULTS and value is _TORCH_DEFAULTS[key]


def _index(where: str, what: str, key: Any) -> int:
    """A parameter index from a state dict (an int, or its text after a JSON round trip)."""
    if isinstance(key, str) and key.isdigit():
        return int(key)
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral):
        raise ArgumentError(f"{where}: {what} holds {key!r}; expected parameter "
                            "indices (ints)")
    return int(key)


def _restore(where: str, i: int, key: str, value: Any, p: Tensor) -> Any:
    """One saved state entry, ready for parameter ``p`` (same device; floats in its dtype)."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, np.ndarray):
        value = value.view(np.ndarray)  # a plain array: `.data` hands out a tracking view
    if not hasattr(value, "shape"):
        return value
    if np.dtype(value.dtype).kind not in "biuf":
        raise ArgumentError(f"{where}: state {key!r} of parameter {i} holds "
                            f"{value.dtype} values; expected numbers")
    if value.ndim == 0:
        return backend.to_device(value, "cpu").item()  # a 0-d array holds a number
    if tuple(value.shape) != p.shape:
        raise ShapeError(f"{where}: state {key!r} of parameter {i} has shape "
                         f"{tuple(value.shape)}, but the parameter has shape {p.shape}")
    value = backend.to_device(value, p.device)
    return value.astype(p.dtype) if _is_float_dtype(value.dtype) else value.copy()


class Optimizer:
    """Base class: param groups, ``zero_grad``, ``state_dict``/``load_state_dict``.

    A subclass passes its default options to ``__init__`` and implements
    ``_update(p, grad, state, group)``, which changes one parameter's array in
    place given its gradient array (same dtype and device as the parameter).
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        name = type(self).__name__
        if isinstance(params, (Tensor, dict)) or not isinstance(params, Iterable):
            raise ArgumentTypeError(
                f"{name}: params should be an iterable of Tensors or of dicts (param groups), "
                f"got a single {type(params).__name__}; wrap it in a list: [p]")
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ArgumentError(f"{name}: got an empty parameter list; pass "
                                "model.parameters() or a non-empty list of tensors "
                                "that require grad")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (others from the defaults).

        Raises ``HyperparameterError`` for an option that is not a finite number in its
        range (say ``lr=float("inf")`` or ``momentum=float("nan")``), and
        ``ArgumentError``/``ArgumentTypeError`` for a malformed group.
        """
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise ArgumentTypeError(f"{name}.add_param_group: expected a dict with a 'params' "
                                    f"entry, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ArgumentError(f"{name}.add_param_group: the group has no 'params' "
                                f"entry (keys: {sorted(param_group)}); expected a list "
                                "of tensors under 'params'")
        group = dict(param_group)
        params = group["params"]
        if not isinstance(params, (Tensor, Iterable)):
            raise ArgumentTypeError(f"{name}: a group's 'params' is a {type(params).__name__}; "
                                    "expected a list of Tensors")
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ArgumentError(f"{name}: a parameter group has an empty parameter "
                                "list; expected at least one tensor")
        for i, p in enumerate(params):
            _check_param(name, i, p)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or seen & {id(p) for p in params}:
            raise ArgumentError(f"{name}: some parameters appear more than once (within "
                                "a group or in several groups); each parameter may be "
                                "given only once")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_keys(group, name)
        self._check_options(group, name)
        group["params"] = params
        self.param_groups.append(group)

    def _check_keys(self, group: dict[str, Any], where: str) -> None:
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ArgumentError(f"{where}: unknown option(s) {sorted(unknown)} in a "
                                f"parameter group; expected some of "
                                f"{sorted(self.defaults)}")

    def _check_options(self, group: dict[str, Any], where: str) -> None:
        """Check one group's options, normalising them in place (subclasses extend this).

        ``where`` names the caller in messages, e.g. ``"SGD"`` or
        ``"SGD.load_state_dict: group 1"``.
        """
        group["lr"] = check_number(where, "lr", group["lr"], 0.0)
        if "initial_lr" in group:  # written by a learning-rate schedule
            group["initial_lr"] = check_number(where, "initial_lr", group["initial_lr"], 0.0)
        if "weight_decay" in group:
            group["weight_decay"] = check_number(where, "weight_decay", group["weight_decay"],
                                                 0.0)

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
                    raise ShapeError(f"{type(self).__name__}.step: a parameter of shape "
                                     f"{tuple(arr.shape)} has a gradient of shape "
                                     f"{tuple(grad.shape)}; expected the same shape")
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
        raise NotSupportedError(f"{type(self).__name__} must implement _update")

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
        floating-point state takes the parameter's dtype. Everything is checked first
        (layout, shapes, and every option as the constructor checks it): on an error
        the optimiser is left as it was. A PyTorch state dict loads too: its extra
        options (``maximize``, ``foreach``, ``amsgrad``, ...) are ignored when off and
        refused when on, since minigrad would not honour them.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ArgumentError(
                f"{where}: expected a dict with 'state' and 'param_groups', got "
                f"{type(state_dict).__name__}"
                + (f" with keys {sorted(map(str, state_dict))}"
                   if isinstance(state_dict, Mapping) else ""))
        params, options = self._match_groups(state_dict["param_groups"], where)
        saved_state = state_dict["state"]
        if not isinstance(saved_state, Mapping):
            raise ArgumentError(f"{where}: 'state' is a {type(saved_state).__name__}; "
                                "expected a dict of parameter index -> state")
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, entry in saved_state.items():
            i = _index(where, "a state key", key)
            if i not in params:
                raise ArgumentError(f"{where}: state for parameter {i}, which no group "
                                    "lists")
            if not isinstance(entry, Mapping):
                raise ArgumentError(f"{where}: the state of parameter {i} is a "
                                    f"{type(entry).__name__}; expected a dict")
            new_state[params[i]] = {k: _restore(where, i, k, v, params[i])
                                    for k, v in entry.items()}
        for group, opts in zip(self.param_groups, options):  # all checked: now apply
            group.update(opts)
        self.state = new_state

    def _match_groups(self, saved_groups: Any, where: str
                      ) -> tuple[dict[int, Tensor], list[dict[str, Any]]]:
        """Pair the saved groups with ours: parameter index -> tensor, and each group's
        checked options (ours updated with the saved ones)."""
        if not isinstance(saved_groups, (list, tuple)):
            raise ArgumentError(f"{where}: 'param_groups' is a "
                                f"{type(saved_groups).__name__}; expected a list of dicts")
        if len(saved_groups) != len(self.param_groups):
            raise ArgumentError(f"{where}: the saved state has {len(saved_groups)} "
                                f"parameter group(s), this optimiser has "
                                f"{len(self.param_groups)}")
        params: dict[int, Tensor] = {}
        options = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, Mapping) or not isinstance(saved.get("params"),
                                                                (list, tuple)):
                got = (f"keys {sorted(map(str, saved))}" if isinstance(saved, Mapping)
                       else f"a {type(saved).__name__}")
                raise ArgumentError(f"{where}: saved group {gi} has {got}; expected a "
                                    "dict with a 'params' list of parameter indices")
            if len(saved["params"]) != len(group["params"]):
                raise ArgumentError(f"{where}: group {gi} has {len(saved['params'])} "
                                    f"parameter(s) in the saved state but "
                                    f"{len(group['params'])} here")
            for i, p in zip(saved["params"], group["params"]):
                index = _index(where, f"group {gi}'s 'params'", i)
                if index in params:
                    raise ArgumentError(f"{where}: parameter index {index} appears "
                                        "twice in the saved groups")
                params[index] = p
            opts = {k: v for k, v in group.items() if k != "params"}
            opts.update({k: tuple(v) if isinstance(v, list) else copy.deepcopy(v)
                         for k, v in saved.items()
                         if k != "params" and not _is_torch_default(k, v)})
            self._check_keys(opts, f"{where}: group {gi}")
            self._check_options(opts, f"{where}: group {gi}")
            options.append(opts)
        return params, options

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {opts}")
        return "\n".join(lines) + "\n)"
