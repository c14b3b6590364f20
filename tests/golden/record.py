"""Record the golden fixtures of tests/test_golden.py (run once, before a refactor).

    python tests/golden/record.py

Writes, next to this file:

- ``<model>_<optimizer>_<dtype>.npz``: ``refbinn trace`` output (every tensor of STEPS
  steps) for every traceable optimizer on the small models; the test rewrites each
  trace with the current code and asks for a match with rtol = atol = 0 (bit for bit).
- ``traces.json``: SHA-256 of every tensor of larger traces (the MLP and CNN of
  ``refbinn trace``), compared the same way without storing them.
- ``kernels.json``: SHA-256 of the bits of every state field after two float32 steps
  of each optimizer on arrays large enough for the fused Numba kernels, so that the
  fast paths are pinned too. Only optimizers whose kernels use no NumPy transcendental
  are hashed (NumPy's float32 SIMD tanh/log differ between CPUs; PMF uses np.tanh).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))

from refbinn.optim import VISPA, Adam, BayesBiNN, STEAdam  # noqa: E402
from refbinn.train.trace import load_trace, write_trace  # noqa: E402

STEPS = 3                            # the digested traces
TINY_STEPS = 2                       # the kept ones
OPTIMIZERS = ("bayesbinn-exact", "bayesbinn-official", "ste", "bop", "adam", "pmf", "vispa")
# kept whole (check-trace compares them): the toy MLP, every optimizer
TRACES = ([("tiny", o, "float64") for o in OPTIMIZERS]
          + [("tiny", o, "float32") for o in ("bayesbinn-exact", "bayesbinn-official")])
# kept as a digest of every tensor (traces of these are 0.2-0.5 MB each)
DIGEST_TRACES = ([("mlp", o, "float64") for o in OPTIMIZERS]
                 + [("mlp", o, "float32") for o in ("bayesbinn-exact", "bayesbinn-official")]
                 + [("cnn", o, "float64") for o in ("bayesbinn-exact", "bayesbinn-official", "vispa")])

N_FUSED = 1 << 16                    # at or above every fused-kernel threshold
KERNEL_CASES = {
    "bayesbinn-exact-s1": lambda: BayesBiNN(N=1000.0, tau=1.0, lr=0.05, beta=0.9, samples=1,
                                            lam_init=1.0, lam_init_std=0.5, numerics="exact"),
    "bayesbinn-exact-s2": lambda: BayesBiNN(N=1000.0, tau=0.5, lr=0.05, beta=0.0, samples=2,
                                            lam_init=1.0, lam_init_std=0.5, numerics="exact"),
    "bayesbinn-official-s1": lambda: BayesBiNN(N=1000.0, tau=1e-10, lr=1e-4, samples=1,
                                               lam_init=10.0, numerics="official"),
    "bayesbinn-official-s2": lambda: BayesBiNN(N=1000.0, tau=0.3, lr=1e-3, beta=0.5, samples=2,
                                               lam_init=1.0, lam_init_std=1.0, numerics="official"),
    "bayesbinn-s0": lambda: BayesBiNN(N=1000.0, tau=1.0, lr=1e-3, samples=0, lam_init=1.0),
    "vispa": lambda: VISPA(lr=0.1, rank=4, scale=10.0),
    "adam": lambda: Adam(lr=1e-2, weight_decay=1e-3),
    "ste": lambda: STEAdam(lr=1e-2),
}


def trace_name(model, optimizer, dtype):
    return f"{model}_{optimizer}_{dtype}.npz"


def _digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def kernel_digests(name):
    """{'forward': sha, 'state': sha} after two float32 steps of KERNEL_CASES[name]."""
    opt = KERNEL_CASES[name]()
    rng = np.random.default_rng(11)
    params = {"a": (rng.standard_normal(N_FUSED) * 0.3).astype(np.float32),
              "b": (rng.standard_normal((N_FUSED // 256, 256)) * 0.3).astype(np.float32)}
    state = opt.init(params, rng)
    fw = []
    for _ in range(2):
        noise = opt.sample(state, rng)
        ws = [opt.forward_params(state, n) for n in noise]
        fw += [w[k] for w in ws for k in sorted(w)]
        grads = [{k: (rng.standard_normal(v.shape) * 1e-2).astype(np.float32) for k, v in params.items()}
                 for _ in noise]
        state = opt.update(grads, state, noise)
    fields = []
    for f in state._fields:
        v = getattr(state, f)
        fields += [v[k] for k in sorted(v)] if isinstance(v, dict) else [np.asarray(v)]
    return {"forward": _digest(fw), "state": _digest(fields)}


def trace_digest(path):
    """SHA-256 over every array of a trace (sorted keys, shapes, dtypes, bits); not the meta,
    whose hyperparameter list may grow (Adam, STE and PMF gained ``backend`` in issue 11)."""
    _, arrays = load_trace(path)
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(_digest([arrays[k]]).encode())
    return h.hexdigest()


def main():
    for model, optimizer, dtype in TRACES:
        path = os.path.join(HERE, trace_name(model, optimizer, dtype))
        write_trace(path, model_name=model, optimizer_name=optimizer, steps=TINY_STEPS, dtype=dtype)
        with np.load(path, allow_pickle=False) as z:              # the same entries, deflated
            arrays = {k: z[k] for k in z.files}
        np.savez_compressed(path, **arrays)
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, optimizer, dtype in DIGEST_TRACES:
            path = os.path.join(tmp, trace_name(model, optimizer, dtype))
            write_trace(path, model_name=model, optimizer_name=optimizer, steps=STEPS, dtype=dtype)
            digests[trace_name(model, optimizer, dtype)] = trace_digest(path)
    with open(os.path.join(HERE, "traces.json"), "w") as fh:
        json.dump(digests, fh, indent=1, sort_keys=True)
        fh.write("\n")
    digests = {name: kernel_digests(name) for name in KERNEL_CASES}
    with open(os.path.join(HERE, "kernels.json"), "w") as fh:
        json.dump(digests, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(json.dumps(digests, indent=1))


if __name__ == "__main__":
    main()
