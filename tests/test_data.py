"""DataLoader, TensorDataset, and the IDX readers behind MNIST / Fashion-MNIST.

Nothing here reaches beyond 127.0.0.1: downloads are served by a local http.server,
and every test runs with the download mirrors pointed at a closed local port.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading

import numpy as np
import pytest

import minigrad as mg
from minigrad.data import DataLoader, Dataset, TensorDataset, collate
from minigrad.data.datasets import MNIST, FashionMNIST, read_idx

SYSTEM_FASHION = "/usr/share/datasets/fashion-mnist"


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real cache, no MINIGRAD_DATA, no proxy, and no mirror but a dead local port."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("MINIGRAD_DATA", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    dead = _closed_port_url()
    monkeypatch.setenv("MINIGRAD_MNIST_MIRROR", dead)
    monkeypatch.setenv("MINIGRAD_FASHION_MNIST_MIRROR", dead)
    monkeypatch.setattr(MNIST, "timeout", 2.0)


# ------------------------------------------------------------------ DataLoader
def _xy(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64) * 10
    return x, y


def test_batches_are_slices_of_the_arrays():
    x, y = _xy(10)
    loader = DataLoader(TensorDataset(mg.tensor(x), y), batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    for k, (xb, yb) in enumerate(batches):
        assert isinstance(xb, mg.Tensor) and isinstance(yb, mg.Tensor)
        np.testing.assert_array_equal(xb.numpy(), x[4 * k:4 * k + 4])
        np.testing.assert_array_equal(yb.numpy(), y[4 * k:4 * k + 4])
        assert xb.dtype == np.float32 and yb.dtype == np.int64
    assert [len(b[1]) for b in batches] == [4, 4, 2]


def test_single_field_dataset_gives_bare_tensors():
    ds = TensorDataset([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert isinstance(ds[0], mg.Tensor) and ds[0].dtype == np.float32
    batches = list(DataLoader(ds, batch_size=2))
    assert all(isinstance(b, mg.Tensor) for b in batches)
    np.testing.assert_array_equal(batches[1].numpy(), [[5.0, 6.0]])


@pytest.mark.parametrize("n, bs", [(10, 4), (12, 4), (3, 5), (1, 1), (0, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_len_and_drop_last(n, bs, drop_last):
    loader = DataLoader(TensorDataset(np.zeros((n, 2))), batch_size=bs, drop_last=drop_last)
    sizes = [len(b) for b in loader]
    assert len(sizes) == len(loader)
    full, rest = divmod(n, bs)
    assert sizes == [bs] * full + ([] if drop_last or rest == 0 else [rest])


def _epoch(loader):
    return [b.numpy().astype(int).tolist() for b in loader]


def test_shuffle_with_seed_is_reproducible_and_changes_each_epoch():
    ds = TensorDataset(np.arange(50))
    a = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    b = DataLoader(ds, batch_size=8, shuffle=True, seed=3)
    a1, a2, b1, b2 = _epoch(a), _epoch(a), _epoch(b), _epoch(b)
    assert a1 == b1 and a2 == b2
    assert a1 != a2
    assert sorted(sum(a1, [])) == list(range(50))  # each epoch visits every example once
    assert _epoch(DataLoader(ds, batch_size=8, shuffle=True, seed=4)) != a1
    assert _epoch(DataLoader(ds, batch_size=8)) == [list(range(i, min(i + 8, 50)))
                                                     for i in range(0, 50, 8)]


def test_shuffle_without_seed_follows_manual_seed():
    ds = TensorDataset(np.arange(40))
    mg.manual_seed(11)
    first = _epoch(DataLoader(ds, batch_size=5, shuffle=True))
    mg.manual_seed(11)
    again = _epoch(DataLoader(ds, batch_size=5, shuffle=True))
    mg.manual_seed(12)
    other = _epoch(DataLoader(ds, batch_size=5, shuffle=True))
    assert first == again and first != other


def test_resume_mid_epoch_equals_an_uninterrupted_run(tmp_path):
    ds = TensorDataset(np.arange(23))
    mg.manual_seed(0)
    reference = DataLoader(ds, batch_size=4, shuffle=True, drop_last=True)
    uninterrupted = [_epoch(reference) for _ in range(3)]

    mg.manual_seed(0)
    loader = DataLoader(ds, batch_size=4, shuffle=True, drop_last=True)
    seen = [_epoch(loader)]
    partial = []
    for k, b in enumerate(loader):
        partial.append(b.numpy().tolist())
        if k == 1:
            mg.save({"loader": loader.state_dict()}, tmp_path / "ck.npz")
            break

    mg.manual_seed(999)  # the order must come from the checkpoint, not the global seed
    resumed = DataLoader(ds, batch_size=4, shuffle=True, drop_last=True)
    resumed.load_state_dict(mg.load(tmp_path / "ck.npz")["loader"])
    rest = _epoch(resumed)
    assert partial + rest == uninterrupted[1]
    assert len(rest) == len(resumed) - 2
    assert _epoch(resumed) == uninterrupted[2]
    assert seen[0] == uninterrupted[0]


def test_resume_after_the_last_batch_finishes_that_epoch_empty():
    ds = TensorDataset(np.arange(6))
    loader = DataLoader(ds, batch_size=2, shuffle=True, seed=1)
    expected_next = None
    for _ in loader:
        state = loader.state_dict()  # taken after the last batch too
    expected_next = _epoch(loader)
    resumed = DataLoader(ds, batch_size=2, shuffle=True, seed=1)
    resumed.load_state_dict(state)
    assert _epoch(resumed) == []  # the rest of epoch 0 is nothing
    assert _epoch(resumed) == expected_next


def test_an_abandoned_loop_starts_a_new_epoch():
    loader = DataLoader(TensorDataset(np.arange(12)), batch_size=3, shuffle=True, seed=5)
    for _ in loader:
        break
    assert loader.epoch == 0
    full = _epoch(loader)
    assert len(full) == 4 and loader.epoch == 2
    assert full == _epoch(_at_epoch(DataLoader(TensorDataset(np.arange(12)), batch_size=3,
                                               shuffle=True, seed=5), 1))


def _at_epoch(loader, epoch):
    loader.set_epoch(epoch)
    return loader


def test_an_unused_iterator_changes_nothing():
    loader = DataLoader(TensorDataset(np.arange(4)), batch_size=2, shuffle=True, seed=0)
    iter(loader)
    first = _epoch(loader)
    assert loader.epoch == 1
    assert first == _epoch(DataLoader(TensorDataset(np.arange(4)), batch_size=2, shuffle=True,
                                      seed=0))


def test_an_older_iterator_stops_working():
    loader = DataLoader(TensorDataset(np.arange(6)), batch_size=2)
    old = iter(loader)
    next(old)
    new = iter(loader)
    next(new)
    with pytest.raises(RuntimeError, match="superseded"):
        next(old)


class _NoItems(TensorDataset):
    def __getitem__(self, index):
        raise AssertionError("batched item by item")


class _Counting(Dataset):
    def __init__(self, n):
        self.data = np.arange(n, dtype=np.float32) * 2
        self.calls = 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        raise AssertionError("batched item by item")

    def get_batch(self, indices):
        self.calls += 1
        return self.data[indices], indices.astype(np.int64)


def test_array_backed_datasets_are_not_batched_item_by_item():
    x, y = _xy(9)
    got = list(DataLoader(_NoItems(x, y), batch_size=4, shuffle=True, seed=0))
    assert sorted(np.concatenate([b[1].numpy() for b in got]).tolist()) == y.tolist()
    ds = _Counting(10)
    batches = list(DataLoader(ds, batch_size=3, shuffle=True, seed=2))
    assert ds.calls == 4
    for values, idx in batches:
        np.testing.assert_array_equal(values.numpy(), idx.numpy() * 2)


class _Items(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return np.full((2, 2), i, dtype=np.float64), i, 0.5 * i, {"id": mg.tensor(i)}


def test_other_datasets_are_collated_item_by_item():
    batches = list(DataLoader(_Items(), batch_size=2))
    arr, ints, floats, d = batches[2]
    assert arr.shape == (1, 2, 2) and arr.dtype == np.float64
    np.testing.assert_array_equal(batches[0][0].numpy()[:, 0, 0], [0.0, 1.0])
    assert ints.dtype == np.int64 and ints.numpy().tolist() == [4]
    assert floats.dtype == np.float32  # Python floats become float32, as in mg.tensor
    np.testing.assert_array_equal(batches[1][3]["id"].numpy(), [2, 3])
    with pytest.raises(ValueError, match="same shape"):
        collate([np.zeros(2), np.zeros(3)])


def test_loader_puts_batches_on_the_requested_device(device):
    x, y = _xy(6)
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=4, device=device):
        assert xb.device == device and yb.device == device
    on_device = TensorDataset(mg.tensor(x, device=device), mg.tensor(y, device=device))
    xb, _ = next(iter(DataLoader(on_device, batch_size=4, shuffle=True, seed=0)))
    assert xb.device == device


def test_bad_arguments_are_reported():
    # each a MinigradError that keeps the builtin base code may catch
    ds = TensorDataset(np.zeros(4))
    with pytest.raises(mg.ArgumentError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(mg.ArgumentError, match="seed"):
        DataLoader(ds, shuffle=True, seed=-1)
    with pytest.raises(mg.ArgumentTypeError, match="Dataset"):
        DataLoader(42)
    with pytest.raises(mg.ShapeError, match=r"lengths \[3, 2\]"):
        TensorDataset(np.zeros(3), np.zeros(2))
    with pytest.raises(mg.ArgumentError, match="at least one"):
        TensorDataset()
    with pytest.raises(TypeError):
        Dataset()
    with pytest.raises(mg.IndexOutOfRangeError, match="out of range"):
        ds[4]
    with pytest.raises(mg.ArgumentTypeError, match="index must be an int"):
        ds[1.5]
    with pytest.raises(mg.ShapeError, match="cannot stack"):
        collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(mg.ArgumentTypeError, match="cannot batch examples of type"):
        collate([object(), object()])
    saved = DataLoader(ds, batch_size=2).state_dict()
    with pytest.raises(mg.ArgumentError, match="batch_size=2"):
        DataLoader(ds, batch_size=3).load_state_dict(saved)
    for error in (mg.ArgumentError, mg.ArgumentTypeError, mg.ShapeError,
                  mg.IndexOutOfRangeError):
        assert issubclass(error, mg.MinigradError)


def test_loader_load_state_dict_checks_everything_before_changing_anything():
    loader = DataLoader(TensorDataset(np.zeros(10)), batch_size=2, shuffle=True, seed=3)
    before = loader.state_dict()
    # before: seed was set, then int("x") raised a bare ValueError
    for bad, error, message in [({"epoch": "x", "batch": 0, "seed": 9}, mg.ArgumentTypeError,
                                 "epoch='x' is a str"),
                                ({"epoch": 1, "batch": 2.5, "seed": 9}, mg.ArgumentTypeError,
                                 "batch=2.5"),
                                ({"epoch": -1, "batch": 0, "seed": 9}, mg.ArgumentError,
                                 "epoch=-1"),
                                ({"epoch": 1, "batch": 6, "seed": 9}, mg.ArgumentError,
                                 r"batch=6 is outside 0..5"),
                                ({"batch": 0}, mg.ArgumentError, "missing keys"),
                                ([("epoch", 1)], mg.ArgumentTypeError, "expected a dict")]:
        with pytest.raises(error, match=message):
            loader.load_state_dict(bad)
        assert loader.state_dict() == before


def test_a_superseded_iterator_raises_a_minigrad_error():
    loader = DataLoader(TensorDataset(np.zeros(6)), batch_size=2)
    first = iter(loader)
    next(first)
    iter(loader)
    with pytest.raises(mg.InvalidStateError, match="superseded") as info:
        next(first)
    assert isinstance(info.value, RuntimeError)


# ------------------------------------------------------------------ IDX files
def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, payload: bytes, gz: bool) -> str:
    path = str(path) + (".gz" if gz else "")
    with open(path, "wb") as f:
        f.write(gzip.compress(payload) if gz else payload)
    return path


def _make_split(folder, split, n, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    os.makedirs(folder, exist_ok=True)
    _write(os.path.join(folder, f"{split}-images-idx3-ubyte"), _idx_bytes(images), gz)
    _write(os.path.join(folder, f"{split}-labels-idx1-ubyte"), _idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_raw_and_gzipped(tmp_path, gz):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(_write(tmp_path / "a", _idx_bytes(a), gz)), a)
    b = np.array([[-5, 70000], [1, 2]], dtype=np.int32)
    got = read_idx(_write(tmp_path / "b", _idx_bytes(b, 0x0C), gz))
    np.testing.assert_array_equal(got, b)
    c = np.array([1.5, -2.25], dtype=np.float32)
    np.testing.assert_array_equal(read_idx(_write(tmp_path / "c", _idx_bytes(c, 0x0D), gz)), c)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_a_folder(tmp_path, gz):
    train_x, train_y = _make_split(tmp_path, "train", 7, gz=gz, seed=1)
    test_x, test_y = _make_split(tmp_path, "t10k", 3, gz=gz, seed=2)
    train = MNIST(tmp_path, download=False)
    test = MNIST(str(tmp_path), train=False, download=False)
    assert (len(train), len(test)) == (7, 3)
    image, label = train[4]
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    np.testing.assert_allclose(image.numpy()[0], train_x[4] / 255.0, rtol=1e-6)
    assert label.dtype == np.int64 and int(label) == train_y[4]
    assert image.numpy().min() >= 0.0 and image.numpy().max() <= 1.0
    xb, yb = next(iter(DataLoader(test, batch_size=3)))
    assert xb.shape == (3, 1, 28, 28) and xb.dtype == np.float32 and yb.dtype == np.int64
    np.testing.assert_allclose(xb.numpy()[:, 0], test_x / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(yb.numpy(), test_y)


def _expect_bad(exc_type, match, path_in_message, **kwargs):
    with pytest.raises(exc_type, match=match) as info:
        MNIST(**kwargs)
    assert str(path_in_message) in str(info.value)


def test_corrupt_and_truncated_files_name_the_file(tmp_path):
    _make_split(tmp_path, "train", 4, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    labels = tmp_path / "train-labels-idx1-ubyte"
    good = images.read_bytes()

    images.write_bytes(b"\x00\x00\x07\x03" + good[4:])  # unknown type code
    _expect_bad(mg.DataFileError, "magic number", images, root=tmp_path, download=False)
    images.write_bytes(b"PK\x03\x04" + good[4:])
    _expect_bad(mg.DataFileError, "magic number", images, root=tmp_path, download=False)
    images.write_bytes(good[:-100])
    _expect_bad(mg.DataFileError, "wrong length", images, root=tmp_path, download=False)
    images.write_bytes(good + b"\x00")
    _expect_bad(mg.DataFileError, "wrong length", images, root=tmp_path, download=False)
    images.write_bytes(good[:10])
    _expect_bad(mg.DataFileError, "truncated", images, root=tmp_path, download=False)

    images.unlink()
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(good)[:-40])
    _expect_bad(mg.DataFileError, "gzip", gz, root=tmp_path, download=False)
    gz.unlink()

    other = np.zeros((5, 28, 28), np.uint8)  # 5 images, 4 labels
    images.write_bytes(_idx_bytes(other))
    _expect_bad(mg.DataFileError, "5 images but .* 4 labels", labels, root=tmp_path, download=False)
    images.write_bytes(_idx_bytes(np.zeros((4, 28, 27), np.uint8)))
    _expect_bad(mg.DataFileError, r"\(N, 28, 28\)", images, root=tmp_path, download=False)
    images.write_bytes(good)
    labels.write_bytes(_idx_bytes(np.array([1, 2, 3, 12], np.uint8)))
    _expect_bad(mg.DataFileError, "label 12", labels, root=tmp_path, download=False)


# ------------------------------------------------------------------ where the files are
def test_lookup_order(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _make_split(data / "mnist", "train", 2)
    _make_split(data, "train", 3)
    cache = tmp_path / "cache" / "minigrad" / "mnist"
    _make_split(cache, "train", 4)
    system = tmp_path / "system"
    _make_split(system, "train", 5)
    monkeypatch.setattr(FashionMNIST, "system_dirs", (str(system),))

    monkeypatch.setenv("MINIGRAD_DATA", str(data))
    assert len(MNIST(download=False)) == 2  # $MINIGRAD_DATA/mnist first
    assert len(FashionMNIST(download=False)) == 3  # no fashion-mnist/: $MINIGRAD_DATA itself
    for name in os.listdir(data / "mnist"):
        os.unlink(data / "mnist" / name)
    assert len(MNIST(download=False)) == 3
    monkeypatch.delenv("MINIGRAD_DATA")
    assert len(MNIST(download=False)) == 4  # then $XDG_CACHE_HOME/minigrad/mnist
    assert MNIST(download=False).root == str(cache)
    assert len(FashionMNIST(download=False)) == 5  # then the system folder
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _make_split(tmp_path / "home" / ".cache" / "minigrad" / "mnist", "train", 6)
    assert len(MNIST(download=False)) == 6  # ~/.cache without XDG_CACHE_HOME


def test_no_data_anywhere_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(FashionMNIST, "system_dirs", (str(tmp_path / "usr-share"),))
    with pytest.raises(FileNotFoundError) as info:
        FashionMNIST(download=False)
    message = str(info.value)
    for place in (tmp_path / "data" / "fashion-mnist", tmp_path / "data",
                  tmp_path / "cache" / "minigrad" / "fashion-mnist", tmp_path / "usr-share"):
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message and "MINIGRAD_DATA" in message
    assert "download=False" in message

    with pytest.raises(FileNotFoundError) as info:
        MNIST(train=False, download=True)  # the mirror is a closed local port
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message and "127.0.0.1" in message
    assert str(tmp_path / "cache" / "minigrad" / "mnist") in message
    assert "MINIGRAD_DATA" in message
    with pytest.raises(FileNotFoundError, match="nowhere"):
        MNIST(root=tmp_path / "nowhere", download=False)


class _Server:
    """A local http.server in a thread, serving one folder and counting requests."""

    def __init__(self, folder):
        counter = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                counter.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "served"
    arrays = _make_split(folder, "train", 6, seed=3)
    srv = _Server(folder)
    srv.arrays = arrays
    srv.md5 = {name: hashlib.md5((folder / name).read_bytes()).hexdigest()
               for name in os.listdir(folder)}
    yield srv
    srv.close()


def test_download_into_the_cache_with_checksums(tmp_path, monkeypatch, server):
    monkeypatch.setattr(MNIST, "md5", {**MNIST.md5, **server.md5})
    # the first mirror is dead, the second answers
    monkeypatch.setenv("MINIGRAD_MNIST_MIRROR", f"{_closed_port_url()},{server.url}")
    ds = MNIST()
    cache = tmp_path / "cache" / "minigrad" / "mnist"
    assert ds.root == str(cache)
    assert sorted(os.listdir(cache)) == ["train-images-idx3-ubyte.gz",
                                         "train-labels-idx1-ubyte.gz"]
    np.testing.assert_array_equal(ds.images, server.arrays[0])
    np.testing.assert_array_equal(ds.labels, server.arrays[1])
    assert len(server.requests) == 2
    MNIST()  # now found in the cache: no new request
    assert len(server.requests) == 2


def test_download_into_root_via_class_attribute(tmp_path, monkeypatch, server):
    monkeypatch.delenv("MINIGRAD_MNIST_MIRROR")
    monkeypatch.setattr(MNIST, "mirrors", (server.url,))
    monkeypatch.setattr(MNIST, "md5", {**MNIST.md5, **server.md5})
    ds = MNIST(root=tmp_path / "mine")
    assert len(ds) == 6 and ds.root == str(tmp_path / "mine")
    assert not (tmp_path / "cache").exists()


def test_download_with_a_wrong_checksum_keeps_nothing(tmp_path, monkeypatch, server):
    monkeypatch.setenv("MINIGRAD_MNIST_MIRROR", server.url)
    wrong = {name: "0" * 32 for name in server.md5}
    monkeypatch.setattr(MNIST, "md5", {**MNIST.md5, **wrong})
    with pytest.raises(FileNotFoundError, match="checksum mismatch") as info:
        MNIST()
    assert server.md5["train-images-idx3-ubyte.gz"] in str(info.value)
    cache = tmp_path / "cache" / "minigrad" / "mnist"
    assert not cache.exists() or os.listdir(cache) == []


# ------------------------------------------------------------------ the real thing
@pytest.mark.skipif(not os.path.isdir(SYSTEM_FASHION),
                    reason=f"Fashion-MNIST is not installed in {SYSTEM_FASHION} "
                           "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    test = FashionMNIST(train=False, download=False)  # found in the system folder
    assert test.root == SYSTEM_FASHION
    train = FashionMNIST(root=SYSTEM_FASHION, train=True, download=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    for ds in (train, test):
        assert set(np.unique(ds.labels).tolist()) == set(range(10))
        assert ds.labels.dtype == np.int64
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert train.classes[int(label)] == "Ankle boot"  # the first training image
    xb, yb = next(iter(DataLoader(test, batch_size=10000)))
    assert xb.shape == (10000, 1, 28, 28) and float(xb.max()) == 1.0 and float(xb.min()) == 0.0
    assert np.bincount(yb.numpy()).tolist() == [1000] * 10
