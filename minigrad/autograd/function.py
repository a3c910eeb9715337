"""`Function`: the one way an operation enters the tape.

Calling ``SomeOp.apply(*inputs, **params)`` runs ``SomeOp.forward`` on the inputs'
arrays. When gradients are being recorded and an input requires grad, the
``SomeOp`` instance that served as ``ctx`` becomes a *record* on the tape: it
keeps a sequence number, an edge to each input, what ``forward`` saved for
backward, and the op's parameters. ``backward`` later receives that same ``ctx``.

A record never holds its input or output Tensors (only their arrays where it
saved them), so intermediate results are freed as soon as nothing else needs
them, exactly like PyTorch's graph.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any

import numpy as _np

from .. import backend as _backend
from ..errors import DeviceError, DTypeError, GraphError, MinigradError, ShapeError


class _ThreadState(threading.local):
    """What the engine keeps per thread, so threads never see each other's modes.

    ``grad``: whether new operations are recorded (grad mode, as in PyTorch).
    ``unpack``: how ``saved_tensors`` hands values to a running backward: 0 = raw
    arrays (fast path), 1 = Tensors without history, 2 = Tensors connected to the
    graph (create_graph).
    ``on_record``: the observers; each is called with every record this thread makes
    (see `minigrad.autograd.observers`).
    """

    grad = True
    unpack = 1

    def __init__(self) -> None:
        self.on_record: list = []


_local = _ThreadState()
_seq = itertools.count()

_Tensor: Any = None  # set by minigrad.tensor to break the import cycle


class Function:
    """Base class of every differentiable operation, built-in or user-defined.

    Subclass it and write two static methods side by side::

        class Cube(mg.Function):
            @staticmethod
            def forward(ctx, x):            # x is a NumPy/CuPy array
                ctx.save_for_backward(x)
                return x ** 3

            @staticmethod
            def backward(ctx, gy):          # gy is a Tensor
                (x,) = ctx.saved_tensors    # Tensors too
                return 3 * x ** 2 * gy      # one gradient (or None) per input

        y = Cube.apply(t)

    Because ``backward`` works on Tensors, a backward written in tensor ops is
    itself recorded under ``create_graph=True`` and can be differentiated again.

    ``array_backward = True`` is an optional speed-up that minigrad's own
    primitives use: it promises that ``backward`` only uses operators and
    methods that NumPy/CuPy arrays and Tensors share (``+ * @ .sum() .reshape()``
    ...), so when no graph of the backward is wanted it is fed raw arrays.
    """

    # Defaults live on the class, so a record only stores what differs from them:
    # every attribute set in `apply` is paid once per recorded op.
    seq: int = -1
    edges: list = []
    saved: tuple | None = ()
    # Per saved array: the input Tensor it is, -1-j for output j, or None (an
    # intermediate). Holding a saved input's Tensor costs nothing: its array is
    # held anyway, and it is the tensor to hand back, graph and all, under
    # create_graph.
    _saved_from: Any = ()
    _saved_ver: tuple = ()  # the saved inputs' versions, when any had been written
    # The version counter a saved output shares with its tensor (a tuple of them,
    # one per output, for an op with several outputs).
    _out_vc: Any = None
    _epoch = 0  # the write epoch when this record was made
    out_meta: tuple = ()
    out_names: dict = {}  # noqa: RUF012 - names given to outputs; replaced, never mutated
    params: dict = {}  # noqa: RUF012 - never mutated; apply stores a fresh dict
    module: Any = None
    consts: dict | None = None
    #: for a record made by a create_graph backward: the seq of the record whose
    #: backward made it (graphs use it to draw the derivation)
    backward_of: int | None = None

    array_backward = False
    #: the name shown in the tape and in graphs; defaults to the class name in lower case
    op_name: str | None = None

    # ----------------------------------------------------------------- user API
    @staticmethod
    def forward(ctx: Any, *args: Any, **params: Any) -> Any:
        raise NotImplementedError("a Function subclass must define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise NotImplementedError("a Function subclass must define backward(ctx, *grads)")

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays (inputs, outputs or intermediates) for ``backward``."""
        self.saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        """What ``forward`` saved, checked against in-place changes since."""
        saved = self.saved
        if saved is None:
            raise GraphError(_freed_message(self))
        if self._epoch != _writes[0]:  # something was written in place since forward
            self._check_versions()
        mode = _local.unpack
        if mode == 0:
            return saved
        T = _Tensor
        if mode == 1:
            return tuple([T._wrap(a) if hasattr(a, "shape") else a for a in saved])
        out = []
        for a, src in zip(saved, self._saved_from):
            if src is None:
                out.append(T._wrap(a) if hasattr(a, "shape") else a)
            elif type(src) is int:  # output -src - 1: connect it to this very record
                out.append(T._wrap(a, self, -src - 1))
            elif src._rg:
                out.append(src)  # the input itself, with its history
            else:
                out.append(T._wrap(a))
        return tuple(out)

    def _check_versions(self) -> None:
        ver = self._saved_ver
        for k, t in enumerate(self._saved_from):
            if t is None:
                continue
            if type(t) is int:
                vcs = self._out_vc
                vc = vcs if len(self.out_meta) == 1 else vcs[-t - 1]
            else:
                vc = t._vc
            then = ver[k] if ver else 0
            if vc is not None and vc[0] != then:
                raise GraphError(
                    f"{self.name} (record #{self.seq}): a value it saved for backward was "
                    f"modified in place after the forward pass (version {then} when saved, "
                    f"now {vc[0]}), so its gradient would be wrong; clone it before changing "
                    "it, or change it after backward")

    @property
    def saved_sources(self) -> list:
        """Where each saved value came from: input index, ``-1-j`` for output j, or None."""
        out: list = []
        for src in self._saved_from:
            if src is None or type(src) is int:
                out.append(src)
                continue
            key = (src._node, src._idx) if src._node is not None else src
            pos = None
            for i, e in enumerate(self.edges):
                same_leaf = e is key
                same_out = type(e) is tuple and type(key) is tuple and e[0] is key[0] \
                    and e[1] == key[1]
                if same_leaf or same_out:
                    pos = i
                    break
            if pos is None:  # a constant input: match it among the constants
                for i, c in (self.consts or {}).items():
                    if c is src or (isinstance(c, weakref.ref) and c() is src):
                        pos = i
            out.append(pos)
        return out

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        """One flag per input: whether backward has to produce its gradient."""
        return tuple(e is not None for e in self.edges)

    @property
    def name(self) -> str:
        return type(self).op_name or type(self).__name__.lower()

    def __repr__(self) -> str:
        seq = getattr(self, "seq", None)
        return f"<{self.name} #{seq}>" if seq is not None else f"<{self.name}>"

    # ------------------------------------------------------------- recording
    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Any:
        """Run the op on ``inputs`` (Tensors or constants) and record it if needed."""
        T = _Tensor
        arrays = []
        edges = []
        consts = None
        record = False
        raw = False  # some input is not a Tensor (a number or an array)
        i = 0
        for t in inputs:
            if isinstance(t, T):
                arrays.append(t._data)
                if t._rg:
                    record = True
                    edges.append((t._node, t._idx) if t._node is not None else t)
                    i += 1
                    continue
                # Constants are remembered for the tape and graphs: small ones by
                # value, larger ones weakly so the record does not keep them alive.
                c = t if t._data.size <= 1 else weakref.ref(t)
            else:
                arrays.append(t)
                raw = True
                c = t if not hasattr(t, "shape") or t.size <= 1 else ("array", t.shape, t.dtype)
            edges.append(None)
            if consts is None:
                consts = {}
            consts[i] = c
            i += 1
        if len(arrays) > 1:
            if _backend.cuda_in_use:
                _check_devices(cls, arrays)
            _unalias(inputs, arrays)
        ctx = cls.__new__(cls)
        try:
            out = cls.forward(ctx, *arrays, **params)
        except MinigradError:
            raise
        except (ValueError, TypeError, IndexError) as exc:
            raise _op_error(cls, inputs, params, exc) from None
        if not (record and _local.grad):
            if type(out) is tuple:
                return tuple([T._wrap(o) for o in out])
            return T._wrap(out)

        ctx.seq = next(_seq)
        ctx.edges = edges
        if params:
            ctx.params = _frozen(params)
        if consts is not None:
            ctx.consts = consts
        saved = ctx.saved
        if saved:
            ctx._epoch = _writes[0]
            n = len(saved)
            if n == 1 and saved[0] is out:
                ctx._saved_from = _FROM_OUT0
                ctx._out_vc = [0]
            elif (not raw and n == len(arrays) and n <= 2 and saved[0] is arrays[0]
                  and saved[-1] is arrays[-1] and inputs[0]._vc is None
                  and inputs[-1]._vc is None):
                ctx._saved_from = inputs  # saved exactly its (never written) inputs
            else:
                _note_saved(ctx, inputs, arrays, out)
        observers = _local.on_record
        if observers:
            for observe in observers:
                observe(ctx)
        if type(out) is tuple:
            ctx.out_meta = [(o.shape, o.dtype) for o in out]
            ys = tuple([T._wrap(o, ctx, i) for i, o in enumerate(out)])
            for y, vc in zip(ys, ctx._out_vc or ()):
                y._vc = vc
            return ys
        ctx.out_meta = ((out.shape, out.dtype),)
        # Tensor._wrap, inlined: this runs once per recorded op.
        y = _new(T)
        y._data = _np.asarray(out) if isinstance(out, _np.generic) else out
        y.grad = y._name = None
        y._vc = ctx._out_vc  # a saved output shares its counter with its record
        y._node = ctx
        y._idx = 0
        y._rg = True
        return y


_new = object.__new__
# Bumped by every tracked in-place write; a record made at the current epoch
# cannot have seen any, so backward skips its version checks.
_writes = [0]
_FROM_OUT0 = (-1,)


def _note_saved(ctx: Function, inputs: tuple, arrays: list, out: Any) -> None:
    """Remember where each saved array came from and the saved inputs' versions."""
    frm: list = []
    ver: list = []
    copies: dict = {}
    written = False
    for s in ctx.saved:
        i = 0
        for a in arrays:
            if s is a:
                break
            i += 1
        if i < len(arrays) and hasattr(s, "shape") and not hasattr(inputs[i], "_vc"):
            # A raw array operand: the caller may change it after the forward pass and
            # it has no version counter, so backward gets a private copy.
            frm.append(None)
            ver.append(0)
            copies[len(frm) - 1] = s.copy()
        elif i < len(arrays) and hasattr(inputs[i], "_vc"):
            t = inputs[i]
            frm.append(t)
            vc = t._vc
            if vc is not None and vc[0]:
                written = True
                ver.append(vc[0])
            else:
                ver.append(0)
        elif s is out or (type(out) is tuple and any(s is o for o in out)):
            j = 0 if s is out else [s is o for o in out].index(True)
            frm.append(-1 - j)
            ver.append(0)
            if type(out) is not tuple:
                ctx._out_vc = ctx._out_vc or [0]
            else:
                outs = list(ctx._out_vc or (None,) * len(out))
                outs[j] = outs[j] or [0]
                ctx._out_vc = tuple(outs)
        else:
            frm.append(None)
            ver.append(0)
    ctx._saved_from = frm
    if copies:
        ctx.saved = tuple(copies.get(k, s) for k, s in enumerate(ctx.saved))
    if written:
        ctx._saved_ver = tuple(ver)


def _unalias(inputs: tuple, arrays: list) -> None:
    """Give each distinct input Tensor its own array object.

    ``x`` and ``x.detach()`` share one array; ``forward`` only sees arrays, so
    without this a value saved from the detached input could not be told from the
    attached one. A view costs no copy.
    """
    for k in range(1, len(arrays)):
        a = arrays[k]
        for j in range(k):
            if arrays[j] is a and inputs[j] is not inputs[k]:
                arrays[k] = a.view()
                break


def _frozen(params: dict) -> dict:
    """``params`` with arrays copied: backward must see the index or target the forward
    pass used, even if the caller changes that array afterwards."""
    for v in params.values():
        if hasattr(v, "shape") or type(v) is tuple:
            break
    else:
        return params
    return {k: _copy_arrays(v) for k, v in params.items()}


def _copy_arrays(v: Any) -> Any:
    if hasattr(v, "shape") and hasattr(v, "copy"):
        return v.copy()
    if type(v) is tuple:
        return tuple(_copy_arrays(x) for x in v)
    return v


def _freed_message(ctx: Function) -> str:
    return (f"{ctx.name} (record #{ctx.seq}): trying to backward through the graph a second "
            "time, but its saved values were already freed by the first backward. Pass "
            "retain_graph=True to the first backward() (or mg.grad) if you need to go "
            "through the graph again.")


def _describe(t: Any) -> str:
    if isinstance(t, _Tensor):
        return f"{tuple(t.shape)} {t.dtype}"
    shape = getattr(t, "shape", None)
    if shape is not None:
        return f"array{tuple(shape)} {t.dtype}"
    return f"{type(t).__name__} {t!r}"


def _op_error(cls: type, inputs: tuple, params: dict, exc: Exception) -> Exception:
    """Turn a backend error inside ``forward`` into one that names the op and operands."""
    name = cls.op_name or cls.__name__.lower()
    operands = ", ".join(_describe(t) for t in inputs)
    extra = f" with {', '.join(f'{k}={v!r}' for k, v in params.items())}" if params else ""
    msg = f"{name}: cannot apply to operands ({operands}){extra}: {exc}"
    if isinstance(exc, IndexError):
        return IndexError(msg)
    if isinstance(exc, TypeError):
        return DTypeError(msg)
    return ShapeError(msg)


def _check_devices(cls: type, arrays: list) -> None:
    from ..backend import device_of

    devices = {device_of(a) for a in arrays if hasattr(a, "shape")}
    if len(devices) > 1:
        name = cls.op_name or cls.__name__.lower()
        kinds = ", ".join(device_of(a) if hasattr(a, "shape") else "scalar" for a in arrays)
        raise DeviceError(
            f"{name}: expected all operands on one device, got operands on ({kinds}); "
            "move them with .to('cpu') or .to('cuda') first")


# --------------------------------------------------------------------- grad mode
def is_grad_enabled() -> bool:
    """Whether new operations are being recorded on the tape."""
    return _local.grad


class _GradMode:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        self.prev = _local.grad
        _local.grad = self.enabled

    def __exit__(self, *exc: Any) -> None:
        _local.grad = self.prev

    def __call__(self, fn: Any) -> Any:
        import functools

        enabled = self.enabled

        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            with _GradMode(enabled):
                return fn(*a, **k)

        return wrapper


def no_grad() -> _GradMode:
    """Context manager and decorator: run without recording on the tape."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Context manager and decorator: record again inside a ``no_grad`` block."""
    return _GradMode(True)


def set_grad_enabled(mode: bool) -> _GradMode:
    """Context manager that sets grad mode to ``mode``."""
    return _GradMode(bool(mode))


def dual(cls: type) -> Any:
    """A function that runs ``cls`` on Tensors (recorded) or on raw arrays (plain).

    Backward formulas call these so that the same formula computes plain array
    gradients or, under ``create_graph``, a recorded and differentiable graph.
    """
    def fn(*args: Any, **params: Any) -> Any:
        T = _Tensor
        for a in args:
            if isinstance(a, T):
                return cls.apply(*args, **params)
        return cls.forward(cls.__new__(cls), *args, **params)

    fn.__name__ = cls.op_name or cls.__name__.lower()
    fn.__doc__ = cls.__doc__
    return fn
