"""Permuted MNIST side by side: the authors' BayesBiNN script against ``refbinn continual``.

Runs, for each seed, the authors' ``main_permute_mnist_CL.py`` from a checkout of
team-approx-bayes/BayesBiNN (outside this project; nothing of it is copied here) and
``refbinn continual --preset authors --prior posterior`` with the same seed, then writes the
accuracy matrices A[t][k] (accuracy on task k after training task t, mean prediction of the
test samples) of both sides and their summaries to ``OUT/retention.json``.

The two sides draw the same tasks: the authors' script seeds NumPy with ``--seed`` and draws
one ``np.random.permutation(784)`` per task, which the ``authors`` preset reproduces
(``refbinn.data.legacy_pixel_permutations``). Everything else random (data order, noise, test
samples) is each side's own.

The authors' script imports torchvision (for ``datasets.MNIST`` and three transforms) and
tensorboard. Neither is needed for what it does with them here, so the runner puts small
stand-ins in ``sys.modules`` before running the script unmodified with ``runpy``: an MNIST
data set read from refbinn's local data root (the same uint8 images) and ToTensor, Normalize,
Compose with torchvision's definitions; a SummaryWriter that writes nothing (the script
only opens and closes it). The script's printed per-task evaluation after each task is the
result; its own files go to a temporary folder. By default the evaluation the script runs
after every epoch of every task (100 test samples on each task seen so far: ~60% of its
time; training does not use it) is skipped by replacing ``test_model_cl`` in its training
module only; ``--epoch-tests`` keeps it (the random draws it makes then shift the noise
and data order of later epochs: another random stream, the same algorithm).

Each run gets one thread (OMP_NUM_THREADS, torch.set_num_threads; refbinn's BLAS and Numba).

    python -m validate.authors_cl --authors ../BayesBiNN --seeds 1 2 3 4 5 --epochs 10
    python -m validate.authors_cl --authors ../BayesBiNN --quick       # 2 tasks, 1 epoch
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from refbinn.io import write_json

SCRIPT = "main_permute_mnist_CL.py"

# Run in a fresh interpreter: stand-ins for torchvision and torch.utils.tensorboard, then the
# authors' script as __main__. argv[1]: the checkout, argv[2]: the data root, argv[3:]: its args.
BOOTSTRAP = r'''
import runpy, sys, types
import numpy as np
import torch
torch.set_num_threads(1)
from refbinn import data as D

class ToTensor:
    def __call__(self, img):                        # uint8 (H, W) -> float32 (1, H, W) in [0, 1]
        return torch.from_numpy(np.asarray(img, dtype=np.float32)[None] / np.float32(255))

class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = float(mean[0]), float(std[0])
    def __call__(self, x):
        return (x - self.mean) / self.std

class Compose:
    def __init__(self, fns):
        self.fns = list(fns)
    def __call__(self, x):
        for f in self.fns:
            x = f(x)
        return x

class MNIST(torch.utils.data.Dataset):
    def __init__(self, root, train=True, download=False, transform=None):
        ds = D.load_mnist(DATA_ROOT)
        self.x, self.y = (ds.x_train, ds.y_train) if train else (ds.x_test, ds.y_test)
        self.transform = transform
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        img = self.x[i]
        return (self.transform(img) if self.transform else img), int(self.y[i])

class SummaryWriter:
    def __init__(self, *a, **k): pass
    def add_scalar(self, *a, **k): pass
    def close(self): pass

tv = types.ModuleType("torchvision")
tv.datasets = types.ModuleType("torchvision.datasets"); tv.datasets.MNIST = MNIST
tv.transforms = types.ModuleType("torchvision.transforms")
tv.transforms.ToTensor, tv.transforms.Normalize, tv.transforms.Compose = ToTensor, Normalize, Compose
tb = types.ModuleType("torch.utils.tensorboard"); tb.SummaryWriter = SummaryWriter
sys.modules.update({"torchvision": tv, "torchvision.datasets": tv.datasets,
                    "torchvision.transforms": tv.transforms, "torch.utils.tensorboard": tb})
checkout, DATA_ROOT, epoch_tests = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
sys.path.insert(0, checkout)
sys.argv = [SCRIPT] + sys.argv[4:]
if not epoch_tests:           # the per-epoch evaluation inside train_model_cl only (not main's)
    import utils.train_cl_utils as tcu
    tcu.test_model_cl = lambda *a, **k: (0.0, 0.0)
runpy.run_path(checkout + "/" + SCRIPT, run_name="__main__")
'''.replace("SCRIPT", repr(SCRIPT))

ROW = re.compile(r"## Individual Task\[(\d+)\], Test Loss:\s*\S+\s*&\s*Test Accuracy:\s*(\S+)")


def parse_authors(stdout, tasks):
    """The accuracy matrix (fractions, nan above the diagonal) from the authors' printout.

    After training task t the script prints ``test acc: ...`` and then one
    ``## Individual Task[k] ... Test Accuracy: X`` line (X in percent) per task k <= t; the same
    line format also appears inside each epoch, so only the block after ``test acc:`` counts.
    """
    a = np.full((tasks, tasks), np.nan)
    lines, t = stdout.splitlines(), -1
    for i, line in enumerate(lines):
        if line.startswith("test acc:"):
            t += 1
            block = [ROW.search(s) for s in lines[i + 1:]]
            rows = [m for m in block if m][:t + 1]
            if len(rows) != t + 1 or t >= tasks:
                raise ValueError(f"parse_authors: expected {t + 1} task rows after task {t}, got {len(rows)}")
            for m in rows:
                a[t, int(m.group(1))] = float(m.group(2)) / 100.0
    if t != tasks - 1:
        raise ValueError(f"parse_authors: found {t + 1} finished tasks, expected {tasks}")
    return a


def summarise(a):
    """Average over the tasks seen after the last task, and task 1 after the last task."""
    return {"avg_after_last": float(np.nanmean(a[-1])), "task1_after_last": float(a[-1, 0])}


def env_one_thread():
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[k] = "1"
    return env


def run_authors(checkout, data_root, seed, tasks, epochs, epoch_tests=False):
    """One run of the authors' script; returns (A, seconds)."""
    args = ["--epochs", str(epochs), "--seed", str(seed), "--num-tasks", str(tasks), "--no-cuda"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run([sys.executable, "-c", BOOTSTRAP, os.path.abspath(checkout), data_root,
                            "1" if epoch_tests else "0", *args],
                           cwd=tmp, env=env_one_thread(), capture_output=True, text=True)
    if p.returncode != 0 and "test acc:" not in p.stdout:
        raise RuntimeError(f"the authors' script failed (seed {seed}):\n{p.stderr[-3000:]}")
    # The script's last line saves a ragged list with np.save, which newer NumPy refuses; the
    # results are printed before it.
    return parse_authors(p.stdout, tasks), time.perf_counter() - t0


def run_refbinn(data_root, seed, tasks, epochs, out):
    """One ``refbinn continual --preset authors --prior posterior`` run; returns (A, seconds, json)."""
    name = f"refbinn_s{seed}"
    cmd = [sys.executable, "-m", "refbinn", "continual", "--preset", "authors", "--prior", "posterior",
           "--tasks", str(tasks), "--epochs", str(epochs), "--seed", str(seed), "--quiet",
           "--name", name, "--out", out, "--data-root", data_root]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env_one_thread(), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"refbinn continual failed (seed {seed}):\n{p.stderr[-3000:]}")
    res = json.load(open(os.path.join(out, name + ".json")))["posterior"]
    return np.array(res["acc_mean"], dtype=float), time.perf_counter() - t0, res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors", required=True, help="a checkout of team-approx-bayes/BayesBiNN")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--epochs", type=int, default=10, help="epochs per task (default 10)")
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--side", choices=["both", "authors", "refbinn"], default="both")
    ap.add_argument("--data-root", default=os.environ.get("REFBINN_DATA"))
    ap.add_argument("--out", default="results/retention")
    ap.add_argument("--epoch-tests", action="store_true",
                    help="keep the authors' script's evaluation after every epoch (slower; default: skipped)")
    ap.add_argument("--quick", action="store_true", help="2 tasks, 1 epoch, one seed")
    a = ap.parse_args(argv)
    if not a.data_root:
        ap.error("--data-root (or REFBINN_DATA) must name the folder that holds mnist/")
    if not os.path.isfile(os.path.join(a.authors, SCRIPT)):
        ap.error(f"--authors: no {SCRIPT} in {a.authors}")
    if a.epochs < 1 or a.tasks < 1 or min(a.seeds) < 0:
        ap.error(f"--epochs and --tasks must be >= 1 and --seeds >= 0, got {a.epochs}, {a.tasks}, {a.seeds}")
    if a.quick:
        a.tasks, a.epochs, a.seeds = 2, 1, a.seeds[:1]
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "retention.json")
    doc = json.load(open(path)) if os.path.exists(path) else {}
    doc.update({"description": __doc__.split("\n\n")[0], "tasks": a.tasks, "epochs_per_task": a.epochs})
    doc.setdefault("runs", {})
    for seed in a.seeds:
        for side in (["authors", "refbinn"] if a.side == "both" else [a.side]):
            key = f"{side}_s{seed}"
            if key in doc["runs"] and doc["runs"][key]["epochs"] == a.epochs and doc["runs"][key]["tasks"] == a.tasks:
                print(f"{key}: done before, kept")
                continue
            if side == "authors":
                acc, sec = run_authors(a.authors, a.data_root, seed, a.tasks, a.epochs,
                                       epoch_tests=a.epoch_tests)
                extra = {"epoch_tests": a.epoch_tests}
            else:
                acc, sec, res = run_refbinn(a.data_root, seed, a.tasks, a.epochs, a.out)
                extra = {"diagnostics": res.get("diagnostics")}
            doc["runs"][key] = {"side": side, "seed": seed, "tasks": a.tasks, "epochs": a.epochs,
                                "acc": acc.tolist(), "seconds": round(sec, 1), **summarise(acc), **extra}
            print(f"{key}: average after task {a.tasks} {doc['runs'][key]['avg_after_last']:.4f}, "
                  f"task 1 {doc['runs'][key]['task1_after_last']:.4f} ({sec:.0f} s)", flush=True)
            write_json(path, doc)
    summary = {}
    for side in ("authors", "refbinn"):
        rs = [r for r in doc["runs"].values() if r["side"] == side and r["tasks"] == a.tasks]
        if rs:
            v = np.array([r["avg_after_last"] for r in rs]); t1 = np.array([r["task1_after_last"] for r in rs])
            summary[side] = {"n": len(rs), "avg_after_last_mean": float(v.mean()),
                             "avg_after_last_std": float(v.std(ddof=1)) if len(rs) > 1 else None,
                             "avg_after_last_range": [float(v.min()), float(v.max())],
                             "task1_after_last_mean": float(t1.mean())}
            print(f"{side}: n={len(rs)} average after task {a.tasks} {v.mean():.4f} "
                  f"(range {v.min():.4f}-{v.max():.4f}), task 1 {t1.mean():.4f}")
    doc["summary"] = summary
    write_json(path, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
