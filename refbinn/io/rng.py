"""A numpy.random.Generator's state as JSON text, and back (for checkpoints: exact resume)."""
from __future__ import annotations

import json

import numpy as np

BIT_GENERATORS = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM,
                  "Philox": np.random.Philox, "SFC64": np.random.SFC64, "MT19937": np.random.MT19937}


def generator_state_json(gen):
    """JSON text of ``gen.bit_generator.state``."""
    return json.dumps(gen.bit_generator.state)


def generator_from_json(text, where="generator state"):
    """The Generator whose state ``generator_state_json`` wrote; ValueError for an unknown bit generator."""
    st = json.loads(text)
    name = st.get("bit_generator")
    if name not in BIT_GENERATORS:
        raise ValueError(f"{where}: bit generator must be one of {', '.join(map(repr, BIT_GENERATORS))}, "
                         f"got {name!r}")
    bg = BIT_GENERATORS[name]()
    bg.state = st
    return np.random.Generator(bg)
