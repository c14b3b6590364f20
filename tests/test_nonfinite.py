"""Optimizers refuse non-finite hyperparameters and never return a non-finite state (issue 13).

Constructors: NaN and +-inf are out of every range (``refbinn.checks.check_range``).
Updates: a step whose new state would hold NaN or inf raises FloatingPointError naming the
parameter, and the state passed in is left exactly as it was.
"""
import math

import numpy as np
import pytest

from refbinn.optim.finite_state import all_finite, checked_state
from refbinn.optim.registry import OPTIMIZERS

BASE = {"bayesbinn": dict(N=100.0, tau=1.0, backend="numpy"), "vispa": dict(backend="numpy")}
FLOAT_HYPERS = {"bayesbinn": ("N", "tau", "lr", "beta", "lam_init", "lam_init_std"),
                "ste": ("lr", "eps", "clip_value", "clip_norm"), "bop": ("threshold", "gamma"),
                "pmf": ("lr", "rho", "beta_init", "beta_max", "weight_decay", "eps"),
                "adam": ("lr", "eps", "weight_decay"), "vispa": ("lr", "scale", "momentum", "weight_decay")}


@pytest.mark.parametrize("name,hyper,bad", [(n, h, b) for n, hs in FLOAT_HYPERS.items() for h in hs
                                            for b in (math.inf, -math.inf, math.nan)])
def test_constructor_rejects_non_finite(name, hyper, bad):
    with pytest.raises(ValueError, match=hyper):
        OPTIMIZERS[name](**{**BASE.get(name, {}), hyper: bad})


def _step_blowing_up(name):
    """(optimizer, state, grads, lr) for a step whose new state overflows float32."""
    params = {"w": np.linspace(-0.5, 0.5, 6, dtype=np.float32).reshape(2, 3)}
    opt = OPTIMIZERS[name](**({"backend": "numpy"} if name != "bop" else {}))
    state = opt.init(params, np.random.default_rng(0))
    huge = {"w": np.full((2, 3), 1e30, np.float32)}            # finite, but its square is not
    return opt, state, huge, (1e300 if name == "pmf" else None)


@pytest.mark.filterwarnings("error::RuntimeWarning")                 # the error alone, no numpy warnings
@pytest.mark.parametrize("name", ["adam", "ste", "pmf"])
def test_update_refuses_a_non_finite_state_and_keeps_the_old_one(name):
    opt, state, grads, lr = _step_blowing_up(name)
    before = [{k: v.copy() for k, v in f.items()} if isinstance(f, dict) else f for f in state]
    with pytest.raises(FloatingPointError, match="parameter 'w'"):
        opt.update(grads, state, lr=lr)
    for f, b in zip(state, before):
        if isinstance(f, dict):
            assert all(np.array_equal(f[k], b[k]) for k in f)
        else:
            assert f == b


def test_checked_state_names_field_and_parameter():
    from refbinn.optim.bop import BopState
    ok = BopState({"w": np.ones(3, np.float32)}, {"w": np.zeros(3, np.float32)})
    assert checked_state(ok, "Bop") is ok
    bad = BopState({"w": np.ones(3, np.float32)}, {"w": np.array([0, np.inf, 0], np.float32)})
    with pytest.raises(FloatingPointError, match=r"Bop: the update of parameter 'w' made m non-finite"):
        checked_state(bad, "Bop")


@pytest.mark.parametrize("name", ["adam", "ste", "pmf"])
def test_a_squared_gradient_overflow_is_named_as_such(name):
    """|g| of 1e20 in float32 overflows g**2 in Adam's second moment v: the hint said to lower
    the learning rate, which cannot help; it names the squared gradient."""
    from refbinn.optim import PMF, Adam, STEAdam
    opt = {"adam": Adam, "ste": STEAdam, "pmf": PMF}[name]()
    state = opt.init({"w": np.full(3, 0.5, np.float32)}, np.random.default_rng(0))
    noise = opt.sample(state, np.random.default_rng(1))
    grads = [{"w": np.full(3, 1e20, np.float32)}] * len(noise)
    with pytest.raises(FloatingPointError, match=r"made v non-finite \(the squared gradient overflowed"):
        opt.update(grads, state, noise)


@pytest.mark.parametrize("a,want", [(np.zeros(4, np.float32), True), (np.array([1e30, 1e30], np.float32), True),
                                    (np.array([1.0, np.nan]), False), (np.array([-np.inf]), False),
                                    (np.zeros(0), True), (np.arange(3), True), (2.5, True), (math.inf, False)])
def test_all_finite(a, want):
    """The fast path (a . a) must not call an overflowing but finite array non-finite."""
    assert all_finite(a) is want
