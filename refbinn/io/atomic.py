"""Atomic file writes: a temporary file in the target folder, flushed, then renamed over the target.

A crash leaves either the old file or the new one under ``path``, never a partial one
(``os.replace`` is atomic on POSIX and Windows). The temporary file of ``DIR/NAME`` is
``DIR/.NAME.<random>.partial`` (mode 0666 less the umask, as any new file), so a kill -9
leaves a file that ``remove_partials(DIR/NAME)`` recognises and removes.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import tempfile

import numpy as np


PARTIAL = ".partial"          # the suffix of every temporary file written here


def new_file_mode():
    """0o666 less the process's umask: the mode ``open()`` gives a new file (mkstemp gives 0600).

    Returns
    -------
    int
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def remove_partials(path):
    """Remove the temporary files an interrupted write of ``path`` left (``.NAME.*.partial``).

    Call it when a run that owns ``path`` starts, not while another process may be
    writing ``path``.

    Parameters
    ----------
    path : str or PathLike
        The file whose leftovers to remove (it need not exist).

    Returns
    -------
    list of str
        The temporary files removed.
    """
    d, name = os.path.split(os.path.abspath(os.fspath(path)))
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(d), f".{glob.escape(name)}.*{PARTIAL}")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def _atomic_file(path, mode, encoding=None):
    """Yield a file handle on a temporary file that becomes ``path`` when the block ends."""
    path = os.fspath(path)
    if not path:                            # '' would put the temp file in the parent of the cwd
        raise ValueError("cannot write to an empty path")
    if os.path.isdir(path):                 # os.replace would fail only after the data is written,
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)    # naming the temp file
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(path)}.", suffix=PARTIAL)
    os.close(fd)
    try:
        with open(tmp, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())         # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_savez(path, arrays):
    """Write the dict ``arrays`` (name -> array) as one uncompressed .npz under ``path``, atomically.

    Parameters
    ----------
    path : str or PathLike
        The target file; its folder is created if missing. ``np.savez`` writes to an open
        handle here, so no ``.npz`` suffix is added: the file is ``path`` exactly.
    arrays : dict str -> array_like
        The archive's entries (each saved as ``name.npy``; object arrays are not refused
        here, but every refbinn loader reads with ``allow_pickle=False``).
    """
    with _atomic_file(path, "wb") as fh:
        np.savez(fh, **arrays)


def atomic_write(path, data):
    """Write ``data`` (str: UTF-8 text; bytes) under ``path``, atomically.

    Parameters
    ----------
    path : str or PathLike
        The target file; its folder is created if missing.
    data : str or bytes
        The file's whole content.
    """
    if isinstance(data, str):
        with _atomic_file(path, "w", encoding="utf-8") as fh:
            fh.write(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        with _atomic_file(path, "wb") as fh:
            fh.write(data)
    else:
        raise TypeError(f"atomic_write: data must be str or bytes, got {type(data).__name__}")


def save_figure(fig, path, **kwargs):
    """``fig.savefig(path, **kwargs)``, atomically: rendered in memory, then written as one file.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or PathLike
        The image to write; its suffix gives the format (as ``savefig`` infers it) unless
        ``format`` is among ``kwargs``.
    **kwargs
        Passed to ``savefig`` (dpi, bbox_inches, ...).
    """
    import io
    fmt = kwargs.pop("format", None) or os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kwargs)
    atomic_write(path, buf.getvalue())


def jsonable(obj):
    """``obj`` as strict JSON values (RFC 8259): NaN and +-inf become None, arrays become lists.

    Python's ``json`` writes a non-finite float as ``NaN`` / ``Infinity``, which strict parsers
    (jq, JavaScript's ``JSON.parse``, serde_json) refuse; refbinn's files write such a value,
    e.g. the accuracy on a task not trained yet, as ``null`` instead.

    Parameters
    ----------
    obj : object
        Dicts, lists, tuples, str, int, bool, None, floats, NumPy arrays and scalars, nested
        in any way; any other object becomes its ``str``.

    Returns
    -------
    object
        The same structure with dicts (keys unchanged) and lists of str, int, bool, None and
        finite float only.
    """
    if isinstance(obj, dict):                  # a NumPy key (np.int64(3)) as its Python number
        return {(k.item() if isinstance(k, np.generic) else k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):                 # ndarray and NumPy scalars (np.float32 is no Python float)
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    return str(obj)


def json_dumps(obj, indent=None, sort_keys=False):
    """``json.dumps`` of ``jsonable(obj)``: strict JSON text, non-finite floats as ``null``.

    ``allow_nan=False`` makes a non-finite float that ``jsonable`` did not reach (a dict key)
    raise ValueError instead of writing ``NaN``.

    Parameters
    ----------
    obj : object
        What ``jsonable`` accepts.
    indent : int, optional
        As for ``json.dumps``; default None (one line).
    sort_keys : bool, optional
        As for ``json.dumps``; default False (the dicts' order).

    Returns
    -------
    str
    """
    return json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(path, obj):
    """Write ``obj`` as indented strict JSON under ``path``, atomically (``json_dumps``).

    Parameters
    ----------
    path : str or PathLike
        The target file; its folder is created if missing.
    obj : object
        What ``jsonable`` accepts: NumPy arrays and scalars are written as lists and numbers,
        NaN and +-inf as ``null``, any other unknown object as its ``str``.
    """
    atomic_write(path, json_dumps(obj, indent=1))
