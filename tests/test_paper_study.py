"""``python -m models.paper_study`` in its tiny configuration: every file, every table row,
and the recorded gamma/beta explain the BN network's sigmoid-input spread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import paper_study
from models.paper_bn import PAPER_BATCH, RunSpec

import minigrad as mg


def fashion_available() -> bool:
    try:
        mg.data.datasets.FashionMNIST(train=False, download=False)
    except (OSError, ValueError):
        return False
    return True


needs_fashion = pytest.mark.skipif(not fashion_available(),
                                   reason="Fashion-MNIST is not installed (no download here)")


def test_study_specs_cover_the_grid_batches_and_dropout() -> None:
    cfg = paper_study.FULL
    specs = paper_study.study_specs(cfg)
    assert len(specs.sweep) == 2 * len(cfg["lrs"]) * len(cfg["scales"])
    # pairs (plain, BN) with equal settings, as sweep_rows expects
    for plain, bn in zip(specs.sweep[0::2], specs.sweep[1::2]):
        assert (plain.bn, bn.bn) == (False, True)
        assert (plain.lr, plain.weight_scale) == (bn.lr, bn.weight_scale)
    assert sorted({s.batch_size for s in specs.batch}) == sorted(cfg["batches"])
    assert {(s.bn, s.dropout) for s in specs.reg} == {(False, 0.0), (False, cfg["dropout"]),
                                                      (True, 0.0), (True, cfg["dropout"])}
    assert all(s.train_eval == cfg["reg_train"] for s in specs.reg)


def test_run_name_says_batch_and_dropout() -> None:
    base = RunSpec(bn=True, lr=0.5, weight_scale=1.0, steps=10, eval_every=5)
    assert "batch" not in base.name and base.batch_size == PAPER_BATCH
    assert "batch=8" in RunSpec(bn=True, lr=0.5, weight_scale=1.0, steps=10, eval_every=5,
                                batch_size=8).name
    assert "dropout=0.2" in RunSpec(bn=True, lr=0.5, weight_scale=1.0, steps=10, eval_every=5,
                                    dropout=0.2).name


@needs_fashion
def test_quick_study_writes_tables_and_consistent_records(tmp_path: Path) -> None:
    assert paper_study.main(["--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    for name in ("study.md", "study.json", "study_percentiles.png", "study_gamma_beta.png",
                 "study_regularisation.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "study.json").read_text())
    cfg = paper_study.QUICK
    assert len(data["sweep"]) == len(cfg["lrs"]) * len(cfg["scales"])
    assert [r["batch"] for r in data["batch"]] == list(cfg["batches"])
    assert len(data["reg"]) == 4
    text = (tmp_path / "study.md").read_text()
    assert text.count("\n| 0.05 | 1 |") == 1 and "| BN + dropout 0.2 |" in text
    for run in data["runs"]["sweep"]:
        n = len(run["step"])
        if run["spec"]["bn"]:
            # BN's output is gamma * xhat + beta with xhat standardized over the probe
            # images: the 15-85 spread of the sigmoid input is gamma times xhat's spread.
            gamma = np.asarray(run["gamma"])
            spread = np.asarray(run["pct"])[:, 2, :] - np.asarray(run["pct"])[:, 0, :]
            assert gamma.shape == (n, 100)
            ratio = spread / np.abs(gamma)
            assert ratio.min() > 1.5 and ratio.max() < 3.0
        else:
            assert run["gamma"] == [] and run["beta"] == []
    for run in data["runs"]["reg"]:
        assert len(run["train_acc"]) == len(run["step"])
        assert all(0.0 <= a <= 1.0 for a in run["train_acc"])


def test_bad_jobs_is_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert paper_study.main(["--jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paper_study: error:") and "--jobs" in err and err.count("\n") == 1
