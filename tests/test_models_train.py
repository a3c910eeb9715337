"""The training command ``python -m models.train``: exact resume, Ctrl-C, errors, accuracy.

Runs are tiny (a few hundred Fashion-MNIST images) so each test takes seconds. Runs that
must be stopped at an exact step use the test-only environment variable
``MINIGRAD_TRAIN_SELF_SIGNAL=KILL@17``: the process sends itself SIGKILL right after
step 17, so nothing depends on timing. The data comes from Debian's
``dataset-fashion-mnist`` package; without it the tests that train skip.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
import minigrad.io as mio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `models` lives at the repository root, beside `minigrad`
    sys.path.insert(0, str(ROOT))

from models import common, train  # noqa: E402
from models.common import load_dataset  # noqa: E402

# 600 training images in batches of 60: 10 steps per epoch, 3 epochs, a checkpoint every
# 4 steps. Momentum and the cosine schedule make the optimiser and schedule state matter.
SMALL = ["--model", "mlp-bn", "--train-subset", "600", "--test-subset", "200", "--epochs",
         "3", "--eval-every", "4", "--momentum", "0.9", "--lr", "0.1", "--schedule", "cosine",
         "--no-progress"]


@functools.cache
def _have_fashion_mnist() -> bool:
    try:
        load_dataset("fashion-mnist", train=False)
    except Exception:
        return False
    return True


needs_data = pytest.mark.skipif(not _have_fashion_mnist(),
                                reason="Fashion-MNIST files not found (dataset-fashion-mnist)")


def _cli(args: list[str], self_signal: str | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(train.SELF_SIGNAL_ENV, None)
    if self_signal:
        env[train.SELF_SIGNAL_ENV] = self_signal
    return subprocess.run([sys.executable, "-m", "models.train", *args], cwd=ROOT, env=env,
                          check=False, capture_output=True, text=True, timeout=timeout)


def _load(out: Path) -> dict:
    return mg.load(out / train.CHECKPOINT)


def _records(ckpt: dict) -> list[dict]:
    """The metrics without wall-clock times (which no two runs share)."""
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in ckpt["progress"]["records"]]


def _array(v: object) -> np.ndarray:
    return v.numpy() if isinstance(v, mg.Tensor) else np.asarray(v)


def _assert_same_run(a: dict, b: dict) -> None:
    assert a["progress"]["step"] == b["progress"]["step"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert np.array_equal(a["model"][key].numpy(), b["model"][key].numpy()), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for i, state in a["optimizer"]["state"].items():
        for k, v in state.items():
            assert np.array_equal(_array(v), _array(b["optimizer"]["state"][i][k])), (i, k)
    assert a["scheduler"] == b["scheduler"]
    assert a["loader"] == b["loader"]
    assert _records(a) == _records(b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The final checkpoint of an uninterrupted SMALL run."""
    if not _have_fashion_mnist():
        pytest.skip("Fashion-MNIST files not found (dataset-fashion-mnist)")
    out = tmp_path_factory.mktemp("reference")
    proc = _cli([*SMALL, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    return _load(out)


# ---------------------------------------------------------------------- resume
@needs_data
@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_exact(tmp_path: Path, reference: dict) -> None:
    # killed after step 17: mid-epoch 2 (10 steps per epoch), one step after the
    # checkpoint of step 16, so the resumed run must redo step 17 exactly
    killed = _cli([*SMALL, "--out", str(tmp_path)], self_signal="KILL@17")
    assert killed.returncode == -signal.SIGKILL
    ckpt = _load(tmp_path)
    assert ckpt["progress"]["step"] == 16
    assert ckpt["loader"]["batch"] == 6  # the position inside epoch 1 was saved
    assert reference["progress"]["step"] == 30

    resumed = _cli([*SMALL, "--out", str(tmp_path), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(_load(tmp_path), reference)


@needs_data
@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path: Path,
                                                         reference: dict) -> None:
    # step 7 is no evaluation step: the checkpoint comes from the Ctrl-C alone
    stopped = _cli([*SMALL, "--out", str(tmp_path)], self_signal="INT@7")
    assert stopped.returncode == 130, stopped.stderr
    lines = [ln for ln in stopped.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(tmp_path / train.CHECKPOINT) in lines[0], stopped.stderr
    ckpt = _load(tmp_path)
    assert ckpt["progress"]["step"] == 7
    assert [r["step"] for r in ckpt["progress"]["records"]] == [4]

    resumed = _cli([*SMALL, "--out", str(tmp_path), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(_load(tmp_path), reference)


@needs_data
@pytest.mark.slow
def test_ctrl_c_from_outside_saves_and_exits_130(tmp_path: Path) -> None:
    # a run far too long to finish; wait for its first checkpoint, then press Ctrl-C
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(train.SELF_SIGNAL_ENV, None)
    proc = subprocess.Popen([sys.executable, "-m", "models.train", *SMALL[:6], "--steps",
                             "1000000", "--eval-every", "5", "--no-progress", "--out",
                             str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / train.CHECKPOINT
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert f"saved {ckpt}" in err
    assert _load(tmp_path)["progress"]["step"] >= 5


# ---------------------------------------------------------------------- one run per folder
def _popen(args: list[str], self_signal: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(train.SELF_SIGNAL_ENV, None)
    if self_signal:
        env[train.SELF_SIGNAL_ENV] = self_signal
    return subprocess.Popen([sys.executable, "-m", "models.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@needs_data
@pytest.mark.slow
def test_two_runs_started_together_on_one_folder_one_refuses(tmp_path: Path) -> None:
    # before: both printed "done" and exited 0, and the folder held the second run only
    first = _popen([*SMALL, "--seed", "1", "--out", str(tmp_path)])
    time.sleep(0.3)
    second = _popen([*SMALL, "--seed", "2", "--out", str(tmp_path)])
    results = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out, err))
    assert sorted(code for code, _, _ in results) == [0, 2], results
    (winner_out, _), (_, loser_err) = [(o, e) for code, o, e in sorted(results)]
    assert "done" in winner_out
    assert loser_err.count("\n") == 1 and "Traceback" not in loser_err, loser_err
    assert "in use by another run" in loser_err or "already holds a run" in loser_err
    seed = 1 if results[0][0] == 0 else 2
    assert _load(tmp_path)["args"]["seed"] == seed  # the folder holds the winner's run


@needs_data
def test_a_folder_in_use_is_refused_and_a_killed_run_does_not_keep_it(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # a run that stops itself (SIGSTOP) after step 2: alive, before its first checkpoint
    holder = _popen([*SMALL, "--out", str(tmp_path)], self_signal="STOP@2")
    try:
        _, status = os.waitpid(holder.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status
        assert not (tmp_path / train.CHECKPOINT).exists()
        err = _one_line_error([*SMALL, "--seed", "5", "--out", str(tmp_path)], capsys)
        assert f"--out '{tmp_path}' is in use by another run (process {holder.pid})" in err
        assert not (tmp_path / train.CHECKPOINT).exists()  # nothing was written
    finally:
        holder.kill()  # SIGKILL: the lock goes with the process
        holder.communicate()
    assert train.main([*SMALL[:6], "--steps", "4", "--eval-every", "4", "--no-progress",
                       "--out", str(tmp_path)]) == 0
    assert _load(tmp_path)["progress"]["step"] == 4


@needs_data
def test_new_and_resumed_runs_remove_temp_files_of_killed_saves(tmp_path: Path) -> None:
    short = [*SMALL[:6], "--steps", "4", "--eval-every", "4", "--no-progress", "--out",
             str(tmp_path)]
    tmp_path.mkdir(exist_ok=True)
    leftovers = [".checkpoint.npz.0123456789ab.tmp", ".metrics.csv.deadbeef.tmp",
                 ".metrics.json.00ff00ff.tmp", ".curves.png.a1b2c3d4.tmp"]
    foreign = [".notes.tmp", "mine.tmp", ".checkpoint.npz.not-hex.tmp", ".data.npz.abcdef12.tmp"]
    for name in leftovers + foreign:
        (tmp_path / name).write_bytes(os.urandom(1000))
    assert train.main(short) == 0  # a new run in a folder a killed first save left behind
    assert _temp_files(tmp_path) == sorted(foreign)
    for name in leftovers:
        (tmp_path / name).write_bytes(os.urandom(1000))
    assert train.main([*short, "--resume"]) == 0  # a finished run resumes as a no-op
    assert _temp_files(tmp_path) == sorted(foreign)


def _full_disk_for_saves_after(monkeypatch: pytest.MonkeyPatch, good_saves: int) -> None:
    """mg.save fails with ENOSPC part-way through every save after the first ``good_saves``."""
    real, saves = mio._write_array, []

    def write(zf, name, array):
        if name == mio.META:
            saves.append(name)
        if len(saves) > good_saves:
            with zf.open(name + ".npy", "w") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(zf, name, array)
    monkeypatch.setattr(mio, "_write_array", write)


def _full_disk_for_text_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing metrics fails with ENOSPC after the file was created (a 0-byte file)."""
    real = common.write_atomic

    def full(path, write):
        def no_space(f):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, no_space)
    monkeypatch.setattr(common, "write_atomic", full)


def _disk_full_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    status = train.main(argv)
    err = capsys.readouterr().err
    assert status == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "no space left on the device" in err and " free in " in err
    return err


@needs_data
def test_a_full_disk_ends_training_and_resume_in_one_line_keeping_the_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # before: a traceback (OSError), and a 0-byte .metrics.csv.<hex>.tmp was left behind
    argv = [*SMALL, "--out", str(tmp_path)]
    ckpt = tmp_path / train.CHECKPOINT
    with monkeypatch.context() as m:
        _full_disk_for_saves_after(m, good_saves=1)  # the checkpoint of step 8 fails
        err = _disk_full_error(argv, capsys)
    assert f"cannot write {ckpt}" in err and "at step 8" in err and "--resume" in err
    assert _load(tmp_path)["progress"]["step"] == 4 and _temp_files(tmp_path) == []

    with monkeypatch.context() as m:
        _full_disk_for_saves_after(m, good_saves=0)
        err = _disk_full_error([*argv, "--resume"], capsys)
    assert f"cannot write {ckpt}" in err and "the last good checkpoint" in err
    assert _load(tmp_path)["progress"]["step"] == 4 and _temp_files(tmp_path) == []

    with monkeypatch.context() as m:
        _full_disk_for_text_files(m)  # the checkpoint of step 8 is written, its metrics not
        err = _disk_full_error([*argv, "--resume"], capsys)
    assert f"cannot write {tmp_path / 'metrics.csv'}" in err
    assert _load(tmp_path)["progress"]["step"] == 8 and _temp_files(tmp_path) == []

    assert train.main([*argv, "--resume"]) == 0  # space again: the run completes
    assert _load(tmp_path)["progress"]["step"] == 30


# ---------------------------------------------------------------------- bad arguments
@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


BAD = [
    (["--model", "resnet"], "invalid choice: 'resnet'"),
    (["--model", "mlp", "--lr", "-0.1"], "--lr: expected a number > 0, got -0.1"),
    (["--model", "mlp", "--lr", "fast"], "--lr: expected a number > 0, got 'fast'"),
    (["--model", "mlp", "--epochs", "2", "--steps", "10"], "either --epochs N or --steps N"),
    (["--model", "mlp", "--epochs", "0"], "--epochs: expected a number >= 1"),
    (["--model", "mlp", "--eval-every", "-3"], "--eval-every: expected a number >= 1"),
    (["--model", "mlp", "--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["--model", "mlp", "--optimizer", "adam", "--momentum", "0.9"],
     "--momentum applies to --optimizer sgd only"),
    (["--model", "mlp", "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["--model", "mlp", "--bn-impl", "magic"], "invalid choice: 'magic'"),
    (["--model", "mlp", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--lr", "0.1"], "--model is required"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_give_one_line(argv: list[str], expected: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    status = train.main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("python -m models.train: error:"), err
    assert expected in err
    assert not (tmp_path / "run").exists()  # nothing was started


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    status = train.main(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_mnist_root_without_idx_files(empty_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    err = _one_line_error(["--model", "mlp", "--dataset", "mnist", "--data-root",
                           str(empty_dir), "--out", str(tmp_path / "run")], capsys)
    assert f"--data-root '{empty_dir}' has no mnist IDX files" in err
    assert "train-images-idx3-ubyte[.gz]" in err


def test_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _one_line_error(["--model", "mlp", "--data-root", str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "run")], capsys)
    assert "is not a folder" in err


def test_damaged_dataset_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"not an IDX file")
    err = _one_line_error(["--model", "mlp", "--dataset", "mnist", "--data-root",
                           str(tmp_path), "--out", str(tmp_path / "run")], capsys)
    assert "cannot read its files" in err and "not an IDX file" in err


@pytest.mark.skipif(mg.cuda_available(), reason="CuPy and a GPU are available here")
def test_cuda_without_cupy_or_gpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _one_line_error(["--model", "mlp", "--device", "cuda", "--out",
                           str(tmp_path / "run")], capsys)
    assert "--device cuda needs CuPy and a CUDA GPU" in err


@needs_data
def test_subset_sizes_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _one_line_error(["--model", "mlp", "--train-subset", "70000", "--out",
                           str(tmp_path / "a")], capsys)
    assert "--train-subset 70000 is larger than the 60000 examples" in err
    err = _one_line_error(["--model", "mlp", "--train-subset", "50", "--out",
                           str(tmp_path / "b")], capsys)
    assert "--batch-size 60 is larger than the 50 training examples" in err


def test_resume_needs_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    err = _one_line_error(["--model", "mlp", "--resume", "--out", str(tmp_path)], capsys)
    assert "--resume: there is no checkpoint.npz" in err


@needs_data
def test_resume_refuses_other_defining_arguments(tmp_path: Path, reference: dict,
                                                 capsys: pytest.CaptureFixture) -> None:
    mg.save(reference, tmp_path / train.CHECKPOINT)
    before = (tmp_path / train.CHECKPOINT).read_bytes()
    err = _one_line_error([*SMALL, "--out", str(tmp_path), "--resume", "--model", "cnn"],
                          capsys)
    assert "made with --model mlp-bn, not cnn" in err
    err = _one_line_error(["--out", str(tmp_path), "--resume", "--steps", "99"], capsys)
    assert "made with --epochs 3, not --steps 99" in err
    err = _one_line_error(["--out", str(tmp_path), "--resume", "--lr", "0.2"], capsys)
    assert "made with --lr 0.1, not 0.2" in err
    # and a new run will not overwrite it
    err = _one_line_error([*SMALL, "--out", str(tmp_path)], capsys)
    assert "already holds a run" in err
    assert (tmp_path / train.CHECKPOINT).read_bytes() == before


def test_bad_argument_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    proc = _cli(["--model", "mlp", "--epochs", "1", "--steps", "5", "--out", str(tmp_path)])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "either --epochs N or --steps N" in proc.stderr


# ---------------------------------------------------------------------- numbers
@needs_data
@pytest.mark.slow
def test_composed_and_fused_batchnorm_give_the_same_curve(tmp_path: Path) -> None:
    common = ["--model", "mlp-bn", "--train-subset", "600", "--test-subset", "500",
              "--steps", "30", "--eval-every", "5", "--no-progress"]
    curves = {}
    for impl in ("fused", "composed"):
        assert train.main([*common, "--bn-impl", impl, "--out", str(tmp_path / impl)]) == 0
        curves[impl] = _records(_load(tmp_path / impl))
    fused, composed = curves["fused"], curves["composed"]
    assert [r["step"] for r in fused] == [r["step"] for r in composed] == [5, 10, 15, 20, 25, 30]
    for f, c in zip(fused, composed):
        for key in ("train_loss", "test_loss"):
            assert f[key] == pytest.approx(c[key], rel=1e-4), (f["step"], key)
        # an argmax may flip for an example sitting on a decision boundary
        assert abs(f["test_acc"] - c["test_acc"]) <= 2 / 500
    # and the run really trained, so the curves compare something
    assert fused[-1]["test_loss"] < 0.7 * fused[0]["test_loss"]


@needs_data
@pytest.mark.slow
def test_bn_mlp_learns_a_subset(tmp_path: Path) -> None:
    out = tmp_path / "run"
    status = train.main(["--model", "mlp-bn", "--train-subset", "3000", "--test-subset", "1000",
                         "--epochs", "4", "--schedule", "cosine", "--no-progress",
                         "--out", str(out)])
    assert status == 0
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "step,epoch,lr,train_loss,train_acc,test_loss,test_acc,elapsed_s"
    assert len(metrics) == 1 + 4  # one row per epoch
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = _load(out)["progress"]["records"]
    assert [r["step"] for r in records] == [50, 100, 150, 200]
    # chance is 10%; a model whose gradients or BN were broken stays far below this
    assert records[-1]["test_acc"] > 0.78, records[-1]
    assert records[-1]["test_loss"] < records[0]["test_loss"]
