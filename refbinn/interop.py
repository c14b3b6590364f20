"""Convert refbinn weights, BatchNorm state and BayesBiNN state to and from PyTorch's layout.

NumPy only: a torch ``state_dict`` is represented as a plain ordered dict of
arrays (``{k: v.numpy() for k, v in module.state_dict().items()}`` on the
torch side, ``{k: torch.from_numpy(v) ...}`` on the way back).

Model (``to_state_dict`` / ``from_state_dict``), for refbinn's ``mlp_mnist``
and any ``Sequential`` whose layer names are torch module names::

    refbinn                     torch state_dict                 authors' MNIST MLP
    params["fc1.weight"]        "fc1.weight"   (out, in)          nn.Linear(bias=False)
    state["bn1.running_mean"]   "bn1.running_mean"  (C,)          nn.BatchNorm1d(affine=False,
    state["bn1.running_var"]    "bn1.running_var"   (C,)            momentum=0.15, eps=1e-4)
    (not kept by refbinn)       "bn1.num_batches_tracked"  int64 scalar

``params`` are the weights the torch network is to run with: for a binary network
trained by BayesBiNN, its mode ``opt.params(state)`` (+-1: sign(lam) in 'exact',
sign(stored mu) in 'official', whose mu lags lam by one step; the two give other
predictions), not lam, which goes to the optimizer's state (``bayesbinn_to_torch``).
The BatchNorm settings are ``mlp_mnist``'s (spec section 9: momentum 0.15, eps 1e-4;
another model's are those of its ``BatchNorm`` layers). refbinn's BatchNorm uses a fixed
momentum, so torch never reads ``num_batches_tracked``; it is written as the number of
training forward passes (``steps * samples``: ``state.step * opt.config()["samples"]``
for BayesBiNN), 0 unless given, and returned on the way back.

BayesBiNN optimizer (``bayesbinn_to_torch`` / ``bayesbinn_from_torch``): the
authors' optimizer keeps one flat vector per quantity over all parameters in
``model.parameters()`` order (= refbinn's parameter order)::

    refbinn                   authors' ``optimizer.state``
    BayesBiNNState.lam        "lamda"
    BayesBiNNState.mu         "mu"   (the stored mean: lags lam by one step in 'official')
    BayesBiNNState.momentum   "momentum"
    BayesBiNN(lam0=...)       "prior_lamda"
    BayesBiNNState.step       "step"

The authors' ``optimizer.state`` holds more keys than these (their step also reads
settings such as ``reweight`` and ``temperature`` from it): update it with this dict,
do not replace it.
"""
from __future__ import annotations

import numpy as np

from .checks import check_int, check_range, check_real

_SEED_MAX = 2 ** 63 - 1          # BayesBiNN.init draws the noise seed in [0, 2**63)

BN_BUFFERS = ("running_mean", "running_var")
NUM_BATCHES = "num_batches_tracked"


def _dict_arg(where, name, d):
    """``d`` if it is a dict; else ValueError naming the function and the argument."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: {name} must be a dict name -> array, got {type(d).__name__}")
    return d


def _real_array(where, what, a):
    """``np.asarray(a)``; ValueError unless it holds real numbers (complex would lose its imaginary part)."""
    try:
        a = np.asarray(a)
    except (TypeError, RuntimeError) as e:      # torch: a tensor that requires grad, or in bfloat16
        raise ValueError(f"{where}: {what} cannot be read as a NumPy array ({e})") from None
    return check_real(f"{where}: {what}", a)


# -- flat vectors (torch.nn.utils.parameters_to_vector order) --------------------------------
def params_to_vector(params, names=None):
    """Concatenate ``params[k].ravel()`` over ``names`` (default: dict order) into one vector.

    Parameters
    ----------
    params : dict name -> ndarray
    names : sequence of str, optional

    Returns
    -------
    ndarray, shape (sum of sizes,), the common dtype of the arrays
    """
    names = list(_dict_arg("params_to_vector", "params", params)) if names is None else list(names)
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"params_to_vector: names not in params: {missing}")
    if not names:
        return np.zeros(0)
    return np.concatenate([np.ravel(_real_array("params_to_vector", f"params['{k}']", params[k])) for k in names])


def vector_to_params(vec, like, names=None):
    """Split a flat vector into arrays shaped (and typed) like ``like[k]``, in ``names`` order.

    Parameters
    ----------
    vec : ndarray, shape (D,)
    like : dict name -> ndarray
        Gives each parameter's shape and dtype.
    names : sequence of str, optional
        Default: the order of ``like``.

    Returns
    -------
    dict name -> ndarray
        One new array per name in ``names`` (copies, not views of ``vec``), the inverse of
        ``params_to_vector``. ValueError unless ``vec`` is 1-D with D = sum of the sizes
        and every name is in ``like``.
    """
    names = list(_dict_arg("vector_to_params", "like", like)) if names is None else list(names)
    missing = [k for k in names if k not in like]
    if missing:
        raise ValueError(f"vector_to_params: names not in like: {missing}")
    vec = _real_array("vector_to_params", "the vector", vec)
    total = sum(int(np.size(like[k])) for k in names)
    if vec.ndim != 1 or vec.size != total:
        raise ValueError(f"vector_to_params: vector has shape {vec.shape}, expected ({total},)")
    out, i = {}, 0
    for k in names:
        n = int(np.size(like[k]))
        out[k] = vec[i:i + n].reshape(np.shape(like[k])).astype(np.asarray(like[k]).dtype, copy=True)
        i += n
    return out


# -- model: parameters and BatchNorm buffers ---------------------------------------------------
def _module(name):
    """'fc1.weight' -> ('fc1', 'weight'); the last dot separates the module path."""
    mod, _, leaf = name.rpartition(".") if isinstance(name, str) else ("", "", "")
    if not mod:
        raise ValueError(f"state_dict key {name!r} has no module prefix (expected a str 'module.name')")
    return mod, leaf


def to_state_dict(params, bn_state, *, num_batches_tracked=0, model=None):
    """A torch-style state_dict (ordered dict of arrays) from refbinn parameters and BN state.

    Keys follow torch's order: per module, its parameters, then ``running_mean``,
    ``running_var``, ``num_batches_tracked``. Modules come in layer order when
    ``model`` is given (a torch module registering its layers in the same order
    has the same ``state_dict`` order), else in the order first seen in
    ``params`` then ``bn_state``. Loading into torch matches keys by name, so
    the order only matters to a reader. Arrays are copied; dtypes are kept.

    Parameters
    ----------
    params : dict name -> ndarray
        ``"fc1.weight"`` (out, in), ``"conv1.weight"`` (O, I, kh, kw), ``"fc1.bias"`` ...
    bn_state : dict name -> ndarray
        ``"bn1.running_mean"``, ``"bn1.running_var"``, each (C,).
    num_batches_tracked : int >= 0 or dict module -> int
        Written as an int64 scalar per BatchNorm module.
    model : Sequential, optional
        Only its layer names are used, for the key order.

    Returns
    -------
    dict name -> ndarray
    """
    _dict_arg("to_state_dict", "params", params)
    for k in _dict_arg("to_state_dict", "bn_state", bn_state):
        if _module(k)[1] not in BN_BUFFERS:
            raise ValueError(f"to_state_dict: bn_state key '{k}' is not a BatchNorm buffer "
                             f"(expected '<module>.running_mean' or '<module>.running_var')")
    modules = [layer.name for layer in model.layers] if model is not None else []
    for k in list(params) + list(bn_state):
        mod = _module(k)[0]
        if mod not in modules:
            modules.append(mod)
    out = {}
    for mod in modules:
        out.update({k: np.array(_real_array("to_state_dict", f"params[{k!r}]", v), copy=True)
                    for k, v in params.items() if _module(k)[0] == mod})
        bufs = [b for b in BN_BUFFERS if f"{mod}.{b}" in bn_state]
        if bufs:
            for b in bufs:
                k = f"{mod}.{b}"
                out[k] = np.array(_real_array("to_state_dict", f"bn_state[{k!r}]", bn_state[k]), copy=True)
            if isinstance(num_batches_tracked, dict):
                nbt = check_int(f"to_state_dict: num_batches_tracked[{mod!r}]", num_batches_tracked.get(mod, 0))
            else:
                nbt = check_int("to_state_dict: num_batches_tracked", num_batches_tracked)
            out[f"{mod}.{NUM_BATCHES}"] = np.array(nbt, dtype=np.int64)
    return out


def from_state_dict(state_dict, like_params=None, like_state=None):
    """refbinn ``(params, bn_state, num_batches_tracked)`` from a torch-style state_dict.

    Parameters
    ----------
    state_dict : dict name -> array-like
        As written by ``to_state_dict`` or ``{k: v.numpy() for k, v in m.state_dict().items()}``.
    like_params, like_state : dict name -> ndarray, optional
        The layout to match (``model.init(...)``): when given, every key must be
        present with the same shape, no other parameter or buffer may appear,
        and values are cast to the dtype of ``like``.

    Returns
    -------
    params : dict name -> ndarray
        Every key that is not a BatchNorm buffer, in state_dict order (or ``like_params`` order).
    bn_state : dict name -> ndarray
        ``running_mean`` / ``running_var`` entries.
    num_batches_tracked : dict module -> int
    """
    _dict_arg("from_state_dict", "state_dict", state_dict)
    for name, like in (("like_params", like_params), ("like_state", like_state)):
        if like is not None:
            _dict_arg("from_state_dict", name, like)
    params, bn_state, nbt = {}, {}, {}
    for k, v in state_dict.items():
        mod, leaf = _module(k)
        v = _real_array("from_state_dict", f"state_dict[{k!r}]", v)
        if leaf == NUM_BATCHES:            # int() took 2.5, -3 and a vector's error said no key
            nbt[mod] = _count("from_state_dict", f"state_dict[{k!r}]", v)
        elif leaf in BN_BUFFERS:
            bn_state[k] = np.array(v, copy=True)
        else:
            params[k] = np.array(v, copy=True)
    if like_params is not None:
        params = _match("parameter", params, like_params)
    if like_state is not None:
        bn_state = _match("buffer", bn_state, like_state)
    return params, bn_state, nbt


def _match(what, got, like):
    missing = [k for k in like if k not in got]
    extra = [k for k in got if k not in like]
    if missing or extra:
        raise ValueError(f"from_state_dict: {what} keys do not match the model "
                         f"(missing {missing}, unexpected {extra})")
    for k, v in like.items():
        if np.shape(got[k]) != np.shape(v):
            raise ValueError(f"from_state_dict: {what} '{k}' has shape {np.shape(got[k])}, "
                             f"the model expects {np.shape(v)}")
    return {k: got[k].astype(np.asarray(v).dtype, copy=False) for k, v in like.items()}


# -- BayesBiNN optimizer state ------------------------------------------------------------------
def bayesbinn_to_torch(state, names=None, lam0=None):
    """The authors' optimizer state (flat vectors) from a refbinn ``BayesBiNNState``.

    Parameters
    ----------
    state : BayesBiNNState (or a dict with the same fields)
        ``lam`` and ``momentum`` (dicts name -> array), ``step`` (int) and, when
        present, ``mu`` (the stored mean; tanh(lam) is used if absent).
    names : sequence of str, optional
        Parameter order (default: the order of ``state.lam``).
    lam0 : float or dict name -> ndarray, optional
        The prior (``BayesBiNN(lam0=...)``; it lives on the optimizer, not in the
        state). Default: a ``lam0`` field of ``state`` if it has one, else 0.

    Returns
    -------
    dict with ``"lamda"``, ``"mu"``, ``"momentum"``, ``"prior_lamda"`` (each shape (D,),
    the dtype of lam), ``"step"`` (int) and ``"seed"`` (int, refbinn's noise seed: the
    authors' code draws its noise from torch's generator and has no such field; keep it to
    come back with ``bayesbinn_from_torch``, or the noise after the round trip differs).
    """
    lam = _field(state, "lam")
    names = list(lam) if names is None else list(names)
    vec = params_to_vector(lam, names)
    mu = _field(state, "mu", None)
    mu_vec = np.tanh(vec) if not mu else params_to_vector(mu, names).astype(vec.dtype, copy=False)   # none in 'exact'
    if lam0 is None:
        lam0 = _field(state, "lam0", 0.0)
    lam0_vec = params_to_vector(lam0, names).astype(vec.dtype, copy=False) if isinstance(lam0, dict) \
        else np.full_like(vec, check_range("bayesbinn_to_torch: lam0", lam0))       # NaN passed, 'x' a raw error
    momentum = params_to_vector(_field(state, "momentum"), names).astype(vec.dtype, copy=False)
    return {"lamda": vec, "mu": mu_vec, "momentum": momentum, "prior_lamda": lam0_vec,
            "step": _count("bayesbinn_to_torch", "state.step", _field(state, "step")),
            "seed": _count("bayesbinn_to_torch", "state.seed", _field(state, "seed", 0), _SEED_MAX)}


def bayesbinn_from_torch(opt_state, like, names=None, numerics=None):
    """Split the authors' flat optimizer vectors into refbinn's per-parameter dicts.

    Parameters
    ----------
    opt_state : dict
        ``"lamda"``, ``"momentum"``, optionally ``"mu"`` (default tanh(lamda); 'official'
        needs the stored, lagged mu), ``"prior_lamda"``, ``"step"`` (default 0) and
        ``"seed"`` (refbinn's noise seed, as ``bayesbinn_to_torch`` writes it; default 0).
    like : dict name -> ndarray
        Shapes and dtypes of the parameters (``model.init(...)[0]``).
    names : sequence of str, optional
        Parameter order of the flat vectors (default: the order of ``like``).
    numerics : {'official', 'exact'} or None
        The optimizer's numerics: 'exact' stores no mu, so ``out["mu"]`` is empty whatever
        ``opt_state`` holds; None (the default) or 'official' keep the mu described above.

    Returns
    -------
    out : dict
        ``"lam"``, ``"momentum"``, ``"mu"`` (dicts name -> array), ``"lam0"`` (dict, or
        None when absent), ``"step"`` and ``"seed"`` (ints). ``BayesBiNNState(out["lam"],
        out["momentum"], out["mu"], out["step"], out["seed"])`` rebuilds the state; pass
        ``out["lam0"]`` to ``BayesBiNN(lam0=...)``.
    """
    if numerics not in (None, "official", "exact"):
        raise ValueError(f"bayesbinn_from_torch: numerics must be 'official', 'exact' or None, got {numerics!r}")
    _dict_arg("bayesbinn_from_torch", "opt_state", opt_state)
    _dict_arg("bayesbinn_from_torch", "like", like)
    if "lamda" not in opt_state or "momentum" not in opt_state:
        raise ValueError(f"bayesbinn_from_torch: opt_state needs 'lamda' and 'momentum', "
                         f"got keys {sorted(opt_state)}")

    def split(key):
        v = opt_state.get(key)
        return None if v is None else vector_to_params(
            _real_array("bayesbinn_from_torch", f"opt_state[{key!r}]", v).ravel(), like, names)
    lam = split("lamda")
    mu = {} if numerics == "exact" else split("mu")
    if mu is None:
        mu = {k: np.tanh(v) for k, v in lam.items()}
    return {"lam": lam, "momentum": split("momentum"), "mu": mu, "lam0": split("prior_lamda"),
            "step": _count("bayesbinn_from_torch", "opt_state['step']", opt_state.get("step", 0)),
            "seed": _count("bayesbinn_from_torch", "opt_state['seed']", opt_state.get("seed", 0), _SEED_MAX)}


def _count(where, what, v, hi=None):
    """``v`` (an int, or a NumPy or torch scalar) as an int in [0, hi]; ValueError naming ``what`` otherwise
    (int() took 2.7 and -1; None or a vector was a TypeError)."""
    v = _real_array(where, what, v)
    return check_int(f"{where}: {what}", v.item() if v.ndim == 0 else v.tolist(), 0, hi)


def _field(state, name, default=KeyError):
    if hasattr(state, name):
        return getattr(state, name)
    if isinstance(state, dict) and name in state:
        return state[name]
    if default is KeyError:
        raise ValueError(f"BayesBiNN state has no field '{name}'")
    return default
