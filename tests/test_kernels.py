"""Numba bitwise kernels against their NumPy twins: exact equality on random and edge cases."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refbinn.kernels import (ConvWeights, binary_conv2d, binary_gemm, binary_gemm_panels,
                             binary_weight_matmul, conv_padding, gemm_asm, pack_channels,
                             pack_conv_weight, pack_signs, popcount, to_panels, unpack_signs)
from refbinn.kernels.reference import (binary_conv2d_ref, binary_gemm_ref, binary_weight_matmul_ref,
                                       conv2d_int_ref, pack_channels_ref, pack_signs_ref,
                                       popcount_ref, to_panels_ref, unpack_signs_ref)


def signs(rng, shape, p_zero=0.1):
    """Reals with exact zeros among them (sign(0) = +1 must survive packing)."""
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < p_zero] = 0
    return x


def pm1(x):
    return np.where(x >= 0, 1, -1).astype(np.int64)


# -- popcount --------------------------------------------------------------------------
def test_popcount_matches_bitwise_count(rng):
    words = rng.integers(0, 2**64, size=(37, 5), dtype=np.uint64, endpoint=False)
    words[0, :4] = [0, 2**64 - 1, 1 << 63, 1]
    got = popcount(words)
    assert got.shape == words.shape
    np.testing.assert_array_equal(got, popcount_ref(words))
    assert got[0, :4].tolist() == [0, 64, 1, 1]



@pytest.mark.parametrize("dtype", [np.int64, np.uint32, np.float64])
def test_popcount_refuses_other_dtypes(dtype):
    # int64 would count the bits of the two's complement, float64 does not compile
    with pytest.raises(ValueError, match="popcount: words must be a uint64 array, got"):
        popcount(np.arange(4).astype(dtype))


def test_public_numba_kernels_take_scalars_only():
    """An array kernel indexes without bounds checks: it must stay private behind a checked
    wrapper. The public Numba dispatchers are scalar functions, safe with any argument."""
    import importlib
    import pkgutil

    import refbinn.kernels
    from numba.core.registry import CPUDispatcher
    public = set()
    for info in pkgutil.iter_modules(refbinn.kernels.__path__):
        mod = importlib.import_module(f"refbinn.kernels.{info.name}")
        public |= {f"{info.name}.{n}" for n, v in vars(mod).items()
                   if not n.startswith("_") and isinstance(v, CPUDispatcher)
                   and v.py_func.__module__ == mod.__name__}
    assert public == {"philox.philox4x32_10", "philox.word_to_uniform"}

def _target_has_vpopcntdq():
    """True when Numba compiles for a CPU with AVX-512 VPOPCNTDQ (the host, or NUMBA_CPU_NAME)."""
    import numba
    import llvmlite.binding as llvm
    if numba.config.CPU_NAME not in (None, "host"):
        return "+avx512vpopcntdq" in (numba.config.CPU_FEATURES or "")
    return bool(llvm.get_host_cpu_features().get("avx512vpopcntdq", False))


@pytest.mark.skipif(not _target_has_vpopcntdq(), reason="target CPU lacks AVX-512 VPOPCNTDQ")
def test_gemm_tile_uses_vpopcntq():
    asm = gemm_asm()
    assert "vpopcntq" in asm
    assert "zmm" in asm                      # 512-bit registers, not split into ymm halves



# Compiled for another CPU in a subprocess: NUMBA_CPU_NAME alone keeps the host's features,
# so NUMBA_CPU_FEATURES names them too; a cache folder of its own keeps the host's code apart.
_TARGETS = {
    "icelake-server": "+64bit,+popcnt,+avx,+avx2,+avx512f,+avx512bw,+avx512dq,+avx512vl,+avx512vpopcntdq",
    "haswell": "+64bit,+popcnt,+sse4.2,+avx,+avx2,-avx512f,-avx512vpopcntdq",
    "generic": "+64bit,+sse2",
}
_ON_TARGET = """
import sys
import numpy as np
from refbinn.kernels import binary_conv2d, binary_gemm, binary_weight_matmul, gemm_asm, pack_signs
from refbinn.kernels.reference import binary_gemm_ref, binary_weight_matmul_ref, conv2d_int_ref
asm = gemm_asm()
print("vpopcntq" in asm, "zmm" in asm)
if sys.argv[1] == "run":                 # the host can run code compiled for a subset of its features
    rng = np.random.default_rng(0)
    sg = lambda shape: np.where(rng.standard_normal(shape) >= 0, 1.0, -1.0).astype(np.float32)
    a, b = pack_signs(sg((9, 150))), pack_signs(sg((70, 150)))
    assert np.array_equal(binary_gemm(a, b, 150), binary_gemm_ref(a, b, 150))
    x, w = sg((2, 70, 6, 7)), sg((5, 70, 3, 3))
    assert np.array_equal(binary_conv2d(x, w, 1, 1), conv2d_int_ref(x, w, (1, 1), (1, 1, 1, 1)))
    xf = rng.standard_normal((3, 150)).astype(np.float32)
    assert np.array_equal(binary_weight_matmul(xf, b), binary_weight_matmul_ref(xf, b))
    print("ran")
"""


@pytest.mark.parametrize("cpu, vpopcntq, run", [
    ("icelake-server", True, False),     # compiled only: this host may lack the instruction
    ("haswell", False, True),
    ("generic", False, True),
])
def test_kernels_compile_for_other_cpus(cpu, vpopcntq, run, tmp_path):
    """The GEMM tile uses vpopcntq on 512-bit registers where the target has AVX-512 VPOPCNTDQ;
    on AVX2 and on plain x86-64 the same kernels compile to other instructions and agree with
    their NumPy twins."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": _TARGETS[cpu],
           "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _ON_TARGET, "run" if run else "compile"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split()
    assert lines[:2] == [str(vpopcntq), str(vpopcntq)]          # vpopcntq, zmm registers
    assert ("ran" in lines) == run

# -- packing ---------------------------------------------------------------------------
@given(m=st.integers(0, 5), k=st.integers(1, 300), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64, np.int8, np.int32]))
def test_pack_signs_matches_twin(m, k, seed, dtype):
    rng = np.random.default_rng(seed)
    x = (signs(rng, (m, k)) * 3).astype(dtype)             # ints: -3..3 with zeros
    words = pack_signs(x)
    assert words.dtype == np.uint64 and words.shape == (m, (k + 63) // 64)
    np.testing.assert_array_equal(words, pack_signs_ref(x))
    np.testing.assert_array_equal(unpack_signs(words, k), pm1(x))   # round trip to sign(x)


def test_pack_signs_conventions():
    x = np.array([[1.0, -1.0, 0.0, -0.0, np.nan, np.inf, -np.inf, 2.5]], np.float32)
    word = int(pack_signs(x)[0, 0])
    # bit 1 = -1, little-endian: -1 at 1, NaN at 4, -inf at 6; 0 and -0.0 are +1
    assert word == (1 << 1) | (1 << 4) | (1 << 6)
    assert pack_signs(np.full(64, -1.0))[0] == 2**64 - 1
    assert pack_signs(np.full(65, -1.0)).tolist() == [2**64 - 1, 1]   # padding bits are 0
    assert pack_signs(np.ones((2, 3, 130))).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="x"):
        pack_signs(np.ones((3, 0)))
    with pytest.raises(ValueError, match="k must be"):
        unpack_signs(np.zeros(2, np.uint64), 129)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 150), st.integers(1, 4), st.integers(1, 11)),
       seed=st.integers(0, 2**16))
def test_pack_channels_matches_twin(shape, seed):
    x = signs(np.random.default_rng(seed), shape)
    np.testing.assert_array_equal(pack_channels(x), pack_channels_ref(x))


def test_unpack_matches_twin(rng):
    words = rng.integers(0, 2**63, size=(4, 3), dtype=np.uint64) * 2 + 1
    for k in (129, 150, 192):
        got = unpack_signs(words, k, np.int8)
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, unpack_signs_ref(words, k, np.int8))


# -- binary GEMM -----------------------------------------------------------------------
@given(m=st.integers(1, 13), n=st.integers(1, 70), k=st.integers(1, 260), seed=st.integers(0, 2**16))
def test_binary_gemm_matches_twin_and_integer_matmul(m, n, k, seed):
    rng = np.random.default_rng(seed)
    x, w = signs(rng, (m, k)), signs(rng, (n, k))
    a, b = pack_signs(x), pack_signs(w)
    c = binary_gemm(a, b, k)
    assert c.dtype == np.int32 and c.shape == (m, n)
    np.testing.assert_array_equal(c, binary_gemm_ref(a, b, k))
    np.testing.assert_array_equal(c, pm1(x) @ pm1(w).T)


@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (1, 33, 64), (5, 1, 63), (37, 300, 1000), (4, 32, 2048),
                                     (601, 70, 100)])
def test_binary_gemm_edges(m, n, k, rng):
    x, w = signs(rng, (m, k)), signs(rng, (n, k))
    a, b = pack_signs(x), pack_signs(w)
    np.testing.assert_array_equal(binary_gemm(a, b, k), pm1(x) @ pm1(w).T)
    bp = to_panels(b)
    np.testing.assert_array_equal(bp, to_panels_ref(b))
    np.testing.assert_array_equal(binary_gemm_panels(a, bp, n, k), binary_gemm(a, b, k))
    ones, minus = np.ones((m, k)), -np.ones((n, k))
    assert (binary_gemm(pack_signs(ones), pack_signs(ones[:1].repeat(n, 0)), k) == k).all()
    assert (binary_gemm(pack_signs(ones), pack_signs(minus), k) == -k).all()


def test_binary_gemm_bad_input():
    a = np.zeros((3, 2), np.uint64)
    with pytest.raises(ValueError, match="k must be in"):
        binary_gemm(a, a, 64)
    with pytest.raises(ValueError, match="b must be"):
        binary_gemm(a, np.zeros((3, 3), np.uint64), 100)
    with pytest.raises(ValueError, match="a must be"):
        binary_gemm(a.astype(np.int64), a, 100)


# -- binary convolution ----------------------------------------------------------------
def _check_conv(x, w, stride, padding):
    y = binary_conv2d(x, w, stride, padding)
    s = (stride, stride)
    pads = conv_padding(padding, w.shape[2:], s)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, binary_conv2d_ref(x, w, s, pads))
    np.testing.assert_array_equal(y, conv2d_int_ref(x, w, s, pads))
    return y


@given(n=st.integers(1, 2), c=st.integers(1, 140), hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       o=st.integers(1, 9), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.integers(1, 3), padding=st.sampled_from([0, 1, 2, "same", "valid"]),
       seed=st.integers(0, 2**16))
def test_binary_conv2d_matches_twins(n, c, hw, o, k, stride, padding, seed):
    if padding == "same":
        stride = 1
    pads = conv_padding(padding, k, (stride, stride))
    if hw[0] + pads[0] + pads[1] < k[0] or hw[1] + pads[2] + pads[3] < k[1]:
        return                                   # kernel larger than the padded input
    rng = np.random.default_rng(seed)
    _check_conv(signs(rng, (n, c) + hw), signs(rng, (o, c) + k), stride, padding)


@pytest.mark.parametrize("padding", [0, 1, "same"])
@pytest.mark.parametrize("stride", [1, 2])
def test_binary_conv2d_constant_inputs(padding, stride):
    # all +1 / all -1: the padding correction is all that separates border from interior
    if padding == "same" and stride == 2:
        return
    rng = np.random.default_rng(3)
    w = signs(rng, (5, 70, 3, 3))
    for value in (1.0, -1.0):
        x = np.full((1, 70, 7, 5), value, np.float32)
        y = _check_conv(x, w, stride, padding)
        if padding == 0:                          # no padding: every position is the same sum
            assert (y == y[:, :, :1, :1]).all()


def test_binary_conv2d_realistic_shapes(rng):
    # several panels, more than 64 channels, odd sizes, a prepacked weight
    x, w = signs(rng, (1, 130, 13, 11)), signs(rng, (20, 130, 3, 3))
    cw = pack_conv_weight(w)
    assert isinstance(cw, ConvWeights)
    y = binary_conv2d(x, cw, 1, 1)
    np.testing.assert_array_equal(y, conv2d_int_ref(x, w, (1, 1), (1, 1, 1, 1)))
    np.testing.assert_array_equal(binary_conv2d(x, w, 2, 1), conv2d_int_ref(x, w, (2, 2), (1, 1, 1, 1)))


def test_binary_conv2d_bad_input():
    w = np.ones((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="x has shape"):
        binary_conv2d(np.ones((1, 4, 5, 5)), w)
    with pytest.raises(ValueError, match="stride"):
        binary_conv2d(np.ones((1, 3, 5, 5)), w, stride=0)
    with pytest.raises(ValueError, match="same"):
        binary_conv2d(np.ones((1, 3, 5, 5)), w, stride=2, padding="same")
    with pytest.raises(ValueError, match="does not fit"):
        binary_conv2d(np.ones((1, 3, 2, 2)), w)
    with pytest.raises(ValueError, match="padding"):
        binary_conv2d(np.ones((1, 3, 5, 5)), w, padding=-1)


# -- real activations x packed weights -------------------------------------------------------
@given(m=st.integers(1, 20), n=st.integers(1, 11), k=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_binary_weight_matmul_matches_twin(m, n, k, seed):
    rng = np.random.default_rng(seed)
    x, w = signs(rng, (m, k)), signs(rng, (n, k))
    y = binary_weight_matmul(x, pack_signs(w))
    assert y.dtype == np.float32 and y.shape == (m, n)
    np.testing.assert_array_equal(y, binary_weight_matmul_ref(x, pack_signs(w)))   # same order: equal
    # and close to the exact product: every partial sum goes through at most Kw + 7
    # float32 additions, so |error| <= 3 (Kw + 8) u sum|x| with u = 2**-24
    exact = x.astype(np.float64) @ pm1(w).T
    bound = 3 * ((k + 63) // 64 + 8) * 2.0**-24 * np.abs(x).astype(np.float64).sum(1, keepdims=True)
    assert (np.abs(y - exact) <= bound).all()


def test_binary_weight_matmul_gemv_and_errors(rng):
    x, w = rng.standard_normal(1000).astype(np.float32), signs(rng, (37, 1000))
    y = binary_weight_matmul(x, pack_signs(w))
    assert y.shape == (37,)
    np.testing.assert_array_equal(y, binary_weight_matmul_ref(x[None], pack_signs(w))[0])
    with pytest.raises(ValueError, match="float32"):
        binary_weight_matmul(x.astype(np.float64), pack_signs(w))
    with pytest.raises(ValueError, match="w_words"):
        binary_weight_matmul(x, pack_signs(w[:, :900]))


@pytest.mark.parametrize("edit", ["words_cols", "words_rows", "taps", "shape", "dtype"])
def test_binary_conv2d_refuses_conv_weights_that_do_not_fit_their_shape(edit):
    """A ConvWeights built by hand: the kernels index words and tap_sums unchecked (heap corruption)."""
    rng = np.random.default_rng(0)
    cw = pack_conv_weight(rng.standard_normal((64, 128, 3, 3)))
    x = rng.standard_normal((2, 128, 16, 16))
    bad = {"words_cols": cw._replace(words=np.ascontiguousarray(cw.words[:, :9])),
           "words_rows": cw._replace(words=cw.words[:4]),
           "taps": cw._replace(tap_sums=cw.tap_sums[:1]),
           "shape": cw._replace(shape=(64, 128, 5, 5)),
           "dtype": cw._replace(tap_sums=cw.tap_sums.astype(np.int64))}[edit]
    with pytest.raises(ValueError, match="ConvWeights"):
        binary_conv2d(x, bad, 1, 1)
    assert binary_conv2d(x, cw, 1, 1).shape == (2, 64, 16, 16)


# -- edges the tests above do not reach (mutation audit) -------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_signs_conventions_hold_in_full_words(dtype):
    """Words with 64 real bits take the vector compare, the tail the scalar one: both give
    bit 1 for -1, NaN and -inf, bit 0 for 0 and -0.0."""
    x = np.ones(130, dtype)
    specials = {1: -1.0, 2: 0.0, 3: -0.0, 4: np.nan, 5: np.inf, 6: -np.inf,      # word 0
                70: np.nan, 71: -0.0, 127: -2.0,                                 # word 1
                128: 0.0, 129: np.nan}                                           # tail
    for i, v in specials.items():
        x[i] = v
    assert pack_signs(x).tolist() == [(1 << 1) | (1 << 4) | (1 << 6), (1 << 6) | (1 << 63), 1 << 1]
    np.testing.assert_array_equal(pack_signs(x), pack_signs_ref(x))


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.uint64, np.float16, np.int16])
def test_pack_signs_of_non_native_dtypes(dtype):
    """bool and unsigned values are all +1; float16 keeps its signs (the kernels compile for
    float32/64 and signed ints only, so the others are converted first)."""
    x = signs(np.random.default_rng(4), (3, 70)) * 3
    x = (np.abs(x) if np.dtype(dtype).kind in "bu" else x).astype(dtype)
    np.testing.assert_array_equal(pack_signs(x), pack_signs_ref(x))
    np.testing.assert_array_equal(pack_channels(x.reshape(1, 3, 7, 10)),
                                  pack_channels_ref(x.reshape(1, 3, 7, 10)))
    if dtype in (np.bool_, np.uint8, np.uint64):
        assert not pack_signs(x).any()


def test_pack_and_unpack_refuse_bad_shapes():
    with pytest.raises(ValueError, match="pack_signs: x must have a last axis"):
        pack_signs(np.float32(1.0))
    for shape in [(1, 0, 2, 2), (1, 2, 0, 2), (1, 2, 2, 0), (2, 2, 2)]:
        with pytest.raises(ValueError, match="pack_channels: x must have shape"):
            pack_channels(np.ones(shape))
    with pytest.raises(ValueError, match="unpack_signs: words must be a uint64"):
        unpack_signs(np.zeros(2, np.int64), 100)
    for k in (128, 193):                              # 3 words hold 129..192 values
        with pytest.raises(ValueError, match=r"unpack_signs: k must be in \(128, 192\]"):
            unpack_signs(np.zeros(3, np.uint64), k)


@pytest.mark.parametrize("n", [8, 24, 25, 31, 57])
def test_binary_gemm_column_edges_of_a_panel(n, rng):
    """N ending inside each of a panel's four 8-column vectors (and at their edges)."""
    x, w = signs(rng, (5, 70)), signs(rng, (n, 70))
    np.testing.assert_array_equal(binary_gemm(pack_signs(x), pack_signs(w), 70), pm1(x) @ pm1(w).T)


def test_binary_gemm_refuses_bad_shapes():
    a = np.zeros((3, 2), np.uint64)
    with pytest.raises(ValueError, match="binary_gemm: a must be"):
        binary_gemm(a[0], a, 100)
    with pytest.raises(ValueError, match="binary_gemm_panels: a must be"):   # it said binary_gemm
        binary_gemm_panels(a[0], to_panels(a), 3, 100)
    with pytest.raises(ValueError, match="binary_gemm: b must be"):
        binary_gemm(a, a[0], 100)
    bp = to_panels(a)
    assert binary_gemm_panels(a, bp, 3, 100).shape == (3, 3)
    for bad_bp, n in [(bp, 33), (bp[:, :1], 3), (np.zeros((1, 2, 16), np.uint64), 3)]:
        with pytest.raises(ValueError, match="binary_gemm_panels: bp must be uint64 panels"):
            binary_gemm_panels(a, bad_bp, n, 100)


def test_pack_conv_weight_refuses_empty_sizes():
    for shape in [(0, 3, 3, 3), (2, 0, 3, 3), (2, 3, 0, 3), (2, 3, 3, 0), (2, 3, 3)]:
        with pytest.raises(ValueError, match="pack_conv_weight: w must have shape"):
            pack_conv_weight(np.ones(shape))


def test_conv_padding_same_puts_the_extra_row_at_the_bottom_right(rng):
    # torch: total k - 1 per axis, the odd one out at the bottom / right
    assert conv_padding("same", (2, 4), (1, 1)) == (0, 1, 1, 2)
    assert conv_padding("same", (3, 1), (1, 1)) == (1, 1, 0, 0)
    x, w = signs(rng, (1, 3, 5, 6)), signs(rng, (2, 3, 2, 4))
    np.testing.assert_array_equal(binary_conv2d(x, w, 1, "same"), conv2d_int_ref(x, w, (1, 1), (0, 1, 1, 2)))


def test_binary_conv2d_panel_without_border_positions(rng):
    """Wo = 70: panel 3 (positions 96..127) lies inside row 1 and has no border position, so
    the padding corrections of later panels must not start back at 0."""
    x, w = signs(rng, (1, 5, 3, 70)), signs(rng, (4, 5, 3, 3))
    np.testing.assert_array_equal(binary_conv2d(x, w, 1, 1), conv2d_int_ref(x, w, (1, 1), (1, 1, 1, 1)))


@pytest.mark.parametrize("kwargs, says", [
    ({"stride": (1, 2), "padding": "same"}, "padding='same' needs stride 1"),
    ({"stride": (2, 1), "padding": "same"}, "padding='same' needs stride 1"),
    ({"padding": (1, -1)}, "padding must be integers >= 0"),
    ({"padding": 1.5}, "padding must be integers >= 0"),
    ({"padding": (0, 0.5)}, "padding must be integers >= 0"),
    ({"stride": (1, 0)}, "stride must be integers >= 1"),
    ({"stride": (0, 1)}, "stride must be integers >= 1"),
    # refused with a raw unpacking, int() or overflow error before
    ({"stride": (1, 2, 3)}, "stride must be integers >= 1"),
    ({"stride": ()}, "stride must be integers >= 1"),
    ({"stride": np.nan}, "stride must be integers >= 1"),
    ({"stride": np.inf}, "stride must be integers >= 1"),
    ({"stride": None}, "stride must be integers >= 1"),
    ({"padding": (1, 2, 3)}, "padding must be integers >= 0"),
    ({"padding": np.nan}, "padding must be integers >= 0"),
    ({"padding": (0, np.inf)}, "padding must be integers >= 0"),
])
def test_binary_conv2d_refuses_bad_stride_and_padding(kwargs, says):
    with pytest.raises(ValueError, match=says):
        binary_conv2d(np.ones((1, 3, 5, 5)), np.ones((2, 3, 3, 3)), **kwargs)


def test_binary_conv2d_refuses_bad_sizes():
    w = np.ones((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="kernel sizes must be <= 63, got 1x64"):
        binary_conv2d(np.ones((1, 1, 3, 70)), np.ones((1, 1, 1, 64)))
    for shape in [(1, 3, 0, 5), (1, 3, 5, 0)]:                  # padding would make room
        with pytest.raises(ValueError, match=r"x has shape .*expected \(N, 3, H, W\)"):
            binary_conv2d(np.ones(shape), w, padding=2)
    for shape, padded in [((1, 3, 5, 2), "5x2"), ((1, 3, 2, 5), "2x5")]:
        with pytest.raises(ValueError, match=f"3x3 kernel does not fit the padded input {padded}"):
            binary_conv2d(np.ones(shape), w)


def test_binary_weight_matmul_refuses_bad_k_and_empty_sizes():
    x, words = np.ones((2, 70), np.float32), np.zeros((3, 2), np.uint64)
    assert binary_weight_matmul(x, words, k=70).shape == (2, 3)
    with pytest.raises(ValueError, match="k = 71 but x has 70 columns"):
        binary_weight_matmul(x, words, k=71)
    with pytest.raises(ValueError, match=r"w_words must be uint64 of shape \(N, 2\)"):
        binary_weight_matmul(x, words[:0])
    with pytest.raises(ValueError, match=r"x must have shape \(M, K\) or \(K,\)"):
        binary_weight_matmul(np.ones((2, 0), np.float32), np.zeros((3, 0), np.uint64))


def test_a_fractional_k_is_refused_not_truncated():
    """k = 100.5 was cut to 100 by int(): a wrong k went through without a word."""
    a = np.zeros((3, 2), np.uint64)
    assert binary_gemm(a, a, 100.0).tolist() == [[100] * 3] * 3
    with pytest.raises(ValueError, match=r"binary_gemm: k must be in \(64, 128\] .*got 100.5"):
        binary_gemm(a, a, 100.5)
    with pytest.raises(ValueError, match=r"binary_gemm_panels: k must be in \(64, 128\] .*got 100.5"):
        binary_gemm_panels(a, to_panels(a), 3, 100.5)
    with pytest.raises(ValueError, match=r"unpack_signs: k must be in \(64, 128\] .*got 100.5"):
        unpack_signs(a, 100.5)
    for k in [np.nan, None, True, "100"]:         # named, not a raw int() error (True: a slip)
        with pytest.raises(ValueError, match=r"binary_gemm: k must be in \(64, 128\]"):
            binary_gemm(a, a, k)
        with pytest.raises(ValueError, match=r"unpack_signs: k must be in \(64, 128\]"):
            unpack_signs(a, k)
    with pytest.raises(ValueError, match="k = 70.5 but x has 70 columns"):
        binary_weight_matmul(np.ones((2, 70), np.float32), a, k=70.5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.bool_, np.float16])
def test_unpack_signs_refuses_dtypes_that_cannot_hold_minus_one(dtype):
    """-1 came back as 255 in uint8 and as True in bool; float16 raised Numba's NotImplementedError."""
    words = pack_signs(-np.ones((2, 3)))
    assert unpack_signs(words, 3, np.int16).tolist() == [[-1] * 3] * 2
    with pytest.raises(ValueError, match=f"unpack_signs: dtype must be float32, float64 or a signed "
                                         f"integer, got {np.dtype(dtype)}"):
        unpack_signs(words, 3, dtype)


def test_binary_weight_matmul_overflow_of_total_minus_2h_is_an_error():
    """x with an entry near float32's max: 2h (or total) overflows although x is finite; a clear
    FloatingPointError, not a silent inf/NaN (y = total - 2h, module docstring)."""
    x = np.ones((2, 65), np.float32)
    x[1, 64] = -3e38
    w = np.ones((3, 65), np.float32)
    w[:, 64] = -1.0                                            # bit set: h holds x[:, 64]
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.array_equal(binary_weight_matmul(x[:1], pack_signs(w)), np.full((1, 3), 63, np.float32))
        with pytest.raises(FloatingPointError, match="binary_weight_matmul: total - 2h overflowed"):
            binary_weight_matmul(x, pack_signs(w))
