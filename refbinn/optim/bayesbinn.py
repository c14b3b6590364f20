"""BayesBiNN: the Bayesian learning rule on a mean-field Bernoulli posterior over binary weights.

Each binary weight w in {-1, +1} has a natural parameter lam; mu = tanh(lam) = E_q[w]
and P(w = +1) = sigmoid(2*lam). One step with S Monte Carlo samples::

    delta  = 0.5*log(u/(1-u)),  u ~ U(0, 1)                 (logistic noise, scale 1/2)
    w_r    = tanh((lam + delta)/tau)                         (relaxed sample; the forward weights)
    s      = N*(1 - w_r**2)/(tau*(1 - mu**2))                (Lemma 1 scale)
    g_hat  = mean over samples of s*g,  g = d loss/d w at w_r (loss = minibatch mean)
    m      = beta*m + (1-beta)*(g_hat + reweight*(lam - lam0))
    lam    = lam - lr*m/(1 - beta**t)                        (t = step count from 1)

With beta = 0 and reweight = 1 this is the paper's lam <- (1-lr)*lam - lr*(s*g - lam0).
S = 0 is the point estimate: forward at tanh(lam), g_hat = N*g, no scale.

Names in this module, the paper and the authors' PyTorch code:

    =============  =================  ====================================
    refbinn        paper              authors' code
    =============  =================  ====================================
    lam            lambda             ``lamda``, ``state['lamda']``
    mu             mu = tanh(lambda)  ``state['mu']``
    lam0           lambda_0 (prior)   ``prior_lamda``, ``state['prior_lamda']``
    u              U(0,1) noise       ``raw_noise``
    delta          delta (logistic)   ``rou_vector`` minus ``lamda``
    w_r            relaxed weight     ``relaxed_w`` / ``w_vector``
    s              Lemma 1 factor     ``scale`` (times ``train_set_size``)
    g_hat          grad estimate      ``grad_hat``
    m              momentum           ``state['momentum']``
    lr, beta       alpha, (none)      ``lr``, ``betas``
    tau            temperature        ``temperature``
    samples (S)    M                  ``num_samples``
    N              N                  ``train_set_size``
    lam_init       +-10               ``lamda_init``
    lam_init_std   (none)             sqrt(``lamda_std``): theirs is a variance
    reweight       (none)             ``reweight``
    =============  =================  ====================================

Two numerics (spec section 7):

- ``'exact'`` (default): the scale in a stable form, s = N/tau * (cosh(lam)/cosh(z))**2
  = exp(log(N/tau) + 2*(abs(lam) - abs(z))) * ((1 + exp(-2 abs(lam)))/(1 + exp(-2 abs(z))))**2,
  z = (lam + delta)/tau, which has no 0/0 when tanh saturates; mu = tanh(lam) of the
  current lam, never stored. At tau = 1e-10 the
  true concrete derivative underflows: s ~ 0 and only the prior term moves lam.
- ``'official'``: the authors' float32 arithmetic, in their order:
  s = (1 - w_r**2 + 1e-10)/tau/(1 - mu**2 + 1e-10) * N, left to right with N last (with
  S > 1 samples the factor N/S multiplies the sum over samples), with mu one step behind
  (after step t the state holds tanh(lam_{t-1})); the mode uses that mu. In float32
  at tau = 1e-10 w_r is exactly +-1, so the 1e-10 constants set the step: s/N = 1e10
  at lam = 10. A float64 port of the same formula gives 1/(1 - tanh(10)**2 + 1e-10) ~ 1.2e8.
- ``'exact-clipped'`` (a variant for experiments, NOT the paper's estimator): 'exact' with
  the scale bounded, s = min(s_exact, N/tau) (``concrete_scale``).

Conventions:

- The mode maps zeros to +1 (``refbinn.nn.sign``; the authors map mu <= 0 to -1).
- Noise u is a function, not a draw: ``sample`` returns the step's keys and u of sample j
  for parameter ``name`` is ``refbinn.noise.uniform(NoiseKey(seed, step, S), j, name, shape)``
  (Philox4x32-10 of (element // 4, step, j, crc32(name)) under the seed that ``init`` draws
  and the state keeps), on the float32 midpoint grid of (0, 1), so log(0) never occurs.
  ``forward_params``/``update`` also take u as arrays (a port's or a trace's).
- The NumPy equations (``_bayesbinn_math.py``) are the reference: + - * / in the state
  dtype, in the authors' order, with the exp/log/tanh of ``_elementary.py`` (float32:
  refbinn's own, within 3 ulp and the same on every CPU; float64: the C library's). The
  fused Numba kernels (``_bayesbinn_kernels.py``) make u from the key in the kernel and
  compute the same bits (float32 and float64); ``backend='numpy'`` forces the reference.
- The exact scale is capped just below the dtype's largest finite number; a step
  that still overflows lam raises FloatingPointError and leaves the state as it was.

Where the code is (the template of every refbinn optimizer): this module holds the
optimizer (``BayesBiNN``, ``BayesBiNNState``) and its dispatch (``BayesBiNN.update`` and
``forward_params``, with ``_backend.use_kernels``); it re-exports the equations, so
import them from here. The equations, one NumPy function each (``open_uniform``,
``logistic_noise``, ``relaxed_sample``, ``concrete_scale``, ``natural_update``,
``step_numpy``; constants ``EXACT``, ``OFFICIAL``, ``CODE_EPS``, ``LOG2``), are in
``_bayesbinn_math.py``; their Numba twins, named after them (``relaxed_fused``,
``_scale_exact``, ``_scale_official``, ``_natural``, ``step_fused``, ...), are in ``_bayesbinn_kernels.py``.

References: Meng, Bachmann & Khan, "Training Binary Neural Networks using the
Bayesian Learning Rule", ICML 2020 (Lemma 1 and the BayesBiNN update); refbinn
spec sections 2-7.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import check_choice, check_generator, check_range, check_real
from ..nn.base import sign
from .. import noise as noise_stream
from ._backend import PooledKernels, check_backend, check_grads_before, raise_nonfinite, use_kernels
from ._bayesbinn_kernels import relaxed_fused, step_fused
from ._bayesbinn_math import (CODE_EPS, EXACT, EXACT_CLIPPED, LOG2, NUMERICS,  # noqa: F401  (re-exported)
                              OFFICIAL, concrete_scale, log_ratio, logistic_noise, natural_update,
                              open_uniform, relaxed_sample, rounded, scale_cap, step_numpy)
from ._elementary import exp_, log_, tanh_  # noqa: F401  (re-exported)
from .base import Optimizer, as_grad_list, check_grads, check_param_dict, check_state_like, check_state_type



_KERNEL_DTYPES = (np.float32, np.float64)


# -- the optimizer ---------------------------------------------------------------
class BayesBiNNState(NamedTuple):
    """BayesBiNN's state.

    Attributes
    ----------
    lam : dict name -> ndarray
        Natural parameters (state dtype).
    momentum : dict name -> ndarray
        Their momentum; with beta = 0 it is not used, and stays as ``init`` made it (zeros).
    mu : dict name -> ndarray
        The stored mean, 'official' only: tanh of the previous lam (the authors' lag);
        empty for 'exact' (the mean there is tanh(lam), never stored).
    step : int
        Updates taken so far.
    seed : int
        The noise seed, drawn by ``init``: step t's u are ``refbinn.noise.uniform(
        NoiseKey(seed, t, S), j, name, ...)``.
    """
    lam: dict
    momentum: dict
    mu: dict
    step: int
    seed: int = 0


class BayesBiNN(PooledKernels, Optimizer):
    """BayesBiNN (Meng, Bachmann & Khan, ICML 2020) as a pure state transition.

    Every parameter given to ``init`` is treated as binary; send real-valued
    parameters (biases, BatchNorm affine) to another optimizer.

    Parameters
    ----------
    N : float > 0
        Training-set size (the minibatch-mean gradient is scaled to the full sum).
    tau : float > 0
        Temperature of the relaxed (concrete) samples.
    lr : float > 0
        Learning rate alpha (default 1e-4).
    beta : float in [0, 1)
        Momentum, with Adam-style bias correction 1 - beta**t (default 0).
    samples : int >= 0
        Monte Carlo samples S per step; 0 = point estimate at tanh(lam).
    lam_init : float
        lam starts at +-lam_init with a random sign per weight (default 10).
    lam_init_std : float >= 0
        Standard deviation of Gaussian noise added to the initial lam. The
        authors' ``lamda_std`` is a variance (they take its square root), so
        lam_init_std = sqrt(lamda_std).
    lam0 : float or dict name -> ndarray
        Prior natural parameter (0: Bernoulli(1/2)); a dict of arrays, e.g. the
        previous task's lam, for continual learning.
    reweight : float >= 0
        Weight of the prior (KL) term.
    numerics : {'exact', 'official', 'exact-clipped'}
        See the module docstring ('exact-clipped' is not the paper's estimator).
    dtype : None, 'float32' or 'float64'
        State dtype. None: the params' dtype for 'exact', float32 for 'official'.
    backend : {'numba', 'numpy'}
        'numba' runs the step in fused kernels that make the noise in registers
        (``_bayesbinn_kernels``); 'numpy' materialises u (``refbinn.noise.uniform``) and
        runs the reference equations (``_bayesbinn_math``). Both give the same bits.

    References
    ----------
    Meng, Bachmann & Khan, "Training Binary Neural Networks using the Bayesian Learning Rule",
    ICML 2020: Lemma 1 (the concrete gradient s*g, s = N*(1 - w_r**2)/(tau*(1 - mu**2))) and
    the BayesBiNN update lam = (1 - lr)*lam - lr*(s*g - lam0) (with momentum beta as in the
    authors' code); refbinn spec sections 3-4.
    """

    def __init__(self, *, N, tau, lr=1e-4, beta=0.0, samples=1, lam_init=10.0, lam_init_std=0.0,
                 lam0=0.0, reweight=1.0, numerics=EXACT, dtype=None, backend="numba"):
        self.N = check_range("N", N, 0, lo_open=True)
        self.tau = check_range("tau", tau, 0, lo_open=True)
        self.lr = check_range("lr", lr, 0, lo_open=True)
        self.beta = check_range("beta", beta, 0, 1, hi_open=True)
        if isinstance(samples, (bool, np.bool_)) or check_range("samples", samples, 0) != int(samples):
            raise ValueError(f"samples must be an integer in [0, inf), got {samples!r}")
        self.samples = int(samples)
        self.lam_init = check_range("lam_init", lam_init)
        self.lam_init_std = check_range("lam_init_std", lam_init_std, 0)
        self.reweight = check_range("reweight", reweight, 0)
        if isinstance(lam0, dict):
            self.lam0 = {k: _lam0_array(k, v) for k, v in lam0.items()}
        else:
            self.lam0 = check_range("lam0", lam0)
        self.numerics = check_choice("numerics", numerics, NUMERICS)
        if dtype is not None:
            try:
                name = np.dtype(dtype).name
            except TypeError:
                name = None
            if name not in ("float32", "float64"):
                raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")
            dtype = name
        self.dtype = dtype
        self.backend = check_backend(backend)

    def config(self):
        return dict(N=self.N, tau=self.tau, lr=self.lr, beta=self.beta, samples=self.samples,
                    lam_init=self.lam_init, lam_init_std=self.lam_init_std, lam0=self.lam0,
                    reweight=self.reweight, numerics=self.numerics, dtype=self.dtype,
                    backend=self.backend)

    # -- state ---------------------------------------------------------------
    def _state_dtype(self, p):
        if self.dtype is not None:
            return np.dtype(self.dtype)
        if self.numerics == OFFICIAL:
            return np.dtype(np.float32)
        dt = np.asarray(p).dtype
        if dt not in (np.float32, np.float64):
            raise ValueError(f"BayesBiNN: parameter dtype must be float32 or float64, got {dt}")
        return dt

    def init(self, params, rng=None):
        """lam = +-lam_init (random sign per weight) + lam_init_std * N(0, 1); m = 0; step 0.

        Draws, per parameter in order: the signs, ``rng.integers(0, 2, shape)`` (1 -> +lam_init,
        0 -> -lam_init), then (if lam_init_std > 0) ``rng.standard_normal(shape)``, all in
        float64 before the cast to the state dtype; then the noise seed,
        ``rng.integers(0, 2**63)``. 'official' also stores mu = tanh(lam) (``refbinn.elementary``).
        """
        check_generator("BayesBiNN.init: rng (random signs of lam)", rng)
        lam, mom, mu = {}, {}, {}
        for k, p in check_param_dict(params, "BayesBiNN").items():
            shape, dt = np.shape(p), self._state_dtype(p)
            self._check_lam0(k, shape, dt)
            signs = np.where(rng.integers(0, 2, size=shape) == 1, 1.0, -1.0)
            with np.errstate(over="ignore"):                      # an overflow is reported below
                lam_k = signs * self.lam_init
                if self.lam_init_std > 0:
                    lam_k = lam_k + self.lam_init_std * rng.standard_normal(shape)
                lam[k] = np.array(lam_k, dtype=dt, order="C")      # a 0-d parameter keeps shape ()
            if not np.all(np.isfinite(lam[k])):
                raise ValueError(f"BayesBiNN: lam_init={self.lam_init!r} with lam_init_std={self.lam_init_std!r} "
                                 f"makes lam of parameter '{k}' non-finite in the state dtype {dt}: "
                                 f"|lam_init| (plus a few lam_init_std) must be below {np.finfo(dt).max:.4g}")
            mom[k] = np.zeros(shape, dtype=dt)                  # untouched pages while beta = 0
            if self.numerics == OFFICIAL:
                mu[k] = np.asarray(tanh_(lam[k]))               # an array also for shape ()
        seed = int(rng.integers(0, 2 ** 63))
        return BayesBiNNState(lam, mom, mu, 0, seed)

    def _check_lam0(self, k, shape, dt):
        """ValueError unless lam0 is finite in the state dtype ``dt`` (None: not checked) and, as a
        dict, has an entry of ``shape`` for parameter k."""
        if not isinstance(self.lam0, dict):
            if dt is None:                                       # a scalar: nothing to check per parameter
                return
            with np.errstate(over="ignore"):
                finite = np.isfinite(np.asarray(float(self.lam0), dtype=dt))
            if not finite:
                raise ValueError(f"lam0 must be finite in the state dtype {dt}: in "
                                 f"[-{np.finfo(dt).max:.4g}, {np.finfo(dt).max:.4g}], got {self.lam0!r}")
            return
        if k not in self.lam0:
            raise ValueError(f"lam0 has no entry for parameter '{k}'")
        if np.shape(self.lam0[k]) != shape:
            raise ValueError(f"lam0['{k}'] has shape {np.shape(self.lam0[k])}, parameter has shape {shape}")
        if dt is not None:
            with np.errstate(over="ignore"):
                finite = np.all(np.isfinite(np.asarray(self.lam0[k], dtype=dt)))
            if not finite:
                raise ValueError(f"lam0['{k}'] must be finite in the state dtype {dt}: its values must lie "
                                 f"in [-{np.finfo(dt).max:.4g}, {np.finfo(dt).max:.4g}]")

    def _check_state(self, state):
        """ValueError unless ``state`` fits this optimizer: every lam a float32/float64 array, and
        (momentum when beta > 0, mu when 'official', an array lam0) of lam's shape and dtype.

        Before any kernel runs: the fused kernels read lam.size elements of each."""
        check_state_type(state, BayesBiNNState, "BayesBiNN")
        fields = {"momentum": state.momentum} if self.beta != 0 else {}
        if self.numerics == OFFICIAL:
            missing = [k for k in state.lam if not isinstance(state.mu, dict) or k not in state.mu]
            if missing:
                raise ValueError(f"BayesBiNN(numerics='official'): state.mu has no entry for parameter "
                                 f"'{missing[0]}' (a state made with numerics='exact'? its mu is empty)")
            fields["mu"] = state.mu
        check_state_like("BayesBiNN", "lam", state.lam, fields)
        for k, lam in state.lam.items():
            if self.beta == 0 and k not in state.momentum:       # not read, but carried over
                raise ValueError(f"BayesBiNN: state.momentum has no entry for parameter '{k}'")
            self._check_lam0(k, lam.shape, None)

    def _lam0(self, k, dt):
        v = self.lam0[k] if isinstance(self.lam0, dict) else self.lam0
        return np.asarray(v, dtype=dt)

    def _fused(self, lam):
        return use_kernels(self.backend, lam, dtypes=_KERNEL_DTYPES, min_size=0)

    # -- sampling and forward weights ------------------------------------------
    def sample(self, state, rng=None):
        """The step's noise as keys: [SampleKey(NoiseKey(seed, step, S), j) for j < S]; [None] when S = 0.

        No array is drawn: u of sample j for parameter ``name`` is
        ``refbinn.noise.uniform(key, j, name, shape)``, a pure function of (state.seed,
        state.step, j, name, element), which the kernels make in registers. ``rng`` is not
        used (the protocol's argument; the noise seed was drawn by ``init``).
        """
        check_state_type(state, BayesBiNNState, "BayesBiNN")
        if self.samples == 0:
            return [None]
        return noise_stream.sample_keys(noise_stream.NoiseKey(int(state.seed), int(state.step), self.samples))

    def forward_params(self, state, noise=None):
        """w_r = tanh((lam + delta)/tau) for a SampleKey or a dict name -> u; tanh(lam) for None (S = 0)."""
        check_state_type(state, BayesBiNNState, "BayesBiNN")
        if noise is None:
            return {k: np.asarray(tanh_(v)) for k, v in state.lam.items()}
        out = {}
        for k, lam in state.lam.items():
            if isinstance(noise, noise_stream.SampleKey) and self._fused(lam):
                out[k] = relaxed_fused(self.pool, lam, noise.key, noise.sample, k, self.tau)
            else:
                out[k] = np.asarray(relaxed_sample(lam, self._u(noise, k, lam), self.tau))
        return out

    @staticmethod
    def _u(noise, k, lam):
        """The u array of parameter k: materialised from a SampleKey, or given (a dict)."""
        if isinstance(noise, noise_stream.SampleKey):
            return noise.uniform(k, lam.shape, lam.dtype)
        if not isinstance(noise, dict) or k not in noise:
            raise ValueError(f"BayesBiNN: noise must be a SampleKey or a dict with an entry for '{k}', "
                             f"got {type(noise).__name__}")
        u = _contiguous(check_real(f"BayesBiNN: noise['{k}']", noise[k], "iuf"), lam.dtype)
        if u.shape != lam.shape:
            raise ValueError(f"BayesBiNN: noise['{k}'] has shape {u.shape}, lam has shape {lam.shape}")
        if u.size and not (u.min() > 0 and u.max() < 1):           # NaN fails both: min/max propagate it
            raise ValueError(f"BayesBiNN: noise['{k}'] must be in the open interval (0, 1) (finite, "
                             f"never 0 or 1 in lam's dtype {lam.dtype}), got values in "
                             f"[{float(u.min()):g}, {float(u.max()):g}]")
        return u

    # -- evaluation weights -------------------------------------------------------
    def params(self, state):
        """Mode: sign(lam) ('exact') or sign(stored mu) ('official', lagged), 0 -> +1."""
        check_state_type(state, BayesBiNNState, "BayesBiNN")
        src = state.mu if self.numerics == OFFICIAL else state.lam
        return {k: sign(v) for k, v in src.items()}

    def sample_params(self, state, rng):
        """Hard samples w in {-1, +1} with P(w = +1) = sigmoid(2*lam) = (1 + tanh(lam))/2.

        w = +1 where u < (1 + tanh(lam))/2, else -1, with u from ``open_uniform``: a draw
        from the mean-field posterior q(w) (for the posterior-averaged predictions).

        Parameters
        ----------
        state : BayesBiNNState
            The current state (its ``lam``, also in 'official' numerics).
        rng : numpy.random.Generator
            The stream u is drawn from, one array per parameter in state order.

        Returns
        -------
        dict name -> ndarray
            +-1 in the dtype and shape of each ``lam``.
        """
        check_state_type(state, BayesBiNNState, "BayesBiNN")
        check_generator("BayesBiNN.sample_params: rng", rng)
        out = {}
        for k, lam in state.lam.items():
            p_plus = 0.5 * (1 + rounded(np.tanh, lam))
            u = open_uniform(rng, lam.shape, lam.dtype)
            out[k] = np.where(u < p_plus, lam.dtype.type(1), lam.dtype.type(-1))
        return out

    # -- the step -------------------------------------------------------------------
    def update(self, grads, state, noise=None, *, lr=None, weights=None):
        """Return the new state after one step (the given state is never modified).

        Parameters
        ----------
        grads : dict or list of S dicts name -> ndarray (shape of lam)
            d loss/d w at ``forward_params(state, noise[j])``; one dict is accepted when S <= 1.
        state : BayesBiNNState
        noise : list
            What ``sample`` returned for this step (SampleKeys), or S dicts name -> u
            (e.g. a port's or a trace's arrays: the reference equations then run on them).
        lr : float, optional
            Overrides the constructor's learning rate for this step.
        weights : list of dict, optional
            ``forward_params``' output of each pass (the protocol's, see ``Optimizer.update``):
            the fused 'official' step reads w_r from it instead of remaking u, log and tanh (the
            same bits); entries that are not C-ordered arrays of lam's shape and dtype are ignored.

        Raises
        ------
        FloatingPointError
            Naming the parameter, if a gradient has NaN/inf or the step would make lam
            non-finite; the state is then left as it was. The NumPy path scans the
            gradients first (``check_finite``); the fused kernels write into fresh
            buffers and count non-finite lam' (which any NaN/inf gradient produces),
            and only then are the gradients scanned to name the culprit, so the step
            does not pay for a separate pass. Nothing is stored either way.
        """
        lr = self.lr if lr is None else check_range("lr", lr, 0, lo_open=True)
        self._check_state(state)
        if noise is None:
            if self.samples > 0:
                raise ValueError("BayesBiNN.update needs the noise list returned by sample() "
                                 f"(samples={self.samples})")
            noise = [None]
        grads = as_grad_list(grads, noise)
        check_grads(grads, state.lam, "BayesBiNN", allow_extra=True)
        step = state.step + 1
        key = _step_key(noise)
        on_kernels = {k: key is not False and self._fused(lam) for k, lam in state.lam.items()}
        check_grads_before(grads, on_kernels)
        official = self.numerics == OFFICIAL
        new_lam, new_m, new_mu = {}, {}, {}
        for k, lam in state.lam.items():
            gs = [_contiguous(g[k], lam.dtype) for g in grads]
            m = state.momentum[k] if self.beta != 0 else None
            mu = state.mu[k] if official else None
            lam0 = self._lam0(k, lam.dtype)
            if on_kernels[k]:
                ws = _pass_weights(weights, k, lam, len(gs)) if official and key is not None else None
                lam_new, m_new, mu_new = step_fused(self.pool, k, lam, m, mu, gs, key, lam0, lr, self.beta,
                                                    self.reweight, self.tau, self.N, self.numerics, step, ws)
            else:
                us = [None if n is None else self._u(n, k, lam) for n in noise]
                with np.errstate(over="ignore", invalid="ignore"):         # overflow is reported
                    lam_new, m_new, mu_new = step_numpy(lam, 0 if m is None else m, mu, gs, us, lam0, lr,
                                                        self.beta, self.reweight, self.tau, self.N,
                                                        self.numerics, step)
                if not np.all(np.isfinite(lam_new)):
                    lam_new = None
                else:                                   # shape (): NumPy scalars back to 0-d arrays
                    lam_new, m_new = np.asarray(lam_new), np.asarray(m_new)
                    mu_new = None if mu_new is None else np.asarray(mu_new)
            if lam_new is None:
                raise_nonfinite(k, grads, "lam (s*g overflowed)")
            new_lam[k] = lam_new
            new_m[k] = m_new if self.beta != 0 else state.momentum[k]   # beta = 0: m is not part of the step
            if official:
                new_mu[k] = mu_new
        return BayesBiNNState(new_lam, new_m, new_mu, step, state.seed)


def _lam0_array(k, v):
    """lam0[k] as an array; ValueError naming ``lam0['k']`` unless real-valued (int or float) and finite."""
    a = check_real(f"lam0['{k}']", v, "iuf")
    if not np.all(np.isfinite(a)):
        n_bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"lam0['{k}'] must be finite, in (-inf, inf); it has {n_bad} NaN/inf value(s)")
    return a


def _contiguous(a, dt):
    """``np.ascontiguousarray(a, dtype=dt)`` that keeps a 0-d array 0-d (ascontiguousarray makes it (1,))."""
    a = np.asarray(a, dtype=dt)
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _pass_weights(weights, k, lam, S):
    """[w_j[k] for each pass] when every one is a C-ordered array of lam's shape and dtype, else None."""
    if weights is None or len(weights) != S:
        return None
    ws = [w.get(k) if isinstance(w, dict) else None for w in weights]
    ok = all(isinstance(w, np.ndarray) and w.shape == lam.shape and w.dtype == lam.dtype
             and w.flags.c_contiguous for w in ws)
    return ws if ok else None


def _step_key(noise):
    """The NoiseKey when ``noise`` is exactly ``sample()``'s list for it; None for [None]
    (S = 0); False for anything else (arrays: the reference equations run on them)."""
    if noise == [None]:
        return None
    first = noise[0]
    if (isinstance(first, noise_stream.SampleKey) and first.key.samples == len(noise)
            and all(isinstance(n, noise_stream.SampleKey) and n.key == first.key and n.sample == j
                    for j, n in enumerate(noise))):
        return first.key
    return False
