"""`Function`: the one way an operation enters the tape.

Calling ``SomeOp.apply(*inputs, **params)`` runs ``SomeOp.forward`` on the inputs'
arrays. When gradients are being recorded and an input requires grad, the
``SomeOp`` instance that served as ``ctx`` becomes a *record* on the tape: its
fields (``seq``, ``edges``, ``params``, ``saved``, ``out_meta``, ``module``) say
what the engine and the tape need to know. ``backward`` later receives that same
``ctx``.

An ``Edge`` says where one input came from: the output ``index`` of another
``record``, a ``leaf`` tensor that collects ``.grad``, or ``NO_GRAD`` (a constant,
or a tensor that does not require grad).

A record never holds its output Tensors, and holds input Tensors only where it
saved their arrays, so intermediate results are freed as soon as nothing else
needs them, exactly like PyTorch's graph.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, NamedTuple

import numpy as _np

from .. import backend as _backend
from ..errors import (DeviceError, DTypeError, GraphError, IndexOutOfRangeError, MinigradError,
                      NotSupportedError, ShapeError)


class _ThreadState(threading.local):
    """What the engine keeps per thread, so threads never see each other's modes.

    ``grad``: whether new operations are recorded (grad mode, as in PyTorch).
    ``on_record``: the observers; each is called with every record this thread makes
    (see `minigrad.autograd.observers`).
    """

    grad = True
    #: forward mode: the token of the running `mg.jvp` (None: off); see autograd/forward.py
    tangents: Any = None
    anomaly = False  #: inside `mg.detect_anomaly()` (autograd/anomaly.py)

    def __init__(self) -> None:
        self.on_record: list = []


_local = _ThreadState()
_observed = [0]  # how many observers are registered, all threads together
# How many forward-mode or anomaly-detection blocks are running, all threads together:
# while 0, `apply` pays one test for both (autograd/forward.py takes the op otherwise).
_special = [0]
_special_apply: Any = None  # set by autograd/forward.py
_seq = itertools.count()
# The write epoch: bumped by every tracked in-place write (in any thread), which also
# stamps the written tensor's version counter with it. A record made at the current
# epoch cannot have seen a write, so backward skips its version checks. Global on
# purpose: a write in one thread to a tensor another thread saved counts.
_writes = [0]

_Tensor: Any = None  # set by minigrad.tensor to break the import cycle


class Edge(NamedTuple):
    """Where a value came from, as a record's input or a tensor's history."""

    #: the record whose output the value is (None for a leaf or a constant)
    record: Any
    #: which output of ``record``
    index: int
    #: the leaf Tensor that receives ``.grad`` (None unless the value is such a leaf)
    leaf: Any
    #: the value's shape and dtype: the gradient that flows back along the edge has them
    shape: tuple
    dtype: Any


#: the edge of an input that gets no gradient: a constant, or a tensor that does not
#: require grad
NO_GRAD = Edge(None, 0, None, (), None)
# Edge(...) without the keyword handling. An op output's edge is made once, with the
# tensor, and shared by every op that uses it.
_edge = tuple.__new__


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
    A gradient may keep the shape broadcasting gave it: the engine sums it back
    to its input's shape.

    ``array_backward = True`` is an optional speed-up that minigrad's own
    primitives use: it promises that ``backward`` only uses operators and
    methods that NumPy/CuPy arrays and Tensors share (``+ * @ .sum() .reshape()``
    ...), so when no graph of the backward is wanted it is fed raw arrays.
    """

    # The record's fields. Defaults live on the class, so a record only stores what
    # differs from them: every attribute set while recording is paid once per op.
    seq: int = -1  #: the record's number; inputs always have smaller numbers
    edges: list = []  #: one `Edge` per input  # noqa: RUF012 - replaced, never mutated
    params: dict = {}  #: the keyword arguments of `apply`  # noqa: RUF012
    out_meta: tuple = ()  #: (shape, dtype) of each output
    module: Any = None  #: what an observer noted (nn: the module scope the op ran in)
    saved: tuple | None = ()  #: what forward saved; None once backward freed it
    #: per saved value: the input position it is, ``-1 - j`` for output j, or None
    saved_from: tuple = ()
    consts: dict | None = None  #: input position -> the constant given there (for the tape)
    out_names: dict = {}  #: output index -> name  # noqa: RUF012 - replaced, never mutated
    #: for a record made by a create_graph backward: the seq of the record whose
    #: backward made it
    backward_of: int | None = None
    # Per saved value: the input Tensor it is (for its version counter), else None.
    _saved_inputs: Any = ()
    _out_vc: Any = None  # the version counter(s) of saved outputs, shared with them
    _epoch = 0  # the write epoch when this record was made

    array_backward = False
    #: the forward-mode rule ``jvp(ctx, *tangents)`` (autograd/forward.py); None: none
    jvp: Any = None
    #: the file:line of the user's code that called the op (only under detect_anomaly)
    source: str | None = None
    #: output index -> the hooks on that output's gradient (Tensor.register_hook)
    hooks: dict | None = None
    #: the name shown in the tape and in graphs; defaults to the class name in lower case
    op_name: str | None = None

    # ----------------------------------------------------------------- user API
    @staticmethod
    def forward(ctx: Any, *args: Any, **params: Any) -> Any:
        raise NotSupportedError("a Function subclass must define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise NotSupportedError("a Function subclass must define backward(ctx, *grads)")

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays (inputs, outputs or intermediates) for ``backward``."""
        self.saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        """What ``forward`` saved, checked against in-place changes since.

        Tensors, connected to the graph when the backward is being recorded
        (``create_graph``); raw arrays for an ``array_backward`` op otherwise.
        """
        saved = self.saved
        if saved is None:
            raise GraphError(_freed_message(self))
        if self._epoch != _writes[0]:  # something was written in place since forward
            self._check_versions()
        if not _local.grad and self.array_backward:
            return saved
        return tuple([self._saved_tensor(k, a) for k, a in enumerate(saved)])

    def _saved_tensor(self, k: int, a: Any) -> Any:
        """Saved value ``k`` as a Tensor: an input or output keeps its place in the graph."""
        if not hasattr(a, "shape"):
            return a
        src = self.saved_from[k] if self.saved_from else None
        if src is None:
            return _tensor(a, None, 0)
        if src < 0:  # output -1 - src of this very record
            return _tensor(a, self, -1 - src)
        e = self.edges[src]
        return e.leaf if e.leaf is not None else _tensor(a, e.record, e.index)

    def _check_versions(self) -> None:
        """Raise if a saved input or output was written after this record was made.

        A version counter holds the write epoch of its tensor's last in-place write, so
        "written since" is "stamped later than this record's epoch".
        """
        for k, src in enumerate(self.saved_from):
            if src is None:
                continue
            if src < 0:
                vcs = self._out_vc
                vc = vcs if len(self.out_meta) == 1 else vcs[-src - 1]
            else:
                vc = self._saved_inputs[k]._vc
            if vc is not None and vc[0] > self._epoch:
                raise GraphError(
                    f"{self.name} (record #{self.seq}): a value it saved for backward was "
                    "modified in place after the forward pass, so its gradient would be "
                    "wrong; clone it before changing it, or change it after backward")

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        """One flag per input: whether backward has to produce its gradient."""
        if self.consts is not None:  # some input is a constant
            return tuple([e is not NO_GRAD for e in self.edges])
        n = len(self.edges)
        return _ALL_NEEDED[n] if n < len(_ALL_NEEDED) else (True,) * n

    @property
    def name(self) -> str:
        return type(self).op_name or type(self).__name__.lower()

    def __repr__(self) -> str:
        return f"<{self.name} #{self.seq}>" if self.seq >= 0 else f"<{self.name}>"

    # ------------------------------------------------------------- recording
    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Any:
        """Run the op on ``inputs`` (Tensors or constants) and record it if needed."""
        arrays, edges = [], []  # per input: its array, and where its gradient goes
        record = constant = False
        for t in inputs:
            if isinstance(t, _Tensor):
                arrays.append(t._data)
                if t._rg:
                    edges.append(t._edge or _leaf_edge(t))
                    record = True
                    continue
            else:
                arrays.append(t)
            edges.append(NO_GRAD)
            constant = True
        if len(arrays) > 1 and (len(arrays) > 2 or arrays[0] is arrays[1]
                                or _backend.cuda_in_use):
            _check_operands(cls, inputs, arrays)
        ctx = _new(cls)
        try:
            out = cls.forward(ctx, *arrays, **params)
        except MinigradError:
            raise
        except (ValueError, TypeError, IndexError) as exc:
            raise _op_error(cls, inputs, params, exc) from None
        if _special[0]:  # forward mode or anomaly detection, in some thread
            return _special_apply(cls, ctx, inputs, arrays, edges, record, constant, params, out)
        if not (record and _local.grad):  # nothing to differentiate: no record
            if type(out) is tuple:
                return tuple([_tensor(o, None, 0) for o in out])
            return _tensor(out, None, 0)
        return _record(ctx, inputs, arrays, edges, constant, params, out)


def _tensor(array: Any, record: Any, index: int) -> Any:
    """A Tensor around ``array`` (no copy), made by output ``index`` of ``record``."""
    if type(array) is not _np.ndarray:
        if isinstance(array, _np.generic):  # NumPy gives scalars for 0-d results
            array = _np.asarray(array)
        elif isinstance(array, _Tensor):
            raise GraphError("an op returned a Tensor where an array belongs; a Function's "
                             "forward must return arrays")
    t = _new(_Tensor)
    t._data = array
    t.grad = t._name = t._vc = None
    if record is None:
        t._edge = None
        t._rg = False
    else:
        t._edge = _edge(Edge, (record, index, None, array.shape, array.dtype))
        t._rg = True
    return t


_new = object.__new__


def _check_operands(cls: type, inputs: tuple, arrays: list) -> None:
    """Operands on one device; distinct input Tensors with distinct array objects."""
    if _backend.cuda_in_use:
        _check_devices(cls, arrays)
    _unalias(inputs, arrays)


def _leaf_edge(t: Any) -> Edge:
    return _edge(Edge, (None, 0, t, t._data.shape, t._data.dtype))


def _record(ctx: Function, inputs: tuple, arrays: list, edges: list, constant: bool,
            params: dict, out: Any) -> Any:
    """Turn ``ctx`` into the record of this call (number, edges, parameters, saved values);
    return the output Tensor(s), whose edges point at it."""
    ctx.seq = next(_seq)
    ctx.edges = edges
    if constant:
        ctx.consts = _constants(inputs, edges)
    if params:
        ctx.params = _frozen(params)
    saved = ctx.saved
    if saved:
        ctx._epoch = _writes[0]
        n = len(saved)
        if n == 1 and saved[0] is out:  # the common "saved my output" case
            ctx.saved_from = _FROM_OUT0
            ctx._out_vc = [0]
        elif (n == len(arrays) <= 2 and saved[0] is arrays[0] and saved[-1] is arrays[-1]
              and isinstance(inputs[0], _Tensor) and isinstance(inputs[-1], _Tensor)):
            ctx.saved_from = _POSITIONS[n]  # it saved exactly its input Tensors
            ctx._saved_inputs = inputs
        else:
            _note_saved(ctx, inputs, arrays, out)
    if type(out) is not tuple:
        ys = _tensor(out, ctx, 0)
        ys._vc = ctx._out_vc  # a saved output shares its counter with its record
        ctx.out_meta = ((ys._edge.shape, ys._edge.dtype),)
    else:
        ys = tuple([_tensor(o, ctx, i) for i, o in enumerate(out)])
        ctx.out_meta = tuple([(y._edge.shape, y._edge.dtype) for y in ys])
        for y, vc in zip(ys, ctx._out_vc or ()):
            y._vc = vc
    if _observed[0]:  # some thread observes: does this one?
        for observe in _local.on_record:
            observe(ctx)
    return ys


_ALL_NEEDED = [(True,) * n for n in range(9)]


def _constants(inputs: tuple, edges: list) -> dict:
    """The constant inputs, for the tape: numbers and one-element tensors by value, larger
    tensors weakly (a record must not keep a batch of data alive), arrays as a
    description."""
    if len(edges) == 2:  # a binary op: one operand is recorded, so the other is constant
        i = 1 if edges[0] is not NO_GRAD else 0
        return {i: _constant(inputs[i])}
    return {i: _constant(inputs[i]) for i, e in enumerate(edges) if e is NO_GRAD}


def _constant(c: Any) -> Any:
    if isinstance(c, _Tensor):
        return c if c._data.size <= 1 else weakref.ref(c)
    if hasattr(c, "shape") and c.size > 1:
        return ("array", c.shape, c.dtype)
    return c


_POSITIONS = [tuple(range(n)) for n in range(4)]
_FROM_OUT0 = (-1,)


def _note_saved(ctx: Function, inputs: tuple, arrays: list, out: Any) -> None:
    """Note where each saved value came from: an input (whose Tensor is kept, for its
    version counter), an output (which gets a counter), or neither."""
    saved = ctx.saved
    frm, tensors, copies = [], [], {}
    for k, s in enumerate(saved):
        i = _position(s, arrays)
        t = inputs[i] if i is not None else None
        if i is not None and not isinstance(t, _Tensor):
            # A raw array operand: the caller may change it after the forward pass
            # and it has no version counter, so backward gets a private copy.
            i, t = None, None
            if hasattr(s, "copy"):
                copies[k] = s.copy()
        elif i is None and (s is out or (type(out) is tuple and any(s is o for o in out))):
            i = -1 if s is out else -1 - [s is o for o in out].index(True)
            _count_output_versions(ctx, out, -1 - i)
        frm.append(i)
        tensors.append(t)
    ctx.saved_from = tuple(frm)
    ctx._saved_inputs = tuple(tensors)
    if copies:
        ctx.saved = tuple(copies.get(k, s) for k, s in enumerate(saved))


def _position(s: Any, arrays: list) -> int | None:
    for i, a in enumerate(arrays):
        if s is a:
            return i
    return None


def _count_output_versions(ctx: Function, out: Any, j: int) -> None:
    """Give saved output ``j`` a version counter, shared with its Tensor."""
    if type(out) is not tuple:
        ctx._out_vc = ctx._out_vc or [0]
        return
    outs = list(ctx._out_vc or (None,) * len(out))
    outs[j] = outs[j] or [0]
    ctx._out_vc = tuple(outs)


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
        return IndexOutOfRangeError(msg)
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
