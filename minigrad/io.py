"""`save` and `load`: checkpoints as a single ``.npz`` file, never pickle.

What can be saved: nested dicts, lists and tuples whose leaves are Tensors,
NumPy (or CuPy) arrays, NumPy scalars, Python numbers, strings, bytes, bools
and None. That covers model and optimiser ``state_dict()``s, integer dict keys
included, and ``mg.random.get_state()``.

The file is an ordinary NumPy ``.npz`` (a zip of ``.npy`` files): every array
is stored under a generated name (``arr_0``, ``arr_1``, ...), and the nesting is
written as JSON text in the entry ``__minigrad__``. Both are read back with
``allow_pickle=False``, so loading a checkpoint can never run code hidden in it.

A save first writes a temporary file next to the target, flushes it to disk,
then renames it over the target in one step (``os.replace``): a crash mid-save
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import zipfile
import zlib
from typing import Any

import numpy as np

from . import backend
from .tensor import Tensor

META = "__minigrad__"
FORMAT = "minigrad-checkpoint"
VERSION = 1

PathLike = str | os.PathLike


# ---------------------------------------------------------------------- save
def save(obj: Any, path: PathLike, compress: bool = False) -> None:
    """Write ``obj`` (e.g. a ``state_dict``) to ``path`` as an ``.npz`` checkpoint.

    Args:
        obj: nested dicts/lists/tuples of Tensors, arrays, numbers, strings, bools, None.
        path: the file to write; its folder must exist. It is replaced atomically.
        compress: deflate the arrays (smaller files, slower saves).

    Tensors keep their dtype, ``requires_grad`` and ``name``; CUDA tensors and CuPy
    arrays are copied to the host first. Raises ``TypeError`` naming the place in
    ``obj`` that holds something else (say, a module or a function).
    """
    path = os.fspath(path)
    arrays: list[np.ndarray] = []
    tree = _encode(obj, arrays, "obj", set())
    header = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree},
                        allow_nan=False, separators=(",", ":")).encode("utf-8")
    entries = [(META, np.frombuffer(header, dtype=np.uint8))]
    entries += [(f"arr_{i}", a) for i, a in enumerate(arrays)]
    _atomic_write(path, entries, zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)


def _encode(obj: Any, arrays: list, where: str, active: set) -> Any:
    """Turn ``obj`` into JSON-able data; arrays go to ``arrays``, referenced by name."""
    if isinstance(obj, np.generic):  # first: np.float64 is also a Python float
        return {"t": "scalar", "k": _add(np.asarray(obj), arrays, where)}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"t": "float", "v": repr(obj)}
    if isinstance(obj, complex):
        return {"t": "complex", "re": _encode(obj.real, arrays, where, active),
                "im": _encode(obj.imag, arrays, where, active)}
    if isinstance(obj, Tensor):
        node = {"t": "tensor", "k": _add(obj._data, arrays, where),
                "device": obj.device, "requires_grad": obj.requires_grad}
        if obj.name is not None:
            node["name"] = str(obj.name)
        return node
    if isinstance(obj, bytes):
        return {"t": "bytes", "k": _add(np.frombuffer(obj, dtype=np.uint8), arrays, where)}
    if isinstance(obj, np.ndarray) or backend.device_of(obj) == "cuda":
        return {"t": "array", "k": _add(obj, arrays, where), "device": backend.device_of(obj)}
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in active:
            raise ValueError(f"save: {where} contains itself; a checkpoint must be a tree")
        active.add(id(obj))
        try:
            if isinstance(obj, dict):
                items = []
                for k, v in obj.items():
                    if not isinstance(k, (str, int, float, bool, tuple, type(None))):
                        raise TypeError(f"save: {where} has a key of type {type(k).__name__}; "
                                        "expected str, int, float, bool, None or a tuple")
                    items.append([_encode(k, arrays, f"{where} key {k!r}", active),
                                  _encode(v, arrays, f"{where}[{k!r}]", active)])
                return {"t": "dict", "items": items}
            kind = "list" if isinstance(obj, list) else "tuple"
            return {"t": kind, "items": [_encode(v, arrays, f"{where}[{i}]", active)
                                         for i, v in enumerate(obj)]}
        finally:
            active.discard(id(obj))
    raise TypeError(f"save: cannot store {where}, a {type(obj).__module__}."
                    f"{type(obj).__qualname__}; expected Tensors, arrays, numbers, strings, "
                    "bools, None, or dicts/lists/tuples of them (save a module's "
                    "state_dict(), not the module)")


def _add(array: Any, arrays: list, where: str) -> str:
    host = np.asarray(backend.to_device(array, "cpu"))
    if host.dtype.hasobject:
        raise TypeError(f"save: {where} is an array of Python objects (dtype {host.dtype}); "
                        "only numeric, bool and string arrays can be saved without pickle")
    arrays.append(host)
    return f"arr_{len(arrays) - 1}"


def _write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """Write one ``.npy`` entry into the archive (the same layout ``np.savez`` uses)."""
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def _atomic_write(path: str, entries: list, compression: int) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: cannot write {path!r}: the folder {folder!r} does not "
                                "exist; create it first (os.makedirs)")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, like a plain open() would
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=compression) as zf:
                for name, array in entries:
                    _write_array(zf, name, array)
            fh.flush()
            os.fsync(fh.fileno())  # the data must be on disk before the rename makes it live
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); harmless where folders can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- load
def load(path: PathLike, device: str | None = None) -> Any:
    """Read a checkpoint written by ``save``.

    Args:
        path: the ``.npz`` file.
        device: where Tensors go (``"cpu"`` when None). With ``device="cuda"``,
            arrays that were CuPy arrays when saved come back as CuPy arrays too;
            other arrays are NumPy arrays.

    Raises ``ValueError`` naming the file when it is not a minigrad checkpoint, is
    truncated or damaged, or holds object arrays (which would need pickle: minigrad
    never unpickles anything).
    """
    path = os.fspath(path)
    dev = backend.check_device(device) if device is not None else "cpu"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint file at {path!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"load: {path!r} is not a minigrad checkpoint: it is not an .npz "
                         f"(zip) archive{_what_is_it(path)}, or it was cut short. minigrad "
                         "reads only files written by mg.save and never unpickles.")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if META + ".npy" not in names:
                pickled = [n for n in names if n.endswith(".pkl")]
                extra = (f"; it holds pickled data ({pickled[0]}), e.g. from torch.save, "
                         "which minigrad never loads") if pickled else ""
                shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
                raise ValueError(f"load: {path!r} is a zip/.npz archive but not a minigrad "
                                 f"checkpoint (no {META} entry; entries: {shown}){extra}")
            meta = _read_array(zf, path, META)
            if meta.dtype != np.uint8 or meta.ndim != 1:
                raise ValueError(f"load: {path!r}: the {META} entry is not JSON text")
            try:
                header = json.loads(meta.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"load: {path!r}: the {META} entry is not valid JSON "
                                 f"({exc})") from None
            fmt = header.get("format") if isinstance(header, dict) else None
            if fmt != FORMAT:
                raise ValueError(f"load: {path!r} is not a minigrad checkpoint (its {META} "
                                 f"entry has format {fmt!r}, expected {FORMAT!r})")
            if not isinstance(header.get("version"), int) or header["version"] > VERSION:
                raise ValueError(f"load: {path!r} has checkpoint format version "
                                 f"{header.get('version')!r}; this minigrad reads up to "
                                 f"version {VERSION}: upgrade minigrad")
            return _Decoder(zf, path, names, dev).decode(header.get("tree"))
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, RecursionError) as exc:
        raise ValueError(f"load: {path!r} is damaged or truncated "
                         f"({type(exc).__name__}: {exc})") from None


def _what_is_it(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:1] == b"\x80":
        return " (it looks like a Python pickle)"
    if head.startswith(b"\x93NUMPY"):
        return " (it is a single .npy array; read it with numpy.load)"
    if not head:
        return " (it is empty)"
    return ""


def _read_array(zf: zipfile.ZipFile, path: str, name: str) -> np.ndarray:
    try:
        with zf.open(name + ".npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except KeyError:
        raise ValueError(f"load: {path!r} is damaged: entry {name!r} is missing") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ValueError(f"load: {path!r}: entry {name!r} holds Python objects, which "
                             "would need pickle to load; minigrad refuses (is this file "
                             "from mg.save?)") from None
        raise ValueError(f"load: {path!r} is damaged: entry {name!r}: {exc}") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"load: {path!r} is damaged or truncated: entry {name!r} "
                         f"({type(exc).__name__}: {exc})") from None


class _Decoder:
    """Rebuilds the saved structure from its JSON description and the stored arrays."""

    def __init__(self, zf: zipfile.ZipFile, path: str, names: set, device: str) -> None:
        self.zf, self.path, self.names, self.device = zf, path, names, device

    def bad(self, what: str) -> ValueError:
        return ValueError(f"load: {self.path!r} is damaged: {what}")

    def array(self, node: dict) -> np.ndarray:
        key = node.get("k")
        if not isinstance(key, str) or key + ".npy" not in self.names or key == META:
            raise self.bad(f"it refers to a missing array entry {key!r}")
        return _read_array(self.zf, self.path, key)

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list) or not isinstance(node, dict) or "t" not in node:
            raise self.bad(f"unexpected node {str(node)[:80]!r} in the structure")
        kind = node["t"]
        if kind == "dict":
            out = {}
            for pair in node.get("items", ()):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise self.bad("a dict entry is not a key/value pair")
                key = self.decode(pair[0])
                if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                    raise self.bad(f"a dict key decodes to a {type(key).__name__}")
                try:
                    out[key] = self.decode(pair[1])
                except TypeError:  # a tuple key holding a list
                    raise self.bad(f"a dict key {key!r} is not hashable") from None
            return out
        if kind in ("list", "tuple"):
            items = [self.decode(v) for v in node.get("items", ())]
            return items if kind == "list" else tuple(items)
        if kind == "tensor":
            arr = self.array(node)
            t = Tensor._wrap(arr) if self.device == "cpu" else Tensor(arr, device=self.device)
            t.name = node.get("name")
            if node.get("requires_grad") and arr.dtype.kind == "f":
                t.requires_grad = True
            return t
        if kind == "array":
            arr = self.array(node)
            if node.get("device") == "cuda" and self.device == "cuda":
                arr = backend.to_device(arr, "cuda")
            return arr
        if kind == "scalar":
            return self.array(node)[()]
        if kind == "bytes":
            return self.array(node).tobytes()
        if kind == "float":
            if node.get("v") not in ("nan", "inf", "-inf"):
                raise self.bad(f"bad float value {node.get('v')!r}")
            return float(node["v"])
        if kind == "complex":
            return complex(self.decode(node.get("re")), self.decode(node.get("im")))
        raise self.bad(f"unknown node type {kind!r}")
