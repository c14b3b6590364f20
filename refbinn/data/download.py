"""Download MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and Snelson: verified, written atomically.

Every file is streamed into a temporary file in its destination folder, flushed
and fsync'ed, verified, and only then renamed onto its final name with
``os.replace`` (atomic on POSIX and Windows). An interrupted, short or corrupt
download therefore never appears under the final name, and any failure removes
the temporary file. CIFAR archives are extracted into a temporary folder that
is renamed into place the same way.

What is verified, and why
-------------------------
- MNIST: the SHA-256 of each file's *uncompressed* IDX payload. Copies of MNIST
  are often re-gzipped (same content, different .gz bytes), and a digest of
  the .gz bytes would reject them. The four values below were computed from
  copies whose uncompressed MD5s equal the canonical ones published for MNIST
  (listed beside them), so any correct copy passes, gzipped or raw.
- Fashion-MNIST: the MD5 of each .gz file, as published by Zalando Research.
- CIFAR-10 / CIFAR-100: the MD5 of the .tar.gz archive, as published on the
  CIFAR page (https://www.cs.toronto.edu/~kriz/cifar.html).
- Snelson: the SHA-256 of ``snelson1d.npz``, equal to the copy refbinn ships.

MD5 detects corruption, not a malicious mirror. A checksum can be overridden
(another mirror, a test server) through ``checksums``; mapping a file to None
downloads it unverified and warns.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from ..checks import check_range
from ..io import new_file_mode
from .cifar import LAYOUT
from .errors import ChecksumError, DataFormatError, DownloadError
from .idx import GZIP_MAGIC
from .packaged import SNELSON_SHA256
from .root import DATASETS, default_root

CHUNK = 1 << 20


class Checksum(NamedTuple):
    """An expected digest of a file's bytes, or of its gunzipped payload.

    Attributes
    ----------
    algorithm : str
        A ``hashlib`` name: "sha256", "md5".
    digest : str
        Lower-case hex.
    payload : bool
        Digest of the gunzipped payload (a raw, ungzipped file is its own payload).
    """

    algorithm: str
    digest: str
    payload: bool = False


class Source(NamedTuple):
    """Where a data set comes from.

    Attributes
    ----------
    mirrors : tuple of str
        Base URLs, tried in order.
    files : dict of str -> Checksum
        File name -> expected digest.
    archive : bool
        The single file is a tar.gz to extract into the data root.
    """

    mirrors: tuple
    files: dict
    archive: bool = False


SOURCES = {
    "mnist": Source(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {   # payload MD5s (canonical): 6bbc9ace..., a25bea73..., 2646ac64..., 27ae3e4e...
            "train-images-idx3-ubyte.gz": Checksum(
                "sha256", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", True),
            "train-labels-idx1-ubyte.gz": Checksum(
                "sha256", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", True),
            "t10k-images-idx3-ubyte.gz": Checksum(
                "sha256", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", True),
            "t10k-labels-idx1-ubyte.gz": Checksum(
                "sha256", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", True),
        }),
    "fashion-mnist": Source(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        {"train-images-idx3-ubyte.gz": Checksum("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
         "train-labels-idx1-ubyte.gz": Checksum("md5", "25c81989df183df01b3e8a0aad5dffbe"),
         "t10k-images-idx3-ubyte.gz": Checksum("md5", "bef4ecab320f06d8554ea6380940ec79"),
         "t10k-labels-idx1-ubyte.gz": Checksum("md5", "bb300cfdad3c16e7a12a480ee83cd310")}),
    "cifar10": Source(
        ("https://www.cs.toronto.edu/~kriz/",),
        {"cifar-10-python.tar.gz": Checksum("md5", "c58f30108f718f92721af3b95e74349a")}, True),
    "cifar100": Source(
        ("https://www.cs.toronto.edu/~kriz/",),
        {"cifar-100-python.tar.gz": Checksum("md5", "eb9058c3a382ffc7106e4002c42a8d85")}, True),
    # GPflux's copy (Apache-2.0), first at the commit that added it, then its main branch;
    # the same bytes as the copy refbinn ships (refbinn/data/packaged.py).
    "snelson": Source(
        ("https://raw.githubusercontent.com/secondmind-labs/GPflux/"
         "f625cb298ab987e7144b8642eb90089d40b6e78f/tests/",
         "https://raw.githubusercontent.com/secondmind-labs/GPflux/develop/tests/"),
        {"snelson1d.npz": Checksum("sha256", SNELSON_SHA256)}),
}


def _say(progress, msg):
    if progress:
        print(f"refbinn: {msg}", file=sys.stderr)


def _as_checksum(value):
    """Checksum, None, or a string "algorithm:hexdigest" (a digest of the file's bytes)."""
    if value is None or isinstance(value, Checksum):
        return value
    algorithm, sep, digest = str(value).partition(":")
    # shake_* digests have no fixed length: hexdigest() needs one, so they cannot be pinned.
    if not sep or algorithm not in hashlib.algorithms_available or algorithm.startswith("shake_"):
        raise ValueError(f"download: checksums values must be a Checksum, None or 'algorithm:hexdigest' "
                         f"with a fixed-length hashlib algorithm, got {value!r}")
    return Checksum(algorithm, digest.lower())


def file_digest(path, algorithm, payload=False):
    """Hex digest of a file's bytes, or of its gunzipped bytes when ``payload`` and gzipped.

    Parameters
    ----------
    path : str or path-like
    algorithm : str
        A ``hashlib`` name.
    payload : bool
        Digest the gunzipped bytes of a gzipped file (a raw file is digested as is).

    Returns
    -------
    str
        Lower-case hex.

    Raises
    ------
    ChecksumError
        ``payload`` and the gzip stream is corrupt.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as raw:
        gz = payload and raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        try:
            while chunk := stream.read(CHUNK):
                h.update(chunk)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise ChecksumError(f"{path}: cannot verify, bad gzip stream: {e}") from e
    return h.hexdigest()


def verify(path, checksum, label=None):
    """Raise ChecksumError unless ``path`` matches ``checksum``; warn when checksum is None.

    Parameters
    ----------
    path : str or path-like
    checksum : Checksum, "algorithm:hexdigest" or None
    label : str, optional
        Names the file in messages (default: the path).
    """
    label = label or str(path)
    checksum = _as_checksum(checksum)             # 'sha256:...' too, not only a Checksum
    if checksum is None:
        warnings.warn(f"no checksum is pinned for {label}: accepted unverified", stacklevel=3)
        return
    got = file_digest(path, checksum.algorithm, checksum.payload)
    if got != checksum.digest:
        what = "uncompressed contents" if checksum.payload else "file"
        raise ChecksumError(f"{label}: {checksum.algorithm} of the {what} is {got}, "
                            f"expected {checksum.digest}")


def _fsync_dir(folder):
    """Make the rename durable; not every platform can open a folder, hence best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fetch(url, dest, checksum, progress=True, timeout=60):
    """Download ``url`` to ``dest`` through a verified temporary file in dest's folder.

    Parameters
    ----------
    url : str
    dest : str or path-like
        The final name; its folder must exist.
    checksum : Checksum or None
        None accepts the bytes unverified, with a warning.
    progress : bool
        Show a progress bar on stderr.
    timeout : float
        Seconds before a stalled connection fails.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    DownloadError
        The transfer failed or delivered fewer bytes than its Content-Length.
    ChecksumError
        The bytes arrived but do not match ``checksum``.
    """
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    expected = int(length) if length and length.isdigit() else None
                    got = 0
                    with tqdm(total=expected, unit="B", unit_scale=True, desc=dest.name,
                              disable=not progress, file=sys.stderr, leave=False) as bar:
                        while chunk := resp.read(CHUNK):
                            out.write(chunk)
                            got += len(chunk)
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(f"{url}: {type(e).__name__}: {e}") from e
            # http.client returns b"" when the server closes early, so count the bytes.
            if expected is not None and got != expected:
                raise DownloadError(f"{url}: transfer ended after {got} of {expected} bytes")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, new_file_mode())              # mkstemp made it 0600; the umask decides
        verify(tmp, checksum, url)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def _fetch_from_mirrors(bases, filename, dest, checksum, progress, timeout):
    """Try each base URL in turn on transfer errors; a checksum mismatch stops at once."""
    failures = []
    for base in bases:
        try:
            return fetch(base.rstrip("/") + "/" + filename, dest, checksum, progress, timeout)
        except DownloadError as e:
            failures.append(str(e))
    raise DownloadError(f"could not download {filename}:\n  " + "\n  ".join(failures))


def _verified_copy(path, checksum):
    """Whether ``path`` is a file that passes verification."""
    if not path.is_file():
        return False
    try:
        verify(path, checksum)
    except ChecksumError:
        return False
    return True


@contextlib.contextmanager
def _made_folder(folder):
    """Create ``folder`` (and missing parents) for the block; if the block fails, remove the
    folders it created that are still empty, so a failed download leaves nothing behind."""
    made, p = [], Path(folder)
    while not p.exists():
        made.append(p)
        p = p.parent
    Path(folder).mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in made:                              # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _extract(archive, root, top):
    """Extract ``archive`` (tar.gz whose members all lie under ``top/``) to ``root/top`` atomically."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{top}.", suffix=".part"))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for m in tar.getmembers():
                    parts = Path(m.name).parts
                    if (not parts or parts[0] != top or ".." in parts
                            or not (m.isfile() or m.isdir())):
                        raise DataFormatError(f"{archive}: unexpected member {m.name!r} "
                                              f"(expected plain files under {top}/)")
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # Python without extraction filters; members were checked above
                    tar.extractall(tmp)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise DataFormatError(f"{archive}: unreadable tar.gz: {e}") from e
        if not (tmp / top).is_dir():                # an empty archive, or a file named top
            raise DataFormatError(f"{archive}: no folder {top}/ in the archive")
        os.replace(tmp / top, root / top)
        _fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download(name, root=None, base_url=None, checksums=None, progress=True, timeout=60):
    """Download a data set into a data root and return its folder.

    Files already present and verified are kept (nothing is fetched); a present
    file that fails verification is replaced. MNIST-style files are stored
    under ``<root>/<name>/``; CIFAR archives are extracted to
    ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python`` and then
    removed.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "cifar10", "cifar100", "snelson"}
    root : str or path-like, optional
        Data root; default: REFBINN_DATA if set, else the per-user cache.
    base_url : str, optional
        Folder URL holding the files (``<base_url>/<file name>``); default: the
        built-in mirrors, tried in order.
    checksums : dict, optional
        File name -> Checksum, "algorithm:hexdigest" (of the file's bytes) or
        None (no verification, with a warning); overrides the pinned values.
        A name that is not one of the data set's files is an error.
    progress : bool
        Print progress to stderr.
    timeout : float
        Seconds before a stalled connection fails.

    Returns
    -------
    pathlib.Path
        The data set's folder.

    Raises
    ------
    DownloadError, ChecksumError, DataFormatError
    ValueError
        An unknown ``name``, or a ``checksums`` entry that is not a file of the set or not
        a checksum.
    """
    if not isinstance(name, str) or name not in SOURCES:
        raise ValueError(f"download: name must be one of {sorted(SOURCES)}, got {name!r}")
    if base_url is not None and not isinstance(base_url, str):
        raise ValueError(f"download: base_url must be a URL (str), got {type(base_url).__name__}")
    check_range("download: timeout", timeout, 0, lo_open=True)    # urllib's own error names nothing
    source = SOURCES[name]
    unknown = sorted(set(checksums or {}) - set(source.files))
    if unknown:                                     # a misspelt override must not be ignored silently
        raise ValueError(f"download: checksums keys must be among {sorted(source.files)}, got {unknown}")
    files = {f: _as_checksum((checksums or {}).get(f, c)) for f, c in source.files.items()}
    bases = (base_url,) if base_url else source.mirrors
    root = Path(default_root(root))
    top = DATASETS[name][0]
    folder = root / top
    if not source.archive:
        with _made_folder(folder):
            for filename, checksum in files.items():
                dest = folder / filename
                # A raw copy (the name without .gz) verifies too: its payload is itself. It counts
                # only without the .gz, which the loaders read first (a bad .gz is fetched again).
                copy = dest if dest.exists() else folder / filename.removesuffix(".gz")
                if _verified_copy(copy, checksum):
                    _say(progress, f"{name}: {filename} present and verified")
                    continue
                _fetch_from_mirrors(bases, filename, dest, checksum, progress, timeout)
                _say(progress, f"{name}: {filename} downloaded and verified")
        return folder
    (filename, checksum), = files.items()
    if folder.is_dir():
        lay = LAYOUT[name]
        missing = [f for f in lay["train"] + lay["test"] if not (folder / f).is_file()]
        if missing:
            raise DownloadError(f"{folder} exists but lacks {missing}: move it away and run again")
        _say(progress, f"{name}: {folder} already present")
        return folder
    archive = root / filename
    with _made_folder(root):
        fetched = not _verified_copy(archive, checksum)
        if fetched:
            _fetch_from_mirrors(bases, filename, archive, checksum, progress, timeout)
        try:
            _extract(archive, root, top)
        finally:
            if fetched:  # extracted, or unusable: either way the download is not kept
                archive.unlink()
    _say(progress, f"{name}: extracted to {folder}")
    return folder
