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
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from . import backend
from .errors import ArgumentTypeError, CheckpointError, MissingFileError
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
    arrays are copied to the host first. Raises ``mg.ArgumentTypeError`` (a
    ``TypeError``) naming the place in ``obj`` that holds something else (say, a module
    or a function), and ``mg.CheckpointError`` (a ``ValueError``) when ``obj`` contains
    itself. An ``OSError`` while writing (a full disk) leaves no temporary file behind.
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
            raise CheckpointError(f"save: {where} contains itself; a checkpoint must be a tree")
        active.add(id(obj))
        try:
            if isinstance(obj, dict):
                items = []
                for k, v in obj.items():
                    if not isinstance(k, (str, int, float, bool, tuple, type(None))):
                        raise ArgumentTypeError(f"save: {where} has a key of type "
                                                f"{type(k).__name__}; expected str, int, float, "
                                                "bool, None or a tuple")
                    items.append([_encode(k, arrays, f"{where} key {k!r}", active),
                                  _encode(v, arrays, f"{where}[{k!r}]", active)])
                return {"t": "dict", "items": items}
            kind = "list" if isinstance(obj, list) else "tuple"
            return {"t": kind, "items": [_encode(v, arrays, f"{where}[{i}]", active)
                                         for i, v in enumerate(obj)]}
        finally:
            active.discard(id(obj))
    raise ArgumentTypeError(f"save: cannot store {where}, a {type(obj).__module__}."
                            f"{type(obj).__qualname__}; expected Tensors, arrays, numbers, "
                            "strings, bools, None, or dicts/lists/tuples of them (save a "
                            "module's state_dict(), not the module)")


def _add(array: Any, arrays: list, where: str) -> str:
    host = np.asarray(backend.to_device(array, "cpu"))
    if host.dtype.hasobject:
        raise ArgumentTypeError(f"save: {where} is an array of Python objects (dtype "
                                f"{host.dtype}); only numeric, bool and string arrays can be "
                                "saved without pickle")
    arrays.append(host)
    return f"arr_{len(arrays) - 1}"


def _write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """Write one ``.npy`` entry into the archive (the same layout ``np.savez`` uses)."""
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def _atomic_write(path: str, entries: list, compression: int) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MissingFileError(f"save: cannot write {path!r}: the folder {folder!r} does not "
                                "exist; create it first (os.makedirs)")

    def write_zip(fh: BinaryIO) -> None:
        with zipfile.ZipFile(fh, "w", compression=compression) as zf:
            for name, array in entries:
                _write_array(zf, name, array)

    write_atomic(path, write_zip)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a new temporary file beside ``path``, then rename it over
    ``path``: a crash at any moment leaves the old file or the new one, never half of one.

    The data reaches the disk before the rename makes it live. If ``write`` (or the disk)
    fails, the temporary file, ``.<name>.<12 hex digits>.tmp``, is removed and the error
    raised. Every file minigrad writes (checkpoints, datasets, pictures) goes through here.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, like a plain open() would
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
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
#: Without ``max_bytes``, ``load`` accepts arrays that add up to this many bytes, or to
#: ``INFLATE_FACTOR`` times the file's size when that is more: an uncompressed
#: checkpoint of any size loads, while a small compressed file cannot inflate to
#: gigabytes (a "zip bomb").
MIN_LOAD_LIMIT = 256 * 2**20
INFLATE_FACTOR = 64
#: The longest ``.npy`` header ``load`` reads (NumPy's own default limit).
MAX_HEADER_BYTES = 10_000
#: Entry errors that mean "this file is damaged" (zipfile and zlib raise all of these
#: on bit flips: unknown compression methods, encryption flags, bad sizes, bad CRCs).
_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError,
           RecursionError, NotImplementedError, RuntimeError, ValueError, OverflowError,
           struct.error, UnicodeDecodeError)
#: dtype kinds ``save`` writes: bool, integers, floats, complex, bytes and text.
_KINDS = "biufcSU"


def load(path: PathLike, device: str | None = None, max_bytes: int | None = None) -> Any:
    """Read a checkpoint written by ``save``.

    Args:
        path: the ``.npz`` file.
        device: where Tensors go (``"cpu"`` when None). With ``device="cuda"``,
            arrays that were CuPy arrays when saved come back as CuPy arrays too;
            other arrays are NumPy arrays.
        max_bytes: the most bytes of array data to accept. None: 64 times the
            file's size or 256 MiB, whichever is more (``INFLATE_FACTOR``,
            ``MIN_LOAD_LIMIT``), so any uncompressed checkpoint loads but a small
            compressed one cannot expand to gigabytes. Pass a larger number for a
            compressed checkpoint of highly compressible data.

    Raises ``mg.CheckpointError`` (a ``ValueError``) naming the file when it is not a
    minigrad checkpoint, is truncated or damaged, declares arrays larger than the
    file can hold or than ``max_bytes``, or holds object arrays (which would need
    pickle: minigrad never unpickles anything). Every size is checked before memory
    is allocated. ``MissingFileError`` (a ``FileNotFoundError``) when there is no such
    file, and other ``OSError``s when it cannot be read at all.
    """
    path = os.fspath(path)
    dev = backend.check_device(device) if device is not None else "cpu"
    if not os.path.isfile(path):
        raise MissingFileError(f"load: no checkpoint file at {path!r}")
    size = os.path.getsize(path)
    limit = max(MIN_LOAD_LIMIT, INFLATE_FACTOR * size) if max_bytes is None else max_bytes
    with open(path, "rb") as fh:  # a permission problem is an OSError, not a bad file
        if not zipfile.is_zipfile(fh):
            raise CheckpointError(f"load: {path!r} is not a minigrad checkpoint: it is not an "
                                  f".npz (zip) archive{_what_is_it(path)}, or it was cut "
                                  "short. minigrad reads only files written by mg.save and "
                                  "never unpickles.")
        fh.seek(0)
        try:
            with zipfile.ZipFile(fh) as zf:
                reader = _Reader(zf, path, size, limit)
                header = _read_header(reader)
                return _Decoder(reader, dev).decode(header.get("tree"))
        except CheckpointError:
            raise
        except _DAMAGE as exc:
            raise CheckpointError(f"load: {path!r} is damaged or truncated "
                                  f"({type(exc).__name__}: {exc})") from None


def _read_header(reader: _Reader) -> dict:
    """The JSON description of the saved structure, checked for format and version."""
    path = reader.path
    if META + ".npy" not in reader.names:
        pickled = [n for n in reader.names if n.endswith(".pkl")]
        extra = (f"; it holds pickled data ({pickled[0]}), e.g. from torch.save, "
                 "which minigrad never loads") if pickled else ""
        shown = ", ".join(sorted(reader.names)[:5]) + (", ..." if len(reader.names) > 5 else "")
        raise CheckpointError(f"load: {path!r} is a zip/.npz archive but not a minigrad "
                              f"checkpoint (no {META} entry; entries: {shown}){extra}")
    meta = reader.array(META)
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise CheckpointError(f"load: {path!r}: the {META} entry is not JSON text")
    try:
        header = json.loads(meta.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"load: {path!r}: the {META} entry is not valid JSON "
                              f"({exc})") from None
    fmt = header.get("format") if isinstance(header, dict) else None
    if fmt != FORMAT:
        raise CheckpointError(f"load: {path!r} is not a minigrad checkpoint (its {META} "
                              f"entry has format {str(fmt)[:40]!r}, expected {FORMAT!r})")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise CheckpointError(f"load: {path!r} has checkpoint format version "
                              f"{str(version)[:40]}; this minigrad reads versions 1 to "
                              f"{VERSION} (a newer one needs a newer minigrad)")
    return header


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


class _Reader:
    """Reads ``.npy`` entries, checking every declared size before allocating.

    The ``.npy`` header's shape and dtype must match the zip entry's stated
    uncompressed size exactly; a stored (uncompressed) entry cannot be larger than
    the file; and all arrays together stay within ``limit`` bytes.
    """

    def __init__(self, zf: zipfile.ZipFile, path: str, size: int, limit: int) -> None:
        self.zf, self.path, self.size, self.limit = zf, path, size, limit
        self.names = set(zf.namelist())
        self.used = 0  # bytes of array data read so far

    def bad(self, what: str) -> CheckpointError:
        return CheckpointError(f"load: {self.path!r} is damaged: {what}")

    def array(self, name: str) -> np.ndarray:
        try:
            info = self.zf.getinfo(name + ".npy")
        except KeyError:
            raise self.bad(f"entry {name!r} is missing") from None
        self._check_entry(name, info)
        with self.zf.open(info) as f:
            dtype, shape, fortran, offset = self._npy_header(name, f)
            count = math.prod(shape)
            nbytes = count * dtype.itemsize
            if offset + nbytes != info.file_size:
                raise self.bad(f"entry {name!r} declares shape {shape} of {dtype} "
                               f"({nbytes} bytes), but the entry holds "
                               f"{info.file_size - offset} bytes of data")
            if self.used + nbytes > self.limit:
                raise CheckpointError(
                    f"load: {self.path!r}: its arrays hold more than {self.limit} bytes "
                    f"(entry {name!r} alone declares {nbytes} bytes in a file of "
                    f"{self.size} bytes); if the checkpoint is genuine, pass a larger "
                    "max_bytes= to mg.load")
            self.used += nbytes
            buf = bytearray(nbytes)
            if f.readinto(buf) != nbytes or f.read(1):  # reading to the end checks the CRC
                raise self.bad(f"entry {name!r} is not {nbytes} bytes of array data")
        arr = np.frombuffer(buf, dtype=dtype, count=count)
        return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)

    def _check_entry(self, name: str, info: zipfile.ZipInfo) -> None:
        if info.compress_size > self.size or (info.compress_type == zipfile.ZIP_STORED
                                              and info.file_size > self.size):
            raise self.bad(f"entry {name!r} declares {info.file_size} bytes, more than the "
                           f"file's {self.size}")

    def _npy_header(self, name: str, f: Any) -> tuple[np.dtype, tuple, bool, int]:
        """dtype, shape, Fortran order and data offset of one ``.npy`` entry."""
        fmt = np.lib.format
        try:
            version = fmt.read_magic(f)
        except ValueError as exc:
            raise self.bad(f"entry {name!r} is not a .npy array ({exc})") from None
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read is None:  # numpy writes 3.0 only for non-Latin-1 field names
            raise self.bad(f"entry {name!r} has .npy format version {version}; expected 1.0 "
                           "or 2.0")
        try:
            shape, fortran, dtype = read(f, max_header_size=MAX_HEADER_BYTES)
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object" in str(exc):
                raise self._pickle_error(name) from None
            raise self.bad(f"entry {name!r} has a bad .npy header ({exc})") from None
        if dtype.hasobject:
            raise self._pickle_error(name)
        if dtype.kind not in _KINDS or dtype.fields is not None or dtype.itemsize == 0 \
                and dtype.kind not in "SU":
            raise self.bad(f"entry {name!r} has dtype {dtype}; a checkpoint holds numbers, "
                           "bools and strings only")
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise self.bad(f"entry {name!r} has a bad shape {shape}")
        return dtype, tuple(shape), bool(fortran), f.tell()

    def _pickle_error(self, name: str) -> CheckpointError:
        return CheckpointError(f"load: {self.path!r}: entry {name!r} holds Python objects, "
                               "which would need pickle to load; minigrad refuses (is this "
                               "file from mg.save?)")


class _Decoder:
    """Rebuilds the saved structure from its JSON description and the stored arrays.

    Every node is checked for the types ``save`` writes, so a crafted header gives
    a ``CheckpointError`` rather than whatever Python would raise on the wrong type.
    """

    def __init__(self, reader: _Reader, device: str) -> None:
        self.reader, self.path, self.device = reader, reader.path, device

    def bad(self, what: str) -> CheckpointError:
        return self.reader.bad(what)

    def array(self, node: dict) -> np.ndarray:
        key = node.get("k")
        if not isinstance(key, str) or key + ".npy" not in self.reader.names or key == META:
            raise self.bad(f"it refers to a missing array entry {str(key)[:40]!r}")
        return self.reader.array(key)

    def items(self, node: dict) -> list:
        items = node.get("items", [])
        if not isinstance(items, list):
            raise self.bad(f"a {node['t']} node's items are a {type(items).__name__}, not a "
                           "list")
        return items

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or not isinstance(node.get("t"), str):
            raise self.bad(f"unexpected node {str(node)[:80]!r} in the structure")
        kind = node["t"]
        build = getattr(self, "_" + kind, None) if kind in _NODE_KINDS else None
        if build is None:
            raise self.bad(f"unknown node type {kind[:40]!r}")
        return build(node)

    def _dict(self, node: dict) -> dict:
        out = {}
        for pair in self.items(node):
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.bad("a dict entry is not a key/value pair")
            key = self.decode(pair[0])
            if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                raise self.bad(f"a dict key decodes to a {type(key).__name__}")
            try:
                hash(key)
            except TypeError:  # a tuple key holding a list
                raise self.bad(f"a dict key {str(key)[:40]} is not hashable") from None
            out[key] = self.decode(pair[1])
        return out

    def _list(self, node: dict) -> list:
        return [self.decode(v) for v in self.items(node)]

    def _tuple(self, node: dict) -> tuple:
        return tuple(self._list(node))

    def _tensor(self, node: dict) -> Tensor:
        arr = self.array(node)
        name, requires_grad = node.get("name"), node.get("requires_grad", False)
        if arr.dtype.kind not in "biuf" or not isinstance(name, (str, type(None))) \
                or not isinstance(requires_grad, bool):
            raise self.bad(f"a tensor node has dtype {arr.dtype}, name {str(name)[:40]!r} "
                           f"and requires_grad {str(requires_grad)[:10]}; expected a numeric "
                           "dtype, a string or null, and true/false")
        t = Tensor._wrap(arr) if self.device == "cpu" else Tensor(arr, device=self.device)
        t.name = name
        if requires_grad and arr.dtype.kind == "f":
            t.requires_grad = True
        return t

    def _array(self, node: dict) -> Any:
        arr = self.array(node)
        if node.get("device") == "cuda" and self.device == "cuda":
            arr = backend.to_device(arr, "cuda")
        return arr

    def _scalar(self, node: dict) -> Any:
        arr = self.array(node)
        if arr.ndim != 0:
            raise self.bad(f"a scalar node holds an array of shape {arr.shape}")
        return arr[()]

    def _bytes(self, node: dict) -> bytes:
        arr = self.array(node)
        if arr.dtype != np.uint8 or arr.ndim != 1:
            raise self.bad(f"a bytes node holds {arr.dtype} of shape {arr.shape}, not uint8 "
                           "of one axis")
        return arr.tobytes()

    def _float(self, node: dict) -> float:
        value = node.get("v")
        if value not in ("nan", "inf", "-inf"):
            raise self.bad(f"bad float value {str(value)[:40]!r}")
        return float(value)

    def _complex(self, node: dict) -> complex:
        parts = [self.decode(node.get(k)) for k in ("re", "im")]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in parts):
            raise self.bad("a complex number's parts are not real numbers")
        return complex(*parts)


#: The node types ``save`` writes (each built by ``_Decoder._<type>``).
_NODE_KINDS = ("dict", "list", "tuple", "tensor", "array", "scalar", "bytes", "float",
               "complex")
