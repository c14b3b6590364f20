"""Reading and writing IDX files (the MNIST format), gzipped or raw.

An IDX file is a header and a C-order array, all big-endian::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16,
                0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4*d bytes   each dimension's size, uint32
    then        prod(sizes) elements

Gzip is recognised by its magic bytes (0x1f 0x8b), not by the file name, so a
raw file named ``.gz`` or a gzipped one without the suffix both read correctly.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import DataFormatError

GZIP_MAGIC = b"\x1f\x8b"
_MAX_BYTES = 2 ** 40                # a header declaring more data than 1 TiB is not a real data set
# IDX type code -> big-endian numpy dtype
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def is_gzip(path):
    """True when the file starts with the gzip magic bytes.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    bool
    """
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _read_into(stream, buf):
    """Fill ``buf`` (a writable memoryview of bytes) from ``stream``; return the count read."""
    filled = 0
    while filled < len(buf):
        n = stream.readinto(buf[filled:])
        if not n:
            break
        filled += n
    return filled


def _read_idx_stream(stream, path, raw_size):
    """Parse an IDX stream; ``raw_size`` is the uncompressed size when known, else None."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataFormatError(f"{path}: truncated IDX file: {len(magic)} bytes, "
                              f"shorter than the 4-byte magic number")
    if magic[:2] != b"\x00\x00" or magic[2] not in IDX_DTYPES or magic[3] == 0:
        raise DataFormatError(f"{path}: not an IDX file: magic number 0x{magic.hex()} "
                              f"(expected 0x0000TTDD with TT a type code in "
                              f"{[hex(c) for c in IDX_DTYPES]} and DD >= 1 dimensions)")
    dtype, ndim = IDX_DTYPES[magic[2]], magic[3]
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataFormatError(f"{path}: truncated IDX file: the header declares {ndim} "
                              f"dimensions but ends after {len(dims) // 4}")
    shape = tuple(int(s) for s in np.frombuffer(dims, dtype=">u4"))
    nbytes = math.prod(shape) * dtype.itemsize                 # Python ints: no wrap-around
    header = 4 + 4 * ndim
    if raw_size is not None and raw_size != header + nbytes:
        what = "truncated IDX file" if raw_size < header + nbytes else "size does not match the header"
        raise DataFormatError(f"{path}: {what}: header says shape {shape} of {dtype.name} "
                              f"({header + nbytes} bytes in all), the file has {raw_size} bytes")
    try:
        if nbytes > _MAX_BYTES:
            raise MemoryError
        data = np.empty(nbytes, dtype=np.uint8)
    except (MemoryError, ValueError):                          # ValueError: beyond numpy's sizes
        raise DataFormatError(f"{path}: header declares shape {shape}, too large to be real") from None
    got = _read_into(stream, memoryview(data))
    if got < nbytes:
        raise DataFormatError(f"{path}: truncated IDX file: header says shape {shape} of "
                              f"{dtype.name} ({nbytes} data bytes), only {got} present")
    if stream.read(1):
        raise DataFormatError(f"{path}: size does not match the header: data continues "
                              f"past the {nbytes} bytes of shape {shape}")
    arr = data.view(dtype).reshape(shape)
    # Big-endian multi-byte types: convert once to native order so arithmetic is fast.
    return arr.astype(dtype.newbyteorder("=")) if dtype.itemsize > 1 else arr


def read_idx(path):
    """Read an IDX file (gzipped or raw) into a NumPy array.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ndarray
        Shape and element type from the header, native byte order, writable.

    Raises
    ------
    DataFormatError
        Truncated file, wrong magic number, bad gzip stream, or a size that does
        not match the header; the message names the file.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if not gz:
            return _read_idx_stream(raw, path, os.fstat(raw.fileno()).st_size)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_idx_stream(stream, path, None)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise DataFormatError(f"{path}: bad gzip stream: {e}") from e


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file (the inverse of ``read_idx``).

    Parameters
    ----------
    path : str or path-like
    array : ndarray
        Any shape with at least one dimension; dtype one of uint8, int8, int16,
        int32, float32, float64.
    compress : bool, optional
        Gzip the file; default: when ``path`` ends in ``.gz``.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0:
        raise ValueError(f"write_idx: array must have >= 1 dimension and dtype in "
                         f"{[str(d) for d in codes]}, got shape {array.shape} {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    compress = path.name.endswith(".gz") if compress is None else compress
    path.write_bytes(gzip.compress(body) if compress else body)
    return path
