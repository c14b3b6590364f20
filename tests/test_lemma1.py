"""Lemma 1 (Meng et al. 2020) checked against exact references; REINFORCE as a control.

Statistical tests use a fixed seed and tolerances from the standard error (SE).
With d coordinates checked at once the criterion is max_i |z_i| < 4: under the null
each |z_i| > 4 has probability 6.3e-5, so the family-wise false-alarm rate is below
d * 6.3e-5 (Bonferroni), < 1e-3 for d <= 12. Each statistical test also checks its
power: the same criterion must reject a wrong reference.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refbinn.estimators.problems import teacher_problem
from refbinn.estimators import (exact_expected_loss, exact_gradient, lemma1, mean_and_se,
                                reinforce, relaxed_objective, relaxed_objective_grad)

Z_MAX = 4.0


# network of (a), (b), (d): 3 inputs, 3 hidden units -> d = 12 binary weights
LOSS12, GRAD12 = teacher_problem(3, 3)
D12 = 12
LAM12 = np.random.default_rng(7).uniform(-1.0, 1.0, D12)


def _max_z(est, ref):
    m, se = mean_and_se(est)
    return np.max(np.abs(m - ref) / se)


# -- the test problem itself -------------------------------------------------------
def test_tanh_mlp_gradient_matches_finite_differences():
    W = np.random.default_rng(3).normal(size=(4, D12))
    L, G = GRAD12(W)
    h = 1e-6
    E = np.eye(D12)
    fd = np.stack([(LOSS12(W + h * E[i]) - LOSS12(W - h * E[i])) / (2 * h) for i in range(D12)], axis=1)
    np.testing.assert_allclose(L, LOSS12(W))
    np.testing.assert_allclose(G, fd, rtol=1e-6, atol=1e-9)


def test_tanh_mlp_refuses_labels_other_than_plus_minus_one():
    from refbinn.estimators.problems import tanh_mlp
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="labels y must be -1 or \\+1"):
        tanh_mlp(x, np.array([0, 1]))                      # 0/1 labels: a constant loss log 2
    with pytest.raises(ValueError, match="shape"):
        tanh_mlp(x, np.array([1, -1, 1]))


def test_logcosh_of_integers_is_computed_in_float():
    from refbinn.estimators.methods import logcosh
    np.testing.assert_allclose(logcosh(np.array([0, 1, -30])), np.log(np.cosh([0.0, 1.0, 30.0])), rtol=1e-15)
    assert logcosh(0) == 0.0 and logcosh(np.float32(2)).dtype == np.float32


# -- (a) per-sample pathwise derivative ----------------------------------------------
@given(mags=st.lists(st.floats(0.05, 2.0), min_size=D12, max_size=D12),
       tau=st.floats(0.05, 2.0), seed=st.integers(0, 2 ** 31 - 1))
def test_lemma1_is_pathwise_derivative_in_mu(mags, tau, seed):
    """s * g == d/dmu loss(tanh((atanh(mu) + delta)/tau)), delta fixed; central differences."""
    r = np.random.default_rng(seed)
    lam = np.array(mags) * r.choice([-1.0, 1.0], D12)
    S = 3
    u = r.uniform(0.02, 0.98, size=(S, D12))
    N = 7.0
    est = lemma1(GRAD12, lam, tau, N=N, u=u)                       # (S, d)

    mu = np.tanh(lam)
    delta = 0.5 * np.log(u / (1 - u))
    # step on the scale of the derivative: dw_r/dmu = (1 - w_r^2) / (tau (1 - mu^2))
    h = 1e-5 * tau * (1 - mu ** 2)                                 # (d,)
    E = np.eye(D12) * h                                            # (d, d): row i perturbs mu_i

    def relaxed(mu_):                                              # mu_: (d, d) one per row
        W = np.tanh((np.arctanh(mu_)[None] + delta[:, None, :]) / tau)   # (S, d, d)
        return LOSS12(W.reshape(-1, D12)).reshape(S, D12)
    fd = N * (relaxed(mu + E) - relaxed(mu - E)) / (2 * h)         # (S, d)
    scale = np.abs(fd).max() + 1e-12
    np.testing.assert_allclose(est, fd, rtol=1e-5, atol=1e-6 * scale)


def test_lemma1_stable_form_equals_plain_formula_and_keeps_dtype():
    r = np.random.default_rng(11)
    lam = r.uniform(-1.5, 1.5, D12)
    u = r.uniform(0.05, 0.95, (5, D12))
    tau, N = 0.3, 50.0
    w_r = np.tanh((lam + 0.5 * np.log(u / (1 - u))) / tau)
    plain = N * (1 - w_r ** 2) / (tau * (1 - np.tanh(lam) ** 2)) * GRAD12(w_r)[1]
    # 1 - w_r^2 cancels in the plain form, hence rtol 1e-8 rather than machine precision
    np.testing.assert_allclose(lemma1(GRAD12, lam, tau, N=N, u=u), plain, rtol=1e-8)
    # saturated: tanh(lam) == 1 in float64, the plain form is 0/0, the stable one is finite
    big = np.full(D12, 30.0)
    assert np.all(np.isfinite(lemma1(GRAD12, big, 1e-3, u=u)))
    # u = 0 or 1 (delta = -+inf): w_r = -+1 exactly and the estimate is exactly 0 there
    u_edge = u.copy()
    u_edge[0, :2] = [0.0, 1.0]
    e = lemma1(GRAD12, lam, tau, u=u_edge)
    assert np.all(np.isfinite(e)) and np.all(e[0, :2] == 0)
    for bad in [dict(tau=0.0), dict(tau=-1.0), dict(N=0.0)]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            lemma1(GRAD12, lam, **{"tau": tau, **bad}, u=u)
    # float32 in, float32 out; same u -> same numbers (the deterministic core)
    e32 = lemma1(lambda W: (np.zeros(len(W), np.float32), np.ones_like(W)), lam.astype(np.float32), tau, u=u)
    assert e32.dtype == np.float32
    np.testing.assert_array_equal(lemma1(GRAD12, lam, tau, u=u),
                                  lemma1(GRAD12, lam, tau, rng=np.random.default_rng(0), u=u))


# -- (b) REINFORCE against exact enumeration -----------------------------------------
@pytest.mark.parametrize("baseline, S", [(None, 200_000), ("mean", 100_000), (0.6, 100_000)])
def test_reinforce_unbiased_against_enumeration(baseline, S):
    exact = exact_gradient(LOSS12, LAM12)
    est = reinforce(LOSS12, LAM12, S, np.random.default_rng(21), baseline=baseline)
    assert _max_z(est, exact) < Z_MAX
    # power: the gradient in lambda, (1 - mu^2) dF/dmu, is rejected
    assert _max_z(est, (1 - np.tanh(LAM12) ** 2) * exact) > Z_MAX


def test_reinforce_deterministic_core_and_bad_input():
    u = np.random.default_rng(2).random((6, D12))
    w_plus = u < 0.5 * (1 + np.tanh(LAM12))
    est = reinforce(LOSS12, LAM12, u=u)
    W = np.where(w_plus, 1.0, -1.0)
    ref = LOSS12(W)[:, None] * W / (1 + W * np.tanh(LAM12))
    np.testing.assert_allclose(est, ref, rtol=1e-12)
    with pytest.raises(ValueError, match="samples"):
        reinforce(LOSS12, LAM12, 1, np.random.default_rng(0), baseline="mean")
    with pytest.raises(ValueError, match="baseline"):
        reinforce(LOSS12, LAM12, 4, np.random.default_rng(0), baseline="median")


# -- exact references ------------------------------------------------------------
def test_exact_gradient_matches_finite_differences_of_expected_loss():
    loss_fn, _ = teacher_problem(1, 2, seed=4)                            # d = 4
    lam = np.array([0.3, -1.2, 0.8, -0.1])
    mu = np.tanh(lam)
    h = 1e-4
    # F is multilinear in mu, so central differences are exact up to rounding
    fd = np.array([(exact_expected_loss(loss_fn, np.arctanh(mu + h * e))
                    - exact_expected_loss(loss_fn, np.arctanh(mu - h * e))) / (2 * h) for e in np.eye(4)])
    np.testing.assert_allclose(exact_gradient(loss_fn, lam), fd, rtol=1e-8, atol=1e-11)
    # chunked evaluation gives the same numbers
    np.testing.assert_allclose(exact_gradient(loss_fn, lam, chunk=3), exact_gradient(loss_fn, lam), rtol=1e-14)


def test_exact_references_equal_a_sum_over_itertools_product():
    """An independent enumeration (itertools.product, probabilities multiplied one by one)
    with a loss that is positive on every sign vector, so a vector missed or counted twice
    changes F; the constant loss 1 checks that the probabilities sum to 1."""
    loss_fn, _ = teacher_problem(1, 2, seed=4)                            # d = 4
    lam = np.array([0.3, -1.2, 0.8, -0.1])
    p_plus = 0.5 * (1 + np.tanh(lam))
    F, G = 0.0, np.zeros(4)
    for w in itertools.product([-1.0, 1.0], repeat=4):
        w = np.array(w)
        q = np.prod(np.where(w > 0, p_plus, 1 - p_plus))
        L = loss_fn(w[None])[0] + 1.0
        F += q * L
        G += q * L * w / (1 + w * np.tanh(lam))                          # dq/dmu_i = q w_i / (1 + w_i mu_i)
    assert min(loss_fn(np.array(list(itertools.product([-1.0, 1.0], repeat=4))))) + 1.0 > 0.5
    np.testing.assert_allclose(exact_expected_loss(lambda W: loss_fn(W) + 1.0, lam), F, rtol=1e-13)
    np.testing.assert_allclose(exact_gradient(lambda W: loss_fn(W) + 1.0, lam), G, rtol=1e-12, atol=1e-15)
    assert abs(exact_expected_loss(lambda W: np.ones(len(W)), lam) - 1.0) < 1e-15


def test_exact_enumeration_rejects_large_d():
    with pytest.raises(ValueError, match=r"d in \[1, 16\], got d=17"):
        exact_gradient(lambda W: W.sum(1), np.zeros(17))
    with pytest.raises(ValueError, match="d=17"):
        exact_expected_loss(lambda W: W.sum(1), np.zeros(17))


# -- (c) Lemma 1 is unbiased for the relaxed objective ---------------------------------
def _one_weight():
    """d = 1: a logistic loss with an offset, nonlinear in w."""
    r = np.random.default_rng(5)
    x, y = r.normal(size=8), np.sign(r.normal(size=8))

    def loss_grad(W):                                              # W: (B, 1)
        m = -y * (W * x + 0.3)                                     # (B, n)
        return np.logaddexp(0, m).mean(1), (-(y * x) * 0.5 * (1 + np.tanh(0.5 * m))).mean(1, keepdims=True)
    return (lambda W: loss_grad(W)[0]), loss_grad


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("tau", [1.0, 0.3, 0.1])
def test_lemma1_unbiased_for_relaxed_objective(d, tau):
    loss_fn, loss_grad = _one_weight() if d == 1 else teacher_problem(1, 1, n=8, seed=1)
    lam = np.array([0.4, -0.7])[:d]
    ref = relaxed_objective_grad(loss_fn, lam, tau)
    est = lemma1(loss_grad, lam, tau, samples=200_000, rng=np.random.default_rng(31 + d))
    assert _max_z(est, ref) < Z_MAX
    if tau == 1.0:
        # power: at tau = 1 the discrete gradient dF/dmu is many SE away
        assert _max_z(est, exact_gradient(loss_fn, lam)) > Z_MAX


def test_relaxed_objective_grad_matches_finite_differences_of_quadrature():
    loss_fn, _ = teacher_problem(1, 1, n=8, seed=1)
    lam, tau, h = np.array([0.4, -0.7]), 0.2, 1e-5
    mu = np.tanh(lam)
    fd = [(relaxed_objective(loss_fn, np.arctanh(mu + h * e), tau)
           - relaxed_objective(loss_fn, np.arctanh(mu - h * e), tau)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(relaxed_objective_grad(loss_fn, lam, tau), fd, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="d=3"):
        relaxed_objective_grad(loss_fn, np.zeros(3), tau)


# -- (d) bias falls and variance rises as tau -> 0 --------------------------------------
TAUS = [1.0, 0.5, 0.2, 0.1, 0.05]
# the variance grows like 1/tau and the bias shrinks faster, so small tau needs many
# more samples to resolve bias(0.2) > bias(0.05); 1.8M samples in all (~15 s of CPU)
SAMPLES = [40_000, 80_000, 500_000, 200_000, 1_000_000]


def _lemma1_moments(tau, S, rng, chunk=200_000):
    """Mean, SE and per-coordinate variance (with its SE) of Lemma 1 over S samples, in chunks
    so memory stays bounded; sums of centred powers around a pilot mean (no cancellation)."""
    pilot = lemma1(GRAD12, LAM12, tau, samples=20_000, rng=rng).mean(0)
    p1 = p2 = p3 = p4 = 0.0
    for n in [chunk] * (S // chunk) + ([S % chunk] if S % chunk else []):
        c = lemma1(GRAD12, LAM12, tau, samples=n, rng=rng) - pilot             # (n, d)
        p1, p2, p3, p4 = p1 + c.sum(0), p2 + (c ** 2).sum(0), p3 + (c ** 3).sum(0), p4 + (c ** 4).sum(0)
    a = p1 / S                                                                  # mean - pilot
    var = p2 / S - a ** 2
    m4 = p4 / S - 4 * a * p3 / S + 6 * a ** 2 * p2 / S - 3 * a ** 4
    return pilot + a, np.sqrt(var / S), var, np.sqrt((m4 - var ** 2) / S)


@pytest.mark.slow
def test_lemma1_bias_falls_and_variance_rises_as_tau_shrinks():
    """bias(tau) = ||mean - exact||, its SE by the delta method: sqrt(sum_i (e_i/b)^2 se_i^2),
    e = mean - exact. Sampling noise only ADDS to ||mean - exact|| on average, so a
    significant drop of this norm from tau_j to tau_k is a conservative finding.
    Required: a drop > 3 SE of the difference for well-separated pairs (tau_j >= 2.5
    tau_k), and no rise > 3 SE between neighbours (below tau = 0.1 the bias is under
    the sampling noise of ~1e-3, so a drop there cannot be resolved at this cost).
    Variance: mean over coordinates of the per-sample variance; SE from the fourth
    central moment, sqrt((m4 - var^2) / S); each step down in tau must raise it by > 4 SE.
    """
    exact = exact_gradient(LOSS12, LAM12)
    streams = np.random.default_rng(41).spawn(len(TAUS))
    bias, bias_se, var, var_se = [], [], [], []
    for tau, S, r in zip(TAUS, SAMPLES, streams):
        m, se, v, v_se = _lemma1_moments(tau, S, r)
        e = m - exact
        b = np.linalg.norm(e)
        bias.append(b)
        bias_se.append(np.sqrt(np.sum((e / b) ** 2 * se ** 2)))
        var.append(v.mean())
        var_se.append(np.sqrt(np.sum(v_se ** 2)) / D12)
    for j in range(len(TAUS)):
        for k in range(j + 1, len(TAUS)):
            if TAUS[j] >= 2.5 * TAUS[k]:
                gap = bias[j] - bias[k]
                assert gap > 3 * np.hypot(bias_se[j], bias_se[k]), (TAUS[j], TAUS[k], bias, bias_se)
    for j in range(len(TAUS) - 1):
        assert bias[j + 1] < bias[j] + 3 * np.hypot(bias_se[j], bias_se[j + 1]), (bias, bias_se)
        assert var[j + 1] - var[j] > 4 * np.hypot(var_se[j], var_se[j + 1]), (var, var_se)
    # the bias at the smallest tau is a small fraction of the gradient itself
    assert bias[-1] < 0.1 * np.linalg.norm(exact)


# -- argument checks shared by the estimators ----------------------------------------
def _every_estimator(lam):
    """Each public estimator and reference called on lam with otherwise valid arguments."""
    u = np.full((2, np.size(lam)), 0.5)
    return [lambda: lemma1(GRAD12, lam, 0.5, u=u), lambda: reinforce(LOSS12, lam, u=u),
            lambda: exact_gradient(LOSS12, lam), lambda: exact_expected_loss(LOSS12, lam),
            lambda: relaxed_objective(LOSS12, lam, 0.5), lambda: relaxed_objective_grad(LOSS12, lam, 0.5)]


@pytest.mark.parametrize("lam, message", [
    (np.zeros(0), "non-empty 1-D"), (np.float64(0.3), "non-empty 1-D"), (np.zeros((1, 2)), "non-empty 1-D"),
    (np.array([0.1, np.nan]), "finite"), (np.array([np.inf, 0.0]), "finite")])
def test_estimators_refuse_a_lam_that_is_not_a_finite_vector(lam, message):
    for call in _every_estimator(lam):
        with pytest.raises(ValueError, match=f"lam must be .*{message}"):
            call()


def test_noise_u_and_samples_are_checked():
    r = np.random.default_rng(0)
    assert lemma1(GRAD12, LAM12, 0.5, rng=r).shape == (1, D12)             # samples defaults to 1
    assert reinforce(LOSS12, LAM12, rng=r).shape == (1, D12)
    with pytest.raises(ValueError, match="give either u .* or rng"):
        lemma1(GRAD12, LAM12, 0.5)
    with pytest.raises(ValueError, match=r"u must have shape \(S, 12\)"):
        reinforce(LOSS12, LAM12, u=np.full((3, 11), 0.5))
    with pytest.raises(ValueError, match="samples=4 does not match u with 3 rows"):
        lemma1(GRAD12, LAM12, 0.5, samples=4, u=np.full((3, D12), 0.5))
    with pytest.raises(ValueError, match=r"samples must be an integer in \[1, inf\), got 0"):
        lemma1(GRAD12, LAM12, 0.5, u=np.full((0, D12), 0.5))
    # the leave-one-out baseline divides by S - 1, so one row of u is refused as one sample is
    with pytest.raises(ValueError, match=r"samples must be an integer in \[2, inf\), got 1"):
        reinforce(LOSS12, LAM12, baseline="mean", u=np.full((1, D12), 0.5))


@pytest.mark.parametrize("baseline", ["1.5", b"1.5", True, np.inf, np.nan, [1.0]])
def test_reinforce_refuses_a_baseline_that_is_not_none_mean_or_a_finite_float(baseline):
    with pytest.raises(ValueError, match="baseline must be None, 'mean' or a finite float"):
        reinforce(LOSS12, LAM12, 4, np.random.default_rng(0), baseline=baseline)


def test_estimators_refuse_callbacks_that_return_the_wrong_shapes():
    u = np.full((3, D12), 0.5)
    with pytest.raises(ValueError, match=r"loss_fn must return losses of shape \(3,\), got \(3, 1\)"):
        reinforce(lambda W: LOSS12(W)[:, None], LAM12, u=u)
    with pytest.raises(ValueError, match=r"loss_grad must return losses of shape \(3,\), got \(1,\)"):
        lemma1(lambda W: (LOSS12(W)[:1], GRAD12(W)[1]), LAM12, 0.5, u=u)
    with pytest.raises(ValueError, match=r"loss_grad must return grads of shape \(3, 12\), got \(3, 1\)"):
        lemma1(lambda W: (LOSS12(W), GRAD12(W)[1][:, :1]), LAM12, 0.5, u=u)
    with pytest.raises(ValueError, match=r"loss_fn must return losses of shape \(8,\), got \(2,\)"):
        exact_gradient(lambda W: np.zeros(2), np.zeros(3))


def test_mean_and_se_is_the_sample_mean_and_its_standard_error():
    m, se = mean_and_se(np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]]))
    np.testing.assert_allclose(m, [3.0, 4.0])
    np.testing.assert_allclose(se, [2 / np.sqrt(3), 2 / np.sqrt(3)])        # unbiased variance 4 in both
    for est in [np.ones((1, 2)), np.float64(1.0)]:
        with pytest.raises(ValueError, match="at least 2 samples"):
            mean_and_se(est)


def test_lemma1_calls_loss_grad_in_lams_dtype_and_returns_it():
    seen = []

    def loss_grad64(W):                                           # answers in float64 whatever W is
        seen.append(W.dtype)
        return np.zeros(len(W)), np.ones(W.shape)
    e = lemma1(loss_grad64, LAM12.astype(np.float32), 0.5, u=np.full((2, D12), 0.3))
    assert seen == [np.float32] and e.dtype == np.float32


# -- REINFORCE: the deterministic core ------------------------------------------------
def test_reinforce_baselines_on_given_noise():
    u = np.random.default_rng(5).random((5, D12))
    W = np.where(u < 0.5 * (1 + np.tanh(LAM12)), 1.0, -1.0)
    L = LOSS12(W)
    score = W / (1 + W * np.tanh(LAM12))                                  # d log q(w) / d mu
    loo = (L.sum() - L) / 4                                               # mean of the other 4 losses
    np.testing.assert_allclose(reinforce(LOSS12, LAM12, baseline="mean", u=u), (L - loo)[:, None] * score,
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(reinforce(LOSS12, LAM12, baseline=0.6, u=u), (L - 0.6)[:, None] * score,
                               rtol=1e-12)


def test_reinforce_never_draws_a_sign_whose_probability_rounds_to_zero():
    # lam = -40: P(w = +1) = sigmoid(-80) is 0 in float64, so even u = 0 draws w = -1
    est = reinforce(lambda W: np.ones(len(W)), np.array([-40.0]), u=np.array([[0.0]]))
    np.testing.assert_array_equal(est, [[-0.5]])                          # w / (1 + w mu) at w = -1, mu = -1


# -- exact references: the edges of d and chunk, and dtypes ---------------------------
def test_exact_enumeration_takes_d_16_and_refuses_a_chunk_below_1():
    assert abs(exact_expected_loss(lambda W: np.ones(len(W)), np.zeros(16)) - 1.0) < 1e-12   # 65536 terms
    for chunk in [0, -1, 2.5]:
        with pytest.raises(ValueError, match="chunk must be an integer in"):
            exact_gradient(LOSS12, np.zeros(2), chunk=chunk)


def test_exact_references_keep_lams_float32():
    lam = np.array([0.3, -1.2], dtype=np.float32)
    loss = lambda W: W.sum(axis=1).astype(np.float64)                     # F = sum mu, dF/dmu = 1
    F, G = exact_expected_loss(loss, lam), exact_gradient(loss, lam)
    assert F.dtype == np.float32 and G.dtype == np.float32
    np.testing.assert_allclose(F, np.tanh(lam).sum(), rtol=1e-6)
    np.testing.assert_allclose(G, [1.0, 1.0], rtol=1e-6)


# -- relaxed objective: tau and the cubature's convergence ------------------------------
def test_relaxed_objective_refuses_tau_0_and_reports_a_cubature_that_did_not_converge(monkeypatch):
    from scipy import integrate
    loss_fn, _ = _one_weight()
    for f in [relaxed_objective, relaxed_objective_grad]:
        with pytest.raises(ValueError, match=r"tau must be in \(0, inf\), got 0"):
            f(loss_fn, np.array([0.4]), 0)
    # a genuine failure takes 10^4 subdivisions (seconds), so the cubature's verdict is stubbed
    real = integrate.cubature

    def not_converged(*args, **kwargs):
        res = real(*args, **kwargs)
        res.status = "not_converged"
        return res
    monkeypatch.setattr(integrate, "cubature", not_converged)
    with pytest.raises(RuntimeError, match="cubature did not converge"):
        relaxed_objective(loss_fn, np.array([0.4]), 0.5)


# -- the test problem's own checks -------------------------------------------------------
def test_tanh_mlp_and_teacher_problem_refuse_shapes_that_give_a_nan_loss():
    from refbinn.estimators.problems import tanh_mlp
    with pytest.raises(ValueError, match=r"x must have shape \(n, n_in\)"):
        tanh_mlp(np.ones(3), np.array([1.0, -1.0, 1.0]))                  # 1-D x
    with pytest.raises(ValueError, match=r"n_in >= 1 columns, got shape \(2, 0\)"):
        tanh_mlp(np.ones((2, 0)), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"n >= 1 rows"):
        tanh_mlp(np.ones((0, 3)), np.ones(0))
    loss_fn, loss_grad = tanh_mlp(np.ones((2, 3)), np.array([1.0, -1.0]))
    for width in [5, 0]:
        with pytest.raises(ValueError, match=f"weight width {width} is not a positive multiple of n_in \\+ 1 = 4"):
            loss_fn(np.ones((2, width)))
    for kw, name in [(dict(n_in=0, hidden=3), "n_in"), (dict(n_in=3, hidden=0), "hidden"),
                     (dict(n_in=3, hidden=3, n=0), "n"), (dict(n_in=2.5, hidden=3), "n_in")]:
        with pytest.raises(ValueError, match=f"{name} must be an integer in \\[1, inf\\)"):
            teacher_problem(**kw)


def test_tanh_mlp_gradients_keep_float32_weights_in_float32():
    W = np.random.default_rng(3).choice([-1.0, 1.0], (2, D12)).astype(np.float32)
    L, G = GRAD12(W)
    assert G.dtype == np.float32 and G.shape == (2, D12)
    np.testing.assert_allclose(G, GRAD12(W.astype(np.float64))[1], rtol=1e-6)


def test_teacher_problem_follows_its_recipe():
    """x, then the +-1 teacher, then the label noise, from one Generator(seed): the recipe the
    docstring states and scripts/lemma1_table.py's numbers rest on."""
    from refbinn.estimators.problems import tanh_mlp
    loss_fn, _ = teacher_problem(3, 3, seed=1)
    r = np.random.default_rng(1)
    x = r.normal(size=(16, 3))
    teacher = np.sign(r.normal(size=D12))
    f = np.tanh(x @ teacher[:9].reshape(3, 3).T / np.sqrt(3)) @ teacher[9:] / np.sqrt(3)
    y = np.where(f + 0.5 * r.normal(size=16) >= 0, 1.0, -1.0)
    assert np.any(y != np.sign(f))                                        # seed 1: the noise flips 4 of 16 labels
    W = np.random.default_rng(1).choice([-1.0, 1.0], (8, D12))
    np.testing.assert_array_equal(loss_fn(W), tanh_mlp(x, y)[0](W))
