"""``python -m models.paper_study``: when the paper's Figure 1(b, c) appears; its other claims.

The 50,000-step reproduction (``models.paper_bn``) finds that with BN the input of a last-layer
sigmoid does *not* stay put: its 15-85 percentile spread widens steadily. The paper gives no
learning rate and only "small random Gaussian" initial weights, so this study runs short
trainings of the same protocol (same network, data, batches, probe images) over

* a grid of learning rates x initial weight scales, both networks, recording the learned
  BN scale gamma and shift beta of the last BN layer at every record: the sigmoid input of
  a BN network is ``gamma * xhat + beta`` with ``xhat`` normalized, so its 15-85 spread is
  about ``2.07 * gamma`` (the spread of a standard normal) and its median about ``beta``;
* BN's sensitivity to the batch size (the batch statistics get noisy for small batches);
* the regularisation claim (section 3.4): the train/test gap on a small training set,
  without and with BN, and against dropout.

It writes ``study.md`` (the tables), ``study.json`` (every record) and three figures::

    python -m models.paper_study --jobs 2 --out runs/study   # a few minutes on 2 cores
    python -m models.paper_study --quick --out /tmp/s        # seconds: a smoke test
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread per process, as in models.paper_bn

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from .common import OneLineParser, UsageError, number_arg  # noqa: E402
from .paper_claims import NORMAL_SPREAD  # noqa: E402
from .paper_bn import DataSpec, RunSpec, distribution_stats, load_data, run_all  # noqa: E402

#: One configuration per scale of the study; ``quick`` shrinks everything to seconds.
FULL = {"lrs": (0.05, 0.5, 2.0), "scales": (0.3, 1.0, 3.0), "sweep_steps": 3000,
        "eval_every": 250, "batches": (2, 8, 32, 128), "batch_steps": 2000,
        "batch_lr": 0.5, "reg_steps": 4000, "reg_train": 5000, "reg_lr": 0.5,
        "dropout": 0.2, "test_limit": 2000, "probe_images": 1000, "sweep_train": None}
QUICK = {"lrs": (0.05, 2.0), "scales": (1.0,), "sweep_steps": 60, "eval_every": 20,
         "batches": (2, 32), "batch_steps": 40, "batch_lr": 0.5, "reg_steps": 60,
         "reg_train": 300, "reg_lr": 0.5, "dropout": 0.2, "test_limit": 300,
         "probe_images": 200, "sweep_train": 3000}


@dataclasses.dataclass(frozen=True)
class StudySpecs:
    """Every run of the study, grouped by the question it answers."""

    sweep: list[RunSpec]
    batch: list[RunSpec]
    reg: list[RunSpec]


def study_specs(cfg: dict[str, Any], seed: int = 0) -> StudySpecs:
    """The runs: the learning-rate x scale grid (both networks), BN and plain per batch
    size, and plain / BN, each without and with dropout, on the small training set."""
    ev = cfg["eval_every"]
    sweep = [RunSpec(bn=bn, lr=lr, weight_scale=sc, steps=cfg["sweep_steps"], eval_every=ev,
                     seed=seed)
             for lr in cfg["lrs"] for sc in cfg["scales"] for bn in (False, True)]
    batch = [RunSpec(bn=bn, lr=cfg["batch_lr"], weight_scale=1.0, steps=cfg["batch_steps"],
                     eval_every=cfg["batch_steps"], seed=seed, batch_size=b)
             for b in cfg["batches"] for bn in (False, True)]
    reg = [RunSpec(bn=bn, lr=cfg["reg_lr"], weight_scale=1.0, steps=cfg["reg_steps"],
                   eval_every=max(1, cfg["reg_steps"] // 8), seed=seed, dropout=p,
                   train_eval=cfg["reg_train"])
           for bn in (False, True) for p in (0.0, cfg["dropout"])]
    return StudySpecs(sweep, batch, reg)


# ----------------------------------------------------------------------------- analysis
def gamma_beta_stats(run: dict[str, Any], unit: int = 0) -> dict[str, float]:
    """The last BN layer's gamma and beta of ``unit`` at the start and the end, and the
    median over the units of gamma at the end."""
    g, b = np.asarray(run["gamma"]), np.asarray(run["beta"])
    return {"gamma_start": float(g[0, unit]), "gamma_end": float(g[-1, unit]),
            "beta_end": float(b[-1, unit]), "gamma_median_end": float(np.median(g[-1]))}


def figure1_pattern(plain: dict[str, Any], bn: dict[str, Any]) -> bool:
    """The paper's Figure 1(b, c) picture: the BN unit drifts less than the plain one,
    both for unit 0 and for the median unit, and BN's spread changes by less than half."""
    dp, db = distribution_stats(plain, 0), distribution_stats(bn, 0)
    steady = abs(db["end_spread"] - db["start_spread"]) < 0.5 * db["start_spread"]
    return (db["drift"] < dp["drift"] and db["drift_median_units"] < dp["drift_median_units"]
            and steady)


def sweep_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (learning rate, scale): drift and spread of both networks, BN's gamma."""
    rows = []
    for plain, bn in zip(runs[0::2], runs[1::2]):
        dp, db = distribution_stats(plain, 0), distribution_stats(bn, 0)
        rows.append({"lr": bn["spec"]["lr"], "scale": bn["spec"]["weight_scale"],
                     "plain_drift": dp["drift"], "plain_drift_units": dp["drift_median_units"],
                     "plain_spread": (dp["start_spread"], dp["end_spread"]),
                     "bn_drift": db["drift"], "bn_drift_units": db["drift_median_units"],
                     "bn_spread": (db["start_spread"], db["end_spread"]),
                     "plain_acc": plain["test_acc"][-1], "bn_acc": bn["test_acc"][-1],
                     "figure1": figure1_pattern(plain, bn), **gamma_beta_stats(bn)})
    return rows


def batch_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Final test accuracy per batch size, both networks (BN with its running statistics)."""
    return [{"batch": bn["spec"]["batch_size"], "plain_acc": plain["test_acc"][-1],
             "bn_acc": bn["test_acc"][-1], "plain_loss": plain["train_loss"][-1],
             "bn_loss": bn["train_loss"][-1], "nonfinite": [plain["nonfinite_step"],
                                                            bn["nonfinite_step"]]}
            for plain, bn in zip(runs[0::2], runs[1::2])]


def reg_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Final train and test accuracy and their gap; the best test record."""
    return [{"bn": r["spec"]["bn"], "dropout": r["spec"]["dropout"],
             "train_acc": r["train_acc"][-1], "test_acc": r["test_acc"][-1],
             "gap": r["train_acc"][-1] - r["test_acc"][-1], "best_test": max(r["test_acc"]),
             "train_loss": r["train_loss"][-1]} for r in runs]


# ----------------------------------------------------------------------------- outputs
def plot_sweep(out: Path, runs: list[dict[str, Any]], lrs: Sequence[float],
               scales: Sequence[float]) -> list[Path]:
    """``study_percentiles.png`` (unit 0's 15/50/85th percentiles, both networks, per cell of
    the grid) and ``study_gamma_beta.png`` (the last BN layer's gamma and beta over training)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = (len(lrs), len(scales))

    def grid() -> tuple[Any, Any]:  # one panel per (learning rate, scale) cell
        return plt.subplots(*shape, figsize=(3.2 * shape[1], 2.5 * shape[0]), dpi=110,
                            squeeze=False, sharex=True)

    def finish(fig: Any, axes: Any, title: str, name: str) -> Path:
        for k, bn in enumerate(runs[1::2]):
            ax = axes[k // shape[1], k % shape[1]]
            ax.set_title(f"lr {bn['spec']['lr']:g}, scale {bn['spec']['weight_scale']:g}",
                         fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        for ax in axes[-1]:
            ax.set_xlabel("step", fontsize=8)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        return out / name

    fig, axes = grid()
    for k, (plain, bn) in enumerate(zip(runs[0::2], runs[1::2])):
        ax = axes[k // shape[1], k % shape[1]]
        for r, color, label in ((plain, "C1", "without BN"), (bn, "C0", "with BN")):
            pct = np.asarray(r["pct"])[:, :, 0]
            for j, style in enumerate(("--", "-", "--")):
                ax.plot(r["step"], pct[:, j], style, color=color, linewidth=1.1,
                        label=label if j == 1 else "_nolegend_")
    axes[0, 0].legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("sigmoid input (unit 0)", fontsize=8)
    paths = [finish(fig, axes, "15th / 50th / 85th percentiles of a last-layer sigmoid input",
                    "study_percentiles.png")]

    fig, axes = grid()
    for k, bn in enumerate(runs[1::2]):
        ax = axes[k // shape[1], k % shape[1]]
        g, b = np.asarray(bn["gamma"]), np.asarray(bn["beta"])
        ax.plot(bn["step"], g[:, 0], "-", color="C0", label="gamma, unit 0")
        ax.plot(bn["step"], b[:, 0], "-", color="C3", label="beta, unit 0")
        ax.plot(bn["step"], np.median(g, axis=1), ":", color="C0", label="gamma, median unit")
        ax.plot(bn["step"], np.median(b, axis=1), ":", color="C3", label="beta, median unit")
    axes[0, 0].legend(fontsize=6)
    paths.append(finish(fig, axes, "learned gamma and beta of the last BN layer",
                        "study_gamma_beta.png"))
    return paths


def plot_reg(out: Path, runs: list[dict[str, Any]]) -> Path:
    """``study_regularisation.png``: train and test accuracy over training, four networks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=110)
    for k, r in enumerate(runs):
        s = r["spec"]
        label = ("BN" if s["bn"] else "plain") + (f" + dropout {s['dropout']:g}"
                                                  if s["dropout"] else "")
        ax.plot(r["step"], r["train_acc"], "--", color=f"C{k}", linewidth=1.1)
        ax.plot(r["step"], r["test_acc"], "-", color=f"C{k}", linewidth=1.3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy (dashed: train, solid: test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out / "study_regularisation.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def study_text(cfg: dict[str, Any], sweep: list[dict[str, Any]], batch: list[dict[str, Any]],
               reg: list[dict[str, Any]], seconds: float, command: str) -> str:
    """``study.md``: the three tables, with the configuration they were measured with."""
    lines = ["# Why BN's sigmoid inputs drift, batch size, regularisation", "",
             f"`{command}`; wall time {seconds:.0f} s. Fashion-MNIST, the paper's "
             "784-100-100-100-10 sigmoid MLP, plain SGD, seed 0. Percentiles of unit 0 of the "
             f"last hidden layer over the first {cfg['probe_images']} test images (BN: those "
             f"images' own statistics); test accuracy on {cfg['test_limit']} test images, BN "
             "with its running statistics.", "",
             f"## Learning rate x initial weight scale ({cfg['sweep_steps']} steps)", "",
             "Drift: mean over the 15/50/85th percentiles of |end - start| (unit 0 / median "
             "of the 100 units). Figure 1(b, c) pattern: BN drifts less than plain for unit 0 "
             "and for the median unit, and BN's 15-85 spread changes by less than half.", "",
             "| lr | scale | drift without BN | drift with BN | spread without BN | "
             "spread with BN | gamma unit 0 | gamma median unit, end | beta unit 0, end | "
             "pattern | accuracy without / with BN |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in sweep:
        lines.append(
            f"| {r['lr']:g} | {r['scale']:g} | {r['plain_drift']:.2f} / "
            f"{r['plain_drift_units']:.2f} | {r['bn_drift']:.2f} / {r['bn_drift_units']:.2f} | "
            f"{r['plain_spread'][0]:.2f} -> {r['plain_spread'][1]:.2f} | "
            f"{r['bn_spread'][0]:.2f} -> {r['bn_spread'][1]:.2f} | "
            f"{r['gamma_start']:.2f} -> {r['gamma_end']:.2f} | {r['gamma_median_end']:.2f} | "
            f"{r['beta_end']:+.2f} | {'yes' if r['figure1'] else 'no'} | "
            f"{r['plain_acc']:.4f} / {r['bn_acc']:.4f} |")
    ratio = [r["bn_spread"][1] / (NORMAL_SPREAD * abs(r["gamma_end"])) for r in sweep]
    lines += ["", f"BN's end spread divided by {NORMAL_SPREAD} x |gamma of unit 0| (the spread "
              "a normalized input would have): "
              + ", ".join(f"{v:.2f}" for v in ratio) + ".", "",
              f"## Batch size ({cfg['batch_steps']} steps, learning rate {cfg['batch_lr']:g})",
              "", "| batch | examples seen | accuracy without BN | accuracy with BN | "
              "last train loss without / with BN |", "| ---: | ---: | ---: | ---: | ---: |"]
    for r in batch:
        lines.append(f"| {r['batch']} | {r['batch'] * cfg['batch_steps']} | "
                     f"{r['plain_acc']:.4f} | {r['bn_acc']:.4f} | "
                     f"{r['plain_loss']:.3f} / {r['bn_loss']:.3f} |")
    lines += ["", f"## Regularisation ({cfg['reg_train']} training images, "
              f"{cfg['reg_steps']} steps, learning rate {cfg['reg_lr']:g})", "",
              "| network | train accuracy | test accuracy | gap | best test record | "
              "last train loss |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in reg:
        name = ("BN" if r["bn"] else "plain") + (f" + dropout {r['dropout']:g}"
                                                 if r["dropout"] else "")
        lines.append(f"| {name} | {r['train_acc']:.4f} | {r['test_acc']:.4f} | "
                     f"{r['gap']:+.4f} | {r['best_test']:.4f} | {r['train_loss']:.4f} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m models.paper_study", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/study", help="output folder (default runs/study)")
    p.add_argument("--jobs", type=number_arg(int, "--jobs", 1), default=1,
                   help="training processes at once (default 1)")
    p.add_argument("--quick", action="store_true", help="tiny runs on a subset: seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def run(args: argparse.Namespace, command: str) -> Path:
    """Train every run of the study and write its outputs; returns the output folder."""
    t0 = time.perf_counter()
    cfg = dict(QUICK if args.quick else FULL)
    sweep_data = DataSpec(train_limit=cfg["sweep_train"], test_limit=cfg["test_limit"],
                          probe_images=cfg["probe_images"])
    reg_data = DataSpec(train_limit=cfg["reg_train"], test_limit=cfg["test_limit"],
                        probe_images=cfg["probe_images"])
    try:
        load_data(sweep_data)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = study_specs(cfg)
    show = not args.no_progress
    first = run_all(specs.sweep + specs.batch, sweep_data, args.jobs, show=show)
    sweep_runs, batch_runs = first[: len(specs.sweep)], first[len(specs.sweep):]
    reg_runs = run_all(specs.reg, reg_data, args.jobs, show=show)
    sweep, batch, reg = sweep_rows(sweep_runs), batch_rows(batch_runs), reg_rows(reg_runs)
    plot_sweep(out, sweep_runs, cfg["lrs"], cfg["scales"])
    plot_reg(out, reg_runs)
    seconds = time.perf_counter() - t0
    with open(out / "study.json", "w") as f:
        json.dump({"config": cfg, "sweep": sweep, "batch": batch, "reg": reg,
                   "runs": {"sweep": sweep_runs, "batch": batch_runs, "reg": reg_runs},
                   "wall_seconds": seconds}, f, indent=1)
    (out / "study.md").write_text(study_text(cfg, sweep, batch, reg, seconds, command))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        out = run(parse_args(argv), " ".join(["python -m models.paper_study", *argv]))
    except UsageError as exc:
        print(f"paper_study: error: {exc}", file=sys.stderr)
        return 2
    print(f"paper_study: tables in {out / 'study.md'}, figures and study.json in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
