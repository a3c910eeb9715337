"""The Batch Normalization paper's MNIST experiment (Ioffe & Szegedy, 2015, section 4.1).

Two 784-100-100-100-10 sigmoid networks, one plain and one with BatchNorm before each
sigmoid, start from the same weights and see the same mini-batches (60 examples, plain
SGD) for 50,000 steps. Every ``--eval-every`` steps the run records

* the test accuracy on the whole test set (BN in evaluation mode: running statistics);
* the 15th, 50th and 85th percentiles of the input to sigmoid unit ``--unit`` of the last
  hidden layer, over a fixed set of test images (the first ``PROBE_IMAGES``). For the BN
  network that input is BN's output, with the batch statistics taken over those images
  (the normalization training uses), and the running statistics are left alone.
* with BN, the learned scale ``gamma`` and shift ``beta`` of the last BN layer: that
  sigmoid input is ``gamma * xhat + beta``, so they say how far BN lets it move.

The output folder gets the three panels of the paper's Figure 1 (accuracy, and the
percentiles without and with BN), the metrics as CSV and JSON, the paper's other claims
as measured experiments (``models.paper_claims``: a learning-rate sweep and a sweep of the
initial weight scale), BatchNorm's composed and fused graphs (forward and derivation, SVG)
and ``summary.md``, which states every claim beside the measured numbers::

    python -m models.paper_bn                      # Fashion-MNIST, 2 x 50,000 steps + claims
    python -m models.paper_bn --quick --out /tmp/q # a few hundred steps on a subset
    python -m models.paper_bn --dataset mnist --data-root ~/data/mnist --jobs 2

Independent trainings run in ``--jobs`` processes (one thread each); every run seeds its
own generator, so the numbers do not depend on how many jobs ran them.
"""

from __future__ import annotations

import os

# One BLAS thread per process: the runs are parallelised across processes instead, and
# a step of this small network gets no faster with more threads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import queue as queue_mod  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
import minigrad.nn.functional as F  # noqa: E402
from minigrad import nn  # noqa: E402
from minigrad.data import DataLoader, TensorDataset  # noqa: E402

from . import paper_claims as claims  # noqa: E402
from .common import (DATASETS, OneLineParser, RunLock, UsageError, evaluate,  # noqa: E402
                     number_arg)
from .nets import paper_mlp  # noqa: E402

PAPER_STEPS = 50_000
PAPER_BATCH = 60
#: Plain SGD's learning rate. The paper does not give one; see docs/paper-reproduction.md.
DEFAULT_LR = 0.5
DEFAULT_EVAL_EVERY = 500
#: The sigmoid of the last hidden layer whose input distribution is tracked.
DEFAULT_UNIT = 0
#: How many test images (the first ones) the percentiles are taken over.
PROBE_IMAGES = 1000
PERCENTILES = (15, 50, 85)
#: The steps of the accuracy table, for a 50,000-step run (scaled for shorter ones).
TABLE_STEPS = (5_000, 10_000, 20_000, 50_000)
#: What ``--quick`` changes: a few hundred steps on a subset, a few seconds in all.
QUICK = {"steps": 300, "eval_every": 50, "claim_steps": 150, "train_limit": 6000,
         "test_limit": 2000, "probe_images": 500}


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how much of it a run uses (None: all of it)."""

    dataset: str = "fashion-mnist"
    root: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    probe_images: int = PROBE_IMAGES


@dataclasses.dataclass
class Data:
    """What the runs read: the training set, the test set as arrays, the probe images."""

    train: Any           # an MNIST-style dataset, batched by DataLoader through get_batch
    test_x: np.ndarray   # (N, 784) float32 in [0, 1]
    test_y: np.ndarray   # (N,) int64
    probe_x: np.ndarray  # the first probe_images test images: where percentiles are taken


@functools.lru_cache(maxsize=2)
def load_data(spec: DataSpec) -> Data:
    """Read the IDX files once per process. With ``--data-root`` nothing is downloaded."""
    cls = DATASETS[spec.dataset]
    download = spec.root is None  # an explicit folder must already hold the files
    train = cls(spec.root, train=True, download=download)
    test = cls(spec.root, train=False, download=download)
    if spec.train_limit is not None:
        # get_batch reads these two arrays, so cutting them makes a smaller training set.
        train.images = train.images[: spec.train_limit]
        train.labels = train.labels[: spec.train_limit]
    n_test = len(test) if spec.test_limit is None else min(spec.test_limit, len(test))
    test_x = test.images[:n_test].reshape(n_test, -1).astype(np.float32) / np.float32(255)
    return Data(train, test_x, test.labels[:n_test], test_x[: spec.probe_images])


# ----------------------------------------------------------------------------- one run
@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run. Runs with equal specs give equal results, in any process."""

    bn: bool
    lr: float
    weight_scale: float
    steps: int
    eval_every: int
    seed: int = 0
    batch_size: int = PAPER_BATCH
    unit: int = DEFAULT_UNIT
    dropout: float = 0.0  # dropout probability after each hidden sigmoid (0: none)
    train_eval: int = 0   # at each record, also the accuracy on this many training images

    @property
    def name(self) -> str:
        net = "bn" if self.bn else "plain"
        extra = "" if self.batch_size == PAPER_BATCH else f" batch={self.batch_size}"
        extra += f" dropout={self.dropout:g}" if self.dropout else ""
        return f"{net} lr={self.lr:g} scale={self.weight_scale:g} steps={self.steps}{extra}"


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Inside, every BatchNorm normalizes with the statistics of the batch it is given
    (as in training) and leaves its running statistics alone."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    saved = [m.track_running_stats for m in bns]
    try:
        for m in bns:
            m.track_running_stats = False  # BN then uses the batch's statistics, updates nothing
        yield
    finally:
        for m, keep in zip(bns, saved):
            m.track_running_stats = keep


def last_sigmoid_inputs(model: nn.Sequential, images: np.ndarray) -> np.ndarray:
    """The input of each sigmoid of the last hidden layer, ``(len(images), width)``.

    With BN that input is BN's output, normalized with the statistics of ``images``
    themselves (see `batch_statistics`); the model's mode and buffers do not change.
    """
    last = None
    with mg.no_grad(), batch_statistics(model):
        h = mg.tensor(images)
        for layer in model:
            if isinstance(layer, nn.Sigmoid):
                last = h
            h = layer(h)
    if last is None:
        raise ValueError("last_sigmoid_inputs: the model has no nn.Sigmoid layer")
    return last.numpy()


def percentiles(values: np.ndarray, qs: Sequence[float] = PERCENTILES) -> np.ndarray:
    """The percentiles ``qs`` of each column of ``values``: shape ``(len(qs), columns)``."""
    return np.percentile(values, qs, axis=0)


def test_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, chunk: int = 2000) -> float:
    """Accuracy on ``(x, y)`` in evaluation mode (BN with its running statistics)."""
    return evaluate(model, TensorDataset(x, y), batch_size=chunk)[1]


def last_bn_parameters(model: nn.Module) -> tuple[list[float], list[float]] | None:
    """gamma and beta of the last BatchNorm layer (one value per unit), or None without BN."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    if not bns:
        return None
    return bns[-1].weight.numpy().tolist(), bns[-1].bias.numpy().tolist()


def train_run(spec: RunSpec, data_spec: DataSpec,
              progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Train one network as ``spec`` says; return its records as plain lists.

    Records are taken at step 0 and every ``eval_every`` steps (and at the last step):
    ``test_acc``, ``train_loss`` (the mean over the steps since the previous record),
    ``pct`` (percentiles x units of the last hidden layer's sigmoid inputs), with BN
    ``gamma`` and ``beta`` of the last BN layer, and with ``spec.train_eval`` the
    ``train_acc`` on the first that many training images (evaluation mode).
    A non-finite loss ends the run early; ``nonfinite_step`` says when.
    """
    data = load_data(data_spec)
    mg.manual_seed(spec.seed)  # the BN layers draw nothing: both networks get equal weights
    model = paper_mlp(bn=spec.bn, weight_scale=spec.weight_scale, dropout=spec.dropout)
    opt = mg.optim.SGD(model.parameters(), lr=spec.lr)
    # The shuffle depends on the seed only, so both networks see the same batches.
    loader = DataLoader(data.train, batch_size=spec.batch_size, shuffle=True, drop_last=True,
                        seed=spec.seed)
    out: dict[str, Any] = {"step": [], "test_acc": [], "train_loss": [], "pct": [],
                           "gamma": [], "beta": [], "train_acc": [], "nonfinite_step": None}
    if spec.train_eval:
        n = min(spec.train_eval, len(data.train))
        train_x = data.train.images[:n].reshape(n, -1).astype(np.float32) / np.float32(255)
        train_y = np.asarray(data.train.labels[:n])
    eval_seconds = 0.0

    def record(step: int, loss: float) -> None:
        nonlocal eval_seconds
        t = time.perf_counter()
        out["step"].append(step)
        out["test_acc"].append(test_accuracy(model, data.test_x, data.test_y))
        out["train_loss"].append(loss)
        out["pct"].append(percentiles(last_sigmoid_inputs(model, data.probe_x)).tolist())
        bn_params = last_bn_parameters(model)
        if bn_params is not None:
            out["gamma"].append(bn_params[0])
            out["beta"].append(bn_params[1])
        if spec.train_eval:
            out["train_acc"].append(test_accuracy(model, train_x, train_y))
        eval_seconds += time.perf_counter() - t

    record(0, math.nan)
    start = time.perf_counter()
    step, loss_sum, reported = 0, 0.0, 0
    while step < spec.steps and out["nonfinite_step"] is None:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            value = loss.item()
            if not math.isfinite(value):
                out["nonfinite_step"] = step
                break
            loss_sum += value
            if step % spec.eval_every == 0 or step == spec.steps:
                record(step, loss_sum / (step - out["step"][-1]))
                loss_sum = 0.0
            if progress is not None and (step % 100 == 0 or step == spec.steps):
                progress(step - reported)
                reported = step
            if step == spec.steps:
                break
    if progress is not None and spec.steps > reported:
        progress(spec.steps - reported)  # a run that ended early still fills its share
    total = time.perf_counter() - start
    out.update(spec=dataclasses.asdict(spec), name=spec.name, steps_done=step,
               train_seconds=total - eval_seconds, eval_seconds=eval_seconds)
    return out


# ----------------------------------------------------------------------------- many runs
_progress_queue: Any = None


def _init_worker(q: Any) -> None:
    global _progress_queue
    _progress_queue = q


def _worker_run(spec: RunSpec, data_spec: DataSpec) -> dict[str, Any]:
    return train_run(spec, data_spec, progress=_progress_queue.put)


def _finished_line(r: dict[str, Any]) -> str:
    rate = r["steps_done"] / max(r["train_seconds"], 1e-9)
    end = (f"non-finite loss at step {r['nonfinite_step']}" if r["nonfinite_step"]
           else f"test accuracy {r['test_acc'][-1]:.4f}")
    return (f"  done: {r['name']}: {r['steps_done']} steps in {r['train_seconds']:.1f} s "
            f"({rate:.0f} steps/s) + {r['eval_seconds']:.1f} s of evaluation; {end}")


def run_all(specs: Sequence[RunSpec], data_spec: DataSpec, jobs: int = 1,
            show: bool = True) -> list[dict[str, Any]]:
    """Train every spec, ``jobs`` at a time in separate processes; results in spec order.

    One progress bar counts the steps of all runs (steps/s over all processes); a line
    per finished run gives its own rate.
    """
    from tqdm import tqdm

    # BN steps cost about twice a plain one: start the longest runs first.
    order = sorted(range(len(specs)), key=lambda i: -specs[i].steps * (2 if specs[i].bn else 1))
    results: list[Any] = [None] * len(specs)
    bar = tqdm(total=sum(s.steps for s in specs), unit="step", desc="training",
               disable=not show, smoothing=0.1, mininterval=0.5, dynamic_ncols=True)
    try:
        if jobs <= 1:
            for i in order:
                results[i] = train_run(specs[i], data_spec, progress=bar.update)
                bar.write(_finished_line(results[i]))
            return results
        # spawn: a fresh interpreter per worker, safe whatever threads the parent runs.
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(q,)) as pool:
            futures = {pool.submit(_worker_run, specs[i], data_spec): i for i in order}
            pending = set(futures)
            while pending:
                with contextlib.suppress(queue_mod.Empty):
                    bar.update(q.get(timeout=0.2))
                    while True:
                        bar.update(q.get_nowait())
                for f in [f for f in pending if f.done()]:
                    pending.discard(f)
                    results[futures[f]] = f.result()
                    bar.write(_finished_line(results[futures[f]]))
        return results
    finally:
        bar.close()


# ----------------------------------------------------------------------------- outputs
def table_steps(steps: int, recorded: Sequence[int]) -> list[int]:
    """The paper's 5k/10k/20k/50k steps, scaled to a run of ``steps`` and each moved to
    the nearest recorded step after step 0 (repeats dropped)."""
    chosen: list[int] = []
    for t in TABLE_STEPS:
        target = t * steps / PAPER_STEPS
        at = min(recorded[1:] or recorded, key=lambda s: abs(s - target))
        if at not in chosen:
            chosen.append(at)
    return chosen


def drift(pct: np.ndarray, start: int, end: int) -> np.ndarray:
    """How far the percentiles moved between records ``start`` and ``end``, per unit:
    the mean over the tracked percentiles of ``|p[end] - p[start]|``."""
    return np.abs(pct[end] - pct[start]).mean(axis=0)


def jitter(pct: np.ndarray) -> np.ndarray:
    """How far the percentiles move from one record to the next, per unit: the mean over
    consecutive records and over the tracked percentiles of ``|p[k+1] - p[k]|``."""
    return np.abs(np.diff(pct, axis=0)).mean(axis=(0, 1))


def distribution_stats(run: dict[str, Any], unit: int) -> dict[str, Any]:
    """Start/end percentiles of ``unit``; its drift and the median drift over all units,
    over the whole run and over its second half; the same for the record-to-record jitter."""
    pct = np.asarray(run["pct"])  # (records, 3, units)
    steps = run["step"]
    last = len(steps) - 1
    half = max(i for i, s in enumerate(steps) if s <= steps[-1] / 2)
    whole, second, jit = drift(pct, 0, last), drift(pct, half, last), jitter(pct)
    return {"start": pct[0, :, unit].tolist(), "end": pct[last, :, unit].tolist(),
            "start_spread": float(pct[0, -1, unit] - pct[0, 0, unit]),
            "end_spread": float(pct[last, -1, unit] - pct[last, 0, unit]),
            "drift": float(whole[unit]), "drift_median_units": float(np.median(whole)),
            "half_step": steps[half], "drift_second_half": float(second[unit]),
            "drift_second_half_median_units": float(np.median(second)),
            "jitter": float(jit[unit]), "jitter_median_units": float(np.median(jit))}


def write_metrics(out: Path, runs: list[dict[str, Any]], unit: int) -> None:
    """``metrics.csv`` (one row per record of every run, tracked unit only),
    ``percentiles.npz`` (every unit of the two main runs)."""
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "bn", "lr", "weight_scale", "step", "test_acc", "train_loss",
                    *[f"p{q}" for q in PERCENTILES]])
        for r in runs:
            s = r["spec"]
            for k, step in enumerate(r["step"]):
                p = np.asarray(r["pct"][k])[:, unit]
                w.writerow([r["role"], int(s["bn"]), s["lr"], s["weight_scale"], step,
                            f"{r['test_acc'][k]:.4f}", f"{r['train_loss'][k]:.5f}",
                            *[f"{v:.5f}" for v in p]])
    main = [r for r in runs if r["role"] == "main"]
    np.savez_compressed(out / "percentiles.npz", percentiles=np.asarray(PERCENTILES),
                        **{("bn" if r["spec"]["bn"] else "plain") + "_steps": np.asarray(r["step"])
                           for r in main},
                        **{("bn" if r["spec"]["bn"] else "plain"): np.asarray(r["pct"])
                           for r in main})


def plot_figure1(out: Path, plain: dict[str, Any], bn: dict[str, Any], unit: int,
                 dataset: str) -> list[Path]:
    """The three panels of the paper's Figure 1, one PNG each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(4.2, 3.2), dpi=110)
    for r, style, label in ((plain, "--", "Without BN"), (bn, "-", "With BN")):
        ax.plot(r["step"], r["test_acc"], style, label=label, linewidth=1.3)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"(a) test accuracy, {dataset}", fontsize=10)
    accs = [a for r in (plain, bn) for a in r["test_acc"][1:] if math.isfinite(a)]
    if accs:
        ax.set_ylim(max(0.0, min(accs) - 0.02), min(1.0, max(accs) + 0.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(out / "fig1a_test_accuracy.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    both = np.concatenate([np.asarray(r["pct"])[:, :, unit].ravel() for r in (plain, bn)])
    pad = 0.05 * (both.max() - both.min() + 1e-9)
    ylim = (both.min() - pad, both.max() + pad)  # one scale, so that (b) and (c) compare
    for r, tag, title in ((plain, "b", "without BN"), (bn, "c", "with BN")):
        fig, ax = plt.subplots(figsize=(4.2, 3.2), dpi=110)
        pct = np.asarray(r["pct"])[:, :, unit]
        for j in range(len(PERCENTILES)):
            ax.plot(r["step"], pct[:, j], linewidth=1.3, color=("C0", "C3", "C0")[j],
                    linestyle=("--", "-", "--")[j],
                    label=("15th and 85th percentiles", "median", "_nolegend_")[j])
        ax.set_ylim(*ylim)
        ax.set_xlabel("training step")
        ax.set_ylabel("sigmoid input")
        ax.set_title(f"({tag}) last hidden layer, unit {unit}, {title}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        paths.append(out / f"fig1{tag}_sigmoid_input_{'bn' if r['spec']['bn'] else 'plain'}.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def draw_bn_graphs(folder: Path) -> tuple[list[Path], bool]:
    """BatchNorm's composed and fused graphs, forward and derivation, on a 4x3 batch.

    Returns the files and whether they are SVG (True) or DOT sources, written instead
    when Graphviz's ``dot`` program is missing.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files: list[Path] = []
    svg = True
    for impl in ("composed", "fused"):
        x = mg.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="x")
        gamma = mg.tensor(np.ones(3), requires_grad=True, name="gamma")
        beta = mg.tensor(np.zeros(3), requires_grad=True, name="beta")
        w = mg.tensor(rng.standard_normal((4, 3)), name="w")  # a fixed upstream weighting
        y = F.batch_norm(x, None, None, gamma, beta, training=True, impl=impl)
        loss = (y * w).sum()
        loss.name = "L"
        pictures = {
            "forward": mg.viz.draw_graph(loss, title=f"BatchNorm ({impl}): forward graph"),
            "derivation": mg.viz.draw_derivation(
                loss, [x, gamma, beta], title=f"BatchNorm ({impl}): forward and backward"),
        }
        for kind, graph in pictures.items():
            stem = folder / f"bn-{impl}-{kind}"
            if svg:
                try:
                    files.append(mg.viz.save(graph, stem.with_suffix(".svg")))
                    continue
                except mg.viz.GraphvizNotFoundError:
                    svg = False
            files.append(mg.viz.save(graph, stem.with_suffix(".dot")))
    return files, svg


def fmt_pct(values: Sequence[float]) -> str:
    return " / ".join(f"{v:+.2f}" for v in values)


def summary_text(cfg: dict[str, Any], plain: dict[str, Any], bn: dict[str, Any],
                 sweeps: dict[str, Any] | None, graphs_svg: bool, seconds: float) -> str:
    """``summary.md``: the setup, the accuracy table, the percentile spread, the claims."""
    unit = cfg["unit"]
    lines = [f"# Batch Normalization, section 4.1, reproduced with minigrad ({cfg['dataset']})",
             "",
             f"784-100-100-100-10 sigmoid MLP, plain SGD, learning rate {cfg['lr']:g}, "
             f"batch {cfg['batch_size']}, {cfg['steps']} steps, seed {cfg['seed']}, initial "
             f"weights N(0, (1/sqrt(fan_in))^2), biases 0; both networks start from the same "
             f"weights and see the same batches. Test set: {cfg['test_size']} images"
             + (f"; training set cut to {cfg['train_limit']}" if cfg["train_limit"] else "")
             + f". Wall time {seconds:.0f} s with {cfg['jobs']} job(s); summed over the "
             f"runs, {cfg['train_seconds']:.0f} s of training steps and "
             f"{cfg['eval_seconds']:.0f} s of evaluations.", "",
             "## Test accuracy", "", "| step | without BN | with BN |", "| ---: | ---: | ---: |"]
    acc_p, acc_b = dict(zip(plain["step"], plain["test_acc"])), dict(
        zip(bn["step"], bn["test_acc"]))
    for s in table_steps(cfg["steps"], bn["step"]):
        lines.append(f"| {s} | {acc_p.get(s, math.nan):.4f} | {acc_b.get(s, math.nan):.4f} |")
    dp, db = distribution_stats(plain, unit), distribution_stats(bn, unit)
    lines += ["", "## Input to a sigmoid of the last hidden layer", "",
              f"Unit {unit} of the last hidden layer; percentiles "
              f"{'/'.join(str(q) for q in PERCENTILES)} over the first {cfg['probe_images']} "
              "test images; BN normalizes with those images' own statistics (as in "
              "training). Drift: the mean over the three percentiles of |end - start|. "
              "Jitter: the mean over consecutive records (every "
              f"{cfg['eval_every']} steps) and the three percentiles of |change|.", "",
              "| | without BN | with BN |", "| --- | ---: | ---: |",
              f"| percentiles at step 0 | {fmt_pct(dp['start'])} | {fmt_pct(db['start'])} |",
              f"| percentiles at the end | {fmt_pct(dp['end'])} | {fmt_pct(db['end'])} |",
              f"| 15-85 spread, start -> end | {dp['start_spread']:.2f} -> {dp['end_spread']:.2f}"
              f" | {db['start_spread']:.2f} -> {db['end_spread']:.2f} |",
              f"| drift, whole run (unit {unit}) | {dp['drift']:.3f} | {db['drift']:.3f} |",
              f"| drift, whole run (median of all units) | {dp['drift_median_units']:.3f} | "
              f"{db['drift_median_units']:.3f} |",
              f"| drift, steps {dp['half_step']}-{cfg['steps']} (unit {unit}) | "
              f"{dp['drift_second_half']:.3f} | {db['drift_second_half']:.3f} |",
              f"| drift, steps {dp['half_step']}-{cfg['steps']} (median of all units) | "
              f"{dp['drift_second_half_median_units']:.3f} | "
              f"{db['drift_second_half_median_units']:.3f} |",
              f"| jitter (unit {unit}) | {dp['jitter']:.3f} | {db['jitter']:.3f} |",
              f"| jitter (median of all units) | {dp['jitter_median_units']:.3f} | "
              f"{db['jitter_median_units']:.3f} |", ""]
    lines += ["## The paper's claims, measured", ""]
    lines += claims.claim_lines(plain, bn, dp, db, sweeps)
    lines += ["", "## Files", "",
              "`fig1a_test_accuracy.png`, `fig1b_sigmoid_input_plain.png`, "
              "`fig1c_sigmoid_input_bn.png` (Figure 1), "
              + ("`claim_learning_rate.png`, `claim_weight_scale.png`, " if sweeps else "")
              + "`metrics.csv`, `metrics.json`, `percentiles.npz`, and in `graphs/` BatchNorm "
              "composed and fused, forward and derivation, "
              + ("as SVG." if graphs_svg else
                 "as DOT sources (Graphviz's `dot` was not found; `dot -Tsvg` renders them)."),
              ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    pos_int = number_arg(int, "> 0", 0, inclusive=False)
    pos_float = number_arg(float, "> 0", 0.0, inclusive=False)
    p = OneLineParser(prog="python -m models.paper_bn",
                      description="The Batch Normalization paper's MNIST experiment "
                                  "(section 4.1) and its other claims, measured.")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist")
    p.add_argument("--data-root", help="the folder holding the four IDX files (no download)")
    p.add_argument("--steps", type=pos_int, help=f"training steps (default {PAPER_STEPS})")
    p.add_argument("--batch-size", type=pos_int, default=PAPER_BATCH)
    p.add_argument("--lr", type=pos_float, default=DEFAULT_LR,
                   help=f"SGD learning rate of the main runs (default {DEFAULT_LR})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=pos_int,
                   help=f"steps between records (default {DEFAULT_EVAL_EVERY})")
    p.add_argument("--unit", type=int, default=DEFAULT_UNIT,
                   help="which sigmoid of the last hidden layer to track (0-99)")
    p.add_argument("--out", default="runs/paper_bn", help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="a few hundred steps on a subset: a check that takes seconds")
    p.add_argument("--jobs", type=pos_int, default=1,
                   help="trainings run in parallel processes")
    p.add_argument("--claims", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the learning-rate and weight-scale sweeps")
    p.add_argument("--claim-steps", type=pos_int,
                   help=f"steps of each sweep run (default {claims.CLAIM_STEPS})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.batch_size < 2:
        raise UsageError("--batch-size must be at least 2 (BatchNorm needs two examples)")
    if not 0 <= args.unit < 100:
        raise UsageError(f"--unit must be between 0 and 99, got {args.unit}")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise UsageError(f"--data-root {args.data_root}: no such folder")
    quick = QUICK if args.quick else {}
    args.steps = args.steps or quick.get("steps", PAPER_STEPS)
    args.eval_every = args.eval_every or quick.get("eval_every", DEFAULT_EVAL_EVERY)
    args.claim_steps = args.claim_steps or quick.get("claim_steps", claims.CLAIM_STEPS)
    return args


def run(args: argparse.Namespace) -> Path:
    """Everything the command does; returns the output folder."""
    t0 = time.perf_counter()
    quick = QUICK if args.quick else {}
    data_spec = DataSpec(args.dataset, args.data_root, quick.get("train_limit"),
                         quick.get("test_limit"), quick.get("probe_images", PROBE_IMAGES))
    try:
        data = load_data(data_spec)  # fail here, before any process starts
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0].rstrip(".")  # the reader's message has more lines
        where = f" in {args.data_root}" if args.data_root and "cannot find" in first else ""
        raise UsageError(f"{first}{where}") from None
    if len(data.train) < args.batch_size:
        raise UsageError(f"the training set has {len(data.train)} examples, fewer than "
                         f"--batch-size {args.batch_size}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: {exc.strerror or exc}") from None

    base = {"steps": args.steps, "eval_every": args.eval_every, "seed": args.seed,
            "batch_size": args.batch_size, "unit": args.unit}
    main_specs = [RunSpec(bn=b, lr=args.lr, weight_scale=1.0, **base) for b in (False, True)]
    sweep_specs = (claims.sweep_specs(args.lr, args.claim_steps, base, quick=args.quick)
                   if args.claims else {})
    specs = list(main_specs)
    for spec in (s for group in sweep_specs.values() for s in group):
        if spec not in specs:
            specs.append(spec)
    print(f"paper_bn: {len(specs)} training runs ({sum(s.steps for s in specs)} steps) on "
          f"{args.dataset}, {args.jobs} job(s); output in {out}/", flush=True)
    results = run_all(specs, data_spec, args.jobs, show=not args.no_progress)
    by_spec = dict(zip(specs, results))
    plain, bn = by_spec[main_specs[0]], by_spec[main_specs[1]]
    runs = [dict(plain, role="main"), dict(bn, role="main")]
    sweeps = None
    if args.claims:
        sweeps = {k: [by_spec[s] for s in group] for k, group in sweep_specs.items()}
        runs += [dict(r, role=f"sweep-{k}") for k, group in sweeps.items() for r in group]
    cfg = {"dataset": args.dataset, "data_root": args.data_root, "lr": args.lr,
           "batch_size": args.batch_size, "steps": args.steps, "eval_every": args.eval_every,
           "seed": args.seed, "unit": args.unit, "jobs": args.jobs, "quick": args.quick,
           "claim_steps": args.claim_steps if args.claims else None,
           "train_seconds": sum(r["train_seconds"] for r in results),
           "eval_seconds": sum(r["eval_seconds"] for r in results),
           "train_limit": data_spec.train_limit, "test_size": len(data.test_y),
           "probe_images": len(data.probe_x), "percentiles": list(PERCENTILES),
           "percentile_mode": "batch statistics of the probe images (BN), no running-stat "
                              "update", "weight_init": "N(0, (weight_scale/sqrt(fan_in))^2)"}

    write_metrics(out, runs, args.unit)
    plot_figure1(out, plain, bn, args.unit, args.dataset)
    if sweeps:
        claims.plot_sweeps(out, sweeps, args.claim_steps)
    graphs, svg = draw_bn_graphs(out / "graphs")
    seconds = time.perf_counter() - t0
    stats = {"plain": distribution_stats(plain, args.unit), "bn": distribution_stats(bn, args.unit)}
    slim = [{k: v for k, v in r.items() if k != "pct"}
            | {"unit_percentiles": [[p[j][args.unit] for j in range(len(PERCENTILES))]
                                    for p in r["pct"]]} for r in runs]
    with open(out / "metrics.json", "w") as f:
        json.dump({"config": cfg, "distribution": stats, "wall_seconds": seconds,
                   "runs": slim, "sweeps": claims.sweep_tables(sweeps) if sweeps else None,
                   "graphs": [g.name for g in graphs]}, f, indent=1, allow_nan=True)
    (out / "summary.md").write_text(summary_text(cfg, plain, bn, sweeps, svg, seconds))
    if not svg:
        print("paper_bn: Graphviz's `dot` was not found: wrote the graphs as .dot sources",
              file=sys.stderr)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        with RunLock(args.out):  # one command per folder; a killed one's lock goes with it
            out = run(args)
    except UsageError as exc:
        print(f"paper_bn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("paper_bn: interrupted", file=sys.stderr)
        return 130
    print(f"paper_bn: figures, metrics and summary in {out}/ (summary: {out / 'summary.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
