"""mg.save / mg.load: round trips, atomic writes, and refusing anything that needs pickle."""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile

import numpy as np
import pytest

import minigrad as mg
import minigrad.io as mio


class _Trap:
    """Unpickling this creates a folder: proof that pickle ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _same(a, b) -> None:
    """Structural equality that also checks types (tuple vs list, bool vs int, arrays)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert type(k) is type(next(kk for kk in b if kk == k))
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, mg.Tensor):
        assert (a.dtype, a.shape, a.requires_grad, a.name) == (b.dtype, b.shape,
                                                                b.requires_grad, b.name)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b)
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b
        if isinstance(a, float):
            assert math.copysign(1, a) == math.copysign(1, b)


def _rich_state():
    rng = np.random.default_rng(7)
    w = mg.tensor(rng.standard_normal((3, 4)), dtype=mg.float32, requires_grad=True, name="w")
    return {
        "model": {"0.weight": w, "0.bias": mg.zeros(3), "bn.num_batches": mg.tensor(7),
                  "mask": mg.tensor([True, False]), "img": mg.tensor(np.arange(6, dtype=np.uint8))},
        "optim": {"state": {0: {"step": 3, "exp_avg": mg.tensor(np.ones(4))}},
                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "nesterov": False,
                                    "params": [0, 1]}]},
        "rng": mg.random.get_state(),
        "numbers": [0, -1, 2**100, 1.5, -0.0, float("inf"), float("-inf"), float("nan"),
                    1 + 2j, True, False, None],
        "strings": ["", "héllo ✓", "{\"t\": \"tensor\"}"],
        "bytes": b"\x00\x01raw",
        "arrays": [np.arange(12, dtype=np.int16).reshape(3, 4).T,  # not contiguous
                   np.asfortranarray(rng.standard_normal((2, 3))),
                   np.zeros((0, 5), dtype=np.float64), np.array("text"), np.float16(2.5),
                   np.int64(-3), np.float64(0.1), np.bool_(True), np.str_("s")],
        "nested": ((1, (2, [3, {"k": ()}])), []),
        (1, "a"): "tuple key", 2.5: "float key", None: "none key", False: "bool key",
        "scalar_tensor": mg.tensor(3.25),
    }


def test_round_trip_preserves_structure_types_and_values(tmp_path):
    state = _rich_state()
    mg.save(state, tmp_path / "ck.npz")
    _same(state, mg.load(tmp_path / "ck.npz"))


def test_round_trip_compressed_is_smaller_for_compressible_data(tmp_path):
    state = {"zeros": mg.zeros(256, 256), "k": [1, 2]}
    mg.save(state, tmp_path / "plain.npz")
    mg.save(state, tmp_path / "small.npz", compress=True)
    assert os.path.getsize(tmp_path / "small.npz") < os.path.getsize(tmp_path / "plain.npz") / 10
    _same(state, mg.load(tmp_path / "small.npz"))


def test_loaded_tensors_are_independent_cpu_leaves(tmp_path):
    t = mg.tensor([1.0, 2.0], requires_grad=True)
    mg.save({"t": t}, str(tmp_path / "t.npz"))
    u = mg.load(str(tmp_path / "t.npz"))["t"]
    assert u.device == "cpu" and u.is_leaf and u.requires_grad
    (u * u).sum().backward()
    np.testing.assert_array_equal(u.grad.numpy(), [2.0, 4.0])
    mg.optim.SGD([u], lr=0.5).step()  # loaded arrays are writable: training can go on
    np.testing.assert_array_equal(u.numpy(), [0.0, 0.0])


def test_rng_state_round_trip_reproduces_draws(tmp_path):
    mg.manual_seed(123)
    mg.randn(5)
    mg.save({"rng": mg.random.get_state()}, tmp_path / "rng.npz")
    expected = mg.randn(4).numpy()
    mg.manual_seed(999)
    mg.random.set_state(mg.load(tmp_path / "rng.npz")["rng"])
    np.testing.assert_array_equal(mg.randn(4).numpy(), expected)


def test_file_is_a_plain_npz_readable_without_pickle(tmp_path):
    mg.save({"w": mg.ones(2, 3)}, tmp_path / "ck.npz")
    with np.load(tmp_path / "ck.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"__minigrad__", "arr_0"}
        header = json.loads(npz["__minigrad__"].tobytes())
        np.testing.assert_array_equal(npz["arr_0"], np.ones((2, 3), np.float32))
    assert header["format"] == "minigrad-checkpoint"
    assert header["tree"]["t"] == "dict"


def test_crash_mid_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    mg.save({"version": 1, "w": mg.ones(3)}, path)
    calls = []
    real = mio._write_array

    def failing(zf, name, array):
        calls.append(name)
        if len(calls) == 2:  # after the header, in the middle of the arrays
            raise OSError("disk full (simulated)")
        real(zf, name, array)

    monkeypatch.setattr(mio, "_write_array", failing)
    with pytest.raises(OSError, match="simulated"):
        mg.save({"version": 2, "w": mg.zeros(3), "v": mg.zeros(4)}, path)
    assert len(calls) == 2
    monkeypatch.undo()
    old = mg.load(path)
    assert old["version"] == 1
    np.testing.assert_array_equal(old["w"].numpy(), np.ones(3))
    assert os.listdir(tmp_path) == ["ck.npz"]  # the temporary file was removed


def test_save_replaces_the_file_and_keeps_the_folder_clean(tmp_path):
    path = tmp_path / "ck.npz"
    mg.save({"v": 1}, path)
    mg.save({"v": 2}, path)
    assert mg.load(path) == {"v": 2}
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_save_rejects_what_it_cannot_store(tmp_path):
    path = tmp_path / "x.npz"
    with pytest.raises(TypeError, match=r"obj\['a'\]\[1\].*function"):
        mg.save({"a": [1, lambda: 0]}, path)
    with pytest.raises(TypeError, match="objects"):
        mg.save({"a": np.array([{}, 1], dtype=object)}, path)
    with pytest.raises(TypeError, match="key of type"):
        mg.save({frozenset(): 1}, path)
    with pytest.raises(mg.ArgumentTypeError, match="cannot store"):
        mg.save([len], path)  # a TypeError that is also a MinigradError
    loop = []
    loop.append(loop)
    with pytest.raises(mg.CheckpointError, match="contains itself"):
        mg.save(loop, path)
    assert not path.exists() and os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mg.save({"a": 1}, tmp_path / "missing" / "x.npz")


def _error(path) -> str:
    with pytest.raises(ValueError) as info:
        mg.load(path)
    assert str(path) in str(info.value)  # every message names the file
    return str(info.value)


def test_load_rejects_garbage_empty_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(300))
    assert "not an .npz" in _error(garbage)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert "empty" in _error(empty)
    np.save(tmp_path / "single.npy", np.ones(3))
    assert "single .npy" in _error(tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        mg.load(tmp_path / "nope.npz")


def test_load_never_unpickles_a_pickle_file(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"w": _Trap(str(marker))}))
    assert "pickle" in _error(path)
    assert not marker.exists()


def test_load_refuses_object_arrays_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    header = json.dumps({"format": "minigrad-checkpoint", "version": 1,
                         "tree": {"t": "array", "k": "arr_0", "device": "cpu"}}).encode()
    path = tmp_path / "crafted.npz"
    np.savez(path, __minigrad__=np.frombuffer(header, np.uint8),
             arr_0=np.array([_Trap(str(marker))], dtype=object), allow_pickle=True)
    message = _error(path)
    assert "arr_0" in message and "pickle" in message
    assert not marker.exists()


def test_load_rejects_foreign_npz_and_torch_files(tmp_path, torch):
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    assert "not a minigrad checkpoint" in _error(tmp_path / "plain.npz")
    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")
    assert "pickled data" in _error(tmp_path / "model.pt")


def test_load_rejects_truncated_and_corrupted_files(tmp_path):
    good = tmp_path / "good.npz"
    mg.save({"w": mg.tensor(np.arange(1000, dtype=np.float32))}, good)
    raw = good.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 10, 30):
        short = tmp_path / f"short{cut}.npz"
        short.write_bytes(raw[:cut])
        _error(short)
    flipped = bytearray(raw)
    start = raw.index(b"\x93NUMPY", raw.index(b"arr_0.npy"))  # the array entry's data
    for i in range(start + 200, start + 260):
        flipped[i] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(flipped))
    assert "damaged" in _error(bad)


@pytest.mark.parametrize("header, expected", [
    (b"not json{", "not valid JSON"),
    (json.dumps({"format": "other", "version": 1}).encode(), "not a minigrad checkpoint"),
    (json.dumps({"format": "minigrad-checkpoint", "version": 99}).encode(), "version 99"),
    (json.dumps({"format": "minigrad-checkpoint", "version": 1,
                 "tree": {"t": "tensor", "k": "arr_7"}}).encode(), "missing array"),
    (json.dumps({"format": "minigrad-checkpoint", "version": 1,
                 "tree": {"t": "module"}}).encode(), "unknown node type"),
])
def test_load_rejects_bad_headers(tmp_path, header, expected):
    path = tmp_path / "bad.npz"
    np.savez(path, __minigrad__=np.frombuffer(header, np.uint8))
    assert expected in _error(path)


def test_zip_entries_are_what_numpy_writes(tmp_path):
    """The archive holds one .npy per entry, so any npz reader can inspect it."""
    mg.save([mg.ones(2), np.zeros(3)], tmp_path / "ck.npz")
    with zipfile.ZipFile(tmp_path / "ck.npz") as zf:
        assert sorted(zf.namelist()) == ["__minigrad__.npy", "arr_0.npy", "arr_1.npy"]


def test_device_tensors_are_saved_from_host_copies(tmp_path, device):
    t = mg.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    raw = mg.zeros(2, device=device)._data
    mg.save({"t": t, "raw": raw}, tmp_path / "d.npz")
    on_cpu = mg.load(tmp_path / "d.npz")
    assert on_cpu["t"].device == "cpu" and isinstance(on_cpu["raw"], np.ndarray)
    back = mg.load(tmp_path / "d.npz", device=device)
    assert back["t"].device == device and back["t"].requires_grad
    assert mg.backend.device_of(back["raw"]) == device
    np.testing.assert_array_equal(back["t"].numpy(), [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------- damaged and crafted files
def _crafted(path, tree, arrays=(), npy_headers=None, compression=zipfile.ZIP_STORED):
    """An .npz with a minigrad header holding ``tree``, the ``arrays`` as ``arr_i``, and
    ``npy_headers`` (name -> (header dict, data bytes)) written as given."""
    header = json.dumps({"format": "minigrad-checkpoint", "version": 1, "tree": tree}).encode()
    with zipfile.ZipFile(path, "w", compression) as zf:
        with zf.open("__minigrad__.npy", "w") as f:
            np.lib.format.write_array(f, np.frombuffer(header, np.uint8))
        for i, a in enumerate(arrays):
            with zf.open(f"arr_{i}.npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(a))
        for name, (npy, data) in (npy_headers or {}).items():
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, npy)
                f.write(data)
    return path


def _only_checkpoint_error(path) -> str:
    with pytest.raises(mg.CheckpointError) as info:
        mg.load(path)
    assert isinstance(info.value, ValueError) and str(path) in str(info.value)
    return str(info.value)


def test_single_byte_flips_give_only_the_documented_error_or_the_same_data(tmp_path):
    """Bit flips anywhere (zip headers, .npy headers, data, JSON) end in CheckpointError,
    or, where the flipped byte does not matter (a timestamp), in the very same data.
    Before, flips in a zip header's compression method raised NotImplementedError."""
    state = {"w": mg.tensor(np.arange(12.0).reshape(3, 4)), "n": [1, 2.5, 1 + 2j, b"ab"],
             "opt": {"state": {0: {"step": 3}}, "param_groups": [{"lr": 0.1, "params": [0]}]}}
    rng = np.random.default_rng(0)
    for compress in (False, True):
        good = tmp_path / f"good{compress}.npz"
        mg.save(state, good, compress=compress)
        raw = good.read_bytes()
        # the compression method of each local (offset 8) and central (offset 10) header,
        # then random positions
        spots = [i + 8 for i in range(len(raw)) if raw.startswith(b"PK\x03\x04", i)]
        spots += [i + 10 for i in range(len(raw)) if raw.startswith(b"PK\x01\x02", i)]
        spots += rng.integers(0, len(raw), 150).tolist()
        for n, spot in enumerate(spots):
            flipped = bytearray(raw)
            flipped[spot] ^= 1 << int(rng.integers(8))
            path = tmp_path / f"flip{n}.npz"
            path.write_bytes(bytes(flipped))
            try:
                loaded = mg.load(path)
            except mg.CheckpointError as exc:
                assert str(path) in str(exc)
            else:
                _same(loaded, mg.load(good))
            path.unlink()


@pytest.mark.parametrize("tree, arrays, expected", [
    ({"t": "complex", "re": {"t": "dict", "items": []}, "im": 1}, (), "complex"),
    ({"t": "complex", "re": True, "im": None}, (), "complex"),
    ({"t": "dict", "items": 5}, (), "not a list"),
    ({"t": "list", "items": {"a": 1}}, (), "not a list"),
    ({"t": "dict", "items": [[{"t": "tuple", "items": [{"t": "list", "items": []}]}, 1]]},
     (), "not hashable"),
    ({"t": "dict", "items": [[{"t": "dict", "items": []}, 1]]}, (), "key decodes to a dict"),
    ({"t": "tensor", "k": "arr_0", "name": {"x": 1}}, [np.ones(2)], "tensor node"),
    ({"t": "tensor", "k": "arr_0"}, [np.array(["a", "b"])], "tensor node"),
    ({"t": "tensor", "k": "arr_0", "requires_grad": "yes"}, [np.ones(2)], "tensor node"),
    ({"t": "bytes", "k": "arr_0"}, [np.ones(2)], "bytes node"),
    ({"t": "scalar", "k": "arr_0"}, [np.ones(2)], "scalar node"),
    ({"t": ["dict"]}, (), "unexpected node"),
    ({"t": "_Decoder"}, (), "unknown node type"),
    ({"t": "array", "k": {"a": 1}}, (), "missing array entry"),
    ({"t": "float", "v": ["nan"]}, (), "bad float value"),
    ([[[[[[[[[[[[[]]]]]]]]]]]]], (), "unexpected node"),
])
def test_crafted_headers_give_only_the_documented_error(tmp_path, tree, arrays, expected):
    # before: TypeError for complex(dict), iterating an int, or a dict name; a list built
    # from a dict's keys, and string tensors or float "bytes" returned without complaint
    path = _crafted(tmp_path / "crafted.npz", tree, arrays)
    assert expected in _only_checkpoint_error(path)


def test_declared_shapes_are_checked_against_the_entry_before_allocating(tmp_path):
    # 10**12 float64 in a 16-byte entry: before, numpy tried to allocate 8 TB (MemoryError)
    huge = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    path = _crafted(tmp_path / "huge.npz", {"t": "array", "k": "arr_0"},
                    npy_headers={"arr_0": (huge, bytes(16))})
    message = _only_checkpoint_error(path)
    assert "(1000000000000,)" in message and "holds 16 bytes" in message
    short = {"descr": "<f4", "fortran_order": False, "shape": (5,)}
    path = _crafted(tmp_path / "short.npz", {"t": "array", "k": "arr_0"},
                    npy_headers={"arr_0": (short, bytes(12))})
    assert "declares shape (5,)" in _only_checkpoint_error(path)
    objects = {"descr": "|O", "fortran_order": False, "shape": (1,)}
    path = _crafted(tmp_path / "objects.npz", {"t": "array", "k": "arr_0"},
                    npy_headers={"arr_0": (objects, bytes(8))})
    assert "pickle" in _only_checkpoint_error(path)


def test_a_small_file_cannot_inflate_past_the_documented_limit(tmp_path, monkeypatch):
    """A deflated entry of zeros expands about 1000 times. The default limit is
    max(MIN_LOAD_LIMIT, INFLATE_FACTOR x file size); a smaller MIN_LOAD_LIMIT makes the
    same check run on an 8 MiB bomb instead of a 1 GiB one."""
    monkeypatch.setattr(mio, "MIN_LOAD_LIMIT", 2**20, raising=False)
    n = 8 * 2**20
    bomb = {"descr": "|u1", "fortran_order": False, "shape": (n,)}
    path = _crafted(tmp_path / "bomb.npz", {"t": "array", "k": "arr_0"},
                    npy_headers={"arr_0": (bomb, bytes(n))}, compression=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 64 * 1024
    message = _only_checkpoint_error(path)
    assert f"declares {n} bytes" in message and "max_bytes=" in message
    assert mg.load(path, max_bytes=n + 1000).shape == (n,)  # allowed when asked for
    good = tmp_path / "good.npz"
    mg.save({"w": np.ones(1000)}, good)
    with pytest.raises(mg.CheckpointError, match="more than 100 bytes"):
        mg.load(good, max_bytes=100)
