"""refbinn/experiments/setup.py and datasets.py: the optimizers and schedules a preset's settings
make, what ``build`` takes from its overrides, and the arguments ``build`` / ``load_data`` refuse."""
import numpy as np
import pytest

from refbinn import data as D
from refbinn.experiments import build, load_data, make_optimizer
from refbinn.experiments.presets import PAPER
from refbinn.optim.partition import Partition

from test_ood import fake_mnist

BINARY = {"w": "binary"}


def _make(name, s, kinds=BINARY, epochs=5, steps_per_epoch=1):
    return make_optimizer(name, s, n_train=120, kinds=kinds, epochs=epochs, steps_per_epoch=steps_per_epoch)


# -- make_optimizer -----------------------------------------------------------------------------
def test_bayesbinn_defaults_for_the_settings_a_preset_leaves_out():
    opt, sched = _make("bayesbinn", dict(lr=1e-3, tau=0.5))
    c = opt.config()
    assert (c["beta"], c["samples"], c["N"], c["lam_init"], c["lam_init_std"], c["numerics"], c["reweight"]) == (
        0.0, 1, 120, 10.0, 0.0, "exact", 1.0)
    assert (sched(0), sched(5)) == (1e-3, 0.0)                   # cosine, from lr to eta_min 0
    assert _make("bayesbinn", dict(lr=1e-3, tau=0.5, N=7))[0].config()["N"] == 7


def test_ste_clips_as_named():
    c = _make("ste", dict(lr=0.1, clip_value=2.0))[0].config()
    assert (c["clip_value"], c["clip_norm"]) == (2.0, None)


def test_bop_gamma_decays_from_epoch_0():
    s = PAPER["mnist"]["bop"]
    _, sched = _make("bop", s)
    assert sched(0) == s["gamma"] and sched(3) == pytest.approx(s["gamma"] * s["gamma_decay_per_epoch"] ** 3,
                                                                 rel=1e-15)


def test_pmf_step_decay_in_iterations_is_at_least_one_epoch():
    s = dict(lr=1e-2, rho=1.05, step_every_iters=7, step_factor=0.5)
    assert [_make("pmf", s, steps_per_epoch=2)[1](e) for e in (3, 4)] == [1e-2, 5e-3]   # every round(3.5) = 4
    assert [_make("pmf", s, steps_per_epoch=20)[1](e) for e in (0, 1)] == [1e-2, 5e-3]  # round(0.35) = 0 -> 1


def test_vispa_warmup_fits_a_one_epoch_run():
    s = PAPER["mnist"]["vispa"]                                  # warmup_epochs 1
    assert _make("vispa", s, epochs=1)[1](0) == s["lr"]
    assert _make("vispa", s, epochs=4)[1](0) == s["lr"]          # warm-up epoch 0 at lr * 1/1


def test_milestones_divide_by_ten():
    _, sched = _make("ste", dict(lr=0.1, schedule="milestones", milestones=(2, 4)))
    assert [sched(e) for e in (1, 2, 4)] == pytest.approx([0.1, 0.01, 0.001], rel=1e-15)


def test_real_parameters_go_to_adam_unless_the_optimizer_is_adam():
    kinds = {"w": "binary", "b": "real"}
    opt, sched = _make("ste", dict(lr=0.1, schedule="constant"), kinds=kinds)
    assert isinstance(opt, Partition) and sched(0) == (0.1, 1e-3)              # real_lr default 1e-3
    opt, sched = _make("adam", dict(lr=0.1, schedule="constant"), kinds={"w": "real", "b": "real"})
    assert not isinstance(opt, Partition) and sched(0) == 0.1


# -- build ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    """A data root with a fake MNIST (200 training and 200 test images) and fake CIFAR-10/100
    (50 and 10): they load in milliseconds."""
    root = tmp_path_factory.mktemp("data")
    fake_mnist(root, "mnist", n=200)
    for kind in ("cifar10", "cifar100"):
        D.write_fake_cifar(root, kind=kind, n_train=50, n_test=10, seed=0)
    return root


def test_build_takes_overrides_and_ignores_none():
    s = build("two-moons", "bayesbinn", overrides=dict(lr=None, epochs=None, eval_samples=3, average="logits",
                                                       reweight=0.5, lam_init=3.0), quiet=True)
    assert (s.opt.config()["reweight"], s.opt.config()["lam_init"]) == (0.5, 3.0)
    assert s.settings["optimizer_settings"]["lr"] == PAPER["two-moons"]["bayesbinn"]["lr"]
    assert s.cfg.epochs == PAPER["two-moons"]["epochs"]
    assert (s.cfg.eval_samples, s.cfg.average) == (3, "logits")


def test_build_binary_all_sends_every_parameter_to_the_binary_optimizer():
    # two moons: the paper trains the biases as binary weights too, so no Adam partition
    assert not isinstance(build("two-moons", "ste", quiet=True).opt, Partition)


def test_build_pmf_counts_the_last_partial_minibatch(fake_root):
    s = build("mnist", "pmf", root=fake_root, quiet=True)
    assert s.data.n_train == 180                                 # 2 minibatches of 100, the last of 80
    assert [s.schedule(e) for e in (3499, 3500)] == [1e-3, pytest.approx(2e-4, rel=1e-15)]   # 7000 / 2


def test_build_cifar_bayesbinn_n_is_ten_times_the_training_set(fake_root):
    # the paper's N for CIFAR: 10 x the training-set size (the augmented data set)
    s = build("cifar10", "bayesbinn", overrides=dict(max_train=40, batch_size=8), root=fake_root, quiet=True)
    assert s.data.n_train == 36 and s.opt.config()["N"] == 360


@pytest.mark.parametrize("over, message", [
    (dict(recalibrate_bn=1, batch_size=1), r"--recalibrate-bn needs --batch-size >= 2"),
    (dict(batch_size=179), r"--batch-size 179 with 180 training rows \(--max-train 200 less the 10% validation"),
    (dict(eval_samples=-1), r"eval_samples must be an integer in \[0, inf\), got -1"),
    (dict(eval_samples=2.5), r"eval_samples must be an integer in \[0, inf\), got 2.5"),
    (dict(seed=-1), r"seed must be an integer in \[0, inf\), got -1"),
    (dict(checkpoint_every=0), r"checkpoint_every must be an integer in \[1, inf\), got 0"),
])
def test_build_refuses_naming_the_setting(over, message, fake_root):
    # eval_samples -1 ran without a mean prediction, 2.5 with 2 samples
    with pytest.raises(ValueError, match=message):
        build("mnist", "bayesbinn", overrides={"max_train": 200, **over}, root=fake_root, quiet=True)


def test_build_refuses_zero_epochs_whatever_the_schedule():
    # two moons' milestones schedule does not check epochs: build itself must
    with pytest.raises(ValueError, match=r"epochs must be an integer in \[1, inf\), got 0"):
        build("two-moons", "bayesbinn", overrides=dict(epochs=0), quiet=True)


# -- load_data -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, message", [
    (dict(max_train=-5), r"max_train must be an integer in \[0, inf\), got -5"),
    (dict(max_train=2.5), r"max_train must be an integer in \[0, inf\), got 2.5"),
    (dict(seed=-1), r"seed must be an integer in \[0, inf\), got -1"),
])
def test_load_data_refuses_naming_the_argument(kw, message, fake_root):
    # max_train -5 kept all but the last 5 images; 2.5 and seed -1 raised numpy's own errors
    with pytest.raises(ValueError, match=message):
        load_data("mnist", fake_root, **kw)


def test_load_data_max_train_and_split(fake_root):
    data, extra = load_data("mnist", fake_root, split=0.25, seed=3, max_train=100)
    assert extra is None and (data.n_train, len(data.x_val), len(data.x_test)) == (75, 25, 200)
    assert data.x_train.shape[1:] == (784,) and data.y_train.dtype == data.y_test.dtype == np.int64
    assert data.augment is None
    for keep_all in (None, 0):
        assert load_data("mnist", fake_root, split=0.25, seed=3, max_train=keep_all)[0].n_train == 150
    # the split is seeded: the same seed holds out the same images, another seed others
    again, _ = load_data("mnist", fake_root, split=0.25, seed=3, max_train=100)
    other, _ = load_data("mnist", fake_root, split=0.25, seed=4, max_train=100)
    np.testing.assert_array_equal(again.x_val, data.x_val)
    assert not np.array_equal(other.x_val, data.x_val)
    # max_train keeps the first images: their union with the validation images is those 100
    first, _ = load_data("mnist", fake_root, split=0.25, seed=3, max_train=None)
    kept = np.concatenate([data.x_train, data.x_val])
    assert {r.tobytes() for r in kept} < {r.tobytes() for r in np.concatenate([first.x_train, first.x_val])}
    assert len({r.tobytes() for r in kept}) == 100


def test_load_data_split_0_has_no_validation_split_and_trains(fake_root):
    """split 0 gave a validation split of 0 images, which fit now refuses (an empty split has no
    best epoch); it is None, as for the toy sets, and fit reports the last epoch."""
    from refbinn.nn import softmax_cross_entropy
    from refbinn.train import TrainConfig, fit
    data, _ = load_data("mnist", fake_root, split=0.0, seed=3, max_train=40)
    assert data.x_val is None and data.y_val is None and data.n_train == 40
    from refbinn.models import mlp_continual
    from refbinn.optim import Adam
    out = fit(mlp_continual(hidden=(8,)), Adam(), data, softmax_cross_entropy,
              TrainConfig(epochs=1, batch_size=10, quiet=True))
    record = out["history"]["epochs"][0]
    assert "val_acc_mode" not in record and "test_acc_mode" in record


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_load_data_cifar_is_split_and_augmented_with_black_padding(kind, fake_root):
    data, extra = load_data(kind, fake_root, max_train=40)
    assert extra is None and data.x_train.shape == (36, 3, 32, 32) and len(data.x_val) == 4
    assert data.y_train.dtype == np.int64
    x = np.full((8, 3, 32, 32), 5.0, np.float32)
    out = data.augment(x, np.random.default_rng(0))
    black = D.normalized_black(kind)                      # a black pixel, normalised, per channel
    padded = out != 5.0
    assert padded.any()
    for c in range(3):
        np.testing.assert_array_equal(out[:, c][padded[:, c]], black[c])


def test_two_moons_standardised_float32():
    data, extra = load_data("two-moons", seed=0)
    assert data.x_train.shape == (200, 2) and len(data.x_test) == 50
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    np.testing.assert_allclose(data.x_train.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(data.x_train.std(0), 1.0, rtol=1e-5)
    assert np.all(extra["std"] > 0) and extra["mean"].shape == (2,)
    # drawn from Generator(seed): 200 training points, then 50 test points, noise 0.1
    rng = np.random.default_rng(0)
    (x, _), (xt, _) = D.two_moons(200, noise=0.1, rng=rng), D.two_moons(50, noise=0.1, rng=rng)
    np.testing.assert_array_equal(data.x_train, ((x - extra["mean"]) / extra["std"]).astype(np.float32))
    np.testing.assert_array_equal(data.x_test, ((xt - extra["mean"]) / extra["std"]).astype(np.float32))


def test_run_result_leaves_out_the_data_object(tmp_path):
    # Snelson's settings carry its data object ('extra', for the plot's grid); the result is JSON
    import json
    from refbinn.experiments import run
    res = run("snelson", "ste", "sn", {"epochs": 1}, out=str(tmp_path), quiet=True, log=lambda m: None)
    assert "extra" not in res["settings"] and res["settings"]["dataset"] == "snelson"
    assert json.loads((tmp_path / "sn.json").read_text())["settings"] == json.loads(json.dumps(res["settings"]))


def test_run_refuses_a_results_file_that_is_a_folder_before_training(tmp_path, monkeypatch):
    from refbinn.experiments import run

    def no_work(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr("refbinn.train.fit", no_work)
    (tmp_path / "sn.json").mkdir()
    with pytest.raises(ValueError, match="the results file .*sn.json is a folder"):
        run("snelson", "ste", "sn", {"epochs": 1}, out=str(tmp_path), quiet=True, log=lambda m: None)
