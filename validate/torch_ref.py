"""An independent PyTorch implementation of what refbinn computes, written from the spec.

Everything here is built from torch's own operators (``torch.nn.functional``
for the layers and losses, autograd for the gradients) and from the formulas
of docs/spec sections 3-8 for the update rules, written out in tensor ops on
one flat parameter vector (the layout of the authors' optimizer, which works
on ``parameters_to_vector(model.parameters())``). No refbinn code is imported
or imitated; the validation compares the two.

All randomness comes from outside: dropout masks (``keep``, boolean) and the
BayesBiNN uniforms ``u`` are arguments, so both sides can be fed the same.

=================  ======================  ===================================
here               spec symbol             authors' code
=================  ======================  ===================================
``lam``            lambda                  ``state['lamda']``
``mu``             mu = tanh(lambda)       ``state['mu']``
``m``              momentum                ``state['momentum']``
``lam0``           lambda0 (prior)         ``state['prior_lamda']``
``u``              U(0, 1) noise           ``raw_noise``
``delta``          logistic noise          ``log(u / (1 - u)) / 2``
``w_r``            relaxed sample          ``w_sample``
=================  ======================  ===================================
"""
from __future__ import annotations

import math
import zlib

import torch
import torch.nn.functional as F


# -- layers -------------------------------------------------------------------------
def sign(x):
    """+1 where x >= 0, else -1 (exact zeros map to +1), dtype of x."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def linear(x, w, b=None):
    """y = x @ w.T (+ b); w of shape (out, in)."""
    return F.linear(x, w, b)


def conv2d(x, w, b=None, *, stride=1, padding=0):
    """torch's cross-correlation, NCHW input and OIHW weight."""
    return F.conv2d(x, w, b, stride=stride, padding=padding)


def max_pool2d(x, kernel=2, stride=None):
    """torch's max pooling, no padding, floor mode."""
    return F.max_pool2d(x, kernel, stride)


def batch_norm(x, running_mean, running_var, *, train, momentum, eps, weight=None, bias=None):
    """torch's BatchNorm1d/2d: returns ``(y, new_running_mean, new_running_var)``.

    The running buffers are cloned and updated by torch itself (its convention:
    running = (1 - m) * running + m * batch statistic, unbiased variance), so
    the inputs are left as they were.
    """
    rm, rv = running_mean.clone(), running_var.clone()
    y = F.batch_norm(x, rm, rv, weight, bias, training=train, momentum=momentum, eps=eps)
    return y, rm, rv


def relu(x):
    return torch.relu(x)


def tanh(x):
    return torch.tanh(x)


def flatten(x):
    return torch.flatten(x, 1)                                      # (N, C*H*W)


def dropout(x, keep, p):
    """Inverted dropout with an external boolean mask: y = x * keep / (1 - p)."""
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))


# -- losses (minibatch mean, torch's default reduction) -------------------------------
def cross_entropy(logits, labels):
    return F.cross_entropy(logits, labels)


def logistic_loss(logits, targets):
    """Binary cross-entropy on logits, targets in {0, 1}, shape of ``logits``."""
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def mse(pred, target):
    return F.mse_loss(pred, target)


LOSSES = {"cross_entropy": cross_entropy, "logistic": logistic_loss, "mse": mse}


# -- a network described as a list of layer tuples --------------------------------------
class Net:
    """A feed-forward network run functionally on a dict of named weights.

    ``layers`` is a list of tuples, one per layer::

        ("linear", name, in, out, bias)       ("conv", name, cin, cout, k, padding, bias)
        ("bn", name, C, momentum, eps)        ("dropout", name, p)
        ("relu", name) ("tanh", name) ("flatten", name) ("pool", name, k)

    Parameter names are ``name.weight`` / ``name.bias`` in layer order (torch's
    ``model.parameters()`` order); BatchNorm buffers ``name.running_mean`` and
    ``name.running_var``.
    """

    def __init__(self, layers):
        self.layers = list(layers)

    @property
    def shapes(self):
        """Ordered dict parameter name -> shape."""
        out = {}
        for spec in self.layers:
            kind, name = spec[0], spec[1]
            if kind == "linear":
                _, _, fin, fout, bias = spec
                out[f"{name}.weight"] = (fout, fin)
                if bias:
                    out[f"{name}.bias"] = (fout,)
            elif kind == "conv":
                _, _, cin, cout, k, _, bias = spec
                out[f"{name}.weight"] = (cout, cin, k, k)
                if bias:
                    out[f"{name}.bias"] = (cout,)
        return out

    def bn_state(self, dtype=torch.float64):
        """Fresh buffers: running_mean 0, running_var 1."""
        st = {}
        for spec in self.layers:
            if spec[0] == "bn":
                st[f"{spec[1]}.running_mean"] = torch.zeros(spec[2], dtype=dtype)
                st[f"{spec[1]}.running_var"] = torch.ones(spec[2], dtype=dtype)
        return st

    def forward(self, params, x, bn_state, *, train, masks=None):
        """Return ``(out, new_bn_state)``; ``masks[name]`` is dropout layer name's keep mask."""
        new_state = dict(bn_state)
        for spec in self.layers:
            kind, name = spec[0], spec[1]
            if kind == "linear":
                x = linear(x, params[f"{name}.weight"], params.get(f"{name}.bias"))
            elif kind == "conv":
                x = conv2d(x, params[f"{name}.weight"], params.get(f"{name}.bias"), padding=spec[5])
            elif kind == "bn":
                x, rm, rv = batch_norm(x, bn_state[f"{name}.running_mean"],
                                       bn_state[f"{name}.running_var"], train=train,
                                       momentum=spec[3], eps=spec[4])
                new_state[f"{name}.running_mean"], new_state[f"{name}.running_var"] = rm, rv
            elif kind == "dropout":
                if train and spec[2] > 0:
                    x = dropout(x, masks[name], spec[2])
            elif kind == "relu":
                x = relu(x)
            elif kind == "tanh":
                x = tanh(x)
            elif kind == "flatten":
                x = flatten(x)
            elif kind == "pool":
                x = max_pool2d(x, spec[2])
            else:
                raise ValueError(f"unknown layer kind {kind!r}")
        return x, new_state

    # -- flat parameter vectors ------------------------------------------------------
    def unflatten(self, vec):
        """Views of ``vec`` shaped like each parameter (gradients flow back to ``vec``)."""
        out, i = {}, 0
        for k, shp in self.shapes.items():
            n = math.prod(shp)
            out[k] = vec[i:i + n].view(shp)
            i += n
        return out

    def flatten(self, params):
        return torch.cat([params[k].reshape(-1) for k in self.shapes])

    def loss_and_grad(self, w, x, y, loss, bn_state, masks=None):
        """Loss, d loss / d w (flat) and the new BN state at flat weights ``w`` (training mode)."""
        w = w.detach().clone().requires_grad_(True)
        out, new_state = self.forward(self.unflatten(w), x, bn_state, train=True, masks=masks)
        value = LOSSES[loss](out, y)
        (g,) = torch.autograd.grad(value, w)
        return value.detach(), g, {k: v.detach() for k, v in new_state.items()}


# -- refbinn's noise stream, materialised in torch (a port's copy of refbinn.noise.uniform) --
def _mulhilo32(a, b):
    """High and low 32 bits of a*b for int64 tensors a (< 2**32) and the constant b (< 2**32),
    in 16-bit halves so that no product leaves int64."""
    lo_part = (a & 0xFFFF) * b                     # < 2**48
    mid = (a >> 16) * b + (lo_part >> 16)          # < 2**49
    return mid >> 16, ((mid & 0xFFFF) << 16) | (lo_part & 0xFFFF)


def philox_uniform(seed, step, sample, name, n, dtype=torch.float32):
    """u of parameter ``name`` (n elements) for Monte Carlo sample ``sample`` of optimizer step
    ``step`` under the noise seed: Philox4x32-10 with key (seed low, seed high 32 bits), counter
    (element // 4, step, sample, crc32(name)), word element % 4, u = ((x >> 9) + 0.5) * 2**-23."""
    mask = 0xFFFFFFFF
    blocks = (n + 3) // 4
    c0 = torch.arange(blocks, dtype=torch.int64)
    c1, c2, c3 = (torch.full((blocks,), v, dtype=torch.int64)
                  for v in (step, sample, zlib.crc32(name.encode("utf-8"))))
    k0, k1 = seed & mask, (seed >> 32) & mask
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
        hi0, lo0 = _mulhilo32(c0, 0xD2511F53)
        hi1, lo1 = _mulhilo32(c2, 0xCD9E8D57)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    x = torch.stack([c0, c1, c2, c3], dim=1).reshape(-1)[:n]       # element e: word e % 4 of block e // 4
    return (((x >> 9).to(torch.float32) + 0.5) * 2.0 ** -23).to(dtype)


# -- BayesBiNN (spec sections 3, 4, 7) --------------------------------------------------
def logistic_noise(u):
    """delta = 0.5 * log(u / (1 - u)): logistic noise with scale 1/2."""
    return 0.5 * torch.log(u / (1 - u))


def relaxed_sample(lam, u, tau):
    """w_r = tanh((lambda + delta) / tau)."""
    return torch.tanh((lam + logistic_noise(u)) / tau)


def log_cosh(x):
    """log cosh(x) = |x| + log1p(exp(-2|x|)) - log 2, finite for any x."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)


def concrete_scale_exact(lam, u, tau, n_train):
    """s = N (1 - w_r^2) / (tau (1 - mu^2)) = (N / tau) exp(2 (logcosh(lambda) - logcosh((lambda + delta) / tau)))."""
    z = (lam + logistic_noise(u)) / tau
    return (n_train / tau) * torch.exp(2 * (log_cosh(lam) - log_cosh(z)))


def concrete_scale_official(w_r, mu, tau):
    """The authors' per-sample factor (1 - w_r^2 + 1e-10) / tau / (1 - mu^2 + 1e-10); N / S is applied after the sum."""
    return (1 - w_r * w_r + 1e-10) / tau / (1 - mu * mu + 1e-10)


def bayesbinn_init(lam):
    """State dict: lam, mu = tanh(lam), momentum 0, step 0."""
    return {"lam": lam.clone(), "mu": torch.tanh(lam), "m": torch.zeros_like(lam), "step": 0}


def bayesbinn_forward_weights(state, u, *, tau):
    """Weights of one training pass: the relaxed sample for noise u, or for u None
    (S <= 0) the point estimate tanh(lambda) (spec section 4)."""
    if u is None:
        return torch.tanh(state["lam"])
    return relaxed_sample(state["lam"], u, tau)


def bayesbinn_mode(state, numerics):
    """Evaluation weights: sign(lambda) ('exact') or sign of the stored, lagged mu ('official'); 0 -> +1."""
    return sign(state["mu"] if numerics == "official" else state["lam"])


def bayesbinn_step(state, grads, us, *, lr, beta, tau, n_train, lam0=0.0, reweight=1.0,
                   numerics="exact"):
    """One BayesBiNN step on flat vectors.

        g_hat  = (1/S) sum_s s_s * g_s           (S >= 1)   or  N * g   (S <= 0, us = [None])
        m      = beta * m + (1 - beta) * (g_hat + reweight * (lambda - lambda0))
        lambda = lambda - lr * m / (1 - beta**t)
        mu     = tanh(lambda_new)   ('exact')   or  tanh(lambda_old)   ('official': lags one step)

    Parameters
    ----------
    state : dict from ``bayesbinn_init``
    grads : list of flat tensors, d loss_minibatch / d w at each pass's forward weights
    us : list of flat tensors (the uniforms of each pass) or [None]
    numerics : 'exact' (stable log-cosh scale) or 'official' (the authors' +1e-10 scale, lagged mu)
    """
    lam, mu, m, t = state["lam"], state["mu"], state["m"], state["step"] + 1
    if us[0] is None:
        g_hat = n_train * grads[0]
    elif numerics == "exact":
        g_hat = sum(concrete_scale_exact(lam, u, tau, n_train) * g for u, g in zip(us, grads)) / len(us)
    else:
        acc = torch.zeros_like(lam)
        for u, g in zip(us, grads):
            acc = acc + concrete_scale_official(relaxed_sample(lam, u, tau), mu, tau) * g
        g_hat = acc * (n_train / len(us))
    m = beta * m + (1 - beta) * (g_hat + reweight * (lam - lam0))
    lam_new = lam - lr * m / (1 - beta ** t)
    mu_new = torch.tanh(lam) if numerics == "official" else torch.tanh(lam_new)
    return {"lam": lam_new, "mu": mu_new, "m": m, "step": t}


# -- baselines (spec section 8) ------------------------------------------------------------
def adam_init(w):
    return {"w": w.clone(), "m": torch.zeros_like(w), "v": torch.zeros_like(w), "step": 0}


def adam_direction(g, state, *, lr, betas=(0.9, 0.999), eps=1e-8):
    """Kingma & Ba: m, v moments, bias-corrected m_hat / (sqrt(v_hat) + eps); returns (step, m, v, t)."""
    b1, b2 = betas
    t = state["step"] + 1
    m = b1 * state["m"] + (1 - b1) * g
    v = b2 * state["v"] + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    return lr * m_hat / (torch.sqrt(v_hat) + eps), m, v, t


def adam_step(state, g, *, lr, betas=(0.9, 0.999), eps=1e-8):
    """Full-precision Adam: w <- w - lr * m_hat / (sqrt(v_hat) + eps)."""
    d, m, v, t = adam_direction(g, state, lr=lr, betas=betas, eps=eps)
    return {"w": state["w"] - d, "m": m, "v": v, "step": t}


def ste_init(w):
    """Latent weights clipped to [-1, 1]; Adam moments 0."""
    return adam_init(torch.clamp(w, -1.0, 1.0))


def ste_forward_weights(state):
    """Binary weights sign(latent), 0 -> +1."""
    return sign(state["w"])


def clip_gradient(g, *, clip_value=None, clip_norm=None):
    """torch's own clip_grad_value_ then clip_grad_norm_ (one flat gradient = one parameter)."""
    p = torch.nn.Parameter(torch.zeros_like(g))
    p.grad = g.clone()
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_([p], clip_value)
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_([p], clip_norm)
    return p.grad


def ste_adam_step(state, g, *, lr, betas=(0.9, 0.999), eps=1e-8):
    """STE: the gradient at sign(w_l) updates w_l by Adam, then w_l is clipped to [-1, 1]."""
    d, m, v, t = adam_direction(g, state, lr=lr, betas=betas, eps=eps)
    return {"w": torch.clamp(state["w"] - d, -1.0, 1.0), "m": m, "v": v, "step": t}


def bop_init(w):
    return {"w": sign(w), "m": torch.zeros_like(w)}


def bop_step(state, g, *, gamma, threshold):
    """m <- (1 - gamma) m + gamma g; flip w where w * m > threshold."""
    m = (1 - gamma) * state["m"] + gamma * g
    w = torch.where(state["w"] * m > threshold, -state["w"], state["w"])
    return {"w": w, "m": m}


# -- a torch module for state_dict interop -----------------------------------------------
class MLP(torch.nn.Module):
    """Linear (no bias) -> BatchNorm1d (no affine) -> ReLU per hidden layer, then Linear -> BN.

    Submodules ``fc1``..``fcL`` and ``bn1``..``bnL``: the layout of the authors' MNIST MLP
    (dropout layers hold no state and are left out; this module is used in eval mode).
    """

    def __init__(self, sizes, momentum=0.15, eps=1e-4):
        super().__init__()
        self.n = len(sizes) - 1
        for k in range(1, self.n + 1):
            setattr(self, f"fc{k}", torch.nn.Linear(sizes[k - 1], sizes[k], bias=False))
            setattr(self, f"bn{k}", torch.nn.BatchNorm1d(sizes[k], eps=eps, momentum=momentum,
                                                         affine=False))

    def forward(self, x):
        for k in range(1, self.n + 1):
            x = getattr(self, f"bn{k}")(getattr(self, f"fc{k}")(x))
            if k < self.n:
                x = torch.relu(x)
        return x
