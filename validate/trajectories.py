"""50-step training trajectories, refbinn against the torch reference, step by step.

Two small networks, each built twice (refbinn layers; validate.torch_ref.Net):

- MLP 20-16-16-4: dropout 0.2 on the input and after each hidden ReLU, BatchNorm
  without affine (momentum 0.15, eps 1e-4) after every Linear, the last included
  (refbinn.models.mlp_mnist at a small size);
- CNN: conv 1->4 (3x3, pad 1) -> BN -> ReLU -> maxpool 2 -> flatten -> fc 64->3 -> BN.

Both sides start from the same weights and optimizer state, see the same
minibatches (64 points, batches of 16 in a fixed cycle), the same dropout masks
(drawn as refbinn documents it: ``rng.random(shape, dtype=float32) >= p`` per
dropout layer in order, from a copy of the Generator refbinn is given) and the
same BayesBiNN uniforms u (drawn here, float64, cast to the run's dtype and
passed to refbinn's deterministic core instead of ``opt.sample``).

After every step the optimizer state (lambda, momentum, mu / latent weights /
Adam moments / Bop's m), the evaluation weights (binary: exactly +-1) and the
BatchNorm running statistics are compared.

float64 runs are free-running: the two sides evolve independently for 50 steps
and must agree to 1e-9 (scale-relative, validate.common.dev), binary weights
exactly. float32 runs are teacher-forced: before every step the torch state is
reset to refbinn's, so each step's difference is that step's rounding alone (a
free-running float32 comparison mostly measures how fast rounding differences
grow through 50 steps, and one latent weight that rounds to the other side of
0 changes every later step). The float32 tolerance is 1e-4: a float32 step is a
chain of ~10 roundings (forward, backward through BN, the update), each ~6e-8
relative, BN's backward divides by batch standard deviations that amplify the
input's rounding, and refbinn's fused float32 kernels use their own exp/log/tanh
(~2 ulp); measured deviations are 3e-7 to 6e-6. Binary weights must agree
except where refbinn's real-valued source (lambda or mu, the latent weight,
w*m - threshold for Bop) lies within 1e-5 of its largest magnitude of the
decision boundary; those ties are counted in the note. BayesBiNN's official
numerics get their own rule, explained at OFFICIAL_TOL.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from refbinn.models import mlp_mnist
from refbinn.nn import BatchNorm, Dense, Flatten, ReLU, Sequential, softmax_cross_entropy
from refbinn.nn.conv import Conv2d
from refbinn.nn.pool import MaxPool2d
from refbinn.optim.adam import Adam
from refbinn.optim.bayesbinn import BayesBiNN
from refbinn.optim.bop import Bop
from refbinn.optim.ste import STEAdam
from refbinn.train import train_step

from . import torch_ref as tr
from .common import Row, dev

N_DATA, BATCH, STEPS = 64, 16, 50


# -- the two networks ---------------------------------------------------------------------
def mlp():
    """refbinn model, torch Net, input shape, classes."""
    model = mlp_mnist(in_features=20, hidden=(16, 16), classes=4, dropout=0.2,
                      bn_momentum=0.15, bn_eps=1e-4)
    net = tr.Net([
        ("dropout", "drop0", 0.2),
        ("linear", "fc1", 20, 16, False), ("bn", "bn1", 16, 0.15, 1e-4), ("relu", "relu1"),
        ("dropout", "drop1", 0.2),
        ("linear", "fc2", 16, 16, False), ("bn", "bn2", 16, 0.15, 1e-4), ("relu", "relu2"),
        ("dropout", "drop2", 0.2),
        ("linear", "fc3", 16, 4, False), ("bn", "bn3", 4, 0.15, 1e-4),
    ])
    return model, net, (20,), 4


def cnn():
    model = Sequential(
        Conv2d(1, 4, kernel_size=3, padding=1, bias=False, name="conv1"),
        BatchNorm(4, eps=1e-5, momentum=0.1, affine=False, name="bn1"), ReLU(name="relu1"),
        MaxPool2d(2, name="pool1"), Flatten(name="flatten"),
        Dense(64, 3, bias=False, name="fc1"),
        BatchNorm(3, eps=1e-5, momentum=0.1, affine=False, name="bn2"))
    net = tr.Net([
        ("conv", "conv1", 1, 4, 3, 1, False), ("bn", "bn1", 4, 0.1, 1e-5), ("relu", "relu1"),
        ("pool", "pool1", 2), ("flatten", "flatten"),
        ("linear", "fc1", 64, 3, False), ("bn", "bn2", 3, 0.1, 1e-5),
    ])
    return model, net, (1, 8, 8), 3


ARCHS = {"mlp": mlp, "cnn": cnn}


def dropout_masks(net, rng, batch, in_shape, passes):
    """The keep masks refbinn's Dropout layers draw from ``rng`` in ``passes`` forward passes.

    Shapes are followed through Linear layers only (dropout sits in the MLP).
    """
    out = []
    for _ in range(passes):
        masks, shape = {}, (batch,) + in_shape
        for spec in net.layers:
            if spec[0] == "linear":
                shape = (batch, spec[3])
            elif spec[0] == "dropout" and spec[2] > 0:
                masks[spec[1]] = torch.from_numpy(rng.random(shape, dtype=np.float32) >= spec[2])
        out.append(masks)
    return out


def _flat(d, names):
    return torch.from_numpy(np.concatenate([np.ravel(d[k]) for k in names]))


def refbinn_step(model, opt, state, bn, x, y, rng_drop, noise):
    """One step through refbinn's optimizer protocol (refbinn/optim/base.py) with given noise.

    The same loop as ``refbinn.train.train_step`` with ``opt.sample`` replaced by ``noise``;
    BatchNorm state is carried through the passes in order.
    """
    grads = []
    for n in noise:
        p = opt.forward_params(state, n)
        out, cache, bn = model.forward(p, x, bn, train=True, rng=rng_drop)
        _, dout = softmax_cross_entropy(out, y)
        grads.append(model.backward(p, cache, dout)[1])
    return opt.update(grads, state, noise), bn


# -- optimizer adapters: one refbinn optimizer and its torch twin -----------------------------
class Plain:
    """Optimizers with one deterministic pass per step: STE, Bop, Adam (refbinn via train_step)."""

    def __init__(self, kind, **hp):
        self.kind, self.hp = kind, hp
        self.opt = {"ste": STEAdam, "bop": Bop, "adam": Adam}[kind](**hp)

    def noise(self, rng, state, names):
        """(refbinn noise list, torch uniforms per pass): no noise here."""
        return [None], [None]

    def refbinn_step(self, model, state, bn, x, y, rng_drop, noise):
        """refbinn's own training step (these optimizers draw no noise)."""
        state, bn, _, _ = train_step(model, self.opt, state, bn, x, y, softmax_cross_entropy,
                                     rng_noise=np.random.default_rng(0), rng_drop=rng_drop)
        return state, bn

    def to_torch(self, state, names):
        """The refbinn state as the torch twin's state dict of flat tensors."""
        if self.kind == "bop":
            return {"w": _flat(state.w, names), "m": _flat(state.m, names)}
        w = state.latent if self.kind == "ste" else state.params
        return {"w": _flat(w, names), "m": _flat(state.m, names), "v": _flat(state.v, names),
                "step": state.step}

    def torch_weights(self, ts, u):
        return tr.ste_forward_weights(ts) if self.kind == "ste" else ts["w"]

    def torch_update(self, ts, grads, us):
        g = grads[0]
        if self.kind == "bop":
            return tr.bop_step(ts, g, gamma=self.hp["gamma"], threshold=self.hp["threshold"])
        if self.kind == "ste":
            g = tr.clip_gradient(g, clip_value=self.hp.get("clip_value"), clip_norm=self.hp.get("clip_norm"))
            return tr.ste_adam_step(ts, g, lr=self.hp["lr"])
        return tr.adam_step(ts, g, lr=self.hp["lr"])

    def eval_weights(self, ts):
        return tr.ste_forward_weights(ts) if self.kind == "ste" else ts["w"]

    def boundary(self, state, names):
        """Per weight, refbinn's real number whose sign decides the binary weight (for float32 ties)."""
        if self.kind == "ste":
            return _flat(state.latent, names).numpy()
        if self.kind == "bop":
            return (_flat(state.w, names) * _flat(state.m, names)).numpy() - self.hp["threshold"]
        return None

    def binary(self):
        return self.kind in ("ste", "bop")


class Bayes:
    """BayesBiNN: refbinn's optimizer fed uniforms drawn here, and the torch step of validate.torch_ref."""

    def __init__(self, prior=False, **hp):
        self.hp, self.prior = hp, prior
        self.opt = BayesBiNN(**hp)
        self.numerics = hp.get("numerics", "exact")

    def setup(self, params):
        """With ``prior``: a random per-weight prior lam0 (the continual-learning case)."""
        if self.prior:
            rng = np.random.default_rng(123)
            self.hp["lam0"] = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
            self.opt = BayesBiNN(**self.hp)

    def noise(self, rng, state, names):
        """S passes of u ~ U(0, 1), drawn in float64 and rounded to the state dtype, kept off 0 and 1."""
        if self.opt.samples == 0:
            return [None], [None]
        dt = next(iter(state.lam.values())).dtype
        size = sum(v.size for v in state.lam.values())
        tiny = np.finfo(dt).eps
        noise, us = [], []
        for _ in range(self.opt.samples):
            u = np.clip(rng.random(size).astype(dt), tiny, 1 - tiny)
            us.append(torch.from_numpy(u))
            i, d = 0, {}
            for k in names:
                n = state.lam[k].size
                d[k] = u[i:i + n].reshape(state.lam[k].shape)
                i += n
            noise.append(d)
        return noise, us

    def refbinn_step(self, model, state, bn, x, y, rng_drop, noise):
        return refbinn_step(model, self.opt, state, bn, x, y, rng_drop, noise)

    def to_torch(self, state, names):
        lam = _flat(state.lam, names)
        mu = _flat(state.mu, names) if self.numerics == "official" else torch.tanh(lam)   # 'exact' stores none
        return {"lam": lam, "mu": mu, "m": _flat(state.momentum, names), "step": state.step}

    def torch_weights(self, ts, u):
        return tr.bayesbinn_forward_weights(ts, u, tau=self.hp["tau"])

    def torch_update(self, ts, grads, us):
        lam0 = self.hp.get("lam0", 0.0)
        if isinstance(lam0, dict):
            lam0 = _flat(lam0, list(lam0)).to(ts["lam"].dtype)
        new = tr.bayesbinn_step(ts, grads, us, lr=self.hp["lr"], beta=self.hp.get("beta", 0.0),
                                tau=self.hp["tau"], n_train=self.hp["N"], lam0=lam0,
                                reweight=self.hp.get("reweight", 1.0), numerics=self.numerics)
        if self.hp.get("beta", 0.0) == 0:
            new["m"] = ts["m"]                  # refbinn: with beta = 0 the momentum is not part of the step
        return new

    def eval_weights(self, ts):
        return tr.bayesbinn_mode(ts, self.numerics)

    def boundary(self, state, names):
        return _flat(state.mu if self.numerics == "official" else state.lam, names).numpy()

    def binary(self):
        return True


# -- one trajectory -------------------------------------------------------------------------
def run_trajectory(arch, adapter, dtype, *, steps=STEPS, forced=False, seed=0):
    """Run both sides for ``steps`` steps; return (max deviation, note).

    ``forced``: reset the torch state to refbinn's before each step (float32 runs, and
    official-numerics runs with tau >= 1e-2; see the module docstring and OFFICIAL_TOL).
    """
    dtype = np.dtype(dtype)
    model, net, in_shape, classes = ARCHS[arch]()
    root = np.random.default_rng(seed)
    r_init, r_data, r_drop, r_noise = root.spawn(4)
    params, bn = model.init(r_init, dtype)
    names = list(params)
    if names != list(net.shapes) or any(params[k].shape != net.shapes[k] for k in names):
        raise AssertionError(f"parameter layout differs: {[(k, params[k].shape) for k in names]} "
                             f"vs {list(net.shapes.items())}")
    x_all = r_data.standard_normal((N_DATA,) + in_shape).astype(dtype)
    y_all = r_data.integers(0, classes, N_DATA)
    if hasattr(adapter, "setup"):
        adapter.setup(params)
    state = adapter.opt.init(params, r_init)
    ts = adapter.to_torch(state, names)
    tbn = {k: torch.from_numpy(v.copy()) for k, v in bn.items()}

    worst, what, excused_total, changes = 0.0, "", 0, 0
    prev_binary = _flat(adapter.opt.params(state), names).numpy() if adapter.binary() else None
    for t in range(steps):
        i = (t % (N_DATA // BATCH)) * BATCH
        xb, yb = x_all[i:i + BATCH], y_all[i:i + BATCH]
        noise, us = adapter.noise(r_noise, state, names)
        masks = dropout_masks(net, copy.deepcopy(r_drop), BATCH, in_shape, len(us))
        if forced:
            ts = adapter.to_torch(state, names)
            tbn = {k: torch.from_numpy(v.copy()) for k, v in bn.items()}
        state, bn = adapter.refbinn_step(model, state, bn, xb, yb, r_drop, noise)

        grads = []
        for u, mk in zip(us, masks):
            w = adapter.torch_weights(ts, u)
            _, g, tbn = net.loss_and_grad(w, torch.from_numpy(xb), torch.from_numpy(yb),
                                          "cross_entropy", tbn, mk)
            grads.append(g)
        ts = adapter.torch_update(ts, grads, us)

        rs = adapter.to_torch(state, names)
        pairs = {k: (rs[k], ts[k]) for k in rs if k != "step"}
        pairs.update({k: (bn[k], tbn[k]) for k in bn})
        for k, (a, b) in pairs.items():
            d = dev(a, b)
            if not d <= worst:
                worst, what = d, f"{k} at step {t + 1}"
        if adapter.binary():
            rb = _flat(adapter.opt.params(state), names).numpy()
            tb = adapter.eval_weights(ts).numpy()
            changes += int(np.sum(rb != prev_binary))
            prev_binary = rb
            if not np.all((rb == 1) | (rb == -1)) and worst < np.inf:
                worst, what = float("inf"), f"refbinn binary weights not all +-1 at step {t + 1}"
            bad = rb != tb
            if bad.any():
                excused = np.zeros_like(bad)
                if dtype == np.float32:
                    src = adapter.boundary(state, names)
                    excused = np.abs(src) <= 1e-5 * np.max(np.abs(src))
                excused_total += int(np.sum(bad & excused))
                n_bad = int(np.sum(bad & ~excused))
                if n_bad and worst < np.inf:
                    worst, what = float("inf"), f"{n_bad} binary weights differ at step {t + 1}"
    note = f"worst: {what}"
    if adapter.binary():
        note += f"; {changes} binary-weight changes in the run; {excused_total} mismatches at a tie"
    return worst, note


BAYES = {   # label: (settings, dtypes); N is the data-set size
    "exact S=1 tau=1": dict(tau=1.0, lr=0.05, samples=1, lam_init=1.0, lam_init_std=0.5),
    "exact S=2 tau=0.5 beta=0.9 prior": dict(tau=0.5, lr=0.05, samples=2, beta=0.9, lam_init=1.0,
                                             lam_init_std=0.5, reweight=0.5, prior=True),
    "exact S=0 (point estimate)": dict(tau=1.0, lr=0.05, samples=0, lam_init=1.0, lam_init_std=0.5),
    "official S=1 tau=1e-10": dict(tau=1e-10, lr=1e-4, samples=1, lam_init=10.0, numerics="official"),
    "official S=2 tau=1 beta=0.5": dict(tau=1.0, lr=2e-2, samples=2, beta=0.5, lam_init=1.5,
                                        lam_init_std=1.0, numerics="official"),
    # the continual-learning temperature; see OFFICIAL_TOL for its tolerance (float64 only)
    "official S=1 tau=1e-2": dict(tau=1e-2, lr=1e-3, samples=1, lam_init=3.0, lam_init_std=1.0,
                                  numerics="official", dtypes=(np.float64,)),
}
# The official scale s = (1 - w_r**2 + 1e-10) / tau / (1 - mu**2 + 1e-10) subtracts tanh values
# from 1 where they are within a few ulps of 1 (|lam + delta| / tau between ~8 and ~19 in
# float64; lam grows large under these numerics). numpy's and torch's tanh differ in the last
# ulp for ~20% of inputs, and one ulp of w_r (1.1e-16) changes s by up to
# 2 * 1.1e-16 / 1e-10 = 2.2e-6 relative. Free-running, the same happens through
# 1 - mu**2 and compounds, so float64 official runs with tau >= 1e-2 are teacher-forced
# (each step from refbinn's state) and held to OFFICIAL_TOL = 1e-5, the one-step bound
# with a margin. At tau = 1e-10 w_r and mu saturate to exactly +-1 on both sides, so that
# row is free-running at 1e-9. In float32 one ulp of w_r (6e-8) against 1e-10 could change
# s by orders of magnitude; the tau = 1e-2 case is therefore not run in float32, and the
# float32 tau = 1 rows pass because float32 tanh is exactly 1 beyond |z| ~ 9 on both sides.
OFFICIAL_TOL = 1e-5


def cases():
    """name -> (arch, adapter factory, dtype, tolerance, forced)."""
    out = {}
    for arch in ARCHS:
        for label, hp in BAYES.items():
            hp = dict(hp)
            dtypes = hp.pop("dtypes", (np.float64, np.float32))
            for dtype in dtypes:
                # see OFFICIAL_TOL
                forced = dtype == np.float32 or (hp.get("numerics") == "official" and hp["tau"] != 1e-10)
                hp_d = {**hp, "N": N_DATA, "dtype": np.dtype(dtype).name}
                name = f"{arch} bayesbinn {label} [{np.dtype(dtype).name}{', forced' if forced else ''}]"
                if dtype == np.float32:
                    tol = 1e-4
                else:
                    tol = OFFICIAL_TOL if forced else 1e-9
                out[name] = (arch, lambda hp_d=hp_d: Bayes(**hp_d), dtype, tol, forced)
        for kind, hp in (("ste", dict(lr=1e-2)), ("ste", dict(lr=1e-2, clip_value=0.05, clip_norm=0.2)),
                         ("bop", dict(threshold=1e-3, gamma=0.05)), ("adam", dict(lr=1e-2))):
            if "clip_norm" in hp:
                kind_label = f"{kind} clip_value={hp['clip_value']:g} clip_norm={hp['clip_norm']:g}"
            else:
                kind_label = kind
            out[f"{arch} {kind_label} [float64]"] = (arch, lambda kind=kind, hp=hp: Plain(kind, **hp), np.float64, 1e-9, False)
            out[f"{arch} {kind_label} [float32, forced]"] = (arch, lambda kind=kind, hp=hp: Plain(kind, **hp), np.float32, 1e-4, True)
    return out


def run(selected=None, steps=None):
    steps = STEPS if steps is None else int(steps)
    rows = []
    for name, (arch, factory, dtype, tol, forced) in cases().items():
        if selected is not None and name not in selected:
            continue
        try:
            d, note = run_trajectory(arch, factory(), dtype, forced=forced, steps=steps)
        except Exception as exc:
            d, note = float("inf"), f"error: {type(exc).__name__}: {exc}"
        rows.append(Row("trajectories", f"{name} {steps} steps", d, tol, note))
    return rows
