"""A numpy.random.Generator's state as JSON text, and back (for checkpoints: exact resume)."""
from __future__ import annotations

import json

import numpy as np

from ..checks import check_generator

BIT_GENERATORS = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM,
                  "Philox": np.random.Philox, "SFC64": np.random.SFC64, "MT19937": np.random.MT19937}


def generator_state_json(gen):
    """JSON text of ``gen.bit_generator.state`` (the full state: the stream resumes exactly).

    Parameters
    ----------
    gen : numpy.random.Generator
        Any Generator whose bit generator is one of ``BIT_GENERATORS``, for reading back.

    Returns
    -------
    str
        ``json.dumps`` of the state dict (it names the bit generator under ``"bit_generator"``).
    """
    return json.dumps(check_generator("generator_state_json: gen", gen).bit_generator.state)


def generator_from_json(text, where="generator state"):
    """The Generator whose state ``generator_state_json`` wrote; ValueError for an unknown bit generator.

    Parameters
    ----------
    text : str
        JSON text of a bit generator's state, as written by ``generator_state_json``.
    where : str, optional
        What to name in the error message (the file the text came from).

    Returns
    -------
    numpy.random.Generator
        A new Generator whose next draws are those the saved one would have made.
    """
    try:
        st = json.loads(text)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: not a JSON generator state: {e}") from None
    name = st.get("bit_generator") if isinstance(st, dict) else None
    if name not in BIT_GENERATORS:
        raise ValueError(f"{where}: bit generator must be one of {', '.join(map(repr, BIT_GENERATORS))}, "
                         f"got {name!r}")
    bg = BIT_GENERATORS[name]()
    try:
        bg.state = st
    except (TypeError, ValueError, KeyError, OverflowError) as e:     # a field missing or out of range
        raise ValueError(f"{where}: not a valid {name} state: {e!r}") from None
    return np.random.Generator(bg)
