"""The error refbinn raises for a damaged file, and the command line's error boundary::

    FileFormatError (a ValueError)   a file exists but is not what it should be; the message
                                     starts with the file's path and says what is wrong
    reads_file(what)                 decorator for a loader ``load(path, ...)`` of an .npz: any
                                     exception while reading or parsing becomes one FileFormatError
    run_command(command, func, args, debug)
                                     the ``refbinn`` boundary: bad input (ValueError, OSError,
                                     FloatingPointError, MemoryError) -> one line, exit 2;
                                     anything else -> one line asking for a bug report, exit 1;
                                     ``debug`` prints the traceback first

A missing or unreadable file (FileNotFoundError, PermissionError) is not damage: it passes
through ``reads_file`` unchanged and the boundary prints it as ``PATH: No such file or directory``.
This module imports nothing from refbinn, so every loader can use it.
"""
from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings
import zipfile


class FileFormatError(ValueError):
    """A file is damaged or of the wrong kind; the message names the file and what is wrong."""


def _describe(path, what, exc):
    text = str(exc)
    if text.startswith(str(path)):                 # the loader named the file already
        return text
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return f"{path}: the file is empty, not a {what}"
    if not zipfile.is_zipfile(path):                # random bytes, a pickle, an .npy, cut short
        return f"{path}: not a valid {what} (not an .npz archive, or a truncated one)"
    if isinstance(exc, KeyError):
        return f"{path}: not a valid {what} (no entry {text})"
    return f"{path}: not a valid {what} ({type(exc).__name__}: {text or 'no detail'})"


def reads_file(what):
    """Decorate ``load(path, ...)`` so that damage surfaces as one FileFormatError naming ``path``.

    Parameters
    ----------
    what : str
        What the file should be ("checkpoint", "trace", ...), for the message.

    Returns
    -------
    callable
        The decorator: ``load`` wrapped so that any exception but FileNotFoundError,
        PermissionError and MemoryError becomes a FileFormatError starting with the path.
    """
    def decorate(load):
        @functools.wraps(load)
        def load_checked(path, *args, **kwargs):
            if not isinstance(path, (str, bytes, os.PathLike)) and not hasattr(path, "read"):
                raise ValueError(f"the {what} to read must be a path (str or os.PathLike), "
                                 f"got {type(path).__name__}")
            try:
                return load(path, *args, **kwargs)
            except (FileFormatError, FileNotFoundError, PermissionError, MemoryError):
                raise
            except IsADirectoryError:
                raise FileFormatError(f"{path}: is a folder, not a {what} file") from None
            except Exception as e:                 # truncated, random bytes, a key missing, ...
                raise FileFormatError(_describe(path, what, e)) from e
        return load_checked
    return decorate


# -- the command line's boundary ------------------------------------------------------------
USER_ERRORS = (ValueError, OSError, FloatingPointError, MemoryError)


def one_line(exc):
    """The message of ``exc`` on one line (an OSError as 'PATH: reason').

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
        The lines of the message joined by '; ' (by ' ' after a line ending in ':').
    """
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({exc or 'no detail'}); try smaller sizes"
    else:
        text = str(exc) or type(exc).__name__
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    return "".join(s if i == 0 else (" " if lines[i - 1].endswith(":") else "; ") + s
                   for i, s in enumerate(lines))


def debug_requested(args):
    """``--debug`` on the command line, or REFBINN_DEBUG set to anything but '' or '0'.

    Parameters
    ----------
    args : argparse.Namespace or None
        The parsed command line (its ``debug`` attribute, if any).

    Returns
    -------
    bool
    """
    return bool(getattr(args, "debug", False)) or os.environ.get("REFBINN_DEBUG", "") not in ("", "0")


def run_command(command, func, args, debug=False, *, program="refbinn ", debug_hint="--debug"):
    """``func(args)``'s exit code; on an exception one line on stderr and exit 2 (bad input) or 1 (a bug).

    NumPy's RuntimeWarnings (overflow, invalid value) are shown only with ``debug``: refbinn
    checks every new state and reports a non-finite one itself, in one line.

    Parameters
    ----------
    command : str
        The subcommand, for the message ("refbinn COMMAND: error: ...").
    func : callable
        ``func(args) -> int``, the subcommand.
    args : object
        Passed to ``func``.
    debug : bool
        Print the traceback before the line (and let RuntimeWarnings through).
    program : str
        What comes before ``command`` in the messages ("refbinn "; a script: "").
    debug_hint : str
        How to ask for the traceback, named in the bug message ("--debug"; a script:
        "REFBINN_DEBUG=1").

    Returns
    -------
    int
        ``func``'s exit code; 2 for ValueError, OSError, FloatingPointError, MemoryError;
        130 for KeyboardInterrupt; 1 for any other exception.
    """
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore", RuntimeWarning)
            return func(args)
    except KeyboardInterrupt:
        print(f"{program}{command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            traceback.print_exc()
        print(f"{program}{command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if debug:
            traceback.print_exc()
        print(f"{program}{command}: internal error ({type(e).__name__}: {one_line(e)}); this is a bug in "
              f"refbinn, please report it with the command line ({debug_hint} shows the traceback)",
              file=sys.stderr)
        return 1
