"""A port written from the documentation alone reproduces refbinn's BayesBiNN steps bit for bit.

``_port_step`` below follows docs/trace_format.md ("BayesBiNN": the equations in refbinn's
order of operations, scalars in brackets rounded once from float64) with nothing of refbinn
but its public noise stream (``refbinn.noise.uniform``) and elementary functions
(``refbinn.elementary``). Replayed free-running from a trace's step 0, with the trace's
gradients, it must give every u, w, scale, lambda, momentum and mu of the trace exactly;
its own (partial) trace then matches with ``refbinn check-trace --partial --rtol 0``.
The recipe of the float32 functions in ``refbinn.elementary``'s docstring is checked the
same way: written out here from the docstring, it gives refbinn's bits.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from refbinn import elementary as E
from refbinn.noise import NoiseKey, uniform
from refbinn.train.trace import load_trace, save_trace, write_trace
from refbinn.train.trace_check import cli_check_trace


def _port_step(lam, m, mu, grads, us, hp, t):
    """One step of one parameter as docs/trace_format.md writes it: (ws, scales, lam', m', mu')."""
    D = lam.dtype
    c = D.type                                   # [x]: computed in float64, rounded once to D
    N, tau, S = hp["N"], hp["tau"], len(grads)
    numerics = hp["numerics"]
    ws, scales, acc = [], [], None
    if us[0] is None:                            # S = 0
        ws.append(E.tanh(lam))
        g_hat = grads[0] * c(N)
    else:
        for g, u in zip(grads, us):
            delta = c(0.5) * E.log(u / (1 - u))
            z = (lam + delta) / c(tau)
            w = E.tanh(z)
            if numerics == "official":
                q = (1 - w * w + c(1e-10)) / c(tau) / (1 - mu * mu + c(1e-10))
                s, term = q * c(N), q * g
            else:
                log_nt = math.log(N / tau) if 0 < N / tau < math.inf else math.log(N) - math.log(tau)
                cap = math.log(float(np.finfo(D).max)) - 2 * math.log(2.0) - 0.01
                with np.errstate(over="ignore", under="ignore"):
                    e = np.minimum(c(log_nt) + 2 * (np.abs(lam) - np.abs(z)), c(cap))
                    r = (1 + E.exp(-2 * np.abs(lam))) / (1 + E.exp(-2 * np.abs(z)))
                    s = E.exp(e) * (r * r)
                if numerics == "exact-clipped":
                    s = np.minimum(s, c(N / tau))
                term = s * g
            ws.append(w)
            scales.append(s)
            acc = term if acc is None else acc + term
        g_hat = acc * c(N / S) if numerics == "official" else acc / c(S)
    beta = hp["beta"]
    m_new = c(beta) * m + c(1 - beta) * (g_hat + c(hp["reweight"]) * (lam - c(hp["lam0"])))
    lam_new = lam - c(hp["lr"]) * m_new / c(1 - beta ** t)
    mu_new = E.tanh(lam) if numerics == "official" else None
    return ws, scales, lam_new, (m_new if beta != 0 else m), mu_new


def _replay(meta, arrays):
    """Free-running replay from step 0 with the trace's gradients; the port's trace arrays."""
    hp, seed = meta["hparams"], int(arrays["step0000/seed"])
    S = hp["samples"]                            # meta["samples"] counts passes: 1 when S = 0
    names = meta["param_names"]
    state = {f: {p: arrays[f"step0000/{f}/{p}"] for p in names}
             for f in ("lam", "momentum", "mu") if f"step0000/{f}/{names[0]}" in arrays}
    mine = {k: v for k, v in arrays.items() if k.startswith("step0000/")}
    for t in range(1, meta["steps"] + 1):
        st = f"step{t:04d}/"
        for p in names:
            lam = state["lam"][p]
            us = [uniform(NoiseKey(seed, t - 1, S), j, p, lam.shape, lam.dtype) for j in range(S)] or [None]
            grads = [arrays[f"{st}sample{j}/grad/{p}"] for j in range(max(S, 1))]
            mu = state["mu"][p] if "mu" in state else None
            ws, scales, lam_new, m_new, mu_new = _port_step(lam, state["momentum"][p], mu, grads, us, hp, t)
            for j in range(S):
                mine[f"{st}sample{j}/u/{p}"] = us[j]
                mine[f"{st}sample{j}/scale/{p}"] = scales[j]
            for j, w in enumerate(ws):
                mine[f"{st}sample{j}/w/{p}"] = w
            state["lam"][p], state["momentum"][p] = lam_new, m_new
            mine[f"{st}lam/{p}"], mine[f"{st}momentum/{p}"] = lam_new, m_new
            if mu is not None:
                state["mu"][p] = mine[f"{st}mu/{p}"] = mu_new
    return mine


CASES = [                                        # (optimizer, dtype, hparams)
    ("bayesbinn-official", "float32", None),     # the authors' MNIST settings: S = 1, beta 0, tau 1e-10
    ("bayesbinn-official", "float64", None),
    ("bayesbinn-official", "float32", {"samples": 3, "tau": 0.7, "beta": 0.9, "lam_init": 1.0}),
    ("bayesbinn-official", "float64", {"samples": 3, "tau": 0.7, "beta": 0.9, "lam_init": 1.0}),
    ("bayesbinn-exact", "float32", None),        # tau 1, beta 0.9, S = 1
    ("bayesbinn-exact", "float64", None),
    ("bayesbinn-exact", "float32", {"samples": 3, "tau": 0.3, "beta": 0.0, "reweight": 0.5}),
    ("bayesbinn-exact", "float64", {"samples": 3, "tau": 0.3, "beta": 0.0, "reweight": 0.5}),
    ("bayesbinn-exact", "float32", {"samples": 2, "tau": 0.05, "numerics": "exact-clipped"}),
    ("bayesbinn-exact", "float64", {"samples": 0}),
]


@pytest.mark.parametrize("optimizer, dtype, hparams", CASES)
def test_a_port_from_the_docs_matches_the_trace_bit_for_bit(optimizer, dtype, hparams, tmp_path):
    path = tmp_path / "trace.npz"
    write_trace(path, model_name="mlp", optimizer_name=optimizer, steps=3, seed=5, dtype=dtype,
                hparams=hparams)
    meta, arrays = load_trace(path)
    mine = _replay(meta, arrays)
    compared = [k for k in mine if not k.startswith("step0000/")]
    assert len(compared) >= 3 * len(meta["param_names"]) * 3
    for k in compared:
        a, b = mine[k], arrays[k]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        assert np.array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")), k   # the same bits
    if hparams and hparams.get("numerics") == "exact-clipped":     # the clip acts in this case
        assert any((arrays[k] == np.float32(meta["hparams"]["N"] / meta["hparams"]["tau"])).any()
                   for k in compared if "/scale/" in k)
    save_trace(tmp_path / "port.npz", meta, mine)
    args = argparse.Namespace(mine=str(tmp_path / "port.npz"), theirs=str(path), rtol=0.0, atol=0.0,
                              partial=True)
    assert cli_check_trace(args) == 0
    args.partial = False                         # the masks, outputs, gradients, BN state are missing
    assert cli_check_trace(args) == 1


def test_the_port_fails_where_the_docs_order_is_not_followed(tmp_path):
    """The replay is sensitive: 1/S multiplied instead of dividing by S, or the scalar 1 - beta
    rounded from two float32 values, changes bits (so the matches above are evidence)."""
    path = tmp_path / "trace.npz"
    write_trace(path, model_name="mlp", optimizer_name="bayesbinn-exact", steps=2, seed=5, dtype="float32",
                hparams={"samples": 3, "tau": 0.7, "beta": 0.9})
    meta, arrays = load_trace(path)
    lam = arrays["step0000/lam/fc1.weight"]
    hp = dict(meta["hparams"])
    us = [uniform(NoiseKey(int(arrays["step0000/seed"]), 0, 3), j, "fc1.weight", lam.shape, lam.dtype)
          for j in range(3)]
    grads = [arrays[f"step0001/sample{j}/grad/fc1.weight"] for j in range(3)]
    m = arrays["step0000/momentum/fc1.weight"]
    lam_new = _port_step(lam, m, None, grads, us, hp, 1)[2]
    assert np.array_equal(lam_new, arrays["step0001/lam/fc1.weight"])
    f32 = np.float32
    _, scales, _, _, _ = _port_step(lam, m, None, grads, us, hp, 1)
    acc = scales[0] * grads[0] + scales[1] * grads[1] + scales[2] * grads[2]
    by_inverse = acc * f32(1 / 3)
    by_division = acc / f32(3)
    assert not np.array_equal(by_inverse, by_division)
    g_hat = by_division
    naive_1mb = f32(1) - f32(0.9)                 # 0.100000024, not f32(0.1) = 0.1
    assert naive_1mb != f32(1 - 0.9)
    m_naive = f32(0.9) * m + naive_1mb * (g_hat + f32(1.0) * (lam - f32(0.0)))
    lam_naive = lam - f32(hp["lr"]) * m_naive / f32(1 - 0.9)
    assert not np.array_equal(lam_naive, arrays["step0001/lam/fc1.weight"])


# -- refbinn.elementary's float32 recipe, written out from its docstring -------------------------
F = np.float32


def _consts():
    ln2 = math.log(2.0)
    ln2_hi = F(round(ln2 * 2.0 ** 12) / 2.0 ** 12)
    return dict(LN2_HI=ln2_hi, LN2_LO=F(ln2 - float(ln2_hi)), LOG2E=F(1 / ln2), SQRT2=F(math.sqrt(2.0)),
                EXP_OVER=F(math.log(float(np.finfo(F).max))), EXP_UNDER=F(-87.33),
                C={k: F(1 / math.factorial(k)) for k in range(2, 11)}, A={k: F(1 / k) for k in (3, 5, 7, 9)})


K = _consts()


def _exp32(x):
    C = K["C"]
    with np.errstate(over="ignore", invalid="ignore"):
        xc = np.minimum(np.maximum(x, K["EXP_UNDER"]), K["EXP_OVER"])
        k = np.floor(xc * K["LOG2E"] + F(0.5))
        r = (xc - k * K["LN2_HI"]) - k * K["LN2_LO"]
        p = F(1) + r * (F(1) + r * (C[2] + r * (C[3] + r * (C[4] + r * (C[5] + r * (C[6] + r * C[7]))))))
        k = np.nan_to_num(k).astype(np.int32)
        y = np.where(k == 128, (p * np.ldexp(F(1), 127).astype(F)) * F(2), p * np.ldexp(F(1), np.minimum(k, 127)).astype(F))
    y = np.where(x < K["EXP_UNDER"], F(0), np.where(x > K["EXP_OVER"], F(np.inf), y))
    return np.where(np.isnan(x), x, y).astype(F)


def _log32(x):
    A = K["A"]
    sub = (x > 0) & (x < np.finfo(F).tiny)
    xs = np.where(sub, x * F(2.0 ** 23), x).astype(F)
    mant, ex = np.frexp(xs)                       # xs = mant * 2**ex, mant in [0.5, 1)
    m = (mant * F(2)).astype(F)
    e = ex - 1 - np.where(sub, 23, 0)
    big = m > K["SQRT2"]
    m = np.where(big, m * F(0.5), m)
    e = np.where(big, e + 1, e).astype(F)
    f = m - F(1)
    s = f / (F(2) + f)
    s2 = s * s
    p = F(2) * s + F(2) * s * s2 * (A[3] + s2 * (A[5] + s2 * (A[7] + s2 * A[9])))
    y = e * K["LN2_HI"] + (e * K["LN2_LO"] + p)
    y = np.where(x == 0, F(-np.inf), np.where(x < 0, F(np.nan), np.where(x == np.inf, F(np.inf), y)))
    return np.where(np.isnan(x), x, y).astype(F)


def _tanh32(x):
    C = K["C"]
    y = np.minimum(F(2) * np.abs(x), F(40))
    t = y * (F(1) + y * (C[2] + y * (C[3] + y * (C[4] + y * (C[5] + y * (C[6] + y * (C[7] + y * (C[8] + y * (
        C[9] + y * C[10])))))))))
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.where(y < 1, t / (t + F(2)), F(1) - F(2) / (_exp32(y) + F(1)))
    return np.copysign(q, x).astype(F)


def test_the_float32_recipe_in_the_docstring_gives_refbinns_bits():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32).view(F)   # every kind of float32
    grid = np.linspace(-95, 95, 200_001, dtype=F)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 1e-40, np.finfo(F).tiny, 88.72284,
                        88.7229, -87.33, -87.34, 0.5, 1.0, 2.0, np.sqrt(2.0)], F)
    x = np.concatenate([bits, grid, special])
    for mine, theirs in ((_exp32, E.exp), (_log32, E.log), (_tanh32, E.tanh)):
        with np.errstate(all="ignore"):
            a, b = mine(x), theirs(x)
        same = (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
        assert same.all(), (mine.__name__, x[~same][:5], a[~same][:5], b[~same][:5])


def test_float64_is_the_c_library():
    x = np.random.default_rng(1).uniform(-30, 30, 5000)
    for f, g in ((E.exp, math.exp), (E.tanh, math.tanh)):
        assert np.array_equal(f(x), np.array([g(v) for v in x]))
    xp = np.abs(x) + 1e-3
    assert np.array_equal(E.log(xp), np.array([math.log(v) for v in xp]))


def test_trace_samples_and_hparams_options_and_check_trace_partial(tmp_path, capsys):
    """`refbinn trace --samples S --hparams JSON` reaches the optimizer (meta records it); bad
    JSON, a non-object, a disagreeing S and an argument the optimizer lacks are one-line errors
    (exit 2, no file). `check-trace --partial` lets MINE leave tensors out, but not add any or
    differ in one."""
    from refbinn.cli import main
    out = tmp_path / "t.npz"
    assert main(["trace", "--optimizer", "bayesbinn-exact", "--samples", "2", "--hparams", '{"tau": 0.7}',
                 "--steps", "2", "--out", out]) == 0
    meta, arrays = load_trace(out)
    assert meta["hparams"]["samples"] == 2 and meta["hparams"]["tau"] == 0.7 and meta["samples"] == 2
    assert "step0002/sample1/u/fc1.weight" in arrays
    capsys.readouterr()
    bad = tmp_path / "bad.npz"
    for argv, says in ((["--hparams", "[1]"], "--hparams must be a JSON object, got a list"),
                       (["--hparams", "{tau: 1}"], "--hparams must be a JSON object, e.g."),
                       (["--samples", "2", "--hparams", '{"samples": 3}'], "--samples 2 and --hparams samples 3 disagree"),
                       (["--optimizer", "ste", "--samples", "2"], "unexpected keyword argument 'samples'"),
                       (["--hparams", '{"tau": -1}'], "tau")):
        assert main(["trace", *argv, "--out", bad]) == 2
        assert says in capsys.readouterr().err
        assert not bad.exists()
    # --partial: the port (MINE) holds a subset of THEIRS
    port = {k: v for k, v in arrays.items() if "/lam/" in k or k.startswith("step0000/")}
    save_trace(tmp_path / "port.npz", meta, port)
    argv = ["check-trace", tmp_path / "port.npz", out, "--rtol", "0"]
    assert main(argv) == 1 and "tensor(s) only in theirs" in capsys.readouterr().out
    assert main(argv + ["--partial"]) == 0
    assert "of theirs not in mine, e.g." in capsys.readouterr().out
    extra = dict(port, **{"step0001/extra": np.zeros(2)})
    save_trace(tmp_path / "extra.npz", meta, extra)
    assert main(["check-trace", tmp_path / "extra.npz", out, "--partial"]) == 1
    assert "1 tensor(s) only in mine, e.g. step0001/extra" in capsys.readouterr().out
    off = dict(port)
    lam = off["step0002/lam/fc2.weight"].copy()
    lam.flat[3] = np.nextafter(lam.flat[3], np.inf)           # one ulp
    off["step0002/lam/fc2.weight"] = lam
    save_trace(tmp_path / "off.npz", meta, off)
    assert main(["check-trace", tmp_path / "off.npz", out, "--partial", "--rtol", "0"]) == 1
    said = capsys.readouterr().out
    assert "first divergence" in said and "lam/fc2.weight" in said


def test_trace_dtype_is_not_an_optimizer_argument(tmp_path):
    """--hparams '{"dtype": ...}' made a trace whose meta said float32 and whose tensors were
    float64 (check-trace then used the float32 tolerance): refused, naming --dtype."""
    with pytest.raises(ValueError, match="'dtype' is the trace's own setting .*--dtype"):
        write_trace(tmp_path / "t.npz", model_name="tiny", optimizer_name="bayesbinn-exact", steps=1,
                    dtype="float32", hparams={"dtype": "float64"})
    assert not (tmp_path / "t.npz").exists()
