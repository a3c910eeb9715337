"""MNIST and Fashion-MNIST, read from the standard IDX files.

Both come as four files, gzipped or not::

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]   (60000 examples)
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]    (10000 examples)

``MNIST(root)`` reads them from the folder ``root``. Without ``root`` it looks,
in order, in ``$MINIGRAD_DATA/<name>``, ``$MINIGRAD_DATA``, the cache folder
``$XDG_CACHE_HOME/minigrad/<name>`` (``~/.cache/minigrad/<name>`` by default) and,
for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (where Debian's package
``dataset-fashion-mnist`` puts it). ``<name>`` is ``mnist`` or ``fashion-mnist``.
If none has the files and ``download=True``, they are downloaded into ``root``
(or the cache folder), checked against their published MD5 sums.

IDX format: two zero bytes, a type code (``0x08`` = uint8), the number of
dimensions, each dimension as a big-endian uint32, then the values row-major.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib

import numpy as np

from ..errors import DataFileError, MissingFileError
from ..io import write_atomic
from ..tensor import Tensor
from .dataset import Dataset

# type code -> dtype (multi-byte values are big-endian)
IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not, told apart by content) into a NumPy array.

    Raises ``ValueError`` naming the file when the magic number is wrong, the
    gzip stream is damaged, or the data is shorter or longer than the header says.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # the gzip magic number
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFileError(f"read_idx: {path}: the gzip data is damaged or truncated "
                                f"({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataFileError(f"read_idx: {path} is not an IDX file: bad magic number "
                            f"{raw[:4].hex() or '(empty file)'}; expected 0000 followed by a "
                            "type code (08 for uint8) and the number of dimensions")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DataFileError(f"read_idx: {path} is truncated: the header needs {start} bytes "
                            f"for {ndim} dimensions, the file has {len(raw)}")
    shape = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = IDX_TYPES[raw[2]]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - start != expected:
        raise DataFileError(f"read_idx: {path} has the wrong length: shape {shape} of "
                            f"{dtype.name} needs {expected} bytes of data, found "
                            f"{len(raw) - start} (truncated or corrupt file)")
    arr = np.frombuffer(raw, dtype=dtype, offset=start).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if dtype.itemsize > 1 else arr


def cache_dir(name: str) -> str:
    """``$XDG_CACHE_HOME/minigrad/<name>``, or ``~/.cache/minigrad/<name>``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minigrad", name)


class MNIST(Dataset):
    """The MNIST handwritten digits: 60000 training and 10000 test images, 28x28.

    Args:
        root: the folder holding the IDX files directly; None searches the usual
            places (see the module's doc).
        train: the training split (60000) or the test split (10000).
        download: when the files are nowhere, fetch them (needs network access).

    ``ds[i]`` is ``(image, label)``: a float32 Tensor of shape ``(1, 28, 28)``
    with values in ``[0, 1]`` and an int64 Tensor holding the class ``0..9``
    (a name is in ``ds.classes[label]``). The raw data stays in ``ds.images``
    (uint8, ``(N, 28, 28)``) and ``ds.labels`` (int64), and ``DataLoader``
    batches through ``get_batch`` with one slice of those arrays per batch.

    To fetch from elsewhere, set ``$MINIGRAD_MNIST_MIRROR`` to a base URL (or
    several, comma-separated) or change the class attribute ``mirrors``.
    """

    name = "mnist"
    mirrors: tuple[str, ...] = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                                "http://yann.lecun.com/exdb/mnist/")
    mirror_env = "MINIGRAD_MNIST_MIRROR"
    # the published MD5 sums of the gzipped files
    md5: dict[str, str] = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    system_dirs: tuple[str, ...] = ()
    timeout = 10.0  # seconds per download attempt
    classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True,
                 download: bool = True) -> None:
        self.train = bool(train)
        split = "train" if self.train else "t10k"
        self.files = (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte")
        self.root = self._locate(None if root is None else os.fspath(root), download)
        image_path, label_path = (self._path_in(self.root, f) for f in self.files)
        images = read_idx(image_path)
        labels = read_idx(label_path)
        cls = type(self).__name__
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataFileError(f"{cls}: {image_path} holds {images.dtype} of shape "
                                f"{images.shape}; expected uint8 images of shape "
                                "(N, 28, 28)")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataFileError(f"{cls}: {label_path} holds {labels.dtype} of shape "
                                f"{labels.shape}; expected uint8 labels of shape (N,)")
        if len(images) != len(labels):
            raise DataFileError(f"{cls}: {image_path} has {len(images)} images but "
                                f"{label_path} has {len(labels)} labels; expected one "
                                "label per image")
        if labels.size and labels.max() >= len(self.classes):
            raise DataFileError(f"{cls}: {label_path} has label {int(labels.max())}; "
                                f"expected 0..{len(self.classes) - 1}")
        self.images = images
        self.labels = labels.astype(np.int64)

    # ------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index].astype(np.float32).reshape(1, 28, 28) / np.float32(255)
        return Tensor._wrap(image), Tensor._wrap(np.asarray(self.labels[index]))

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images ``(B, 1, 28, 28)`` float32 in [0, 1] and labels ``(B,)`` int64."""
        images = self.images[indices].astype(np.float32) / np.float32(255)
        return images.reshape(len(images), 1, 28, 28), self.labels[indices]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({'train' if self.train else 'test'}, "
                f"{len(self)} examples, root={self.root!r})")

    # ------------------------------------------------------------ finding files
    @staticmethod
    def _path_in(folder: str, base: str) -> str | None:
        for candidate in (base, base + ".gz"):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
        return None

    def search_dirs(self, root: str | None) -> list[str]:
        """The folders looked in, in order, for ``root`` (None: the usual places)."""
        if root is not None:
            return [root]
        dirs = []
        env = os.environ.get("MINIGRAD_DATA")
        if env:
            dirs += [os.path.join(env, self.name), env]
        dirs.append(cache_dir(self.name))
        dirs += list(self.system_dirs)
        return dirs

    def _locate(self, root: str | None, download: bool) -> str:
        dirs = self.search_dirs(root)
        for folder in dirs:
            if all(self._path_in(folder, f) for f in self.files):
                return folder
        target = root if root is not None else cache_dir(self.name)
        failures: list[str] = []
        if download:
            failures = self._download(target)
            if not failures:
                return target
        raise MissingFileError(self._not_found(dirs, target, download, failures))

    def _mirror_list(self) -> list[str]:
        env = os.environ.get(self.mirror_env, "")
        mirrors = [m.strip() for m in env.split(",") if m.strip()] or list(self.mirrors)
        return [m if m.endswith("/") else m + "/" for m in mirrors]

    def _download(self, folder: str) -> list[str]:
        """Fetch the split's two files into ``folder``; return what went wrong, if anything."""
        from urllib.request import urlopen  # only a download needs it

        failures = []
        for base in self.files:
            if self._path_in(folder, base):
                continue
            fname = base + ".gz"
            expected = self.md5[fname]
            for mirror in self._mirror_list():
                url = mirror + fname
                try:
                    with urlopen(url, timeout=self.timeout) as response:
                        payload = response.read()
                except Exception as exc:  # any network failure: try the next mirror
                    failures.append(f"{url}: {type(exc).__name__}: {exc}")
                    continue
                got = hashlib.md5(payload, usedforsecurity=False).hexdigest()
                if got != expected:
                    failures.append(f"{url}: checksum mismatch (MD5 {got}, expected "
                                    f"{expected}); the file was not kept")
                    continue
                _write_atomic(os.path.join(folder, fname), payload)
                break
            else:
                return failures
        return []

    def _not_found(self, dirs: list[str], target: str, download: bool,
                   failures: list[str]) -> str:
        cls = type(self).__name__
        wanted = ", ".join(f"{f}[.gz]" for f in self.files)
        lines = [f"{cls}: cannot find the {'training' if self.train else 'test'} files "
                 f"({wanted}).", "Looked in:"]
        lines += [f"  {d}" + ("" if os.path.isdir(d) else "  (no such folder)") for d in dirs]
        if download:
            lines.append(f"Downloading into {target} failed:")
            lines += [f"  {f}" for f in failures]
        else:
            lines.append("download=False, so nothing was downloaded.")
        lines.append("To get the data, any of:")
        lines += [f"  - {way}" for way in self._ways_to_get(target)]
        return "\n".join(lines)

    def _ways_to_get(self, target: str) -> list[str]:
        mirror = self._mirror_list()[0]
        return [f"download the .gz files from {mirror} into a folder, then pass root=<folder> "
                f"or set MINIGRAD_DATA=<folder>",
                f"{type(self).__name__}(download=True) where the network is reachable "
                f"(it saves into {target})"]


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): 28x28 grey images of 10 kinds of clothing.

    A drop-in replacement for MNIST with the same file names and sizes. Also found
    in ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``);
    the download mirror can be set with ``$MINIGRAD_FASHION_MNIST_MIRROR``.
    """

    name = "fashion-mnist"
    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    mirror_env = "MINIGRAD_FASHION_MNIST_MIRROR"
    md5 = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    system_dirs = ("/usr/share/datasets/fashion-mnist",)
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    def _ways_to_get(self, target: str) -> list[str]:
        return ["apt-get install dataset-fashion-mnist (Debian/Ubuntu; installs into "
                "/usr/share/datasets/fashion-mnist)", *super()._ways_to_get(target)]


def _write_atomic(path: str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` (creating its folder) so that no half file is left."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, lambda f: f.write(payload))


__all__ = ["MNIST", "FashionMNIST", "cache_dir", "read_idx"]
