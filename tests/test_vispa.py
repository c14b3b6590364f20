"""VISPA (refbinn/optim/vispa.py): the invariants its math implies, checked one by one.

- K = 0 without projection is straight-through SGD with momentum, exactly;
- every projection leaves each (m_i, Z[:, i]/sqrt(S)) of unit norm;
- P(w_b = +1) = Phi(m / sqrt(1 - m**2)) (z-test per weight, fixed seed);
- grad_Z is the reparameterisation gradient (finite differences on smooth surrogates);
- the fused Numba step and forward are bit-identical to the NumPy reference (signed zeros too);
- the pooled output arrays of the fused path never overwrite a state or weights still held;
- exact save/load, argument checks, a NaN gradient changes nothing, a planted teacher is learned.
"""
import copy
import math
import pickle
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import ndtr

from refbinn.nn import Dense, Sequential
from refbinn.noise import NoiseKey, normal
from refbinn.nn.losses import logistic_loss
from refbinn.optim import load_state, save_state
from refbinn.optim.vispa import (VISPA, VISPAState, gaussian_weights, project, sample_weights,

                                 vispa_grads, xavier_std)


@pytest.fixture(autouse=True)
def _always_fused(monkeypatch):
    """Exercise the Numba kernels on the small arrays of these tests (the library
    sends arrays below FUSED_MIN_SIZE to the NumPy reference)."""
    import refbinn.optim._backend as module
    monkeypatch.setattr(module, "FUSED_MIN_SIZE", 0)


def bits(a):
    """The bytes of an array: equal bits, so -0.0 differs from +0.0."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def assert_state_identical(a, b):
    assert type(a) is type(b) and a.step == b.step
    for f in ("m", "Z", "vel_m", "vel_Z"):
        da, db = getattr(a, f), getattr(b, f)
        assert list(da) == list(db), f
        for k in da:
            np.testing.assert_array_equal(da[k], db[k], err_msg=f"{f}[{k}]", strict=True)
            assert np.array_equal(bits(da[k]), bits(db[k])), f"{f}[{k}]: the bits differ (signed zeros)"


def sq_norms(m, Z, scale):
    """m_i**2 + |Z[:, i]|**2 / S, computed independently of ``project``."""
    return m * m + np.sum(Z * Z, axis=0) / scale


# -- arguments --------------------------------------------------------------------------
@pytest.mark.parametrize("kw, name", [
    (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(lr="a"), "lr"),
    (dict(rank=-1), "rank"), (dict(rank=2.5), "rank"), (dict(rank=True), "rank"),
    (dict(rank=float("inf")), "rank"),
    (dict(scale=0.0), "scale"), (dict(scale=-3.0), "scale"), (dict(scale=float("nan")), "scale"),
    (dict(scale=float("inf")), "scale"),
    (dict(momentum=1.0), "momentum"), (dict(momentum=-0.1), "momentum"),
    (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(project="yes"), "project"), (dict(init="kaiming"), "init"), (dict(backend="cuda"), "backend"),
])
def test_bad_hyperparameters_name_the_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        VISPA(**kw)


def test_bad_calls():
    opt = VISPA(rank=2)
    with pytest.raises(ValueError, match="rng"):
        opt.init({"w": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="float32 or float64"):
        opt.init({"w": np.zeros((2, 3), dtype=np.int64)}, np.random.default_rng(0))
    s = opt.init({"w": np.zeros((2, 3))}, np.random.default_rng(0))
    g = {"w": np.ones((2, 3))}
    with pytest.raises(ValueError, match="noise"):
        opt.update(g, s)                                       # K > 0 needs the noise
    with pytest.raises(ValueError, match=r"'w'.*\(3,\).*\(2,\)"):
        opt.forward_params(s, {"w": np.zeros(3)})
    noise = opt.sample(s, np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"'w'.*\(3, 2\)"):
        opt.update({"w": np.ones((3, 2))}, s, noise)
    with pytest.raises(ValueError, match="lr"):
        opt.update(g, s, noise, lr=-0.1)
    with pytest.raises(ValueError, match="2 gradient"):
        opt.update([g, g], s, noise)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("field, bad", [("vel_m", np.full(8, 1e3, np.float32)),
                                        ("vel_m", np.zeros(40_000, np.float64)),
                                        ("Z", np.zeros((2, 40_000), np.float32)),
                                        ("vel_Z", np.zeros((3, 8), np.float32))])
def test_a_state_that_does_not_fit_raises_before_the_step(backend, field, bad):
    """The fused kernel reads m.size elements of vel_m (rank * m.size of Z, vel_Z): a smaller array
    was read past its end (garbage, then a misleading 'non-finite' error)."""
    opt = VISPA(rank=3, backend=backend)
    s = opt.init({"w": np.zeros(40_000, np.float32)}, np.random.default_rng(0))
    bad_state = s._replace(**{field: {"w": bad}})
    noise = opt.sample(s, np.random.default_rng(1))
    with pytest.raises(ValueError, match=rf"VISPA: state.{field}\['w'\] has shape"):
        opt.update({"w": np.zeros(40_000, np.float32)}, bad_state, noise)
    with pytest.raises(ValueError, match=rf"VISPA: state.{field}\['w'\] has shape"):
        opt.forward_params(bad_state, noise[0])                # the weight kernel reads rank * m.size of Z


def test_xavier_std_uses_torch_fans():
    assert xavier_std((20, 10)) == math.sqrt(2 / 30)
    assert xavier_std((8, 3, 3, 3)) == math.sqrt(2 / (27 + 72))    # fan_in = 3*9, fan_out = 8*9
    assert xavier_std((5,)) == math.sqrt(2 / 6) and xavier_std(()) == 1.0


# -- K = 0, no projection: straight-through SGD with momentum, exactly -----------------------
def ste_sgd_reference(w0, grad_fn, steps, lr, momentum, wd):
    """The plain STE-SGD loop: latent reals w (dict), forward at sign(w), torch SGD on w.

    Returns the final latents, the final momentum buffers and the forward weights of every step."""
    w, buf, forwards = {k: v.copy() for k, v in w0.items()}, {k: None for k in w0}, []
    for t in range(steps):
        wb = {k: np.where(v >= 0, 1.0, -1.0).astype(v.dtype) for k, v in w.items()}
        forwards.append(wb)
        g = grad_fn(wb, t)
        for k in w:
            d = g[k] + wd * w[k]
            buf[k] = d if buf[k] is None else momentum * buf[k] + d      # torch: first buf = d
            w[k] = w[k] - lr * buf[k]
    return w, buf, forwards


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("init", ["params", "xavier"])
def test_rank0_without_projection_is_ste_sgd(backend, dtype, init):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(dtype)
    t = (rng.random(40) < 0.5).astype(dtype)
    model = Sequential(Dense(6, 3, name="fc"), Dense(3, 1, name="out"))
    params, _ = model.init(rng, dtype)
    params["fc.weight"][0, 0] = 0.0                               # an exact zero: sign -> +1

    def grads(p, step):                                           # minibatch = 10 rows, in turn
        rows = slice(10 * (step % 4), 10 * (step % 4) + 10)
        z, cache, _ = model.forward(p, X[rows], {}, train=True)
        return model.backward(p, cache, logistic_loss(z, t[rows])[1])[1]

    lr, mom, wd, steps = 0.05, 0.9, 1e-3, 12
    opt = VISPA(lr=lr, rank=0, momentum=mom, weight_decay=wd, project=False, init=init, backend=backend)
    s = opt.init(params, np.random.default_rng(1))
    start = {k: v.copy() for k, v in s.m.items()}
    if init == "params":
        for k in params:
            np.testing.assert_array_equal(start[k], params[k], strict=True)
    nrng = np.random.default_rng(2)
    for step in range(steps):
        noise = opt.sample(s, nrng)
        assert all(r.shape == (0,) for r in noise[0].values())
        p = opt.forward_params(s, noise[0])
        s = opt.update(grads(p, step), s, noise)
    ref, bufs, _ = ste_sgd_reference(start, grads, steps, lr, mom, wd)
    for k in params:
        np.testing.assert_array_equal(s.m[k], ref[k], strict=True)
        np.testing.assert_array_equal(s.vel_m[k], bufs[k], strict=True)
        assert s.Z[k].shape == (0,) + params[k].shape
    assert s.step == steps


def test_ste_reference_loop_on_one_layer_agrees():
    """The same equivalence on one parameter with a hand-made gradient, noise omitted (K = 0)."""
    rng = np.random.default_rng(3)
    w0 = rng.normal(size=(4, 5))
    target = rng.choice([-1.0, 1.0], size=(4, 5))
    grad_fn = lambda wb, t: {"w": (wb["w"] - target) * (1 + t % 3)}
    w_ref, _, fw_ref = ste_sgd_reference({"w": w0}, grad_fn, 7, 0.1, 0.5, 0.0)
    opt = VISPA(lr=0.1, rank=0, momentum=0.5, weight_decay=0.0, project=False, init="params")
    s = opt.init({"w": w0}, np.random.default_rng(0))
    for t in range(7):
        fw = opt.forward_params(s, {"w": np.zeros(0)})["w"]
        np.testing.assert_array_equal(fw, fw_ref[t]["w"])
        s = opt.update(grad_fn({"w": fw}, t), s)                 # K = 0: noise may be omitted
    np.testing.assert_array_equal(s.m["w"], w_ref["w"])


# -- projection --------------------------------------------------------------------------
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@given(shape=shapes, rank=st.integers(0, 6), scale=st.sampled_from([0.01, 1.0, 7.5, 100.0, 1e4]),
       seed=st.integers(0, 2 ** 31))
def test_projection_gives_unit_norm_after_init_and_every_step(shape, rank, scale, seed):
    rng = np.random.default_rng(seed)
    opt = VISPA(lr=0.5, rank=rank, scale=scale, momentum=0.9, weight_decay=1e-2)
    s = opt.init({"a": np.zeros(shape), "b": np.zeros((3, 2))}, rng)
    for step in range(4):
        for k in s.m:
            assert s.Z[k].shape == (rank,) + s.m[k].shape and s.m[k].dtype == np.float64
            np.testing.assert_allclose(sq_norms(s.m[k], s.Z[k], scale), 1.0, rtol=0, atol=1e-12)
            assert np.all(np.abs(s.m[k]) <= 1 + 1e-15)
        noise = opt.sample(s, rng)
        g = {k: 10 * rng.normal(size=v.shape) for k, v in s.m.items()}
        s = opt.update(g, s, noise)


def test_projection_float32_and_edge_cases():
    rng = np.random.default_rng(4)
    m = rng.normal(size=50).astype(np.float32) * 1e3
    Z = rng.normal(size=(3, 50)).astype(np.float32) * 1e-3
    m[:3] = 0.0
    Z[:, :2] = 0.0                     # columns 0, 1: zero vectors; column 2: m = 0, Z != 0
    m[5] = 1e-30                       # squares underflow in float32
    Z[:, 5] = 1e-30
    pm, pZ = project(m, Z, 10.0)
    assert pm.dtype == pZ.dtype == np.float32
    assert np.all(pm[:2] == 1) and np.all(pZ[:, :2] == 0)        # zero vector -> the +1 weight
    assert pm[2] == 0 and pm[5] == 1 and np.all(pZ[:, 5] == 0)
    ok = np.ones(50, bool)
    ok[5] = False
    np.testing.assert_allclose(sq_norms(pm.astype(np.float64), pZ.astype(np.float64), 10.0)[ok],
                               1.0, rtol=0, atol=1e-6)
    # rank 0 with projection: m = sign(m), so every weight is deterministic
    opt = VISPA(rank=0)
    s = opt.init({"w": np.zeros((6, 7), np.float32)}, rng)
    assert np.all(np.abs(s.m["w"]) == 1)
    np.testing.assert_array_equal(opt.sample_params(s, rng)["w"], s.m["w"])


# -- P(w_b = +1) = Phi(m / sqrt(1 - m**2)) ---------------------------------------------------
def test_probability_of_plus_one_matches_phi():
    """Per weight, |p_hat - p| <= 4 standard errors, sqrt(p(1-p)/M), M draws.

    Multiple testing: 64 weights at 4 SE give a family-wise false-alarm rate of at most
    64 * 2*(1 - Phi(4)) = 0.4% (Bonferroni); the seed is fixed, so the test is
    deterministic. Two extra weights at m = +-1 (Z = 0) must never flip.
    """
    K, S, n, M = 8, 100.0, 64, 20000
    rng = np.random.default_rng(5)
    m = rng.uniform(-0.85, 0.85, n)                                 # P(+1) in (0.05, 0.95)
    u = rng.normal(size=(K, n))
    Z = u / np.linalg.norm(u, axis=0) * np.sqrt(S * (1 - m ** 2))    # (K, n), random directions
    m, Z = project(m, Z, S)
    m = np.concatenate([m, [1.0, -1.0]])
    Z = np.concatenate([Z, np.zeros((K, 2))], axis=1)
    opt = VISPA(rank=K, scale=S)
    state = VISPAState({"w": m}, {"w": Z}, {"w": np.zeros_like(m)}, {"w": np.zeros_like(Z)}, 0)
    plus = np.zeros(n + 2)
    for _ in range(M):
        plus += opt.sample_params(state, rng)["w"] > 0
    p_hat = plus / M
    p = ndtr(m[:n] / np.sqrt(1 - m[:n] ** 2))
    assert 0.02 < p.min() and p.max() < 0.98                       # the normal approximation holds
    z = (p_hat[:n] - p) / np.sqrt(p * (1 - p) / M)
    assert np.all(np.abs(z) <= 4), f"max |z| = {np.abs(z).max():.2f} at weight {np.abs(z).argmax()}"
    assert p_hat[n] == 1 and p_hat[n + 1] == 0
    # and the test can fail: a variance scale off by 2x is detected
    state_wrong = state._replace(Z={"w": Z * math.sqrt(2)})
    plus = np.zeros(n + 2)
    for _ in range(M // 4):
        plus += opt.sample_params(state_wrong, rng)["w"] > 0
    z_wrong = (plus[:n] / (M // 4) - p) / np.sqrt(p * (1 - p) / (M // 4))
    assert np.abs(z_wrong).max() > 4


def test_one_r_per_layer_shared_by_its_weights():
    K, S = 3, 4.0
    opt = VISPA(rank=K, scale=S, backend="numpy")
    s = opt.init({"a": np.zeros((4, 5)), "b": np.zeros(6)}, np.random.default_rng(6))
    noise = opt.sample(s, np.random.default_rng(7))
    assert len(noise) == 1 and {k: r.shape for k, r in noise[0].items()} == {"a": (K,), "b": (K,)}
    key = NoiseKey(s.seed, 0, 1)                                # counter-based: (seed, step, name)
    for k in ("a", "b"):
        np.testing.assert_array_equal(noise[0][k], normal(key, 0, k, K) / 2.0, strict=True)
    assert not np.array_equal(noise[0]["a"], noise[0]["b"])
    fw = opt.forward_params(s, noise[0])
    for k in s.m:
        w = s.m[k] + np.tensordot(noise[0][k], s.Z[k], axes=(0, 0))
        np.testing.assert_allclose(gaussian_weights(s.m[k], s.Z[k], noise[0][k]), w, rtol=1e-14)
        np.testing.assert_array_equal(fw[k], np.where(gaussian_weights(s.m[k], s.Z[k], noise[0][k]) >= 0,
                                                      1.0, -1.0))
    # exact zero of m + Z^T r maps to +1; params is sign(m) with 0 -> +1
    assert sample_weights(np.array([0.0, -0.5]), np.array([[1.0, 1.0]]), np.array([0.0]))[0] == 1
    zero = s._replace(m={"a": np.zeros((4, 5)), "b": -np.ones(6)})
    np.testing.assert_array_equal(opt.params(zero)["a"], 1.0)
    np.testing.assert_array_equal(opt.params(zero)["b"], -1.0)


# -- grad_Z: the reparameterisation gradient on smooth surrogates ---------------------------
@pytest.mark.parametrize("surrogate", ["identity", "tanh"])
def test_grads_match_finite_differences_of_the_expectation(surrogate):
    """F(m, Z) = (1/J) sum_j L(phi(m + Z^T r_j)) with J fixed draws (common random numbers),
    phi = identity or tanh(w/eps): a smooth stand-in for sign. The pathwise estimate
    (1/J) sum_j vispa_grads(phi'(w_j) * dL/dphi, r_j, S), with the straight-through factor
    replaced by phi', must equal dF/dm and sqrt(S) * dF/dZ (= dF/dV, V = Z/sqrt(S)) up to
    the O(h**2) error of central differences."""
    K, S, n, J, eps, h = 3, 9.0, 5, 400, 0.5, 1e-5
    rng = np.random.default_rng(8)
    X = rng.normal(size=(30, n))
    t = (rng.random(30) < 0.5).astype(float)
    m, Z = project(rng.normal(size=n), rng.normal(size=(K, n)) * math.sqrt(S / K), S)
    r = rng.standard_normal((J, K)) / math.sqrt(S)                        # (J, K)

    phi = (lambda w: w) if surrogate == "identity" else (lambda w: np.tanh(w / eps))
    dphi = (lambda w: np.ones_like(w)) if surrogate == "identity" else \
        (lambda w: (1 - np.tanh(w / eps) ** 2) / eps)

    def F(m, Z):
        return np.mean([logistic_loss(X @ phi(m + Z.T @ rj), t)[0] for rj in r])

    gm, gZ = np.zeros(n), np.zeros((K, n))
    for rj in r:
        w = gaussian_weights(m, Z, rj)
        _, dz = logistic_loss(X @ phi(w), t)
        a, b = vispa_grads((X.T @ dz) * dphi(w), rj, S)
        gm += a / J
        gZ += b / J
    fd_m = np.array([(F(m + h * e, Z) - F(m - h * e, Z)) / (2 * h) for e in np.eye(n)])
    fd_Z = np.zeros((K, n))
    for k in range(K):
        for i in range(n):
            E = np.zeros((K, n))
            E[k, i] = h
            fd_Z[k, i] = (F(m, Z + E) - F(m, Z - E)) / (2 * h)
    tol = 1e-7 * np.abs(gZ).max()
    np.testing.assert_allclose(gm, fd_m, rtol=0, atol=tol)
    np.testing.assert_allclose(gZ, math.sqrt(S) * fd_Z, rtol=0, atol=tol)
    assert np.abs(gZ - fd_Z).max() > 100 * tol                   # the sqrt(S) factor is visible


def test_several_passes_average_the_estimates():
    opt = VISPA(rank=2, scale=4.0, backend="numpy")
    rng = np.random.default_rng(9)
    s = opt.init({"w": np.zeros((3, 3))}, rng)
    noise = opt.sample(s, rng) + opt.sample(s, rng)
    gs = [{"w": rng.normal(size=(3, 3))} for _ in noise]
    new = opt.update(gs, s, noise)
    parts = [vispa_grads(g["w"], n["w"], 4.0) for g, n in zip(gs, noise)]
    gm, gZ = (parts[0][0] + parts[1][0]) / 2, (parts[0][1] + parts[1][1]) / 2
    m, Z = project(s.m["w"] - 0.1 * (gm + 5e-4 * s.m["w"]), s.Z["w"] - 0.1 * (gZ + 5e-4 * s.Z["w"]), 4.0)
    np.testing.assert_allclose(new.m["w"], m, rtol=1e-14)
    np.testing.assert_allclose(new.Z["w"], Z, rtol=1e-14)


# -- the Numba twins are bit-identical to NumPy ----------------------------------------------
@pytest.mark.parametrize("project_", [True, False])
@pytest.mark.parametrize("wd", [0.0, 5e-4])
@pytest.mark.parametrize("rank", [0, 3])
def test_fused_kernels_match_numpy_exactly(project_, wd, rank):
    params = {"conv": np.zeros((5, 3, 3, 3), np.float32), "fc": np.zeros((10, 9001), np.float32),
              "b": np.zeros(7, np.float32)}
    runs = []
    for backend in ("numba", "numpy"):
        opt = VISPA(lr=0.3, rank=rank, scale=10.0, momentum=0.9, weight_decay=wd, project=project_,
                    backend=backend)
        s = opt.init(params, np.random.default_rng(10))
        rng = np.random.default_rng(11)
        fws = []
        for step in range(4):
            noise = opt.sample(s, rng)
            if step == 1:                                         # edge cases: exact zeros
                noise = [{k: np.zeros_like(r) for k, r in noise[0].items()}]
                s = s._replace(m={**s.m, "b": np.zeros(7, np.float32)},
                               Z={**s.Z, "b": np.zeros((rank, 7), np.float32)})
            fws.append(opt.forward_params(s, noise[0]))
            g = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
            g["fc"][0, :5] = 0.0
            s = opt.update(g, s, noise)
        runs.append((s, fws))
    (a, fa), (b, fb) = runs
    assert_state_identical(a, b)
    for x, y in zip(fa, fb):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], strict=True)
    assert np.all(fa[1]["b"] == 1)                                # sign(0) = +1 in the kernel too


@pytest.mark.parametrize("wd", [0.0, 5e-4])
def test_fused_step_zero_vector_edge_is_bit_identical(wd):
    """A_i = m_i**2 + |Z[:, i]|**2/S underflows to 0 in float32 for |m_i|, |Z[k, i]| ~ 1e-30;
    ``project`` then sets m_i = 1 and Z[:, i] = +0 (never -0), and so must the kernel."""
    K, n = 3, 300
    rng = np.random.default_rng(20)
    m = rng.uniform(-1, 1, n).astype(np.float32)
    Z = rng.normal(size=(K, n)).astype(np.float32)
    m[:5] = [1e-30, -1e-30, 0.0, -0.0, -1e-30]
    Z[:, :5] = [[-1e-30], [1e-30], [-1e-30]]
    Z[:, 3] = -0.0
    g = rng.normal(size=n).astype(np.float32)
    g[:5] = 0.0
    s = VISPAState({"w": m}, {"w": Z}, {"w": np.zeros_like(m)}, {"w": np.zeros_like(Z)}, 0)
    noise = [{"w": (rng.normal(size=K) / 3).astype(np.float32)}]
    new = [VISPA(lr=0.2, rank=K, scale=9.0, weight_decay=wd, backend=b).update({"w": g}, s, noise)
           for b in ("numba", "numpy")]
    assert_state_identical(*new)
    assert np.all(new[0].m["w"][:5] == 1) and not np.any(np.signbit(new[0].Z["w"][:, :5]))


def test_pooled_outputs_never_overwrite_what_is_still_held():
    """The fused path reuses an output array only when nothing else references it: states
    and forward weights that are kept keep their values through later steps, while the
    arrays of a dropped state are reused (no fresh pages on every step)."""
    opt = VISPA(lr=0.5, rank=3, scale=10.0)
    rng = np.random.default_rng(21)
    s = opt.init({"w": np.zeros((40, 50), np.float32), "v": np.zeros((30, 20), np.float32)}, rng)
    kept, kept_copies, fws, fw_copies = [], [], [], []
    for step in range(9):
        noise = opt.sample(s, rng)
        fw = opt.forward_params(s, noise[0])
        if step % 2 == 0:
            fws.append(fw)
            fw_copies.append(copy.deepcopy(fw))
        s = opt.update({k: rng.normal(size=v.shape).astype(np.float32) for k, v in s.m.items()}, s, noise)
        if step % 3 == 1:
            kept.append(s)
            kept_copies.append(copy.deepcopy(s))
    for a, b in zip(kept, kept_copies):
        assert_state_identical(a, b)
    for a, b in zip(fws, fw_copies):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], strict=True)

    def arrays(state):
        return [arr for f in ("m", "Z", "vel_m", "vel_Z") for arr in getattr(state, f).values()]

    g = {k: np.ones(v.shape, np.float32) for k, v in s.m.items()}
    noise = opt.sample(s, rng)
    s1 = opt.update(g, s, noise)
    s2 = opt.update(g, s1, noise)
    dropped = [weakref.ref(a) for a in arrays(s1)]
    del s1
    s3 = opt.update(g, s2, noise)
    assert all(r() is not None for r in dropped)                  # kept by the pool, not freed
    assert {id(a) for a in arrays(s3)} == {id(r()) for r in dropped}
    assert not {id(a) for a in arrays(s3)} & {id(a) for a in arrays(s2)}


# -- counter-based r and the next step's weights written by the update ---------------------
def test_r_is_a_pure_function_of_seed_step_and_name():
    opt = VISPA(rank=4, scale=9.0)
    s = opt.init({"w": np.zeros((6, 5), np.float32)}, np.random.default_rng(30))
    t = opt.init({"w": np.zeros((6, 5), np.float32)}, np.random.default_rng(31))
    assert s.seed != t.seed and 0 <= s.seed < 2 ** 63
    a = opt.sample(s, np.random.default_rng(1))[0]["w"]
    np.testing.assert_array_equal(a, opt.sample(s, np.random.default_rng(2))[0]["w"], strict=True)
    np.testing.assert_array_equal(a, (normal(NoiseKey(s.seed, 0, 1), 0, "w", 4) / 3.0).astype(np.float32))
    assert not np.array_equal(a, opt.sample(t, None)[0]["w"])                    # another seed
    assert not np.array_equal(a, opt.sample(s._replace(step=1), None)[0]["w"])   # another step


def test_sample_params_draws_new_networks_from_rng():
    opt = VISPA(rank=4, scale=1.0)
    s = opt.init({"w": np.zeros((50, 40), np.float32)}, np.random.default_rng(32))
    a, b = (opt.sample_params(s, np.random.default_rng(3))["w"] for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, opt.sample_params(s, np.random.default_rng(4))["w"])
    with pytest.raises(ValueError, match="rng"):
        opt.sample_params(s, None)


@pytest.mark.parametrize("project_", [True, False])
def test_update_writes_the_next_steps_weights_bit_for_bit(project_):
    """The fused update writes sign(m' + Z'^T r_next) for the next step's r; forward_params
    hands out exactly those arrays for that state and r, and computes anything else."""
    params = {"fc": np.zeros((30, 70), np.float32), "b": np.zeros(9, np.float32)}
    opt = VISPA(lr=0.3, rank=3, scale=10.0, project=project_)
    ref = VISPA(lr=0.3, rank=3, scale=10.0, project=project_, backend="numpy")
    s = opt.init(params, np.random.default_rng(33))
    rng = np.random.default_rng(34)
    for _ in range(3):
        noise = opt.sample(s, None)
        fw = opt.forward_params(s, noise[0])
        s = opt.update({k: rng.normal(size=v.shape).astype(np.float32) for k, v in s.m.items()}, s, noise)
    noise = opt.sample(s, None)[0]
    fw = opt.forward_params(s, noise)
    for k in s.m:
        assert fw[k] is opt.memo[("vispa", k)][4]                      # from the update, not recomputed
        np.testing.assert_array_equal(bits(fw[k]), bits(sample_weights(s.m[k], s.Z[k], noise[k])))
    np.testing.assert_array_equal(ref.forward_params(s, noise)["fc"], fw["fc"], strict=True)
    # another r, a copy of the state, or an older step: computed, not the memo's
    other = {k: -r for k, r in noise.items()}
    assert opt.forward_params(s, other)["fc"] is not fw["fc"]
    np.testing.assert_array_equal(opt.forward_params(s, other)["fc"],
                                  sample_weights(s.m["fc"], s.Z["fc"], other["fc"]))
    twin = copy.deepcopy(s)
    assert opt.forward_params(twin, noise)["fc"] is not fw["fc"]
    assert opt.forward_params(s._replace(step=s.step - 1), noise)["fc"] is not fw["fc"]


def test_a_wrong_memo_entry_is_never_used():
    """The check can fail: a memo entry planted for another state is ignored."""
    opt = VISPA(rank=2, scale=4.0)
    s = opt.init({"w": np.zeros((20, 20), np.float32)}, np.random.default_rng(35))
    noise = opt.sample(s, None)[0]
    fake = np.full((20, 20), 7.0, np.float32)
    opt.memo[("vispa", "w")] = (weakref.ref(s.m["w"]), weakref.ref(s.Z["w"]), s.step + 1, noise["w"], fake)
    assert opt.forward_params(s, noise)["w"] is not fake
    opt.memo[("vispa", "w")] = (weakref.ref(s.m["w"]), weakref.ref(s.Z["w"]), s.step, noise["w"], fake)
    assert opt.forward_params(s, noise)["w"] is fake                    # planted for this state: used


def test_a_failed_step_leaves_no_memo_entry():
    opt = VISPA(rank=2, scale=4.0)
    s = opt.init({"a": np.zeros((20, 20), np.float32), "b": np.zeros((20, 20), np.float32)},
                 np.random.default_rng(36))
    noise = opt.sample(s, None)
    g = {"a": np.ones((20, 20), np.float32), "b": np.full((20, 20), np.nan, np.float32)}
    with pytest.raises(FloatingPointError):
        opt.update(g, s, noise)
    assert not opt.memo


def test_copies_and_pickles_leave_the_pool_behind():
    opt = VISPA(rank=3)
    rng = np.random.default_rng(22)
    s = opt.init({"w": np.zeros((100, 100), np.float32)}, rng)
    noise = opt.sample(s, rng)
    g = {"w": rng.normal(size=(100, 100)).astype(np.float32)}
    s1 = opt.update(g, s, noise)                                  # the pool now holds 160 kB
    blob = pickle.dumps(opt)
    assert len(blob) < 2000
    for other in (pickle.loads(blob), copy.deepcopy(opt)):
        assert other.config() == opt.config()
        assert_state_identical(other.update(g, s, noise), s1)


# -- dtype, save/load, non-finite gradients ----------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(backend, dtype):
    opt = VISPA(rank=2, backend=backend)
    rng = np.random.default_rng(12)
    s = opt.init({"w": np.zeros((4, 3), dtype)}, rng)
    noise = opt.sample(s, rng)
    assert noise[0]["w"].dtype == dtype
    s = opt.update({"w": rng.normal(size=(4, 3))}, s, noise)         # float64 gradient
    for f in ("m", "Z", "vel_m", "vel_Z"):
        assert getattr(s, f)["w"].dtype == dtype
    for p in (opt.params(s), opt.forward_params(s, opt.sample(s, rng)[0]), opt.sample_params(s, rng)):
        assert p["w"].dtype == dtype and np.all(np.abs(p["w"]) == 1)


def test_save_load_round_trip_is_exact(tmp_path):
    opt = VISPA(lr=0.07, rank=3, scale=12.5, momentum=0.8, weight_decay=1e-3, project=True,
                init="params", backend="numpy")
    rng = np.random.default_rng(13)
    s = opt.init({"fc1.weight": rng.normal(size=(4, 6)).astype(np.float32),
                  "fc2.weight": rng.normal(size=(2, 4)).astype(np.float32)}, rng)
    for _ in range(3):
        noise = opt.sample(s, rng)
        s = opt.update({k: rng.normal(size=v.shape) for k, v in s.m.items()}, s, noise, lr=0.05)
    save_state(tmp_path / "vispa.npz", opt, s)
    opt2, s2 = load_state(tmp_path / "vispa.npz")
    assert type(opt2) is VISPA and opt2.config() == opt.config() and repr(opt2) == repr(opt)
    assert_state_identical(s2, s)
    noise = opt.sample(s, np.random.default_rng(14))
    g = {k: np.ones(v.shape, np.float32) for k, v in s.m.items()}
    assert_state_identical(opt2.update(g, s2, noise), opt.update(g, s, noise))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_nonfinite_gradient_raises_and_leaves_state(backend):
    opt = VISPA(rank=2, backend=backend)
    rng = np.random.default_rng(15)
    s = opt.init({"fc1.weight": np.zeros((3, 4), np.float32),
                  "fc2.weight": np.zeros((2, 3), np.float32)}, rng)
    s = opt.update({k: np.ones(v.shape, np.float32) for k, v in s.m.items()}, s, opt.sample(s, rng))
    before = copy.deepcopy(s)
    noise = opt.sample(s, rng)
    for bad in (np.nan, np.inf, -np.inf):
        g = {k: np.ones(v.shape, np.float32) for k, v in s.m.items()}
        g["fc2.weight"][1, 2] = bad
        with pytest.raises(FloatingPointError, match="fc2.weight"):
            opt.update(g, s, noise)
        assert_state_identical(s, before)
    # finite but huge: sqrt(S) * r * g overflows float32, so Z would be inf/NaN
    g = {k: np.full(v.shape, 3e38, np.float32) for k, v in s.m.items()}
    with pytest.raises(FloatingPointError, match="fc1.weight.*non-finite"):
        opt.update(g, s, [{k: np.full(2, 1.0, np.float32) for k in s.m}])
    assert_state_identical(s, before)


@pytest.mark.parametrize("project_", [True, False])
@pytest.mark.parametrize("lr", [0.0, 0.1])
def test_nonfinite_gradient_is_named_when_the_kernel_finds_it(monkeypatch, project_, lr):
    """Fused parameters skip the up-front scan: the kernel's count of non-finite outputs
    must catch every NaN/inf gradient (lr = 0 included) and the error must still name the
    first parameter with a bad gradient, as the up-front scan of the NumPy path does."""
    import refbinn.optim._backend as module
    monkeypatch.setattr(module, "FUSED_MIN_SIZE", 10)             # "a" fused, "b" NumPy
    opt = VISPA(rank=2, project=project_)
    rng = np.random.default_rng(23)
    s = opt.init({"a": np.zeros((3, 4), np.float32), "b": np.zeros((2, 3), np.float32)}, rng)
    noise = opt.sample(s, rng)
    before = copy.deepcopy(s)
    for bad_keys in (["a"], ["b"], ["a", "b"]):
        for bad in (np.nan, np.inf, -np.inf):
            g = {k: np.ones(v.shape, np.float32) for k, v in s.m.items()}
            for k in bad_keys:
                g[k][1, 2] = bad
            with pytest.raises(FloatingPointError, match=f"gradient of parameter '{bad_keys[0]}'"):
                opt.update(g, s, noise, lr=lr)
            assert_state_identical(s, before)


# -- planted binary teacher ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_learns_planted_binary_teacher(dtype):
    """y = sign(X @ w*), w* in {-1,+1}^32; a binary student agrees on a fraction
    1 - angle(w, w*)/pi of inputs, so >= 95% needs all 32 signs right (one wrong: 88.7%)."""
    D, n_train, n_test, batch, steps = 32, 1000, 2000, 50, 300
    rng = np.random.default_rng(16)
    w_star = rng.choice([-1.0, 1.0], size=D)
    X = rng.normal(size=(n_train + n_test, D)).astype(dtype)
    y = (X @ w_star >= 0).astype(dtype)                             # targets in {0, 1}
    model = Sequential(Dense(D, 1, name="fc"))
    params, _ = model.init(rng, dtype)
    opt = VISPA()                                                   # the authors' CIFAR settings
    s = opt.init(params, np.random.default_rng(17))
    for step in range(steps):
        lr = 0.1 * (1 + math.cos(math.pi * step / steps)) / 2
        idx = rng.choice(n_train, batch, replace=False)
        noise = opt.sample(s, rng)
        p = opt.forward_params(s, noise[0])
        z, cache, _ = model.forward(p, X[idx], {}, train=True)
        _, dz = logistic_loss(z, y[idx])
        s = opt.update(model.backward(p, cache, dz)[1], s, noise, lr=lr)
    w = opt.params(s)["fc.weight"]
    assert w.dtype == dtype and np.all((w == 1) | (w == -1))
    agree = np.mean((model.apply(opt.params(s), X[n_train:], {})[:, 0] >= 0) == y[n_train:].astype(bool))
    assert agree >= 0.95, f"agreement {agree:.3f}"
    np.testing.assert_array_equal(w[0], w_star)                     # in fact exact recovery
