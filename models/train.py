"""Train a reference network on (Fashion-)MNIST: ``python -m models.train``.

Run from the repository root, for example::

    python -m models.train --model mlp-bn                       # the paper's MLP, 50,000 steps
    python -m models.train --model cnn-bn --epochs 10           # the BN CNN
    python -m models.train --model cnn-bn --out runs/cnn --resume   # carry on after a stop
    mpiexec -n 2 python -m models.train --distributed --model mlp-bn   # on two processes

What a run does:

* trains with a tqdm progress bar (live loss, steps/s, examples/s);
* evaluates test loss and accuracy every epoch (or every K steps with ``--eval-every K``),
  in eval mode under ``mg.no_grad()``;
* writes ``metrics.csv`` / ``metrics.json`` and, at the end, ``curves.png`` into ``--out``;
* saves ``checkpoint.npz`` (model, optimiser, schedule, step, DataLoader position,
  minigrad's RNG state, metrics, arguments) at every evaluation, and on Ctrl-C, after
  which it exits with status 130.

``--resume`` continues from ``checkpoint.npz`` exactly: the resumed run reaches bit for
bit the weights and metrics (wall times aside) of a run that was never stopped. That
holds because everything a step depends on is in the checkpoint: the order of the
batches depends only on the seed and the epoch, the schedule is a closed form of the
step, and the loss sums that make the logged training loss are saved with the weights.

``--distributed`` trains data-parallel on the processes of ``mpiexec -n N`` (MPI; NCCL with
``--device cuda``, one GPU per process; ``pip install minigrad[mpi]``): ``--batch-size``
stays the batch of one step, split evenly between the ranks by a ``DistributedSampler``;
BatchNorm layers become ``SyncBatchNorm`` (statistics of the whole batch) and gradients
are averaged, so the run follows the one-process run up to rounding. Rank 0 evaluates
and writes every file; ``--resume`` needs the same number of processes.

Per-model defaults (``DEFAULTS``): the MLPs train as in the Batch Normalization paper
(batch 60, plain SGD, 50,000 steps); the CNNs use SGD with momentum, weight decay and a
cosine learning-rate schedule for 10 epochs.

Bad arguments, missing data and a second run on the same ``--out`` (the folder is locked
while a run uses it) end the command with one line on stderr and exit status 2; a file
that cannot be written (a full disk) ends it with one line naming the file and the free
space, and status 1, keeping the last good checkpoint. Temporary files left by a killed
save are removed by the next run in the folder.

The environment variable ``MINIGRAD_TRAIN_SELF_SIGNAL=KILL@17`` (or ``INT@17``) makes the
process send itself that signal after step 17; the tests use it to stop a run at an exact
step.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad import nn
from minigrad.data import DataLoader, DistributedSampler
from minigrad.distributed import DataParallel

from . import nets
from .common import (DATASETS, OneLineParser, OutputError, RunLock, UsageError, evaluate,
                     load_checkpoint, load_dataset, number_arg, plot_curves, save_checkpoint,
                     write_metrics)

CHECKPOINT = "checkpoint.npz"
SELF_SIGNAL_ENV = "MINIGRAD_TRAIN_SELF_SIGNAL"

_MLP = {"batch_size": 60, "optimizer": "sgd", "lr": 0.5, "momentum": 0.0,
        "weight_decay": 0.0, "schedule": "constant", "steps": 50_000}
_CNN = {"batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
        "weight_decay": 5e-4, "schedule": "cosine", "epochs": 10}
#: What an option left out means, per model (``lr`` for Adam is ``ADAM_LR`` instead).
DEFAULTS: dict[str, dict[str, Any]] = {"mlp": _MLP, "mlp-bn": _MLP, "cnn": _CNN, "cnn-bn": _CNN}
ADAM_LR = 1e-3

#: The options that fix a run's numbers: ``--resume`` refuses a different value.
DEFINING = ("model", "dataset", "batch_size", "lr", "optimizer", "momentum", "weight_decay",
            "schedule", "bn_impl", "seed", "epochs", "steps", "eval_every", "train_subset",
            "test_subset")


# ---------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    """The command line (options left as None take the model's default or the saved run's)."""
    per_model = "\n".join(
        f"  {name:7s} " + ", ".join(f"{_flag(k)} {v}" for k, v in d.items())
        for name, d in DEFAULTS.items())
    p = OneLineParser(prog="python -m models.train",
                      description="Train a minigrad reference network on (Fashion-)MNIST.",
                      epilog=f"defaults per model (Adam's --lr defaults to {ADAM_LR}):"
                             f"\n{per_model}",
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=list(nets.MODELS), help="which network (models.nets)")
    p.add_argument("--dataset", choices=list(DATASETS), help="default: fashion-mnist")
    p.add_argument("--data-root", metavar="DIR",
                   help="folder holding the IDX files (default: the usual places)")
    p.add_argument("--download", action="store_true", help="fetch missing dataset files")
    p.add_argument("--epochs", type=number_arg(int, ">= 1", 1), metavar="N",
                   help="train this many epochs")
    p.add_argument("--steps", type=number_arg(int, ">= 1", 1), metavar="N",
                   help="or this many steps")
    p.add_argument("--batch-size", type=number_arg(int, ">= 1", 1), metavar="N")
    p.add_argument("--lr", type=number_arg(float, "> 0", 0.0, inclusive=False),
                   help="learning rate")
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--momentum", type=number_arg(float, ">= 0", 0.0), metavar="M",
                   help="SGD momentum")
    p.add_argument("--weight-decay", type=number_arg(float, ">= 0", 0.0), metavar="W",
                   help="L2 penalty")
    p.add_argument("--schedule", choices=["constant", "cosine"],
                   help="learning rate over the run: constant, or a cosine down to 0")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bn-impl", choices=["fused", "composed"],
                   help="BatchNorm as one fused op or composed from primitives (default fused)")
    p.add_argument("--seed", type=number_arg(int, ">= 0", 0), metavar="N", help="default 0")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<model>-<dataset>-seed<seed>)")
    p.add_argument("--eval-every", type=number_arg(int, ">= 1", 1), metavar="K",
                   help="evaluate (and checkpoint) every K steps instead of every epoch")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out (options left out keep saved values)")
    p.add_argument("--train-subset", type=number_arg(int, ">= 1", 1), metavar="N",
                   help="train on the first N training examples only")
    p.add_argument("--test-subset", type=number_arg(int, ">= 1", 1), metavar="N",
                   help="evaluate on the first N test examples only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes of mpiexec -n N (--batch-size is "
                        "split between them)")
    return p


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(value: Any) -> str:
    return "(not set)" if value is None else str(value)


def resolve(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill the options left out: from the saved run when resuming, else the model's defaults.

    Raises ``UsageError`` when a resumed run is given a different defining option, or
    when the options contradict each other.
    """
    given = {k: getattr(args, k) for k in DEFINING}
    if saved is not None:
        for key in DEFINING:
            if key in ("epochs", "steps") and (given["epochs"] or given["steps"]):
                continue  # the run's length is compared as a whole below
            if given[key] is not None and given[key] != saved.get(key):
                raise UsageError(
                    f"--resume: the run in {args.out} was made with {_flag(key)} "
                    f"{_show(saved.get(key))}, not {given[key]}; these options define a run, "
                    "so leave them out (or pick another --out for a new run)")
        if (given["epochs"] or given["steps"]) and \
                (given["epochs"], given["steps"]) != (saved["epochs"], saved["steps"]):
            was = (f"--epochs {saved['epochs']}" if saved["epochs"] is not None
                   else f"--steps {saved['steps']}")
            now = (f"--epochs {given['epochs']}" if given["epochs"] is not None
                   else f"--steps {given['steps']}")
            raise UsageError(f"--resume: the run in {args.out} was made with {was}, not {now}; "
                             "a different length would change the learning-rate schedule")
        return {k: saved.get(k) for k in DEFINING}

    if args.model is None:
        raise UsageError("--model is required: one of " + ", ".join(nets.MODELS))
    if given["epochs"] is not None and given["steps"] is not None:
        raise UsageError("give either --epochs N or --steps N, not both")
    defaults = DEFAULTS[args.model]
    cfg = dict(given)
    for key in ("batch_size", "optimizer", "weight_decay", "schedule"):
        if cfg[key] is None:
            cfg[key] = defaults[key]
    if cfg["optimizer"] == "adam":
        if cfg["momentum"] is not None:
            raise UsageError("--momentum applies to --optimizer sgd only; Adam has its own "
                             "moment estimates")
        if cfg["lr"] is None:
            cfg["lr"] = ADAM_LR
    else:
        if cfg["momentum"] is None:
            cfg["momentum"] = defaults["momentum"]
        if cfg["momentum"] >= 1:
            raise UsageError(f"--momentum must be in [0, 1), got {cfg['momentum']}")
        if cfg["lr"] is None:
            cfg["lr"] = defaults["lr"]
    if cfg["epochs"] is None and cfg["steps"] is None:
        cfg["epochs"], cfg["steps"] = defaults.get("epochs"), defaults.get("steps")
    cfg["dataset"] = cfg["dataset"] or "fashion-mnist"
    cfg["bn_impl"] = cfg["bn_impl"] or "fused"
    cfg["seed"] = 0 if cfg["seed"] is None else cfg["seed"]
    return cfg


# ---------------------------------------------------------------------- the run
@dataclass
class Progress:
    """What the loop carries from step to step (all of it goes into the checkpoint)."""

    step: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    loss_sum: float = 0.0     # training loss summed since the last evaluation
    correct: int = 0          # training predictions that were right, since then
    seen: int = 0             # training examples since then
    steps_since: int = 0      # steps since then
    elapsed: float = 0.0      # wall seconds of every session of this run
    train_seconds: float = 0.0  # seconds inside training steps (no evaluation, no saving)


class _Interrupt:
    """A SIGINT handler: the first Ctrl-C asks the loop to stop after the current step
    (so the checkpoint is consistent); a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _Interrupt:
        self._previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _self_signal() -> tuple[int, int] | None:
    """Parse ``MINIGRAD_TRAIN_SELF_SIGNAL`` (``KILL@17``): (signal, step), test use only."""
    spec = os.environ.get(SELF_SIGNAL_ENV)
    if not spec:
        return None
    name, _, at = spec.partition("@")
    try:
        return int(getattr(signal, "SIG" + name.upper())), int(at)
    except (AttributeError, ValueError):
        raise UsageError(f"{SELF_SIGNAL_ENV}={spec!r}: expected NAME@STEP, e.g. KILL@17"
                         ) from None


def _make_optimizer(cfg: dict[str, Any], params: Any) -> mg.optim.Optimizer:
    if cfg["optimizer"] == "adam":
        return mg.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    return mg.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                        weight_decay=cfg["weight_decay"])


def _progress_bar(total: int, initial: int, disable: bool) -> Any:
    if disable:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                smoothing=0.1)


def _say(bar: Any, text: str) -> None:
    """Print a line without breaking the progress bar."""
    if bar is not None:
        bar.write(text)
    else:
        print(text, flush=True)


def _settle_out(args: argparse.Namespace) -> str:
    """Fill in ``--out`` when it was left out; refuse a file. Returns the folder."""
    if args.out is None:
        if args.model is None and args.resume:
            raise UsageError("--resume needs --out DIR, the folder of the run to continue "
                             "(or the --model, --dataset and --seed that name its default)")
        if args.model is None:
            raise UsageError("--model is required: one of " + ", ".join(nets.MODELS))
        args.out = os.path.join(
            "runs", f"{args.model}-{args.dataset or 'fashion-mnist'}-seed{args.seed or 0}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out!r} is a file; expected a folder (it is created "
                         "if missing)")
    return args.out


def _open_run(args: argparse.Namespace) -> tuple[str, dict[str, Any] | None]:
    """Read the checkpoint to resume; refuse to overwrite a run."""
    _settle_out(args)
    ckpt_path = os.path.join(args.out, CHECKPOINT)
    if args.resume:
        if not os.path.isfile(ckpt_path):
            raise UsageError(f"--resume: there is no {CHECKPOINT} in {args.out!r} to continue "
                             "from; run without --resume to start")
        return ckpt_path, load_checkpoint(ckpt_path)
    if os.path.isfile(ckpt_path):
        raise UsageError(f"{args.out!r} already holds a run ({CHECKPOINT}); pass --resume to "
                         "continue it, or choose another --out")
    return ckpt_path, None


class Trainer:
    """One run: data, model, optimiser, schedule and ``Progress``, built or restored."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.start = time.perf_counter()
        self.args = args
        self.ckpt_path, saved = _open_run(args)
        cfg = self.cfg = resolve(args, None if saved is None else saved["args"])
        if args.device == "cuda" and not mg.cuda_available():
            raise UsageError("--device cuda needs CuPy and a CUDA GPU, and none is usable "
                             "here; install cupy-cuda12x (pip install minigrad[cuda12]) or use "
                             "--device cpu")
        self.hook = _self_signal()
        self.comm = _join_world(args, cfg["batch_size"]) if args.distributed else None
        self.rank = 0 if self.comm is None else self.comm.rank
        world = 1 if self.comm is None else self.comm.size
        if saved is not None and saved["args"].get("world_size", 1) != world:
            raise UsageError(f"--resume: the run in {args.out} was made with "
                             f"{saved['args'].get('world_size', 1)} process(es), not {world}; "
                             "resume it with the same mpiexec -n")
        cfg["world_size"] = world

        self.train_set = load_dataset(cfg["dataset"], args.data_root, train=True,
                                      download=args.download, subset=cfg["train_subset"])
        self.test_set = load_dataset(cfg["dataset"], args.data_root, train=False,
                                     download=args.download, subset=cfg["test_subset"])
        if len(self.train_set) < cfg["batch_size"]:
            raise UsageError(f"--batch-size {cfg['batch_size']} is larger than the "
                             f"{len(self.train_set)} training examples; an epoch needs one "
                             "full batch")
        # Full batches only: a last batch of one example would break BatchNorm's
        # statistics, and equal batches make every epoch the same number of steps. The
        # order is new every epoch, so each example still takes part.
        if self.comm is None:
            self.loader = DataLoader(self.train_set, batch_size=cfg["batch_size"], shuffle=True,
                                     drop_last=True, seed=cfg["seed"], device=args.device)
        else:  # the same order as above, each rank taking every world-th example of it
            sampler = DistributedSampler(self.train_set, seed=cfg["seed"], drop_last=True)
            self.loader = DataLoader(self.train_set, batch_size=cfg["batch_size"] // world,
                                     drop_last=True, sampler=sampler, device=args.device)
        self.steps_per_epoch = len(self.loader)
        self.total = (cfg["steps"] if cfg["steps"] is not None
                      else cfg["epochs"] * self.steps_per_epoch)
        self.eval_every = cfg["eval_every"] or self.steps_per_epoch

        mg.manual_seed(cfg["seed"])  # the initial weights
        self.model = nets.build(cfg["model"], bn_impl=cfg["bn_impl"])
        if self.comm is not None:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if saved is not None:
            self.model.load_state_dict(saved["model"])
        self.model.to(args.device)
        # rank 0's weights everywhere; sync_gradients() averages the gradients
        self.parallel = None if self.comm is None else DataParallel(self.model, self.comm)
        self.opt = _make_optimizer(cfg, self.model.parameters())
        # the schedule runs per step, over the whole run
        self.sched = (mg.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=self.total)
                      if cfg["schedule"] == "cosine" else None)
        self.state = Progress()
        if saved is not None:
            self.opt.load_state_dict(saved["optimizer"])
            if self.sched is not None:
                self.sched.load_state_dict(saved["scheduler"])
            self.loader.load_state_dict(saved["loader"])
            mg.random.set_state(saved["rng"])
            self.state = Progress(**saved["progress"])
        os.makedirs(args.out, exist_ok=True)
        self.title = (f"{cfg['model']} on {cfg['dataset']}, batch {cfg['batch_size']}, "
                      f"{cfg['optimizer']} lr {cfg['lr']:g}")

    # ------------------------------------------------------------ records and files
    def tick(self) -> None:
        """Add the wall time since the last tick to the run's total (kept across resumes)."""
        now = time.perf_counter()
        self.state.elapsed += now - self.start
        self.start = now

    def checkpoint(self) -> None:
        try:
            save_checkpoint({"args": self.cfg, "model": self.model.state_dict(),
                             "optimizer": self.opt.state_dict(),
                             "scheduler": (None if self.sched is None
                                           else self.sched.state_dict()),
                             "loader": self.loader.state_dict(), "rng": mg.random.get_state(),
                             "progress": vars(self.state)}, self.ckpt_path)
        except OutputError as exc:
            kept = (f"the last good checkpoint, {self.ckpt_path}, is kept; free some space, "
                    "then continue with --resume" if os.path.isfile(self.ckpt_path)
                    else "no checkpoint was saved yet")
            raise OutputError(f"{exc} at step {self.state.step}; {kept}") from None

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` holds besides the records."""
        st = self.state
        last = st.records[-1] if st.records else {}
        return {"args": {**self.cfg, "device": self.args.device,
                         "data_root": self.args.data_root},
                "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total,
                "step": st.step, "final_test_acc": last.get("test_acc"),
                "final_test_loss": last.get("test_loss"),
                "best_test_acc": max((r["test_acc"] for r in st.records), default=None),
                "wall_seconds": round(st.elapsed, 3), "train_seconds": round(st.train_seconds, 3),
                "steps_per_second": (round(st.step / st.train_seconds, 3)
                                     if st.train_seconds else None)}

    def evaluation(self) -> dict[str, Any]:
        """Evaluate, append a record, save the checkpoint and the metrics."""
        st = self.state
        test_loss, test_acc = evaluate(self.model, self.test_set, device=self.args.device)
        rec = {"step": st.step, "epoch": round(st.step / self.steps_per_epoch, 4),
               "lr": self.opt.param_groups[0]["lr"],
               "train_loss": st.loss_sum / max(st.steps_since, 1),
               "train_acc": st.correct / max(st.seen, 1),
               "test_loss": test_loss, "test_acc": test_acc}
        st.loss_sum, st.correct, st.seen, st.steps_since = 0.0, 0, 0, 0
        self.tick()
        rec["elapsed_s"] = round(st.elapsed, 3)
        st.records.append(rec)
        self.checkpoint()
        write_metrics(self.args.out, st.records, self.summary())
        return rec

    # ------------------------------------------------------------ training
    def step(self, x: mg.Tensor, y: mg.Tensor) -> tuple[float, int]:
        """One optimisation step; returns the batch's loss and correct predictions."""
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.opt.zero_grad()
        loss.backward()
        if self.parallel is not None:
            self.parallel.sync_gradients()
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        return loss.item(), int((logits.argmax(axis=1) == y).sum().item())

    def train(self, interrupt: _Interrupt, bar: Any) -> tuple[int, float]:
        """Train until the end or a Ctrl-C; returns this session's steps and their seconds."""
        st, batch = self.state, self.cfg["batch_size"]
        steps, seconds = 0, 0.0
        window: list[float] = []  # the last losses, for the progress bar
        self.model.train()
        while st.step < self.total and not interrupt.requested:
            for x, y in self.loader:  # after a resume: the rest of the saved epoch
                t0 = time.perf_counter()
                loss, correct = self.step(x, y)
                if self.comm is not None:  # every rank the same numbers, and the same stop
                    loss, correct, interrupt.requested = _combine(
                        self.comm, loss, correct, interrupt.requested)
                dt = time.perf_counter() - t0
                st.step += 1
                st.train_seconds += dt
                steps, seconds = steps + 1, seconds + dt
                if not math.isfinite(loss):
                    raise UsageError(f"training diverged at step {st.step} (loss {loss}); "
                                     "try a smaller --lr")
                st.loss_sum += loss
                st.correct += correct
                st.seen += batch
                st.steps_since += 1
                window = (window + [loss])[-50:]
                if bar is not None:
                    bar.update(1)
                    if st.step % 10 == 0 or st.step == self.total:
                        bar.set_postfix({"loss": f"{sum(window) / len(window):.4f}",
                                         "examples/s": f"{steps * batch / seconds:.0f}"},
                                        refresh=False)
                if self.rank == 0 and (st.step % self.eval_every == 0 or st.step == self.total):
                    rec = self.evaluation()
                    _say(bar, f"step {rec['step']} (epoch {rec['epoch']:g}): train loss "
                              f"{rec['train_loss']:.4f}, test loss {rec['test_loss']:.4f}, "
                              f"test accuracy {rec['test_acc']:.2%}")
                if self.hook is not None and st.step == self.hook[1]:
                    signal.raise_signal(self.hook[0])  # test use: stop at an exact step
                if interrupt.requested or st.step >= self.total:
                    break
        return steps, seconds

    def run(self) -> int:
        """Train, write the results, return the exit status (0, or 130 after Ctrl-C)."""
        st, cfg = self.state, self.cfg
        if self.rank != 0:  # rank 0 reports and writes the files
            return self._run_quietly()
        bar = _progress_bar(self.total, st.step, self.args.no_progress)
        world = "" if self.comm is None else f" x {self.comm.size} processes"
        _say(bar, f"{self.title}: {self.total} steps ({self.steps_per_epoch} per epoch) on "
                  f"{self.args.device}{world}, {nets.count_parameters(self.model):,} parameters -> "
                  f"{self.args.out}")
        try:
            with _Interrupt() as interrupt:
                try:
                    steps, seconds = self.train(interrupt, bar)
                except KeyboardInterrupt:  # a second Ctrl-C: stop now
                    print(f"interrupted again: stopped without saving; the last checkpoint is "
                          f"{self.ckpt_path}", file=sys.stderr)
                    return 130
        finally:
            if bar is not None:
                bar.close()
        self.tick()
        if interrupt.requested and st.step < self.total:
            self.checkpoint()
            write_metrics(self.args.out, st.records, self.summary())
            print(f"interrupted at step {st.step}: saved {self.ckpt_path} (continue with the "
                  "same command plus --resume)", file=sys.stderr)
            return 130
        plot = plot_curves(st.records, os.path.join(self.args.out, "curves.png"), self.title)
        write_metrics(self.args.out, st.records, self.summary())
        last = st.records[-1]
        speed = (f"{steps / seconds:.1f} steps/s, {steps * cfg['batch_size'] / seconds:.0f} "
                 "examples/s (training steps only)" if seconds else "no steps to take")
        print(f"done: step {st.step}, test accuracy {last['test_acc']:.2%}, test loss "
              f"{last['test_loss']:.4f}; {speed}; wall {st.elapsed:.1f} s in all")
        print(f"results in {self.args.out}: {CHECKPOINT}, metrics.csv, metrics.json"
              + (", curves.png" if plot else " (no curves.png: matplotlib is missing)"))
        return 0

    def _run_quietly(self) -> int:
        """A rank other than 0: train in step with the others, write nothing."""
        with _Interrupt() as interrupt:
            self.train(interrupt, None)
        return 130 if interrupt.requested and self.state.step < self.total else 0


def _join_world(args: argparse.Namespace, batch_size: int) -> Any:
    """Join the job's processes (MPI, or NCCL on GPUs); the batch must split evenly."""
    comm = mg.distributed.init("nccl" if args.device == "cuda" else None)
    if batch_size % comm.size:
        raise UsageError(f"--batch-size {batch_size} does not split evenly between "
                         f"{comm.size} processes; pick a multiple of {comm.size}")
    return comm


def _combine(comm: Any, loss: float, correct: int, stop: bool) -> tuple[float, int, bool]:
    """One all-reduce: the batch's mean loss and correct count over every rank, and whether
    any rank was asked to stop (so that all stop after the same step)."""
    total = comm.all_reduce(np.array([loss, correct, float(stop)]), "sum")
    return float(total[0]) / comm.size, int(round(total[1])), bool(total[2])


def main(argv: list[str] | None = None) -> int:
    """The command: parse ``argv`` (default ``sys.argv[1:]``), train, return the exit status.

    Any problem with the arguments, the data or a checkpoint, or another run using
    the same ``--out``, ends in one line on stderr and status 2; a result that cannot
    be written (a full disk) in one line and status 1.
    """
    try:
        args = build_parser().parse_args(argv)
        # one run per folder: the lock is held until the run ends (a killed run's lock
        # goes with its process)
        with _run_lock(args):
            return Trainer(args).run()
    except OutputError as exc:  # a full disk: the last checkpoint is intact
        print(f"python -m models.train: error: {exc}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"python -m models.train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before training started: nothing to save yet
        print("interrupted before training started; nothing was saved", file=sys.stderr)
        return 130


def _run_lock(args: argparse.Namespace) -> Any:
    """The output folder's lock; under ``--distributed`` only rank 0 takes it, since the
    job's ranks share the folder and rank 0 alone writes there."""
    launched = mg.distributed.launched_world()
    if args.distributed and launched is not None and launched[0] != 0:
        return contextlib.nullcontext()
    return RunLock(_settle_out(args))


def end_job_on_error(status: int) -> None:
    """Under ``--distributed``, an error status on one rank ends every rank of the job
    (``MPI_Abort``): the others may be waiting for this one in a collective."""
    if status not in (0, 130) and mg.distributed.is_initialized() \
            and mg.distributed.world_size() > 1:
        sys.stderr.flush()
        mg.distributed.communicator().abort(status)


if __name__ == "__main__":
    _status = main()
    end_job_on_error(_status)
    sys.exit(_status)


__all__ = ["DEFAULTS", "DEFINING", "Trainer", "build_parser", "main", "resolve"]
