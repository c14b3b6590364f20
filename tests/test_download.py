"""The downloader against a local HTTP server (127.0.0.1 only; no other network access)."""
import functools
import gzip
import hashlib
import http.server
import tarfile
import threading

import numpy as np
import pytest

from refbinn.data import (SOURCES, ChecksumError, DataFormatError, DownloadError, download,
                          load_cifar, load_mnist, verify, write_fake_cifar)

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


def test_interrupted_transfer_leaves_no_partial_file(tmp_path, serve, data_root):
    name = "train-images-idx3-ubyte.gz"
    srv, url = serve(data_root)
    srv.truncate["/mnist/" + name] = (data_root / "mnist" / name).read_bytes()
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="transfer ended after"):
        download("mnist", root=dest, base_url=url + "/mnist", progress=False)
    assert list((dest / "mnist").iterdir()) == []


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
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == []
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
    assert list((tmp_path / "c").iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


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
