"""BayesBiNN's fused kernels (noise made in registers from the key) against the NumPy reference
(u materialised by ``refbinn.noise.uniform``, the equations of ``_bayesbinn_math.py``): the same
bits in float32 and float64, every numerics, S = 0..3; and a trace re-run and checked by a port
that materialises the noise itself.

Equality here is exact (``np.array_equal`` on the bits): both paths run the same operations
in the same order with the same exp/log/tanh (``_elementary.py``).
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from refbinn import noise as noise_stream
from refbinn.optim import _bayesbinn_kernels as kernels
from refbinn.optim._elementary import exp32_np, log32_np, tanh32_np
from refbinn.optim._float32 import exp32, log32, tanh32, tanh32_large
from refbinn.optim.bayesbinn import BayesBiNN, concrete_scale, relaxed_sample, step_numpy


@njit(cache=True, error_model="numpy")
def _elementwise(fn_id, x, out):
    """out = exp32/log32/tanh32(x) for fn_id 0/1/2, compiled as the kernels compile them."""
    for i in range(x.size):
        xi = x[i]
        out[i] = exp32(xi) if fn_id == 0 else (log32(xi) if fn_id == 1 else tanh32(xi))


def bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        a.view(np.uint8 if a.dtype.itemsize == 1 else f"u{a.dtype.itemsize}"),
        b.view(np.uint8 if b.dtype.itemsize == 1 else f"u{b.dtype.itemsize}"))


def run_both(dtype, numerics, samples, shapes, *, tau, beta=0.0, lam_init=10.0, lam_init_std=0.0,
             lam0=0.0, steps=2, seed=0, grad_scale=1.0):
    """The same steps on both backends; returns [(states, weights)] for numba, numpy."""
    out = []
    for backend in ("numba", "numpy"):
        opt = BayesBiNN(N=1000.0, tau=tau, lr=0.05, beta=beta, samples=samples, lam_init=lam_init,
                        lam_init_std=lam_init_std, lam0=lam0, numerics=numerics, dtype=dtype,
                        backend=backend)
        params = {k: np.zeros(s, dtype) for k, s in shapes.items()}
        state = opt.init(params, np.random.default_rng(seed))
        g_rng = np.random.default_rng(seed + 1)
        states, weights = [state], []
        for _ in range(steps):
            noise = opt.sample(state, None)
            weights.append([opt.forward_params(state, n) for n in noise])
            grads = [{k: (grad_scale * g_rng.standard_normal(v.shape)).astype(dtype)
                      for k, v in state.lam.items()} for _ in noise]
            try:
                state = opt.update(grads, state, noise)
            except FloatingPointError as e:                 # tau > 1 and |lam| large: s*g overflows
                states.append(str(e))                       # both backends must refuse the same step
                break
            states.append(state)
        out.append((states, weights))
    return out


def assert_same(fused, ref):
    (sf, wf), (sr, wr) = fused, ref
    assert len(sf) == len(sr)
    for a, b in zip(sf, sr):
        if isinstance(a, str) or isinstance(b, str):
            assert a == b                                   # the same refusal, naming the same parameter
            continue
        for field in ("lam", "momentum", "mu"):
            da, db = getattr(a, field), getattr(b, field)
            assert da.keys() == db.keys()
            for k in da:
                assert bits_equal(da[k], db[k]), f"{field}['{k}'] differs at step {a.step}"
        assert a.step == b.step and a.seed == b.seed
    for pa, pb in zip(wf, wr):
        for a, b in zip(pa, pb):
            for k in a:
                assert bits_equal(a[k], b[k]), f"forward weights of '{k}' differ"


# sizes below the serial/parallel switch (the parallel builds run the same block code: one test
# below covers them, so that CI does not compile every combination twice), every remainder
# mod 4 and mod BLOCK
SHAPES = st.sampled_from([(1,), (3,), (7, 5), (1027,), (5 * 1024 + 3,), (2, 3, 4, 5)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(["float32", "float64"]),
       numerics=st.sampled_from(["exact", "official", "exact-clipped"]),
       samples=st.integers(0, 3), shape=SHAPES, tau=st.sampled_from([1e-10, 0.01, 0.3, 1.0, 3.0]),
       beta=st.sampled_from([0.0, 0.9]), spread=st.sampled_from([0.0, 1.0, 8.0]),
       prior=st.sampled_from(["zero", "array"]), seed=st.integers(0, 2 ** 16))
def test_fused_and_reference_give_bit_identical_state(dtype, numerics, samples, shape, tau, beta, spread,
                                                     prior, seed):
    shapes = {"fc1.weight": shape, "fc2.weight": (5, 3)}
    lam0 = 0.0
    if prior == "array":
        r = np.random.default_rng(seed + 7)
        lam0 = {k: r.standard_normal(s) for k, s in shapes.items()}
    # spread 0: lam = +-10 (saturated blocks at small tau); else lam ~ N(+-1, spread) crosses zero
    fused, ref = run_both(dtype, numerics, samples, shapes, tau=tau, beta=beta,
                          lam_init=10.0 if spread == 0 else 1.0, lam_init_std=spread, lam0=lam0, seed=seed)
    assert_same(fused, ref)


@pytest.mark.parametrize("dtype,numerics,samples,beta,prior", [
    ("float32", "official", 1, 0.0, "zero"), ("float32", "exact", 1, 0.0, "zero"),
    ("float32", "official", 2, 0.9, "array"), ("float64", "exact", 1, 0.0, "zero")])
def test_parallel_builds_match(dtype, numerics, samples, beta, prior):
    """Arrays of at least SERIAL_BELOW weights take the parallel builds: the same bits."""
    shape = (kernels.SERIAL_BELOW + 5,)
    lam0 = {"w": np.random.default_rng(3).standard_normal(shape)} if prior == "array" else 0.0
    for spread in (0.0, 2.0):
        fused, ref = run_both(dtype, numerics, samples, {"w": shape}, tau=0.3 if spread else 1e-10,
                              beta=beta, lam_init=10.0 if spread == 0 else 1.0, lam_init_std=spread, lam0=lam0)
        assert_same(fused, ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("numerics", ["exact", "official", "exact-clipped"])
def test_saturated_blocks_and_mixed_blocks_match(dtype, numerics):
    """At tau = 1e-10 blocks whose |lam| all exceed 8.5 skip the noise: their first loop writes
    the result while it checks that this holds, and a block where it fails for one weight is
    computed again by the full path. Every kind of block must equal the reference: all
    saturated (block 0); one |lam| = 8.6 in the middle (block 1: w_r = +-1 and s = 0, but
    tanh(lam) is not +-1, so 'official' remakes mu'); one undecided weight in the middle
    (block 2) or first (block 3); with and without the passes' weights."""
    fused, ref = run_both(dtype, numerics, 1, {"w": (5 * kernels.BLOCK + 3,)}, tau=1e-10, steps=3,
                          lam_init=10.0, grad_scale=1e-3)
    assert_same(fused, ref)
    B = kernels.BLOCK
    opt = BayesBiNN(N=100.0, tau=1e-10, numerics=numerics, dtype=dtype)
    state = opt.init({"w": np.zeros(4 * B + 5, dtype)}, np.random.default_rng(0))
    lam = state.lam["w"]
    lam[B + 17] = -8.6
    lam[2 * B + 17] = 0.25
    lam[3 * B] = -0.25
    ref_opt = BayesBiNN(N=100.0, tau=1e-10, numerics=numerics, dtype=dtype, backend="numpy")
    g = {"w": np.random.default_rng(1).standard_normal(lam.shape).astype(dtype)}
    noise = opt.sample(state)
    u = noise[0].uniform("w", lam.shape, dtype)
    w = opt.forward_params(state, noise[0])
    assert bits_equal(w["w"], relaxed_sample(lam, u, 1e-10))
    assert bits_equal(ref_opt.forward_params(state, noise[0])["w"], w["w"])
    b = ref_opt.update([g], state, ref_opt.sample(state))
    for a in (opt.update([g], state, noise), opt.update([g], state, noise, weights=[w])):
        assert bits_equal(a.lam["w"], b.lam["w"])
        if numerics == "official":
            assert bits_equal(a.mu["w"], b.mu["w"])
            assert a.mu["w"][B + 17] != -1                      # tanh(-8.6), not the sign
            assert dtype == "float64" or a.mu["w"][0] in (-1, 1)  # float32 tanh(+-10) is +-1


def test_sample_returns_keys_not_arrays_and_the_key_is_the_state():
    opt = BayesBiNN(N=10.0, tau=1.0, samples=3)
    state = opt.init({"w": np.zeros((4, 5))}, np.random.default_rng(0))
    noise = opt.sample(state, np.random.default_rng(123))
    assert noise == noise_stream.sample_keys(noise_stream.NoiseKey(state.seed, 0, 3))
    assert all(isinstance(n, noise_stream.SampleKey) for n in noise)
    assert opt.sample(state, np.random.default_rng(5)) == noise     # the rng plays no part
    assert 0 <= state.seed < 2 ** 63
    later = opt.update([{"w": np.ones((4, 5))}] * 3, state, noise)
    assert opt.sample(later)[0].key == noise_stream.NoiseKey(state.seed, 1, 3)
    assert BayesBiNN(N=10.0, tau=1.0, samples=0).sample(state) == [None]


def test_given_u_arrays_run_the_reference_and_match_the_keys():
    """A port's (or a trace's) u arrays in place of the keys give the same step."""
    for backend in ("numba", "numpy"):
        opt = BayesBiNN(N=50.0, tau=0.5, samples=2, lam_init=1.0, lam_init_std=1.0, dtype="float32",
                        backend=backend)
        state = opt.init({"w": np.zeros(300, np.float32)}, np.random.default_rng(2))
        keys = opt.sample(state)
        arrays = noise_stream.materialise(keys[0].key, {"w": (300,)}, np.float32)
        g = [{"w": np.random.default_rng(j).standard_normal(300).astype(np.float32)} for j in range(2)]
        assert bits_equal(opt.forward_params(state, keys[1])["w"], opt.forward_params(state, arrays[1])["w"])
        assert bits_equal(opt.update(g, state, keys).lam["w"], opt.update(g, state, arrays).lam["w"])


def test_materialised_u_is_strictly_inside_the_unit_interval():
    key = noise_stream.NoiseKey(2 ** 63 - 1, 2 ** 32 - 1, 1)
    for dt in (np.float32, np.float64):
        u = noise_stream.uniform(key, 0, "fc1.weight", (1 << 18,), dt)
        assert u.dtype == dt and u.min() > 0 and u.max() < 1
        assert u.min() >= 2.0 ** -24 and u.max() <= 1 - 2.0 ** -24


def test_no_momentum_buffer_with_beta0_and_no_mu_in_exact():
    opt = BayesBiNN(N=10.0, tau=1.0, samples=1, numerics="exact", dtype="float32")
    state = opt.init({"w": np.zeros(100_000, np.float32)}, np.random.default_rng(0))
    m0 = state.momentum["w"]
    new = opt.update([{"w": np.ones(100_000, np.float32)}], state, opt.sample(state))
    assert new.momentum["w"] is m0 and not m0.any()          # not written, not replaced
    assert new.mu == {} and state.mu == {}
    off = BayesBiNN(N=10.0, tau=1.0, numerics="official")
    s = off.init({"w": np.zeros(10, np.float32)}, np.random.default_rng(0))
    assert bits_equal(s.mu["w"], tanh32_np(s.lam["w"]))


def test_step_numpy_is_what_the_update_runs():
    """The reference path of ``update`` is ``step_numpy`` on the materialised u."""
    opt = BayesBiNN(N=20.0, tau=0.7, samples=2, lam_init=1.0, lam_init_std=0.5, beta=0.5, backend="numpy")
    state = opt.init({"w": np.zeros(50)}, np.random.default_rng(4))
    noise = opt.sample(state)
    g = [{"w": np.random.default_rng(j).standard_normal(50)} for j in range(2)]
    new = opt.update(g, state, noise)
    us = [n.uniform("w", (50,), np.float64) for n in noise]
    lam, m, _ = step_numpy(state.lam["w"], state.momentum["w"], None, [x["w"] for x in g], us, 0.0,
                           opt.lr, opt.beta, opt.reweight, opt.tau, opt.N, "exact", 1)
    assert bits_equal(new.lam["w"], lam) and bits_equal(new.momentum["w"], m)


@njit(cache=True, error_model="numpy")
def _tanh_large_elementwise(x, out):
    for i in range(x.size):
        out[i] = tanh32_large(x[i])


def test_tanh32_large_is_tanh32_where_the_series_is_not_taken():
    """tanh32_large gives tanh32's bits for |x| >= 0.5, inf and NaN (random float32 bit patterns,
    the 0.5 boundary, the saturation), and differs below 0.5 (so the check can fail)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.integers(0, 2 ** 32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        np.linspace(-12, 12, 100_001, dtype=np.float32),
                        np.array([0.5, -0.5, np.nextafter(0.5, 1), 9.5, 20, 40, np.inf, -np.inf, np.nan],
                                 np.float32)])
    a, b = np.empty_like(x), np.empty_like(x)
    with np.errstate(all="ignore"):
        _elementwise(2, x, a)
        _tanh_large_elementwise(x, b)
    large = ~(np.abs(x) < 0.5)                                  # NaN included
    same = (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    assert same[large].all(), f"{np.count_nonzero(~same[large])} differ"
    assert not same[np.abs(x) < 0.4].all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mean_update_blocks_with_and_without_small_lam(dtype):
    """'official' mu' = tanh(lam) per block: no |lam| < 0.5 (tanh without the series branch, block
    0; |lam| = 0.5 exactly, block 2), one small |lam| (the full tanh, block 1): the reference's bits."""
    B = kernels.BLOCK
    opt = BayesBiNN(N=100.0, tau=0.3, numerics="official", dtype=dtype)
    ref = BayesBiNN(N=100.0, tau=0.3, numerics="official", dtype=dtype, backend="numpy")
    state = opt.init({"w": np.zeros(3 * B + 5, dtype)}, np.random.default_rng(2))
    r = np.random.default_rng(3)
    lam = state.lam["w"]
    lam[...] = r.choice([-1, 1], lam.size) * r.uniform(0.5, 9.0, lam.size)
    lam[B + 100] = 0.25
    lam[2 * B + 7] = -0.5
    g = {"w": r.standard_normal(lam.shape).astype(dtype)}
    a = opt.update([g], state, opt.sample(state))
    b = ref.update([g], state, ref.sample(state))
    assert bits_equal(a.mu["w"], b.mu["w"]) and bits_equal(a.lam["w"], b.lam["w"])
    assert bits_equal(a.mu["w"], np.asarray(kernels.tanh_(lam)))


def test_elementary_float32_functions_are_the_kernels_bits():
    """The NumPy twins of exp32/log32/tanh32 against the kernels on every kind of float32."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        (rng.standard_normal(100_000) * 30).astype(np.float32),
                        np.array([0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 88.72, 88.8, -87.33, -87.4, 9.5],
                                 np.float32)])
    for fn_id, f in enumerate((exp32_np, log32_np, tanh32_np)):
        out = np.empty_like(x)
        with np.errstate(all="ignore"):
            _elementwise(fn_id, x, out)
            mine = f(x)
        same = (out.view(np.uint32) == mine.view(np.uint32)) | (np.isnan(out) & np.isnan(mine))
        assert same.all(), f"function {fn_id}: {np.count_nonzero(~same)} differ"


def test_a_wrong_twin_is_caught():
    """The equality checks can fail: one ulp off in one element is seen."""
    fused, ref = run_both("float32", "exact", 1, {"w": (40,)}, tau=0.5, lam_init=1.0, lam_init_std=1.0)
    fused[0][-1].lam["w"][3] = np.nextafter(fused[0][-1].lam["w"][3], np.float32(np.inf))
    with pytest.raises(AssertionError, match="lam"):
        assert_same(fused, ref)


@pytest.mark.parametrize("samples", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_official_step_from_the_passes_weights_is_the_same(dtype, samples):
    """Given ``weights`` (the passes' w_r), the 'official' kernels read w_r instead of remaking it:
    the same bits as without them and as the reference; wrong weights change the step (they are read)."""
    opt = BayesBiNN(N=100.0, tau=0.5, samples=samples, lam_init=1.0, lam_init_std=2.0, numerics="official",
                    dtype=dtype)
    ref = BayesBiNN(**{**opt.config(), "backend": "numpy"})
    state = opt.init({"w": np.zeros(3000, dtype), "v": np.zeros((7, 3), dtype)}, np.random.default_rng(0))
    noise = opt.sample(state)
    ws = [opt.forward_params(state, n) for n in noise]
    g = [{k: np.random.default_rng(j).standard_normal(v.shape).astype(dtype) for k, v in state.lam.items()}
         for j in range(samples)]
    a, b, c = opt.update(g, state, noise, weights=ws), opt.update(g, state, noise), ref.update(g, state, noise)
    for k in state.lam:
        assert bits_equal(a.lam[k], b.lam[k]) and bits_equal(a.lam[k], c.lam[k]) and bits_equal(a.mu[k], c.mu[k])
    wrong = [{k: np.zeros_like(v) for k, v in w.items()} for w in ws]
    assert not np.array_equal(opt.update(g, state, noise, weights=wrong).lam["w"], a.lam["w"])


@pytest.mark.parametrize("n", [4 * 1024 + 5, kernels.SERIAL_BELOW + 7])      # serial and parallel builds
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relaxed_weights_where_few_z_are_unsaturated(dtype, n):
    """forward_params writes sign(z) and remakes tanh(z) only where |z| < TANH_SAT or z is NaN
    (``_tanh_unsaturated``): the same bits as the reference when |z| sits on either side of the
    bound, with NaN and +-inf lam, one unsaturated weight first or last in a group of 32 or last
    in a block, groups where none is unsaturated, and a block whose only such weight is a NaN."""
    tau = 0.01
    dt = np.dtype(dtype)
    sat = float(kernels.TANH_SAT[dt])
    opt = BayesBiNN(N=100.0, tau=tau, dtype=dtype)
    ref = BayesBiNN(N=100.0, tau=tau, dtype=dtype, backend="numpy")
    state = opt.init({"w": np.zeros(n, dtype)}, np.random.default_rng(4))
    key = opt.sample(state)[0]
    u = key.uniform("w", (n,), dt).astype(np.float64)
    delta = 0.5 * np.log(u / (1 - u))
    r = np.random.default_rng(5)
    t = r.choice([-1.0, 1.0], n) * 40.0                           # |z| ~ 40: saturated
    near = r.choice(np.arange(1024, 2048), 60, replace=False)     # block 1: |z| on both sides of sat
    t[near] = r.choice([-1.0, 1.0], 60) * (sat + r.uniform(-0.05, 0.05, 60))
    t[[31, 32, 1023, 2 * 1024 + 63]] = 0.5                        # a group's last weight, the next's first
    lam = (tau * t - delta).astype(dt)
    lam[[40, 3 * 1024 + 2]] = np.nan                            # block 3: a NaN and nothing unsaturated
    lam[[50, 60]] = [np.inf, -np.inf]
    state.lam["w"][...] = lam
    w = opt.forward_params(state, key)["w"]
    assert bits_equal(w, ref.forward_params(state, key)["w"])
    assert np.isnan(w[40]) and np.isnan(w[3 * 1024 + 2]) and w[50] == 1 and w[60] == -1
    z = (lam.astype(np.float64) + delta) / tau
    assert 0 < np.count_nonzero(np.abs(z[near]) < sat) < 60           # both sides of the bound were hit
    assert np.count_nonzero(np.abs(w[3 * 1024:]) == 1) == n - 3 * 1024 - 1      # all but the NaN


@pytest.mark.parametrize("numerics", ["exact", "exact-clipped"])
@pytest.mark.parametrize("n,dtype", [(4 * 1024 + 5, "float32"), (4 * 1024 + 5, "float64"),
                                     (kernels.SERIAL_BELOW + 7, "float32")])
def test_exact_step_with_scales_on_both_sides_of_the_flush(numerics, n, dtype):
    """The 'exact' scale s = exp(min(e, cap)) * ratio**2, e = log(N/tau) + 2(|lam| - |z|), is 0
    where exp flushes: at tau = 0.01 the kernels give the reference's lam' and m' (beta 0.9)
    with e on both sides of the flush bound, one large e first or last in a group of 32 and last
    in a block, blocks with none, and a block with many, most of them with s > 0."""
    tau, N = 0.01, 100.0
    dt = np.dtype(dtype)
    opt = BayesBiNN(N=N, tau=tau, beta=0.9, numerics=numerics, dtype=dtype)
    ref = BayesBiNN(N=N, tau=tau, beta=0.9, numerics=numerics, dtype=dtype, backend="numpy")
    state = opt.init({"w": np.zeros(n, dtype)}, np.random.default_rng(6))
    key = opt.sample(state)[0]
    u = key.uniform("w", (n,), dt).astype(np.float64)
    delta = 0.5 * np.log(u / (1 - u))
    r = np.random.default_rng(7)
    zero_below = float(kernels.EXP_ZERO[dt])
    t = np.full(n, -50.0)                                          # e = zero_below + t: t < 0 flushes
    # block 1: many e from below the bound to 5 (s from 0 to ~e**5); e = 0 at group edges and a block's end
    t[r.choice(np.arange(1024, 2048), 400, replace=False)] = r.uniform(-5, 5 - zero_below, 400)
    t[[31, 32, 1023, 2 * 1024 + 63]] = -zero_below
    # lam + delta = +-c with c = tau*(log(N/tau) + 2|lam| - zero_below - t)/2 (a contraction: iterate)
    side = r.choice([-1.0, 1.0], n)
    c = np.ones(n)
    for _ in range(8):
        c = tau * (math.log(N / tau) + 2 * np.abs(side * c - delta) - zero_below - t) / 2
    lam = (side * c - delta).astype(dt)
    state.lam["w"][...] = lam
    g = {"w": r.standard_normal(n).astype(dt)}
    a = opt.update([g], state, opt.sample(state))
    b = ref.update([g], state, ref.sample(state))
    assert bits_equal(a.lam["w"], b.lam["w"]) and bits_equal(a.momentum["w"], b.momentum["w"])
    lam64 = lam.astype(np.float64)
    e = math.log(N / tau) + 2 * (np.abs(lam64) - np.abs((lam64 + delta) / tau))
    hit = e >= zero_below
    assert hit[1024:2048].sum() > 50 and not hit[3 * 1024:].any() and hit[[31, 32, 1023]].all()
    assert np.count_nonzero(e > 0.8 * zero_below) > 50            # and many scales are not 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tau, N", [(1e-304, 1e5), (1e-300, 1e300), (1e300, 1e-300)])
def test_exact_scale_where_n_over_tau_leaves_float64(dtype, tau, N):
    """N/tau beyond float64 (inf or 0): log(N/tau) = log N - log tau, not log(inf) (which capped s
    instead of giving 0) nor log(0) (a math domain error). Here |z| = |delta|/tau or |lam| dominates,
    so s = N/tau (cosh lam/cosh z)**2 underflows to exactly 0 (checked in float64 logs), in both paths."""
    lam = np.array([0.0, 3.0, -300.0], dtype)
    u = np.array([0.25, 0.5 + 2.0 ** -20, 0.75], dtype)
    delta = 0.5 * np.log(u.astype(np.float64) / (1 - u.astype(np.float64)))
    z = (lam.astype(np.float64) + delta) / tau
    a = np.abs(lam.astype(np.float64))
    log_s = math.log(N) - math.log(tau) + 2 * (a + np.log1p(np.exp(-2 * a)) - np.abs(z))   # log cosh z <= |z|
    assert np.all(log_s < math.log(np.finfo(dtype).smallest_subnormal) - 1)   # the true s rounds to 0
    with np.errstate(divide="ignore", over="ignore"):      # tau itself outside float32: 1/0, inf casts
        for numerics in ("exact", "exact-clipped"):
            s = concrete_scale(lam, u, tau, N, numerics)
            assert np.array_equal(s, np.zeros(3, dtype))
            assert np.array_equal(kernels.concrete_scale_fused(lam, u, tau, N, numerics), s)


@pytest.mark.parametrize("numerics", ["exact", "exact-clipped"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tau", [1e-10, 1e-2])
def test_exact_saturated_blocks_decided_by_the_least_and_greatest_lam(numerics, dtype, tau):
    """The 'exact' step takes a block as one where every s = 0 from the least and greatest |lam|
    alone (their bits' min/max), not a count of per-weight tests: blocks straddling the bound
    (|lam| from 8.5 to 16 at tau = 0.01, where it holds from about 8.9 in float32 and 13 in
    float64), one |lam| at DELTA_MAX itself or one step above it, the extreme first or last,
    and a NaN must all give the reference's bits, or its error."""
    B = kernels.BLOCK
    dt = np.dtype(dtype)
    opt = BayesBiNN(N=100.0, tau=tau, numerics=numerics, dtype=dtype)
    ref = BayesBiNN(N=100.0, tau=tau, numerics=numerics, dtype=dtype, backend="numpy")
    state = opt.init({"w": np.zeros(6 * B, dtype)}, np.random.default_rng(0))
    lam = state.lam["w"]
    r = np.random.default_rng(2)
    lam[B:2 * B] = r.choice([-1, 1], B) * r.uniform(8.5, 16.0, B)       # straddles at tau = 0.01
    lam[2 * B + 5] = -kernels.DELTA_MAX                                  # s > 0 possible: general loop
    lam[3 * B] = np.nextafter(dt.type(kernels.DELTA_MAX), dt.type(20))   # first weight, one step above
    lam[4 * B - 1] = 1e30                                                # the greatest, last
    lam[4 * B + 7] = np.nextafter(dt.type(kernels.DELTA_MAX), dt.type(20))
    u = opt.sample(state)[0].uniform("w", lam.shape, dt).astype(np.float64)
    delta = 0.5 * np.log(u / (1 - u))
    lam[5 * B + 3] = -delta[5 * B + 3] + 1e-3                           # |lam| < DELTA_MAX, s > 0 at tau 0.01
    lam[5 * B + 4:6 * B] = 20.0
    g = {"w": r.standard_normal(lam.shape).astype(dtype)}
    a = opt.update([g], state, opt.sample(state))
    b = ref.update([g], state, ref.sample(state))
    assert bits_equal(a.lam["w"], b.lam["w"])
    if tau == 1e-2:
        g0 = {"w": g["w"].copy()}
        g0["w"][5 * B + 3] = 0
        moved = opt.update([g0], state, opt.sample(state)).lam["w"][5 * B + 3]
        assert a.lam["w"][5 * B + 3] != moved                           # its s*g counts: s > 0                                    # the bound holds for some weights of block 1, not all
        a1 = np.abs(lam[B:2 * B].astype(np.float64))
        holds = math.log(100.0 / tau) + 2 * (a1 - (a1 - kernels.DELTA_MAX) / tau) < kernels.EXP_ZERO[dt]
        assert 10 < holds.sum() < B - 10
    lam[5 * B + 100] = np.nan                                            # the greatest bits
    errors = []
    for o in (opt, ref):
        with pytest.raises(FloatingPointError) as info:
            o.update([g], state, o.sample(state))
        errors.append(str(info.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("numerics", ["exact", "official"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relaxed_saturated_block_with_a_nan_or_inf_lam(numerics, dtype):
    """``forward_params`` takes a block as saturated from its least |lam| (the min of the bits);
    a NaN lam there (its bits the greatest) must still give NaN, as the reference, not +-1,
    and an inf lam +-1."""
    B = kernels.BLOCK
    opt = BayesBiNN(N=100.0, tau=1e-10, numerics=numerics, dtype=dtype)
    ref = BayesBiNN(N=100.0, tau=1e-10, numerics=numerics, dtype=dtype, backend="numpy")
    state = opt.init({"w": np.zeros(3 * B, dtype)}, np.random.default_rng(0))
    lam = state.lam["w"]
    lam[B + 5] = np.nan
    lam[2 * B + 7] = -np.inf
    with np.errstate(invalid="ignore"):
        w = opt.forward_params(state, opt.sample(state)[0])["w"]
        w_ref = ref.forward_params(state, ref.sample(state)[0])["w"]
    assert np.isnan(w[B + 5]) and w[2 * B + 7] == -1
    assert np.array_equal(w, w_ref, equal_nan=True)


@pytest.mark.parametrize("numerics", ["exact", "official", "exact-clipped"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [7, 3 * kernels.BLOCK + 5, kernels.SERIAL_BELOW + 3])
def test_concrete_scale_fused_is_the_reference_bit_for_bit(numerics, dtype, n):
    """The diagnostics' s (``concrete_scale_fused``: one kernel per formula, serial below
    SERIAL_BELOW and parallel above) equals ``concrete_scale`` for every numerics, with the
    official N after the ratio, the clip at the cap, and mu given or left to tanh(lam)."""
    rng = np.random.default_rng(n)
    lam = (rng.standard_normal(n) * 4).astype(dtype)
    u = rng.uniform(1e-6, 1 - 1e-6, n).astype(dtype)
    lam[:4] = [0.0, 30.0, -0.01, 1.0]
    u[3] = 1 / (1 + math.exp(2.0))                  # delta = -lam: z ~ 0, s ~ (N/tau) cosh(1)^2 > N/tau
    tau, N = 0.05, 60000.0
    s = concrete_scale(lam, u, tau, N, numerics)
    assert s.dtype == dtype and np.isfinite(s).all() and (s > 0).any()
    assert bits_equal(kernels.concrete_scale_fused(lam, u, tau, N, numerics), s)
    if numerics == "exact-clipped":
        assert s[3] < concrete_scale(lam, u, tau, N, "exact")[3]            # the clip at N/tau acts
    if numerics == "official":
        mu = np.tanh(0.5 * lam).astype(dtype)
        assert bits_equal(kernels.concrete_scale_fused(lam, u, tau, N, numerics, mu=mu),
                          concrete_scale(lam, u, tau, N, numerics, mu=mu))
