"""refbinn.noise: Philox4x32-10 against the published known-answer vectors, the u stream's
range, purity, uniformity and independence (tolerances from the sampling error), and the
Numba kernel bit-identical to the NumPy definition."""
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refbinn.kernels.philox import fill_uniform, philox4x32_10, word_to_uniform
from scipy import stats

from refbinn.noise import (NoiseKey, SampleKey, materialise, normal, param_id, philox4x32, sample_keys,
                           uniform)

# Random123's kat_vectors for philox4x32 with 10 rounds: (counter, key) -> output
KAT = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
       ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]


def _philox_ref(ctr, key, rounds=10):
    """Philox4x32-R in Python ints, from Salmon et al. (2011): per round, hi/lo of
    0xD2511F53 * c0 and 0xCD9E8D57 * c2 -> (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); the key
    is bumped by (0x9E3779B9, 0xBB67AE85) mod 2**32 between rounds."""
    (c0, c1, c2, c3), (k0, k1) = ctr, key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) % 2 ** 32, (k1 + 0xBB67AE85) % 2 ** 32
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 % 2 ** 32, (p0 >> 32) ^ c3 ^ k1, p0 % 2 ** 32
    return c0, c1, c2, c3


def _u_ref(seed, step, sample, name, e):
    """The documented stream in Python ints and exact floats: u of element e."""
    key = (seed % 2 ** 32, seed >> 32)
    x = _philox_ref((e // 4, step, sample, zlib.crc32(name.encode("utf-8"))), key)[e % 4]
    return ((x >> 9) + 0.5) * 2.0 ** -23


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_known_answers_numpy_and_numba(ctr, key, want):
    assert _philox_ref(ctr, key) == want                   # the Python reference of the tests below
    assert tuple(int(v) for v in philox4x32(np.array(ctr, dtype=np.uint64), key)) == want
    assert tuple(int(v) for v in philox4x32_10(*ctr, *key)) == want


def test_philox_rounds_matter():
    assert tuple(philox4x32(np.zeros(4, np.uint64), (0, 0), rounds=7)) != KAT[0][2]


def test_philox_matches_a_pure_python_philox_on_random_counters_and_keys():
    """64 random full-width counters and keys (fixed seed): the vectorised NumPy form (which
    must return uint32) and the Numba scalar form against the Python-int definition."""
    rng = np.random.default_rng(20240611)
    ctr = rng.integers(0, 2 ** 32, size=(4, 64), dtype=np.uint64)
    key = [int(k) for k in rng.integers(0, 2 ** 32, size=2, dtype=np.uint64)]
    got = philox4x32(ctr, key)
    assert got.dtype == np.uint32 and got.shape == (4, 64)
    for i in range(64):
        c = tuple(int(v) for v in ctr[:, i])
        want = _philox_ref(c, key)
        assert tuple(int(v) for v in got[:, i]) == want
        assert tuple(int(v) for v in philox4x32_10(*c, *key)) == want


def test_philox_counter_must_have_four_words():
    with pytest.raises(ValueError, match=r"counter must have shape \(4, \.\.\.\), got \(3, 2\)"):
        philox4x32(np.zeros((3, 2), dtype=np.uint64), (0, 0))


@pytest.mark.parametrize("seed,step,samples,sample,name", [
    (2 ** 64 - 1, 2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 2, "fc1.weight"),     # every field at its top
    (2 ** 63 + 0x1234, 0, 1, 0, "é"),                    # seed >= 2**63; a non-ASCII name (UTF-8)
    (0, 7, 3, 2, "层.权重🙂")], ids=["every-field-at-its-top", "seed-over-2**63-latin1-name", "cjk-emoji-name"])
def test_the_stream_matches_a_pure_python_definition(seed, step, samples, sample, name):
    """11 elements (all four lanes, a partial last block) of uniform and fill_uniform, in
    both dtypes, against the module docstring's definition computed with Python ints."""
    key = NoiseKey(seed, step, samples)
    want = np.array([_u_ref(seed, step, sample, name, e) for e in range(11)])
    for fn in (uniform, fill_uniform):
        for dtype in (np.float32, np.float64):
            got = fn(key, sample, name, (11,), dtype)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, want)
    assert param_id(name) == zlib.crc32(name.encode("utf-8"))


def test_word_to_uniform_is_the_midpoint_map():
    """Hand-worked: k = x >> 9 gives (2k + 1) / 2**24; the low 9 bits are dropped; float32."""
    cases = {0: 2.0 ** -24, 0x1FF: 2.0 ** -24, 0x200: 3 * 2.0 ** -24, 0x80000000: 0.5 + 2.0 ** -24,
             0xFFFFFFFF: 1 - 2.0 ** -24}
    for x, want in cases.items():
        assert word_to_uniform(np.uint64(x)) == want
    from numba import float32
    sigs = word_to_uniform.nopython_signatures
    assert sigs and all(sig.return_type == float32 for sig in sigs)


def test_u_is_strictly_inside_and_on_the_float32_midpoint_grid():
    key = NoiseKey(seed=3, step=0, samples=1)
    u = uniform(key, 0, "w", (1000, 100))
    assert u.dtype == np.float32 and u.shape == (1000, 100)
    assert u.min() > 0 and u.max() < 1
    k = u.astype(np.float64) * 2 ** 24
    assert np.all(k == np.round(k)) and np.all(np.round(k) % 2 == 1)     # (2k + 1) / 2**24
    u64 = uniform(key, 0, "w", (1000, 100), np.float64)
    assert u64.dtype == np.float64 and np.array_equal(u64, u.astype(np.float64))


def test_extremes_of_the_grid():
    x = np.array([0, 0xFFFFFFFF], dtype=np.uint32)
    u = ((x >> np.uint32(9)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0 ** -23)
    assert u[0] == 2.0 ** -24 and u[1] == 1 - 2.0 ** -24


def test_the_stream_is_its_documented_definition():
    key = NoiseKey(seed=2 ** 40 + 7, step=12, samples=3)
    u = uniform(key, 2, "fc2.weight", (3, 3))
    e = 6
    x = philox4x32(np.array([e // 4, 12, 2, zlib.crc32(b"fc2.weight")], dtype=np.uint64), (7, 2 ** 8))[e % 4]
    assert u.ravel()[e] == ((int(x) >> 9) + 0.5) * 2.0 ** -23
    assert param_id("fc2.weight") == zlib.crc32(b"fc2.weight")


def test_pure_function_of_its_arguments():
    key = NoiseKey(seed=5, step=7, samples=2)
    a = uniform(key, 1, "fc1.weight", (50,))
    assert np.array_equal(a, uniform(NoiseKey(5, 7, 2), 1, "fc1.weight", (50,)))
    others = [uniform(NoiseKey(6, 7, 2), 1, "fc1.weight", (50,)), uniform(NoiseKey(5, 8, 2), 1, "fc1.weight", (50,)),
              uniform(key, 0, "fc1.weight", (50,)), uniform(key, 1, "fc2.weight", (50,))]
    for b in others:
        assert not np.any(a == b) or np.mean(a == b) < 0.01
    # element e does not depend on the array's size or shape (a prefix stays a prefix)
    assert np.array_equal(uniform(key, 1, "fc1.weight", (5, 10)).ravel(), a)
    assert np.array_equal(uniform(key, 1, "fc1.weight", (7,)), a[:7])


def test_materialise_lists_samples_of_dicts():
    key = NoiseKey(seed=1, step=2, samples=3)
    us = materialise(key, {"a": (2, 3), "b": (4,)}, np.float64)
    assert len(us) == 3 and all(set(u) == {"a", "b"} for u in us)
    assert np.array_equal(us[2]["b"], uniform(key, 2, "b", (4,), np.float64))
    assert all(u.dtype == np.float64 for d in us for u in d.values())
    assert materialise(key, {"a": (2,)})[0]["a"].dtype == np.float32           # the default


def test_sample_keys_and_sample_key_uniform():
    key = NoiseKey(seed=4, step=9, samples=3)
    assert sample_keys(key) == [SampleKey(key, 0), SampleKey(key, 1), SampleKey(key, 2)]
    assert sample_keys(NoiseKey(4, 9, 0)) == []
    for j in range(3):
        u = SampleKey(key, j).uniform("fc1.weight", (2, 3), np.float64)
        assert u.dtype == np.float64
        assert np.array_equal(u, uniform(key, j, "fc1.weight", (2, 3), np.float64))
    with pytest.raises(TypeError, match="NoiseKey"):
        sample_keys((4, 9, 3))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 64 - 1), step=st.integers(0, 2 ** 32 - 1), samples=st.integers(1, 3),
       n=st.integers(1, 37), name=st.text(min_size=1, max_size=12), dtype=st.sampled_from([np.float32, np.float64]))
def test_numba_kernel_is_bit_identical(seed, step, samples, n, name, dtype):
    key = NoiseKey(seed, step, samples)
    for j in range(samples):
        got = fill_uniform(key, j, name, (n,), dtype)
        assert got.dtype == dtype and np.array_equal(got, uniform(key, j, name, (n,), dtype))


def _chi2_ok(u, bins=1000):
    """Chi-square against uniform: the statistic has mean df and sd sqrt(2 df); 5 sd."""
    counts = np.bincount(np.minimum((u * bins).astype(np.int64), bins - 1), minlength=bins)
    e = len(u) / bins
    chi2 = float(np.sum((counts - e) ** 2 / e))
    df = bins - 1
    return abs(chi2 - df) < 5 * np.sqrt(2 * df), chi2


def test_uniformity_chi_square_and_mean():
    u = uniform(NoiseKey(11, 0, 1), 0, "w", (400_000,)).astype(np.float64)
    ok, chi2 = _chi2_ok(u)
    assert ok, chi2
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / len(u))


def test_the_chi_square_check_can_fail():
    u = uniform(NoiseKey(11, 0, 1), 0, "w", (400_000,)).astype(np.float64)
    assert not _chi2_ok(u ** 1.05)[0]            # a 5% distortion of the distribution is caught


def _corr_ok(a, b):
    """Pearson r of independent samples is ~N(0, 1/n); 5 sd."""
    r = np.corrcoef(a, b)[0, 1]
    return abs(r) < 5 / np.sqrt(len(a)), r


def test_independence_across_elements_steps_samples_parameters():
    n = 200_000
    key = NoiseKey(seed=99, step=4, samples=2)
    u = uniform(key, 0, "fc1.weight", (n + 4,)).astype(np.float64)
    pairs = {"adjacent elements": (u[:-1][:n], u[1:][:n]),
             "elements 4 apart (same lane)": (u[:n], u[4:n + 4]),
             "adjacent steps": (u[:n], uniform(NoiseKey(99, 5, 2), 0, "fc1.weight", (n,))),
             "samples 0 and 1": (u[:n], uniform(key, 1, "fc1.weight", (n,))),
             "two parameters": (u[:n], uniform(key, 0, "fc2.weight", (n,))),
             "adjacent seeds": (u[:n], uniform(NoiseKey(100, 4, 2), 0, "fc1.weight", (n,)))}
    for what, (a, b) in pairs.items():
        ok, r = _corr_ok(a, np.asarray(b, dtype=np.float64))
        assert ok, (what, r)
    # pairs of adjacent elements fill the unit square uniformly (10 x 10 cells)
    cells = np.minimum((u[:-1:2] * 10).astype(int), 9) * 10 + np.minimum((u[1::2] * 10).astype(int), 9)
    ok, chi2 = _chi2_ok((cells + 0.5) / 100, bins=100)
    assert ok, chi2


def test_correlation_check_can_fail():
    rng = np.random.default_rng(0)
    a = rng.random(200_000)
    assert not _corr_ok(a, 0.98 * a + 0.02 * rng.random(len(a)))[0]


@pytest.mark.parametrize("fn", [uniform, fill_uniform], ids=["uniform", "fill_uniform"])
@pytest.mark.parametrize("bad,match", [(NoiseKey(-1, 0, 1), "seed"), (NoiseKey(2 ** 64, 0, 1), "seed"),
                                       (NoiseKey(0, 2 ** 32, 1), "step"), (NoiseKey(0, 0, 1.5), "samples"),
                                       (NoiseKey(True, 0, 1), "seed"), (NoiseKey(0, 0, 2 ** 32), "samples"),
                                       (NoiseKey(0, -1, 1), "step")])
def test_bad_keys_are_named(bad, match, fn):
    with pytest.raises(ValueError, match=rf"NoiseKey\.{match} must be an integer in \[0, 2\*\*"):
        fn(bad, 0, "w", (3,))


@pytest.mark.parametrize("fn", [uniform, fill_uniform], ids=["uniform", "fill_uniform"])
def test_more_than_2_34_elements_are_refused_before_allocating(fn):
    """element // 4 is one 32-bit counter word: 4 * 2**32 elements at most. The count is exact
    (an int64 product of these dimensions wraps to 2**33, or to 0)."""
    key = NoiseKey(0, 0, 1)
    for shape in ((4 * 2 ** 32 + 1,), (2 ** 33, 2 ** 31 + 1), (2 ** 32, 2 ** 32)):
        with pytest.raises(ValueError, match=r"elements exceed the counter's 2\*\*34"):
            fn(key, 0, "w", shape)


# -- normals (VISPA's r): Box-Muller on the u stream ------------------------------------
def test_normal_is_box_muller_on_the_stream():
    key = NoiseKey(5, 3, 1)
    u = uniform(key, 0, "conv1.weight", (8,), np.float64)
    a, b = u[0::2], u[1::2]
    want = np.empty(8)
    want[0::2] = np.sqrt(-2 * np.log(a)) * np.cos(2 * np.pi * b)
    want[1::2] = np.sqrt(-2 * np.log(a)) * np.sin(2 * np.pi * b)
    np.testing.assert_array_equal(normal(key, 0, "conv1.weight", 8), want)
    np.testing.assert_array_equal(normal(key, 0, "conv1.weight", 7), want[:7])   # odd n: a prefix
    assert normal(key, 0, "conv1.weight", 0).shape == (0,)
    assert np.all(np.abs(normal(key, 0, "w", 100_000)) <= np.sqrt(48 * np.log(2)))
    with pytest.raises(ValueError, match="n must be"):
        normal(key, 0, "w", -1)


def _normal_ok(z, alpha=1e-4):
    """KS distance to N(0, 1) under the Dvoretzky-Kiefer-Wolfowitz bound at level alpha,
    and mean and variance within 5 standard errors."""
    n = len(z)
    d = stats.kstest(z, "norm").statistic
    return (d < np.sqrt(np.log(2 / alpha) / (2 * n)) and abs(z.mean()) < 5 / np.sqrt(n)
            and abs(z.var() - 1) < 5 * np.sqrt(2 / n)), d


def test_normal_is_standard_normal_and_independent():
    z = normal(NoiseKey(17, 0, 1), 0, "w", 200_000)
    ok, d = _normal_ok(z)
    assert ok, d
    assert _corr_ok(z[:-1], z[1:])[0]                        # the cos/sin pair and neighbours
    assert _corr_ok(z[0::2] ** 2, z[1::2] ** 2)[0]           # one radius feeds both: check squares too
    assert _corr_ok(z, normal(NoiseKey(17, 1, 1), 0, "w", 200_000))[0]


def test_the_normal_check_can_fail():
    z = normal(NoiseKey(17, 0, 1), 0, "w", 200_000)
    assert not _normal_ok(1.03 * z)[0]                       # a 3% scale error is caught
    assert not _normal_ok(z + 0.02)[0]


def test_bad_arguments():
    key = NoiseKey(0, 0, 2)
    with pytest.raises(ValueError, match="sample"):
        uniform(key, 2, "w", (3,))
    with pytest.raises(ValueError, match="dtype"):
        uniform(key, 0, "w", (3,), np.float16)
    with pytest.raises(TypeError, match="name"):
        uniform(key, 0, 7, (3,))
    with pytest.raises(TypeError, match="NoiseKey"):
        uniform((0, 0, 1), 0, "w", (3,))
    with pytest.raises(ValueError, match="sample"):
        fill_uniform(key, -1, "w", (3,))


@pytest.mark.parametrize("fn", [uniform, fill_uniform], ids=["uniform", "fill_uniform"])
def test_shape_sample_and_dtype_are_checked_not_truncated(fn):
    """A negative dimension used to give an empty array, a float sample was truncated
    (0.5 -> sample 0), and fill_uniform accepted float16 (uniform refuses it)."""
    key = NoiseKey(5, 1, 2)
    for shape in ((-1,), (3, -2), (2.5,), (True,), "ab"):
        with pytest.raises(ValueError, match="shape must be a tuple of integers >= 0"):
            fn(key, 0, "w", shape)
    for sample in (0.5, 1.0, True, np.float64(1.0)):
        with pytest.raises(ValueError, match=r"sample must be an integer in \[0, 2\)"):
            fn(key, sample, "w", (3,))
    for dtype in (np.float16, "not-a-dtype", np.int32):
        with pytest.raises(ValueError, match="dtype must be float32 or float64"):
            fn(key, 0, "w", (3,), dtype)
    # what stays accepted: an int shape, NumPy integers, size 0
    np.testing.assert_array_equal(fn(key, np.int64(1), "w", 5), uniform(key, 1, "w", (5,)))
    assert fn(key, 0, "w", (np.int32(2), 0)).shape == (2, 0)


def test_normal_n_must_be_an_integer():
    key = NoiseKey(0, 0, 1)
    for n in (2.7, -1, True, "3"):
        with pytest.raises(ValueError, match=r"normal: n must be an integer in \[0, inf\)"):
            normal(key, 0, "r", n)
    assert normal(key, 0, "r", np.int64(3)).shape == (3,)


@pytest.mark.parametrize("counter,key,rounds,says", [
    (np.array([-1, 0, 0, 0]), (0, 0), 10, r"counter must hold integers in \[0, 2\*\*32\), got int64 values in \[-1, 0\]"),
    (np.array([2 ** 32, 0, 0, 0]), (0, 0), 10, r"counter must hold integers in \[0, 2\*\*32\)"),
    (np.array([0.5, 0, 0, 0]), (0, 0), 10, r"counter must hold integers .*got float64"),
    (np.array([None] * 4), (0, 0), 10, r"counter must hold integers in \[0, 2\*\*32\), got object$"),   # min():
    (np.array(["a"] * 4), (0, 0), 10, r"counter must hold integers .*got <U1$"),                   # TypeError
    (np.zeros(4, np.uint64), None, 10, r"key must be two integers in \[0, 2\*\*32\), got None"),
    (np.zeros(4, np.uint64), (1,), 10, r"key must be two integers .*got \(1,\)"),
    (np.zeros(4, np.uint64), (1.5, 0), 10, r"key must be two integers .*got \(1.5, 0\)"),
    (np.zeros(4, np.uint64), (-1, 0), 10, r"key must be two integers .*got \(-1, 0\)"),
    (np.zeros(4, np.uint64), (0, 0), -1, r"rounds must be an integer >= 0, got -1"),
])
def test_philox_refuses_words_it_would_wrap_or_truncate(counter, key, rounds, says):
    """A negative, fractional or too large word was masked or truncated to another counter
    (-1 read as 2**32 - 1, 0.5 as 0), a short key raised IndexError, rounds=-1 ran no round."""
    with pytest.raises(ValueError, match="philox4x32: " + says):
        philox4x32(counter, key, rounds=rounds)


def test_materialise_and_param_id_refuse_arguments_of_the_wrong_kind():
    key = NoiseKey(1, 2, 3)
    with pytest.raises(ValueError, match="materialise: shapes must be a dict name -> shape, got list"):
        materialise(key, [("w", 3)])
    with pytest.raises(ValueError, match="materialise: dtype must be float32 or float64, got 'banana'"):
        materialise(key, {}, "banana")                   # refused even with nothing to draw
    with pytest.raises(ValueError, match="param_id: name must be encodable as UTF-8"):
        uniform(key, 0, "\ud800", 3)                     # was UnicodeEncodeError from zlib's input
    with pytest.raises(ValueError, match="param_id: name must be encodable as UTF-8"):
        fill_uniform(key, 0, "\ud800", 3)
