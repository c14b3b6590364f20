"""Direct, hand-computed checks of public functions the rest of the suite reaches only
through callers that cannot see some of their mistakes (rank-based AUROC, order-free sums,
CLI guards that run first): ood_scores, mean_std, markdown, mode_signs, config_differences,
check_meta, model_of, check_state, check_resume, sign_vectors and the argument checks of
refbinn.checks (the edges of each range, NaN, bools, strings, the exact messages)."""
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refbinn import models
from refbinn.checks import check_choice, check_float_input, check_int, check_range, check_real
from refbinn.errors import FileFormatError
from refbinn.estimators import sign_vectors
from refbinn.metrics import ood_scores
from refbinn.optim.adam import Adam
from refbinn.optim.bayesbinn import BayesBiNN, BayesBiNNState
from refbinn.sweep.report import markdown, mean_std
from refbinn.train.checkpoint_check import check_meta, check_resume, check_state, config_differences, model_of
from refbinn.train.diagnostics import mode_signs


# -- refbinn.metrics.ood_scores ---------------------------------------------------------------------
def test_ood_scores_by_hand():
    s = ood_scores(np.array([[0.7, 0.2, 0.1], [0.5, 0.25, 0.25]]))
    np.testing.assert_array_equal(s["maxprob"], [1 - 0.7, 1 - 0.5])           # 1 - max_k p_k, exact
    h = [-(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)), 1.5 * math.log(2)]
    np.testing.assert_allclose(s["entropy"], h, rtol=1e-15)                    # a sum of 3 terms: ulps


def test_ood_scores_of_a_binary_vector_read_it_as_p_of_class_one():
    s = ood_scores(np.array([0.9, 0.5]))                                       # columns [1 - p, p]
    np.testing.assert_array_equal(s["maxprob"], [1 - 0.9, 0.5])
    np.testing.assert_allclose(s["entropy"], [-(0.1 * math.log(0.1) + 0.9 * math.log(0.9)), math.log(2)],
                               rtol=1e-15)                                     # 1 - 0.9 != 0.1 by an ulp


# -- refbinn.sweep.report -------------------------------------------------------------------------------
def test_mean_std_leaves_out_none_only():
    assert mean_std([0.0, None, 1.0]) == (0.5, math.sqrt(0.5))                 # a 0.0 is a value
    assert mean_std([2.0, None]) == (2.0, None)
    assert mean_std([None, None]) == mean_std([]) == (None, None)


ROWS = [{"setting": "mnist_bayesbinn", "seeds": [0, 1], "epochs": [3, 5],
         "quantities": {"test_acc_last": {"mean": 0.9812, "std": 0.0125},
                        "test_nll_last": {"mean": 0.123456, "std": 0.01}}},
        {"setting": "mnist_ste", "seeds": [2], "epochs": [5],
         "quantities": {"test_acc_last": {"mean": 0.5, "std": None}}}]
NOTE = ("Mean +- sample standard deviation (ddof = 1) over the seeds listed; accuracies of the "
        "mode (sign of the latent weights) unless marked 'mean prediction'.")


def test_markdown_by_hand():
    md = markdown(ROWS, "Sweep demo", "  Two optimizers.\n")
    assert md.endswith("|\n")
    assert md.splitlines() == [
        "# Sweep demo", "", "Two optimizers.", "", NOTE, "",
        "| setting | seeds | epochs | test, last epoch (%) | test NLL |",     # only quantities some row has
        "|---|---|---|---|---|",
        "| mnist_bayesbinn | 0, 1 | 3/5 | 98.12 +- 1.25 | 0.1235 +- 0.01 |",
        "| mnist_ste | 2 | 5 | 50.00 |  |"]                                     # one seed: no std; no NLL: blank


def test_markdown_without_description_has_no_paragraph():
    assert markdown(ROWS, "t").splitlines()[:3] == ["# t", "", NOTE]


# -- refbinn.train.diagnostics.mode_signs ----------------------------------------------------------------
def test_mode_signs_are_true_where_the_mode_is_minus_one():
    lam = {"w": np.array([[-2.0, 0.5], [0.0, -1e-3]], np.float32)}
    state = BayesBiNNState(lam, {"w": 0 * lam["w"]}, lam, 0)
    signs = mode_signs(BayesBiNN(N=10, tau=1.0, numerics="exact"), state)
    np.testing.assert_array_equal(signs["w"], [[True, False], [False, True]])  # sign(0) -> +1


def test_mode_signs_skip_parameters_not_all_plus_minus_one():
    adam = Adam(lr=0.1)
    state = adam.init({"b": np.array([1.0, -1.0, -1.0]), "r": np.array([1.0, -1.0, 0.5])})
    signs = mode_signs(adam, state)
    assert list(signs) == ["b"]
    np.testing.assert_array_equal(signs["b"], [False, True, True])


# -- refbinn.train.checkpoint_check ------------------------------------------------------------------------
def test_config_differences_by_hand():
    saved = {"lr": 0.1, "quiet": False, "hidden": [16, 8], "meta": {"settings": {"tau": 1e-6}, "old": 1}}
    config = {"lr": 0.2, "quiet": True, "hidden": (16, 8), "meta": {"settings": {"tau": 1e-6}}}
    # quiet is IGNORED; a tuple equals its JSON list; an entry the run lacks counts as None
    assert config_differences(saved, config) == ["lr 0.2 (checkpoint: 0.1)", "meta.old None (checkpoint: 1)"]


def test_config_differences_skip_entries_an_older_checkpoint_lacks():
    config = {"epochs": 3, "diagnostics": True, "meta": {"max_train": 100}}
    assert config_differences({"epochs": 3}, config) == []
    assert config_differences({"epochs": 3, "diagnostics": False}, config) == [
        "diagnostics True (checkpoint: False)"]


def test_config_differences_tell_an_empty_dict_from_none():
    assert config_differences({"opt": {}}, {"opt": None}) == ["opt None (checkpoint: {})"]
    assert config_differences({"opt": None}, {"opt": {}}) == ["opt {} (checkpoint: None)"]
    assert config_differences({"opt": {}, "m": {"kw": {}}}, {"opt": {}, "m": {"kw": {}}}) == []
    assert config_differences({"m": {"kw": {}}}, {"m": {"kw": {"a": 1}}}) == [
        "m.kw None (checkpoint: {})", "m.kw.a 1 (checkpoint: None)"]


def _checkpoint(epoch=2, epochs=3):
    """(ck as load_checkpoint returns it, the run's config, its model) for a small BayesBiNN MLP."""
    rng = np.random.default_rng(0)
    model = models.mlp_mnist(in_features=4, hidden=(3,), classes=2, dropout=0.0)
    params, bn = model.init(rng, np.float32)
    opt = BayesBiNN(N=10, tau=1.0)
    config = {"epochs": epochs, "seed": 0}
    ck = {"config": dict(config), "opt": opt, "opt_state": opt.init(params, rng), "bn_state": bn,
          "rngs": {k: np.random.default_rng(i) for i, k in enumerate(("data", "noise", "drop"))},
          "epoch": epoch, "history": {"epochs": [{}] * epoch}}
    return ck, config, model


@pytest.mark.parametrize("epoch", [0, 3])
def test_check_resume_accepts_any_epoch_of_the_run(epoch):
    check_resume("ck.npz", *_checkpoint(epoch=epoch, epochs=3))             # 3 of 3: a finished run


@pytest.mark.parametrize("spoil, error, match", [
    (lambda ck, cfg: cfg.update(seed=1), ValueError, r"ck.npz: the run's settings differ.*seed 1 \(checkpoint: 0\)"),
    (lambda ck, cfg: ck["rngs"].pop("drop"), FileFormatError, r"random streams \['data', 'noise'\]"),
    (lambda ck, cfg: ck.update(epoch=4, history={"epochs": [{}] * 4}), FileFormatError, "epoch 4 does not fit"),
    (lambda ck, cfg: ck["history"]["epochs"].pop(), FileFormatError, "epoch 2 does not fit the run"),
])
def test_check_resume_refuses(spoil, error, match):
    ck, config, model = _checkpoint()
    spoil(ck, config)
    with pytest.raises(error, match=match):
        check_resume("ck.npz", ck, config, model)


@pytest.mark.parametrize("entry", ["meta.max_train", "recalibrate_bn", "diagnostics", "diagnostics_every"])
def test_config_differences_skip_every_recent_entry_an_older_checkpoint_lacks(entry):
    config = {"epochs": 3, "meta": {"max_train": 100, "dataset": "mnist"}, "recalibrate_bn": 2,
              "diagnostics": False, "diagnostics_every": 4}
    saved = json.loads(json.dumps(config))
    *outer, last = entry.split(".")
    d = saved
    for k in outer:
        d = d[k]
    del d[last]                                                             # an older checkpoint lacks it
    assert config_differences(saved, config) == []
    assert config_differences({"epochs": 3}, {"epochs": 4}) == ["epochs 4 (checkpoint: 3)"]  # others still count


META = {"meta": {"dataset": "two-moons", "model": ["mlp_toy", {"in_features": 2, "out_features": 1}]}, "seed": 0}


def _meta(**kw):
    """META with kw replacing entries of config['meta'] (or, for seed, of config)."""
    c = {"meta": dict(META["meta"]), "seed": kw.pop("seed", 0)}
    c["meta"].update(kw)
    return c


def test_check_meta_accepts_a_whole_config():
    check_meta("ck.npz", META, ("mnist", "two-moons"), seed=True)
    check_meta("ck.npz", _meta(seed=None), ("two-moons",))                   # seed only checked when asked
    assert model_of("ck.npz", META).kinds["fc1.weight"] == "binary"


@pytest.mark.parametrize("config, match", [
    ([1, 2], "config has no 'meta'"),
    ({"meta": "two-moons"}, "config has no 'meta'"),
    ({"meta": ["two-moons", "mlp_toy"]}, "config has no 'meta'"),
    (_meta(dataset="cifar-11"), "config names data set 'cifar-11', not one of mnist, two-moons"),
    (_meta(dataset=None), "config names data set None"),
    (_meta(model=["mlp_toy", {}, 1]), "config names model"),
    (_meta(model=["os.system", {}]), r"config names model \['os.system', \{\}\]; expected \[name, kwargs\]"),
    (_meta(model=["mlp_toy", [2, 1]]), "config names model"),
    (_meta(model="mlp_toy"), "config names model"),
    (_meta(seed=-1), "config has seed -1; expected an integer >= 0"),
    (_meta(seed=1.5), "config has seed 1.5"),
    (_meta(seed="0"), "config has seed '0'"),
    (_meta(seed=None), "config has seed None"),
    (_meta(seed=True), "config has seed True"),                               # a bool is an int in Python
])
def test_check_meta_refuses(config, match):
    with pytest.raises(FileFormatError, match="^ck.npz: " + match):
        check_meta("ck.npz", config, ("mnist", "two-moons"), seed=True)


@pytest.mark.parametrize("kw", [{"in_features": 0, "out_features": 1},       # ValueError from the model
                                {"in_features": 2, "out_features": 1, "evil": 1}])   # TypeError
def test_model_of_turns_bad_arguments_into_a_file_error(kw):
    with pytest.raises(FileFormatError, match=r"^ck.npz: its model mlp_toy\(.*cannot be built"):
        model_of("ck.npz", _meta(model=["mlp_toy", kw]))


def _spoil_state(ck, **fields):
    ck["opt_state"] = ck["opt_state"]._replace(**fields)


def _first(d, fn):
    k = sorted(d)[0]
    return {**d, k: fn(d[k])}


@pytest.mark.parametrize("spoil, match", [
    (lambda ck: ck.update(opt_state=Adam().init({"fc1.weight": np.zeros((3, 4), np.float32)})),
     "'state' is a AdamState, expected a BayesBiNNState"),
    (lambda ck: _spoil_state(ck, lam={**ck["opt_state"].lam, "fc9.weight": np.zeros(2, np.float32)}),
     r"'state/lam' holds \['fc1.weight', 'fc2.weight', 'fc9.weight'\]"),
    (lambda ck: _spoil_state(ck, lam=_first(ck["opt_state"].lam, lambda v: v.ravel())),
     "'state/lam/fc1.weight' is float32"),
    (lambda ck: _spoil_state(ck, lam=_first(ck["opt_state"].lam, lambda v: v.astype(np.int32))),
     "'state/lam/fc1.weight' is int32"),
    (lambda ck: _spoil_state(ck, lam=_first(ck["opt_state"].lam, lambda v: np.where(
        np.arange(v.size).reshape(v.shape) == 1, np.float32(np.inf), v))),
     "'state/lam/fc1.weight' holds NaN or inf"),                         # one inf among finite values
    (lambda ck: _spoil_state(ck, lam=_first(ck["opt_state"].lam, lambda v: np.where(v > 0, np.nan, v).astype(v.dtype))),
     "'state/lam/fc1.weight' holds NaN or inf"),
    (lambda ck: _spoil_state(ck, step=float("inf")), "'state/step' is inf, expected a finite number"),
    (lambda ck: _spoil_state(ck, step=True), "'state/step' is True, expected a finite number"),
    (lambda ck: _spoil_state(ck, seed="7"), "'state/seed' is '7', expected a finite number"),
    (lambda ck: ck.update(bn_state=_first(ck["bn_state"], lambda v: np.zeros(v.size + 1, v.dtype))),
     "'bn_state/bn1.running_mean' is float32 \\(4,\\), expected float32 \\(3,\\)"),
    (lambda ck: ck.update(bn_state={k: v for k, v in ck["bn_state"].items() if k != "bn2.running_var"}),
     "'bn_state' holds"),
    (lambda ck: ck.update(bn_state={**ck["bn_state"], "bn1.extra": np.zeros(3, np.float32)}), "'bn_state' holds"),
])
def test_check_state_and_check_resume_refuse_a_state_that_does_not_fit(spoil, match):
    ck, config, model = _checkpoint()
    check_state("ck.npz", ck, model)                                        # the control: it fits
    spoil(ck)
    with pytest.raises(FileFormatError, match="^ck.npz: " + match):
        check_state("ck.npz", ck, model)
    with pytest.raises(FileFormatError, match="^ck.npz: " + match):
        check_resume("ck.npz", ck, config, model)                           # resume checks the state too


def test_check_state_accepts_a_float64_state_in_its_own_dtype():
    """The reference state is built in the checkpoint's float dtype: a float64 run whose prior lam0
    lies beyond float32's range fits its model (a float32 reference could not even be built)."""
    rng = np.random.default_rng(0)
    model = models.mlp_mnist(in_features=4, hidden=(3,), classes=2, dropout=0.0)
    params, bn = model.init(rng, np.float64)
    opt = BayesBiNN(N=10, tau=1.0, lam0=1e39)
    with pytest.raises(ValueError, match="float32"):
        opt.init(model.init(rng, np.float32)[0], rng)
    ck = {"opt": opt, "opt_state": opt.init(params, rng), "bn_state": bn}
    assert ck["opt_state"].lam["fc1.weight"].dtype == np.float64
    check_state("ck.npz", ck, model)


# -- refbinn.estimators.sign_vectors ------------------------------------------------------------------
def test_sign_vectors_row_k_holds_the_bits_of_k():
    w = sign_vectors(3)
    assert w.dtype == np.float64 and w.shape == (8, 3)
    np.testing.assert_array_equal(w[[0, 1, 6, 7]], [[-1, -1, -1], [1, -1, -1], [-1, 1, 1], [1, 1, 1]])
    assert sign_vectors(0).shape == (1, 0)                                     # the one empty vector
    for d in [-1, 2.5, True]:
        with pytest.raises(ValueError, match=r"d must be an integer in \[0, inf\)"):
            sign_vectors(d)


# -- refbinn.checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, lo, hi, ends, message", [
    (0, 0, None, {"lo_open": True}, "lr must be in (0, inf), got 0"),
    (-1e-300, 0, None, {}, "lr must be in [0, inf), got -1e-300"),
    (1.0, 0, 1, {"hi_open": True}, "lr must be in [0, 1), got 1.0"),
    (1.5, 0, 1, {}, "lr must be in [0, 1], got 1.5"),
    (-2, -1, 1, {"lo_open": True, "hi_open": True}, "lr must be in (-1, 1), got -2"),
    (math.nan, None, None, {}, "lr must be in (-inf, inf), got nan"),        # NaN: every comparison is false
    (np.float32("nan"), 0, 1, {}, "lr must be in [0, 1], got np.float32(nan)"),
    (math.inf, 0, None, {}, "lr must be in [0, inf), got inf"),                # unbounded, but finite
    (-math.inf, None, 0, {}, "lr must be in (-inf, 0], got -inf"),
    (True, None, None, {}, "lr must be a real number, got True"),              # a slip, not 1
    (np.True_, 0, 1, {}, "lr must be a real number, got np.True_"),
    (None, 0, 1, {}, "lr must be a real number, got None"),
    ("0.5", 0, 1, {}, "lr must be a real number, got '0.5'"),                  # float() would take it
])
def test_check_range_refuses_by_hand(value, lo, hi, ends, message):
    with pytest.raises(ValueError) as e:
        check_range("lr", value, lo, hi, **ends)
    assert str(e.value) == message


@pytest.mark.parametrize("value, lo, hi, ends", [
    (0, 0, None, {}), (1, 0, 1, {}), (np.nextafter(1.0, 0.0), 0, 1, {"hi_open": True}),
    (5e-324, 0, None, {"lo_open": True}),
    (-1e308, None, None, {}), (np.float32(0.5), 0, 1, {}), (np.array(0.5), 0, 1, {})])
def test_check_range_takes_the_bounds_and_returns_the_value_itself(value, lo, hi, ends):
    assert check_range("lr", value, lo, hi, **ends) is value                   # not converted


@given(st.floats(), st.floats(-10, 10), st.floats(0, 10), st.booleans(), st.booleans(),
       st.sampled_from(["x", "lo", "hi"]))
def test_check_range_is_the_interval(x, lo, width, lo_open, hi_open, at):
    hi = lo + width
    v = {"x": x, "lo": lo, "hi": hi}[at]                                       # the bounds themselves too
    if math.isfinite(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi):
        assert check_range("t", v, lo, hi, lo_open=lo_open, hi_open=hi_open) is v
    else:
        with pytest.raises(ValueError) as e:
            check_range("t", v, lo, hi, lo_open=lo_open, hi_open=hi_open)
        assert str(e.value).startswith("t must be in " + ("(" if lo_open else "["))


@pytest.mark.parametrize("value, lo, hi, message", [
    (0.5, 1, None, "samples must be an integer in [1, inf), got 0.5"),
    (3.5, 0, None, "samples must be an integer in [0, inf), got 3.5"),         # not truncated to 3
    (0, 1, None, "samples must be an integer in [1, inf), got 0"),
    (6, 0, 5, "samples must be an integer in [0, 5], got 6"),
    (2 ** 63, 0, 2 ** 63 - 1, "samples must be an integer in [0, 9223372036854775807], got 9223372036854775808"),
    (True, 0, None, "samples must be an integer in [0, inf), got True"),
    (np.True_, 0, None, "samples must be an integer in [0, inf), got np.True_"),
    (math.inf, 0, None, "samples must be an integer in [0, inf), got inf"),   # int(inf): OverflowError
    (math.nan, 0, None, "samples must be an integer in [0, inf), got nan"),   # int(nan): ValueError
    ("3", 0, None, "samples must be an integer in [0, inf), got '3'"),
    (None, 0, None, "samples must be an integer in [0, inf), got None"),
])
def test_check_int_refuses_by_hand(value, lo, hi, message):
    with pytest.raises(ValueError) as e:
        check_int("samples", value, lo, hi)
    assert str(e.value) == message


@pytest.mark.parametrize("value, lo, hi", [(3, 3, None), (5, 0, 5), (3.0, 0, None), (np.int64(3), 3, 3),
                                           (np.float32(3.0), 0, 3), (np.array(3), 0, None),
                                           (2 ** 63 - 1, 0, 2 ** 63 - 1)])
def test_check_int_takes_the_bounds_and_returns_a_python_int(value, lo, hi):
    out = check_int("samples", value, lo, hi)
    assert type(out) is int and out == value


def test_check_choice_by_hand():
    assert check_choice("numerics", "exact", ("exact", "official")) == "exact"       # the first one too
    assert check_choice("numerics", "official", ("exact", "official")) == "official"
    with pytest.raises(ValueError) as e:
        check_choice("numerics", "x", ("exact", "official"))
    assert str(e.value) == "numerics must be one of 'exact', 'official', got 'x'"


def test_check_float_input_by_hand():
    x = np.zeros((3, 2), np.float32)
    assert check_float_input("layer 'fc1'", x, 2) is x                         # not copied or cast
    with pytest.raises(ValueError) as e:
        check_float_input("layer 'fc1'", np.zeros(3), 2)
    assert str(e.value) == "layer 'fc1': input has shape (3,), expected (N, d1, ...)"
    with pytest.raises(ValueError) as e:
        check_float_input("layer 'fc1'", np.float64(1.0))
    assert str(e.value) == "layer 'fc1': input has shape (), expected (N, ...)"
    with pytest.raises(ValueError) as e:
        check_float_input("layer 'fc1'", np.zeros((3, 2), np.int64), 2)
    assert str(e.value) == "layer 'fc1': input has dtype int64, expected a float dtype"


@pytest.mark.parametrize("a, kinds", [(np.zeros(2, np.float32), "biuf"), (np.arange(3), "iuf"),
                                      (np.array([True]), "biuf"), ([0.5, 1], "iuf"), (2.0, "biuf")])
def test_check_real_passes_real_numbers_uncopied(a, kinds):
    out = check_real("probs", a, kinds)
    assert out.dtype == np.asarray(a).dtype and np.array_equal(out, np.asarray(a))
    if isinstance(a, np.ndarray):
        assert out is a


@pytest.mark.parametrize("a, kinds, dtype", [(np.array([0.5 + 1j]), "biuf", "complex128"),
                                             (np.array(["a"]), "biuf", "<U1"), (None, "biuf", "object"),
                                             (np.array([True]), "iuf", "bool")])
def test_check_real_refuses_by_hand(a, kinds, dtype):
    with pytest.raises(ValueError) as e:
        check_real("lam0['w']", a, kinds)
    assert str(e.value) == f"lam0['w'] must hold real numbers, got dtype {dtype}"
