"""Baseline optimizers (Adam, STE, Bop, PMF) and Partition against hand computations."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st_
from hypothesis.extra import numpy as hnp

from refbinn.nn import BINARY, REAL
from refbinn.optim.adam import Adam, adam_update
from refbinn.optim.base import Optimizer
from refbinn.optim.bop import Bop
from refbinn.optim.partition import Partition, PartitionState
from refbinn.optim.pmf import INIT_CLIP, PMF, soft_weight, soft_weight_vjp
from refbinn.optim.ste import STEAdam


def adam_reference(p, grads, lr, b1, b2, eps, wd):
    """Element-by-element torch Adam in plain Python floats (the documented algorithm)."""
    p, m, v = list(p), [0.0] * len(p), [0.0] * len(p)
    for t, g in enumerate(grads, start=1):
        for i in range(len(p)):
            gi = g[i] + wd * p[i]
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            p[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return p, m, v


# -- Adam -----------------------------------------------------------------------------
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_matches_hand_formula(wd):
    rng = np.random.default_rng(0)
    p0 = np.array([0.5, -1.0, 2.0, 0.0])
    grads = [rng.normal(size=4) for _ in range(5)]
    grads[2][1] = 0.0                                      # an exact zero gradient
    opt = Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd)
    st = opt.init({"w": p0})
    for g in grads:
        st = opt.update({"w": g}, st)
    p, m, v = adam_reference(p0, grads, 0.05, 0.8, 0.99, 1e-6, wd)
    np.testing.assert_allclose(opt.params(st)["w"], p, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(st.m["w"], m, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(st.v["w"], v, rtol=1e-13, atol=1e-15)
    assert st.step == 5


def test_adam_first_step_is_lr_times_sign():
    # t = 1: m_hat = g, v_hat = g**2, so the step is lr * g / (|g| + eps)
    g = np.array([3.0, -0.25, 0.0])
    delta, m, v = adam_update(g, np.zeros(3), np.zeros(3), 1, 0.1, 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(delta, 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-14, atol=0)
    assert delta[2] == 0.0
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-15)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-13)


@pytest.mark.torch
def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    p0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(6)]
    opt = Adam(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    st = opt.init({"w": p0})
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = torch.optim.Adam([tp], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    for g in grads:
        st = opt.update({"w": g}, st)
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(st.params["w"], tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.m["w"], topt.state[tp]["exp_avg"].numpy(), rtol=1e-12, atol=1e-14)


def test_adam_lr_override():
    opt = Adam(lr=1.0)
    st = opt.init({"w": np.zeros(2)})
    a = opt.update({"w": np.array([1.0, -2.0])}, st, lr=0.01)
    b = Adam(lr=0.01).update({"w": np.array([1.0, -2.0])}, st)
    np.testing.assert_array_equal(a.params["w"], b.params["w"])


# -- STE --------------------------------------------------------------------------------
def test_ste_init_clip_and_sign_with_exact_zeros():
    p = np.array([-2.0, -0.5, -0.0, 0.0, 0.3, 5.0], dtype=np.float32)
    opt = STEAdam()
    st = opt.init({"w": p})
    np.testing.assert_array_equal(st.latent["w"], np.array([-1, -0.5, 0, 0, 0.3, 1], np.float32))
    for w in (opt.forward_params(st)["w"], opt.params(st)["w"]):
        np.testing.assert_array_equal(w, [-1, -1, 1, 1, 1, 1])   # 0 and -0 -> +1
        assert w.dtype == np.float32
    np.testing.assert_array_equal(p, np.array([-2.0, -0.5, -0.0, 0.0, 0.3, 5.0], np.float32))  # untouched


def test_ste_update_is_adam_on_latent_then_clip():
    lat = np.array([1.0, -1.0, 0.5, 0.02, -0.3])
    g = np.array([-1.0, 2.0, 0.0, 4.0, -0.5])
    opt = STEAdam(lr=0.05, betas=(0.9, 0.99), eps=1e-8)
    st = opt.update({"w": g}, opt.init({"w": lat}))
    # first Adam step: latent - lr * g / (|g| + eps), then clip to [-1, 1]
    want = np.clip(lat - 0.05 * g / (np.abs(g) + 1e-8), -1, 1)
    np.testing.assert_allclose(st.latent["w"], want, rtol=1e-12)
    assert st.latent["w"][0] == 1.0 and st.latent["w"][1] == -1.0   # pushed outward: clipped
    assert st.latent["w"][2] == 0.5                                  # zero gradient: no move
    np.testing.assert_array_equal(opt.params(st)["w"], [1, -1, 1, -1, -1])  # 0.02 crossed zero


def test_ste_several_steps_are_adam_on_latent():
    # the bias corrections use the step count t = 1, 2, ...; betas and eps are the constructor's
    rng = np.random.default_rng(12)
    lat = np.array([0.3, -0.2, 0.05, -0.6])
    grads = [rng.normal(size=4) * 0.5 for _ in range(4)]
    opt = STEAdam(lr=0.01, betas=(0.8, 0.99), eps=0.1)
    st = opt.init({"w": lat})
    for g in grads:
        st = opt.update({"w": g}, st)
    p, m, v = adam_reference(lat, grads, 0.01, 0.8, 0.99, 0.1, 0.0)
    assert np.all(np.abs(p) < 1)                                       # no latent clipping in play
    np.testing.assert_allclose(st.latent["w"], p, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(st.m["w"], m, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(st.v["w"], v, rtol=1e-13, atol=1e-15)
    assert st.step == 4


def test_ste_lr_override_replaces_lr():
    lat = np.array([0.5, -0.5, 0.0])
    g = np.array([1.0, -2.0, 0.5])
    opt = STEAdam(lr=0.5)
    st = opt.update({"w": g}, opt.init({"w": lat}), lr=0.01)
    np.testing.assert_allclose(st.latent["w"], lat - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)


def test_ste_gradient_clip_by_value():
    lat = {"w": np.array([0.1, -0.2, 0.3])}
    g = {"w": np.array([3.0, -0.2, -7.0])}
    clipped = STEAdam(lr=0.01, clip_value=1.0)
    plain = STEAdam(lr=0.01)
    a = clipped.update(g, clipped.init(lat))
    b = plain.update({"w": np.array([1.0, -0.2, -1.0])}, plain.init(lat))
    for x, y in zip(a, b):
        if isinstance(x, dict):
            np.testing.assert_array_equal(x["w"], y["w"])


def test_ste_gradient_clip_by_global_norm():
    lat = {"a": np.zeros(2), "b": np.zeros(1)}
    g = {"a": np.array([3.0, 4.0]), "b": np.array([12.0])}   # global norm 13
    opt = STEAdam(lr=0.01, betas=(0.5, 0.999), clip_norm=6.5)
    st = opt.update(g, opt.init(lat))
    coef = 6.5 / (13.0 + 1e-6)
    np.testing.assert_allclose(st.m["a"], 0.5 * coef * np.array([3.0, 4.0]), rtol=1e-14)
    np.testing.assert_allclose(st.m["b"], 0.5 * coef * np.array([12.0]), rtol=1e-14)
    # below the threshold the gradient is used as given
    big = STEAdam(lr=0.01, betas=(0.5, 0.999), clip_norm=13.01)
    st = big.update(g, big.init(lat))
    np.testing.assert_array_equal(st.m["b"], [6.0])


def test_ste_gradient_clip_by_value_is_symmetric():
    opt = STEAdam(lr=0.01, betas=(0.5, 0.999), clip_value=0.25)
    g = np.array([3.0, -0.1, -7.0, 0.25, -0.25])
    st = opt.update({"w": g}, opt.init({"w": np.zeros(5)}))
    np.testing.assert_array_equal(st.m["w"], 0.5 * np.array([0.25, -0.1, -0.25, 0.25, -0.25]))


def test_ste_value_clip_runs_before_norm_clip():
    # value first: [3, -4] -> [1, -1], norm sqrt(2) -> [1, -1] / (sqrt(2) + 1e-6)
    # (norm first would give [0.6, -0.8], left alone by the value clip)
    opt = STEAdam(lr=0.01, betas=(0.5, 0.999), clip_value=1.0, clip_norm=1.0)
    st = opt.update({"w": np.array([3.0, -4.0])}, opt.init({"w": np.zeros(2)}))
    np.testing.assert_allclose(st.m["w"], 0.5 * np.array([1.0, -1.0]) / (math.sqrt(2.0) + 1e-6), rtol=1e-14)


def test_ste_global_norm_is_summed_in_float64():
    # float32 squares of 1e20 overflow; summed in float64 the norm is sqrt(2) * 1e20
    g = np.array([1e20, -1e20], np.float32)
    opt = STEAdam(lr=0.01, betas=(0.5, 0.999), clip_norm=1.0)
    st = opt.update({"w": g}, opt.init({"w": np.zeros(2, np.float32)}))
    assert st.m["w"].dtype == np.float32
    np.testing.assert_allclose(st.m["w"], 0.5 * np.array([1.0, -1.0]) / math.sqrt(2.0), rtol=1e-6)


# -- Bop -------------------------------------------------------------------------------
def test_bop_flips_exactly_where_w_m_exceeds_threshold():
    p = np.array([0.3, 0.3, 0.3, -0.3, -0.3, 0.0])
    opt = Bop(threshold=0.5, gamma=1.0)                      # gamma = 1: m = g
    st = opt.init({"w": p})
    np.testing.assert_array_equal(st.w["w"], [1, 1, 1, -1, -1, 1])
    g = np.array([0.5, 0.6, -0.6, 0.4, -0.75, 0.5])
    st = opt.update({"w": g}, st)
    # w*m = [0.5, 0.6, -0.6, -0.4, 0.75, 0.5]: flip where > 0.5 strictly
    np.testing.assert_array_equal(st.w["w"], [1, -1, 1, -1, 1, 1])
    np.testing.assert_array_equal(st.m["w"], g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bop_random_against_reference(dtype):
    rng = np.random.default_rng(3)
    w0 = rng.choice([-1.0, 1.0], size=200).astype(dtype)
    opt = Bop(threshold=1e-3, gamma=0.1)
    st = opt.init({"w": w0})
    w, m = w0.copy(), np.zeros_like(w0)
    for _ in range(5):
        g = (rng.normal(size=200) * 0.05).astype(dtype)
        st = opt.update({"w": g}, st)
        m = dtype(0.9) * m + dtype(0.1) * g
        w = np.where(w * m > dtype(1e-3), -w, w)
        np.testing.assert_array_equal(st.m["w"], m)
        np.testing.assert_array_equal(st.w["w"], w)
        assert st.w["w"].dtype == dtype and st.m["w"].dtype == dtype
    assert np.any(st.w["w"] != w0)


def test_bop_lr_overrides_gamma():
    opt = Bop(threshold=0.0, gamma=1e-5)
    st = opt.init({"w": np.ones(2)})
    g = {"w": np.array([1.0, -1.0])}
    a = opt.update(g, st, lr=0.5)
    b = Bop(threshold=0.0, gamma=0.5).update(g, st)
    np.testing.assert_array_equal(a.m["w"], b.m["w"])
    np.testing.assert_array_equal(a.m["w"], [0.5, -0.5])
    np.testing.assert_array_equal(a.w["w"], [-1, 1])
    with pytest.raises(ValueError, match="gamma"):
        opt.update(g, st, lr=1.5)


def test_bop_zero_gamma_override_keeps_m_and_still_flips():
    # a gamma schedule that decays to 0: m is kept and the flip test runs on it
    opt = Bop(threshold=0.1, gamma=0.5)
    st = opt.init({"w": np.array([1.0, 1.0, -1.0, -1.0])})
    st = st._replace(m={"w": np.array([0.3, -0.3, 0.3, -0.05])})
    new = opt.update({"w": np.array([5.0, 5.0, -5.0, 5.0])}, st, lr=0.0)
    np.testing.assert_array_equal(new.m["w"], [0.3, -0.3, 0.3, -0.05])
    np.testing.assert_array_equal(new.w["w"], [-1, 1, -1, -1])       # w*m = [0.3, -0.3, -0.3, 0.05]


# -- PMF ----------------------------------------------------------------------------------
def test_pmf_soft_weight_is_softmax_difference():
    rng = np.random.default_rng(4)
    u = rng.normal(size=(2, 5, 3))
    for beta in (0.5, 1.0, 7.0):
        e = np.exp(beta * u)
        want = (e[1] - e[0]) / (e[0] + e[1])                  # P(+1) - P(-1)
        np.testing.assert_allclose(soft_weight(u, beta), want, rtol=1e-13, atol=1e-15)


def test_pmf_vjp_against_central_differences():
    rng = np.random.default_rng(5)
    u, c, beta = rng.normal(size=(2, 4)), rng.normal(size=4), 2.5
    gu = soft_weight_vjp(c, soft_weight(u, beta), beta)          # d sum(c * w_soft) / du
    fd = np.zeros_like(u)
    for idx in np.ndindex(u.shape):
        du = np.zeros_like(u)
        du[idx] = 1e-6
        fd[idx] = (np.sum(c * soft_weight(u + du, beta)) - np.sum(c * soft_weight(u - du, beta))) / 2e-6
    np.testing.assert_allclose(gu, fd, rtol=1e-7, atol=1e-9)


def test_pmf_init_matches_params_and_rounds_by_argmax():
    p = np.array([-0.5, 0.0, 0.25, 0.999, -3.0], dtype=np.float32)
    opt = PMF(beta_init=2.0)
    st = opt.init({"w": p})
    assert st.u["w"].shape == (2, 5) and st.u["w"].dtype == np.float32
    want = np.clip(p, -INIT_CLIP, INIT_CLIP)
    np.testing.assert_allclose(opt.forward_params(st)["w"], want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(opt.params(st)["w"], [-1, 1, 1, 1, -1])   # tie at 0 -> +1
    assert st.beta == 2.0 and st.step == 0


def test_pmf_annealing_schedule():
    opt = PMF(lr=1e-3, rho=2.0, beta_init=1.0, beta_max=10.0, anneal_every=3)
    st = opt.init({"w": np.zeros(2)})
    betas = [st.beta]
    for _ in range(14):
        st = opt.update({"w": np.array([0.1, -0.2])}, st)
        betas.append(st.beta)
    assert betas == [1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8, 10, 10, 10]
    assert st.step == 14
    assert all(type(b) is float for b in betas)


def test_pmf_update_is_adam_on_u_with_chain_rule():
    u0 = np.array([[0.1, -0.4], [0.3, 0.2]])                   # (2, 2): [-1 row, +1 row]
    g = np.array([0.7, -1.3])
    opt = PMF(lr=0.01, rho=1.5, beta_init=3.0, anneal_every=1, weight_decay=0.1)
    st = opt.init({"w": np.zeros(2)})._replace(u={"w": u0})
    new = opt.update({"w": g}, st)
    s = np.tanh(3.0 * (u0[1] - u0[0]) / 2)
    d = g * 1.5 * (1 - s ** 2)
    gu = np.stack([-d, d]) + 0.1 * u0
    np.testing.assert_allclose(new.u["w"], u0 - 0.01 * gu / (np.abs(gu) + 1e-8), rtol=1e-12)
    assert new.beta == 4.5                                         # annealed after this update


def test_pmf_several_steps_against_the_spec():
    """Five steps against the equations written out in float64: annealing (capped), weight decay,
    Adam with the constructor's betas and eps, and a per-step lr override."""
    rng = np.random.default_rng(13)
    w0 = rng.uniform(-0.9, 0.9, size=3)
    grads = [rng.normal(size=3) for _ in range(5)]
    opt = PMF(lr=1.0, rho=1.5, beta_init=2.0, beta_max=4.0, anneal_every=2, weight_decay=0.01,
              betas=(0.6, 0.95), eps=0.05)
    st = opt.init({"w": w0})
    half = np.arctanh(w0) / 2.0
    u, m, v, beta = np.stack([-half, half]), np.zeros((2, 3)), np.zeros((2, 3)), 2.0
    for t, g in enumerate(grads, start=1):
        lr = 0.05 * 0.5 ** t
        st = opt.update({"w": g}, st, lr=lr)
        s = np.tanh(beta * (u[1] - u[0]) / 2)
        d = g * beta / 2 * (1 - s ** 2)
        gu = np.stack([-d, d]) + 0.01 * u
        m = 0.6 * m + 0.4 * gu
        v = 0.95 * v + 0.05 * gu ** 2
        u = u - lr * (m / (1 - 0.6 ** t)) / (np.sqrt(v / (1 - 0.95 ** t)) + 0.05)
        if t % 2 == 0:
            beta = min(beta * 1.5, 4.0)
        np.testing.assert_allclose(st.u["w"], u, rtol=1e-12, atol=1e-15, err_msg=f"u, step {t}")
        np.testing.assert_allclose(st.m["w"], m, rtol=1e-12, atol=1e-15, err_msg=f"m, step {t}")
        np.testing.assert_allclose(st.v["w"], v, rtol=1e-12, atol=1e-15, err_msg=f"v, step {t}")
        assert st.beta == beta and st.step == t
    assert beta == 4.0                                             # 2 -> 3 -> 4.5 capped at 4
    np.testing.assert_allclose(opt.forward_params(st)["w"], np.tanh(4.0 * (u[1] - u[0]) / 2), rtol=1e-12)


# -- any shape, any float dtype ------------------------------------------------------------------
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
       dtype=st_.sampled_from([np.float32, np.float64]), seed=st_.integers(0, 2 ** 16))
def test_shapes_and_dtypes_preserved(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    p = {"a": rng.normal(size=shape).astype(dtype), "b": rng.normal(size=(3,)).astype(dtype)}
    for opt in (Adam(), STEAdam(clip_norm=1.0, clip_value=0.5), Bop(threshold=0.0, gamma=0.5), PMF()):
        state = opt.init(p)
        for _ in range(2):
            g = {k: rng.normal(size=v.shape) for k, v in p.items()}        # float64 gradients
            state = opt.update(g, state)
        for out in (opt.forward_params(state), opt.params(state)):
            assert list(out) == ["a", "b"]
            for k in p:
                assert out[k].shape == p[k].shape and out[k].dtype == dtype, (opt, k)
        if not isinstance(opt, Adam):
            assert all(np.all(np.abs(v) == 1) for v in opt.params(state).values())


# -- hyperparameter checks ------------------------------------------------------------------
@pytest.mark.parametrize("make,name", [
    (lambda: Adam(lr=-1), "lr"),
    (lambda: Adam(betas=(1.0, 0.999)), r"betas\[0\]"),
    (lambda: Adam(betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda: Adam(betas=0.9), "betas"),
    (lambda: Adam(eps=-1e-8), "eps"),
    (lambda: Adam(weight_decay=-0.1), "weight_decay"),
    (lambda: STEAdam(lr=float("nan")), "lr"),
    (lambda: STEAdam(clip_value=0.0), "clip_value"),
    (lambda: STEAdam(clip_norm=-1.0), "clip_norm"),
    (lambda: Bop(threshold=-1e-8), "threshold"),
    (lambda: Bop(gamma=0.0), "gamma"),
    (lambda: Bop(gamma=1.5), "gamma"),
    (lambda: PMF(rho=0.9), "rho"),
    (lambda: PMF(beta_init=0.0), "beta_init"),
    (lambda: PMF(beta_init=10.0, beta_max=5.0), "beta_max"),
    (lambda: PMF(anneal_every=0), "anneal_every"),
    (lambda: PMF(anneal_every=2.5), "anneal_every"),
    (lambda: PMF(weight_decay=-1), "weight_decay"),
    (lambda: PMF(lr="fast"), "lr"),
])
def test_bad_hyperparameters(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_bad_lr_override_and_gradient_shape():
    opt = STEAdam()
    st = opt.init({"w": np.zeros(3)})
    with pytest.raises(ValueError, match="lr"):
        opt.update({"w": np.zeros(3)}, st, lr=-1.0)
    with pytest.raises(ValueError, match="'w'.*shape"):
        opt.update({"w": np.zeros(4)}, st)
    with pytest.raises(ValueError, match="missing"):
        opt.update({"v": np.zeros(3)}, st)


def test_defaults_are_the_papers_mnist_settings():
    """Spec section 8: STE lr 1e-2, betas (0.9, 0.999); Bop threshold 1e-8, gamma 1e-5;
    PMF lr 1e-3, rho 1.2, weight decay 0, beta from 1, x rho every 100 iterations, capped at 1e4."""
    assert Bop().config() == {"threshold": 1e-8, "gamma": 1e-5}
    ste = STEAdam().config()
    assert (ste["lr"], ste["betas"]) == (1e-2, (0.9, 0.999))
    pmf = PMF().config()
    assert {k: pmf[k] for k in ("lr", "rho", "weight_decay", "beta_init", "anneal_every", "beta_max")} == \
        {"lr": 1e-3, "rho": 1.2, "weight_decay": 0.0, "beta_init": 1.0, "anneal_every": 100, "beta_max": 1e4}


@pytest.mark.parametrize("make", [STEAdam, PMF, Bop], ids=["ste", "pmf", "bop"])
@pytest.mark.parametrize("bad", [-0.1, float("nan")])
def test_bad_lr_override_is_refused(make, bad):
    opt = make()
    st = opt.init({"w": np.array([0.5, -0.5])})
    with pytest.raises(ValueError, match="lr"):
        opt.update({"w": np.array([1.0, -1.0])}, st, lr=bad)


# -- Partition -------------------------------------------------------------------------------
class TwoSampleSTE(STEAdam):
    """STE that asks for two passes per step (stands in for BayesBiNN with S = 2)."""

    def sample(self, state, rng):
        return [{"tag": 0}, {"tag": 1}]


KINDS = {"fc1.weight": BINARY, "fc1.bias": REAL, "fc2.weight": BINARY, "fc2.bias": REAL}


def _params(rng):
    return {"fc1.weight": rng.normal(size=(3, 2)), "fc1.bias": rng.normal(size=3),
            "fc2.weight": rng.normal(size=(1, 3)), "fc2.bias": rng.normal(size=1)}


def test_partition_routes_and_merges_in_model_order():
    rng = np.random.default_rng(6)
    params = _params(rng)
    opt = Partition(TwoSampleSTE(lr=0.1), Adam(lr=0.01), KINDS)
    assert isinstance(opt, Partition)
    st = opt.init(dict(reversed(params.items())))          # order comes from kinds
    assert isinstance(st, PartitionState)
    assert set(st.binary.latent) == {"fc1.weight", "fc2.weight"}
    assert set(st.real.params) == {"fc1.bias", "fc2.bias"}
    noise = opt.sample(st, rng)
    assert noise == [{"tag": 0}, {"tag": 1}]                  # the binary optimizer's list, unchanged
    for n in noise:
        assert list(opt.forward_params(st, n)) == list(KINDS)
    assert list(opt.params(st)) == list(KINDS)
    np.testing.assert_array_equal(opt.params(st)["fc1.bias"], params["fc1.bias"])
    np.testing.assert_array_equal(opt.params(st)["fc1.weight"], np.where(params["fc1.weight"] >= 0, 1, -1))


def test_partition_update_binary_gets_all_samples_real_gets_mean():
    rng = np.random.default_rng(7)
    b_opt, r_opt = TwoSampleSTE(lr=0.1), Adam(lr=0.01)
    opt = Partition(b_opt, r_opt, KINDS)
    st = opt.init(_params(rng))
    noise = opt.sample(st, rng)
    grads = [_params(rng) for _ in noise]
    new = opt.update(grads, st, noise, lr=(0.05, 0.002))
    b_grads = [{k: g[k] for k in ("fc1.weight", "fc2.weight")} for g in grads]
    want_b = b_opt.update(b_grads, st.binary, noise, lr=0.05)
    mean = {k: (grads[0][k] + grads[1][k]) / 2 for k in ("fc1.bias", "fc2.bias")}
    want_r = r_opt.update(mean, st.real, lr=0.002)
    for k in ("fc1.weight", "fc2.weight"):
        np.testing.assert_array_equal(new.binary.latent[k], want_b.latent[k])
    for k in ("fc1.bias", "fc2.bias"):
        np.testing.assert_array_equal(new.real.params[k], want_r.params[k])
        np.testing.assert_array_equal(new.real.m[k], want_r.m[k])


def test_partition_sample_params_falls_back_to_params():
    rng = np.random.default_rng(8)
    opt = Partition(Bop(), Adam(), KINDS)
    st = opt.init(_params(rng))
    sp = opt.sample_params(st, rng)
    assert list(sp) == list(KINDS)
    for k in KINDS:
        np.testing.assert_array_equal(sp[k], opt.params(st)[k])


def test_partition_bad_arguments():
    with pytest.raises(ValueError, match="real_opt"):
        Partition(Bop(), TwoSampleSTE(), KINDS)
    with pytest.raises(ValueError, match="kinds"):
        Partition(Bop(), Adam(), {"a": "int8"})
    with pytest.raises(TypeError, match="binary_opt"):
        Partition(object(), Adam(), KINDS)
    rng = np.random.default_rng(9)
    opt = Partition(Bop(), Adam(), KINDS)
    with pytest.raises(ValueError, match="not in kinds"):
        opt.init({**_params(rng), "fc3.weight": np.zeros(2)})
    st = opt.init(_params(rng))
    with pytest.raises(ValueError, match="lr"):
        opt.update(_params(rng), st, lr=0.1)
    assert issubclass(Partition, Optimizer)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_is_bit_identical_to_the_numpy_expression(dtype):
    """The Numba kernel must reproduce the NumPy formula exactly (same ops, same order)."""
    import math

    from refbinn.optim._adam_kernels import adam_update_fused
    from refbinn.optim._backend import FUSED_MIN_SIZE
    rng = np.random.default_rng(7)
    n = FUSED_MIN_SIZE + 123
    g = (rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 2, n)).astype(dtype)
    m = (rng.standard_normal(n) * 1e-3).astype(dtype)
    v = (rng.random(n) * 1e-4).astype(dtype)
    for t, lr in ((1, 1e-2), (17, 3e-4)):
        got = adam_update_fused(g, m, v, t, lr, 0.9, 0.999, 1e-8)
        assert got is not None
        m_ref = 0.9 * m + (1.0 - 0.9) * g
        v_ref = 0.999 * v + (1.0 - 0.999) * (g * g)
        d_ref = (lr / (1.0 - 0.9 ** t)) * (m_ref / (np.sqrt(v_ref) / math.sqrt(1.0 - 0.999 ** t) + 1e-8))
        for a, b in zip(got, (d_ref, m_ref, v_ref)):
            assert a.dtype == dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_fused_pmf_is_bit_identical_to_the_numpy_path(dtype, weight_decay):
    """Five PMF steps (annealing included) with the Numba kernels equal the pure NumPy steps exactly."""
    from refbinn.optim._backend import FUSED_MIN_SIZE
    rng = np.random.default_rng(11)
    n = 2 * FUSED_MIN_SIZE + 77
    params = {"w": rng.uniform(-1, 1, (n,)).astype(dtype)}
    grads = [{"w": (rng.standard_normal(n) * 10.0 ** rng.uniform(-6, 0, n)).astype(dtype)} for _ in range(5)]
    def run(backend):
        opt = PMF(lr=1e-2, rho=1.5, anneal_every=2, weight_decay=weight_decay, backend=backend)
        s = opt.init(params)
        soft = []
        for g in grads:
            soft.append(opt.forward_params(s)["w"])
            s = opt.update([g], s)
        return s, soft

    s_fused, soft_fused = run("numba")
    s_ref, soft_ref = run("numpy")                                    # every array takes the NumPy path
    assert s_fused.beta == s_ref.beta and s_fused.step == s_ref.step == 5
    for a, b in zip(soft_fused, soft_ref):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    for part in ("u", "m", "v"):
        a, b = getattr(s_fused, part)["w"], getattr(s_ref, part)["w"]
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)


def test_ste_clip_by_global_norm_when_the_squares_overflow_float64():
    """||g|| = 5e200: the sum of squares overflows float64, but the clipped gradient g/||g||
    (here [0.6, -0.8]) is ordinary; it must not become 0 (coef = c/inf)."""
    from refbinn.optim.ste import clip_by_global_norm
    with np.errstate(over="ignore"):
        out = clip_by_global_norm({"a": np.array([3e200, -4e200]), "b": np.zeros(2)}, 1.0)
    np.testing.assert_allclose(out["a"], [0.6, -0.8], rtol=4e-16)
    assert np.array_equal(out["b"], np.zeros(2))
