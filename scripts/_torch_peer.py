"""The fastest eager PyTorch BayesBiNN step we could write: the fair peer of scripts/bench_train.py.

The model is refbinn's MLP family (``mlp_mnist``, ``mlp_continual``)::

    [Dropout ->] (Linear, no bias -> BatchNorm1d, no affine -> ReLU [-> Dropout]) per hidden layer
    -> Linear -> BatchNorm1d;  loss = cross-entropy of the last BN output

One step, S = 1, float32, the authors' arithmetic (official numerics) or the exact scale,
every array a preallocated flat buffer updated in place (no Python loop over elements)::

    u   = rand(P)                                        torch.rand into a buffer
    z   = (lam + logit(u) / 2) / tau                     logit(u) = log(u / (1 - u))
    w   = tanh(z)                                        the layers' weights are views of w
    g   = d loss / d w                                   autograd, forward + backward
    s   = (1 - w^2 + 1e-10) / tau / (1 - mu^2 + 1e-10)   official (mu <- tanh(lam) after, lagged)
        = exp(2 (logcosh(lam) - logcosh(z))) / tau       exact
    m   = beta m + (1 - beta) (N s g + lam)              (beta = 0: m is not stored)
    lam = lam - lr m / (1 - beta^t)

``compiled=True`` runs the relaxed weights and the update as two ``torch.compile`` (inductor)
functions instead, each one fused loop; u is still drawn by torch.rand into a buffer (inductor's
in-kernel random numbers were slower than torch.rand on the CPU we measured).

Only torch is imported here (no refbinn code): tests/test_torch_peer.py checks that one
step from the same lam and u gives refbinn's lam.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CODE_EPS = 1e-10                     # the authors' constant in the official scale


def _logcosh_(x):
    """x <- logcosh(x) + log 2 = |x| + log1p(exp(-2|x|)), in place (log 2 cancels in the scale)."""
    x.abs_()
    e = torch.exp(x * -2.0)
    return x.add_(e.log1p_())


def official_update(lam, mu, m, w, grads, *, lr, beta, tau, n_train, t):
    """The official update in place on flat float32 buffers; ``w`` (the relaxed weights) is overwritten.

    Parameters
    ----------
    lam, mu : Tensor, (P,)
        Natural parameters and the stored (lagged) mean, updated in place.
    m : Tensor (P,) or None
        Momentum (None when beta = 0).
    w : Tensor, (P,)
        The relaxed weights of this step; used as scratch.
    grads : list of Tensor
        d loss / d w per layer, in the order of the flat layout.
    lr, beta, tau, n_train : float
    t : int
        This step's number, from 1.
    """
    one = w.new_ones(())
    torch.addcmul(one, w, w, value=-1.0, out=w)                   # 1 - w^2
    w.add_(CODE_EPS).div_(tau)
    den = torch.addcmul(one, mu, mu, value=-1.0).add_(CODE_EPS)     # 1 - mu^2 + 1e-10
    w.div_(den)
    torch._foreach_mul_(_chunks(w, grads), grads)                 # s * g, layer by layer
    torch.tanh(lam, out=mu)                                       # the authors' mu lags one step
    _momentum_and_step(lam, m, w.mul_(n_train), lr=lr, beta=beta, t=t)


def exact_update(lam, m, z, w, grads, *, lr, beta, tau, n_train, t):
    """The exact update in place; ``z`` = (lam + delta) / tau of this step and ``w`` are overwritten.

    s = exp(2 (logcosh(lam) - logcosh(z))) / tau = (1 - w^2) / (tau (1 - tanh(lam)^2)).

    Parameters
    ----------
    lam : Tensor, (P,)
        Natural parameters, updated in place.
    m : Tensor (P,) or None
        Momentum (None when beta = 0).
    z : Tensor, (P,)
        The relaxed weights' argument; used as scratch.
    w : Tensor, (P,)
        The relaxed weights; used as scratch.
    grads : list of Tensor
        d loss / d w per layer.
    lr, beta, tau, n_train : float
    t : int
        This step's number, from 1.
    """
    a = _logcosh_(w.copy_(lam))                                   # logcosh(lam) + log 2, w as scratch
    _logcosh_(z)
    z.neg_().add_(a).mul_(2.0).exp_().mul_(n_train / tau)          # N s
    torch._foreach_mul_(_chunks(z, grads), grads)
    _momentum_and_step(lam, m, z, lr=lr, beta=beta, t=t)


def _momentum_and_step(lam, m, g_hat, *, lr, beta, t):
    """m = beta m + (1 - beta)(g_hat + lam); lam -= lr m / (1 - beta^t); g_hat is overwritten."""
    g_hat.add_(lam)
    if m is None:                                                  # beta = 0: m = g_hat + lam
        lam.add_(g_hat, alpha=-lr)
        return
    m.mul_(beta).add_(g_hat, alpha=1.0 - beta)
    lam.add_(m, alpha=-lr / (1.0 - beta ** t))


def _chunks(flat, like):
    """Views of ``flat`` shaped like the tensors of ``like``, in order."""
    out, i = [], 0
    for x in like:
        out.append(flat[i:i + x.numel()].view(x.shape))
        i += x.numel()
    return out


class TorchPeer:
    """A BayesBiNN MLP trainer in eager PyTorch, state in flat float32 buffers; see the module docstring.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first (784, 2048, 2048, 2048, 10).
    lam : Tensor, (P,)
        Initial natural parameters, the layers' (out, in) weights flattened in order (copied).
    dropout : float or None
        Dropout on the input and after each hidden ReLU (None: no dropout layers).
    bn_momentum, bn_eps : float
        BatchNorm's (torch convention, no affine).
    n_train, tau, lr, beta : float
        BayesBiNN's N, temperature, learning rate and momentum.
    numerics : {'official', 'exact'}
    seed : int
        Seeds the peer's torch.Generator (noise and dropout).
    compiled : bool
        Noise + relaxed weights and the update as torch.compile (inductor) functions.
    """

    def __init__(self, sizes, lam, *, dropout, bn_momentum, bn_eps, n_train, tau, lr, beta=0.0,
                 numerics="official", seed=0, compiled=False):
        if numerics not in ("official", "exact"):
            raise ValueError(f"numerics must be 'official' or 'exact', got {numerics!r}")
        if compiled and beta:
            raise ValueError("the compiled variant has no momentum: it needs beta = 0 (the MNIST preset)")
        self.shapes = [(o, i) for i, o in zip(sizes[:-1], sizes[1:])]     # (out, in), torch's layout
        n = sum(o * i for o, i in self.shapes)
        if lam.shape != (n,):
            raise ValueError(f"lam must have shape ({n},), got {tuple(lam.shape)}")
        self.dropout, self.bn_momentum, self.bn_eps = dropout, bn_momentum, bn_eps
        self.n_train, self.tau, self.lr, self.beta, self.numerics = n_train, tau, lr, beta, numerics
        f32 = torch.float32
        self.lam = lam.to(f32).clone()
        self.mu = torch.tanh(self.lam) if numerics == "official" else None
        self.m = torch.zeros_like(self.lam) if beta else None
        self.w = torch.empty_like(self.lam)                        # relaxed weights, then scratch
        self.z = torch.empty_like(self.lam) if numerics == "exact" else None
        self.weights = _chunks(self.w, [torch.empty(s) for s in self.shapes])
        self.bn = [(torch.zeros(o), torch.ones(o)) for o, _ in self.shapes]
        self.gen = torch.Generator().manual_seed(seed)
        self.t = 0
        self.compiled = None
        if compiled:
            self.compiled = (torch.compile(_relaxed_compiled, backend="inductor", dynamic=False),
                             torch.compile(_official_compiled if numerics == "official" else _exact_compiled,
                                           backend="inductor", dynamic=False))

    # -- the pieces of a step -------------------------------------------------------------------
    @torch.no_grad()
    def draw_noise(self, u=None):
        """u <- torch.rand(P) into the scratch buffer (or a copy of the given u, (P,))."""
        buf = self.z if self.z is not None else self.w
        if u is None:
            torch.rand(buf.shape, generator=self.gen, out=buf)
        else:
            buf.copy_(u)

    @torch.no_grad()
    def relaxed_weights(self):
        """w <- tanh((lam + logit(u)/2) / tau), u from ``draw_noise`` (z kept for the exact scale)."""
        buf = self.z if self.z is not None else self.w
        torch.logit(buf, out=buf)
        torch.add(self.lam, buf, alpha=0.5, out=buf).div_(self.tau)
        torch.tanh(buf, out=self.w)

    def loss_and_grads(self, x, y):
        """(loss, d loss / d w per layer) at the current relaxed weights; BN running stats updated."""
        ws = [w.detach().requires_grad_() for w in self.weights]
        h, last = x, len(ws) - 1
        if self.dropout is not None:
            h = F.dropout(h, self.dropout, training=True)
        for k, (w, (rm, rv)) in enumerate(zip(ws, self.bn)):
            h = F.batch_norm(F.linear(h, w), rm, rv, None, None, training=True,
                             momentum=self.bn_momentum, eps=self.bn_eps)
            if k < last:
                h = torch.relu_(h)
                if self.dropout is not None:
                    h = F.dropout(h, self.dropout, training=True)
        loss = F.cross_entropy(h, y)
        return loss, torch.autograd.grad(loss, ws)

    @torch.no_grad()
    def update(self, grads):
        """The BayesBiNN update of lam (and mu, m) in place from this step's gradients."""
        self.t += 1
        kw = dict(lr=self.lr, beta=self.beta, tau=self.tau, n_train=self.n_train, t=self.t)
        if self.numerics == "official":
            official_update(self.lam, self.mu, self.m, self.w, list(grads), **kw)
        else:
            exact_update(self.lam, self.m, self.z, self.w, list(grads), **kw)

    def step(self, x, y, u=None):
        """One training step on a minibatch (x (B, in) float32, y (B,) int64) -> loss."""
        if self.compiled is not None and u is None:
            return self._compiled_step(x, y)
        self.draw_noise(u)
        self.relaxed_weights()
        loss, grads = self.loss_and_grads(x, y)
        self.update(grads)
        return loss.detach()

    def _compiled_step(self, x, y):
        relaxed, update = self.compiled
        with torch.no_grad():
            torch.rand(self.w.shape, generator=self.gen, out=self.w)      # u, overwritten by w
            relaxed(self.lam, self.w, self.z, self.tau)
        loss, grads = self.loss_and_grads(x, y)
        self.t += 1
        with torch.no_grad():
            state = (self.lam, self.mu) if self.numerics == "official" else (self.lam,)
            update(*state, self.w if self.numerics == "official" else self.z,
                   torch.cat([g.reshape(-1) for g in grads]), self.lr, self.tau, self.n_train)
        return loss.detach()

    def mode(self):
        """Evaluation weights: sign of mu (official, lagged) or of lam (exact), 0 -> +1, flat."""
        src = self.mu if self.numerics == "official" else self.lam
        return torch.where(src >= 0, 1.0, -1.0)


# -- the compiled variant (beta = 0, the MNIST preset) ------------------------------------------------
def _relaxed_compiled(lam, w, z, tau):
    """w <- tanh((lam + log(u / (1 - u)) / 2) / tau) with u read from w (z <- the argument, exact)."""
    arg = (lam + 0.5 * torch.log(w / (1 - w))) / tau
    if z is not None:
        z.copy_(arg)
    w.copy_(torch.tanh(arg))


def _official_compiled(lam, mu, w, g, lr, tau, n_train):
    """``official_update`` with beta = 0 as one expression (g flat)."""
    s = (1 - w * w + CODE_EPS) / tau / (1 - mu * mu + CODE_EPS)
    m = s * g * n_train + lam
    mu.copy_(torch.tanh(lam))
    lam.copy_(lam - lr * m)


def _exact_compiled(lam, z, g, lr, tau, n_train):
    """``exact_update`` with beta = 0 as one expression (g flat)."""
    def logcosh(x):
        a = x.abs()
        return a + torch.log1p(torch.exp(-2 * a))
    m = (n_train / tau) * torch.exp(2 * (logcosh(lam) - logcosh(z))) * g + lam
    lam.copy_(lam - lr * m)


def compile_available():
    """(True, '') if inductor compiles and runs a tiny function on this CPU, else (False, the error)."""
    try:
        f = torch.compile(lambda a: torch.tanh(a) * 2 + 1, backend="inductor")
        f(torch.ones(8))
        return True, ""
    except Exception as e:                                         # no compiler, unsupported CPU, ...
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
