"""Losses: VJP checks, values against naive formulas, stability at +-1e4, input errors."""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refbinn.nn import log_softmax, logistic_loss, mse, sigmoid, softmax, softmax_cross_entropy
from refbinn.testing import check_vjp

seeds = st.integers(0, 2**32 - 1)


def data_rng(seed):
    return np.random.default_rng([11, seed])          # not check_vjp's default_rng(0) stream


def vjp_check(loss_fn, pred, target):
    """d loss / d pred by central differences along a random direction (float64, rtol 1e-6).

    A scalar loss L evaluated at x +- 1e-6 v carries rounding ~1e-16 |L|, so the
    difference quotient is only good to ~1e-10 |L| absolute; when <grad, v> happens to be
    tiny, rtol alone would flag noise. atol = 1e-8 max(1, |L|) leaves 100x headroom.
    """
    loss, dpred = loss_fn(pred, target)
    return check_vjp(lambda p: loss_fn(p, target)[0], lambda u: u * dpred, pred,
                     name=loss_fn.__name__, atol=1e-8 * max(1.0, abs(loss)))


# -- gradients ----------------------------------------------------------------------
@given(n=st.integers(1, 8), k=st.integers(2, 6), scale=st.floats(0.1, 3.0), seed=seeds)
def test_softmax_cross_entropy_vjp(n, k, scale, seed):
    rng = data_rng(seed)
    vjp_check(softmax_cross_entropy, scale * rng.standard_normal((n, k)), rng.integers(0, k, n))


@given(n=st.integers(1, 8), column=st.booleans(), scale=st.floats(0.1, 3.0), seed=seeds)
def test_logistic_loss_vjp(n, column, scale, seed):
    rng = data_rng(seed)
    shape = (n, 1) if column else (n,)
    vjp_check(logistic_loss, scale * rng.standard_normal(shape), rng.integers(0, 2, shape))


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), seed=seeds)
def test_mse_vjp(shape, seed):
    rng = data_rng(seed)
    vjp_check(mse, rng.standard_normal(shape), rng.standard_normal(shape))


def test_gradient_check_catches_a_wrong_gradient():
    """The checks above can fail: a cross-entropy gradient missing the 1/N is caught."""
    def unscaled(z, y):
        loss, dz = softmax_cross_entropy(z, y)
        return loss, dz * len(y)
    rng = data_rng(0)
    with pytest.raises(AssertionError):
        vjp_check(unscaled, rng.standard_normal((4, 3)), np.array([0, 1, 2, 0]))


# -- values -------------------------------------------------------------------------
def test_values_against_naive_formulas():
    rng = data_rng(1)
    z, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss, dz = softmax_cross_entropy(z, y)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(6), y])), rel=1e-12)
    np.testing.assert_allclose(dz, (p - np.eye(4)[y]) / 6, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(softmax(z), p, rtol=1e-12)
    np.testing.assert_allclose(log_softmax(z), np.log(p), rtol=1e-12)

    z, t = rng.standard_normal(6), rng.integers(0, 2, 6)
    s = 1 / (1 + np.exp(-z))
    loss, dz = logistic_loss(z, t)
    assert loss == pytest.approx(-np.mean(t * np.log(s) + (1 - t) * np.log(1 - s)), rel=1e-12)
    np.testing.assert_allclose(dz, (s - t) / 6, rtol=1e-12)
    np.testing.assert_allclose(sigmoid(z), s, rtol=1e-12)
    # (N,) targets for (N, 1) logits
    loss2, dz2 = logistic_loss(z[:, None], t)
    assert loss2 == loss and dz2.shape == (6, 1)

    a, b = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    loss, da = mse(a, b)
    assert loss == pytest.approx(np.mean((a - b) ** 2), rel=1e-12)
    np.testing.assert_allclose(da, 2 * (a - b) / 15, rtol=1e-12)


def test_integer_inputs_are_read_as_float64():
    loss, dz = softmax_cross_entropy(np.array([[0, 0], [3, 3]]), np.array([0, 1]))
    assert loss == pytest.approx(np.log(2), rel=1e-15) and dz.dtype == np.float64
    np.testing.assert_allclose(dz, [[-0.25, 0.25], [0.25, -0.25]], rtol=1e-15)
    loss, dz = logistic_loss(np.array([0, 0]), np.array([1, 0]))
    assert loss == pytest.approx(np.log(2), rel=1e-15) and dz.dtype == np.float64
    np.testing.assert_allclose(dz, [-0.25, 0.25], rtol=1e-15)
    loss, dp = mse(np.array([[1, 2], [3, 4]]), np.array([[0, 0], [0, 1]]))      # diffs 1 2 3 3
    assert loss == (1 + 4 + 9 + 9) / 4 and dp.dtype == np.float64
    np.testing.assert_array_equal(dp, [[0.5, 1.0], [1.5, 1.5]])


def test_logistic_loss_keeps_the_tiny_loss_of_a_confident_right_answer():
    # softplus(-40) = log(1 + x) with x = exp(-40) = 4.2e-18, which is x to a relative x / 2;
    # log(1 + x) in floating point would round to log(1) = 0
    loss, _ = logistic_loss(np.array([40.0, -40.0]), np.array([1, 0]))
    assert loss == pytest.approx(np.exp(-40.0), rel=1e-15, abs=0)


@pytest.mark.parametrize("fn, pred, target", [
    (softmax_cross_entropy, np.stack([np.r_[1e8, np.full(127, 151.0)], np.zeros(128)], 1), np.ones(128, int)),
    (logistic_loss, np.r_[1e8, np.full(127, 151.0)], np.zeros(128, int)),
    (mse, np.r_[1e4, np.ones(127)], np.zeros(128)),
])
def test_float32_loss_is_summed_in_float64(fn, pred, target):
    """Per-example terms 1e8 and 127 x 151 (or 1e8 and 127 x 1 for mse) that float32 holds exactly
    (exp(-151) and exp(-1e8) underflow to 0 in float32): their sum in float64 is exact, while a
    float32 accumulator (spacing 8 at 1e8) drops or rounds the small terms."""
    small = 1.0 if fn is mse else 151.0
    loss, _ = fn(pred.astype(np.float32), target)
    assert loss == (1e8 + 127 * small) / 128


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_loss_is_float(dtype):
    rng = data_rng(2)
    cases = [(softmax_cross_entropy, rng.standard_normal((5, 3)), np.array([0, 2, 1, 1, 0])),
             (logistic_loss, rng.standard_normal((5, 1)), np.array([0, 1, 1, 0, 1])),
             (mse, rng.standard_normal((5, 2)), rng.standard_normal((5, 2)))]
    for fn, pred, target in cases:
        loss, d = fn(pred.astype(dtype), target)
        assert type(loss) is float and d.dtype == dtype and d.shape == pred.shape
    for helper in (softmax, log_softmax, sigmoid):
        assert helper(rng.standard_normal((2, 3)).astype(dtype)).dtype == dtype


# -- stability ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_at_large_logits(dtype):
    big = 1e4
    z = np.array([[big, -big, 0.0]] * 3, dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dz = softmax_cross_entropy(z, np.array([0, 1, 2]))
        # -log p: label 0 -> 0, label 1 -> 2e4, label 2 -> 1e4
        assert loss == pytest.approx((0 + 2 * big + big) / 3, rel=1e-6)
        np.testing.assert_allclose(dz, np.array([[0, 0, 0], [1, -1, 0], [1, 0, -1]]) / 3, atol=1e-7)

        z = np.array([big, -big, big, -big], dtype=dtype)
        loss, dz = logistic_loss(z, np.array([0, 1, 1, 0]))
        assert loss == pytest.approx((big + big + 0 + 0) / 4, rel=1e-6)
        np.testing.assert_allclose(dz, np.array([1, -1, 0, 0]) / 4, atol=1e-7)

        np.testing.assert_array_equal(sigmoid(z), [1, 0, 1, 0])
        np.testing.assert_allclose(log_softmax(np.array([[big, -big]], dtype)), [[0, -2 * big]])
        np.testing.assert_array_equal(softmax(np.array([[big, -big]], dtype)), [[1, 0]])
    assert np.isfinite(loss) and np.isfinite(dz).all()


# -- errors -------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(bad):
    z = np.zeros((3, 2))
    z[1, 0] = bad
    with pytest.raises(ValueError, match="logits.*finite"):
        softmax_cross_entropy(z, np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="logits.*finite"):
        logistic_loss(z[:, 0], np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="pred.*finite"):
        mse(z, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="target.*finite"):
        mse(np.zeros((3, 2)), z)


@pytest.mark.parametrize("fn, pred, target, name", [
    (softmax_cross_entropy, np.zeros((0, 3)), np.zeros(0, int), "logits"),
    (logistic_loss, np.zeros(0), np.zeros(0), "logits"),
    (mse, np.zeros((0, 2)), np.zeros((0, 2)), "pred"),
])
def test_empty_input_rejected(fn, pred, target, name):
    with pytest.raises(ValueError, match=f"{name} is empty"):
        fn(pred, target)


@pytest.mark.parametrize("label", [3, -1, 17])
def test_bad_label_named(label):
    with pytest.raises(ValueError, match=rf"label {label} is outside \[0, 3\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, label]))


def test_bad_targets_and_dtypes():
    with pytest.raises(ValueError, match="2"):
        logistic_loss(np.zeros(3), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="0.5"):
        logistic_loss(np.zeros(3), np.array([0, 0.5, 1]))
    with pytest.raises(ValueError, match="integer"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


@pytest.mark.parametrize("fn, pred, target", [
    (softmax_cross_entropy, np.zeros((4, 3)), np.zeros(5, int)),
    (softmax_cross_entropy, np.zeros(4), np.zeros(4, int)),
    (logistic_loss, np.zeros(4), np.zeros(5)),
    (logistic_loss, np.zeros((4, 2)), np.zeros((4, 2))),
    (mse, np.zeros((3, 2)), np.zeros((2, 3))),
    (logistic_loss, np.zeros(4), np.zeros((4, 1))),            # no silent reshape of the targets
    (logistic_loss, np.zeros(4), np.zeros((2, 2))),
    (logistic_loss, np.zeros((4, 1)), np.zeros((1, 4))),
])
def test_shape_mismatch_names_both_shapes(fn, pred, target):
    with pytest.raises(ValueError) as err:
        fn(pred, target)
    assert str(pred.shape) in str(err.value)
    if fn is not logistic_loss or pred.ndim == 1:      # (N, 2) logits are wrong on their own
        assert str(target.shape) in str(err.value)


def test_logistic_loss_does_not_depend_on_the_targets_dtype():
    """Targets are read in the logits' dtype: int, bool and float32 targets give the same bits."""
    z = np.random.default_rng(4).standard_normal(9).astype(np.float32) * 3
    t = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1])
    ref_loss, ref_grad = logistic_loss(z, t.astype(np.float32))
    for targets in (t, t.astype(bool), t.astype(np.float64)):
        loss, grad = logistic_loss(z, targets)
        assert loss == ref_loss and grad.dtype == np.float32
        np.testing.assert_array_equal(grad, ref_grad)


@pytest.mark.parametrize("call,says", [
    (lambda: softmax_cross_entropy(np.zeros((3, 4), complex), np.array([0, 1, 3])),
     "softmax_cross_entropy: logits must hold real numbers, got dtype complex128"),
    (lambda: softmax_cross_entropy(np.full((3, 4), "a"), np.array([0, 1, 3])),
     "softmax_cross_entropy: logits must hold real numbers, got dtype <U1"),
    (lambda: softmax_cross_entropy(None, np.array([0])), "softmax_cross_entropy: logits must hold real numbers, got dtype object"),
    (lambda: logistic_loss(np.array([0.5j, 0.0]), np.array([0, 1])), "logistic_loss: logits must hold real numbers, got dtype complex128"),
    (lambda: mse(np.zeros(3), np.array(["a", "b", "c"])), "mse: target must hold real numbers, got dtype <U1"),
    (lambda: mse(np.ones(3) * 1j, np.zeros(3)), "mse: pred must hold real numbers, got dtype complex128"),
    (lambda: log_softmax(np.array(["a", "b"])), "log_softmax: x must hold real numbers, got dtype <U1"),
    (lambda: softmax(np.array([1j, 0])), "softmax: x must hold real numbers, got dtype complex128"),
    (lambda: sigmoid(None), "sigmoid: x must hold real numbers, got dtype object"),
])
def test_losses_refuse_logits_that_are_not_real_numbers(call, says):
    """Complex logits were cast to real (the imaginary part dropped, a warning at most), text failed
    inside NumPy with a message naming nothing."""
    with pytest.raises(ValueError, match=re.escape(says)):
        call()


def test_helpers_take_integer_and_bool_logits_as_float64():
    np.testing.assert_array_equal(log_softmax(np.array([1, 2, 3])), log_softmax(np.array([1.0, 2.0, 3.0])))
    np.testing.assert_array_equal(softmax(np.array([1, 2])), softmax(np.array([1.0, 2.0])))
    np.testing.assert_array_equal(sigmoid(np.array([True, False])), sigmoid(np.array([1.0, 0.0])))
    assert sigmoid(np.array([-128], np.int8)).dtype == np.float64      # not float16, as NumPy's exp picks


def test_sign_refuses_bools_and_text():
    from refbinn.nn import sign
    for bad in (np.array([True, False]), np.array(["a"]), None):
        with pytest.raises(ValueError, match="sign: x has dtype .*expected real numbers"):
            sign(bad)


def test_cross_entropy_float32_logits_further_apart_than_float32_max():
    """z_max - z_y = 6e38 overflows float32 (log softmax -> -inf), but the loss is a float64:
    it must be the finite 6e38 + log 2, with the exact softmax gradient."""
    z = np.array([[-3e38, 3e38, 3e38], [1.0, 2.0, 3.0]], np.float32)
    with np.errstate(over="ignore"):
        loss, dz = softmax_cross_entropy(z, np.array([0, 2]))
    z64 = z.astype(np.float64)
    ref = ((z64[0, 1] - z64[0, 0]) + np.log(2) + np.log(np.exp(z64[1] - 3).sum())) / 2
    assert loss == pytest.approx(ref, rel=1e-12)
    assert np.array_equal(dz[0], np.array([-0.5, 0.25, 0.25], np.float32))


def test_mse_float32_difference_beyond_float32_max():
    """pred - target = 6e38 overflows float32; the loss (float64) and the gradient 2*6e38/4 = 3e38
    (a float32) are finite; a gradient beyond float32 is a FloatingPointError, not inf."""
    p = np.array([3e38, 0, 0, 0], np.float32)
    t = np.array([-3e38, 0, 0, 0], np.float32)
    with np.errstate(over="ignore"):
        loss, dp = mse(p, t)
        assert loss == pytest.approx((float(p[0]) - float(t[0])) ** 2 / 4, rel=1e-15)
        assert dp.dtype == np.float32 and dp[0] == np.float32((float(p[0]) - float(t[0])) / 2)
        with pytest.raises(FloatingPointError, match="mse: the gradient"):
            mse(p[:1], t[:1])
