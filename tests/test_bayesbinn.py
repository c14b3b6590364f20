"""BayesBiNN: the equations (spec sections 2-7), the optimizer contract, and the
fused float32 kernels against their NumPy reference.

Tolerances: float64 checks of an identity use rtol 1e-12; kernel-vs-reference
checks allow the few-ulp error of the kernels' exp/log/tanh, amplified by the
condition number of the quantity (stated at each test). Statistical checks use a
fixed seed and 4 standard errors.
"""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numba import njit

from refbinn.optim import _bayesbinn_kernels, load_state, save_state
from refbinn.optim._float32 import exp32, log32, tanh32
from refbinn.optim.bayesbinn import (BayesBiNN, BayesBiNNState, concrete_scale, logistic_noise,
                                     natural_update, open_uniform, relaxed_sample)


@njit(cache=True, error_model="numpy")
def _elementwise(fn_id, x, out):
    """out = exp32/log32/tanh32(x) for fn_id 0/1/2 (serial), as the kernels inline them."""
    for i in range(x.size):
        xi = x[i]
        out[i] = exp32(xi) if fn_id == 0 else (log32(xi) if fn_id == 1 else tanh32(xi))


@pytest.fixture(autouse=True)
def _always_fused(monkeypatch):
    """Exercise the Numba kernels on the small arrays of these tests (the library
    sends arrays below FUSED_MIN_SIZE to the NumPy reference)."""
    import refbinn.optim._backend as module
    monkeypatch.setattr(module, "FUSED_MIN_SIZE", 0)


F32, F64 = np.float32, np.float64
SHAPES = {"fc1.weight": (3, 5), "fc2.weight": (4,)}


def make(param_dtype=F64, shapes=SHAPES, seed=0, **kw):
    kw = {"N": 100, "tau": 1.0, "lr": 0.01, **kw}
    opt = BayesBiNN(**kw)
    params = {k: np.zeros(s, param_dtype) for k, s in shapes.items()}
    return opt, opt.init(params, np.random.default_rng(seed))


def grads_like(state, rng, scale=1.0, n=1):
    return [{k: (scale * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in state.lam.items()}
            for _ in range(n)]


def copy_state(s):
    return BayesBiNNState(*[{k: v.copy() for k, v in d.items()} for d in s[:3]], s.step)


def assert_state_equal(a, b):
    assert a.step == b.step
    for da, db in zip(a[:3], b[:3]):
        assert list(da) == list(db)
        for k in da:
            assert da[k].dtype == db[k].dtype
            np.testing.assert_array_equal(da[k], db[k])


# -- spec section 7: the authors' numerics ------------------------------------------
def test_official_scale_per_unit_N_is_exactly_1e10_at_lam10_tau1e10_float32():
    """Spec 7.1-7.2: in float32 tanh(10) == 1 and w_r == +-1, so the 1e-10 constants
    set the factor: (1e-10/1e-10)/(1 - 1 + 1e-10) = 1e10, exactly, for every u."""
    assert np.tanh(F32(10)) == 1
    lam = np.full(1000, 10, F32)
    u = open_uniform(np.random.default_rng(0), lam.shape, F32)
    s = concrete_scale(lam, u, 1e-10, 1, "official")
    assert s.dtype == F32
    assert np.all(s == F32(1e10))
    # tau = 1e-8: about 1e8 (float32 rounding of 1e-10/1e-8)
    np.testing.assert_allclose(concrete_scale(lam, u, 1e-8, 1, "official"), 1e8, rtol=1e-6)
    # with N: the same number times N
    assert np.all(concrete_scale(lam, u, 1e-10, 54000, "official") == F32(1e10) * F32(54000))


def test_float64_port_of_official_formula_gives_1_2e8_and_exact_math_gives_0():
    """Spec 7.2. The issue text's '`exact` in float64 gives ~1.2e8' describes the
    float64 PORT of the official formula: there tanh(10) < 1, so the factor is
    1/(1 - tanh(10)**2 + 1e-10) ~ 1.2e8, ~100x below the float32 code's 1e10. The
    exact log-cosh form (the true concrete derivative, N/tau*(cosh lam/cosh z)**2 with
    |z| ~ 1e11) underflows to 0 in either dtype."""
    lam = np.full(100, 10.0)
    u = open_uniform(np.random.default_rng(1), lam.shape, F64)
    port = concrete_scale(lam, u, 1e-10, 1, "official")
    expected = 1.0 / (1.0 - np.tanh(10.0) ** 2 + 1e-10)
    np.testing.assert_allclose(port, expected, rtol=1e-12)
    assert 1.1e8 < expected < 1.3e8
    for dt in (F32, F64):
        lam_d = lam.astype(dt)
        exact = concrete_scale(lam_d, u.astype(dt), 1e-10, 54000, "exact")
        assert exact.dtype == dt and np.all(exact == 0)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_official_mu_lags_one_step_and_exact_mu_does_not(backend):
    """Spec 7.3: after step t the official state holds tanh(lam_{t-1}); exact holds tanh(lam_t)."""
    rng = np.random.default_rng(3)
    hist = {}
    for numerics in ("official", "exact"):
        opt, s0 = make(F32, numerics=numerics, backend=backend, lam_init=1.0, tau=1.0)
        r = np.random.default_rng(4)
        s1 = opt.update(grads_like(s0, rng), s0, opt.sample(s0, r))
        s2 = opt.update(grads_like(s1, rng), s1, opt.sample(s1, r))
        hist[numerics] = (s0, s1, s2)
    ulps = 3 if backend == "numba" else 0                           # kernel tanh: <= 3 ulp

    def close(mu, lam):                                             # mu == float32(tanh(lam))
        ref = np.tanh(lam.astype(F64)).astype(F32)
        return np.all(np.abs(mu - ref) <= ulps * np.spacing(np.abs(ref)))

    s0, s1, s2 = hist["official"]
    for k in s0.lam:
        assert close(s1.mu[k], s0.lam[k]) and close(s2.mu[k], s1.lam[k])
        assert not close(s2.mu[k], s2.lam[k])
    s0, s1, s2 = hist["exact"]
    for k in s0.lam:
        assert close(s1.mu[k], s1.lam[k]) and close(s2.mu[k], s2.lam[k])


# -- the exact scale ---------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64])
def test_exact_scale_is_finite_without_warnings_over_extreme_inputs(dtype):
    """tau in [1e-12, 10], |lam| up to 1e4, u within one grid step of 0 and 1."""
    eps = 2.0 ** -(np.finfo(dtype).nmant + 1)
    taus = np.logspace(-12, 1, 14)
    lams = np.array([-1e4, -300, -40, -10, -1, -1e-3, 0, 1e-3, 1, 10, 40, 300, 1e4])
    us = np.array([eps, 1e-6, 0.25, 0.5, 0.75, 1 - 1e-6, 1 - eps])
    lam, u = (a.ravel().astype(dtype) for a in np.meshgrid(lams, us))
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for tau in taus:
            s = concrete_scale(lam, u, tau, 54000, "exact")
            assert s.dtype == dtype and np.all(np.isfinite(s)) and np.all(s >= 0)
    # tau > 1 and |lam| = 1e4: (cosh lam/cosh z)**2 ~ e**18000, capped near max/4
    big = concrete_scale(np.array([1e4], dtype), np.array([0.5], dtype), 10.0, 1, "exact")
    top = np.finfo(dtype).max
    assert np.isfinite(big[0]) and top / 4.1 < big[0] <= top / 4


def test_exact_scale_matches_the_naive_formula_where_it_is_well_conditioned():
    rng = np.random.default_rng(5)
    lam = rng.uniform(-3, 3, 500)
    u = rng.uniform(0.05, 0.95, 500)
    for tau in (0.5, 1.0, 2.0):
        w = np.tanh((lam + 0.5 * np.log(u / (1 - u))) / tau)
        naive = 54000 * (1 - w ** 2) / (tau * (1 - np.tanh(lam) ** 2))
        np.testing.assert_allclose(concrete_scale(lam, u, tau, 54000, "exact"), naive, rtol=1e-9)


def test_noise_helpers():
    u = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(logistic_noise(u), [-math.log(9) / 2, 0, math.log(9) / 2], rtol=1e-14)
    np.testing.assert_allclose(relaxed_sample(np.array([0.3]), np.array([0.5]), 0.1), np.tanh(3.0))


def test_open_uniform_is_on_the_open_midpoint_grid():
    rng = np.random.default_rng(6)
    for dt, p in ((F32, 23), (F64, 52)):
        u = open_uniform(rng, (200_000,), dt)
        assert u.dtype == dt and u.min() > 0 and u.max() < 1
        k2 = u.astype(F64) * 2.0 ** (p + 1) if dt == F32 else u * 2.0 ** (p + 1)
        if dt == F32:
            assert np.all(k2 == np.round(k2)) and np.all(k2 % 2 == 1)     # odd multiples of 2**-24
        # mean 1/2 within 4 standard errors (sd of U(0,1) is 1/sqrt(12))
        assert abs(u.mean() - 0.5) < 4 / math.sqrt(12 * u.size)
    assert np.all(np.isfinite(logistic_noise(np.array([2.0 ** -24, 1 - 2.0 ** -24], F32))))


# -- the update rule -------------------------------------------------------------------
def test_update_with_beta0_S1_reweight1_is_the_papers_rule():
    """lam <- (1-lr)*lam - lr*(s*g - lam0)."""
    opt, s0 = make(F64, lr=0.05, lam0=0.3, lam_init=2.0, lam_init_std=1.0)
    rng = np.random.default_rng(7)
    noise = opt.sample(s0, rng)
    g = grads_like(s0, rng)
    s1 = opt.update(g, s0, noise)
    for k, lam in s0.lam.items():
        s = concrete_scale(lam, noise[0][k], 1.0, 100)
        paper = (1 - 0.05) * lam - 0.05 * (s * g[0][k] - 0.3)
        np.testing.assert_allclose(s1.lam[k], paper, rtol=1e-12)
    assert s1.step == 1


def test_point_estimate_branch_S0():
    opt, s0 = make(F64, samples=0, lr=0.1, lam_init=0.7)
    noise = opt.sample(s0, np.random.default_rng(0))
    assert noise == [None]
    fp = opt.forward_params(s0, None)
    for k in s0.lam:
        np.testing.assert_array_equal(fp[k], np.tanh(s0.lam[k]))
    g = grads_like(s0, np.random.default_rng(1))
    s1 = opt.update(g[0], s0)                      # one dict and no noise are accepted for S = 0
    for k, lam in s0.lam.items():
        np.testing.assert_allclose(s1.lam[k], lam - 0.1 * (100 * g[0][k] + lam), rtol=1e-12)


def test_momentum_bias_correction_over_two_steps():
    opt, s0 = make(F64, beta=0.9, lr=0.01, samples=0, lam_init=1.5)
    rng = np.random.default_rng(8)
    g1, g2 = grads_like(s0, rng, n=2)
    s1 = opt.update(g1, s0)
    s2 = opt.update(g2, s1)
    for k, lam0 in s0.lam.items():
        m1 = 0.1 * (100 * g1[k] + lam0)
        lam1 = lam0 - 0.01 * m1 / (1 - 0.9)
        m2 = 0.9 * m1 + 0.1 * (100 * g2[k] + lam1)
        lam2 = lam1 - 0.01 * m2 / (1 - 0.9 ** 2)
        np.testing.assert_allclose(s1.lam[k], lam1, rtol=1e-12)
        np.testing.assert_allclose(s2.momentum[k], m2, rtol=1e-12)
        np.testing.assert_allclose(s2.lam[k], lam2, rtol=1e-12)
    np.testing.assert_allclose(natural_update(np.ones(2), np.zeros(2), np.zeros(2), 0.0, 0.5, 0.0, 1.0, 1)[0],
                               [0.5, 0.5])


@pytest.mark.parametrize("backend, beta", [("numpy", 0.0), ("numpy", 0.9), ("numba", 0.9)])
def test_array_prior_lam0_for_continual_learning(backend, beta):
    """With g = 0 only the prior acts: lam' = lam - lr*(lam - lam0), per weight (at step 1
    with m = 0 the bias correction cancels the (1 - beta))."""
    prior = {k: np.random.default_rng(9).normal(size=s) for k, s in SHAPES.items()}
    opt, s0 = make(F32, lam0=prior, lr=0.25, backend=backend, beta=beta)
    zero = [{k: np.zeros_like(v) for k, v in s0.lam.items()}]
    s1 = opt.update(zero, s0, opt.sample(s0, np.random.default_rng(0)))
    for k, lam in s0.lam.items():
        expected = lam.astype(F64) - 0.25 * (lam.astype(F64) - prior[k].astype(F32))
        np.testing.assert_allclose(s1.lam[k], expected, rtol=4 * np.finfo(F32).eps)
    with pytest.raises(ValueError, match=r"lam0\['fc1.weight'\] has shape \(2, 2\).*\(3, 5\)"):
        make(lam0={"fc1.weight": np.zeros((2, 2)), "fc2.weight": np.zeros(4)})
    with pytest.raises(ValueError, match="lam0 has no entry for parameter 'fc2.weight'"):
        make(lam0={"fc1.weight": np.zeros((3, 5))})


@pytest.mark.parametrize("kw, match", [
    (dict(lr=0.0), r"lr must be in \(0, inf\)"),
    (dict(tau=-1.0), r"tau must be in \(0, inf\)"),
    (dict(N=0), r"N must be in \(0, inf\)"),
    (dict(beta=1.0), r"beta must be in \[0, 1\)"),
    (dict(beta=-0.1), r"beta must be in \[0, 1\)"),
    (dict(samples=-1), r"samples must be in \[0, inf\)"),
    (dict(samples=1.5), r"samples must be an integer in \[0, inf\)"),
    (dict(reweight=-1.0), r"reweight must be in \[0, inf\)"),
    (dict(lam_init_std=-1.0), r"lam_init_std must be in \[0, inf\)"),
    (dict(tau=float("nan")), r"tau must be in \(0, inf\)"),
    (dict(numerics="fast"), r"numerics must be one of 'exact', 'official'"),
    (dict(dtype="int32"), r"dtype must be None, 'float32' or 'float64'"),
    (dict(backend="cuda"), r"backend must be one of 'numba', 'numpy'"),
])
def test_bad_hyperparameters_raise_naming_argument_and_range(kw, match):
    with pytest.raises(ValueError, match=match):
        BayesBiNN(**{"N": 10, "tau": 1.0, **kw})


def test_bad_calls_raise():
    opt, s0 = make(F32)
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        opt.init({"w": np.zeros(3)})
    with pytest.raises(ValueError, match="needs the noise"):
        opt.update(grads_like(s0, np.random.default_rng(0)), s0)
    noise = opt.sample(s0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"gradient of parameter 'fc2.weight' has shape \(5,\), expected \(4,\)"):
        opt.update({"fc1.weight": np.zeros((3, 5), F32), "fc2.weight": np.zeros(5, F32)}, s0, noise)
    with pytest.raises(ValueError, match="no entry for parameter 'fc2.weight'"):
        opt.update({"fc1.weight": np.zeros((3, 5), F32)}, s0, noise)
    with pytest.raises(ValueError, match=r"lr must be in \(0, inf\)"):
        opt.update(grads_like(s0, np.random.default_rng(0)), s0, noise, lr=-1.0)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("samples", [1, 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_gradient_raises_naming_parameter_and_leaves_state(backend, samples, bad):
    opt, s0 = make(F32, samples=samples, backend=backend)
    before = copy_state(s0)
    rng = np.random.default_rng(10)
    noise = opt.sample(s0, rng)
    g = grads_like(s0, rng, n=samples)
    g[-1]["fc2.weight"][2] = bad
    with pytest.raises(FloatingPointError, match="parameter 'fc2.weight'"):
        opt.update(g, s0, noise)
    assert_state_equal(s0, before)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_overflowing_step_raises_and_leaves_state(backend):
    """tau = 10 and |lam| = 80: (cosh lam/cosh z)**2 exceeds float32; capped, then
    s*g overflows lam, which must raise rather than store inf."""
    opt, s0 = make(F32, tau=10.0, lam_init=80.0, lr=0.5, backend=backend)
    before = copy_state(s0)
    noise = opt.sample(s0, np.random.default_rng(0))
    g = [{k: np.full(v.shape, 1e30, F32) for k, v in s0.lam.items()}]
    with pytest.raises(FloatingPointError, match="parameter 'fc1.weight'.*non-finite"):
        opt.update(g, s0, noise)
    assert_state_equal(s0, before)


# -- state: save/load, resume, dtypes, determinism ---------------------------------------
def test_save_load_round_trip_and_bit_identical_resume(tmp_path):
    prior = {k: np.linspace(-1, 1, math.prod(s)).reshape(s) for k, s in SHAPES.items()}
    opt, s0 = make(F32, lam0=prior, beta=0.9, samples=2, numerics="official", tau=0.5)

    def run(opt, state, seed, steps):
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            noise = opt.sample(state, rng)
            state = opt.update(grads_like(state, rng, n=len(noise)), state, noise)
        return state

    mid = run(opt, s0, 1, 3)
    save_state(tmp_path / "bb.npz", opt, mid)
    opt2, mid2 = load_state(tmp_path / "bb.npz")
    assert type(opt2) is BayesBiNN and isinstance(mid2, BayesBiNNState)
    cfg, cfg2 = opt.config(), opt2.config()
    assert cfg.keys() == cfg2.keys()
    for k in cfg:
        if k != "lam0":
            assert cfg[k] == cfg2[k]
    for k in prior:
        np.testing.assert_array_equal(cfg2["lam0"][k], prior[k])
        assert cfg2["lam0"][k].dtype == prior[k].dtype
    assert_state_equal(mid, mid2)
    assert_state_equal(run(opt, mid, 2, 3), run(opt2, mid2, 2, 3))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_dtype_is_preserved_everywhere(dtype):
    opt, s0 = make(dtype, samples=2, beta=0.9, lam0={k: np.ones(v) for k, v in SHAPES.items()})
    rng = np.random.default_rng(11)
    noise = opt.sample(s0, rng)
    s1 = opt.update(grads_like(s0, rng, n=2), s0, noise)
    outs = [*s1[:3], *noise, opt.forward_params(s1, noise[0]), opt.forward_params(s1, None),
            opt.params(s1), opt.sample_params(s1, rng)]
    for d in outs:
        for v in d.values():
            assert v.dtype == dtype
    assert isinstance(s1.step, int)
    # 'official' defaults to float32 state whatever the params are; dtype= overrides
    assert make(F64, numerics="official")[1].lam["fc1.weight"].dtype == F32
    assert make(F32, dtype="float64")[1].lam["fc1.weight"].dtype == F64


def test_deterministic_core_same_u_same_numbers_float64_u_accepted():
    """A port fed the same u (even stored as float64) reproduces the step exactly."""
    opt, s0 = make(F32, samples=2)
    rng = np.random.default_rng(12)
    noise = opt.sample(s0, rng)
    g = grads_like(s0, rng, n=2)
    a = opt.update(g, s0, noise)
    b = BayesBiNN(**opt.config()).update(g, s0, [{k: v.astype(F64) for k, v in n.items()} for n in noise])
    assert_state_equal(a, b)
    fa = opt.forward_params(s0, noise[0])
    fb = opt.forward_params(s0, {k: v.astype(F64) for k, v in noise[0].items()})
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])


def test_inputs_are_not_mutated():
    opt, s0 = make(F32, beta=0.9, lam0={k: np.ones(v) for k, v in SHAPES.items()})
    before = copy_state(s0)
    rng = np.random.default_rng(13)
    noise = opt.sample(s0, rng)
    g = grads_like(s0, rng)
    g_copy = [{k: v.copy() for k, v in g[0].items()}]
    opt.update(g, s0, noise)
    opt.update(g, s0, noise)
    assert_state_equal(s0, before)
    for k in g[0]:
        np.testing.assert_array_equal(g[0][k], g_copy[0][k])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_returned_states_stay_intact_while_referenced(backend):
    """The fused path recycles output buffers of dropped states; live ones must never be
    written to, including the forward weights."""
    opt, s0 = make(F32, backend=backend, shapes={"w": (64, 48)})
    rng = np.random.default_rng(18)
    states, copies, fwd, fwd_copies = [s0], [copy_state(s0)], [], []
    for _ in range(6):
        noise = opt.sample(states[-1], rng)
        fwd.append(opt.forward_params(states[-1], noise[0]))
        fwd_copies.append({k: v.copy() for k, v in fwd[-1].items()})
        states.append(opt.update(grads_like(states[-1], rng), states[-1], noise))
        copies.append(copy_state(states[-1]))
        opt.update(grads_like(states[-1], rng), states[-1], noise)     # dropped at once: recycled
    for st_, cp in zip(states, copies):
        assert_state_equal(st_, cp)
    for f, fc in zip(fwd, fwd_copies):
        np.testing.assert_array_equal(f["w"], fc["w"])


# -- initialisation and the weights used for prediction -------------------------------------
def test_init_signs_and_noise_std():
    opt, s = make(F64, shapes={"w": (200, 100)}, lam_init=10.0)
    lam = s.lam["w"]
    assert set(np.unique(lam)) == {-10.0, 10.0}
    n = lam.size
    assert abs(np.mean(lam > 0) - 0.5) < 4 * 0.5 / math.sqrt(n)
    np.testing.assert_array_equal(s.mu["w"], np.tanh(lam))
    assert not s.momentum["w"].any() and s.step == 0
    # lam_init_std is a standard deviation; sample sd has standard error ~ sd/sqrt(2n)
    _, s = make(F64, shapes={"w": (200, 100)}, lam_init=10.0, lam_init_std=2.0)
    resid = s.lam["w"] - np.where(s.lam["w"] > 0, 10.0, -10.0)
    assert abs(resid.std() - 2.0) < 4 * 2.0 / math.sqrt(2 * n)


def test_mode_maps_zero_to_plus_one_and_official_uses_lagged_mu():
    lam = {"w": np.array([-2.0, -0.0, 0.0, 3.0, -1.0])}
    mu = {"w": np.array([-0.5, 0.0, -0.0, 0.2, 0.4])}         # last: sign(mu) != sign(lam)
    state = BayesBiNNState(lam, {"w": np.zeros(5)}, mu, 4)
    exact = BayesBiNN(N=1, tau=1.0).params(state)["w"]
    official = BayesBiNN(N=1, tau=1.0, numerics="official", dtype="float64").params(state)["w"]
    np.testing.assert_array_equal(exact, [-1, 1, 1, 1, -1])
    np.testing.assert_array_equal(official, [-1, 1, 1, 1, 1])


def test_sample_params_is_bernoulli_sigmoid_2lam():
    c = 0.4
    state = BayesBiNNState({"w": np.full(40_000, c)}, {}, {}, 0)
    opt = BayesBiNN(N=1, tau=1.0)
    w = opt.sample_params(state, np.random.default_rng(14))["w"]
    assert set(np.unique(w)) == {-1.0, 1.0}
    p = 1 / (1 + math.exp(-2 * c))
    assert abs(np.mean(w == 1) - p) < 4 * math.sqrt(p * (1 - p) / w.size)
    huge = BayesBiNNState({"w": np.array([-1e4, 1e4, -50.0, 50.0])}, {}, {}, 0)
    np.testing.assert_array_equal(opt.sample_params(huge, np.random.default_rng(0))["w"], [-1, 1, -1, 1])


# -- fused kernels vs the NumPy reference -------------------------------------------------
def _ulps(a, ref):
    ref32 = ref.astype(F32)
    return np.abs(a.astype(F64) - ref) / np.spacing(np.abs(ref32)).astype(F64)


def test_kernel_exp_log_tanh_within_3_ulp_and_edge_values():
    rng = np.random.default_rng(15)
    x = np.concatenate([rng.uniform(-87.3, 88.7, 20_000), rng.uniform(-2, 2, 20_000),
                        rng.uniform(-1e-3, 1e-3, 2000)]).astype(F32)
    out = np.empty_like(x)
    _elementwise(0, x, out)
    assert _ulps(out, np.exp(x.astype(F64))).max() <= 3
    _elementwise(2, x, out)
    assert _ulps(out, np.tanh(x.astype(F64))).max() <= 3
    y = np.concatenate([np.exp(rng.uniform(-103, 88, 20_000)), rng.uniform(0.5, 2, 20_000)]).astype(F32)
    y = y[(y > 0) & np.isfinite(y)]
    out = np.empty_like(y)
    _elementwise(1, y, out)
    assert _ulps(out, np.log(y.astype(F64))).max() <= 3

    def run(fn_id, values):
        v = np.array(values, F32)
        o = np.empty_like(v)
        _elementwise(fn_id, v, o)
        return o

    e = run(0, [np.nan, np.inf, -np.inf, 0.0, 88.8, -87.4, -1e30])
    assert np.isnan(e[0]) and e[1] == np.inf and e[4] == np.inf
    assert e[2] == 0 and e[3] == 1 and e[5] == 0 and e[6] == 0       # below 1.2e-38: flushed to 0
    t = run(2, [np.nan, np.inf, -np.inf, 0.0, -0.0, 9.5, -9.5, 30.0, 1e30])
    assert np.isnan(t[0]) and t[1] == 1 and t[2] == -1 and t[3] == 0 and np.signbit(t[4])
    assert np.all(np.abs(t[5:]) == 1)                                # the fast paths rely on this
    lg = run(1, [0.0, -1.0, np.inf, np.nan, 1e-45, 1.0])
    assert lg[0] == -np.inf and np.isnan(lg[1]) and lg[2] == np.inf and np.isnan(lg[3])
    tiny = math.log(float(F32(1e-45)))                               # the smallest subnormal
    assert abs(lg[4] - tiny) < 1e-5 * abs(tiny) and lg[5] == 0


def test_kernel_delta_bound_bounds_the_logistic_noise():
    """The fast paths rely on |delta| <= _delta_bound(u)."""
    rng = np.random.default_rng(16)
    u = np.concatenate([open_uniform(rng, (300,), F32), rng.uniform(0, 1, 300).astype(F32),
                        np.array([2.0 ** -24, 1 - 2.0 ** -24, 0.5, 0.25, 0.75, 1e-30, 1e-45], F32)])
    u = u[(u > 0) & (u < 1)]
    delta = np.abs(0.5 * np.log(u.astype(F64) / (1 - u.astype(F64))))
    bound = np.array([_bayesbinn_kernels._delta_bound(F32(x)) for x in u])
    assert np.all(bound >= delta)
    normal = u >= np.finfo(F32).tiny
    assert np.all(bound[normal] <= delta[normal] + 1.1) and np.all(np.isinf(bound[~normal]))
    assert _bayesbinn_kernels._delta_bound(F32(0.0)) == np.inf and _bayesbinn_kernels._delta_bound(F32(np.nan)) == np.inf


N_MIXED = 4 * 1024 + 77          # 4 blocks of 1024 and a remainder
SAT = slice(1024, 2048)          # a block the kernels take through their cheap loops at tau = 1e-10


def _mixed_state(n, rng):
    """Saturated lam (|lam| in [10, 12]) in blocks 0-1, unsaturated (|lam| < 3) after;
    one small weight in block 0 sends that block through the full loop."""
    lam = rng.uniform(10, 12, n) * rng.choice([-1, 1], n)
    lam[2048:] = rng.uniform(-3, 3, n - 2048)
    lam[100] = 0.1
    lam = lam.astype(F32)
    return BayesBiNNState({"w": lam}, {"w": rng.normal(0, 1, n).astype(F32)},
                          {"w": np.tanh(lam.astype(F64)).astype(F32)}, 5)


def _dz(lam, u, tau):
    """Bound on the kernels' error in z = (lam + delta)/tau: delta from a 3-ulp log, and
    the float32 sum lam + delta may then round one ulp apart."""
    delta = logistic_noise(u)
    return (3 * np.spacing(np.abs(delta)) + np.spacing(np.abs(lam + delta))).astype(F64) / tau


def _ghat_error_bound(opt, state, noise, g):
    """Per-weight bound on |g_hat(kernel) - g_hat(reference)| from the kernels' ulp errors.

    z is off by up to dz (``_dz``); both scales move by at most a factor exp(2*dz)
    (d log cosh(z)**-2/dz and d log(1 - w_r**2)/dz are at most 2 in size). On top:
    exact: s = exp(E) with E summed in float32 from 3-ulp exps: (8 + 2|E|)*eps.
    official: w_r from a 3-ulp tanh; 1 - w_r**2 + 1e-10 then has relative error
    6*eps*|w_r|/(1 - w_r**2 + 1e-10), plus a few ulp of arithmetic.
    Summed over samples with |s*g| as weights; S = 0 has no transcendental.
    """
    eps = float(np.finfo(F32).eps)
    lam, mu = state.lam["w"].astype(F64), state.mu["w"].astype(F64)
    if noise[0] is None:
        return np.zeros_like(lam)
    total = np.zeros_like(lam)
    for n, gj in zip(noise, g):
        u = n["w"]
        dz = _dz(state.lam["w"], u, opt.tau)
        if opt.numerics == "exact":
            s = concrete_scale(lam, u.astype(F64), opt.tau, opt.N)
            rel = (8 + 2 * np.abs(np.log(np.maximum(s, 1e-300)))) * eps + np.expm1(np.minimum(2 * dz, 600))
            total += rel * np.abs(s * gj["w"]) + 1e-37
        else:
            w = relaxed_sample(state.lam["w"], u, opt.tau).astype(F64)
            s = opt.N * (1 - w * w + 1e-10) / opt.tau / (1 - mu * mu + 1e-10)
            rel = (6 * np.abs(w) / (1 - w * w + 1e-10) + 8) * eps + np.expm1(np.minimum(2 * dz, 600))
            total += rel * np.abs(s * gj["w"])
    return total / len(noise)


CASES = [  # numerics, samples, beta, array prior
    ("exact", 1, 0.0, False), ("exact", 1, 0.9, True), ("exact", 0, 0.0, False),
    ("exact", 3, 0.0, False), ("official", 1, 0.0, False), ("official", 1, 0.9, True),
    ("official", 3, 0.0, False), ("official", 0, 0.0, False),
]


@pytest.mark.parametrize("tau", [1e-10, 1.0])
@pytest.mark.parametrize("numerics, samples, beta, prior", CASES)
def test_numba_kernels_agree_with_numpy_reference(numerics, samples, beta, prior, tau):
    """Same state, u and g through both backends.

    Bit-identical where no transcendental result enters: S = 0, and at tau = 1e-10
    (s = 0 exactly in exact numerics, w_r = +-1 exactly in official ones), where the
    saturated blocks also take the kernels' cheap loops. Elsewhere the difference
    must stay within the bound propagated from the kernels' 3-ulp exp/log/tanh.
    mu differs by at most 3 ulp (the kernels' tanh) plus, in exact numerics where
    mu = tanh(lam'), lam's own difference times 1 - mu**2. (state.step = 5: t = 6.)
    """
    rng = np.random.default_rng(17)
    lam0 = {"w": rng.normal(0, 1, N_MIXED)} if prior else 0.2
    kw = dict(N=1000, tau=tau, lr=0.01, beta=beta, samples=samples, numerics=numerics, lam0=lam0)
    ref, fused = BayesBiNN(backend="numpy", **kw), BayesBiNN(backend="numba", **kw)
    state = _mixed_state(N_MIXED, rng)
    noise = ref.sample(state, rng)
    g = grads_like(state, rng, scale=1e-3, n=len(noise))
    a, b = ref.update(g, state, noise), fused.update(g, state, noise)
    if samples == 0 or tau == 1e-10:
        np.testing.assert_array_equal(b.lam["w"], a.lam["w"])
        np.testing.assert_array_equal(b.momentum["w"], a.momentum["w"])
        np.testing.assert_array_equal(b.mu["w"][SAT], a.mu["w"][SAT])
    # plus one rounding at the scale of the larger addend of beta*m + (1-beta)*(...)
    addend = np.abs(beta * state.momentum["w"]) + np.abs(a.momentum["w"])
    bound_m = (1 - beta) * _ghat_error_bound(ref, state, noise, g) + 2 * np.spacing(addend)
    assert np.all(np.abs(b.momentum["w"] - a.momentum["w"]) <= bound_m)
    bound_lam = 0.01 * bound_m / (1 - beta ** 6) + 2 * np.spacing(np.abs(a.lam["w"]))
    assert np.all(np.abs(b.lam["w"] - a.lam["w"]) <= bound_lam)
    # exact: mu = tanh(lam'), so lam's difference enters through tanh' = 1 - mu**2
    carried = (1 - a.mu["w"].astype(F64) ** 2) * bound_lam if numerics == "exact" else 0
    assert np.all(np.abs(b.mu["w"] - a.mu["w"]) <= 3 * np.spacing(np.abs(a.mu["w"])) + carried)
    if samples:
        fa, fb = ref.forward_params(state, noise[0])["w"], fused.forward_params(state, noise[0])["w"]
        np.testing.assert_array_equal(fb[SAT], fa[SAT])
        # w_r = tanh(z): 3 ulp of tanh plus (1 - w_r**2) times the error in z
        dz = _dz(state.lam["w"], noise[0]["w"], tau)
        slack = (1 - fa.astype(F64) ** 2) * np.minimum(dz, 2) + 3 * np.spacing(np.abs(fa))
        assert np.all(np.abs(fb - fa) <= slack)


@given(n=st.integers(1, 3000), lam_scale=st.sampled_from([0.1, 3.0, 10.0, 300.0]),
       tau=st.sampled_from([1e-10, 1e-3, 1.0, 10.0]), seed=st.integers(0, 2 ** 16))
def test_numba_matches_numpy_on_random_sizes(n, lam_scale, tau, seed):
    rng = np.random.default_rng(seed)
    kw = dict(N=500, tau=tau, lr=0.01)
    ref, fused = BayesBiNN(backend="numpy", **kw), BayesBiNN(backend="numba", **kw)
    lam = (lam_scale * rng.standard_normal(n)).astype(F32)
    state = BayesBiNNState({"w": lam}, {"w": np.zeros(n, F32)}, {"w": np.tanh(lam)}, 0)
    noise = ref.sample(state, rng)
    g = grads_like(state, rng, scale=1e-2)
    a, b = ref.update(g, state, noise), fused.update(g, state, noise)
    bound_m = _ghat_error_bound(ref, state, noise, g) + 2 * np.spacing(np.abs(a.momentum["w"]))
    assert np.all(np.abs(b.momentum["w"] - a.momentum["w"]) <= bound_m)
    bound_lam = 0.01 * bound_m + 2 * np.spacing(np.abs(a.lam["w"]))
    assert np.all(np.abs(b.lam["w"] - a.lam["w"]) <= bound_lam)
    carried = (1 - a.mu["w"].astype(F64) ** 2) * bound_lam
    assert np.all(np.abs(b.mu["w"] - a.mu["w"]) <= 3 * np.spacing(np.abs(a.mu["w"])) + carried)
