"""The Snelson set shipped inside refbinn: checksum, values, and the loader's fallback to it."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from refbinn.data import (SNELSON_SHA256, DataFormatError, describe_data, load_snelson,
                          packaged_file)

# the project's offline data folder: REFBINN_DATA when it has the checksum list, else ../shared/data
SHARED = next((r for r in (Path(os.environ.get("REFBINN_DATA") or "/nonexistent"),
                           Path(__file__).resolve().parents[2] / "shared" / "data")
               if (r / "SHA256SUMS").is_file()), Path(__file__).resolve().parents[2] / "shared" / "data")


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def no_data_root(tmp_path, monkeypatch):
    """No REFBINN_DATA and an empty per-user cache: a machine without a data folder."""
    monkeypatch.delenv("REFBINN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_packaged_copy_has_the_pinned_checksum_and_shape():
    path = packaged_file("snelson")
    assert path is not None and path.name == "snelson1d.npz"
    assert sha256(path) == SNELSON_SHA256
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["X", "Y"]
        assert f["X"].shape == f["Y"].shape == (200, 1) and f["X"].dtype == np.float64
    assert packaged_file("mnist") is None


def test_packaged_copy_equals_the_shared_copy():
    shared = SHARED / "snelson" / "snelson1d.npz"
    if not shared.is_file():
        pytest.skip(f"{shared} not found (the shared data folder is not beside the repository)")
    sums = dict(line.split()[::-1] for line in (SHARED / "SHA256SUMS").read_text().splitlines())
    assert sums["snelson/snelson1d.npz"] == sha256(shared) == sha256(packaged_file("snelson"))
    with np.load(shared) as a, np.load(packaged_file("snelson")) as b:
        np.testing.assert_array_equal(a["X"], b["X"])
        np.testing.assert_array_equal(a["Y"], b["Y"])


def test_loader_falls_back_to_the_packaged_copy(no_data_root):
    s = load_snelson()
    assert s.source == packaged_file("snelson")
    with np.load(s.source) as raw:
        np.testing.assert_allclose(s.x_stats.invert(s.x), raw["X"], rtol=1e-12)
    # an explicit root without snelson/ (or with an empty snelson/) reads the same bytes
    assert load_snelson(no_data_root).source == s.source
    (no_data_root / "snelson").mkdir()
    assert load_snelson(no_data_root).source == s.source
    assert "packaged copy" in describe_data()


def test_a_data_roots_copy_comes_first_and_a_bad_one_is_an_error(no_data_root):
    folder = no_data_root / "snelson"
    folder.mkdir()
    x = np.linspace(0.0, 1.0, 5)[:, None]
    np.savez(folder / "snelson1d.npz", X=x, Y=2 * x)
    s = load_snelson(no_data_root)
    assert s.source == folder / "snelson1d.npz" and s.x.shape == (5, 1)
    (folder / "snelson1d.npz").write_bytes(b"not an npz")
    with pytest.raises(DataFormatError, match="snelson1d.npz"):
        load_snelson(no_data_root)
