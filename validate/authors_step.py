"""Permuted MNIST, step by step: the authors' BayesBiNN optimizer and MLP against refbinn's.

Imports ``optimizers.BayesBiNN`` and ``models.MLP_CL_h100`` from a checkout of
team-approx-bayes/BayesBiNN (outside this project; nothing of it is copied here) and runs
them next to refbinn's ``BayesBiNN(numerics='official')`` and ``mlp_continual`` at the
continual-learning setting (tau 1e-2, lr 1e-3, |lambda init| 10, S = 1, N = 60 000, BatchNorm
momentum 0.15 and eps 1e-4, batch 100), on the permuted-MNIST data of two tasks with the
previous posterior as the second task's prior.

Teacher-forced: refbinn runs free; before every step the authors' optimizer and model are
given refbinn's state (lambda, the lagged mu, the prior, BatchNorm's running statistics),
the same minibatch and the same uniforms u (their ``torch.rand_like`` is patched to return
them), so that each step's difference is that step's arithmetic alone. Per step it records

- ``lam_dev``: max |lambda_refbinn - lambda_authors| / max |lambda_authors| over all weights;
- ``update_dev``: max |step_refbinn - step_authors| / max |step_authors| (the step: lambda's change);
- ``scale_differs``: how many weights' Lemma 1 scale s = N (1 - w_r**2 + 1e-10) / tau /
  (1 - mu**2 + 1e-10) differs by more than 1e-3 relative between refbinn's
  (``concrete_scale``) and the authors' expression evaluated with torch on the same lambda, u
  and mu (in float32, s changes ~1000x where tanh rounds to exactly 1 on one side only), and
  ``big_steps``: how many weights moved by more than 1 in the step (the rare huge steps);
- ``bn_dev``: the largest scale-relative deviation of the running statistics.

    python -m validate.authors_step --authors ../BayesBiNN            # 2 x 600 steps, float32
    python -m validate.authors_step --authors ../BayesBiNN --steps 50 --dtype float64
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from refbinn.io import write_json
from validate.common import dev
from validate.trajectories import refbinn_step

N_TRAIN, TAU, LR, LAM, BATCH = 60000, 1e-2, 1e-3, 10.0, 100


def load_authors(checkout):
    """The authors' optimizer class and continual MLP, imported from their checkout."""
    sys.path.insert(0, os.path.abspath(checkout))
    from models import MLP_CL_h100                         # noqa: E402 (their package)
    from optimizers import BayesBiNN as AuthorsBayesBiNN   # noqa: E402
    return AuthorsBayesBiNN, MLP_CL_h100


def compare(checkout, data_root, *, steps=600, tasks=2, dtype="float32", seed=0, log=print):
    import torch
    from refbinn import data as D, models
    from refbinn.optim import BayesBiNN
    from refbinn.optim._bayesbinn_math import concrete_scale
    torch.set_num_threads(1)
    dt = np.dtype(dtype)
    tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dt]
    torch.set_default_dtype(tdt)
    AuthorsBayesBiNN, MLP = load_authors(checkout)

    ds = D.load_mnist(data_root)
    x = D.normalize(ds.x_train, "mnist").reshape(len(ds.x_train), -1).astype(dt)
    y = ds.y_train.astype(np.int64)
    perms = D.legacy_pixel_permutations(784, tasks, seed)
    rng = np.random.default_rng(seed)

    model = models.mlp_continual(bn_momentum=0.15, bn_eps=1e-4)
    params, bn = model.init(rng, dt)
    names = list(params)
    net = MLP(784, 10, 100, eps=1e-4, momentum=0.15, batch_affine=False)
    aopt = AuthorsBayesBiNN(net, train_set_size=N_TRAIN, lr=LR, betas=0.0, num_samples=1,
                            lamda_init=LAM, lamda_std=0, temperature=TAU, reweight=1)
    flat = lambda d: torch.from_numpy(np.concatenate([np.ravel(d[k]) for k in names]).astype(dt))  # noqa: E731
    sizes = [params[k].size for k in names]

    def unflat(v):
        out, i = {}, 0
        for k, n in zip(names, sizes):
            out[k] = v[i:i + n].reshape(params[k].shape)
            i += n
        return out

    lam0, state, rows = 0.0, None, []
    real_rand_like = torch.rand_like
    try:
        for t in range(tasks):
            opt = BayesBiNN(N=N_TRAIN, tau=TAU, lr=LR, beta=0.0, samples=1, lam_init=LAM, lam0=lam0,
                            numerics="official", dtype=dt)
            if state is None:
                state = opt.init(params, rng)
            order = np.random.default_rng(seed + 10 + t).permutation(N_TRAIN)
            for s in range(steps):
                idx = order[(s * BATCH) % N_TRAIN:][:BATCH]
                xb, yb = x[idx][:, perms[t]], y[idx]
                noise = opt.sample(state, rng)
                # the authors' side gets refbinn's state, batch and uniforms
                aopt.state["lamda"] = flat(state.lam).clone()
                aopt.state["mu"] = flat(state.mu).clone()
                aopt.state["momentum"] = torch.zeros_like(aopt.state["lamda"])
                aopt.state["prior_lamda"] = flat(lam0).clone() if isinstance(lam0, dict) else \
                    torch.zeros_like(aopt.state["lamda"])
                for k in range(1, 4):
                    getattr(net, f"bn{k}").running_mean.copy_(torch.from_numpy(bn[f"bn{k}.running_mean"]))
                    getattr(net, f"bn{k}").running_var.copy_(torch.from_numpy(bn[f"bn{k}.running_var"]))
                u = flat(noise[0])
                torch.rand_like = lambda like, _u=u: _u.clone()
                xt, yt = torch.from_numpy(xb), torch.from_numpy(yb)
                net.train(True)

                def closure():
                    aopt.zero_grad()
                    out = net(xt)
                    return torch.nn.functional.cross_entropy(out, yt), out
                lam_before = flat(state.lam).numpy().copy()
                mu_before, u_np = flat(state.mu).numpy().copy(), u.numpy().copy()
                s_ref = concrete_scale(lam_before, u_np, TAU, N_TRAIN, numerics="official", mu=mu_before)
                w_t = torch.tanh((torch.log(u / (1 - u)) / 2 + torch.from_numpy(lam_before)) / TAU)
                mu_t = torch.from_numpy(mu_before)
                s_t = (N_TRAIN * ((1 - w_t * w_t + 1e-10) / TAU / (1 - mu_t * mu_t + 1e-10))).numpy()
                aopt.step(closure)
                torch.rand_like = real_rand_like
                state, bn = refbinn_step(model, opt, state, bn, xb, yb, None, noise)

                r_lam = flat(state.lam).numpy()
                a_lam = aopt.state["lamda"].numpy()
                dr, da = r_lam - lam_before, a_lam - lam_before
                differs = np.abs(s_ref - s_t) > 1e-3 * np.abs(s_t)
                bdev = max(dev(bn[f"bn{k}.{w}"], getattr(getattr(net, f"bn{k}"), w).numpy())
                           for k in range(1, 4) for w in ("running_mean", "running_var"))
                rows.append({"task": t + 1, "step": s + 1, "lam_dev": float(dev(r_lam, a_lam)),
                             "update_dev": float(dev(dr, da)),
                             "scale_differs": int(differs.sum()), "bn_dev": float(bdev),
                             "big_steps": int(np.sum(np.abs(da) > 1.0))})
                if (s + 1) % 100 == 0:
                    w = rows[-100:]
                    log(f"task {t + 1} step {s + 1}: lam_dev max {max(r['lam_dev'] for r in w):.2e}, "
                        f"update_dev max {max(r['update_dev'] for r in w):.2e}, "
                        f"scales differing {sum(r['scale_differs'] for r in w)} of {100 * sum(sizes)}, "
                        f"bn_dev max {max(r['bn_dev'] for r in w):.2e}")
            lam0 = {k: v.copy() for k, v in state.lam.items()}
    finally:
        torch.rand_like = real_rand_like
    n_w = sum(sizes)
    lam_abs = np.abs(flat(state.lam).numpy())
    return {"dtype": dt.name, "steps_per_task": steps, "tasks": tasks, "weights": n_w,
            "lam_dev_max": max(r["lam_dev"] for r in rows),
            "lam_dev_median": float(np.median([r["lam_dev"] for r in rows])),
            "update_dev_max": max(r["update_dev"] for r in rows),
            "update_dev_median": float(np.median([r["update_dev"] for r in rows])),
            "scales_differing": int(sum(r["scale_differs"] for r in rows)),
            "scales_total": n_w * len(rows),
            "scales_differing_frac": sum(r["scale_differs"] for r in rows) / (n_w * len(rows)),
            "big_steps_total": int(sum(r["big_steps"] for r in rows)),
            "bn_dev_max": max(r["bn_dev"] for r in rows),
            "lam_abs_frac_in_tanh_band": float(np.mean((lam_abs > 8.4) & (lam_abs < 9.02))),
            "per_step": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors", required=True, help="a checkout of team-approx-bayes/BayesBiNN")
    ap.add_argument("--steps", type=int, default=600, help="steps per task (default 600: one epoch)")
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=os.environ.get("REFBINN_DATA"))
    ap.add_argument("--out", default="results/retention")
    a = ap.parse_args(argv)
    if not a.data_root:
        ap.error("--data-root (or REFBINN_DATA) must name the folder that holds mnist/")
    if not os.path.isfile(os.path.join(a.authors, "optimizers", "BayesBiNN.py")):
        ap.error(f"--authors: no optimizers/BayesBiNN.py in {a.authors} (a checkout of team-approx-bayes/BayesBiNN)")
    if a.steps < 1 or a.tasks < 1:
        ap.error(f"--steps and --tasks must be >= 1, got {a.steps} and {a.tasks}")
    t0 = time.perf_counter()
    res = compare(a.authors, a.data_root, steps=a.steps, tasks=a.tasks, dtype=a.dtype, seed=a.seed)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"step_compare_{a.dtype}.json")
    write_json(path, res)
    print(f"{res['dtype']}: lam_dev max {res['lam_dev_max']:.2e} (median {res['lam_dev_median']:.2e}); "
          f"step dev max {res['update_dev_max']:.2e} (median {res['update_dev_median']:.2e}); "
          f"{res['scales_differing']} of {res['scales_total']} scales differ by > 1e-3 "
          f"({res['scales_differing_frac']:.2e}); bn_dev max {res['bn_dev_max']:.2e}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
