"""The one data set that ships inside refbinn: Snelson's 1-D regression set.

``refbinn/data/snelson1d.npz`` (3 650 bytes; arrays ``X`` and ``Y``, float64,
shape (200, 1)) is the 200-point training set of

    E. Snelson and Z. Ghahramani, "Sparse Gaussian processes using
    pseudo-inputs", Advances in Neural Information Processing Systems 18
    (NIPS 2005),

in the form redistributed with GPflux's tests (``tests/snelson1d.npz`` in
https://github.com/secondmind-labs/GPflux, Apache-2.0; the packaged bytes equal
that file, SHA-256 below). It is the one exception to "data sets stay outside
the repository": it is small, and it makes ``refbinn demo`` whole on a machine
with no data folder. The loaders use it when no data root holds ``snelson/``;
``refbinn download snelson`` fetches the same bytes into a data root.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

# data set name -> file shipped in this package
PACKAGED = {"snelson": "snelson1d.npz"}
# SHA-256 of refbinn/data/snelson1d.npz, of GPflux's tests/snelson1d.npz, and of the copy
# in the project's shared data folder (its SHA256SUMS); tests/test_snelson_packaged.py checks all three.
SNELSON_SHA256 = "1d03b0338c5d92ebe233d4d289349236d6d5f8dc691b1520d2b4566561aeae3e"


def packaged_file(name):
    """The path of data set ``name``'s packaged copy, or None if refbinn ships none.

    Parameters
    ----------
    name : str
        A data set name, e.g. ``"snelson"``.

    Returns
    -------
    pathlib.Path or None
        None also when the file is missing from the installation (an install
        that dropped package data).
    """
    if name not in PACKAGED:
        return None
    path = Path(str(resources.files(__package__) / PACKAGED[name]))
    return path if path.is_file() else None
