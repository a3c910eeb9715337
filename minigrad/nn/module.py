"""`Module` and `Parameter`: layers that own tensors, with PyTorch's semantics.

A Module registers what is assigned to its attributes: a `Parameter` becomes a
trainable parameter, a `Module` a child, and a tensor passed to
`register_buffer` a buffer (state that is saved but not trained, such as a
running mean). Everything that walks the model (``parameters()``,
``state_dict()``, ``train()``, ``to()``) follows these registrations, with dotted
names like ``"layers.0.weight"``.

Calling a module runs its ``forward`` inside a `Scope`, so every op recorded on
the tape knows which layer it belongs to (``rec.module.path``, e.g. ``"fc1"``).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from ..autograd import observers
from ..autograd.function import no_grad
from ..errors import MinigradError
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module trains: assigning one to a module attribute registers it.

    ``Parameter(t)`` shares ``t``'s data (no copy) and requires grad by default.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = np.empty((0,), dtype=np.float32)
        if isinstance(data, Tensor):
            arr = data._data
        elif hasattr(data, "shape") and hasattr(data, "dtype"):
            arr = data  # an array: share it, as PyTorch does
        else:
            arr = Tensor(data)._data
        if isinstance(arr, np.ndarray) and type(arr) is not np.ndarray:
            arr = arr.view(np.ndarray)  # drop the write-tracking view that `.data` hands out
        self._data = arr
        self.grad = None
        self._rg = False
        self._edge = None
        self._vc = None
        self._name = None
        if requires_grad:
            self.requires_grad = True

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class StateDictError(MinigradError, RuntimeError):
    """`load_state_dict` found missing or unexpected keys, or tensors of the wrong shape."""


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict(strict=False)` could not match."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Scope(NamedTuple):
    """The module an op ran inside: its dotted path from the outermost module called
    (``"layers.1"``; ``""`` for that outermost module) and its class name."""

    path: str
    kind: str

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.kind}"


class _Calls(threading.local):
    """The modules whose forward is running in this thread, innermost last, with their
    scopes (per thread: two threads running two models do not nest)."""

    def __init__(self) -> None:
        self.stack: list[tuple[Module, Scope]] = []


_calls = _Calls()


def current_scope() -> Scope | None:
    """The scope of the innermost module running in this thread (None outside any)."""
    stack = _calls.stack
    return stack[-1][1] if stack else None


def _note_scope(record: Any) -> None:
    """The observer that writes the running module's scope into each new record."""
    record.module = _calls.stack[-1][1]


def _enter(module: Module | None, scope: Scope) -> None:
    stack = _calls.stack
    if not stack:  # the outermost call: start annotating this thread's records
        observers.add(_note_scope)
    stack.append((module, scope))


def _leave() -> None:
    stack = _calls.stack
    stack.pop()
    if not stack:
        observers.remove(_note_scope)


@contextmanager
def in_scope(scope: Scope, module: Module | None = None) -> Iterator[None]:
    """Record the ops inside the ``with`` block as running in ``scope``."""
    _enter(module, scope)
    try:
        yield
    finally:
        _leave()
# Bumped whenever any module's parameters, buffers or children change; cached
# scopes and member lists compare against it.
_version = [0]
_NO_CALLER = (None, None)


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, assign parameters, buffers and
    sub-modules as attributes, and define ``forward``. Call the module itself
    (``model(x)``), not ``forward``: the call also records the module's scope.
    Change the registries through attributes or the ``register_*`` methods,
    not by editing ``_parameters`` and friends directly.
    """

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent"] = set()
        d["_modules"] = OrderedDict()
        d["_scope_cache"] = None
        d["_members_cache"] = {}

    # ----------------------------------------------------------- registration
    def _set(self, registry: str, name: str, value: Any) -> None:
        """Register ``value`` under ``name`` in ``registry``, dropping any other use of the name."""
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(
                f"cannot assign to {type(self).__name__} before Module.__init__() has run; "
                "call super().__init__() first in your __init__")
        d.pop(name, None)
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg != registry:
                d[reg].pop(name, None)
        if registry != "_buffers":
            d["_non_persistent"].discard(name)
        d[registry][name] = value
        _version[0] += 1

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if isinstance(value, Parameter):
            if value.name is None:  # so tapes and pictures say "weight", not "x3"
                value.name = name
            self._set("_parameters", name, value)
        elif isinstance(value, Module):
            self._set("_modules", name, value)
        elif "_parameters" not in d:
            object.__setattr__(self, name, value)
        elif name in d["_parameters"]:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} of "
                                f"{type(self).__name__} (a Parameter or None is expected)")
            self._set("_parameters", name, None)
        elif name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} "
                                f"of {type(self).__name__} (a Module or None is expected)")
            self._set("_modules", name, None)
        elif name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} of "
                                f"{type(self).__name__} (a Tensor or None is expected)")
            self._set("_buffers", name, value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: parameters, buffers and children
        # live in their registries, not in the instance dict.
        d = self.__dict__
        if "_parameters" in d:
            r = d["_parameters"]
            if name in r:
                return r[name]
            r = d["_buffers"]
            if name in r:
                return r[name]
            r = d["_modules"]
            if name in r:
                return r[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if name in d.get(reg, ()):
                del d[reg][name]
                d["_non_persistent"].discard(name)
                _version[0] += 1
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        extra = list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(set(super().__dir__()) | set(extra))

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a parameter (or a None placeholder, e.g. a layer without bias)."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got "
                            f"{type(param).__name__}")
        self._set("_parameters", name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add a buffer: a tensor that is module state but not trained.

        Buffers move with ``to()`` and, when ``persistent``, appear in
        ``state_dict()`` (e.g. BatchNorm's ``running_mean``).
        """
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got "
                            f"{type(tensor).__name__}")
        if tensor is not None and tensor.name is None:  # pictures say "running_mean"
            tensor.name = name
        self._set("_buffers", name, tensor)
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module under ``name`` (what attribute assignment does)."""
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got "
                            f"{type(module).__name__}")
        self._set("_modules", name, module)

    def _check_name(self, name: str, what: str) -> None:
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{what} name must be a non-empty string without '.', got {name!r}")
        if hasattr(type(self), name):
            raise KeyError(f"{what} name {name!r} clashes with an attribute of "
                           f"{type(self).__name__}")

    # ----------------------------------------------------------- calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        calls = _calls.stack
        caller, caller_scope = calls[-1] if calls else _NO_CALLER
        cache = self.__dict__["_scope_cache"]
        if (cache is not None and cache[1] is caller_scope and cache[2] == _version[0]
                and (cache[0] is None if caller is None else cache[0]() is caller)):
            scope = cache[3]
        else:
            scope = self._make_scope(caller, caller_scope)
        _enter(self, scope)
        try:
            return self.forward(*args, **kwargs)
        finally:
            _leave()

    def _make_scope(self, caller: Module | None, caller_scope: Scope | None) -> Scope:
        """The scope of this call: the path from the outermost module being called."""
        if caller is None or caller_scope is None:
            path = ""
        else:
            name = next((k for k, m in caller._modules.items() if m is self), None)
            if name is None:  # a deeper descendant called directly, or not owned at all
                name = next((k for k, m in caller.named_modules() if m is self and k),
                            type(self).__name__.lower())
            path = f"{caller_scope.path}.{name}" if caller_scope.path else name
        scope = Scope(path, type(self).__name__)
        # The caller is held weakly: a cache must not keep a parent (or, in a deep
        # copy of this module, a copy of the parent) alive.
        ref = None if caller is None else weakref.ref(caller)
        self.__dict__["_scope_cache"] = (ref, caller_scope, _version[0], scope)
        return scope

    # ----------------------------------------------------------- traversal
    def named_modules(self, memo: set | None = None, prefix: str = "") -> Iterator[
            tuple[str, Module]]:
        """This module and every descendant, each once, with dotted names ("" for self).

        The order is depth first, parents before children, in registration order.
        """
        seen = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            path, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield path, m
            kids = m._modules
            if kids:
                stack.extend((f"{path}.{k}" if path else k, c)
                             for k, c in reversed(kids.items()) if c is not None)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, prefix: str, recurse: bool) -> Iterator[
            tuple[str, Tensor]]:
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, t in m.__dict__[registry].items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))  # a shared tensor is listed once
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), t

    def _members(self, registry: str) -> list:
        """The tensors of ``registry`` in this module and its descendants, each once.

        The same order as the ``named_*`` methods, without building names (this is
        what ``parameters()`` and ``zero_grad()`` run every training step).
        """
        cached = self.__dict__["_members_cache"].get(registry)
        if cached is not None and cached[0] == _version[0]:
            return cached[1]
        seen: set = set()
        out = []
        stack = [self]
        while stack:
            m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            d = m.__dict__
            for t in d[registry].values():
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    out.append(t)
            kids = d["_modules"]
            if kids:
                stack.extend([c for c in reversed(kids.values()) if c is not None])
        self.__dict__["_members_cache"][registry] = (_version[0], out)
        return out

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[
            tuple[str, Parameter]]:
        """``(dotted name, Parameter)`` for every parameter, shared ones once."""
        yield from self._named_members("_parameters", prefix, recurse)  # type: ignore[misc]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter, shared ones once (what an optimiser is given)."""
        if not recurse:
            return (p for _, p in self.named_parameters(recurse=False))
        return iter(list(self._members("_parameters")))

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[
            tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        if not recurse:
            return (b for _, b in self.named_buffers(recurse=False))
        return iter(list(self._members("_buffers")))

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every descendant (children first) and on this module."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ----------------------------------------------------------- modes and devices
    def train(self, mode: bool = True) -> Module:
        """Put this module and all descendants in training (or evaluation) mode."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode: e.g. Dropout passes inputs through, BatchNorm uses running stats."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients: ``.grad = None`` (or zeros, if not ``set_to_none``)."""
        for p in self._members("_parameters"):
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad = Tensor._wrap(backend.xp_of(p.grad._data).zeros_like(p.grad._data))

    def to(self, device: str | None = None, dtype: Any = None) -> Module:
        """Move every parameter and buffer to ``device`` and/or cast floats to ``dtype``.

        Tensors are changed in place (the Parameter objects stay the same), so an
        optimiser built before the move still holds the right ones.
        """
        dev = backend.check_device(device) if device is not None else None
        if dtype is not None and np.dtype(dtype).kind != "f":
            raise TypeError(f"to: dtype must be a floating-point type, got {np.dtype(dtype)}")

        def convert(t: Tensor) -> None:
            arr = t._data
            if dev is not None and t.device != dev:
                arr = t.detach().to(dev)._data
            if dtype is not None and arr.dtype.kind == "f":
                arr = arr.astype(dtype, copy=False)
            if arr is not t._data:
                t.data = arr
            if t.grad is not None:
                g = t.grad._data
                if dev is not None and t.grad.device != dev:
                    g = t.grad.detach().to(dev)._data
                if dtype is not None and g.dtype.kind == "f":
                    g = g.astype(dtype, copy=False)
                t.grad = Tensor._wrap(g)

        with no_grad():
            for m in self.modules():
                for reg in ("_parameters", "_buffers"):
                    for t in m.__dict__[reg].values():
                        if t is not None:
                            convert(t)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    def float(self) -> Module:
        return self.to(dtype=np.float32)

    def double(self) -> Module:
        return self.to(dtype=np.float64)

    # ----------------------------------------------------------- state
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """Every parameter and persistent buffer by dotted name (PyTorch's key names).

        The tensors share memory with the module (detached unless ``keep_vars``);
        save them with ``mg.save``.
        """
        out: OrderedDict = OrderedDict()
        for mod_prefix, m in self.named_modules(prefix=prefix.rstrip(".")):
            base = f"{mod_prefix}." if mod_prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[base + name] = p if keep_vars else p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[base + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> IncompatibleKeys:
        """Copy tensors from ``state_dict`` into this module's parameters and buffers, in place.

        Values may be Tensors or arrays; they are cast to each target's dtype and
        device. Shape mismatches always raise; with ``strict`` (the default),
        missing or unexpected keys raise too, listing them. Nothing is copied
        unless everything fits.
        """
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append("missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
        if strict and unexpected:
            problems.append("unexpected key(s) in state_dict: "
                            + ", ".join(f'"{k}"' for k in unexpected))
        pairs = []
        for k, target in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v._data if isinstance(v, Tensor) else v
            if not hasattr(arr, "shape"):
                arr = np.asarray(arr)
            if tuple(arr.shape) != tuple(target.shape):
                problems.append(f"size mismatch for {k}: copying a tensor of shape "
                                f"{tuple(arr.shape)} from the state dict, but the shape in the "
                                f"current model is {tuple(target.shape)}")
            else:
                pairs.append((target, arr))
        if problems:
            raise StateDictError(f"error(s) in loading state_dict for {type(self).__name__}:\n  "
                                 + "\n  ".join(problems))
        with no_grad():
            for target, arr in pairs:
                src = backend.to_device(arr, target.device).astype(target.dtype, copy=False)
                target.data[...] = src  # in place: optimisers keep pointing at the same tensor
        return IncompatibleKeys(missing, unexpected)

    # ----------------------------------------------------------- printing
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in ``repr`` (layers override it)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"
