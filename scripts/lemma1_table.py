"""Bias and variance of the Lemma 1 (concrete) gradient against the exact gradient, by tau.

Network: a 2-layer tanh network with d binary weights on a fixed minibatch
(refbinn.estimators.problems.teacher_problem); lam ~ U(-1, 1)^d. The exact dF/dmu comes from
enumerating all 2^d sign vectors. For each tau the Lemma 1 mean over S samples is
compared with it; REINFORCE (no baseline, leave-one-out mean baseline) is the
unbiased control. Columns:

    bias      ||mean - exact||_2 over the d coordinates (sampling noise adds to it)
    bias_se   its standard error by the delta method, sqrt(sum_i (e_i/b)^2 se_i^2)
    noise     sqrt(sum_i se_i^2): what ||mean - exact|| would be for an unbiased estimator
    bias_net  sqrt(max(bias^2 - noise^2, 0)): the bias with the noise's share removed
              (bias^2 - noise^2 is unbiased for the squared bias); 0 = within noise
    var       per-sample variance, averaged over coordinates

Usage::

    python scripts/lemma1_table.py                      # table; writes results/lemma1_table.json
    python scripts/lemma1_table.py --json               # prints the JSON instead of the table
    python scripts/lemma1_table.py --samples 100000 --taus 1 0.1 --out /tmp/t.json
"""
import argparse
import os
import sys
import time

import numpy as np

from refbinn.estimators.problems import teacher_problem
from refbinn.estimators import exact_gradient, lemma1, reinforce
from refbinn.io import atomic_write, json_dumps
from refbinn.io.outputs import check_output_file
from refbinn.options import SEED_MAX

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import check_flags, run_main  # noqa: E402

# -- settings ----------------------------------------------------------------------
N_IN, HIDDEN, N_DATA = 3, 3, 16          # d = HIDDEN * (N_IN + 1) = 12 binary weights
DATA_SEED = 0                            # minibatch and teacher
SEED = 2020                              # lam and all Monte Carlo noise
TAUS = [1.0, 0.5, 0.2, 0.1, 0.05]
SAMPLES = 400_000                        # per estimator and per tau
CHUNK = 100_000                          # samples per vectorized call (bounds memory)
OUT = "results/lemma1_table.json"


def moments(draw, S, chunk=CHUNK):
    """Mean, SE and per-coordinate variance of per-sample estimates drawn ``chunk`` at a time.

    Sums are taken around a pilot mean (the first chunk's) so the variance does not
    cancel catastrophically. Returns mean, se, var, each (d,).
    """
    sizes = [chunk] * (S // chunk) + ([S % chunk] if S % chunk else [])
    first = draw(sizes[0])
    pilot = first.mean(0)
    p1 = p2 = 0.0
    for k, n in enumerate(sizes):
        c = (first if k == 0 else draw(n)) - pilot                       # (n, d)
        p1, p2 = p1 + c.sum(0), p2 + (c ** 2).sum(0)
    a = p1 / S
    var = (p2 - S * a ** 2) / (S - 1)
    return pilot + a, np.sqrt(var / S), var


def row(name, tau, mean, se, var, exact):
    e = mean - exact
    b = float(np.linalg.norm(e))
    return dict(estimator=name, tau=tau, bias=b,
                bias_se=float(np.sqrt(np.sum((e / b) ** 2 * se ** 2))) if b > 0 else 0.0,
                noise=float(np.sqrt(np.sum(se ** 2))),
                bias_net=float(np.sqrt(max(b ** 2 - np.sum(se ** 2), 0.0))), var=float(var.mean()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--samples", type=int, default=SAMPLES)
    ap.add_argument("--taus", type=float, nargs="+", default=TAUS)
    ap.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    ap.add_argument("--out", default=OUT, help="where to write the JSON ('' to skip)")
    args = ap.parse_args(argv)
    try:                    # before any work: a bad tau or --out was a traceback, the latter after the table
        check_flags(args, {"seed": ("int", 0, SEED_MAX), "samples": ("int", 2, None), "taus": ("positive",)})
        if args.out:
            check_output_file(args.out, "--out")
    except ValueError as e:
        ap.error(str(e))

    t0 = time.perf_counter()
    loss_fn, loss_grad = teacher_problem(N_IN, HIDDEN, N_DATA, DATA_SEED)
    d = HIDDEN * (N_IN + 1)
    rng = np.random.default_rng(args.seed)
    lam = rng.uniform(-1.0, 1.0, d)
    exact = exact_gradient(loss_fn, lam)
    streams = rng.spawn(len(args.taus) + 2)                               # one stream per row

    rows = []
    for tau, r in zip(args.taus, streams):
        m, se, v = moments(lambda n: lemma1(loss_grad, lam, tau, samples=n, rng=r), args.samples)
        rows.append(row("lemma1", tau, m, se, v, exact))
    for base, r in zip([None, "mean"], streams[len(args.taus):]):
        m, se, v = moments(lambda n: reinforce(loss_fn, lam, n, r, baseline=base), args.samples)
        rows.append(row("reinforce" + ("" if base is None else "+mean"), None, m, se, v, exact))

    result = dict(settings=dict(n_in=N_IN, hidden=HIDDEN, n_data=N_DATA, d=d, data_seed=DATA_SEED,
                                seed=args.seed, taus=args.taus, samples=args.samples),
                  exact_grad_norm=float(np.linalg.norm(exact)), rows=rows,
                  seconds=round(time.perf_counter() - t0, 1))
    if args.out:
        atomic_write(args.out, json_dumps(result, indent=2) + "\n")     # creates the folder
    if args.json:
        print(json_dumps(result, indent=2))
        return result

    s = result["settings"]
    print(f"Lemma 1 vs exact dF/dmu: tanh MLP {N_IN}-{HIDDEN}-1, d={d}, minibatch {N_DATA}, "
          f"lam ~ U(-1,1), seed {s['seed']}, {s['samples']} samples per row")
    print(f"||exact dF/dmu|| = {result['exact_grad_norm']:.5f}")
    print(f"{'estimator':<16}{'tau':>6}{'bias':>11}{'bias_se':>10}{'noise':>10}{'bias_net':>10}{'var':>11}")
    for r_ in rows:
        tau = "-" if r_["tau"] is None else f"{r_['tau']:g}"
        print(f"{r_['estimator']:<16}{tau:>6}{r_['bias']:>11.5f}{r_['bias_se']:>10.5f}"
              f"{r_['noise']:>10.5f}{r_['bias_net']:>10.5f}{r_['var']:>11.5f}")
    print(f"({result['seconds']} s{'; wrote ' + args.out if args.out else ''})")
    return result


if __name__ == "__main__":
    sys.exit(run_main("lemma1_table.py", main))
