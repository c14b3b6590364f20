"""Golden traces (refbinn/trace.py): writing, comparing, and the torch reference replaying them."""
import argparse

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refbinn.errors import FileFormatError
from refbinn.nn import Dense, Sequential, SignActivation
from refbinn.train.trace import (FORMAT, OPTIMIZERS, cli_trace, compare_traces, default_rtol,
                           describe_layers, key_differences, load_trace, make_optimizer,
                           save_trace, write_trace)
from refbinn.train.trace_check import cli_check_trace

STEPS = 5


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """path -> written lazily, one per (model, optimizer, dtype)."""
    root, cache = tmp_path_factory.mktemp("traces"), {}

    def get(model="mlp", optimizer="bayesbinn-exact", dtype="float64", steps=STEPS):
        key = (model, optimizer, dtype, steps)
        if key not in cache:
            path = root / f"{model}_{optimizer}_{dtype}_{steps}.npz"
            write_trace(path, model_name=model, optimizer_name=optimizer, steps=steps, dtype=dtype)
            cache[key] = path
        return cache[key]
    return get


def _perturb(arrays, key, i, amount):
    """A copy of ``arrays`` with entry i of ``key`` changed: floats by ``amount`` times the
    tensor's largest magnitude (or by ``amount`` if it is all zeros), bools flipped, ints + 1."""
    out = dict(arrays)
    v = arrays[key].copy()
    flat = v.reshape(-1)
    if v.dtype == bool:
        flat[i] = not flat[i]
    elif v.dtype.kind in "iu":
        flat[i] += 1
    else:
        scale = float(np.max(np.abs(v))) or 1.0
        flat[i] += v.dtype.type(amount * scale)
    out[key] = v
    return out


# -- writing ----------------------------------------------------------------------------------
def test_trace_matches_itself_and_is_deterministic(traces, tmp_path):
    a = traces("mlp", "bayesbinn-official")
    b = tmp_path / "again.npz"
    write_trace(b, model_name="mlp", optimizer_name="bayesbinn-official", steps=STEPS)
    assert compare_traces(a, b) is None
    ma, xa = load_trace(a)
    mb, xb = load_trace(b)
    assert ma == mb and list(xa) == list(xb)
    for k in xa:
        assert xa[k].dtype == xb[k].dtype and np.array_equal(xa[k], xb[k]), k


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_trace_contents(traces, model, optimizer):
    meta, x = load_trace(traces(model, optimizer))
    assert meta["version"] == 1 and meta["steps"] == STEPS and meta["dtype"] == "float64"
    names = meta["param_names"]
    bayes = optimizer.startswith("bayesbinn")
    for t in range(STEPS + 1):
        pre = f"step{t:04d}"
        for f in meta["state_fields"]:
            if f"{pre}/{f}/{names[0]}" in x:       # per-parameter fields end in the weight shape
                for k in names:                    # (PMF's u: (2,) + shape; VISPA's Z: (K,) + shape)
                    shape = tuple(meta["param_shapes"][k])
                    assert x[f"{pre}/{f}/{k}"].shape[x[f"{pre}/{f}/{k}"].ndim - len(shape):] == shape
        if optimizer != "adam":         # binary evaluation weights
            assert all(set(np.unique(x[f"{pre}/eval_w/{k}"])) <= {-1.0, 1.0} for k in names)
        if t == 0:
            continue
        assert x[f"{pre}/x"].shape == (meta["batch_size"], *meta["in_shape"])
        assert x[f"{pre}/y"].dtype == np.int64
        assert (f"{pre}/sample0/u/{names[0]}" in x) == (bayes or optimizer == "vispa")
        assert (f"{pre}/sample0/scale/{names[0]}" in x) == bayes
        for d in meta["dropout_layers"]:
            mask = x[f"{pre}/sample0/mask/{d}"]
            assert mask.dtype == bool and 0 < mask.mean() < 1
        assert np.isfinite(x[f"{pre}/sample0/loss"])
    if bayes:      # u strictly inside (0, 1); lam moved
        u = x[f"step0001/sample0/u/{names[0]}"]
        assert u.min() > 0 and u.max() < 1
        assert not np.array_equal(x[f"step0000/lam/{names[0]}"], x[f"step{STEPS:04d}/lam/{names[0]}"])


def test_float32_trace_keeps_dtype(traces):
    meta, x = load_trace(traces("mlp", "bayesbinn-official", "float32"))
    assert meta["hparams"]["dtype"] == "float32"
    for k, v in x.items():
        if v.dtype.kind == "f" and not k.endswith("/loss"):
            assert v.dtype == np.float32, k


def test_bad_arguments(tmp_path):
    p = tmp_path / "t.npz"
    with pytest.raises(ValueError, match="model"):
        write_trace(p, model_name="resnet", optimizer_name="ste", steps=1)
    with pytest.raises(ValueError, match="optimizer"):
        write_trace(p, model_name="mlp", optimizer_name="sgd", steps=1)
    with pytest.raises(ValueError, match="steps"):
        write_trace(p, model_name="mlp", optimizer_name="ste", steps=0)
    with pytest.raises(ValueError, match="seed"):
        write_trace(p, model_name="mlp", optimizer_name="ste", steps=1, seed=-1)
    with pytest.raises(ValueError, match="dtype"):
        write_trace(p, model_name="mlp", optimizer_name="ste", steps=1, dtype="float16")
    assert not p.exists()


def test_make_optimizer_applies_the_overrides():
    cfg = make_optimizer("bayesbinn-exact", 64, "float32", {"lr": 0.5, "samples": 3}).config()
    assert (cfg["lr"], cfg["samples"], cfg["tau"], cfg["N"]) == (0.5, 3, 1.0, 64.0)
    assert np.dtype(cfg["dtype"]) == np.float32


def test_describe_layers_names_an_unsupported_layer():
    model = Sequential(Dense(4, 3, name="fc1"), SignActivation(name="sign1"))
    with pytest.raises(ValueError, match="layer 'sign1' of type SignActivation is not supported"):
        describe_layers(model)


def test_load_trace_refuses_another_format_and_text_entries(tmp_path):
    p = tmp_path / "t.npz"
    save_trace(p, {"format": "refbinn-checkpoint"}, {"step0000/x": np.zeros(2)})
    with pytest.raises(FileFormatError, match="its meta has format 'refbinn-checkpoint'"):
        load_trace(p)
    save_trace(p, {"format": FORMAT}, {"step0000/x": np.zeros(2), "step0000/name": np.array(["fc1"])})
    with pytest.raises(FileFormatError, match="entry 'step0000/name' has dtype <U3"):
        load_trace(p)


# -- comparing -------------------------------------------------------------------------------
@given(data=st.data())
def test_one_perturbed_value_is_found(traces, data):
    """Any entry of any tensor, changed by 1e-6 of the tensor's scale (1000x the float64
    tolerance), is reported at its step, tensor and index, with both values."""
    meta, x = load_trace(traces("mlp", "bayesbinn-exact"))
    key = data.draw(st.sampled_from(sorted(k for k in x if x[k].size)))
    i = data.draw(st.integers(0, x[key].size - 1))
    y = _perturb(x, key, i, 1e-6)
    d = compare_traces((meta, x), (meta, y))
    assert d is not None and d.key == key and d.index == i and d.reason == "value"
    assert d.step == int(key[4:8])
    assert d.mine == x[key].reshape(-1)[i].item() and d.theirs == y[key].reshape(-1)[i].item()
    if x[key].dtype.kind == "f" and np.any(x[key]):     # below the tolerance (1e-9 of the scale): a match
        assert compare_traces((meta, x), (meta, _perturb(x, key, i, 1e-10))) is None


def test_first_divergence_in_step_then_operation_order(traces):
    meta, x = load_trace(traces("mlp", "bayesbinn-exact"))
    y = _perturb(x, "step0004/sample0/grad/fc1.weight", 0, 1e-3)
    y = _perturb(y, "step0003/lam/fc2.weight", 5, 1e-3)          # later in step 3 than the grad ...
    y = _perturb(y, "step0003/sample0/grad/fc3.weight", 2, 1e-3)  # ... which comes first
    d = compare_traces((meta, x), (meta, y))
    assert (d.step, d.tensor, d.index) == (3, "sample0/grad/fc3.weight", 2)
    y["step0002/bn/bn1.running_var"] = x["step0002/bn/bn1.running_var"][:-1]
    d = compare_traces((meta, x), (meta, y))
    assert (d.step, d.tensor, d.reason) == (2, "bn/bn1.running_var", "shape")


def test_divergences_come_in_the_documented_order(tmp_path):
    """Every tensor of step 2 perturbed: compare_traces reports them one at a time in the order
    of operations (x, y; per pass u, w, mask, out, loss, grad, scale; the state fields; bn;
    eval_w), each group in layer order, pass 0 before pass 1."""
    path = tmp_path / "s2.npz"
    write_trace(path, model_name="tiny", optimizer_name="bayesbinn-exact", steps=2, hparams={"samples": 2})
    meta, x = load_trace(path)
    names = meta["param_names"] + meta["bn_names"] + meta["dropout_layers"]
    groups = (["x", "y"] + [f"sample{j}/{g}" for j in range(2)
                            for g in ("u", "w", "mask", "out", "loss", "grad", "scale")]
              + meta["state_fields"] + ["bn", "eval_w"])
    want = [k for g in groups for k in [g] + [f"{g}/{n}" for n in names] if f"step0002/{k}" in x]
    assert sorted(want) == sorted(k[9:] for k in x if k.startswith("step0002/"))
    y = dict(x)
    for k in want:
        y = _perturb(y, f"step0002/{k}", 0, 1e-3)
    seen = []
    while (d := compare_traces((meta, x), (meta, y))) is not None:
        seen.append(d.tensor)
        y[d.key] = x[d.key]
    assert seen == want


def _pair(a, b):
    """Two one-tensor traces holding ``a`` and ``b`` at step 1."""
    meta = {"format": FORMAT, "dtype": "float64"}
    return (meta, {"step0001/v": np.asarray(a, float)}), (meta, {"step0001/v": np.asarray(b, float)})


def test_tolerance_is_atol_plus_rtol_times_the_scale_of_both_traces():
    assert compare_traces(*_pair([1.0], [1.5]), rtol=0.0, atol=0.5) is None        # |diff| = tol matches
    assert compare_traces(*_pair([2.0], [2.875]), rtol=0.25, atol=0.5) is None     # tol 0.5 + 0.25 * 2.875
    d = compare_traces(*_pair([2.0], [3.5]), rtol=0.25, atol=0.5)
    assert (d.index, d.tol) == (0, 0.5 + 0.25 * 3.5)
    a, b = [0.0, 1.0], [1.5e-9, 2.0]        # scale 2 from b: entry 0 is within 2e-9, entry 1 is not
    for mine, theirs in ((a, b), (b, a)):
        d = compare_traces(*_pair(mine, theirs), rtol=1e-9)
        assert (d.index, d.tol) == (1, 2e-9)
    d = compare_traces(*_pair(np.zeros((2, 3)), np.zeros((3, 2))))    # the same size is not enough
    assert (d.reason, d.mine, d.theirs, d.index) == ("shape", (2, 3), (3, 2), None)


def test_default_rtol_is_tight_only_for_two_float64_traces():
    f64, f32 = {"dtype": "float64"}, {"dtype": "float32"}
    assert default_rtol(f64, f64) == 1e-9
    assert default_rtol(f64, f32) == default_rtol(f32, f64) == default_rtol(f32, f32) == 1e-4


@pytest.mark.parametrize("name,bad", [("rtol", -1e-9), ("rtol", float("inf")), ("rtol", "x"),
                                      ("atol", -1.0), ("atol", float("nan")), ("atol", None)])
def test_compare_traces_checks_its_tolerances(name, bad):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        compare_traces(*_pair([1.0], [1.0]), **{name: bad})


def test_key_differences_lists_each_side():
    (meta, a), (_, b) = _pair([1.0], [1.0])
    a["step0001/extra"], b["junk"] = np.zeros(1), np.zeros(1)
    assert key_differences((meta, a), (meta, b)) == (["step0001/extra"], ["junk"])


def test_nonfinite_values_compare_as_values(traces):
    meta, x = load_trace(traces("mlp", "ste"))
    key = "step0002/latent/fc1.weight"
    a, b = dict(x), dict(x)
    a[key], b[key] = x[key].copy(), x[key].copy()
    a[key].flat[3] = b[key].flat[3] = np.nan
    assert compare_traces((meta, a), (meta, b)) is None
    b[key] = b[key].copy()
    b[key].flat[3] = np.inf
    d = compare_traces((meta, a), (meta, b))
    assert (d.step, d.tensor, d.index) == (2, "latent/fc1.weight", 3)


def test_cli_functions(traces, tmp_path, capsys):
    out = tmp_path / "cli.npz"
    args = argparse.Namespace(model="cnn", optimizer="bop", steps=3, out=str(out), seed=1, dtype="float64")
    assert cli_trace(args) == 0 and "wrote" in capsys.readouterr().out
    check = lambda a, b: cli_check_trace(argparse.Namespace(mine=str(a), theirs=str(b), rtol=None, atol=0.0))
    assert check(out, out) == 0 and capsys.readouterr().out.startswith("match")
    meta, x = load_trace(out)
    bad = tmp_path / "bad.npz"
    save_trace(bad, meta, _perturb(x, "step0002/m/fc2.weight", 4, 1e-3))
    assert check(out, bad) == 1
    text = capsys.readouterr().out
    assert "step 2, tensor m/fc2.weight, index 4" in text


# -- the torch reference writes a trace that matches ----------------------------------------------
@pytest.fixture(scope="module")
def torch_trace():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from validate import torch_trace
    return torch_trace


# float64 free-running: torch evolves from the initial state on its own. The CNN under the
# official numerics is teacher-forced: 1 - mu**2 cancels (mu within ~1e-9 of +-1) and one ulp
# of tanh (numpy's and torch's differ) moves the scale by ~1e-7 (docs/trace_format.md).
# float32 is teacher-forced at the default 1e-4 (free-running float32 drifts apart).
TORCH_OPTIMIZERS = ("bayesbinn-exact", "bayesbinn-official", "ste", "bop", "adam")   # validate/torch_ref.py
TORCH_CASES = [(m, o, "float64", False) for m in ("mlp", "cnn") for o in TORCH_OPTIMIZERS
               if (m, o) != ("cnn", "bayesbinn-official")]
TORCH_CASES += [("cnn", "bayesbinn-official", "float64", True)]
TORCH_CASES += [(m, o, "float32", True) for m in ("mlp", "cnn")
                for o in ("bayesbinn-exact", "bayesbinn-official", "ste")]


@pytest.mark.torch
@pytest.mark.parametrize("model,optimizer,dtype,forced", TORCH_CASES)
def test_torch_trace_matches(traces, torch_trace, model, optimizer, dtype, forced):
    ref = traces(model, optimizer, dtype)
    mine = load_trace(ref)
    theirs = torch_trace.replay(mine, forced=forced)
    assert list(theirs[1]) and set(theirs[1]) == set(mine[1])
    d = compare_traces(mine, theirs)
    assert d is None, f"{model} {optimizer} {dtype}: {d}"


@pytest.mark.torch
def test_torch_trace_detects_a_wrong_update(traces, torch_trace):
    """Negative control: torch replaying with lr 1% off diverges in lam at step 1."""
    meta, x = load_trace(traces("mlp", "bayesbinn-exact"))
    wrong = dict(meta, hparams=dict(meta["hparams"], lr=meta["hparams"]["lr"] * 1.01))
    d = compare_traces((meta, x), torch_trace.replay((wrong, x)))
    assert d is not None and d.step == 1 and d.tensor.startswith("lam/"), d


@pytest.mark.torch
@pytest.mark.parametrize("optimizer,dtype", [("bayesbinn-exact", "float64"), ("bayesbinn-official", "float32")])
def test_trace_port_materialises_the_noise_and_check_trace_round_trips(traces, torch_trace, tmp_path,
                                                                     optimizer, dtype, capsys):
    """``refbinn trace`` -> a port (torch) that makes u itself from the trace's noise seed ->
    ``refbinn check-trace``: the port's u equal refbinn's bit for bit, and the traces match."""
    ref = traces("mlp", optimizer, dtype)
    mine = load_trace(ref)
    meta, theirs = torch_trace.replay(mine, forced=dtype == "float32")
    u_keys = [k for k in mine[1] if "/u/" in k]
    assert len(u_keys) == STEPS * len(meta["param_names"])           # S = 1: one u per parameter and step
    for k in u_keys:
        assert theirs[k].dtype == mine[1][k].dtype and np.array_equal(theirs[k], mine[1][k]), k
    port = tmp_path / "port.npz"
    save_trace(port, meta, theirs)
    assert cli_check_trace(argparse.Namespace(mine=str(port), theirs=str(ref), rtol=None, atol=0.0)) == 0
    assert "match" in capsys.readouterr().out
    # a port with the seed off by one makes other u in every step (check-trace stops at the seed)
    wrong = {**mine[1], "step0000/seed": np.asarray(int(mine[1]["step0000/seed"]) + 1)}
    bad = torch_trace.replay((mine[0], wrong))[1]
    d = compare_traces(mine, (meta, bad))
    assert d is not None and (d.step, d.tensor) == (0, "seed"), d
    for k in u_keys:
        assert np.mean(bad[k] == mine[1][k]) < 0.01, k
