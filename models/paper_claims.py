"""The Batch Normalization paper's other claims, as shorter measured experiments.

Used by ``python -m models.paper_bn``; each sweep trains the plain and the BN network of
section 4.1 with the same seed and data for ``CLAIM_STEPS`` steps per setting:

* learning rate (section 3.3, "Batch Normalization enables higher learning rates"):
  plain SGD at ``LEARNING_RATES``; a run *diverged* when its loss became non-finite and
  *stalled* when its final test accuracy stayed below ``STALL_ACCURACY`` (chance is 10%);
* initial weight scale (section 3.3, "training more resilient to the parameter scale"):
  weights drawn from N(0, (scale / sqrt(fan_in))^2) for each scale in ``WEIGHT_SCALES``,
  at the main learning rate.

``claim_lines`` turns the measurements into the claims section of ``summary.md``: each
claim, the numbers, and whether it held here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

CLAIM_STEPS = 5_000
LEARNING_RATES = (0.1, 0.5, 2.0, 8.0, 32.0)
WEIGHT_SCALES = (0.1, 0.3, 1.0, 3.0, 10.0)
QUICK_LEARNING_RATES = (0.5, 8.0, 32.0)
QUICK_WEIGHT_SCALES = (0.1, 1.0, 10.0)
#: Below this final test accuracy a run counts as stalled (10 classes: chance is 0.1).
STALL_ACCURACY = 0.2
#: The 85th minus the 15th percentile of a standard normal: the spread of a BN output
#: with gamma = 1 and normally distributed normalized values.
NORMAL_SPREAD = 2.0729
#: Two test accuracies closer than this (0.3 points) count as equal: about the noise of a
#: mean over ten records.
ACCURACY_TIE = 0.003


def sweep_specs(lr: float, steps: int, base: dict[str, Any], quick: bool = False
                ) -> dict[str, list[Any]]:
    """The runs of both sweeps: ``{"lr": [...], "scale": [...]}``, plain then BN per value."""
    from .paper_bn import RunSpec

    common = dict(base, steps=steps, eval_every=min(base["eval_every"], steps))
    lrs = QUICK_LEARNING_RATES if quick else LEARNING_RATES
    scales = QUICK_WEIGHT_SCALES if quick else WEIGHT_SCALES
    return {
        "lr": [RunSpec(bn=bn, lr=v, weight_scale=1.0, **common) for v in lrs
               for bn in (False, True)],
        "scale": [RunSpec(bn=bn, lr=lr, weight_scale=v, **common) for v in scales
                  for bn in (False, True)],
    }


def status(run: dict[str, Any]) -> str:
    """``"diverged"`` (non-finite loss), ``"stalled"`` (near chance) or ``"trains"``."""
    if run["nonfinite_step"] is not None:
        return "diverged"
    return "stalled" if run["test_acc"][-1] < STALL_ACCURACY else "trains"


def final_accuracy(run: dict[str, Any]) -> float:
    """The last test accuracy, NaN for a run that diverged."""
    return math.nan if run["nonfinite_step"] is not None else run["test_acc"][-1]


def sweep_tables(sweeps: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """One row per setting: the value swept, and per network its final accuracy and status."""
    key = {"lr": "lr", "scale": "weight_scale"}
    tables = {}
    for name, runs in sweeps.items():
        rows: dict[float, dict[str, Any]] = {}
        for r in runs:
            value = r["spec"][key[name]]
            net = "bn" if r["spec"]["bn"] else "plain"
            row = rows.setdefault(value, {key[name]: value})
            acc = final_accuracy(r)
            row[f"{net}_acc"] = None if math.isnan(acc) else acc
            row[f"{net}_status"] = status(r)
            row[f"{net}_final_loss"] = r["train_loss"][-1] if r["train_loss"] else None
            if r["nonfinite_step"] is not None:
                row[f"{net}_nonfinite_step"] = r["nonfinite_step"]
        tables[name] = list(rows.values())
    return tables


def plot_sweeps(out: Path, sweeps: dict[str, list[dict[str, Any]]], steps: int) -> list[Path]:
    """``claim_learning_rate.png`` and ``claim_weight_scale.png``: final test accuracy
    against the swept value, both networks; a red cross at 0 marks a non-finite loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = sweep_tables(sweeps)
    paths = []
    for name, xlabel, fname in (("lr", "learning rate", "claim_learning_rate.png"),
                                ("scale", "initial weight scale", "claim_weight_scale.png")):
        rows = tables[name]
        x = np.array([r["lr" if name == "lr" else "weight_scale"] for r in rows])
        fig, ax = plt.subplots(figsize=(4.2, 3.2), dpi=110)
        for net, style, label in (("plain", "--o", "Without BN"), ("bn", "-s", "With BN")):
            acc = np.array([np.nan if r[f"{net}_acc"] is None else r[f"{net}_acc"] for r in rows])
            ax.plot(x, acc, style, label=label, markersize=4, linewidth=1.3)
            bad = np.isnan(acc)
            if bad.any():
                ax.plot(x[bad], np.zeros(bad.sum()), "x", color="C3", markersize=8,
                        label=f"{label}: non-finite loss")
        ax.axhline(0.1, color="grey", linewidth=0.8, linestyle=":", label="chance")
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"test accuracy after {steps} steps")
        ax.set_title(f"final accuracy vs {xlabel}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=7)
        fig.tight_layout()
        paths.append(out / fname)
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _highest_training(rows: list[dict[str, Any]], net: str) -> float | None:
    ok = [r["lr"] for r in rows if r[f"{net}_status"] == "trains"]
    return max(ok) if ok else None


def gamma_sentence(bn: dict[str, Any], db: dict[str, Any]) -> str:
    """Why BN's sigmoid input can still widen: its spread follows the learned gamma."""
    unit = bn["spec"]["unit"]
    g0, g1 = bn["gamma"][0][unit], bn["gamma"][-1][unit]
    b1 = bn["beta"][-1][unit]
    return (f"BN fixes the mean and variance of the normalized value only: the sigmoid input "
            f"is gamma * xhat + beta, and the learned gamma of the tracked unit went from "
            f"{g0:.2f} to {g1:.2f} (beta to {b1:+.2f}), so its 15-85 spread went from "
            f"{db['start_spread']:.2f} to {db['end_spread']:.2f} ({NORMAL_SPREAD:.2f} x gamma "
            f"would be {NORMAL_SPREAD * abs(g1):.2f} for a normal xhat). How the picture "
            f"depends on the learning rate and the initial scale: `python -m "
            f"models.paper_study` (docs/paper-reproduction.md).")


def claim_lines(plain: dict[str, Any], bn: dict[str, Any], dp: dict[str, Any],
                db: dict[str, Any], sweeps: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The claims section of ``summary.md``: claim, measurement, verdict."""
    lines = []
    # 1. Figure 1(a): BN trains faster and reaches a higher test accuracy. One record moves
    # by a few tenths of a point from the next, so "the end" is the mean of the last fifth.
    steps, acc_p, acc_b = plain["step"], plain["test_acc"], bn["test_acc"]
    n = min(len(acc_p), len(acc_b))
    last = steps[n - 1]
    tail = [k for k in range(1, n) if steps[k] >= 0.8 * last]
    end_p = sum(acc_p[k] for k in tail) / len(tail)
    end_b = sum(acc_b[k] for k in tail) / len(tail)
    early = min(range(1, n), key=lambda k: abs(steps[k] - 0.1 * last))
    ahead = sum(acc_b[k] > acc_p[k] for k in range(1, n))
    sooner, higher = acc_b[early] > acc_p[early], end_b - end_p > ACCURACY_TIE
    if sooner and higher:
        verdict = "held"
    elif sooner and abs(end_b - end_p) <= ACCURACY_TIE:
        verdict = (f"held in part: BN is ahead early, but both end at the same accuracy "
                   f"(within {ACCURACY_TIE * 100:.1f} points)")
    else:
        verdict = "did not hold"
    lines.append(
        f"1. **BN reaches a higher test accuracy, sooner** (Figure 1a): {verdict}. At step "
        f"{steps[early]}: {acc_b[early]:.4f} with BN vs {acc_p[early]:.4f} without; mean over "
        f"the last fifth ({len(tail)} records from step {steps[tail[0]]}): {end_b:.4f} vs "
        f"{end_p:.4f}; best {max(acc_b[:n]):.4f} vs {max(acc_p[:n]):.4f}; at step {last}: "
        f"{acc_b[n - 1]:.4f} vs {acc_p[n - 1]:.4f}. BN is ahead at {ahead} of {n - 1} records.")
    # 2. Figure 1(b, c): without BN the sigmoid inputs drift, with BN they are stable.
    held = db["drift"] < dp["drift"] and db["drift_median_units"] < dp["drift_median_units"]
    lines.append(
        f"2. **Without BN the sigmoid's input distribution drifts; with BN it is stable** "
        f"(Figure 1b, c): {'held' if held else 'did not hold'}. Drift of the tracked unit "
        f"{dp['drift']:.3f} without BN vs {db['drift']:.3f} with BN (median over the 100 "
        f"units {dp['drift_median_units']:.3f} vs {db['drift_median_units']:.3f}); over the "
        f"second half {dp['drift_second_half']:.3f} vs {db['drift_second_half']:.3f} "
        f"(median {dp['drift_second_half_median_units']:.3f} vs "
        f"{db['drift_second_half_median_units']:.3f}). From one record to the next BN's "
        f"percentiles move {'less' if db['jitter'] < dp['jitter'] else 'more'}: jitter "
        f"{dp['jitter']:.3f} without BN vs {db['jitter']:.3f} with BN (median over the units "
        f"{dp['jitter_median_units']:.3f} vs {db['jitter_median_units']:.3f}).")
    if bn.get("gamma"):
        lines[-1] += " " + gamma_sentence(bn, db)
    if not sweeps:
        lines.append("3. Learning-rate and weight-scale claims: not measured (`--no-claims`).")
        return lines
    tables = sweep_tables(sweeps)
    steps = sweeps["lr"][0]["spec"]["steps"]
    # 3. Higher learning rates.
    rows = tables["lr"]
    top_p, top_b = _highest_training(rows, "plain"), _highest_training(rows, "bn")
    top = rows[-1]
    if top_b is not None and (top_p is None or top_b > top_p):
        verdict = "held"
    elif top_b == top_p and (top["bn_acc"] or 0) > (top["plain_acc"] or 0):
        verdict = ("held in part: both networks train at every rate swept, but BN is more "
                   "accurate at the highest")
    else:
        verdict = "did not hold"
    lines.append(
        f"3. **BN trains at learning rates where the plain network stalls or diverges** "
        f"(section 3.3; {steps} steps per run): {verdict}. Highest learning rate that "
        f"trains: {top_p if top_p is not None else 'none'} without BN, "
        f"{top_b if top_b is not None else 'none'} with BN.")
    lines += ["", "   | learning rate | without BN | with BN |", "   | ---: | ---: | ---: |"]
    lines += [f"   | {r['lr']:g} | {_acc(r['plain_acc'])} ({r['plain_status']}) | "
              f"{_acc(r['bn_acc'])} ({r['bn_status']}) |" for r in rows]
    lines.append("")
    # 4. Resilience to the scale of the initial weights.
    rows = tables["scale"]

    def spread(net: str) -> float:
        accs = [r[f"{net}_acc"] if r[f"{net}_acc"] is not None else 0.0 for r in rows]
        return max(accs) - min(accs)

    sp, sb = spread("plain"), spread("bn")
    scales = ", ".join(f"{r['weight_scale']:g}" for r in rows)
    lines.append(
        f"4. **BN makes training insensitive to the scale of the initial weights** (section "
        f"3.3; {steps} steps per run): {'held' if sb < sp else 'did not hold'}. Final "
        f"accuracy varies by {sp:.4f} without BN and by {sb:.4f} with BN across scales "
        f"{scales}.")
    lines += ["", "   | weight scale | without BN | with BN |", "   | ---: | ---: | ---: |"]
    lines += [f"   | {r['weight_scale']:g} | {_acc(r['plain_acc'])} ({r['plain_status']}) | "
              f"{_acc(r['bn_acc'])} ({r['bn_status']}) |" for r in rows]
    lines += ["", "BN's regularisation claim (section 3.4) and its sensitivity to the batch size "
              "are not measured by this command: `python -m models.paper_study` measures them "
              "(docs/paper-reproduction.md)."]
    return lines
