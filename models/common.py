"""Helpers shared by the training commands: data by name, evaluation, checkpoints, metrics.

Every function that can fail because of something the user asked for raises
``UsageError`` with a one-line message that names what was wrong and what is
expected, so a command-line front end can print it as is, without a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

import minigrad as mg
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


# ---------------------------------------------------------------------- files
def save_checkpoint(state: dict[str, Any], path: str) -> None:
    """Write ``state`` with ``mg.save``: atomic, so a crash mid-save keeps the old file."""
    mg.save(state, path)


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


def _write_text_atomic(path: str, text: str) -> None:
    # through a temporary file and a rename: a run killed mid-write leaves the old file
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_metrics(out_dir: str, records: Sequence[dict[str, Any]],
                  extra: dict[str, Any] | None = None) -> tuple[str, str]:
    """Write ``metrics.csv`` (one row per evaluation) and ``metrics.json`` into ``out_dir``.

    The JSON file holds ``{"records": [...], **extra}`` (e.g. the run's arguments
    and a summary). Returns the two paths.
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
    when matplotlib is not installed or there is nothing to draw.
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["DATASETS", "METRIC_FIELDS", "Subset", "UsageError", "evaluate",
           "load_checkpoint", "load_dataset", "plot_curves", "save_checkpoint", "write_metrics"]
