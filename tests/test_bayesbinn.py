"""BayesBiNN: the equations (spec sections 2-7), the optimizer contract, and the float32
exp/log/tanh of the kernels (the fused kernels against the reference, bit for bit:
tests/test_bayesbinn_fused.py).

Tolerances: float64 checks of an identity use rtol 1e-12; the float32 functions are
checked within 3 ulp of the correctly rounded value. Statistical checks use a fixed
seed and 4 standard errors.
"""
import math
import warnings

import numpy as np
import pytest

from numba import njit

from refbinn.optim import load_state, save_state
from refbinn.optim._float32 import exp32, log32, tanh32
from refbinn.optim.bayesbinn import (BayesBiNN, BayesBiNNState, concrete_scale, logistic_noise,
                                     natural_update, open_uniform, relaxed_sample, tanh_)


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
    ulps = 3                                                        # tanh32 (both paths): <= 3 ulp

    def close(mu, lam):                                             # mu == float32(tanh(lam))
        ref = np.tanh(lam.astype(F64)).astype(F32)
        return np.all(np.abs(mu - ref) <= ulps * np.spacing(np.abs(ref)))

    s0, s1, s2 = hist["official"]
    for k in s0.lam:
        assert close(s1.mu[k], s0.lam[k]) and close(s2.mu[k], s1.lam[k])
        assert not close(s2.mu[k], s2.lam[k])
    s0, s1, s2 = hist["exact"]
    assert s0.mu == s1.mu == s2.mu == {}                           # 'exact' keeps no mu: it is tanh(lam)


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
        s = concrete_scale(lam, noise[0].uniform(k, lam.shape, lam.dtype), 1.0, 100)
        paper = (1 - 0.05) * lam - 0.05 * (s * g[0][k] - 0.3)
        np.testing.assert_allclose(s1.lam[k], paper, rtol=1e-12)
    assert s1.step == 1


def test_point_estimate_branch_S0():
    opt, s0 = make(F64, samples=0, lr=0.1, lam_init=0.7)
    noise = opt.sample(s0, np.random.default_rng(0))
    assert noise == [None]
    fp = opt.forward_params(s0, None)
    for k in s0.lam:
        np.testing.assert_array_equal(fp[k], tanh_(s0.lam[k]))
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
    outs = [*s1[:3], *[{k: n.uniform(k, v.shape, dtype) for k, v in s1.lam.items()} for n in noise],
            opt.forward_params(s1, noise[0]), opt.forward_params(s1, None),
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
    arrays = [{k: n.uniform(k, v.shape, F64) for k, v in s0.lam.items()} for n in noise]
    b = BayesBiNN(**opt.config()).update(g, s0, arrays)
    assert_state_equal(a, b)
    fa = opt.forward_params(s0, noise[0])
    fb = opt.forward_params(s0, arrays[0])
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
    assert s.mu == {}                                              # 'exact': no stored mean
    assert not s.momentum["w"].any() and s.step == 0 and 0 <= s.seed < 2 ** 63
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


# The fused kernels against the NumPy reference (bit for bit, float32 and float64, every
# numerics, S = 0..3, saturated and mixed blocks): tests/test_bayesbinn_fused.py.


# -- states, priors, noise and initial values that do not fit are refused --------------------------
def _state_cases():
    lam = {"w": np.full(8, 0.5, F32)}
    zeros = {"w": np.zeros(8, F32)}
    return [
        ("momentum shorter than lam", dict(beta=0.9), BayesBiNNState(lam, {"w": np.zeros(4, F32)}, {}, 0, 1),
         r"state\.momentum\['w'\] has shape \(4,\).*shape \(8,\)"),
        ("momentum float64, lam float32", dict(beta=0.9),
         BayesBiNNState(lam, {"w": np.zeros(8, F64)}, {}, 0, 1), r"state\.momentum\['w'\].*dtype float64.*float32"),
        ("an 'exact' state given to 'official'", dict(numerics="official"),
         BayesBiNNState(lam, zeros, {}, 0, 1), r"state\.mu has no entry for parameter 'w'.*exact"),
        ("mu shorter than lam", dict(numerics="official"),
         BayesBiNNState(lam, zeros, {"w": np.zeros(4, F32)}, 0, 1), r"state\.mu\['w'\] has shape \(4,\)"),
        ("mu float64, lam float32", dict(numerics="official"),
         BayesBiNNState(lam, zeros, {"w": np.zeros(8, F64)}, 0, 1), r"state\.mu\['w'\].*dtype float64"),
        ("array lam0 of another shape", dict(lam0={"w": np.zeros(4)}),
         BayesBiNNState(lam, zeros, {}, 0, 1), r"lam0\['w'\] has shape \(4,\).*\(8,\)"),
        ("lam of dtype float16", {}, BayesBiNNState({"w": np.zeros(8, np.float16)}, zeros, {}, 0, 1),
         r"state\.lam\['w'\] must be a float32 or float64 array"),
    ]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", _state_cases(), ids=lambda c: c[0])
def test_a_state_that_does_not_fit_raises_before_the_step(case, backend):
    """The fused path used to read past the end of a short momentum/mu (silently wrong
    numbers), an 'exact' state in an 'official' optimizer gave a bare KeyError, and a float64
    momentum gave a float64 state on one backend and float32 on the other."""
    _, kw, state, match = case
    opt = BayesBiNN(N=100, tau=1.0, lr=0.1, backend=backend, **kw)
    with pytest.raises(ValueError, match=match):
        opt.update([{"w": np.zeros(8, F32)}], state, opt.sample(state))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("numerics", ["exact", "official"])
@pytest.mark.parametrize("samples", [0, 1, 3])
def test_a_0d_parameter_keeps_shape_and_both_backends_agree(samples, numerics, backend):
    """init used to turn shape () into (1,) (np.ascontiguousarray), unlike Adam/STE/Bop/VISPA."""
    def run(be):
        opt = BayesBiNN(N=10, tau=1.0, lr=0.1, beta=0.9, samples=samples, numerics=numerics, backend=be,
                        lam_init=1.0, lam_init_std=0.5, lam0={"b": np.float64(0.25), "w": np.zeros(3)})
        st = opt.init({"b": np.float32(0.3), "w": np.zeros(3, F32)}, np.random.default_rng(0))
        for _ in range(3):
            for part in st[:3]:
                assert all(isinstance(v, np.ndarray) and v.dtype == F32 for v in part.values())
                assert {k: v.shape for k, v in part.items()} in ({}, {"b": (), "w": (3,)})
            noise = opt.sample(st)
            ws = [opt.forward_params(st, n) for n in noise]
            assert all(w["b"].shape == () for w in ws)
            st = opt.update([{"b": w["b"] * F32(0.5), "w": w["w"]} for w in ws], st, noise, weights=ws)
        assert opt.params(st)["b"].shape == ()
        return st
    assert_state_equal(run(backend), run("numpy"))


@pytest.mark.parametrize("lam0, match", [
    ({"w": np.full(3, np.nan)}, r"lam0\['w'\] must be finite"),
    ({"w": [1.0, np.inf, 0.0]}, r"lam0\['w'\] must be finite"),
    ({"w": np.array(["a", "b", "c"])}, r"lam0\['w'\] must hold real numbers"),
    ({"w": [None, 1, 2]}, r"lam0\['w'\] must hold real numbers"),
])
def test_lam0_dict_values_are_checked(lam0, match):
    with pytest.raises(ValueError, match=match):
        BayesBiNN(N=10, tau=1.0, lam0=lam0)


def test_lam0_must_be_finite_in_the_state_dtype():
    """1e39 is a finite float64 but inf in a float32 state: init used to accept it silently."""
    p32 = {"w": np.zeros(3, F32)}
    with pytest.raises(ValueError, match=r"lam0\['w'\] must be finite in the state dtype float32"):
        BayesBiNN(N=10, tau=1.0, lam0={"w": np.full(3, 1e39)}).init(p32, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"lam0 must be finite in the state dtype float32"):
        BayesBiNN(N=10, tau=1.0, lam0=1e39).init(p32, np.random.default_rng(0))


def test_lam_init_must_be_finite_in_the_state_dtype():
    """lam_init was checked in float64 only: 1e39 gave lam = +-inf in a float32 state."""
    p32, p64 = {"w": np.zeros(3, F32)}, {"w": np.zeros(3, F64)}
    with pytest.raises(ValueError, match=r"lam_init=1e\+39 .*non-finite in the state dtype float32"):
        BayesBiNN(N=10, tau=1.0, lam_init=1e39).init(p32, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"lam_init_std=1e\+39 .*non-finite"):
        BayesBiNN(N=10, tau=1.0, lam_init=0.0, lam_init_std=1e39).init(p32, np.random.default_rng(0))
    with pytest.raises(ValueError, match="lam_init"):
        BayesBiNN(N=10, tau=1.0, numerics="official", lam_init=1e39).init(p64, np.random.default_rng(0))
    st = BayesBiNN(N=10, tau=1.0, lam_init=1e39, lam0={"w": np.full(3, 1e39)}).init(p64, np.random.default_rng(0))
    assert np.all(np.abs(st.lam["w"]) == 1e39)                       # float64 state: finite, accepted


@pytest.mark.parametrize("bad", [0.0, 1.0, -1.0, 2.0, np.nan, np.inf, 1 - 1e-12])
def test_noise_arrays_must_lie_in_the_open_unit_interval(bad):
    """u = 0 or 1 makes log(u/(1-u)) infinite and u outside [0, 1] or NaN a NaN weight; 1 - 1e-12
    rounds to 1 in the float32 state."""
    opt, s0 = make(F32, samples=1)
    u = {k: np.full(v.shape, 0.5) for k, v in s0.lam.items()}
    u["fc2.weight"][2] = bad
    match = r"noise\['fc2.weight'\] must be in the open interval \(0, 1\)"
    with pytest.raises(ValueError, match=match):
        opt.forward_params(s0, u)
    with pytest.raises(ValueError, match=match):
        opt.update(grads_like(s0, np.random.default_rng(0)), s0, [u])
    u["fc2.weight"][2] = 2.0 ** -24                                  # the grid's extremes are fine
    u["fc1.weight"][0, 0] = 1 - 2.0 ** -24
    opt.update(grads_like(s0, np.random.default_rng(0)), s0, [u])


@pytest.mark.parametrize("kw, match", [
    (dict(samples=True), r"samples must be an integer in \[0, inf\), got True"),
    (dict(N=True), r"N must be a real number, got True"),
    (dict(N=np.bool_(True)), r"N must be a real number"),
    (dict(tau=True), r"tau must be a real number"),
])
def test_bool_hyperparameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        BayesBiNN(**{"N": 10, "tau": 1.0, **kw})


def test_docstrings_give_the_official_scale_in_the_codes_order():
    """The 'official' scale as the docstrings write it, evaluated left to right in float32,
    equals concrete_scale bit for bit (N first, as they used to say, rounds differently)."""
    import re

    import refbinn.optim.bayesbinn as module
    rng = np.random.default_rng(3)
    lam = (rng.standard_normal(4000) * 3).astype(F32)
    u = open_uniform(rng, lam.shape, F32)
    mu = tanh_(lam)
    N, tau = 60000.0, 0.37
    want = concrete_scale(lam, u, tau, N, "official", mu)
    w_r = relaxed_sample(lam, u, tau)
    for doc in (module.__doc__, concrete_scale.__doc__):
        formula = re.search(r"s = ([^,\n]*1e-10\)[^,\n]*),", doc.split("'official'")[-1] if doc is module.__doc__
                            else doc.split("official:")[1]).group(1)
        got = eval(formula, {"w_r": w_r, "mu": mu, "tau": F32(tau), "N": F32(N)})
        assert got.dtype == F32
        np.testing.assert_array_equal(got, want, err_msg=formula)
