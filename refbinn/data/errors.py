"""The errors the data package raises, so callers can catch them by kind.

- ``DatasetNotFound`` (a ``FileNotFoundError``): no data root holds the data set;
  the message lists every place searched and how to get the data.
- ``DataFormatError`` (a ``ValueError``): a file exists but is not what it claims
  to be (truncated, wrong magic number, bad gzip stream, inconsistent sizes).
- ``ChecksumError`` (a ``ValueError``): a downloaded file's digest differs from
  the pinned one.
- ``DownloadError`` (an ``OSError``): a transfer failed or stopped early.
"""
from __future__ import annotations


class DatasetNotFound(FileNotFoundError):
    """No searched location holds the data set.

    Parameters
    ----------
    name : str
        The data set (``"mnist"``, ``"cifar10"``, ...).
    searched : list of pathlib.Path
        Every path that was looked at, in search order.
    hint : str
        How to obtain the data.
    """

    def __init__(self, name, searched, hint):
        self.name, self.searched, self.hint = name, list(searched), hint
        places = "\n".join(f"  - {p}" for p in self.searched) or "  (no location)"
        super().__init__(f"data set {name!r} not found. Looked in:\n{places}\n{hint}")

    def __str__(self):
        # FileNotFoundError's default str() would show the args tuple.
        return self.args[0]

    def __reduce__(self):
        # Rebuild from the constructor's arguments (pickling, multiprocessing).
        return type(self), (self.name, self.searched, self.hint)


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file and what is wrong."""


class ChecksumError(ValueError):
    """A file's digest differs from the expected one; names the file and both digests."""


class DownloadError(OSError):
    """A download failed or ended early; no file is left under the final name."""
