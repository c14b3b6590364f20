"""The 'authors' preset (issue 15, item 5): the four settings in which the authors' scripts
(team-approx-bayes/BayesBiNN) differ from the 'paper' preset, and a bit-identical resume
under it. The 'paper' preset's numbers are pinned by tests/test_golden*.py, its settings against
the spec's tables at the end of this file."""
import inspect
import json
import math

import numpy as np
import pytest

from refbinn.cli import main
from refbinn.experiments import continual, make_optimizer
from refbinn.experiments.presets import AUTHORS, CONTINUAL, PAPER, PRESETS
from refbinn.models import MODELS
from refbinn.nn import BatchNorm, Dense, Sequential
from refbinn.predict import predict_mean
from refbinn.data import legacy_pixel_permutations


# -- (a) the cosine schedule, per epoch ----------------------------------------------------------
def _schedule(preset, dataset="mnist", optimizer="bayesbinn", epochs=5):
    s = PRESETS[preset][dataset][optimizer]
    _, sched = make_optimizer(optimizer, s, n_train=100, kinds={"w": "real" if optimizer == "adam" else "binary"},
                              epochs=epochs, steps_per_epoch=1)
    return s["lr"], sched


@pytest.mark.parametrize("dataset,optimizer", [("mnist", "bayesbinn"), ("cifar100", "bayesbinn"),
                                               ("mnist", "ste"), ("cifar10", "adam")])
def test_cosine_per_epoch_under_each_preset(dataset, optimizer):
    E = 5
    lr, paper = _schedule("paper", dataset, optimizer, E)
    _, authors = _schedule("authors", dataset, optimizer, E)
    for e in range(E):
        # torch's CosineAnnealingLR stepped at the end of epoch e: t = e, eta_min 0
        assert paper(e) == pytest.approx(lr * (1 + math.cos(math.pi * e / E)) / 2, rel=1e-15, abs=0)
        # the authors' scripts step it at the start: t = e + 1, eta_min 1e-16
        assert authors(e) == pytest.approx(1e-16 + (lr - 1e-16) * (1 + math.cos(math.pi * (e + 1) / E)) / 2,
                                           rel=1e-15, abs=0)
        assert authors(e) == pytest.approx(paper(e + 1) if e + 1 < E else 1e-16, rel=1e-12, abs=1e-16)
    assert paper(0) == lr and authors(0) < lr
    assert authors(E - 1) == 1e-16 and paper(E - 1) > 0.02 * lr        # the last epoch barely moves


def test_toy_presets_are_the_papers():
    assert AUTHORS["two-moons"] == PAPER["two-moons"] and AUTHORS["snelson"] == PAPER["snelson"]
    assert "average" not in PAPER["mnist"] and AUTHORS["mnist"]["average"] == "logits"


# -- (b), (a), (c), (d) in the continual experiment ----------------------------------------------
FIT, EVALUATE = continual.fit, continual.evaluate


def _continual(preset, seed, monkeypatch):
    """A 2-task, 2-epoch run on 120 random 784-pixel images; what run_continual gave fit/evaluate."""
    seen = {"models": [], "schedules": [], "perms": [], "averages": []}
    real_fit, real_evaluate = FIT, EVALUATE          # not an earlier call's wrappers

    def fit(model, opt, data, *args, schedule=None, **kw):
        seen["models"].append(model)
        seen["schedules"].append(schedule)
        seen["perms"].append(data.x_train[0].astype(np.int64))     # row 0 is arange(784), permuted
        return real_fit(model, opt, data, *args, schedule=schedule, **kw)

    def evaluate(*args, average="prob", **kw):
        seen["averages"].append(average)
        return real_evaluate(*args, average=average, **kw)

    monkeypatch.setattr(continual, "fit", fit)
    monkeypatch.setattr(continual, "evaluate", evaluate)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 784)).astype(np.float32)
    x[0] = np.arange(784)
    y = rng.integers(0, 10, 120)
    res = continual.run_continual(x, y, x[:40], y[:40], tasks=2, epochs=2, batch_size=60, test_samples=2,
                                  seed=seed, numerics="official", quiet=True, log=lambda m: None, preset=preset)
    return seen, res


def test_continual_bn_momentum_and_eps(monkeypatch):
    for preset, (m, eps) in (("paper", (0.1, 1e-5)), ("authors", (0.15, 1e-4))):
        seen, res = _continual(preset, 0, monkeypatch)
        bns = [layer for layer in seen["models"][0].layers if isinstance(layer, BatchNorm)]
        assert len(bns) == 3 and all((b.momentum, b.eps) == (m, eps) for b in bns), preset
        assert res["settings"]["preset"] == preset


def test_continual_schedule_and_averaging(monkeypatch):
    seen, _ = _continual("paper", 0, monkeypatch)
    assert [seen["schedules"][0](e) for e in (0, 1)] == [1e-3, 0.5e-3] and set(seen["averages"]) == {"prob"}
    seen, _ = _continual("authors", 0, monkeypatch)
    for sched in seen["schedules"]:                       # restarted per task, stepped before each epoch
        assert sched(0) == pytest.approx(1e-16 + (1e-3 - 1e-16) / 2, rel=1e-15) and sched(1) == 1e-16
    assert set(seen["averages"]) == {"logits"}


def _authors_way(seed, tasks):
    """main_permute_mnist_CL.py: np.random.seed(seed), then np.random.permutation(784) per task."""
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        return np.stack([np.random.permutation(784) for _ in range(tasks)])
    finally:
        np.random.set_state(saved)


def test_permutations_follow_the_seed_under_authors_only(monkeypatch):
    paper = {s: _continual("paper", s, monkeypatch)[0]["perms"] for s in (0, 1)}
    authors = {s: _continual("authors", s, monkeypatch)[0]["perms"] for s in (0, 1)}
    # paper: as before this preset existed, from perm_seed 0 whatever --seed
    for s in (0, 1):
        assert [p[:6].tolist() for p in paper[s]] == [[318, 2, 606, 446, 758, 13], [416, 65, 230, 385, 279, 107]]
    # authors: numpy's legacy stream seeded by the run's seed, as their script draws them
    for s in (0, 1):
        np.testing.assert_array_equal(np.stack(authors[s]), _authors_way(s, 2))
        np.testing.assert_array_equal(np.stack(authors[s]), legacy_pixel_permutations(784, 2, s))
    assert not np.array_equal(authors[0][0], authors[1][0]) and not np.array_equal(authors[0][1], authors[1][1])
    assert sorted(authors[1][1].tolist()) == list(range(784))


def test_continual_preset_is_checked():
    x = np.zeros((4, 784), np.float32)
    with pytest.raises(ValueError, match="preset"):
        continual.run_continual(x, np.zeros(4, np.int64), x, np.zeros(4, np.int64), preset="nope")
    assert set(CONTINUAL) == set(PRESETS)


def _no_training(*args, **kwargs):
    raise AssertionError("run_continual started training")


def test_continual_refuses_a_one_row_last_minibatch_before_training(monkeypatch):
    monkeypatch.setattr(continual, "fit", _no_training)
    x, y = np.zeros((5, 784), np.float32), np.zeros(5, np.int64)
    with pytest.raises(ValueError, match=r"batch_size 2 with 5 training rows \(x_train; --max-train .*: "
                                         r"the last minibatch .* 1 row"):
        continual.run_continual(x, y, x, y, batch_size=2)


@pytest.mark.parametrize("bad, message", [
    (dict(prior="bogus"), "prior must be 'posterior' or 'zero', got 'bogus'"),
    (dict(tasks=0), r"^tasks must be an integer in \[1, inf\), got 0"),
    (dict(batch_size=0), r"batch_size must be an integer in \[1, inf\), got 0"),
    (dict(test_samples=0), r"test_samples must be an integer in \[1, inf\), got 0"),
    (dict(seed=-1), r"seed must be an integer in \[0, inf\), got -1"),
    (dict(perm_seed=-1, preset="authors"), r"perm_seed must be an integer in \[0, inf\), got -1"),
    (dict(stop_after=-1), r"stop_after must be an integer in \[0, inf\), got -1"),
    (dict(x_test=np.zeros((4, 100), np.float32)), r"x_test must have x_train's columns.*\(4, 784\).*\(4, 100\)"),
])
def test_continual_refuses_bad_arguments_naming_them(bad, message, monkeypatch):
    # before any training: a bad value raised a raw ZeroDivisionError (batch_size 0), numpy's
    # "expected non-negative integer" (seeds), an IndexError (x_test) or gave NaN (test_samples 0)
    monkeypatch.setattr(continual, "fit", _no_training)
    x, y = np.zeros((4, 784), np.float32), np.zeros(4, np.int64)
    kw = {"x_test": x, **bad}
    with pytest.raises(ValueError, match=message):
        continual.run_continual(x, y, kw.pop("x_test"), y, **kw)


def _recorded_continual(prior, monkeypatch, seed=1):
    """A 2-task, 2-epoch run on 120 random images; each fit's optimizer, seed, initial state
    and result, each evaluate's inputs and result, and the per-task log lines."""
    fits, evals, lines = [], [], []
    real_fit, real_evaluate = FIT, EVALUATE

    def fit(model, opt, data, loss, cfg, *, init_state=None, **kw):
        res = real_fit(model, opt, data, loss, cfg, init_state=init_state, **kw)
        fits.append(dict(opt=opt, seed=cfg.seed, init_state=init_state, res=res,
                         lam=({k: v.copy() for k, v in res["opt_state"].lam.items()})))
        return res

    def evaluate(model, opt, opt_state, bn_state, x, y, **kw):
        rng_state = kw["rng"].bit_generator.state
        ev = real_evaluate(model, opt, opt_state, bn_state, x, y, **kw)
        evals.append(dict(opt_state=opt_state, pixels=x[0].astype(np.int64), ev=ev, rng=kw["rng"],
                          rng_state=rng_state))
        return ev

    monkeypatch.setattr(continual, "fit", fit)
    monkeypatch.setattr(continual, "evaluate", evaluate)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 784)).astype(np.float32)
    x[0] = np.arange(784)                                  # row 0 shows the permutation
    y = rng.integers(0, 10, 120)
    res = continual.run_continual(x, y, x[:40], y[:40], tasks=2, epochs=2, batch_size=60, test_samples=2,
                                  lam_init=0.5, reweight=0.5, tau=0.02, lr=2e-3, seed=seed, prior=prior,
                                  numerics="official", quiet=True, log=lines.append)
    return fits, evals, res, [m for m in lines if "after task" in m]


@pytest.mark.parametrize("prior", ["posterior", "zero"])
def test_continual_task_optimizers_priors_seeds_and_matrix(prior, monkeypatch):
    fits, evals, res, lines = _recorded_continual(prior, monkeypatch)
    for t, f in enumerate(fits):        # the docstring's BayesBiNN: beta 0, S 1, N = len(x_train)
        c = f["opt"].config()
        assert (c["beta"], c["samples"], c["N"], c["lam_init"], c["reweight"], c["tau"], c["lr"]) == (
            0.0, 1, 120, 0.5, 0.5, 0.02, 2e-3)
        assert f["seed"] == 1 + t
    assert fits[0]["opt"].lam0 == 0.0 and fits[0]["init_state"] is None
    assert fits[1]["init_state"][0] is fits[0]["res"]["opt_state"]          # carried over
    if prior == "zero":
        assert fits[1]["opt"].lam0 == 0.0
    else:                                          # task 1's posterior, as it was after task 1
        assert set(fits[1]["opt"].lam0) == set(fits[0]["lam"])
        for k, v in fits[0]["lam"].items():
            np.testing.assert_array_equal(fits[1]["opt"].lam0[k], v)
    # A[t, k]: task k's test images (permuted by task k's pixels) after task t; NaN above the diagonal
    assert [(e["opt_state"] is f["res"]["opt_state"]) for e, f in zip(evals, fits[:1] + fits[1:] * 2)] == [True] * 3
    np.testing.assert_array_equal(evals[1]["pixels"], evals[0]["pixels"])
    assert not np.array_equal(evals[2]["pixels"], evals[1]["pixels"])
    got_mean, got_mode = np.array(res["acc_mean"]), np.array(res["acc_mode"])
    np.testing.assert_array_equal(got_mean[[0, 1, 1], [0, 0, 1]], [e["ev"]["acc_mean"] for e in evals])
    np.testing.assert_array_equal(got_mode[[0, 1, 1], [0, 0, 1]], [e["ev"]["acc_mode"] for e in evals])
    assert np.isnan(got_mean[0, 1]) and np.isnan(got_mode[0, 1])
    assert res["diagnostics"] == [f["res"]["history"]["epochs"][-1]["diagnostics"]["all"] for f in fits]
    # one evaluation stream, Generator(seed + 1000), as the docstring says
    assert all(e["rng"] is evals[0]["rng"] for e in evals)
    assert evals[0]["rng_state"] == np.random.default_rng(1 + 1000).bit_generator.state
    assert lines == [f"[{prior}] after task 1: mean acc per task {got_mean[0, 0]:.4f}",
                     f"[{prior}] after task 2: mean acc per task {got_mean[1, 0]:.4f} {got_mean[1, 1]:.4f}"]
    assert res["settings"]["perm_seed"] == 0 and res["settings"]["seed"] == 1 and res["prior"] == prior


# -- (c) logits versus probabilities, by hand ------------------------------------------------------
class _Given:
    """An 'optimizer' whose weight samples are given in order."""

    def __init__(self, weights):
        self.weights = list(weights)

    def sample_params(self, state, rng):
        return {"fc.weight": self.weights.pop(0)}


def test_mean_prediction_averages_logits_or_probabilities():
    model = Sequential(Dense(1, 2, name="fc"))
    x = np.ones((1, 1))
    logits = [np.array([[0.0], [2.0]]), np.array([[0.0], [2.0]]), np.array([[5.0], [0.0]])]   # (2, 1) each
    soft = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    by_prob = np.mean([soft(w[:, 0]) for w in logits], axis=0)        # [0.410, 0.590]: class 1
    by_logit = soft(np.mean([w[:, 0] for w in logits], axis=0))       # softmax([5/3, 4/3]): class 0
    rng = np.random.default_rng(0)
    p = predict_mean(model, _Given(logits), None, {}, x, 3, rng, average="prob", link="classes")
    q = predict_mean(model, _Given(logits), None, {}, x, 3, rng, average="logits", link="classes")
    np.testing.assert_allclose(p[0], by_prob, rtol=1e-12)
    np.testing.assert_allclose(q[0], by_logit, rtol=1e-12)
    assert p[0].argmax() == 1 and q[0].argmax() == 0


# -- refbinn train --preset authors: honoured, recorded, resumed bit-identically ----------------------
def _train(out, data_root, *extra):
    return main(["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--epochs", "3", "--max-train", "300",
                 "--hidden", "16", "16", "16", "--eval-samples", "2", "--eval-mean-every", "1", "--quiet",
                 "--out", str(out), "--data-root", str(data_root), *extra])


def _strip(history):
    return [{k: v for k, v in e.items() if k not in ("seconds", "examples_per_s", "seconds_diagnostics")}
            for e in history]


def test_train_preset_authors_resumes_bit_identically(tmp_path, data_root):
    assert _train(tmp_path, data_root, "--preset", "authors", "--name", "full") == 0
    full = json.loads((tmp_path / "full.json").read_text())
    assert full["settings"]["preset"] == "authors"
    assert full["settings"]["optimizer_settings"]["eta_min"] == 1e-16
    lr = [e["lr"] for e in full["history"]]
    assert lr[0] == pytest.approx(1e-16 + (1e-4 - 1e-16) * 0.75, rel=1e-15) and lr[2] == 1e-16
    assert _train(tmp_path, data_root, "--preset", "authors", "--name", "cut", "--stop-after", "1") == 0
    # --preset paper on resume is an error; left out, the checkpoint's preset is used
    assert _train(tmp_path, data_root, "--preset", "paper", "--name", "cut", "--resume") == 2
    assert _train(tmp_path, data_root, "--name", "cut", "--resume") == 0
    cut = json.loads((tmp_path / "cut.json").read_text())
    assert cut["settings"] == full["settings"]
    assert _strip(cut["history"]) == _strip(full["history"])
    with np.load(tmp_path / "runs" / "full" / "checkpoint.npz") as a, \
            np.load(tmp_path / "runs" / "cut" / "checkpoint.npz") as b:
        assert json.loads(str(a["config"]))["meta"]["preset"] == "authors"
        for k in a.files:
            if k not in ("history",):
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the paper preset on the same run differs (schedule) and averages probabilities
    assert _train(tmp_path, data_root, "--name", "paper") == 0
    paper = json.loads((tmp_path / "paper.json").read_text())
    assert paper["settings"]["preset"] == "paper" and paper["history"][0]["lr"] == 1e-4


# -- refbinn evaluate: the mean prediction averages as the run's preset does ----------------------
def test_preset_average_of_a_checkpoints_meta():
    from refbinn.experiments.presets import preset_average
    assert preset_average({"dataset": "mnist", "preset": "authors"}) == "logits"
    assert preset_average({"dataset": "cifar10", "preset": "authors"}) == "logits"
    assert preset_average({"dataset": "mnist", "preset": "paper"}) == "prob"
    assert preset_average({"dataset": "mnist"}) == "prob"                    # files from before presets
    assert preset_average({"dataset": "two-moons", "preset": "authors"}) == "prob"


def test_evaluate_averages_as_the_checkpoints_preset(tmp_path, data_root):
    for preset in ("authors", "paper"):
        assert _train(tmp_path, data_root, "--preset", preset, "--name", preset, "--epochs", "1") == 0
    ev = lambda *extra, out="ev": main(["evaluate", *extra, "--samples", "2", "--out", str(tmp_path / out),
                                        "--data-root", str(data_root)])
    ck = {p: str(tmp_path / "runs" / p / "checkpoint.npz") for p in ("authors", "paper")}
    read = lambda name, out="ev": json.loads((tmp_path / out / f"evaluate_{name}.json").read_text())
    assert ev(ck["authors"]) == 0 and read("authors")["average"] == "logits"
    assert ev(ck["paper"]) == 0 and read("paper")["average"] == "prob"
    assert ev(ck["authors"], "--average", "prob", out="ev2") == 0 and read("authors", "ev2")["average"] == "prob"
    # the calibration/OOD path, several checkpoints in one call: each run its own preset's average
    assert ev(ck["authors"], ck["paper"], "--ood", "uniform", "--max-test", "50", "--name", "both") == 0
    runs = json.loads((tmp_path / "ev" / "uncertainty_both.json").read_text())["runs"]
    assert [r["average"] for r in runs] == ["logits", "prob"]


# -- the 'paper' tables against the spec's settings (docs: spec sections 8 and 9) ------------------
# batch size, epochs, BayesBiNN lr, beta, tau, S, lambda init, N (the full training set less the split)
SPEC = {"mnist": (100, 500, 1e-4, 0.0, 1e-10, 1, 10.0, 54000),
        "cifar10": (50, 500, 3e-4, 0.0, 1e-10, 1, 10.0, 450000),             # 45000 x 10 for augmentation
        "cifar100": (50, 500, 3e-4, 0.0, 1e-8, 1, 10.0, 450000),
        "two-moons": (200, 3000, 1e-3, 0.99, 1.0, 5, 15.0, 200),
        "snelson": (200, 5000, 1e-4, 0.99, 1.0, 1, 10.0, 200)}
TRAIN_SIZE = {"mnist": 60000, "cifar10": 50000, "cifar100": 50000, "two-moons": 200, "snelson": 200}
BASELINES = {
    "mnist": {"ste": {"lr": 1e-2, "schedule": "cosine"}, "adam": {"lr": 3e-4, "schedule": "cosine"},
              "bop": {"threshold": 1e-8, "gamma": 1e-5, "gamma_decay_per_epoch": 10 ** (-3 / 500)},
              "pmf": {"lr": 1e-3, "rho": 1.2, "step_every_iters": 7000, "step_factor": 0.2, "weight_decay": 0.0}},
    "cifar10": {"ste": {"lr": 1e-2, "schedule": "cosine"}, "adam": {"lr": 1e-2, "schedule": "cosine"},
                "bop": {"threshold": 1e-8, "gamma": 1e-4, "gamma_step_every": 100, "gamma_step_factor": 0.1},
                "pmf": {"lr": 1e-2, "rho": 1.05, "step_every_iters": 30000, "step_factor": 0.2, "weight_decay": 1e-4}},
    "cifar100": {"ste": {"lr": 1e-2, "schedule": "cosine"}, "adam": {"lr": 3e-3, "schedule": "cosine"},
                 "bop": {"threshold": 1e-9, "gamma": 1e-4, "gamma_step_every": 100, "gamma_step_factor": 0.1},
                 "pmf": {"lr": 1e-2, "rho": 1.05, "step_every_iters": 30000, "step_factor": 0.2, "weight_decay": 1e-4}},
    "two-moons": {"ste": {"lr": 0.1, "milestones": (1500, 2500)}, "bayesbinn": {"milestones": (1500, 2500)}},
    "snelson": {"ste": {"lr": 0.1}, "bayesbinn": {"schedule": "geometric", "lr_end": 1e-5}},
}
# the networks' settings that the presets leave to the model builders' defaults
MODEL = {"mnist": {"hidden": (2048, 2048, 2048), "dropout": 0.2, "bn_momentum": 0.15, "bn_eps": 1e-4},
         "cifar10": {"num_classes": 10, "bn_momentum": 0.1, "bn_eps": 1e-5},                  # torch's defaults
         "cifar100": {"num_classes": 100, "bn_momentum": 0.1, "bn_eps": 1e-5},
         "two-moons": {"in_features": 2, "hidden": 64, "act": "tanh", "bias": True},
         "snelson": {"in_features": 1, "hidden": 64, "act": "tanh", "bias": True, "output_bn": True}}


@pytest.mark.parametrize("dataset", list(SPEC))
def test_paper_preset_is_the_spec_table(dataset):
    p = PAPER[dataset]
    b = p["bayesbinn"]
    n = round(TRAIN_SIZE[dataset] * (1 - p["split"])) * p.get("n_scale", 1)
    assert (p["batch_size"], p["epochs"], b["lr"], b["beta"], b["tau"], b["samples"], b["lam_init"], n) == SPEC[dataset]
    for optimizer, want in BASELINES[dataset].items():
        assert {k: p[optimizer][k] for k in want} == want, optimizer
    name, kw = p["model"]
    defaults = {k: v.default for k, v in inspect.signature(MODELS[name]).parameters.items()}
    assert {k: {**defaults, **kw}[k] for k in MODEL[dataset]} == MODEL[dataset]
    assert PAPER["fashion-mnist"] is PAPER["mnist"]


def test_continual_defaults_are_the_spec_table():
    defaults = {k: v.default for k, v in inspect.signature(continual.run_continual).parameters.items()}
    assert {k: defaults[k] for k in ("tasks", "epochs", "batch_size", "lr", "tau", "lam_init", "test_samples")} == dict(
        tasks=5, epochs=100, batch_size=100, lr=1e-3, tau=1e-2, lam_init=10.0, test_samples=100)
    assert (CONTINUAL["paper"]["bn_momentum"], CONTINUAL["paper"]["bn_eps"]) == (0.1, 1e-5)        # torch's
    assert (CONTINUAL["authors"]["bn_momentum"], CONTINUAL["authors"]["bn_eps"]) == (0.15, 1e-4)   # spec 7.7
