"""`Tensor`: an array plus what reverse mode needs to know about it.

A Tensor holds a backend array (NumPy on ``cpu``, CuPy on ``cuda``) and, when it
was produced by a recorded operation, its ``Edge``: the record that made it and
which of the record's outputs it is. Leaves have no record; leaves with
``requires_grad=True`` receive gradients in ``.grad``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import backend
from .autograd import function as _fn
from .errors import ArgumentTypeError, DTypeError, GraphError, ShapeError

DType = Any

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int16, int32, int64, uint8 = np.int8, np.int16, np.int32, np.int64, np.uint8
bool_ = np.bool_


def _is_float(dtype: Any) -> bool:
    return np.dtype(dtype).kind == "f"


class _VersionedArray(np.ndarray):
    """What ``Tensor.data`` hands out on the CPU: a view that counts in-place writes.

    Writing through it (``t.data[...] = v``, ``t.data += 1``, ``np.copyto(t.data, v)``,
    ``out=t.data``) bumps the tensor's version counter, so a backward that would
    read a saved value changed since the forward pass raises instead of quietly
    computing a wrong gradient. Results of arithmetic on it are plain arrays.
    """

    _vc: list | None = None

    def __array_finalize__(self, obj: Any) -> None:
        self._vc = getattr(obj, "_vc", None)  # slices and views share the counter

    def _bump(self) -> None:
        _fn._writes[0] += 1
        if self._vc is not None:
            self._vc[0] = _fn._writes[0]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._bump()
        super().__setitem__(key, value)

    def fill(self, value: Any) -> None:
        self._bump()
        super().fill(value)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        plain = [x.view(np.ndarray) if isinstance(x, _VersionedArray) else x for x in inputs]
        out = kwargs.get("out")
        if out:
            for o in out:
                if isinstance(o, _VersionedArray):
                    o._bump()
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, _VersionedArray) else o
                                  for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out:
            return out[0] if len(out) == 1 else out
        return result

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.copyto:
            dst = args[0] if args else kwargs.get("dst")
            if isinstance(dst, _VersionedArray):
                dst._bump()
        return super().__array_function__(func, types, args, kwargs)


for _name in ("__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
              "__ipow__", "__imod__", "__imatmul__", "__iand__", "__ior__", "__ixor__",
              "__ilshift__", "__irshift__", "sort", "put", "partition", "setfield"):
    def _make(name: str) -> Any:
        base = getattr(np.ndarray, name)

        def method(self: _VersionedArray, *args: Any, **kwargs: Any) -> Any:
            self._bump()
            return base(self, *args, **kwargs)

        method.__name__ = name
        return method

    setattr(_VersionedArray, _name, _make(_name))


def _describe_data(data: Any) -> str:
    if isinstance(data, (list, tuple)):
        return f"a {type(data).__name__} of ragged length or holding non-numbers"
    return f"an object of type {type(data).__name__}"


def _to_array(data: Any, dtype: Any, device: str | None) -> Any:
    """Build the backend array for ``mg.tensor``: Python floats become float32."""
    if isinstance(data, Tensor):
        arr = data._data
        if device is not None:
            arr = backend.to_device(arr, backend.check_device(device))
        return arr.astype(dtype) if dtype is not None else arr.copy()
    if not hasattr(data, "dtype"):
        try:
            probe = np.asarray(data)
        except ValueError:  # NumPy refuses ragged nesting
            probe = np.empty(0, object)
        if probe.dtype.kind in "OUSV":
            raise DTypeError(f"tensor: cannot make a tensor from {_describe_data(data)}; "
                             "expected numbers, nested lists of equal length, or an array")
        if dtype is None and probe.dtype == np.float64:
            dtype = np.float32  # Python floats (and lists of them) give float32
        data = probe
    dev = backend.check_device(device) if device is not None else backend.device_of(data)
    xp = backend.get_array_module(dev)
    if dev == "cuda":
        backend.cuda_in_use = True
    if dev == "cpu" and backend.device_of(data) == "cuda":
        data = backend.to_device(data, "cpu")
    arr = xp.array(data, dtype=dtype)  # always a copy: a tensor owns its data
    if arr.dtype == object:
        raise DTypeError(f"tensor: cannot make a tensor from objects of type {type(data).__name__}")
    return arr


class Tensor:
    """A multidimensional array that can record the operations made with it."""

    __slots__ = ("_data", "grad", "_rg", "_edge", "_vc", "_name", "__weakref__",
                 "_tangent", "_hooks")  # forward mode's tangent; a leaf's gradient hooks
    # NumPy defers to Tensor's reflected operators (ndarray * Tensor -> Tensor).
    __array_ufunc__ = None

    def __init__(self, data: Any, dtype: Any = None, device: str | None = None,
                 requires_grad: bool = False, name: str | None = None) -> None:
        self._data = _to_array(data, dtype, device)
        self.grad: Tensor | None = None
        self._rg = False
        self._edge = None
        self._vc = None
        if name is not None and not isinstance(name, str):
            raise DTypeError(f"tensor: name must be a str or None, got {type(name).__name__} "
                             f"{name!r}; pass e.g. name=str(value)")
        self._name = name
        if requires_grad:
            self.requires_grad = True

    @staticmethod
    def _wrap(array: Any, node: Any = None, idx: int = 0) -> Tensor:
        """Wrap a backend array without copying (internal; ``mg.as_tensor`` is public)."""
        return _fn._tensor(array, node, idx)

    # ------------------------------------------------------------ attributes
    @property
    def name(self) -> str | None:
        """A label for the tape and the pictures (leaves show ``x0, x1, ...`` without one)."""
        return self._name

    @name.setter
    def name(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise DTypeError(f"name must be a str or None, got {type(value).__name__} {value!r}; "
                             "write e.g. t.name = str(value)")
        self._name = value
        e = self._edge
        if e is not None:  # an op's output: its record keeps the name for mg.tape/mg.viz
            e.record.out_names = {**e.record.out_names, e.index: value}

    @property
    def requires_grad(self) -> bool:
        return self._rg

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not _is_float(self._data.dtype):
            raise DTypeError(
                f"only floating-point tensors can require grad, but this tensor has dtype "
                f"{self._data.dtype}; convert it first, e.g. t.astype(mg.float32)")
        if not value and self._edge is not None:
            raise GraphError("requires_grad=False on a non-leaf tensor: use .detach() instead")
        self._rg = bool(value)

    def requires_grad_(self, value: bool = True) -> Tensor:
        self.requires_grad = value
        return self

    @property
    def data(self) -> Any:
        """The backend array. On the CPU, in-place writes through it are tracked."""
        if type(self._data) is np.ndarray:
            if self._vc is None:
                self._vc = [0]
            v = self._data.view(_VersionedArray)
            v._vc = self._vc
            return v
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if isinstance(value, Tensor):
            value = value._data
        self._data = value.view(np.ndarray) if isinstance(value, _VersionedArray) else value
        self._bump()

    def _bump(self) -> None:
        """Note an in-place change: the version counter takes the new write epoch (see
        ``Function.saved_tensors``)."""
        _fn._writes[0] += 1
        if self._vc is None:
            self._vc = [_fn._writes[0]]
        else:
            self._vc[0] = _fn._writes[0]

    @property
    def is_leaf(self) -> bool:
        return self._edge is None

    @property
    def grad_fn(self) -> Any:
        """The record that produced this tensor, or None for a leaf."""
        return self._edge.record if self._edge is not None else None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return int(self._data.size)

    @property
    def dtype(self) -> Any:
        return self._data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self._data)

    @property
    def T(self) -> Tensor:
        return _ops.transpose(self)

    @property
    def mT(self) -> Tensor:
        return _ops.swapaxes(self, -1, -2)

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise ArgumentTypeError("len() of a 0-d tensor: it has no axis to count; use .item()")
        return len(self._data)

    def __iter__(self) -> Any:
        for i in range(len(self)):
            yield self[i]

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise ShapeError(f"the truth value of a tensor of shape {self.shape} is ambiguous; "
                             "use .any() or .all()")
        return bool(self._data.reshape(()))

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise DTypeError("only integer tensors of one element can be used as an index, got "
                             f"dtype {self._data.dtype} and shape {self.shape}")
        return int(self.item())

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", precision=4, threshold=50,
                               prefix="tensor(")
        extra = []
        if self._data.dtype not in (np.float32, np.int64, np.bool_):
            extra.append(f"dtype={self._data.dtype}")
        if self.device != "cpu":
            extra.append(f"device='{self.device}'")
        if self._edge is not None:
            extra.append(f"grad_fn={self._edge.record!r}")
        elif self._rg:
            extra.append("requires_grad=True")
        if self.name:
            extra.append(f"name={self.name!r}")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"

    # ------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        """A NumPy copy of the data, on the host."""
        return np.array(backend.to_device(self._data, "cpu"))

    def item(self) -> Any:
        if self._data.size != 1:
            raise ShapeError(f"item(): the tensor has {self._data.size} elements, not one "
                             f"(shape {self.shape})")
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        return self.numpy().tolist()

    def to(self, device: str) -> Tensor:
        """This tensor on ``device``; recorded, so gradients flow back across devices."""
        dev = backend.check_device(device)
        if dev == self.device:
            return self
        if dev == "cuda":
            backend.get_array_module("cuda")  # the clear error when CuPy is missing
        return _ops.to_device(self, device=dev)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory and version counter)."""
        t = Tensor._wrap(self._data)
        if self._vc is None:
            self._vc = [0]
        t._vc = self._vc
        return t

    def clone(self) -> Tensor:
        return _ops.clone(self)

    def astype(self, dtype: Any, copy: bool = True) -> Tensor:
        """This tensor converted to ``dtype`` (itself when ``copy=False`` and it already is)."""
        if not copy and self._data.dtype == np.dtype(dtype):
            return self
        return _ops.astype(self, dtype=np.dtype(dtype))

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def backward(self, grad: Any = None, retain_graph: bool | None = None,
                 create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires grad.

        ``retain_graph`` defaults to ``create_graph``: a graph of the gradient needs
        the forward records it was built from.
        """
        from .autograd.engine import run_backward

        if grad is not None and (grad.dtype if hasattr(grad, "dtype")
                                 else np.asarray(grad).dtype).kind not in "biuf":
            raise DTypeError(f"backward: grad must be a Tensor, an array or a number of real "
                             f"values, got {type(grad).__name__} {grad!r:.60}")
        if retain_graph is None:
            retain_graph = create_graph
        run_backward([self], [grad], retain_graph, create_graph)

    def register_hook(self, fn: Any) -> Any:
        """Call ``fn(grad)`` with this tensor's gradient during backward and ``mg.grad``.

        ``fn`` may return a replacement gradient (same shape) or None. Works on leaves
        and intermediates; returns a handle whose ``remove()`` unregisters it.
        """
        from .autograd.hooks import register_hook

        return register_hook(self, fn)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` (accumulated like a leaf's)."""
        from .autograd.hooks import retain_grad

        retain_grad(self)

    # ------------------------------------------------------------- in place
    def _refuse_if_recorded(self, op: str, hint: str) -> None:
        """In-place changes would corrupt a tensor whose history is being recorded."""
        if self._rg and _fn._local.grad:
            raise GraphError(f"{op}: in-place change of a tensor that requires grad{hint}")
        if _fn._special[0] and getattr(self, "_tangent", None) is not None:
            from .autograd.forward import refuse_inplace

            refuse_inplace(self, op)

    def _inplace(self, op: str, value: Any) -> Tensor:
        self._refuse_if_recorded(op, "; wrap it in mg.no_grad() (as optimisers do) or use the "
                                     "out-of-place form")
        v = value._data if isinstance(value, Tensor) else value
        getattr(self._data, op)(v)  # __iadd__ etc. on the array itself
        self._bump()
        return self

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace("__iadd__", other)

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace("__isub__", other)

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace("__imul__", other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace("__itruediv__", other)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._refuse_if_recorded("setitem", "; use mg.where or indexing to build a new tensor "
                                            "instead")
        self._data[_ops.raw_index(key)] = value._data if isinstance(value, Tensor) else value
        self._bump()

    def zero_(self) -> Tensor:
        return self._inplace("fill", 0)

    def fill_(self, value: float) -> Tensor:
        return self._inplace("fill", value)

    def copy_(self, src: Any) -> Tensor:
        self._refuse_if_recorded("copy_", "")
        s = src._data if isinstance(src, Tensor) else src
        self._data[...] = s
        self._bump()
        return self

    # ------------------------------------------------------------ operators
    def __add__(self, o: Any) -> Tensor:
        return _Add(self, o)

    def __sub__(self, o: Any) -> Tensor:
        return _Sub(self, o)

    def __mul__(self, o: Any) -> Tensor:
        return _Mul(self, o)

    # The other operators, each one op applied to (self, o) or, reflected, to (o, self), are
    # made from the table `_OPERATORS` at the end of this file.

    def __neg__(self) -> Tensor:
        return _ops.neg(self)

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _ops.abs(self)

    def __getitem__(self, idx: Any) -> Tensor:
        return _ops.getitem(self, idx)

    def __invert__(self) -> Tensor:
        return _ops.logical_not(self)

    # -------------------------------------------------------------- methods
    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.mean(self, axis=axis, keepdims=keepdims)

    def var(self, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
        return _ops.var(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def std(self, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
        return _ops.std(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def max(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.min(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return _ops.argmin(self, axis=axis, keepdims=keepdims)

    def any(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return Tensor._wrap(self._data.any(axis=axis, keepdims=keepdims))

    def all(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return Tensor._wrap(self._data.all(axis=axis, keepdims=keepdims))

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops.reshape(self, shape=shape)

    def view(self, *shape: Any) -> Tensor:
        return self.reshape(*shape)

    def transpose(self, *axes: Any) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _ops.transpose(self, axes=axes or None)

    def swapaxes(self, a: int, b: int) -> Tensor:
        return _ops.swapaxes(self, a, b)

    def flatten(self, start_axis: int = 0) -> Tensor:
        return _ops.flatten(self, start_axis)

    def squeeze(self, axis: Any = None) -> Tensor:
        return _ops.squeeze(self, axis=axis)

    def unsqueeze(self, axis: int) -> Tensor:
        return _ops.unsqueeze(self, axis)

    def expand_dims(self, axis: int) -> Tensor:
        return _ops.unsqueeze(self, axis)

    def broadcast_to(self, shape: Any) -> Tensor:
        return _ops.broadcast_to(self, shape=tuple(shape))

    def exp(self) -> Tensor:
        return _ops.exp(self)

    def log(self) -> Tensor:
        return _ops.log(self)

    def sqrt(self) -> Tensor:
        return _ops.sqrt(self)

    def abs(self) -> Tensor:
        return _ops.abs(self)

    def clip(self, a_min: Any = None, a_max: Any = None) -> Tensor:
        return _ops.clip(self, a_min, a_max)

    def tanh(self) -> Tensor:
        return _Tanh(self)

    def sigmoid(self) -> Tensor:
        return _ops.sigmoid(self)

    def relu(self) -> Tensor:
        return _ops.relu(self)


_fn._Tensor = Tensor

from . import ops as _ops  # noqa: E402 - ops need Tensor defined first

# The hottest operators call their op's `apply` directly (one call less per op).
_Add, _Sub, _Mul, _Div = _ops.Add.apply, _ops.Sub.apply, _ops.Mul.apply, _ops.Div.apply
_Tanh = _ops.Tanh.apply


def _operator(fn: Any, reflected: bool) -> Any:
    """A Tensor operator method: ``fn(self, o)``, or ``fn(o, self)`` for a reflected one."""
    if reflected:
        def method(self: Tensor, o: Any) -> Tensor:
            return fn(o, self)
    else:
        def method(self: Tensor, o: Any) -> Tensor:
            return fn(self, o)
    return method


# operator name -> (its op, whether it has a reflected __r<name>__ form)
_OPERATORS = {
    "add": (_ops.add, True), "sub": (_ops.sub, True), "mul": (_ops.mul, True),
    "truediv": (_ops.div, True), "pow": (_ops.pow, True), "matmul": (_ops.matmul, True),
    "eq": (_ops.equal, False), "ne": (_ops.not_equal, False), "lt": (_ops.less, False),
    "le": (_ops.less_equal, False), "gt": (_ops.greater, False),
    "ge": (_ops.greater_equal, False), "and": (_ops.logical_and, False),
    "or": (_ops.logical_or, False)}
for _name, (_op, _reflected) in _OPERATORS.items():
    if f"__{_name}__" not in Tensor.__dict__:  # __add__ etc. call their op's apply directly
        setattr(Tensor, f"__{_name}__", _operator(_op, False))
    if _reflected:
        setattr(Tensor, f"__r{_name}__", _operator(_op, True))
