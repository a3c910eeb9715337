"""``python -m models.paper_bn``: the Batch Normalization paper's experiment, in miniature.

A quick run (a few hundred steps on a subset of Fashion-MNIST) must write every file,
record ordered percentiles, and show the paper's effect: the BN network's last-layer
sigmoid inputs drift less than the plain network's. The recording code is checked
against a NumPy forward pass, and bad command lines must give one line on stderr.
"""

from __future__ import annotations

import csv
import fcntl
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from models import paper_bn
from models.nets import paper_mlp

ROOT = Path(__file__).resolve().parents[1]


def fashion_available() -> bool:
    try:
        mg.data.datasets.FashionMNIST(train=False, download=False)
    except (OSError, ValueError):
        return False
    return True


needs_fashion = pytest.mark.skipif(not fashion_available(),
                                   reason="Fashion-MNIST is not installed (no download here)")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("paper_bn_quick")
    assert paper_bn.main(["--quick", "--claim-steps", "100", "--no-progress",
                          "--out", str(out)]) == 0
    return out


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A made-up MNIST folder: 240 training and 100 test images whose class sets a bright
    row, so that a few steps already learn something."""
    root = tmp_path_factory.mktemp("tiny_mnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 240), ("t10k", 100)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        images[np.arange(n), 2 + 2 * labels, :] = 255
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


# ----------------------------------------------------------------------------- quick run
@needs_fashion
def test_quick_run_writes_every_file(quick_run: Path) -> None:
    pngs = ["fig1a_test_accuracy.png", "fig1b_sigmoid_input_plain.png",
            "fig1c_sigmoid_input_bn.png", "claim_learning_rate.png", "claim_weight_scale.png"]
    for name in pngs:
        assert (quick_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for impl in ("composed", "fused"):
        for kind in ("forward", "derivation"):
            svg = (quick_run / "graphs" / f"bn-{impl}-{kind}.svg").read_text()
            assert "<svg" in svg and "BatchNorm" in svg
    summary = (quick_run / "summary.md").read_text()
    for heading in ("## Test accuracy", "## Input to a sigmoid", "## The paper's claims"):
        assert heading in summary
    for claim in ("1. **", "2. **", "3. **", "4. **"):
        assert claim in summary
    data = json.loads((quick_run / "metrics.json").read_text())
    roles = [r["role"] for r in data["runs"]]
    assert roles.count("main") == 2 and "sweep-lr" in roles and "sweep-scale" in roles
    assert {row["lr"] for row in data["sweeps"]["lr"]} == set(
        paper_bn.claims.QUICK_LEARNING_RATES)


@needs_fashion
def test_percentiles_are_recorded_and_ordered(quick_run: Path) -> None:
    with open(quick_run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["run"] == "main"]
    for bn in ("0", "1"):
        steps = [int(r["step"]) for r in rows if r["bn"] == bn]
        assert steps == list(range(0, 301, 50))
    for r in rows:
        p15, p50, p85 = float(r["p15"]), float(r["p50"]), float(r["p85"])
        assert p15 <= p50 <= p85
        assert p15 < p85  # the tracked images do not all give the same input
    npz = np.load(quick_run / "percentiles.npz")
    assert npz["plain"].shape == npz["bn"].shape == (7, 3, 100)
    assert np.all(np.diff(npz["bn"], axis=1) >= 0)


@needs_fashion
def test_bn_inputs_drift_less_than_plain(quick_run: Path) -> None:
    """Figure 1(b, c) in 300 steps: without BN the inputs move far, with BN much less."""
    dist = json.loads((quick_run / "metrics.json").read_text())["distribution"]
    plain, bn = dist["plain"], dist["bn"]
    assert bn["drift"] < 0.5 * plain["drift"]
    assert bn["drift_median_units"] < 0.5 * plain["drift_median_units"]
    assert bn["jitter_median_units"] < 0.5 * plain["jitter_median_units"]
    # BN starts the inputs near N(0, 1): the 15th/85th percentiles near -/+1.04.
    assert bn["start"][0] == pytest.approx(-1.04, abs=0.3)
    assert bn["start"][2] == pytest.approx(1.04, abs=0.3)


# ----------------------------------------------------------------------------- recording
def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def hand_last_sigmoid_input(model: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """The same forward pass in NumPy, BN with the batch's own (biased) statistics."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    bns = [m for m in model if isinstance(m, nn.BatchNorm1d)]
    h = x.astype(np.float64)
    for i, lin in enumerate(linears[:-1]):
        z = h @ lin.weight.numpy().T + lin.bias.numpy()
        if bns:
            bn = bns[i]
            z = (z - z.mean(0)) / np.sqrt(z.var(0) + bn.eps) * bn.weight.numpy() + bn.bias.numpy()
        h = sigmoid(z)
    return z


@pytest.mark.parametrize("bn", [False, True])
def test_last_sigmoid_inputs_match_a_hand_computation(bn: bool) -> None:
    rng = np.random.default_rng(0)
    model = paper_mlp(bn=bn)
    for m in model.modules():  # make gamma and beta differ from 1 and 0
        if isinstance(m, nn.BatchNorm1d):
            m.weight.data[...] = rng.uniform(0.5, 2.0, m.num_features)
            m.bias.data[...] = rng.normal(0, 0.5, m.num_features)
    x = rng.random((64, 784), dtype=np.float32)
    buffers = [b.numpy() for b in model.buffers()]
    got = paper_bn.last_sigmoid_inputs(model, x)
    np.testing.assert_allclose(got, hand_last_sigmoid_input(model, x), rtol=1e-4, atol=1e-4)
    assert model.training  # the mode is left alone...
    for before, after in zip(buffers, model.buffers()):
        np.testing.assert_array_equal(before, after.numpy())  # ...and the running statistics
    pct = paper_bn.percentiles(got)
    np.testing.assert_allclose(pct[:, 7], np.percentile(got[:, 7], [15, 50, 85]))


def test_both_networks_start_from_the_same_weights() -> None:
    def linears(bn: bool) -> list[np.ndarray]:
        mg.manual_seed(3)  # BN layers draw nothing, so the Linear layers draw the same values
        return [t.numpy() for m in paper_mlp(bn=bn) if isinstance(m, nn.Linear)
                for t in (m.weight, m.bias)]

    plain, bn = linears(False), linears(True)
    assert len(plain) == len(bn) == 8
    for a, b in zip(plain, bn):
        np.testing.assert_array_equal(a, b)


def test_table_steps_are_the_papers_for_a_full_run() -> None:
    recorded = list(range(0, 50_001, 500))
    assert paper_bn.table_steps(50_000, recorded) == [5000, 10000, 20000, 50000]
    assert paper_bn.table_steps(300, list(range(0, 301, 50))) == [50, 100, 300]


def test_jobs_do_not_change_the_results(tiny_mnist: Path, tmp_path: Path) -> None:
    """MNIST from --data-root, and the same numbers from one process or two."""
    csvs = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        argv = ["--dataset", "mnist", "--data-root", str(tiny_mnist), "--steps", "40",
                "--eval-every", "20", "--no-claims", "--no-progress", "--jobs", str(jobs),
                "--out", str(out)]
        assert paper_bn.main(argv) == 0
        csvs.append((out / "metrics.csv").read_text())
    assert csvs[0] == csvs[1]
    assert "Learning-rate and weight-scale claims: not measured" in (
        tmp_path / "jobs1" / "summary.md").read_text()


def test_graphs_fall_back_to_dot_without_graphviz(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    save = mg.viz.save

    def no_dot(graph, path):  # what save does when Graphviz's dot program is missing
        if Path(path).suffix == ".svg":
            raise mg.viz.GraphvizNotFoundError()
        return save(graph, path)

    monkeypatch.setattr(mg.viz, "save", no_dot)
    files, svg = paper_bn.draw_bn_graphs(tmp_path)
    assert not svg
    assert sorted(f.name for f in files) == sorted(
        f"bn-{impl}-{kind}.dot" for impl in ("composed", "fused")
        for kind in ("forward", "derivation"))
    assert all(f.read_text().startswith("digraph") for f in files)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv", [
    ["--steps", "0"], ["--steps", "ten"], ["--lr", "-1"], ["--lr", "nan"],
    ["--dataset", "cifar10"], ["--batch-size", "1"], ["--unit", "100"], ["--jobs", "0"],
    ["--no-such-option"], ["--data-root", "/no/such/folder"],
])
def test_bad_arguments_give_one_line(argv: list[str], capsys: pytest.CaptureFixture,
                                     tmp_path: Path) -> None:
    assert paper_bn.main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paper_bn: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_folder_in_use_by_another_run_is_refused(tiny_mnist: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    # before: a second command on the same --out ran too, and the last to finish won
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--dataset", "mnist", "--data-root", str(tiny_mnist), "--steps", "20",
            "--eval-every", "10", "--no-claims", "--no-progress", "--out", str(out)]
    with open(out / ".lock", "w") as held:  # what a running command holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert paper_bn.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out '{out}' is in use by another run" in err, err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing was written


def test_missing_data_gives_one_line_from_the_command(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "models.paper_bn", "--data-root", str(tmp_path),
                           "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot find" in proc.stderr and str(tmp_path) in proc.stderr


@needs_fashion
def test_summary_explains_bn_spread_by_gamma(quick_run: Path) -> None:
    """The BN sigmoid input is gamma * xhat + beta: the summary reports the learned gamma of
    the tracked unit, read from the metrics, beside the spread it explains."""
    data = json.loads((quick_run / "metrics.json").read_text())
    bn = next(r for r in data["runs"] if r["role"] == "main" and r["spec"]["bn"])
    gamma_end = bn["gamma"][-1][bn["spec"]["unit"]]
    assert f"went from 1.00 to {gamma_end:.2f}" in (quick_run / "summary.md").read_text()
