"""CIFAR-10 / CIFAR-100, the paper's VGG-like CNN, the optimizers of Table 2.

Network (spec section 9): conv128-conv128-pool-conv256-conv256-pool-conv512-
conv512-pool-fc1024-fc1024-fc(classes), 3x3 convolutions, no bias, BatchNorm
without affine after every layer, every weight binary. Augmentation: pad 4,
random 32x32 crop, horizontal flip; N = 45000 x 10 for BayesBiNN. 10% of the
training set is held out for validation; the test accuracy is read at the epoch
of best validation accuracy. One run = ``refbinn.experiments.build`` (the paper
preset with the settings below as overrides) + ``refbinn.train.fit``, writing
the same files as ``refbinn train --name DATASET_RUN`` (``OUT/DATASET_RUN.json``,
checkpoints in ``OUT/runs/DATASET_RUN/``); the rows are merged into
``OUT/DATASET_table2.json``.

The data set is not on these machines: ``refbinn download cifar10`` fetches it.
``--fake`` writes a small random set in the official pickle layout
(``refbinn.data.write_fake_cifar``) and trains on it, so the script can be
smoke-tested anywhere (its numbers mean nothing).

    python scripts/run_cifar.py --dataset cifar10 --epochs 500        # the paper's budget (days on CPU)
    python scripts/run_cifar.py --dataset cifar100 --optimizers bayesbinn_official --stop-after 1
    python scripts/run_cifar.py --fake --quick                          # seconds
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (accuracies, add_run_args, merge_rows, parse, print_table2, resolve,  # noqa: E402
                     run_main, train_table2_run, with_overrides)

# -- settings (spec section 9; the paper trains 500 epochs, 5 seeds) ---------------------------
DATASETS = ("cifar10", "cifar100")
EPOCHS = 500
BATCH_SIZE = 50
SEED = 0
WIDTH = 1.0                            # multiplies every channel count (1.0: the paper's network)
EVAL_SAMPLES = 10                      # C hard samples for the mean prediction (last epoch)
OUT = "results"

# run name -> (optimizer, settings) per data set; every value is passed to build() as an override
RUNS = {
    "cifar10": {
        "bayesbinn_official": ("bayesbinn", dict(lr=3e-4, beta=0.0, tau=1e-10, samples=1, lam_init=10.0,
                                                 numerics="official")),
        # exact math: tau must leave (lambda + delta)/tau unsaturated (spec 7.6); not tuned on CIFAR
        "bayesbinn_exact": ("bayesbinn", dict(lr=3e-4, beta=0.0, tau=1.0, samples=1, lam_init=10.0,
                                              numerics="exact")),
        "ste": ("ste", dict(lr=1e-2, schedule="cosine")),
        "bop": ("bop", dict(threshold=1e-8, gamma=1e-4, gamma_step_every=100, gamma_step_factor=0.1)),
        "pmf": ("pmf", dict(lr=1e-2, rho=1.05, step_every_iters=30000, step_factor=0.2, weight_decay=1e-4)),
        "adam": ("adam", dict(lr=1e-2, schedule="cosine")),              # full precision
        "vispa": ("vispa", dict(lr=0.1, rank=8, scale=100.0, momentum=0.9, weight_decay=5e-4,
                                warmup_epochs=5)),
    },
}
RUNS["cifar100"] = {   # CIFAR-10's settings but for these
    **RUNS["cifar10"],
    "bayesbinn_official": ("bayesbinn", {**RUNS["cifar10"]["bayesbinn_official"][1], "tau": 1e-8}),
    "bop": ("bop", {**RUNS["cifar10"]["bop"][1], "threshold": 1e-9}),
    "adam": ("adam", dict(lr=3e-3, schedule="cosine")),
}
DEFAULT_RUNS = ("bayesbinn_official", "ste", "bop", "pmf", "adam")

# Table 2 (spec section 10): test accuracy %, mean and std over 5 runs; None: not in the paper
PAPER = {
    "cifar10": {"bayesbinn_official": (93.72, 0.16), "bayesbinn_exact": (93.72, 0.16), "ste": (93.55, 0.15),
                "bop": (93.00, 0.11), "pmf": (91.43, 0.14), "adam": (93.90, 0.17), "vispa": None},
    "cifar100": {"bayesbinn_official": (73.68, 0.31), "bayesbinn_exact": (73.68, 0.31), "ste": (72.89, 0.21),
                 "bop": (69.58, 0.15), "pmf": (70.45, 0.25), "adam": (74.83, 0.26), "vispa": None},
}
PAPER_MEAN = {"cifar10": (93.72, 0.15), "cifar100": (73.65, 0.41)}   # BayesBiNN (mean prediction)

FAKE = dict(n_train=500, n_test=100)  # --fake: images per split of the generated set
QUICK = dict(epochs=1, max_train=100, width=1 / 16, eval_samples=2, fake_n_train=100, fake_n_test=20,
             out="results/runs/quick")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=DATASETS, default="cifar10")
    p.add_argument("--optimizers", nargs="+", default=list(DEFAULT_RUNS), choices=[*RUNS["cifar10"], "all"],
                   help="runs to do (default: %(default)s; 'all' adds bayesbinn_exact and vispa)")
    p.add_argument("--epochs", type=int, help=f"epochs per run (default {EPOCHS}, the paper's)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--lr", type=float, help="learning rate of every selected run that has one")
    p.add_argument("--tau", type=float, help="BayesBiNN temperature (BayesBiNN runs)")
    p.add_argument("--width", type=float, help=f"channel multiplier (default {WIDTH})")
    p.add_argument("--eval-samples", type=int, help=f"C for the mean prediction (default {EVAL_SAMPLES})")
    p.add_argument("--max-train", type=int, help="use only the first N training images")
    p.add_argument("--tag", help="suffix of the run names (e.g. seed1): DATASET_RUN_TAG")
    p.add_argument("--fake", action="store_true", help="train on a generated set in the CIFAR format")
    add_run_args(p, OUT, QUICK["out"], "smoke test: 1 epoch, 100 images, width 1/16", quick_flags="--quick or --fake")
    return p.parse_args(argv)


def main(argv=None):
    a, command = parse(parse_args, argv, "run_cifar.py")
    q = QUICK if a.quick else {}
    epochs, width, max_train = resolve(a, q, epochs=EPOCHS, width=WIDTH, max_train=None)
    out = a.out or (QUICK["out"] if a.quick or a.fake else OUT)
    eval_samples = a.eval_samples if a.eval_samples is not None else q.get("eval_samples", EVAL_SAMPLES)
    runs = RUNS[a.dataset]
    names = list(runs) if "all" in a.optimizers else list(dict.fromkeys(a.optimizers))
    root = a.data_root
    if a.fake:
        from refbinn.data import write_fake_cifar
        root = os.path.join(out, "runs", "fake_data")
        write_fake_cifar(root, kind=a.dataset, n_train=q.get("fake_n_train", FAKE["n_train"]),
                         n_test=q.get("fake_n_test", FAKE["n_test"]), seed=a.seed)
    print(f"run_cifar: {a.dataset}{' (generated data in ' + root + ')' if a.fake else ''}; runs {names}; "
          f"epochs {epochs}, batch {BATCH_SIZE}, seed {a.seed}, width {width}, eval samples {eval_samples}, "
          f"max_train {max_train}; out {out}", flush=True)

    rows = []
    for run in names:
        optimizer, settings = runs[run]
        settings = with_overrides(settings, optimizer, lr=a.lr, tau=a.tau)
        over = dict(settings, epochs=epochs, batch_size=BATCH_SIZE, seed=a.seed, eval_samples=eval_samples,
                    max_train=max_train, model_kwargs={"width": width})
        name, s = train_table2_run(a.dataset, run, optimizer, over, a, out=out, root=root, command=command)
        rows.append({"run": name, "optimizer": optimizer, "numerics": settings.get("numerics"),
                     "fake_data": a.fake, "epochs": s.get("epochs_run"), "epochs_planned": epochs,
                     "seed": a.seed, "width": width, **accuracies(s),
                     "train_seconds": s.get("train_seconds"), "paper_test_acc": PAPER[a.dataset][run],
                     "paper_test_acc_mean": PAPER_MEAN[a.dataset] if optimizer == "bayesbinn" else None,
                     "json": os.path.join(out, f"{name}.json")})

    from refbinn.io import write_json as _write_json
    path = os.path.join(out, f"{a.dataset}_table2.json")
    _write_json(path, {"experiment": f"{a.dataset}_table2", "command": command, "rows": merge_rows(path, rows)})
    print(f"\n{a.dataset} test accuracy % (this invocation's runs{'; GENERATED DATA' if a.fake else ''}; "
          "the paper's Table 2: 500 epochs, 5 seeds)")
    print_table2(rows)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("run_cifar.py", main))
