"""VISPA: Gaussian variational inference over binary weights as a low-rank SDP (Burer-Monteiro).

Each binary weight i of a layer with n weights owns a vector v_i = (m_i, Z[:, i]/sqrt(S))
in R^(K+1). One step, with one r per layer per minibatch::

    r      ~ N(0, I_K / S)                                   (``sample``)
    w      = m + Z^T r,   w_b = sign(w)  (0 -> +1)           (``sample_weights``; the forward weights)
    g      = d loss/d w_b                                    (minibatch mean, from the model's backward)
    grad_m = g,   grad_Z[k] = sqrt(S) * r_k * g              (``vispa_grads``; straight-through in w)
    for p in (m, Z):   buf_p = momentum*buf_p + (grad_p + weight_decay*p);   p = p - lr*buf_p
    A_i    = m_i**2 + (1/S) * sum_k Z[k, i]**2               (``project``)
    m_i    = m_i / sqrt(A_i),   Z[:, i] = Z[:, i] / sqrt(A_i)

Why: the projection keeps ||v_i|| = 1, i.e. diag(X) = 1 for the Gram matrix X = V^T V of
the rank-(K+1) factor V = [v_1 ... v_n]: the SDP relaxation of +-1 variables in
Burer-Monteiro form. With xi = sqrt(S) r ~ N(0, I_K), w_i = <v_i, (1, xi)> and sign(w_i)
is hyperplane rounding; w_i ~ N(m_i, 1 - m_i**2), so abs(m_i) <= 1 and

    P(w_b,i = +1) = Phi(m_i / sqrt(1 - m_i**2)).

grad_Z is the reparameterisation gradient of E_xi[L(m + V^T xi)] with respect to the
normalised factor V = Z/sqrt(S) (d/dV = xi * g = sqrt(S) r g), i.e. sqrt(S) times the
gradient with respect to Z itself; the step is then applied to Z.

Names in this module and in the method:

    =================  ===============================  ===========================================
    refbinn            symbol                           meaning
    =================  ===============================  ===========================================
    ``m``              m (n)                            mean; P(w = +1) = Phi(m/sqrt(1 - m**2))
    ``Z``              Z (K x n)                        low-rank factor; Cov(w) = Z^T Z / S
    ``r``              r ~ N(0, I_K/S)                  the noise of one forward pass
    ``rank``           K                                rank of the factor (8 for CIFAR)
    ``scale``          S                                variance scale (100 for CIFAR)
    ``vel_m, vel_Z``   momentum buffers                 torch SGD ``momentum_buffer``
    ``lr, momentum``   SGD step size, momentum          0.1, 0.9
    ``weight_decay``   L2 added to the gradient         5e-4 (on m and Z both)
    =================  ===============================  ===========================================

Projection at the end of ``update`` (and in ``init``), not at the start of the forward:
the authors project the parameters in place at the start of every training forward pass.
In a pure state-transition API the sequence of operations is the same (init, project,
forward/backward, step, project, forward/backward, step, ...): projecting at init and
after every step means every forward reads a projected state, exactly as theirs does.
Nothing else reads the unprojected values: sign(m) and the law of sign(m + Z^T r) are
unchanged by a positive rescaling of each v_i, so evaluation is the same too.

Deterministic order of floating-point operations (for a port fed the same r):
Z^T r and sum_k Z[k]**2 are accumulated over k = 0, 1, ..., K-1 in that order, in the
state dtype; A_i = m_i**2 + (sum_k Z[k, i]**2) / S; the division is by sqrt(A_i).
An exactly zero vector (A_i = 0, possible only with K = 0 or a zero state) projects
to m_i = 1, Z[:, i] = 0, the +1 weight, which is what sign(0) gives it already.

Reconstructed from the authors' public code (see docs/vispa.md); the paper's text was
not available. Omitted: the optional learned per-channel output scale (refbinn's
networks have BatchNorm after every binary layer).

Where the code is: this module holds the optimizer (``VISPA``, ``VISPAState``) and
re-exports the rest, so import everything from here. The equations, one NumPy function
each (``xavier_std``, ``project``, ``gaussian_weights``, ``sample_weights``,
``vispa_grads``, ``sgd_momentum``, ``step_numpy``), are in ``_vispa_math.py``; their
float32 Numba twins (``sample_weights_fused``, ``step_fused``) are in
``_vispa_kernels.py``. ``VISPA._step`` is the one dispatch point (``_backend.use_kernels``).

References: Orecchia et al., "Training Binary Neural Networks via Gaussian Variational
Inference and Low-Rank Semidefinite Programming", NeurIPS 2024.
"""
from __future__ import annotations

import functools
import math
import weakref
from typing import NamedTuple

import numpy as np

from .. import noise as noise_stream
from ..checks import check_choice, check_generator, check_int, check_range, check_real
from ..nn.base import sign
from ._backend import PooledKernels, check_backend, check_grads_before, raise_nonfinite, use_kernels
from ._vispa_kernels import sample_weights_fused, step_fused
from ._vispa_math import (gaussian_weights, project, sample_weights, sgd_momentum,  # noqa: F401
                          step_numpy, vispa_grads, xavier_std)
from .base import Optimizer, as_grad_list, check_grads, check_param_dict, check_state_like, check_state_type

INITS = ("xavier", "params")


# -- the optimizer -------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _vispa_r(seed, step, name, rank, scale, dtype):
    """``VISPA.noise``'s value, computed once per argument tuple (callers get copies)."""
    z = noise_stream.normal(noise_stream.NoiseKey(seed, step, 1), 0, name, rank)
    return (z / math.sqrt(scale)).astype(dtype)


class VISPAState(NamedTuple):
    """VISPA's state.

    Attributes
    ----------
    m, vel_m : dict name -> ndarray
        Means and their momentum (state dtype), like the weights.
    Z, vel_Z : dict name -> ndarray
        Low-rank factors and their momentum, shape (K,) + weight shape.
    step : int
        Updates taken so far.
    seed : int
        The noise seed, drawn by ``init``: step t's r are ``VISPA.noise(seed, t, ...)``.
    """
    m: dict
    Z: dict
    vel_m: dict
    vel_Z: dict
    step: int
    seed: int = 0


class VISPA(PooledKernels, Optimizer):
    """VISPA (Orecchia et al., NeurIPS 2024) as a pure state transition; see the module docstring.

    Every parameter given to ``init`` is treated as binary; send real-valued
    parameters (biases, BatchNorm affine) to another optimizer (``Partition``).

    Parameters
    ----------
    lr : float > 0
        SGD step size (0.1 in the authors' CIFAR runs, with linear warm-up then cosine).
    rank : int >= 0
        K, the rank of Z. K = 0 with ``project=False`` is straight-through SGD on m.
    scale : float > 0
        S: r ~ N(0, I_K/S).
    momentum : float in [0, 1)
    weight_decay : float >= 0
        L2 coefficient added to the gradient of m and of Z.
    project : bool
        Project every v_i onto the unit sphere at init and after every step.
    init : {'xavier', 'params'}
        'xavier': m and Z Xavier-normal (the authors'); 'params': m starts as a copy of the
        given parameters (e.g. a trained latent network), Z Xavier-normal, and then (with
        ``project``) each (m_i, Z[:, i]) is projected to the unit sphere like every step's.
    backend : {'numba', 'numpy'}
        'numba' runs float32 one-pass steps and forward weights in fused kernels
        (``_step_kernel``, ``_sign_kernel``, bit-identical to the NumPy functions;
        float64 and several passes per step use NumPy); 'numpy' always uses the
        reference functions (``_vispa_math``). The fused path takes its output arrays
        from a pool and reuses one only when nothing else references it (a dropped
        state's), so one optimizer object must not run two updates at once from
        different threads.

    References
    ----------
    Orecchia et al., "Training Binary Neural Networks via Gaussian Variational Inference and
    Low-Rank Semidefinite Programming", NeurIPS 2024: the VISPA algorithm (w = sign(m + Z^T r),
    r ~ N(0, I_K/S); SGD with momentum on m and Z; each v_i projected onto the unit sphere),
    in the fixed order of operations of the module docstring.
    """

    POOL_KEEP = 16    # outputs per shape: per parameter of that shape, the live state's (m, vel_m) or
                      # (Z, vel_Z), the new ones and the next weights w; the MNIST MLP has two
                      # 2048 x 2048 layers, so 6 (the earlier value) evicted arrays still in use and
                      # every step paid fresh pages (measured: 95-570 ms a step against ~90 ms)

    def __init__(self, lr=0.1, rank=8, scale=100.0, momentum=0.9, weight_decay=5e-4,
                 project=True, init="xavier", backend="numba"):
        self.lr = float(check_range("lr", lr, 0.0, lo_open=True))
        self.rank = check_int("rank", rank, 0)
        self.scale = float(check_range("scale", scale, 0.0, lo_open=True))
        if not math.isfinite(self.scale):
            raise ValueError(f"scale must be in (0, inf), got {scale!r}")
        self.momentum = float(check_range("momentum", momentum, 0.0, 1.0, hi_open=True))
        self.weight_decay = float(check_range("weight_decay", weight_decay, 0.0))
        if not isinstance(project, (bool, np.bool_)):
            raise ValueError(f"project must be True or False, got {project!r}")
        self.project = bool(project)
        self.init_mode = check_choice("init", init, INITS)
        self.backend = check_backend(backend)

    def config(self):
        return dict(lr=self.lr, rank=self.rank, scale=self.scale, momentum=self.momentum,
                    weight_decay=self.weight_decay, project=self.project, init=self.init_mode,
                    backend=self.backend)

    # -- state ----------------------------------------------------------------------
    def init(self, params, rng=None):
        """m, Z Xavier-normal (std ``xavier_std`` of the weight shape), then ``project``; buffers 0.

        Draws, per parameter in order: m (``init='xavier'`` only), then Z, each as
        float64 ``rng.standard_normal(shape) * std`` rounded to the parameter's dtype;
        then the noise seed, an integer in [0, 2**63).
        """
        check_generator("VISPA.init: rng (Xavier-normal m and Z)", rng)
        m, Z = {}, {}
        for k, p in check_param_dict(params, "VISPA").items():
            p = np.asarray(p)
            if p.dtype not in (np.float32, np.float64):
                raise ValueError(f"VISPA: parameter '{k}' has dtype {p.dtype}, expected float32 or float64")
            std = xavier_std(p.shape)
            if self.init_mode == "xavier":
                m_k = (rng.standard_normal(p.shape) * std).astype(p.dtype)
            else:
                m_k = np.array(p, copy=True)
            Z_k = (rng.standard_normal((self.rank,) + p.shape) * std).astype(p.dtype)
            m[k], Z[k] = project(m_k, Z_k, self.scale) if self.project else (m_k, Z_k)
        seed = int(rng.integers(0, 2 ** 63))
        return VISPAState(m, Z, {k: np.zeros_like(v) for k, v in m.items()},
                          {k: np.zeros_like(v) for k, v in Z.items()}, 0, seed)

    # -- sampling and forward weights --------------------------------------------------
    def sample(self, state, rng=None):
        """[noise], noise = dict name -> r, r ~ N(0, I_K/S) of shape (K,): one r per layer.

        Counter-based: r is ``noise(state.seed, state.step, name, dtype)`` (K = rank), a pure
        function of the state, so ``update`` knows the next step's r and writes that
        step's forward weights in its own pass (see ``forward_params``). ``rng`` is not
        used (the protocol's argument; the seed was drawn by ``init``).
        """
        check_state_type(state, VISPAState, "VISPA")
        return [{k: self.noise(state.seed, state.step, k, v.dtype) for k, v in state.m.items()}]

    def noise(self, seed, step, name, dtype=np.float32):
        """Step ``step``'s r for parameter ``name``: ``refbinn.noise.normal(NoiseKey(seed, step,
        1), 0, name, K) / sqrt(S)``, computed in float64 and rounded to ``dtype``.

        Parameters
        ----------
        seed : int
            The state's noise seed, 0 <= seed < 2**64.
        step : int
            0 <= step < 2**32.
        name : str
        dtype : float32 or float64

        Returns
        -------
        ndarray, (K,), ``dtype`` (a new array on every call)

        Remembered per (seed, step, name, K, S, dtype): the fused ``update`` asks for the
        next step's r and that step's ``sample`` for the same r (each ~0.1 ms of Python).
        """
        return _vispa_r(int(seed), int(step), name, self.rank, self.scale, np.dtype(dtype).str).copy()

    def forward_params(self, state, noise=None):
        """w_b = sign(m + Z^T r) for a noise dict; sign(m) (r = 0) for None.

        The fused ``update`` that made ``state`` already wrote sign(m + Z^T r) for the
        r of ``sample(state)`` (the same bits) into ``self.memo``; it is returned when
        state and r are the ones it was made for (the same m and Z arrays, step, and the
        bytes of r), so a training step reads m and Z once. Any other r is computed.
        The returned arrays must be treated as read-only.
        """
        if noise is None:
            return self.params(state)
        check_state_type(state, VISPAState, "VISPA")
        self._check_noise(noise, state)
        self._check_state(state)                   # the fused kernel reads rank * m.size of Z
        out = {}
        for k, m in state.m.items():
            r = np.asarray(noise[k], dtype=m.dtype)
            w = self._ahead(k, state, r)
            if w is not None:
                out[k] = w
            elif use_kernels(self.backend, m, state.Z[k]):
                out[k] = sample_weights_fused(self.pool, m, state.Z[k], r)
            else:
                out[k] = sample_weights(m, state.Z[k], r)
        return out

    def _ahead(self, k, state, r):
        """The memo's weights for parameter k if made from this state's m and Z with this r."""
        entry = self.memo.get(("vispa", k))
        if entry is None:
            return None
        m_ref, Z_ref, step, r0, w = entry
        if (m_ref() is state.m[k] and Z_ref() is state.Z[k] and step == state.step
                and r0.dtype == r.dtype and r0.tobytes() == r.tobytes()):
            return w
        return None

    def params(self, state):
        """sign(m), 0 -> +1: the most probable sign of every weight (P(+1) >= 1/2 iff m >= 0)."""
        return {k: sign(v) for k, v in check_state_type(state, VISPAState, "VISPA").m.items()}

    def sample_params(self, state, rng):
        """One binary network sign(m + Z^T r), r ~ N(0, I_K/S) from ``rng`` (for ensemble prediction).

        Drawn per parameter in state order as float64 ``rng.standard_normal(K) / sqrt(S)``,
        rounded to the state dtype (not the training stream: each call is a new network).

        Parameters
        ----------
        state : VISPAState
            The current state.
        rng : numpy.random.Generator
            The stream r ~ N(0, I_K/S) is drawn from (one r per parameter, in state order).

        Returns
        -------
        dict name -> ndarray
            +-1 weights (sign(0) = +1), shape and dtype of each ``m``.
        """
        check_generator("VISPA.sample_params: rng", rng)
        sd = math.sqrt(self.scale)
        noise = {k: (rng.standard_normal(self.rank) / sd).astype(v.dtype) for k, v in state.m.items()}
        return self.forward_params(state, noise)

    def _check_noise(self, noise, state):
        if not isinstance(noise, dict):
            raise ValueError(f"VISPA: noise must be a dict name -> r (an entry of sample()'s list), "
                             f"got {type(noise).__name__}")
        for k in state.m:
            if k not in noise:
                raise ValueError(f"VISPA: noise has no entry for parameter '{k}'")
            if np.shape(noise[k]) != (self.rank,):
                raise ValueError(f"VISPA: noise of parameter '{k}' has shape {np.shape(noise[k])}, "
                                 f"expected ({self.rank},)")
            if not (type(noise[k]) is np.ndarray and noise[k].dtype.kind == "f"):
                check_real(f"VISPA: noise of parameter '{k}'", noise[k], "iuf")

    # -- the step ---------------------------------------------------------------------------
    def update(self, grads, state, noise=None, *, lr=None, weights=None):
        """Return the new state after one step (the given state is never modified).

        Parameters
        ----------
        grads : dict or list of dicts name -> ndarray (weight shape)
            d loss/d w_b at ``forward_params(state, noise[j])``; with several passes the
            estimates (grad_m, grad_Z) are averaged.
        state : VISPAState
        noise : list of dicts name -> r (K,)
            What ``sample`` returned; may be None only when K = 0.
        lr : float >= 0, optional
            Overrides the constructor's lr for this step (a schedule's value).
        weights : list of dict, optional
            ``forward_params``' output of each pass; unused (the protocol's, see ``Optimizer.update``).

        Raises
        ------
        FloatingPointError
            Naming the parameter, if a gradient has NaN/inf or the step made m or Z
            non-finite; the state is then left as it was. Gradients of parameters on
            the NumPy path are scanned first (``check_finite``); the fused kernel counts
            non-finite m and Z in its output (a NaN/inf gradient always makes m
            non-finite, whatever lr), and only then are the gradients scanned to name
            the culprit, so the float32 step does not pay for a separate pass. Nothing
            is stored either way.
        """
        lr = self.lr if lr is None else float(check_range("lr", lr, 0.0))
        self._check_state(state)
        if noise is None:
            if self.rank > 0:
                raise ValueError(f"VISPA.update needs the noise list returned by sample() (rank={self.rank})")
            noise = [{k: np.zeros(0, dtype=v.dtype) for k, v in state.m.items()}]
        grads = as_grad_list(grads, noise)
        for n in noise:
            self._check_noise(n, state)
        check_grads(grads, state.m, "VISPA", allow_extra=True)
        on_kernels = {k: len(grads) == 1 and use_kernels(self.backend, m, state.Z[k])
                      for k, m in state.m.items()}
        check_grads_before(grads, on_kernels)
        m_new, Z_new, vm_new, vZ_new, ahead = {}, {}, {}, {}, {}
        for k, m in state.m.items():
            gs = [np.asarray(g[k], dtype=m.dtype) for g in grads]
            rs = [np.asarray(n[k], dtype=m.dtype) for n in noise]
            r_next = self.noise(state.seed, state.step + 1, k, m.dtype) if on_kernels[k] else None
            self.memo.pop(("vispa", k), None)                 # lets the pool reuse its arrays
            out = self._step(on_kernels[k], m, state.Z[k], state.vel_m[k], state.vel_Z[k], gs, rs, lr,
                             r_next)
            if out is None:
                raise_nonfinite(k, grads, "m or Z")
            m_new[k], Z_new[k], vm_new[k], vZ_new[k], w = out
            if w is not None:
                ahead[k] = (r_next, w)
        for k, (r_next, w) in ahead.items():                  # only once the whole step succeeded
            self.memo[("vispa", k)] = (weakref.ref(m_new[k]), weakref.ref(Z_new[k]), state.step + 1,
                                       r_next, w)
        return VISPAState(m_new, Z_new, vm_new, vZ_new, state.step + 1, state.seed)

    def _check_state(self, state):
        """ValueError unless vel_m has m's shape and dtype, and Z, vel_Z the shape (rank,) + m's:
        the fused kernel reads m.size (and rank * m.size) elements of each."""
        check_state_type(state, VISPAState, "VISPA")
        check_state_like("VISPA", "m", state.m, {"vel_m": state.vel_m})
        for k, m in state.m.items():
            for field in ("Z", "vel_Z"):
                arrays = getattr(state, field)
                a = arrays.get(k) if isinstance(arrays, dict) else None
                if np.shape(a) != (self.rank,) + m.shape or getattr(a, "dtype", None) != m.dtype:
                    raise ValueError(f"VISPA: state.{field}['{k}'] has shape {np.shape(a)} and dtype "
                                     f"{getattr(a, 'dtype', type(a).__name__)}, expected the shape "
                                     f"{(self.rank,) + m.shape} (rank, ...) and dtype {m.dtype} of state.m['{k}']")

    def _step(self, on_kernels, m, Z, vm, vZ, gs, rs, lr, r_next=None):
        """The one dispatch point: ``step_fused`` (``_vispa_kernels``, one pass, outputs from
        the pool; with ``r_next`` it also writes the next step's forward weights) or the
        reference ``step_numpy`` (``_vispa_math``); bit for bit the same. Returns
        (m, Z, vel_m, vel_Z, w or None), or None if m or Z came out non-finite."""
        if on_kernels:
            return step_fused(self.pool, m, Z, vm, vZ, gs[0], rs[0], lr, self.momentum,
                              self.weight_decay, self.scale, self.project, r_next)
        with np.errstate(over="ignore", invalid="ignore"):           # reported by the caller
            out = step_numpy(m, Z, vm, vZ, gs, rs, lr, self.momentum, self.weight_decay,
                             self.scale, self.project)
        return out + (None,) if np.all(np.isfinite(out[0])) and np.all(np.isfinite(out[1])) else None
