"""Data loaders, file-format errors, root search, transforms and toy data sets."""
import codecs
import gzip
import math
import os
import pickle
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refbinn.data import (CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, MNIST_STD, DataFormatError,
                          DatasetNotFound, augment_cifar, batches, candidate_roots, crop_flip,
                          default_root, describe_data, find_dataset, load_cifar, load_mnist, load_snelson,
                          normalize, normalize_with, normalized_black, permute_pixels,
                          permuted_mnist_tasks, pixel_permutations, read_batch, read_idx,
                          snelson_grid, split_indices, standardize, train_val_split, two_moons,
                          write_fake_cifar, write_idx)

# From /work/shared/data/README.md
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist(data_root):
    return load_mnist(data_root)


@pytest.fixture
def no_env_roots(tmp_path, monkeypatch):
    """Point REFBINN_DATA and the cache at empty folders so only what a test writes is found."""
    env, cache = tmp_path / "env", tmp_path / "xdg"
    monkeypatch.setenv("REFBINN_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return env, cache / "refbinn"


def write_fake_mnist(folder, n_train=6, n_test=4, n_train_labels=None, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    for prefix, n, n_lab in (("train", n_train, n_train_labels or n_train), ("t10k", n_test, n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", rng.integers(0, 10, n_lab, dtype=np.uint8))
    return folder


# -- MNIST and Snelson on the shared data ---------------------------------------------------

def test_mnist_shapes_dtypes_and_label_counts(mnist, data_root):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.int64
    assert np.bincount(mnist.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == TEST_COUNTS
    # The first labels of the canonical files: train starts 5, 0, 4; test starts 7, 2, 1.
    assert mnist.y_train[:3].tolist() == [5, 0, 4] and mnist.y_test[:3].tolist() == [7, 2, 1]
    assert mnist.x_train.max() == 255 and mnist.x_train.min() == 0
    assert mnist.source == data_root / "mnist"


def test_snelson_standardised_and_invertible(data_root):
    s = load_snelson(data_root)
    raw = np.load(s.source)                  # the root's copy, or the packaged one if it has none
    assert s.x.shape == (200, 1) and s.y.shape == (200, 1)
    np.testing.assert_allclose(s.x.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(s.y.std(0), 1, rtol=1e-12)
    np.testing.assert_allclose(s.x_stats.invert(s.x), raw["X"], rtol=1e-12)
    np.testing.assert_allclose(s.y_stats.invert(s.y), raw["Y"], rtol=1e-12)
    grid = snelson_grid()
    assert grid.shape == (301, 1) and grid[0, 0] == -3 and grid[-1, 0] == 10
    np.testing.assert_allclose(s.standardize_x(raw["X"]), s.x, rtol=1e-12)
    mean, std = s.unstandardize_y(s.y, np.ones_like(s.y))
    np.testing.assert_allclose(mean, raw["Y"], rtol=1e-12)
    np.testing.assert_allclose(std, raw["Y"].std(), rtol=1e-12)


# -- IDX format ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip_detects_gzip_by_magic(tmp_path, dtype, compress):
    a = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    # Misleading names: gzipped data without .gz, raw data with .gz.
    path = tmp_path / ("data.idx" if compress else "data.idx.gz")
    write_idx(path, a, compress=compress)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def _idx_bytes(shape=(4, 3), dtype="u1"):
    a = np.arange(np.prod(shape)).astype(dtype).reshape(shape)
    return bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, ">u4").tobytes() + a.tobytes()


@pytest.mark.parametrize("case, corrupt, message", [
    ("truncated", lambda b: b[:-3], "truncated"),
    ("truncated-gz", lambda b: gzip.compress(b[:-3]), "truncated"),
    ("truncated-gz-1", lambda b: gzip.compress(b[:-1]), "only 11 present"),
    ("short-header", lambda b: b[:6], "truncated"),
    ("tiny", lambda b: b[:2], "truncated"),
    ("mid-dimension", lambda b: gzip.compress(b[:10]), "declares 2 dimensions but ends after 1"),
    ("zero-dimensions", lambda b: b"\x00\x00\x08\x00\x07", "magic number"),
    ("wrong-magic", lambda b: b"\x00\x00\x07\x02" + b[4:], "magic number"),
    ("wrong-magic-gz", lambda b: gzip.compress(b"\x08\x03\x08\x02" + b[4:]), "magic number"),
    ("extra-bytes", lambda b: b + b"\x00", "does not match the header"),
    ("extra-bytes-gz", lambda b: gzip.compress(b + b"\x00\x01"), "does not match the header"),
    ("bad-gzip", lambda b: gzip.compress(b)[:-12], "bad gzip stream"),
    ("bad-gzip-crc", lambda b: gzip.compress(b)[:-8] + b"\x00" * 8, "bad gzip stream"),
    ("gzip-garbage", lambda b: b"\x1f\x8b" + b"not really gzip", "bad gzip stream"),
    # headers whose element count overflows int64 (65536**4 = 2**64; 4e9 * 4e9 > 2**63)
    ("huge-header", lambda b: b"\x00\x00\x08\x04" + np.full(4, 65536, ">u4").tobytes(), "the file has 20 bytes"),
    ("huge-header-gz", lambda b: gzip.compress(b"\x00\x00\x08\x02" + np.full(2, 4e9, ">u4").tobytes()),
     "too large to be real"),
])
def test_idx_corrupt_files_give_clear_errors(tmp_path, case, corrupt, message):
    path = tmp_path / f"{case}-idx1-ubyte"
    path.write_bytes(corrupt(_idx_bytes()))
    with pytest.raises(DataFormatError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("dtype", ["i2", "i4", "f4", "f8"])
def test_idx_reads_big_endian_values(tmp_path, dtype):
    """Bytes built by hand, independently of write_idx: the header and data are big-endian."""
    code = {"i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}[dtype]
    values = np.array([[1, -2, 300], [20000, 5, -1]]).astype(dtype)
    path = tmp_path / "be-idx2"
    path.write_bytes(bytes([0, 0, code, 2]) + np.array([2, 3], ">u4").tobytes()
                     + values.astype(">" + dtype).tobytes())
    np.testing.assert_array_equal(read_idx(path), values)


def test_write_idx_refuses_scalars_and_other_dtypes(tmp_path):
    with pytest.raises(ValueError, match="dimension"):
        write_idx(tmp_path / "a", np.uint8(3))
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "b", np.zeros(3, np.uint16))


def _replace_idx(folder, name, array):
    (folder / f"{name}.gz").unlink()
    write_idx(folder / f"{name}.gz", array)


@pytest.mark.parametrize("name, array, message", [
    ("train-images-idx3-ubyte", np.zeros((6, 784), np.uint8), r"uint8 images of shape \(N, H, W\)"),
    ("train-images-idx3-ubyte", np.zeros((6, 28, 28), np.int16), r"uint8 images of shape \(N, H, W\)"),
    ("t10k-labels-idx1-ubyte", np.zeros((4, 1), np.uint8), r"uint8 labels of shape \(N,\)"),
    ("t10k-labels-idx1-ubyte", np.array([0, 9, 10, 1], np.uint8), r"\[0, 10\), found 10"),
])
def test_mnist_malformed_split_is_refused(tmp_path, name, array, message):
    write_fake_mnist(tmp_path / "mnist")
    _replace_idx(tmp_path / "mnist", name, array)
    with pytest.raises(DataFormatError, match=message) as err:
        load_mnist(tmp_path)
    assert name in str(err.value)


def test_mnist_empty_test_split_and_gz_before_raw(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", n_test=0)
    d = load_mnist(tmp_path)
    assert d.x_test.shape == (0, 28, 28) and d.y_test.shape == (0,) and d.y_test.dtype == np.int64
    write_idx(folder / "train-labels-idx1-ubyte", np.full(6, 9, np.uint8))   # raw beside the .gz
    np.testing.assert_array_equal(load_mnist(tmp_path).y_train, d.y_train)


def test_mnist_mismatched_counts_and_missing_files(tmp_path):
    write_fake_mnist(tmp_path / "mnist", n_train=6, n_train_labels=5)
    with pytest.raises(DataFormatError, match="6 images .* but 5 labels"):
        load_mnist(tmp_path)
    write_fake_mnist(tmp_path / "fashion-mnist", gz=False)
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFound, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, kind="fashion-mnist")


def test_mnist_raw_files_and_fashion_kind(tmp_path):
    write_fake_mnist(tmp_path / "fashion-mnist", gz=False, seed=3)
    d = load_mnist(tmp_path, kind="fashion-mnist")
    assert d.x_train.shape == (6, 28, 28) and d.y_test.shape == (4,)
    with pytest.raises(ValueError, match="kind"):
        load_mnist(tmp_path, kind="kmnist")


# -- Data roots ------------------------------------------------------------------------------

def test_not_found_lists_every_place_and_how_to_get_it(no_env_roots):
    env, cache = no_env_roots
    with pytest.raises(DatasetNotFound) as err:
        load_mnist()
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(env / "mnist") in msg and str(cache / "mnist") in msg
    assert "refbinn download mnist" in msg and "REFBINN_DATA" in msg
    assert err.value.searched == [env / "mnist", cache / "mnist"]


def test_root_search_order(tmp_path, no_env_roots):
    env, cache = no_env_roots
    write_fake_mnist(cache / "mnist")
    assert find_dataset("mnist") == cache / "mnist"           # cache, when the env root lacks it
    write_fake_mnist(env / "mnist")
    assert find_dataset("mnist") == env / "mnist"             # REFBINN_DATA before the cache
    explicit = tmp_path / "explicit"
    with pytest.raises(DatasetNotFound) as err:               # an explicit root is searched alone
        find_dataset("mnist", explicit)
    assert err.value.searched == [explicit / "mnist"]
    write_fake_mnist(explicit / "mnist")
    assert find_dataset("mnist", explicit) == explicit / "mnist"
    assert str(env / "mnist") in describe_data() and "not found" in describe_data()


def test_default_root_and_a_file_named_like_the_folder(tmp_path, no_env_roots, monkeypatch):
    env, cache = no_env_roots
    assert default_root() == env                              # where `refbinn download` writes
    assert default_root(tmp_path / "x" / ".." / "y") == tmp_path / "y"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_root("~/data") == tmp_path / "data"
    env.mkdir()
    (env / "mnist").write_text("not a folder")                # skipped: a data set is a folder
    write_fake_mnist(cache / "mnist")
    assert find_dataset("mnist") == cache / "mnist"


def test_cache_root_without_env(tmp_path, monkeypatch):
    monkeypatch.delenv("REFBINN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # XDG: relative paths are invalid
    assert [r for r, _ in candidate_roots()] == [tmp_path / ".cache" / "refbinn"]
    with pytest.raises(ValueError, match="data set name"):
        find_dataset("imagenet")


# -- CIFAR -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, key, n_classes", [("cifar10", b"labels", 10),
                                                  ("cifar100", b"fine_labels", 100)])
def test_fake_cifar_round_trip(tmp_path, kind, key, n_classes):
    folder = write_fake_cifar(tmp_path, kind, n_train=23, n_test=7, seed=1)
    d = load_cifar(tmp_path, kind)
    assert d.x_train.shape == (23, 3, 32, 32) and d.x_test.shape == (7, 3, 32, 32)
    assert d.x_train.dtype == np.uint8 and d.y_train.dtype == np.int64
    assert 0 <= d.y_train.min() and d.y_train.max() < n_classes
    # Independent read of the test batch with plain pickle: rows are R|G|B planes, row-major.
    name = "test_batch" if kind == "cifar10" else "test"
    with open(folder / name, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert raw[b"data"].shape == (7, 3072) and raw[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(d.x_test[:, 1], raw[b"data"][:, 1024:2048].reshape(7, 32, 32))
    assert d.y_test.tolist() == raw[key]
    again = write_fake_cifar(tmp_path / "again", kind, 23, 7, seed=1)   # same seed, same data
    assert again == tmp_path / "again" / folder.name
    np.testing.assert_array_equal(load_cifar(tmp_path / "again", kind).x_train, d.x_train)


def test_cifar_label_depends_on_class_colour(tmp_path):
    # The fake images carry a class colour, so a 1-step CI run has signal to learn.
    d = load_cifar(write_fake_cifar(tmp_path, n_train=400, n_test=10).parent)
    means = d.x_train.reshape(400, 3, -1).mean(-1)           # (N, 3)
    by_class = np.stack([means[d.y_train == c].mean(0) for c in range(10)])
    assert np.ptp(by_class, axis=0).max() > 50


class _Boom:
    def __reduce__(self):
        return (os.mkdir, ("/nonexistent-refbinn-boom",))


class _BadCodec:
    def __reduce__(self):                       # an allowed global (_codecs.encode) with a bad codec
        return (codecs.encode, ("a", "no-such-codec"))


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


@pytest.mark.parametrize("obj, message", [
    ({b"data": _Boom(), b"labels": [0]}, "refusing global"),
    ([1, 2], "expected a dict"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "expected a dict"),
    ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"\[0, 10\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1.7, 2.9]}, "must be a list of ints"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["1", "2"]}, "must be a list of ints"),
    ({b"data": _BadCodec(), b"labels": [0]}, "not a readable CIFAR pickle"),
])
def test_cifar_bad_batches(tmp_path, obj, message):
    path = _dump(tmp_path / "data_batch_1", obj)
    with pytest.raises(DataFormatError, match=message) as err:
        read_batch(path, b"labels", 10)
    assert str(path) in str(err.value)


def test_cifar_truncated_pickle_and_missing_batch(tmp_path):
    folder = write_fake_cifar(tmp_path, n_train=10, n_test=5)
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:100])
    with pytest.raises(DataFormatError, match="test_batch"):
        load_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFound, match="data_batch_3"):
        load_cifar(tmp_path)


# -- Transforms ------------------------------------------------------------------------------

def test_normalize_values_and_dtype():
    x = np.array([[0, 255]], np.uint8)
    z = normalize(x, "mnist")
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z, [[-MNIST_MEAN / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD]], rtol=1e-6)
    img = np.full((2, 3, 4, 4), 255, np.uint8)
    zc = normalize(img, "cifar10")
    assert zc.dtype == np.float32 and zc.shape == img.shape
    expect = (1 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)
    np.testing.assert_allclose(zc[1, :, 2, 3], expect, rtol=1e-6)
    assert not np.allclose(normalize(img, "cifar100"), zc)
    np.testing.assert_allclose(normalized_black("cifar10"), -np.array(CIFAR10_MEAN) / CIFAR10_STD, rtol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        normalize_with(x.astype(np.float32), 0.5, 0.5)
    with pytest.raises(ValueError, match="per-channel"):
        normalize(np.zeros((2, 1, 4, 4), np.uint8), "cifar10")
    with pytest.raises(ValueError, match="kind"):
        normalize(x, "svhn")


def _crop_flip_loop(x, dy, dx, flip, pad, fill):
    """Slow per-image twin of crop_flip."""
    out = np.empty_like(x)
    h, w = x.shape[2:]
    for i in range(len(x)):
        p = np.stack([np.pad(x[i, k], pad, constant_values=f)
                      for k, f in enumerate(np.broadcast_to(fill, x.shape[1:2]))])
        win = p[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]        # shifted window of the padded image
        out[i] = win[:, :, ::-1] if flip[i] else win
    return out


@given(n=st.integers(0, 5), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       pad=st.integers(0, 4), seed=st.integers(0, 2**32 - 1))
def test_crop_flip_matches_per_image_windows(n, c, h, w, pad, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    dy, dx = rng.integers(0, 2 * pad + 1, n), rng.integers(0, 2 * pad + 1, n)
    flip = rng.random(n) < 0.5
    fill = rng.integers(0, 256, c) if seed % 2 else 7           # per channel or scalar
    got = crop_flip(x, dy, dx, flip, pad, fill=fill)
    assert got.shape == x.shape and got.dtype == x.dtype
    np.testing.assert_array_equal(got, _crop_flip_loop(x, dy, dx, flip, pad, fill))


def test_augment_cifar_seeded_and_varied():
    x = np.random.default_rng(0).integers(1, 256, (64, 3, 32, 32), dtype=np.uint8)
    a = augment_cifar(x, np.random.default_rng(5))
    b = augment_cifar(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment_cifar(x, np.random.default_rng(6)))
    # Centre offset, no flip: the identity; centre offset with flip: a mirror image.
    centre = np.full(64, 4)
    np.testing.assert_array_equal(crop_flip(x, centre, centre, np.zeros(64, bool)), x)
    np.testing.assert_array_equal(crop_flip(x, centre, centre, np.ones(64, bool)), x[..., ::-1])
    # Corner offset (0, 0): the first 4 rows are padding (zeros), the rest is x shifted down.
    c = crop_flip(x, np.zeros(64, int), np.zeros(64, int), np.zeros(64, bool))
    assert (c[:, :, :4] == 0).all() and (c[:, :, :, :4] == 0).all()
    np.testing.assert_array_equal(c[:, :, 4:, 4:], x[:, :, :28, :28])
    # Normalised images padded with normalised black equal normalising the padded uint8 crop.
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    np.testing.assert_allclose(augment_cifar(normalize(x, "cifar10"), rng_a, fill=normalized_black("cifar10")),
                               normalize(augment_cifar(x, rng_b), "cifar10"), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="offsets"):
        crop_flip(x[:1], [9], [0], [False])


def test_split_sizes_disjoint_and_seeded():
    tr, va = split_indices(60000, seed=0)
    assert len(tr) == 54000 and len(va) == 6000
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(60000))
    tr2, va2 = split_indices(60000, seed=np.random.default_rng(0))
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, split_indices(60000, seed=1)[1])
    assert len(split_indices(50000, seed=0)[1]) == 5000
    x = np.arange(20) * 10
    (xtr, ytr), (xva, yva) = train_val_split(x, np.arange(20), seed=3)
    assert len(xtr) == 18 and len(xva) == 2
    np.testing.assert_array_equal(xva, yva * 10)               # pairs stay together
    np.testing.assert_array_equal(train_val_split(x, x, seed=3).val[0], xva)
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(10, 1.0, seed=0)


@pytest.mark.parametrize("n, b, drop_last", [(10, 3, False), (10, 3, True), (9, 3, True), (5, 8, False)])
def test_batches_cover_every_example_once(n, b, drop_last):
    x, y = np.arange(n) * 2, np.arange(n)
    out = list(batches(x, y, b, np.random.default_rng(0), drop_last=drop_last))
    seen = np.concatenate([yb for _, yb in out]) if out else np.array([], int)
    for xb, yb in out:
        np.testing.assert_array_equal(xb, yb * 2)
    assert all(len(yb) == b for _, yb in out[:-1])
    expected = n - n % b if drop_last else n
    assert len(seen) == expected and len(np.unique(seen)) == expected
    if not drop_last:
        assert np.array_equal(np.sort(seen), np.arange(n))
        assert not np.array_equal(seen, np.arange(n)) or n < 3
    ordered = np.concatenate([yb for _, yb in batches(x, y, b, shuffle=False)])
    np.testing.assert_array_equal(ordered, np.arange(n))


def test_batches_bad_arguments():
    with pytest.raises(ValueError, match="batches: with shuffle=True, rng must be a numpy.random.Generator, got NoneType"):
        batches(np.arange(3), np.arange(3), 2)
    with pytest.raises(ValueError, match="same length"):
        batches(np.arange(3), np.arange(2), 2, shuffle=False)
    with pytest.raises(ValueError, match="batch_size"):
        batches(np.arange(3), None, 0, shuffle=False)


# -- Toy data --------------------------------------------------------------------------------

def test_two_moons_shape_balance_geometry():
    x, y = two_moons(rng=np.random.default_rng(0))
    assert x.shape == (200, 2) and y.shape == (200,) and np.bincount(y).tolist() == [100, 100]
    x2, y2 = two_moons(rng=np.random.default_rng(0))
    np.testing.assert_array_equal(x, x2)
    x0, y0 = two_moons(51, noise=0.0, rng=np.random.default_rng(1))
    np.testing.assert_allclose(np.hypot(*x0[y0 == 0].T), 1.0)                        # outer circle
    np.testing.assert_allclose(np.hypot(x0[y0 == 1, 0] - 1, x0[y0 == 1, 1] - 0.5), 1.0)  # shifted inner
    assert np.bincount(y0).tolist() == [25, 26]
    # With noise 0.1 the points lie off the circles by about noise (sd of the radial error).
    r = np.hypot(*x[y == 0].T) - 1
    assert abs(r.std() - 0.1) < 4 * 0.1 / np.sqrt(2 * 100)
    with pytest.raises(ValueError, match="noise"):
        two_moons(noise=-1, rng=np.random.default_rng(0))


def test_standardize():
    v = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], np.float32)
    z, stats = standardize(v)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[:, 0], [-np.sqrt(1.5), 0, np.sqrt(1.5)], rtol=1e-6)
    np.testing.assert_array_equal(z[:, 1], 0)                 # constant column: no NaN
    np.testing.assert_allclose(stats.invert(z), v, rtol=1e-6)


def test_pixel_permutations_seeded_distinct():
    p = pixel_permutations(784, 5, seed=3)
    assert p.shape == (5, 784)
    assert all(np.array_equal(np.sort(row), np.arange(784)) for row in p)
    np.testing.assert_array_equal(p, pixel_permutations(784, 5, seed=3))
    assert not np.array_equal(p, pixel_permutations(784, 5, seed=4))
    assert len({row.tobytes() for row in p}) == 5
    assert not any(np.array_equal(row, np.arange(784)) for row in p)   # task 1 is permuted too
    # Tiny case where repeats are likely: still distinct and never the identity.
    q = pixel_permutations(3, 5, seed=0)
    assert len({row.tobytes() for row in q}) == 5 and not (q == np.arange(3)).all(1).any()
    # 3! - 1 = 5 non-identity permutations exist: a sixth task is an error, not an endless redraw
    with pytest.raises(ValueError, match=r"n_tasks must be an integer in \[1, 5\], got 6"):
        pixel_permutations(3, 6, seed=0)
    with pytest.raises(ValueError, match="n_pixels must be an integer"):
        pixel_permutations(2.5, 1, seed=0)


def test_permuted_mnist_tasks():
    x = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    perms = permuted_mnist_tasks(x, 3, seed=11)
    np.testing.assert_array_equal(perms, pixel_permutations(784, 3, seed=11))
    np.testing.assert_array_equal(perms, permuted_mnist_tasks(784, 3, seed=11))
    np.testing.assert_array_equal(perms, permuted_mnist_tasks(x.reshape(7, -1), 3, seed=11))
    for p in perms:
        t = permute_pixels(x, p)
        assert t.shape == x.shape and t.dtype == x.dtype
        np.testing.assert_array_equal(t.reshape(7, -1)[:, np.argsort(p)], x.reshape(7, -1))
        np.testing.assert_array_equal(t.reshape(7, -1)[3, 5], x.reshape(7, -1)[3, p[5]])


@pytest.mark.parametrize("call,says", [
    (lambda: split_indices(10.7, seed=0), "split_indices: n must be an integer in [0, inf), got 10.7"),
    (lambda: split_indices(-1, seed=0), "split_indices: n must be an integer in [0, inf), got -1"),
    (lambda: split_indices(10, "0.1", seed=0), "val_fraction must be a real number, got '0.1'"),
    (lambda: train_val_split(1.0, np.arange(3), seed=0), "train_val_split: x and y must be arrays of the same length"),
    (lambda: batches(np.zeros((4, 2)), None, 2.5, shuffle=False), "batches: batch_size must be an integer in [1, inf), got 2.5"),
    (lambda: batches(np.zeros((4, 2)), None, 2, rng=0), "batches: with shuffle=True, rng must be a numpy.random.Generator, got int"),
    (lambda: crop_flip(np.zeros((1, 1, 2, 2)), [0], [0], [False], pad=1.5), "crop_flip: pad must be an integer in [0, inf), got 1.5"),
    (lambda: crop_flip(np.zeros((1, 1, 2, 2)), [0.5], [0], [False], pad=1), "crop_flip: dy and dx must be integer offsets, got float64"),
    (lambda: augment_cifar(np.zeros((1, 1, 2, 2)), None), "augment_cifar: rng must be a numpy.random.Generator, got NoneType"),
    (lambda: augment_cifar(np.zeros((1, 1, 2, 2)), np.random.default_rng(0), pad=-1), "augment_cifar: pad must be an integer in [0, inf), got -1"),
    (lambda: normalize(np.zeros(3, np.uint8), []), "normalize: kind must be one of"),
    (lambda: normalize_with(np.zeros(3, np.uint8), 0.0, 0.0), "normalize: mean must be finite and std finite and > 0"),
    (lambda: normalize_with(np.zeros(3, np.uint8), "a", 1.0), "normalize: mean and std must be real numbers, got 'a', 1.0"),
    (lambda: two_moons(2.5, rng=np.random.default_rng(0)), "two_moons: n must be an integer in [2, inf), got 2.5"),
    (lambda: two_moons(4, np.inf, rng=np.random.default_rng(0)), "two_moons: noise must be in [0, inf), got inf"),
    (lambda: two_moons(4, "0.1", rng=np.random.default_rng(0)), "two_moons: noise must be a real number, got '0.1'"),
    (lambda: two_moons(4, rng=None), "two_moons: rng must be a numpy.random.Generator, got NoneType"),
    (lambda: snelson_grid(2.5), "snelson_grid: n must be an integer in [1, inf), got 2.5"),
    (lambda: snelson_grid(3, math.nan), "snelson_grid: lo must be in (-inf, inf), got nan"),
    (lambda: permuted_mnist_tasks(784.5, 2, 0), "permuted_mnist_tasks: x must be an integer in [3, inf), got 784.5"),
    (lambda: permute_pixels(np.zeros((2, 4)), np.array([0, 0, 1, 2])), "permute_pixels: perm must be a permutation of the 4 pixels"),
    (lambda: permute_pixels(np.zeros((2, 4)), np.arange(3)), "permute_pixels: perm must be a permutation of the 4 pixels"),
])
def test_data_helpers_refuse_arguments_of_the_wrong_kind(call, says):
    """Each was truncated silently (int(10.7), int(2.5)), gave inf or repeated pixels silently, or
    failed deep inside with TypeError, AttributeError or IndexError."""
    with pytest.raises(ValueError, match=re.escape(says)):
        call()
