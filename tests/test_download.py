"""The downloader against a local HTTP server (127.0.0.1 only; no other network access)."""
import functools
import gzip
import hashlib
import http.server
import importlib
import os
import tarfile
import threading

import numpy as np
import pytest

from refbinn.data import (SNELSON_SHA256, SOURCES, Checksum, ChecksumError, DataFormatError,
                          DownloadError, download, load_cifar, load_mnist, packaged_file, read_idx,
                          verify, write_fake_cifar, write_idx)

# Canonical MD5s of the uncompressed MNIST files (/work/shared/data/README.md).
MNIST_PAYLOAD_MD5 = {"train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
                     "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
                     "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
                     "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637"}


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; paths listed in server.truncate get half their body, then a hang-up."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        cut = self.server.truncate.get(self.path)
        if cut is None:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", str(len(cut)))
        self.end_headers()
        self.wfile.write(cut[: len(cut) // 2])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def serve():
    """serve(folder) -> base URL of a server for that folder; shut down after the test."""
    servers = []

    def start(folder):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                              functools.partial(Handler, directory=str(folder)))
        srv.requests, srv.truncate = [], {}
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(srv)
        return srv, f"http://127.0.0.1:{srv.server_port}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def shared_mnist(data_root):
    return load_mnist(data_root)


def leftovers(folder):
    """Temporary files or folders a failed download might have left behind."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".part")


def test_pinned_mnist_checksums_match_canonical_md5(data_root):
    for name, checksum in SOURCES["mnist"].files.items():
        with gzip.open(data_root / "mnist" / name) as f:
            payload = f.read()
        assert hashlib.md5(payload).hexdigest() == MNIST_PAYLOAD_MD5[name]
        assert checksum.payload and hashlib.sha256(payload).hexdigest() == checksum.digest


def test_download_mnist_from_local_server(tmp_path, serve, data_root, shared_mnist):
    srv, url = serve(data_root)
    folder = download("mnist", root=tmp_path, base_url=url + "/mnist/", progress=False)
    assert folder == tmp_path / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(SOURCES["mnist"].files)
    got = load_mnist(tmp_path)
    for a, b in zip(got[:4], shared_mnist[:4]):
        np.testing.assert_array_equal(a, b)
    assert leftovers(tmp_path) == []
    # Present and verified: a second call fetches nothing.
    n = len(srv.requests)
    assert download("mnist", root=tmp_path, base_url=url + "/mnist/", progress=False) == folder
    assert len(srv.requests) == n == 4


def _mirror_with(tmp_path, data_root, name, body):
    """A copy of the shared mnist folder (links) in which file ``name`` is replaced by ``body``."""
    src = tmp_path / "server" / "mnist"
    src.mkdir(parents=True)
    for f in (data_root / "mnist").iterdir():
        (src / f.name).symlink_to(f)
    (src / name).unlink()
    (src / name).write_bytes(body)
    return tmp_path / "server"


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: gzip.compress(p[:-1] + bytes([(p[-1] + 1) % 256])), "sha256 of the uncompressed"),
    (lambda p: gzip.compress(p)[:-20], "bad gzip stream"),
])
def test_corrupt_server_file_raises_and_leaves_nothing(tmp_path, serve, data_root, corrupt, message):
    name = "train-labels-idx1-ubyte.gz"
    with gzip.open(data_root / "mnist" / name) as f:
        payload = f.read()
    _, url = serve(_mirror_with(tmp_path, data_root, name, corrupt(payload)))
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match=message):
        download("mnist", root=dest, base_url=url + "/mnist", progress=False)
    assert not (dest / "mnist" / name).exists()
    assert leftovers(dest) == []


def test_downloaded_files_follow_the_umask(tmp_path, serve, data_root):
    """mkstemp makes 0600 files; a download gives its files the mode open() would (issue 13)."""
    _, url = serve(data_root)
    old = os.umask(0o027)
    try:
        folder = download("mnist", root=tmp_path, base_url=url + "/mnist/", progress=False)
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {oct(0o640)}


def test_interrupted_transfer_leaves_no_partial_file(tmp_path, serve, data_root):
    name = "train-images-idx3-ubyte.gz"
    srv, url = serve(data_root)
    srv.truncate["/mnist/" + name] = (data_root / "mnist" / name).read_bytes()
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="transfer ended after"):
        download("mnist", root=dest, base_url=url + "/mnist", progress=False)
    assert not dest.exists()            # the folders the failed download made are gone too


def test_missing_server_file_is_a_download_error(tmp_path, serve):
    (tmp_path / "empty").mkdir()
    _, url = serve(tmp_path / "empty")
    with pytest.raises(DownloadError, match="404"):
        download("fashion-mnist", root=tmp_path / "dest", base_url=url, progress=False)
    assert leftovers(tmp_path / "dest") == []


def test_verify_accepts_a_raw_copy_and_names_both_digests(tmp_path, data_root):
    name = "t10k-labels-idx1-ubyte.gz"
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    with gzip.open(data_root / "mnist" / name) as f:
        raw.write_bytes(f.read())
    verify(raw, SOURCES["mnist"].files[name])                  # the payload of a raw file is itself
    with pytest.raises(ChecksumError) as err:
        verify(raw, SOURCES["mnist"].files["train-labels-idx1-ubyte.gz"])
    assert SOURCES["mnist"].files["train-labels-idx1-ubyte.gz"].digest in str(err.value)


def _fake_cifar_archive(tmp_path, kind="cifar10"):
    folder = write_fake_cifar(tmp_path / "src", kind, n_train=12, n_test=4, seed=2)
    served = tmp_path / "server"
    served.mkdir()
    archive = served / next(iter(SOURCES[kind].files))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return served, archive, hashlib.md5(archive.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_download_cifar_extracts_official_layout(tmp_path, serve, kind):
    served, archive, md5 = _fake_cifar_archive(tmp_path, kind)
    _, url = serve(served)
    dest = tmp_path / "dest"
    folder = download(kind, root=dest, base_url=url, checksums={archive.name: f"md5:{md5}"},
                      progress=False)
    np.testing.assert_array_equal(load_cifar(dest, kind).x_train, load_cifar(tmp_path / "src", kind).x_train)
    assert folder.parent == dest and not (dest / archive.name).exists()   # archive removed
    assert leftovers(dest) == []


def test_cifar_bad_checksum_unpinned_warning_and_unsafe_member(tmp_path, serve):
    served, archive, md5 = _fake_cifar_archive(tmp_path)
    _, url = serve(served)
    with pytest.raises(ChecksumError, match="md5"):
        download("cifar10", root=tmp_path / "a", base_url=url,
                 checksums={archive.name: "md5:" + "0" * 32}, progress=False)
    assert not (tmp_path / "a").exists()
    with pytest.warns(UserWarning, match="no checksum is pinned"):
        download("cifar10", root=tmp_path / "b", base_url=url, checksums={archive.name: None},
                 progress=False)
    assert (tmp_path / "b" / "cifar-10-batches-py" / "test_batch").is_file()
    # An archive with a member outside the expected folder is refused before extraction.
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(evil, arcname="../escaped.txt")
    with pytest.raises(DataFormatError, match="unexpected member"), pytest.warns(UserWarning):
        download("cifar10", root=tmp_path / "c", base_url=url, checksums={archive.name: None},
                 progress=False)
    assert not (tmp_path / "c").exists() and not (tmp_path / "escaped.txt").exists()


def test_bad_name():
    with pytest.raises(ValueError, match="fashion-mnist"):
        download("svhn", progress=False)


def test_download_snelson_from_local_server(tmp_path, serve, capsys):
    """`refbinn download snelson`: the packaged bytes served, fetched, verified; a changed byte fails."""
    from refbinn.cli import main
    from refbinn.data import SNELSON_SHA256, packaged_file
    served = tmp_path / "server"
    served.mkdir()
    body = packaged_file("snelson").read_bytes()
    (served / "snelson1d.npz").write_bytes(body)
    srv, url = serve(served)
    dest = tmp_path / "dest"
    assert SOURCES["snelson"].files["snelson1d.npz"].digest == SNELSON_SHA256
    assert main(["download", "snelson", "--data-root", str(dest), "--base-url", url]) == 0
    assert (dest / "snelson" / "snelson1d.npz").read_bytes() == body
    assert "snelson: ready in" in capsys.readouterr().out
    assert download("snelson", root=dest, base_url=url, progress=False) == dest / "snelson"
    assert srv.requests == ["/snelson1d.npz"]                   # present and verified: not fetched again
    (served / "snelson1d.npz").write_bytes(body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(ChecksumError, match="sha256"):
        download("snelson", root=tmp_path / "other", base_url=url, progress=False)
    assert leftovers(tmp_path / "other") == [] and not (tmp_path / "other" / "snelson" / "snelson1d.npz").exists()


# -- what a second run finds in place, mirrors, overrides, hostile archives -----------------------

def _snelson_server(tmp_path, serve, name="server", body=None):
    served = tmp_path / name
    served.mkdir()
    (served / "snelson1d.npz").write_bytes(packaged_file("snelson").read_bytes() if body is None else body)
    return serve(served)


def test_interrupt_during_download_leaves_nothing(tmp_path, serve, monkeypatch):
    """Ctrl-C (a BaseException, not an Exception) still removes the .part file and new folders."""
    def interrupted(*args):
        raise KeyboardInterrupt
    _, url = _snelson_server(tmp_path, serve)
    monkeypatch.setattr(importlib.import_module("refbinn.data.download"), "verify", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download("snelson", root=tmp_path / "dest", base_url=url, progress=False)
    assert not (tmp_path / "dest").exists()


def test_mirrors_are_tried_in_order(tmp_path, serve, monkeypatch):
    (tmp_path / "empty").mkdir()
    dead, dead_url = serve(tmp_path / "empty")
    live, live_url = _snelson_server(tmp_path, serve)
    monkeypatch.setitem(SOURCES, "snelson", SOURCES["snelson"]._replace(mirrors=(dead_url, live_url)))
    folder = download("snelson", root=tmp_path / "dest", progress=False)
    assert (folder / "snelson1d.npz").read_bytes() == packaged_file("snelson").read_bytes()
    assert dead.requests == live.requests == ["/snelson1d.npz"]


def test_present_corrupt_file_is_replaced(tmp_path, serve):
    srv, url = _snelson_server(tmp_path, serve)
    (tmp_path / "dest" / "snelson").mkdir(parents=True)
    (tmp_path / "dest" / "snelson" / "snelson1d.npz").write_bytes(b"not the data")
    folder = download("snelson", root=tmp_path / "dest", base_url=url, progress=False)
    assert (folder / "snelson1d.npz").read_bytes() == packaged_file("snelson").read_bytes()
    assert srv.requests == ["/snelson1d.npz"]


def _fake_mnist_payloads(folder, seed=0):
    """Four small raw IDX files in ``folder``: (payload Checksums by .gz name, arrays by raw name)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    sums, arrays = {}, {}
    for name in SOURCES["mnist"].files:
        shape = (3, 28, 28) if "images" in name else (3,)
        arrays[name[:-3]] = rng.integers(0, 10, shape, dtype=np.uint8)
        raw = write_idx(folder / name[:-3], arrays[name[:-3]])
        sums[name] = Checksum("sha256", hashlib.sha256(raw.read_bytes()).hexdigest(), True)
    return sums, arrays


def test_verified_raw_copies_are_kept(tmp_path, serve):
    sums, _ = _fake_mnist_payloads(tmp_path / "dest" / "mnist")
    (tmp_path / "empty").mkdir()
    srv, url = serve(tmp_path / "empty")                       # any request would be a 404
    download("mnist", root=tmp_path / "dest", base_url=url, checksums=sums, progress=False)
    assert srv.requests == []


def test_corrupt_gz_beside_a_verified_raw_copy_is_fetched_again(tmp_path, serve):
    """The loader reads the .gz first, so a raw copy must not vouch for a bad .gz beside it."""
    name = "train-labels-idx1-ubyte.gz"
    sums, arrays = _fake_mnist_payloads(tmp_path / "dest" / "mnist")
    write_idx(tmp_path / "dest" / "mnist" / name, arrays[name[:-3]][::-1].copy())   # valid gzip, other data
    (tmp_path / "server").mkdir()
    write_idx(tmp_path / "server" / name, arrays[name[:-3]])
    srv, url = serve(tmp_path / "server")
    download("mnist", root=tmp_path / "dest", base_url=url, checksums=sums, progress=False)
    assert srv.requests == ["/" + name]
    np.testing.assert_array_equal(load_mnist(tmp_path / "dest").y_train, arrays[name[:-3]])
    assert read_idx(tmp_path / "dest" / "mnist" / name).tolist() == arrays[name[:-3]].tolist()


def test_cifar_incomplete_folder_and_present_archive(tmp_path, serve):
    served, archive, md5 = _fake_cifar_archive(tmp_path)
    (tmp_path / "empty").mkdir()
    srv, url = serve(tmp_path / "empty")                       # any request would be a 404
    (tmp_path / "a" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DownloadError, match="lacks"):
        download("cifar10", root=tmp_path / "a", base_url=url, progress=False)
    # An archive already in the root that verifies is extracted, not fetched, and kept.
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / archive.name).write_bytes(archive.read_bytes())
    folder = download("cifar10", root=tmp_path / "b", base_url=url, checksums={archive.name: f"md5:{md5}"},
                      progress=False)
    assert (folder / "test_batch").is_file() and (tmp_path / "b" / archive.name).is_file()
    assert srv.requests == []


def _tar_gz(path, members):
    """Write a tar.gz of (name, TarInfo type, link target) members with empty bodies."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)


@pytest.mark.parametrize("members, message", [
    ([("cifar-10-batches-py", tarfile.DIRTYPE, ""),
      ("cifar-10-batches-py/test_batch", tarfile.SYMTYPE, "data_batch_1")], "unexpected member"),
    ([], "no folder cifar-10-batches-py/"),
    ([("cifar-10-batches-py", tarfile.REGTYPE, "")], "no folder cifar-10-batches-py/"),
    (None, "unreadable tar.gz"),
])
def test_cifar_bad_archive_is_refused_and_leaves_nothing(tmp_path, serve, members, message):
    (tmp_path / "server").mkdir()
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    if members is None:
        archive.write_bytes(gzip.compress(b"not a tar file"))
    else:
        _tar_gz(archive, members)
    _, url = serve(tmp_path / "server")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(DataFormatError, match=message):
        download("cifar10", root=tmp_path / "dest", base_url=url, checksums={archive.name: f"md5:{md5}"},
                 progress=False)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("checksums, message", [
    ({"snelson.npz": None}, r"checksums keys must be among \['snelson1d.npz'\]"),
    ({"snelson1d.npz": "nosuch:00"}, "checksums values"),
    ({"snelson1d.npz": "shake_128:00"}, "checksums values"),
    ({"snelson1d.npz": "00ff"}, "checksums values"),
])
def test_bad_checksum_overrides_are_refused_before_any_request(tmp_path, serve, checksums, message):
    srv, url = _snelson_server(tmp_path, serve)
    with pytest.raises(ValueError, match=message):
        download("snelson", root=tmp_path / "dest", base_url=url, checksums=checksums, progress=False)
    assert srv.requests == [] and not (tmp_path / "dest").exists()


def test_checksum_override_in_upper_case_hex(tmp_path, serve):
    _, url = _snelson_server(tmp_path, serve)
    folder = download("snelson", root=tmp_path / "dest", base_url=url,
                      checksums={"snelson1d.npz": "sha256:" + SNELSON_SHA256.upper()}, progress=False)
    assert (folder / "snelson1d.npz").is_file()
