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
is hyperplane rounding; w_i ~ N(m_i, 1 - m_i**2), so |m_i| <= 1 and

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

References: Orecchia et al., "Training Binary Neural Networks via Gaussian Variational
Inference and Low-Rank Semidefinite Programming", NeurIPS 2024.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..nn.base import sign
from .base import Optimizer, as_grad_list, check_finite, check_range
from ._pool import ArrayPool

INITS = ("xavier", "params")
BACKENDS = ("numba", "numpy")
FUSED_MIN_SIZE = 1 << 15      # weights per parameter below which the NumPy path is faster
TASK = 16384                  # weights per parallel task of the fused kernels
BLOCK = 128                   # weights per block: the block's K rows of Z stay in L1 between passes
FMAX = np.float32(np.finfo(np.float32).max)     # |x| <= FMAX: x is finite (NaN compares False)
POOL_KEEP = 6                 # pooled outputs per shape: two live states' (m, vel_m) or (Z, vel_Z), and spares

# -- the math, one function per equation -------------------------------------------------
def xavier_std(shape):
    """sqrt(2 / (fan_in + fan_out)), the Xavier-normal (Glorot) std with gain 1, fans as torch computes them.

    For a weight of shape (out, in, *kernel): fan_in = in * prod(kernel),
    fan_out = out * prod(kernel) (torch ``_calculate_fan_in_and_fan_out``). torch refuses
    fewer than 2 dimensions; here a 1-D parameter of length n counts as an (n, 1) matrix
    (fan_in = 1, fan_out = n) and a scalar as (1, 1). The value does not matter after
    ``project``: m_i and Z[:, i] share the std, and the projection divides it out.

    Parameters
    ----------
    shape : tuple of int
        The weight's shape (not the factor's).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        fan_out, fan_in = (shape[0] if shape else 1), 1
    else:
        field = int(np.prod(shape[2:], dtype=np.int64))
        fan_out, fan_in = shape[0] * field, shape[1] * field
    return math.sqrt(2.0 / (fan_in + fan_out))


def project(m, Z, scale):
    """Scale each v_i = (m_i, Z[:, i]/sqrt(S)) to unit length:

        A_i = m_i**2 + (1/S) sum_k Z[k, i]**2,   m_i <- m_i/sqrt(A_i),   Z[:, i] <- Z[:, i]/sqrt(A_i)

    A_i = 0 gives m_i = 1, Z[:, i] = 0 (the weight sign(0) = +1 already had).

    Parameters
    ----------
    m : ndarray, weight shape, float
    Z : ndarray, (K,) + weight shape, dtype of ``m``
    scale : float > 0
        S.

    Returns
    -------
    (m, Z) : new arrays, shapes and dtype of the inputs
    """
    m = np.asarray(m)
    dt = m.dtype
    sq = np.zeros_like(m)
    for z in Z:                                     # k = 0, 1, ..., K-1: a fixed order for ports
        sq += z * z
    A = m * m + sq / dt.type(scale)
    zero = A == 0
    root = np.sqrt(np.where(zero, dt.type(1), A))
    m_new = np.where(zero, dt.type(1), m / root)
    Z_new = np.where(zero, dt.type(0), Z / root)     # root broadcasts over the K axis
    return m_new, Z_new


def gaussian_weights(m, Z, r):
    """w = m + Z^T r = m + sum_k r_k Z[k], summed over k = 0, 1, ... in order.

    Parameters
    ----------
    m : ndarray, weight shape
    Z : ndarray, (K,) + weight shape
    r : ndarray, (K,)

    Returns
    -------
    ndarray, weight shape, dtype of ``m``
    """
    w = np.array(m, copy=True)
    r = np.asarray(r, dtype=w.dtype)
    for k in range(len(r)):
        w += r[k] * Z[k]
    return w


def sample_weights(m, Z, r):
    """w_b = sign(m + Z^T r) in {-1, +1} (0 -> +1, ``refbinn.nn.sign``): one binary network.

    Parameters
    ----------
    m : ndarray, weight shape
    Z : ndarray, (K,) + weight shape
    r : ndarray, (K,), a draw of N(0, I_K/S)

    Returns
    -------
    ndarray, weight shape, dtype of ``m``, values exactly -1 or +1
    """
    return sign(gaussian_weights(m, Z, r))


def vispa_grads(g, r, scale):
    """grad_m = g,   grad_Z[k] = sqrt(S) * r_k * g   (straight-through: dw_b/dw taken as 1).

    grad_Z is d/dV of L(m + V^T xi) at V = Z/sqrt(S), xi = sqrt(S) r.

    Parameters
    ----------
    g : ndarray, weight shape
        d loss/d w_b at the binary weights of this forward pass.
    r : ndarray, (K,)
        The noise that forward pass used.
    scale : float > 0
        S.

    Returns
    -------
    (grad_m, grad_Z) : ndarrays, weight shape and (K,) + weight shape, dtype of ``g``
    """
    g = np.asarray(g)
    coef = np.asarray(r, dtype=g.dtype) * math.sqrt(scale)                  # (K,)
    return g, coef.reshape(coef.shape + (1,) * g.ndim) * g                  # (K,) + weight shape


def sgd_momentum(p, buf, grad, lr, momentum, weight_decay):
    """torch SGD (dampening 0, no Nesterov):  buf = momentum*buf + (grad + wd*p);  p = p - lr*buf.

    torch starts the buffer as a copy of the first step's d = grad + wd*p; with buf = 0
    the formula above gives the same d. Python-float hyperparameters keep float32 float32.

    Parameters
    ----------
    p, buf, grad : ndarray, same shape and dtype
    lr, momentum, weight_decay : float

    Returns
    -------
    (p_new, buf_new) : new arrays
    """
    d = grad + weight_decay * p if weight_decay else grad
    buf_new = momentum * buf + d
    return p - lr * buf_new, buf_new


def step_numpy(m, Z, vel_m, vel_Z, grads, noise, lr, momentum, weight_decay, scale, do_project):
    """The reference step for one parameter: ``vispa_grads`` (averaged over passes),
    ``sgd_momentum`` on m and on Z, then ``project``.

    Parameters
    ----------
    m, vel_m : ndarray, weight shape
    Z, vel_Z : ndarray, (K,) + weight shape
    grads : list of ndarray, weight shape, dtype of ``m``
        d loss/d w_b of each pass.
    noise : list of ndarray, (K,)
        The r of each pass.
    lr, momentum, weight_decay, scale : float
    do_project : bool

    Returns
    -------
    (m, Z, vel_m, vel_Z) : new arrays
    """
    dt = m.dtype
    gm = gZ = None
    for g, r in zip(grads, noise):
        a, b = vispa_grads(g, r, scale)
        gm, gZ = (a, b) if gm is None else (gm + a, gZ + b)
    if len(grads) > 1:
        gm, gZ = gm / dt.type(len(grads)), gZ / dt.type(len(grads))
    m_new, vm_new = sgd_momentum(m, vel_m, gm, lr, momentum, weight_decay)
    Z_new, vZ_new = sgd_momentum(Z, vel_Z, gZ, lr, momentum, weight_decay)
    if do_project:
        m_new, Z_new = project(m_new, Z_new, scale)
    return m_new, Z_new, vm_new, vZ_new


# -- fused Numba twins (one pass over memory; the tests assert bit-equality with the above) --
# Layout: the kernels see m, vel_m, g as (n,) and Z, vel_Z as (K*n,) flat views, row k of Z
# at k*n ... k*n + n - 1 (the state's own C order). Work goes in tasks of TASK weights (the
# parallel loop), each in blocks of BLOCK weights; per block: the m part, then for
# k = 0..K-1 the k-th row of the block (accumulating sum_k z**2), then the projection,
# which reads the block's K rows of Z back from L1. Flat 1-D slices give unit-stride loops
# that LLVM vectorises; the earlier (K, n) 2-D indexing compiled to gathers and scatters.
# Measured on one thread, 10M weights, K = 8 (a loaded 2-core Xeon): blocks of 64-128
# weights 135-145 ms, 1024 about 180, 4096 about 195; a K-contiguous (n, K) layout with
# the k loop innermost 360 ms (a runtime K does not vectorise).
# error_model="numpy": Python's error model tests every divisor for zero, which stops LLVM
# from vectorising the loops. No fastmath: the twins must round exactly like NumPy.
@njit(cache=True, parallel=True, error_model="numpy")
def _step_kernel(m, Z, vm, vZ, g, coef, lr, mom, wd, use_wd, scale, do_project,
                 m_out, Z_out, vm_out, vZ_out):
    """``step_numpy`` for one pass, grad_Z formed on the fly (never stored):

        grad_m = g,   grad_Z[k] = coef_k * g,   coef = sqrt(S) * r  (as ``vispa_grads`` rounds it)
        buf = mom*buf + (grad + wd*p),   p = p - lr*buf            (m and every row of Z)
        root_i = sqrt(m_i**2 + (sum_k Z[k, i]**2)/S),   m_i /= root_i,   Z[:, i] /= root_i

    with m_i = 1, Z[:, i] = 0 where root_i = 0 (``project``).

    Parameters
    ----------
    m, vm, g : ndarray, (n,), float32
    Z, vZ : ndarray, (K*n,), float32
        Row k of the (K, n) factor at k*n ... k*n + n - 1.
    coef : ndarray, (K,), float32
    lr, mom, wd, scale : float32
    use_wd, do_project : bool
    m_out, vm_out : ndarray, (n,);  Z_out, vZ_out : ndarray, (K*n,)
        Written; must not overlap the inputs.

    Returns
    -------
    int
        The number of non-finite entries of m_out and Z_out.
    """
    n, K = m.shape[0], coef.shape[0]
    bad = 0
    for t in prange((n + TASK - 1) // TASK):
        sq = np.empty(BLOCK, dtype=m.dtype)          # sum_k z**2, then root, per weight of a block
        nb = 0
        for a in range(t * TASK, min(t * TASK + TASK, n), BLOCK):
            L = min(BLOCK, n - a)
            m_, vm_, g_, mo, vmo = m[a:a + L], vm[a:a + L], g[a:a + L], m_out[a:a + L], vm_out[a:a + L]
            for i in range(L):
                d = g_[i] + wd * m_[i] if use_wd else g_[i]
                v = mom * vm_[i] + d
                vmo[i] = v
                mo[i] = m_[i] - lr * v
                sq[i] = 0
            for k in range(K):
                o = k * n + a
                ck = coef[k]
                z_, vz_, zo, vzo = Z[o:o + L], vZ[o:o + L], Z_out[o:o + L], vZ_out[o:o + L]
                for i in range(L):
                    gz = ck * g_[i]
                    d = gz + wd * z_[i] if use_wd else gz
                    v = mom * vz_[i] + d
                    vzo[i] = v
                    z = z_[i] - lr * v
                    zo[i] = z
                    sq[i] += z * z
            if do_project:
                for i in range(L):
                    mi = mo[i]
                    root = np.sqrt(mi * mi + sq[i] / scale)
                    sq[i] = root
                    q = mi / root if root != 0 else np.float32(1)   # root = 0 iff A = 0
                    mo[i] = q
                    nb += 0 if np.abs(q) <= FMAX else 1
                for k in range(K):
                    zo = Z_out[k * n + a:k * n + a + L]
                    for i in range(L):
                        root = sq[i]
                        q = zo[i] / root if root != 0 else np.float32(0)   # +0, as ``project``
                        zo[i] = q
                        nb += 0 if np.abs(q) <= FMAX else 1
            else:
                for i in range(L):
                    nb += 0 if np.abs(mo[i]) <= FMAX else 1
                for k in range(K):
                    zo = Z_out[k * n + a:k * n + a + L]
                    for i in range(L):
                        nb += 0 if np.abs(zo[i]) <= FMAX else 1
        bad += nb
    return bad


@njit(cache=True, parallel=True, error_model="numpy")
def _sign_kernel(m, Z, r, out):
    """``sample_weights``: out = sign(m + sum_k r_k Z[k]), summed over k = 0, 1, ... in order.

    Parameters
    ----------
    m : ndarray, (n,), float32
    Z : ndarray, (K*n,), float32
        Row k at k*n ... k*n + n - 1.
    r : ndarray, (K,), float32
    out : ndarray, (n,), float32
        Written with -1 or +1 (0 -> +1, NaN -> -1, as ``refbinn.nn.sign``).
    """
    n, K = m.shape[0], r.shape[0]
    for t in prange((n + TASK - 1) // TASK):
        for a in range(t * TASK, min(t * TASK + TASK, n), BLOCK):
            L = min(BLOCK, n - a)
            w = out[a:a + L]                             # accumulates w in place (L1)
            w[:] = m[a:a + L]
            for k in range(K):
                rk = r[k]
                z_ = Z[k * n + a:k * n + a + L]
                for i in range(L):
                    w[i] += rk * z_[i]
            for i in range(L):
                w[i] = np.float32(1) if w[i] >= 0 else np.float32(-1)


# -- the optimizer -------------------------------------------------------------------------
class VISPAState(NamedTuple):
    """m, Z, vel_m, vel_Z: dicts name -> array (state dtype); Z[name] and vel_Z[name]
    have shape (K,) + weight shape; step: updates taken so far."""
    m: dict
    Z: dict
    vel_m: dict
    vel_Z: dict
    step: int


class VISPA(Optimizer):
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
        'xavier': m and Z Xavier-normal (the authors'); 'params': m is a copy of the
        given parameters (e.g. a trained latent network), Z Xavier-normal.
    backend : {'numba', 'numpy'}
        'numba' runs float32 one-pass steps and forward weights in fused kernels
        (``_step_kernel``, ``_sign_kernel``, bit-identical to the NumPy functions;
        float64 and several passes per step use NumPy); 'numpy' always uses the
        reference functions of this module. The fused path takes its output arrays
        from a pool and reuses one only when nothing else references it (a dropped
        state's), so one optimizer object must not run two updates at once from
        different threads.
    """

    def __init__(self, lr=0.1, rank=8, scale=100.0, momentum=0.9, weight_decay=5e-4,
                 project=True, init="xavier", backend="numba"):
        self.lr = float(check_range("lr", lr, 0.0, lo_open=True))
        check_range("rank", rank, 0)
        if isinstance(rank, bool) or not math.isfinite(float(rank)) or int(rank) != rank:
            raise ValueError(f"rank must be an integer in [0, inf), got {rank!r}")
        self.rank = int(rank)
        self.scale = float(check_range("scale", scale, 0.0, lo_open=True))
        if not math.isfinite(self.scale):
            raise ValueError(f"scale must be in (0, inf), got {scale!r}")
        self.momentum = float(check_range("momentum", momentum, 0.0, 1.0, hi_open=True))
        self.weight_decay = float(check_range("weight_decay", weight_decay, 0.0))
        if not isinstance(project, (bool, np.bool_)):
            raise ValueError(f"project must be True or False, got {project!r}")
        self.project = bool(project)
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {init!r}")
        self.init_mode = init
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        self.backend = backend
        self._pool = ArrayPool(keep=POOL_KEEP)

    def __getstate__(self):                # copies and pickles leave the pool behind
        return {k: v for k, v in self.__dict__.items() if k != "_pool"}

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._pool = ArrayPool(keep=POOL_KEEP)

    def config(self):
        return dict(lr=self.lr, rank=self.rank, scale=self.scale, momentum=self.momentum,
                    weight_decay=self.weight_decay, project=self.project, init=self.init_mode,
                    backend=self.backend)

    # -- state ----------------------------------------------------------------------
    def init(self, params, rng=None):
        """m, Z Xavier-normal (std ``xavier_std`` of the weight shape), then ``project``; buffers 0.

        Draws, per parameter in order: m (``init='xavier'`` only), then Z, each as
        float64 ``rng.standard_normal(shape) * std`` rounded to the parameter's dtype.
        """
        if not isinstance(rng, np.random.Generator):
            raise ValueError("VISPA.init needs rng, a numpy.random.Generator (Xavier-normal m and Z)")
        m, Z = {}, {}
        for k, p in params.items():
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
        return VISPAState(m, Z, {k: np.zeros_like(v) for k, v in m.items()},
                          {k: np.zeros_like(v) for k, v in Z.items()}, 0)

    # -- sampling and forward weights --------------------------------------------------
    def sample(self, state, rng):
        """[noise], noise = dict name -> r, r ~ N(0, I_K/S) of shape (K,): one r per layer.

        Drawn per parameter in order as float64 ``rng.standard_normal(K) / sqrt(S)``,
        rounded to the state dtype.
        """
        sd = math.sqrt(self.scale)
        return [{k: (rng.standard_normal(self.rank) / sd).astype(v.dtype) for k, v in state.m.items()}]

    def forward_params(self, state, noise=None):
        """w_b = sign(m + Z^T r) for a noise dict; sign(m) (r = 0) for None."""
        if noise is None:
            return self.params(state)
        self._check_noise(noise, state)
        out = {}
        for k, m in state.m.items():
            r = np.asarray(noise[k], dtype=m.dtype)
            if self._fused(m):
                m = np.ascontiguousarray(m)                  # the pool hands out C-order arrays
                w = self._pool.empty_like(m)
                _sign_kernel(m.reshape(-1), np.ascontiguousarray(state.Z[k]).reshape(-1), r,
                             w.reshape(-1))                                  # (n,), (K*n,)
                out[k] = w
            else:
                out[k] = sample_weights(m, state.Z[k], r)
        return out

    def params(self, state):
        """sign(m), 0 -> +1: the most probable sign of every weight (P(+1) >= 1/2 iff m >= 0)."""
        return {k: sign(v) for k, v in state.m.items()}

    def sample_params(self, state, rng):
        """One binary network sign(m + Z^T r), r drawn as in ``sample`` (for ensemble prediction)."""
        return self.forward_params(state, self.sample(state, rng)[0])

    def _check_noise(self, noise, state):
        for k in state.m:
            if k not in noise:
                raise ValueError(f"VISPA: noise has no entry for parameter '{k}'")
            if np.shape(noise[k]) != (self.rank,):
                raise ValueError(f"VISPA: noise of parameter '{k}' has shape {np.shape(noise[k])}, "
                                 f"expected ({self.rank},)")

    # -- the step ---------------------------------------------------------------------------
    def update(self, grads, state, noise=None, *, lr=None):
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
        if noise is None:
            if self.rank > 0:
                raise ValueError(f"VISPA.update needs the noise list returned by sample() (rank={self.rank})")
            noise = [{k: np.zeros(0, dtype=v.dtype) for k, v in state.m.items()}]
        grads = as_grad_list(grads, noise)
        for j, (g, n) in enumerate(zip(grads, noise)):
            self._check_noise(n, state)
            for k, m in state.m.items():
                if k not in g:
                    raise ValueError(f"VISPA: gradient dict {j} has no entry for parameter '{k}'")
                if np.shape(g[k]) != m.shape:
                    raise ValueError(f"VISPA: gradient of parameter '{k}' has shape {np.shape(g[k])}, "
                                     f"expected {m.shape}")
        fused = {k: self._fused(m, len(grads)) for k, m in state.m.items()}
        if not all(np.all(np.isfinite(g[k])) for g in grads for k in fused if not fused[k]):
            check_finite(grads)                       # before anything is computed
        m_new, Z_new, vm_new, vZ_new = {}, {}, {}, {}
        for k, m in state.m.items():
            gs = [np.asarray(g[k], dtype=m.dtype) for g in grads]
            rs = [np.asarray(n[k], dtype=m.dtype) for n in noise]
            args = (m, state.Z[k], state.vel_m[k], state.vel_Z[k], gs, rs, lr)
            out = self._step_fused(*args) if fused[k] else self._step_numpy(*args)
            if out is None:
                check_finite(grads)                   # a NaN/inf gradient is the usual cause
                raise FloatingPointError(f"the update of parameter '{k}' made m or Z non-finite; "
                                         "the step was not taken")
            m_new[k], Z_new[k], vm_new[k], vZ_new[k] = out
        return VISPAState(m_new, Z_new, vm_new, vZ_new, state.step + 1)

    def _fused(self, a, passes=1):
        """Fused kernels for large float32 arrays; small ones take the NumPy reference
        (a parallel region costs more than the work there)."""
        return (self.backend == "numba" and a.dtype == np.float32 and passes == 1
                and a.size >= FUSED_MIN_SIZE)

    def _step_numpy(self, m, Z, vm, vZ, gs, rs, lr):
        """``step_numpy``; None if m or Z came out non-finite."""
        with np.errstate(over="ignore", invalid="ignore"):           # reported below
            out = step_numpy(m, Z, vm, vZ, gs, rs, lr, self.momentum, self.weight_decay,
                             self.scale, self.project)
        ok = np.all(np.isfinite(out[0])) and np.all(np.isfinite(out[1]))
        return out if ok else None

    def _step_fused(self, m, Z, vm, vZ, gs, rs, lr):
        """The same step (one pass) in ``_step_kernel``; None if m or Z came out non-finite.

        Outputs come from the pool: a 10M-weight K = 8 step writes 0.7 GB, and fresh
        pages cost a page fault and zeroing each (measured on one thread: 310 ms a step
        with fresh outputs, 185 ms with pooled ones, for a 150 ms kernel).
        """
        t = m.dtype.type
        m, Z, vm, vZ, g = (np.ascontiguousarray(a) for a in (m, Z, vm, vZ, gs[0]))
        flat = lambda a: a.reshape(-1)                                       # (n,) or (K*n,): views
        outs = tuple(self._pool.empty_like(a) for a in (m, Z, m, Z))       # m, Z, vel_m, vel_Z
        coef = rs[0] * math.sqrt(self.scale)                                 # as in vispa_grads
        bad = _step_kernel(flat(m), flat(Z), flat(vm), flat(vZ), flat(g), coef, t(lr),
                           t(self.momentum), t(self.weight_decay), self.weight_decay != 0,
                           t(self.scale), self.project, *(o.reshape(-1) for o in outs))
        return None if bad else outs
