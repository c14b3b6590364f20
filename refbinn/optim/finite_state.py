"""The last line of an update: a new optimizer state with NaN or inf in it is refused::

    return checked_state(AdamState(p_new, m_new, v_new, t), "Adam")

raises FloatingPointError naming the optimizer, the parameter and the state field. The
caller's state is untouched (an update builds new arrays), so after the error training
can stop, or go on, from the state as it was. BayesBiNN and VISPA make the same check
inside their kernels (``_backend.raise_nonfinite``); this is the one for Adam, PMF, STE, Bop.
"""
from __future__ import annotations

import math

import numpy as np


def all_finite(a):
    """True unless the float array (or float) ``a`` holds a NaN or an inf; other types are True.

    Fast path: a . a is finite when every entry is (NaN and inf propagate through it); only
    when it is not (also when a finite sum of squares overflows) is every entry looked at.

    Parameters
    ----------
    a : ndarray, NumPy scalar, float or anything else

    Returns
    -------
    bool
    """
    if isinstance(a, float):
        return math.isfinite(a)
    if not isinstance(a, (np.ndarray, np.floating)) or np.asarray(a).dtype.kind != "f":
        return True
    flat = np.asarray(a).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):       # the overflow is the question asked
        return bool(np.isfinite(np.dot(flat, flat)) or np.all(np.isfinite(flat)))


def checked_state(state, owner):
    """``state`` (a NamedTuple of dicts of arrays and scalars) if every float in it is finite.

    Parameters
    ----------
    state : NamedTuple
        A new optimizer state; each field a dict name -> array, or a scalar.
    owner : str
        The optimizer, for the message.

    Returns
    -------
    NamedTuple
        ``state`` itself.

    Raises
    ------
    FloatingPointError
        "<owner>: the update of parameter '<name>' made <field> non-finite; the step was not taken".
    """
    for field in state._fields:
        value = getattr(state, field)
        for name, a in (value.items() if isinstance(value, dict) else [(None, value)]):
            if not all_finite(a):
                what = f"parameter '{name}'" if name is not None else "the parameters"
                hint = ("the squared gradient overflowed: scale the loss down or use float64"
                        if field == "v" else "lower the learning rate?")    # Adam's second moment
                raise FloatingPointError(f"{owner}: the update of {what} made {field} non-finite "
                                         f"({hint}); the step was not taken")
    return state
