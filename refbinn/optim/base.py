"""The optimizer protocol and the checks every ``update`` makes on its gradients.

Every refbinn optimizer is a pure state transition (jax.example_libraries.optimizers,
optax). One training step, for any optimizer::

    noise = opt.sample(state, rng)              # list: one entry per forward/backward pass
    grads = []
    for n in noise:                             # BayesBiNN: S Monte Carlo samples; others: [None]
        p = opt.forward_params(state, n)        # the weights this pass uses
        ... forward/backward of the model at p -> g (dict like p)
        grads.append(g)
    state = opt.update(grads, state, noise, lr=lr, weights=[p, ...])
    p_eval = opt.params(state)                  # evaluation weights (binary: exactly +-1)

``sample`` is the only place randomness enters; it draws from the Generator it
is given and nothing else. ``update`` is deterministic given the noise, so a port
fed the same noise reproduces refbinn exactly. ``lr`` (optional) overrides the
constructor's step size for this step (for Bop it is gamma); a learning-rate
schedule lives in the training loop, not in the state. ``weights`` (optional) hands
``update`` the dicts ``forward_params`` returned for this step, so that an optimizer
whose step needs them again (PMF's soft weight) does not compute them twice; it is
an argument, not a cache, so ``update`` stays a function of what it is given, and
without it the optimizer recomputes them, bit for bit the same.

State is a NamedTuple of dicts of arrays (keyed by parameter name) and scalars.
``refbinn.optim.files.save_state``/``load_state`` write and read it, with the
optimizer's hyperparameters, as one .npz; the round trip is exact.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_array_dict, check_real


class Optimizer:
    """Base class. Subclasses implement ``init``, ``update``, ``params``, ``config``
    and, when they differ from the defaults below, ``sample`` and ``forward_params``."""

    def init(self, params, rng=None):
        """state_0: the optimizer's state for the model's initial parameters.

        Parameters
        ----------
        params : dict name -> ndarray
            The model's initial parameters (``Sequential.init``); their dtypes fix the state's.
        rng : numpy.random.Generator, optional
            For optimizers whose state starts random (BayesBiNN's ``lam_init_std``, VISPA).

        Returns
        -------
        NamedTuple
            The optimizer's state (``<Name>State``), saved whole in checkpoints.
        """
        raise NotImplementedError

    def sample(self, state, rng):
        """Noise for this step: a list with one entry per forward/backward pass.

        Parameters
        ----------
        state : NamedTuple
            The current state.
        rng : numpy.random.Generator
            The training's noise stream (unused by deterministic optimizers).

        Returns
        -------
        list
            S entries for sampling optimizers (BayesBiNN, VISPA), ``[None]`` otherwise.
        """
        return [None]

    def forward_params(self, state, noise=None):
        """Weights used by the training forward pass for this noise entry.

        Parameters
        ----------
        state : NamedTuple
            The current state.
        noise : object, optional
            One entry of ``sample``'s list (None for deterministic optimizers).

        Returns
        -------
        dict name -> ndarray
            Relaxed, binary or latent weights, keyed like the model's parameters.
        """
        return self.params(state)

    def update(self, grads, state, noise=None, *, lr=None, weights=None):
        """state_{t+1} from the gradients of the forward passes at ``forward_params(state, noise[s])``.

        Parameters
        ----------
        grads : dict or list of dict
            d loss / d weights of each forward/backward pass, one dict per entry of ``noise``.
        state : NamedTuple
            The current state (not modified).
        noise : list, optional
            What ``sample`` returned for this step.
        lr : float, optional
            This step's learning rate (Bop: its gamma) from the schedule; None: the constructor's.
        weights : dict or list of dict, optional
            ``forward_params(state, noise[s])`` of each pass, unmodified (``train_step`` passes
            them). An optimizer whose step needs these weights again (PMF: the soft weight)
            takes them from here instead of recomputing them; the others ignore them.
            None: recomputed where needed (the same numbers).

        Returns
        -------
        NamedTuple
            The new state; a FloatingPointError leaves ``state`` valid when a gradient or the
            new state is not finite.
        """
        raise NotImplementedError

    def params(self, state):
        """The weights a trained network uses (the mode, or the real weights).

        Parameters
        ----------
        state : NamedTuple
            The current state.

        Returns
        -------
        dict name -> ndarray
            Keyed like the model's parameters (binary ones are +-1).
        """
        raise NotImplementedError

    def config(self):
        """Constructor keyword arguments that rebuild this optimizer (for save/load).

        Returns
        -------
        dict
            JSON-able values (arrays stored separately by ``optim.files``).
        """
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items()
                         if not isinstance(v, (np.ndarray, dict)))
        return f"{type(self).__name__}({args})"


# -- gradient checks ------------------------------------------------------------
def check_finite(grads, where="gradient"):
    """Raise FloatingPointError naming the first parameter whose gradient has NaN or inf.

    Call before touching any state so that a failed step leaves the state as it was.

    Parameters
    ----------
    grads : dict or list of dict
        One gradient dict name -> array, or one per forward/backward pass (the message
        then names the pass as ``(sample s)``).
    where : str, optional
        What the arrays are, for the message ("gradient").

    Raises
    ------
    FloatingPointError
        For a NaN or inf; ValueError for an array of objects or text (no numbers to test).
    """
    if isinstance(grads, dict):
        grads = [grads]
    for s, g in enumerate(grads):
        for k, v in g.items():
            try:
                finite = np.all(np.isfinite(v))
            except TypeError:                  # object, str or None: not numbers at all
                raise ValueError(f"{where} of parameter '{k}' must be an array of real numbers, got "
                                 f"dtype {np.asarray(v).dtype}") from None
            if not finite:
                n_bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
                extra = f" (sample {s})" if len(grads) > 1 else ""
                raise FloatingPointError(f"{where} of parameter '{k}'{extra} contains "
                                         f"{n_bad} NaN/inf value(s); the step was not taken")


def as_grad_list(grads, noise, what="gradient"):
    """Accept one dict or a list (or tuple) of dicts; check the count against the noise list.

    Parameters
    ----------
    grads : dict or sequence of dict
        The gradients ``update`` was given.
    noise : list or None
        What ``sample`` returned for this step (None counts as one pass).
    what : str, optional
        What the dicts are, for the message ("gradient"; PMF and Partition: "weights").

    Returns
    -------
    list of dict
        ``grads`` as a list of S dicts; ValueError unless S = ``len(noise)`` (1 for None), or
        when ``grads`` is not a dict or a list of dicts (None, a str, a list of arrays).
    """
    if isinstance(grads, dict):
        grads = [grads]
    given = type(grads).__name__
    try:
        grads = list(grads)
    except TypeError:                          # None, a number
        grads = None
    if grads is None or not all(isinstance(g, dict) for g in grads):
        raise ValueError(f"{what} must be a dict name -> array or a list of such dicts, got {given}"
                         + ("" if grads is None else " of " + ", ".join(sorted({type(g).__name__ for g in grads}))))
    n = 1 if noise is None else len(noise)
    if len(grads) != n:
        raise ValueError(f"got {len(grads)} {what} dict(s) for {n} noise sample(s)")
    return grads


def mean_grads(grads, like, owner):
    """g[k] = (1/S) sum_s grads[s][k], cast to ``like[k].dtype``.

    Parameters
    ----------
    grads : list of dict
        One dict per forward/backward pass (S >= 1), keyed like ``like``.
    like : dict name -> ndarray
        The arrays the gradients belong to (shapes and dtypes to match).
    owner : str
        Optimizer name for error messages.

    Returns
    -------
    dict name -> ndarray
        With one pass the arrays are returned as given (cast only), so S = 1
        involves no arithmetic.
    """
    check_grads(grads, like, owner)
    out = {}
    for k, a in like.items():
        acc = np.asarray(grads[0][k], dtype=a.dtype)
        for g in grads[1:]:
            acc = acc + np.asarray(g[k], dtype=a.dtype)
        out[k] = acc / len(grads) if len(grads) > 1 else acc
    return out


def check_grads(grads, like, owner, allow_extra=False):
    """ValueError unless every gradient dict has an entry of the right shape and a real
    (float or integer) dtype for every parameter of ``like`` (and, unless ``allow_extra``,
    no other entry).

    Parameters
    ----------
    grads : list of dict
        One gradient dict per forward/backward pass.
    like : dict name -> ndarray
        The parameters the gradients belong to (their names and shapes).
    owner : str
        Optimizer name, first in the message.
    allow_extra : bool, optional
        Accept entries for names not in ``like`` (BayesBiNN and VISPA: a gradient dict of
        the whole model may be passed; only the entries of their own parameters are read).
    """
    for s, g in enumerate(grads):
        missing = [k for k in like if k not in g]
        extra = [] if allow_extra else [k for k in g if k not in like]
        if missing or extra:
            what = f"no entry for parameter '{missing[0]}'" if not extra and len(missing) == 1 else (
                f"does not match the parameters (missing {missing}, unexpected {extra})")
            raise ValueError(f"{owner}: gradient dict {s} {what}")
        for k, a in like.items():
            v = g[k]
            if type(v) is np.ndarray and v.dtype is a.dtype and v.shape == a.shape:
                continue                       # the usual case, checked in ~0.1 us
            if np.shape(v) != np.shape(a):
                raise ValueError(f"{owner}: gradient of parameter '{k}' has shape {np.shape(v)}, "
                                 f"expected {np.shape(a)}")
            check_real(f"{owner}: gradient of parameter '{k}'", v, "iuf")   # complex: no silent cast


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_params(params, owner):
    """``{k: np.asarray(v)}``; ValueError naming the parameter unless its dtype is float32 or float64
    and its values are finite (and ValueError if ``params`` is not a mapping).

    Parameters
    ----------
    params : dict name -> array_like
        The parameters given to an optimizer's ``init``.
    owner : str
        Optimizer name, first in the message.

    Returns
    -------
    dict name -> ndarray
        The same keys in the same order; arrays are not copied (``np.asarray``).
    """
    out = {}
    for k, v in check_param_dict(params, owner).items():
        v = np.asarray(v)
        if v.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{owner}: parameter '{k}' has dtype {v.dtype}, expected float32 or float64")
        if not np.all(np.isfinite(v)):                # once, at init: the state would start NaN
            raise ValueError(f"{owner}: parameter '{k}' has {int(v.size - np.count_nonzero(np.isfinite(v)))} "
                             "NaN/inf value(s); initial parameters must be finite")
        out[k] = v
    return out


def check_param_dict(params, owner):
    """``params`` if it is a mapping name -> array (a dict, as ``Sequential.init`` returns); else ValueError.

    Parameters
    ----------
    params : object
        What ``init`` was given.
    owner : str
        Optimizer name, first in the message.

    Returns
    -------
    Mapping
        ``params`` itself.
    """
    return check_array_dict(f"{owner}: params", params, "Sequential.init's")   # a MappingProxyType too


def check_state_type(state, cls, owner):
    """``state`` if it is a ``cls`` (the NamedTuple ``owner.init`` returns); else ValueError,
    so that a state of another optimizer (or None) is not read field by field.

    Parameters
    ----------
    state : object
        What ``update``, ``params``, ``forward_params`` or ``sample`` was given.
    cls : type
        The optimizer's state class (``AdamState``, ...).
    owner : str
        Optimizer name, first in the message.

    Returns
    -------
    NamedTuple
        ``state`` itself.
    """
    if not isinstance(state, cls):
        raise ValueError(f"{owner}: state must be of type {cls.__name__} (what {owner}.init returns), "
                         f"got {type(state).__name__}")
    return state


def check_state_like(owner, name, like, fields):
    """ValueError unless every state array of ``fields`` has an entry for every parameter of
    ``like``, with its shape and dtype, and ``like``'s arrays are float32 or float64 arrays
    (or NumPy scalars: a 0-d parameter's arithmetic returns one).

    Call at the top of ``update``, before any kernel runs: a Numba kernel writes
    ``like[k].size`` elements, so a smaller state array would be read and written past its end.

    Parameters
    ----------
    owner : str
        Optimizer name, first in the message.
    name : str
        The state field ``like`` is, for the message ("params", "latent", "u", "w", "lam").
    like : dict name -> ndarray
        The state's own weights, whose shape and dtype the other fields must have.
    fields : dict field name -> dict name -> ndarray
        The other per-parameter state arrays, e.g. ``{"m": state.m, "v": state.v}``.
    """
    if not isinstance(like, dict):
        raise ValueError(f"{owner}: state.{name} must be a dict name -> array, got {type(like).__name__}")
    for k, a in like.items():
        if not isinstance(a, (np.ndarray, np.floating)) or a.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{owner}: state.{name}['{k}'] must be a float32 or float64 array, got "
                             f"{type(a).__name__} of dtype {getattr(a, 'dtype', None)}")
        for field, arrays in fields.items():
            if not isinstance(arrays, dict) or k not in arrays:
                raise ValueError(f"{owner}: state.{field} has no entry for parameter '{k}'")
            b = arrays[k]
            if np.shape(b) != np.shape(a) or getattr(b, "dtype", None) != a.dtype:
                raise ValueError(f"{owner}: state.{field}['{k}'] has shape {np.shape(b)} and dtype "
                                 f"{getattr(b, 'dtype', type(b).__name__)}, expected the shape {np.shape(a)} "
                                 f"and dtype {a.dtype} of state.{name}['{k}']")
