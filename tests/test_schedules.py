"""Learning-rate schedules against hand-computed values and torch's formulas."""
import functools
import math

import numpy as np
import pytest

from refbinn.train import schedules as S


def torch_cosine_closed_form(base_lr, T_max, eta_min, last_epoch):
    # torch.optim.lr_scheduler.CosineAnnealingLR._get_closed_form_lr
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * last_epoch / T_max)) / 2


def torch_cosine_recursive(base_lr, T_max, eta_min, n_steps):
    """The values torch's ``scheduler.step()`` produces (the chainable form of
    ``CosineAnnealingLR.get_lr``), for last_epoch = 0 .. n_steps."""
    lrs = [base_lr]
    for last_epoch in range(1, n_steps + 1):
        cur = lrs[-1]
        if (last_epoch - 1 - T_max) % (2 * T_max) == 0:
            new = cur + (base_lr - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
        else:
            new = ((1 + math.cos(math.pi * last_epoch / T_max))
                   / (1 + math.cos(math.pi * (last_epoch - 1) / T_max)) * (cur - eta_min) + eta_min)
        lrs.append(new)
    return lrs


# -- cosine -----------------------------------------------------------------------
def test_cosine_hand_values():
    c = S.cosine(1.0, 4)
    want = [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2, 0.0]
    np.testing.assert_allclose([c(e) for e in range(5)], want, rtol=0, atol=1e-15)
    c = S.cosine(2e-3, 4, eta_min=1e-3)
    assert c(0) == 2e-3 and c(2) == pytest.approx(1.5e-3, abs=1e-18) and c(4) == 1e-3



# -- warm-up then cosine (VISPA) ---------------------------------------------------------
def test_warmup_cosine_hand_values():
    s = S.warmup_cosine(0.1, 5, warmup=2)
    assert [s(0), s(1), s(2)] == [0.05, 0.1, 0.1]           # linear up to the peak at warmup - 1, then cosine
    assert s(3) == pytest.approx(0.1 * (1 + math.cos(math.pi / 3)) / 2, rel=1e-15)
    assert s(5) == pytest.approx(0.0, abs=1e-18)
    s = S.warmup_cosine(2e-3, 3, warmup=0, eta_min=1e-3)
    assert s(0) == 2e-3 and s(3) == pytest.approx(1e-3, rel=1e-15)
    s = S.warmup_cosine(0.1, 5)                              # default: one warm-up epoch
    assert [s(0), s(1)] == [0.1, 0.1]
    assert s(2) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-15)


@pytest.mark.parametrize("kw, match", [
    (dict(warmup=5), r"warmup must be an integer in \[0, 4\]"),
    (dict(warmup=-1), r"warmup must be an integer in \[0, 4\]"),
    (dict(warmup=1.5), "warmup must be an integer"),
    (dict(eta_min=-1.0), "eta_min must be"),
    (dict(epochs=0), "epochs must be an integer in"),
    (dict(lr=0.0), r"lr must be in \(0, inf\)"),          # the peak must be > 0 (cosine allows 0)
])
def test_warmup_cosine_refuses(kw, match):
    with pytest.raises(ValueError, match=match):
        S.warmup_cosine(**{"lr": 0.1, "epochs": 5, **kw})


def test_cosine_off_by_one_is_one_epoch_ahead():
    # Authors' loop: `for epoch in range(E): scheduler.step(); train(...)`, so epoch e trains
    # with the value torch holds at last_epoch = e + 1; the last epoch trains with eta_min.
    E, lr, eta = 7, 1e-3, 1e-16
    plain, shifted = S.cosine(lr, E, eta), S.cosine(lr, E, eta, off_by_one=True)
    for e in range(E):
        assert shifted(e) == plain(e + 1)
    assert shifted(0) < lr
    assert shifted(E - 1) == pytest.approx(eta, rel=1e-12, abs=1e-19)
    assert plain(0) == lr


@pytest.mark.parametrize("lr,T,eta", [(1e-3, 100, 0.0), (3e-4, 500, 1e-16), (0.1, 7, 1e-3), (1.0, 1, 0.0)])
def test_cosine_matches_torch_closed_and_recursive_forms(lr, T, eta):
    ours = S.cosine(lr, T, eta)
    rec = torch_cosine_recursive(lr, T, eta, 2 * T + 3)
    for e in range(2 * T + 4):                          # past T_max too: the cosine rises again
        assert ours(e) == torch_cosine_closed_form(lr, T, eta, e)
        assert ours(e) == pytest.approx(rec[e], rel=1e-9, abs=1e-12 * lr)


@pytest.mark.torch
def test_cosine_against_torch_scheduler():
    torch = pytest.importorskip("torch")
    E, lr, eta = 12, 1e-2, 1e-16
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=E, eta_min=eta)
    plain, shifted = S.cosine(lr, E, eta), S.cosine(lr, E, eta, off_by_one=True)
    for e in range(E):
        assert opt.param_groups[0]["lr"] == pytest.approx(plain(e), rel=1e-9, abs=1e-15)
        opt.step()
        sched.step()                                  # torch convention: step at the end
        assert opt.param_groups[0]["lr"] == pytest.approx(shifted(e), rel=1e-9, abs=1e-15)


# -- step decay, milestones, geometric ---------------------------------------------
def test_step_decay_values():
    s = S.step_decay(1e-4, 100, 0.1)
    assert [s(0), s(99)] == [1e-4, 1e-4]
    assert s(100) == 1e-4 * 0.1 and s(250) == 1e-4 * 0.1 ** 2
    s = S.step_decay(1e-3, 7000, 0.2)                   # PMF MNIST, per iteration
    assert s(6999) == 1e-3 and s(7000) == pytest.approx(2e-4, rel=1e-15)


def test_milestones_values_match_torch_multisteplr():
    m = S.milestones(1e-3)                              # two moons: x0.1 at 1500 and 2500
    assert [m(0), m(1499)] == [1e-3, 1e-3]
    assert m(1500) == pytest.approx(1e-4, rel=1e-15) and m(2499) == m(1500)
    assert m(2500) == pytest.approx(1e-5, rel=1e-15) and m(10 ** 6) == m(2500)
    m = S.milestones(1.0, at=(5, 2), factor=0.5)        # unsorted input is sorted
    assert [m(e) for e in range(7)] == [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_geometric_endpoints_and_ratio():
    g = S.geometric(1e-4, 1e-5, 5000)                   # Snelson
    assert g(0) == 1e-4
    assert g(5000) == pytest.approx(1e-5, rel=1e-14)
    r = 0.1 ** (1 / 5000)
    for e in (1, 17, 2500, 4999):
        assert g(e) == pytest.approx(1e-4 * r ** e, rel=1e-12)
        assert g(e) / g(e - 1) == pytest.approx(r, rel=1e-12)
    g = S.geometric(8.0, 1.0, 3)
    np.testing.assert_allclose([g(e) for e in range(4)], [8.0, 4.0, 2.0, 1.0], rtol=1e-15)


def test_per_task_restarts():
    base = S.cosine(1e-3, 100)
    p = S.per_task(base, 100)
    for e in (0, 1, 57, 99):
        for task in range(5):
            assert p(task * 100 + e) == base(e)
    assert p(100) == 1e-3 and p(99) < 1e-6


def test_values_are_python_floats_and_keep_float32():
    for s in (S.cosine(1e-3, 10), S.step_decay(1e-3, 2, 0.5), S.geometric(1e-3, 1e-4, 10),
              S.milestones(1e-3), S.per_task(S.cosine(1e-3, 10), 10)):
        v = s(np.int64(3))
        assert type(v) is float
        assert (np.ones(2, np.float32) * v).dtype == np.float32


@pytest.mark.parametrize("scalar", [np.float32, np.float64])
def test_numpy_scalar_settings_still_give_python_floats(scalar):
    # e.g. a learning rate taken from np.logspace: a NumPy float64 would turn float32 arithmetic into float64
    lr, lr_end = scalar(1e-3), scalar(1e-4)
    for s in (S.cosine(lr, 10, eta_min=scalar(1e-5)), S.step_decay(lr, 2, scalar(0.5)),
              S.geometric(lr, lr_end, 10), S.milestones(lr, at=(2,), factor=scalar(0.5)),
              S.warmup_cosine(lr, 10, warmup=2, eta_min=scalar(1e-5))):
        for v in (s(0), s(3)):                  # warmup_cosine: one value in each phase
            assert type(v) is float, s
            assert (np.ones(2, np.float32) * v).dtype == np.float32


def test_every_maker_returns_a_partial_of_its_closed_form():
    # the module's promise: the settings show in the repr
    for s, form in ((S.cosine(1e-3, 10), S.cosine_lr), (S.step_decay(1e-3, 2, 0.5), S.step_decay_lr),
                    (S.warmup_cosine(1e-3, 10, warmup=2), S.warmup_cosine_lr)):
        assert isinstance(s, functools.partial) and s.func is form, s
    assert "warmup=2" in repr(S.warmup_cosine(1e-3, 10, warmup=2))


def test_documented_boundary_values_are_accepted():
    # lr >= 0 and factor in (0, 1]: the closed ends are allowed
    assert [S.cosine(0.0, 3)(e) for e in range(4)] == [0.0] * 4
    assert [S.step_decay(1e-3, 2, 1.0)(e) for e in (0, 2, 9)] == [1e-3] * 3
    assert [S.milestones(1e-3, at=(1, 2), factor=1.0)(e) for e in (0, 1, 5)] == [1e-3] * 3
    assert S.step_decay(0.0, 2, 0.5)(3) == 0.0 and S.milestones(0.0)(2000) == 0.0


# -- bad arguments -----------------------------------------------------------------
@pytest.mark.parametrize("make,name", [
    (lambda: S.cosine(-1.0, 10), "lr"),
    (lambda: S.cosine(1.0, 0), "epochs"),
    (lambda: S.cosine(1.0, 2.5), "epochs"),
    (lambda: S.cosine(1.0, 10, eta_min=-1), "eta_min"),
    (lambda: S.step_decay(1.0, 0, 0.1), "every"),
    (lambda: S.step_decay(1.0, 10, 0.0), "factor"),
    (lambda: S.step_decay(1.0, 10, 1.5), "factor"),
    (lambda: S.geometric(0.0, 1.0, 10), "lr_start"),
    (lambda: S.geometric(1.0, -1.0, 10), "lr_end"),
    (lambda: S.geometric(1.0, 0.0, 10), "lr_end"),
    (lambda: S.step_decay(-1.0, 10, 0.1), "lr"),
    (lambda: S.milestones(-1.0), "lr"),
    (lambda: S.geometric(1.0, 0.1, 0), "epochs"),
    (lambda: S.milestones(1.0, at=(-1,)), "at"),
    (lambda: S.milestones(1.0, factor=2.0), "factor"),
    (lambda: S.per_task(3.0, 10), "schedule"),
    (lambda: S.per_task(S.cosine(1.0, 10), 0), "epochs_per_task"),
])
def test_bad_arguments_name_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize("epoch", [-1, 1.5, "3", None])
@pytest.mark.parametrize("make", [
    lambda: S.cosine(1.0, 10), lambda: S.step_decay(1.0, 2, 0.5), lambda: S.geometric(1.0, 0.1, 10),
    lambda: S.milestones(1.0, at=(2,)), lambda: S.per_task(S.cosine(1.0, 10), 10),
    lambda: S.warmup_cosine(1.0, 10, warmup=2),
], ids=["cosine", "step_decay", "geometric", "milestones", "per_task", "warmup_cosine"])
def test_bad_epoch(make, epoch):
    # checked by every schedule: -1 would otherwise give lr / factor, schedule(9) or 0 silently
    with pytest.raises(ValueError, match="epoch"):
        make()(epoch)
