"""refbinn against the independent PyTorch implementation in validate/ (needs torch).

The same checks as ``python -m validate``, with shorter trajectories, plus
negative controls showing that each comparison can fail.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, strategies as st  # noqa: E402

from refbinn.nn.conv import Conv2d  # noqa: E402
from refbinn.nn.pool import MaxPool2d  # noqa: E402
from validate import interop, layers, paper, torch_ref as tr, trajectories  # noqa: E402
from validate.common import TOL, max_dev  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore:Using padding='same'")]
torch.set_num_threads(1)
TEST_STEPS = 6


# -- layers and losses -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(layers.CASES))
def test_layer_matches_torch(name, dtype):
    pairs = layers.CASES[name](np.dtype(dtype), np.random.default_rng(layers.SEED))
    d, worst = max_dev(pairs)
    assert d <= TOL[np.dtype(dtype)], f"{name}: deviation {d:.3e} in {worst}"


@given(cin=st.integers(1, 3), cout=st.integers(1, 3), k=st.integers(1, 4), stride=st.integers(1, 3),
       pad=st.integers(0, 2), h=st.integers(4, 9), w=st.integers(4, 9))
def test_conv_shapes_match_torch(cin, cout, k, stride, pad, h, w):
    layer = Conv2d(cin, cout, kernel_size=k, stride=stride, padding=pad, bias=True)
    rng = np.random.default_rng(0)
    params, _ = layer.init(rng, np.float64)
    x = rng.standard_normal((2, cin, h, w))
    pairs = layers.compare_layer(layer, x, params, {}, True, lambda xt, pt, s: (
        tr.conv2d(xt, pt["weight"], pt["bias"], stride=stride, padding=pad), {}))
    assert max_dev(pairs)[0] <= 1e-10


@given(k=st.integers(1, 3), stride=st.integers(1, 3), h=st.integers(3, 8), w=st.integers(3, 8),
       ties=st.booleans())
def test_pool_shapes_match_torch(k, stride, h, w, ties):
    x = np.random.default_rng(1).standard_normal((2, 2, h, w))
    x = np.round(x) if ties else x
    pairs = layers.compare_layer(MaxPool2d(k, stride), x, {}, {}, True,
                                 lambda xt, pt, s: (tr.max_pool2d(xt, k, stride), {}))
    assert max_dev(pairs)[0] <= 1e-15        # overlapping windows add in another order


def test_layer_check_can_fail():
    """A torch twin with another BN momentum, or another dropout mask, is caught."""
    from refbinn.nn import BatchNorm, Dropout
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3))
    state = {"running_mean": np.zeros(3), "running_var": np.ones(3)}

    def bn_wrong(xt, pt, st_):
        y, rm, rv = tr.batch_norm(xt, st_["running_mean"], st_["running_var"], train=True,
                                  momentum=0.2, eps=1e-5)
        return y, {"running_mean": rm, "running_var": rv}
    pairs = layers.compare_layer(BatchNorm(3, affine=False, momentum=0.1), x, {}, state, True, bn_wrong)
    assert max_dev(pairs)[0] > 1e-3

    keep = torch.from_numpy(np.random.default_rng(99).random((8, 3), dtype=np.float32) >= 0.5)
    pairs = layers.compare_layer(Dropout(0.5), x, {}, {}, True,
                                 lambda xt, pt, st_: (tr.dropout(xt, keep, 0.5), {}))
    assert max_dev(pairs)[0] > 0.1


# -- trajectories -----------------------------------------------------------------------
@pytest.mark.parametrize("name", list(trajectories.cases()))
def test_trajectory_matches_torch(name):
    arch, factory, dtype, tol, forced = trajectories.cases()[name]
    d, note = trajectories.run_trajectory(arch, factory(), dtype, forced=forced, steps=TEST_STEPS)
    assert d <= tol, f"{name}: {d:.3e} ({note})"


class _WrongLag(trajectories.Bayes):
    """refbinn 'official', torch side stepping with 'exact' numerics (no lag, no 1e-10)."""

    def torch_update(self, ts, grads, us):
        self.numerics = "exact"
        try:
            return super().torch_update(ts, grads, us)
        finally:
            self.numerics = "official"


class _WrongAdam(trajectories.Plain):
    def torch_update(self, ts, grads, us):
        return tr.ste_adam_step(ts, grads[0], lr=self.hp["lr"], betas=(0.9, 0.99))


def test_trajectory_check_can_fail():
    hp = dict(tau=1.0, lr=2e-2, samples=1, lam_init=1.5, N=trajectories.N_DATA, numerics="official",
              dtype="float64")
    d, _ = trajectories.run_trajectory("mlp", _WrongLag(**hp), np.float64, steps=3)
    assert d > 1e-6
    d, _ = trajectories.run_trajectory("cnn", _WrongAdam("ste", lr=1e-2), np.float64, steps=3)
    assert d > 1e-6


def test_official_mu_lags_in_torch_reference():
    """The reference itself: after step t the official state holds tanh(lam_{t-1})."""
    lam = torch.tensor([1.0, -2.0], dtype=torch.float64)
    s = tr.bayesbinn_init(lam)
    g = [torch.tensor([0.3, -0.1], dtype=torch.float64)]
    u = [torch.tensor([0.4, 0.7], dtype=torch.float64)]
    s1 = tr.bayesbinn_step(s, g, u, lr=0.1, beta=0.0, tau=1.0, n_train=10, numerics="official")
    s2 = tr.bayesbinn_step(s1, g, u, lr=0.1, beta=0.0, tau=1.0, n_train=10, numerics="official")
    assert torch.equal(s1["mu"], torch.tanh(lam)) and torch.equal(s2["mu"], torch.tanh(s1["lam"]))
    e1 = tr.bayesbinn_step(s, g, u, lr=0.1, beta=0.0, tau=1.0, n_train=10, numerics="exact")
    assert torch.equal(e1["mu"], torch.tanh(e1["lam"]))
    # beta = 0, reweight 1: the paper's lam <- (1 - lr) lam - lr (s g - lam0)
    sc = tr.concrete_scale_exact(lam, u[0], 1.0, 10)
    assert torch.allclose(e1["lam"], 0.9 * lam - 0.1 * sc * g[0], rtol=1e-14)


# -- interop and the paper table ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(interop.CASES))
def test_state_dict_in_torch_module(name, dtype):
    d, worst = max_dev(interop.CASES[name](np.dtype(dtype)))
    assert d <= TOL[np.dtype(dtype)], f"{name}: {d:.3e} in {worst}"


def _result(tmp_path, fname, dataset, optimizer, acc, **settings):
    (tmp_path / fname).write_text(json.dumps({
        "name": fname, "settings": {"dataset": dataset, "optimizer": optimizer, "epochs": 30,
                                    "optimizer_settings": settings},
        "summary": {"test_acc_mode_at_best_val": acc, "test_acc_mode_last": acc,
                    "test_acc_mean_last": acc - 0.001}}))


def test_paper_table_reads_results(tmp_path):
    _result(tmp_path, "a.json", "mnist", "bayesbinn", 0.985, lr=1e-4, tau=1e-10, numerics="official")
    _result(tmp_path, "b.json", "mnist", "bayesbinn", 0.987, lr=1e-4, tau=1e-10, numerics="official")
    _result(tmp_path, "c.json", "mnist", "bayesbinn", 0.9, lr=1e-4, tau=1e-3, numerics="official")
    _result(tmp_path, "d.json", "mnist", "ste", 0.98, lr=1e-2)
    (tmp_path / "broken.json").write_text("{")
    rows = {r.name: r for r in paper.run(str(tmp_path))}
    mode = rows["Table 2 mnist BayesBiNN (mode) [official]"]
    assert mode.passed and "98.60 +- 0.14 (n=2, 30 ep" in mode.note and "diff -0.26 points" in mode.note
    assert "98.50" in rows["Table 2 mnist BayesBiNN (mean) [official]"].note
    assert "refbinn 90.00" in rows["MNIST tau sweep tau=0.001 (lr 1e-4) [official]"].note
    assert "98.00" in rows["Table 2 mnist STE Adam"].note
    assert rows["Table 2 cifar10 Bop"].label == "not run" and rows["Table 2 cifar10 Bop"].passed
    bad = [r for r in rows.values() if not r.passed]
    assert len(bad) == 1 and "broken.json" in bad[0].name
    assert "not run" in paper.format_paper(str(tmp_path))


def test_main_prints_one_table(capsys, tmp_path):
    from validate.__main__ import main
    assert main(["--only", "interop,paper", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "interop" in out and "not run" in out and "0 failed" in out


@pytest.mark.parametrize("optimizer", ["pmf", "vispa"])
def test_torch_trace_refuses_pmf_and_vispa_traces(optimizer, tmp_path, capsys):
    """torch_ref.py has no PMF or VISPA step: one line and exit 2, not a bare KeyError: 'PMF'."""
    from refbinn.train.trace import write_trace
    from validate import torch_trace
    ref, out = tmp_path / "ref.npz", tmp_path / "torch.npz"
    write_trace(ref, model_name="mlp", optimizer_name=optimizer, steps=1)
    capsys.readouterr()
    assert torch_trace.main([str(ref), str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "python -m validate.torch_trace: error: no torch replay for pmf / vispa traces\n"
    assert not out.exists()
    with pytest.raises(NotImplementedError, match="no torch replay for pmf / vispa traces"):
        torch_trace.replay(ref)


@pytest.mark.parametrize("args, says", [
    (["--only", ","], "--only: no group given"),                       # ran nothing and passed
    (["--only", "trajectories", "--steps", "0"], "--steps must be an integer in [1, inf), got 0"),   # 0 steps: PASS
    (["--only", "paper", "--results", ""], "--results is empty"),
    (["--only", "paper", "--results", "FILE"], "--results FILE is a file"),
])
def test_main_refuses_options_that_would_check_nothing(args, says, tmp_path, capsys):
    from validate.__main__ import main
    (tmp_path / "FILE").write_text("{}")
    with pytest.raises(SystemExit) as e:
        main([a.replace("FILE", str(tmp_path / "FILE")) for a in args])
    assert e.value.code == 2
    assert says.replace("FILE", str(tmp_path / "FILE")) in capsys.readouterr().err


def test_torch_trace_refuses_its_reference_as_out_and_names_bad_files(tmp_path, capsys):
    """out = reference overwrote the reference; a folder or '' failed after the replay; a missing or
    damaged reference was a traceback."""
    from refbinn.train.trace import write_trace
    from validate import torch_trace
    ref = tmp_path / "ref.npz"
    write_trace(ref, model_name="mlp", optimizer_name="bayesbinn-official", steps=1)
    before = ref.read_bytes()
    (tmp_path / "cut.npz").write_bytes(before[:500])
    capsys.readouterr()
    for args, says in (([ref, ref], f"out {ref} is the input {ref}"), ([ref, tmp_path], "is a folder"),
                       ([ref, ""], "out is empty"), ([tmp_path / "none.npz", tmp_path / "o.npz"], "none.npz"),
                       ([tmp_path / "cut.npz", tmp_path / "o.npz"], "cut.npz: not a valid trace")):
        assert torch_trace.main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m validate.torch_trace: error: ") and says in err and err.count("\n") == 1
    assert ref.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["cut.npz", "ref.npz"]


def test_paper_table_counts_a_repeated_run_once(tmp_path):
    """Two files of one run (the seed-0 command re-run on another CPU) are one seed in the
    mean +- std, not two; a second seed still counts."""
    def result(seed, acc):
        return {"settings": {"dataset": "mnist", "optimizer": "ste", "seed": seed, "epochs": 25},
                "summary": {"test_acc_mode_at_best_val": acc}}
    for name, r in (("a_seed0.json", result(0, 0.98)), ("b_seed0_again.json", result(0, 0.97)),
                    ("c_seed1.json", result(1, 0.99))):
        (tmp_path / name).write_text(json.dumps(r))
    runs, errors, _ = paper.load_results(str(tmp_path))
    row = next(r for r in paper.paper_rows(runs) if r["label"] == "Table 2 mnist STE Adam")
    assert not errors and len(runs) == 3
    assert row["n"] == 2 and row["ours"] == pytest.approx(98.5)      # it was n = 3, 98.33
