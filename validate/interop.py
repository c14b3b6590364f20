"""refbinn.interop against a real torch module: load, evaluate, compare.

1. refbinn -> torch: a small ``mlp_mnist`` with random weights and BN
   statistics is written with ``refbinn.interop.to_state_dict`` and loaded
   (``strict=True``) into ``validate.torch_ref.MLP`` of the same architecture;
   the eval-mode outputs must match ``model.apply``.
2. torch -> refbinn: a torch MLP trained for a few steps (so its running
   statistics and ``num_batches_tracked`` are its own) is read back with
   ``from_state_dict``; refbinn's eval output must match torch's.
3. BayesBiNN state: the flat ``lamda`` of ``bayesbinn_to_torch`` is split by
   ``torch.nn.utils.vector_to_parameters`` over ``module.parameters()``; each
   parameter must receive its own block (the optimizer's layout).
4. A refbinn BayesBiNN state converted with ``bayesbinn_to_torch``, stepped by
   the torch reference and converted back must equal refbinn's own step.

Tolerances: 1e-10 (float64) / 1e-5 (float32), scale-relative.
"""
from __future__ import annotations

import numpy as np
import torch

from refbinn.interop import (bayesbinn_from_torch, bayesbinn_to_torch, from_state_dict,
                             params_to_vector, to_state_dict)
from refbinn.models import mlp_mnist

from . import torch_ref as tr
from .common import TOL, Row, max_dev

SIZES = (12, 10, 8, 3)


def _models(dtype):
    model = mlp_mnist(in_features=SIZES[0], hidden=SIZES[1:-1], classes=SIZES[-1], dropout=0.2)
    net = tr.MLP(SIZES, momentum=0.15, eps=1e-4).to(torch.float64 if dtype == np.float64 else torch.float32)
    return model, net


def refbinn_to_torch(dtype, seed=0):
    rng = np.random.default_rng(seed)
    model, net = _models(dtype)
    params, state = model.init(rng, dtype)
    state = {k: (rng.uniform(0.5, 2.0, v.shape) if k.endswith("var") else rng.standard_normal(v.shape))
             .astype(dtype) for k, v in state.items()}
    sd = to_state_dict(params, state, num_batches_tracked=5, model=model)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    net.eval()
    x = rng.standard_normal((7, SIZES[0])).astype(dtype)
    with torch.no_grad():
        yt = net(torch.from_numpy(x))
    return {"eval output": (model.apply(params, x, state), yt),
            "num_batches_tracked": (np.array(5.0), net.bn1.num_batches_tracked.double())}


def torch_to_refbinn(dtype, seed=0):
    torch.manual_seed(seed)
    model, net = _models(dtype)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    net.train()
    with torch.no_grad():
        for _ in range(3):                                   # move the running statistics
            net(torch.randn(16, SIZES[0], dtype=tdt) * 2 + 1)
    net.eval()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    like_p, like_s = model.init(np.random.default_rng(0), dtype)
    params, state, nbt = from_state_dict(sd, like_p, like_s)
    x = np.random.default_rng(seed).standard_normal((7, SIZES[0])).astype(dtype)
    with torch.no_grad():
        yt = net(torch.from_numpy(x))
    return {"eval output": (model.apply(params, x, state), yt),
            "num_batches_tracked": (np.array(float(nbt["bn2"])), torch.tensor(3.0))}


def lam_layout(dtype, seed=0):
    rng = np.random.default_rng(seed)
    model, net = _models(dtype)
    params, _ = model.init(rng, dtype)
    lam = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
    flat = bayesbinn_to_torch({"lam": lam, "momentum": lam, "step": 1}, list(params))["lamda"]
    torch.nn.utils.vector_to_parameters(torch.from_numpy(flat), net.parameters())
    named = dict(net.named_parameters())
    return {k: (lam[k], named[k].detach()) for k in params}


def bayesbinn_step_via_interop(dtype, seed=0):
    """refbinn state -> bayesbinn_to_torch -> one torch_ref step -> bayesbinn_from_torch, against
    refbinn's own step with the same gradients and noise (official numerics: lagged mu)."""
    from refbinn.optim.bayesbinn import BayesBiNN
    rng = np.random.default_rng(seed)
    model, _ = _models(dtype)
    params, _ = model.init(rng, dtype)
    hp = dict(N=500, tau=1.0, lr=0.05, beta=0.5, samples=2, lam_init=2.0, lam_init_std=1.0,
              numerics="official", dtype=np.dtype(dtype).name)
    opt = BayesBiNN(**hp)
    state = opt.init(params, rng)
    for _ in range(2):                                      # two steps: momentum, step and lag non-trivial
        noise = opt.sample(state, rng)
        grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()} for _ in noise]
        t = bayesbinn_to_torch(state)
        ts = {"lam": torch.from_numpy(t["lamda"]), "mu": torch.from_numpy(t["mu"]),
              "m": torch.from_numpy(t["momentum"]), "step": t["step"]}
        us = [torch.from_numpy(params_to_vector({k: n.uniform(k, v.shape, dtype) for k, v in params.items()}))
              for n in noise]                              # the keys' u, materialised (refbinn.noise)
        gs = [torch.from_numpy(params_to_vector(g)) for g in grads]
        ts = tr.bayesbinn_step(ts, gs, us, lr=hp["lr"], beta=hp["beta"], tau=hp["tau"], n_train=hp["N"],
                               numerics="official")
        state = opt.update(grads, state, noise)
    back = bayesbinn_from_torch({"lamda": ts["lam"].numpy(), "mu": ts["mu"].numpy(),
                                 "momentum": ts["m"].numpy(), "step": ts["step"]}, params)
    pairs = {f"{f} {k}": (getattr(state, f)[k], back[f][k]) for f in ("lam", "momentum", "mu") for k in params}
    pairs["step"] = (np.array(float(state.step)), np.array(float(back["step"])))
    return pairs


CASES = {"state_dict refbinn -> torch eval": refbinn_to_torch,
         "state_dict torch -> refbinn eval": torch_to_refbinn,
         "lamda vector in parameters() order": lam_layout,
         "BayesBiNN state via interop, 2 torch steps": bayesbinn_step_via_interop}


def run():
    rows = []
    for name, case in CASES.items():
        for dtype in (np.dtype(np.float64), np.dtype(np.float32)):
            try:
                d, worst = max_dev(case(dtype))
                note = f"worst: {worst}"
            except Exception as exc:
                d, note = float("inf"), f"error: {type(exc).__name__}: {exc}"
            rows.append(Row("interop", f"{name} [{dtype.name}]", d, TOL[dtype], note))
    return rows

