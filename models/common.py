"""Helpers shared by the training commands: data by name, evaluation, checkpoints, metrics.

Every function that can fail because of something the user asked for raises
``UsageError`` with a one-line message that names what was wrong and what is
expected, so a command-line front end can print it as is, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import json
import math
import os
import re
import shutil
from collections.abc import Sequence
from typing import Any

try:
    import fcntl
except ImportError:  # Windows has no flock: runs there are not guarded against each other
    fcntl = None  # type: ignore[assignment]

import numpy as np

import minigrad as mg
from minigrad.io import write_atomic
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import DataLoader
from minigrad.data.datasets import MNIST, FashionMNIST

#: Command-line dataset names and their readers.
DATASETS: dict[str, type[MNIST]] = {"fashion-mnist": FashionMNIST, "mnist": MNIST}

#: Columns of ``metrics.csv``, in order (one row per evaluation).
METRIC_FIELDS = ("step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                 "elapsed_s")


class UsageError(Exception):
    """Something the user asked for cannot be done; the message is one line."""


class OutputError(UsageError):
    """A result could not be written (a full disk, no permission); the message is one line
    and names the file and the free space. Commands exit with status 1 for it."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage dump) raised as ``UsageError``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def number_arg(kind: type, what: str, minimum: float, inclusive: bool = True) -> Any:
    """An argparse ``type=``: parse ``kind`` and require ``value >= minimum`` (``>`` when
    not ``inclusive``); ``what`` says the bound in the message, e.g. ``"> 0"``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'} {what}, "
                f"got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (not inclusive and value == minimum):
            raise argparse.ArgumentTypeError(f"expected a number {what}, got {text}")
        return value
    return parse


# ---------------------------------------------------------------------- data
class Subset:
    """The first ``n`` examples of a dataset that has ``get_batch`` (MNIST and friends).

    Keeps ``get_batch``, so ``DataLoader`` still gathers a whole batch with one
    fancy-index instead of stacking examples one by one.
    """

    def __init__(self, dataset: Any, n: int) -> None:
        self.dataset, self.n = dataset, int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        if not -self.n <= index < self.n:
            raise IndexError(f"Subset: index {index} is out of range for {self.n} examples")
        return self.dataset[index % self.n]

    def get_batch(self, indices: np.ndarray) -> Any:
        return self.dataset.get_batch(indices)


def load_dataset(name: str, root: str | None = None, train: bool = True,
                 download: bool = False, subset: int | None = None) -> Any:
    """The training or test split of dataset ``name`` (see ``DATASETS``), maybe cut short.

    Args:
        name: ``"fashion-mnist"`` or ``"mnist"``.
        root: the folder holding the IDX files directly; None searches the usual
            places (``$MINIGRAD_DATA``, the cache folder, Debian's package folder).
        train: the training split, else the test split.
        download: fetch missing files (needs network access).
        subset: keep only the first ``subset`` examples.

    Raises ``UsageError`` (one line) when the name is unknown, the folder or its
    files are missing or damaged, or ``subset`` is larger than the split.
    """
    if name not in DATASETS:
        raise UsageError(f"--dataset {name!r} is unknown; expected one of {', '.join(DATASETS)}")
    if root is not None and not os.path.isdir(root):
        raise UsageError(f"--data-root {root!r} is not a folder; expected a folder holding the "
                         f"{name} IDX files")
    cls = DATASETS[name]
    try:
        dataset = cls(root=root, train=train, download=download)
    except FileNotFoundError:
        split = "train" if train else "t10k"
        wanted = f"{split}-images-idx3-ubyte[.gz] and {split}-labels-idx1-ubyte[.gz]"
        where = (f"--data-root {root!r} has no {name} IDX files" if root is not None
                 else f"cannot find the {name} IDX files in $MINIGRAD_DATA, "
                      f"{mg.data.datasets.cache_dir(name)} or the system folders")
        raise UsageError(f"{where}: expected {wanted}; pass --data-root DIR with those files"
                         + ("" if download else " (or --download to fetch them)")) from None
    except (ValueError, OSError) as exc:  # damaged or unreadable files
        message = " ".join(str(exc).split())
        raise UsageError(f"--dataset {name}: cannot read its files: {message}") from None
    if subset is not None:
        which = "--train-subset" if train else "--test-subset"
        if subset > len(dataset):
            raise UsageError(f"{which} {subset} is larger than the {len(dataset)} examples of "
                             f"{name}'s {'training' if train else 'test'} split")
        dataset = Subset(dataset, subset)
    return dataset


# ---------------------------------------------------------------------- evaluation
def evaluate(model: nn.Module, dataset: Any, batch_size: int = 256,
             device: str = "cpu") -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``dataset``.

    Runs in eval mode (BatchNorm uses its running statistics) and under
    ``mg.no_grad()`` (nothing is recorded on the tape), then restores the mode
    the model was in. Batches go in order, so the result is deterministic.
    """
    was_training = model.training
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    try:
        with mg.no_grad():
            for x, y in DataLoader(dataset, batch_size=batch_size, device=device):
                logits = model(x)
                n = len(y)
                # cross_entropy is a batch mean: weigh it by the batch size to average
                # over examples, since the last batch may be smaller
                total_loss += F.cross_entropy(logits, y).item() * n
                correct += int((logits.argmax(axis=1) == y).sum().item())
                seen += n
    finally:
        model.train(was_training)
    return total_loss / seen, correct / seen


# ---------------------------------------------------------------------- the output folder
#: The lock file a running command holds in its output folder.
LOCK_FILE = ".lock"
#: Names of the temporary files written next to the outputs and renamed over them (by
#: ``mg.save`` and ``_write_atomic``): ``.checkpoint.npz.3fa9c2d18b04.tmp``. A run killed
#: mid-write leaves one behind, as large as the file it was replacing.
_TEMP_FILE = re.compile(r"\.(checkpoint\.npz|metrics\.csv|metrics\.json|curves\.png)"
                        r"\.[0-9a-f]{8,}\.tmp")


class RunLock:
    """An exclusive lock on an output folder, held by one command for its whole run.

    ``acquire`` creates the folder if needed and takes an ``flock`` on ``LOCK_FILE``
    in it; a second command on the same folder gets ``UsageError`` at once. The kernel
    drops an flock when the process ends, however it ends (SIGKILL included), so a
    crashed run never leaves the folder locked. Holding the lock, ``acquire`` also
    deletes the temporary files that earlier, killed runs left (``_TEMP_FILE``): no
    other process can be writing them.
    """

    def __init__(self, out_dir: str, option: str = "--out") -> None:
        self.out_dir, self.option = out_dir, option
        self.path = os.path.join(out_dir, LOCK_FILE)
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> RunLock:
        self.created = not os.path.isdir(self.out_dir)
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(describe_write_error(exc, self.path)) from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                raise UsageError(f"{self.option} {self.out_dir!r} is in use by another run"
                                 + (f" (process {holder})" if holder.isdigit() else "")
                                 + f"; wait for it to finish, or choose another {self.option}"
                                 ) from None
        self.fd = fd
        with contextlib.suppress(OSError):  # who holds it, for the message above; a nicety
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        remove_stale_temp_files(self.out_dir)
        return self

    def release(self, failed: bool = False) -> None:
        """Let go of the lock; after a ``failed`` start, remove a folder it created empty."""
        if self.fd is None:
            return
        if failed and self.created:
            with contextlib.suppress(OSError):
                if os.listdir(self.out_dir) == [LOCK_FILE]:
                    os.unlink(self.path)
                    os.rmdir(self.out_dir)
        os.close(self.fd)  # closing the file drops the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.release(failed=kind is not None)


def remove_stale_temp_files(out_dir: str) -> list[str]:
    """Delete the temporary files killed saves left in ``out_dir``; returns their names.

    Call it only while holding the folder's ``RunLock``, when no save can be running.
    """
    removed = []
    for name in os.listdir(out_dir):
        if _TEMP_FILE.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(out_dir, name))
                removed.append(name)
    return removed


def describe_write_error(exc: OSError, path: str) -> str:
    """One line for a failed write: the file, the reason and the free space left there."""
    folder = os.path.dirname(os.path.abspath(path))
    reason = {errno.ENOSPC: "no space left on the device",
              errno.EDQUOT: "disk quota exceeded"}.get(exc.errno or 0,
                                                       exc.strerror or str(exc))
    try:
        free = f"{_size(shutil.disk_usage(folder).free)} free in {folder}"
    except OSError:
        free = "the free space is unknown"
    return f"cannot write {path}: {reason} ({free})"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ---------------------------------------------------------------------- files
def save_checkpoint(state: dict[str, Any], path: str) -> None:
    """Write ``state`` with ``mg.save``: atomic, so a crash mid-save keeps the old file.

    Raises ``OutputError`` (one line: the file, the reason, the free space) when the
    write fails, e.g. on a full disk; the previous checkpoint is then unchanged and no
    temporary file is left.
    """
    try:
        mg.save(state, path)
    except OSError as exc:
        raise OutputError(describe_write_error(exc, path)) from None


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; ``UsageError`` if it is unreadable."""
    try:
        state = mg.load(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the checkpoint {path}: {' '.join(str(exc).split())}"
                         ) from None
    if not isinstance(state, dict) or "args" not in state or "model" not in state:
        raise UsageError(f"{path} is a minigrad checkpoint but not one written by "
                         "python -m models.train")
    return state


def _write_atomic(path: str, write: Any) -> None:
    """``mg.io.write_atomic``: a run killed mid-write leaves the old file; a failed write
    (a full disk) leaves no temporary file and raises ``OutputError``."""
    try:
        write_atomic(path, write)
    except OSError as exc:
        raise OutputError(describe_write_error(exc, path)) from None


def _write_text_atomic(path: str, text: str) -> None:
    _write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_metrics(out_dir: str, records: Sequence[dict[str, Any]],
                  extra: dict[str, Any] | None = None) -> tuple[str, str]:
    """Write ``metrics.csv`` (one row per evaluation) and ``metrics.json`` into ``out_dir``.

    The JSON file holds ``{"records": [...], **extra}`` (e.g. the run's arguments
    and a summary). Returns the two paths. Each file is replaced atomically;
    ``OutputError`` when one cannot be written.
    """
    csv_path = os.path.join(out_dir, "metrics.csv")
    json_path = os.path.join(out_dir, "metrics.json")
    lines: list[str] = []

    class _Lines:  # csv.writer wants a file; collect its rows instead
        def write(self, s: str) -> None:
            lines.append(s)

    writer = csv.DictWriter(_Lines(), fieldnames=METRIC_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    _write_text_atomic(csv_path, "".join(lines))
    payload = {"records": list(records), **(extra or {})}
    _write_text_atomic(json_path, json.dumps(payload, indent=1, default=_json_default) + "\n")
    return csv_path, json_path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def plot_curves(records: Sequence[dict[str, Any]], path: str, title: str = "") -> str | None:
    """Draw the loss and accuracy curves against the epoch into the PNG file ``path``.

    Uses matplotlib's Agg backend (no display needed). Returns ``path``, or None
    when matplotlib is not installed or there is nothing to draw. The file is
    replaced atomically; ``OutputError`` when it cannot be written.
    """
    if not records:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(epochs, [r["train_loss"] for r in records], label="train (running mean)")
    ax_loss.plot(epochs, [r["test_loss"] for r in records], label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in records], label="train (running mean)")
    ax_acc.plot(epochs, [100 * r["test_acc"] for r in records], label="test")
    best = max(r["test_acc"] for r in records)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title=f"accuracy (best test {best:.2%})")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    try:
        _write_atomic(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    finally:
        plt.close(fig)
    return path


__all__ = ["DATASETS", "LOCK_FILE", "METRIC_FIELDS", "OutputError", "RunLock", "Subset",
           "UsageError", "describe_write_error", "evaluate", "load_checkpoint", "load_dataset",
           "plot_curves", "remove_stale_temp_files", "save_checkpoint", "write_metrics"]
