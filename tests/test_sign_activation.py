"""SignActivation: sign forward (0 -> +1) and the straight-through backward dy * 1[|x| <= 1]."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refbinn.nn import Dense, Sequential
from refbinn.nn.sign_activation import SignActivation


def ste_sign_ref(x, dy):
    """larq's ste_sign: forward where(x >= 0, 1, -1), backward dy where |x| <= 1 else 0."""
    one = np.ones((), x.dtype)
    return np.where(x >= 0, one, -one), np.where(np.abs(x) <= 1, dy, np.zeros((), dy.dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_backward_edge_values(dtype):
    layer = SignActivation()
    up = np.nextafter(dtype(1), dtype(2))                   # just above the clip
    x = np.array([[0.0, -0.0, 1.0, -1.0, up, -up, 0.5, -0.5, 3.0, -3.0, np.nan]], dtype)
    y, cache, state = layer.forward({}, x, {}, train=True)
    assert y.dtype == dtype and state == {}
    np.testing.assert_array_equal(y, [[1, 1, 1, -1, 1, -1, 1, -1, 1, -1, -1]])
    dy = np.arange(1, x.size + 1, dtype=dtype).reshape(x.shape)
    dx, grads = layer.backward({}, cache, dy)
    assert dx.dtype == dtype and grads == {}
    # the gradient passes at |x| = 1 exactly and is an exact 0 just above it (and for NaN)
    np.testing.assert_array_equal(dx, [[1, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0]])


@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3)),
       seed=st.integers(0, 2**16))
def test_matches_ste_sign_reference(shape, seed):
    rng = np.random.default_rng(seed)
    special = rng.choice(np.float32([-2, -1, -0.0, 0, 1, 2]), size=shape)   # exact 0 and +-1
    x = np.where(rng.random(shape) < 0.5, special, rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    layer = SignActivation()
    y, cache, _ = layer.forward({}, x, {}, train=True)
    dx, _ = layer.backward({}, cache, dy)
    y_ref, dx_ref = ste_sign_ref(x, dy)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)


def test_bad_input():
    layer = SignActivation(name="act1")
    with pytest.raises(ValueError, match="act1.*dtype"):
        layer.forward({}, np.array([[1, -1]]), {})
    with pytest.raises(ValueError, match="act1.*shape"):
        layer.forward({}, np.float32(1.0), {})


def test_backward_inside_sequential():
    rng = np.random.default_rng(0)
    model = Sequential(Dense(6, 5, name="fc1"), SignActivation(), Dense(5, 3, name="fc2"))
    params, state = model.init(rng, np.float32)
    params["fc1.weight"] *= 4                     # some pre-activations beyond the clip
    x = rng.standard_normal((7, 6)).astype(np.float32)
    y, cache, _ = model.forward(params, x, state, train=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, grads = model.backward(params, cache, dy)
    assert list(grads) == list(params) and dx.dtype == np.float32 and dx.shape == x.shape
    # by hand: h = x W1^T, y = sign(h) W2^T
    w1, w2 = params["fc1.weight"], params["fc2.weight"]
    h = x @ w1.T
    np.testing.assert_array_equal(y, np.where(h >= 0, 1, -1).astype(np.float32) @ w2.T)
    dh = np.where(np.abs(h) <= 1, dy @ w2, 0).astype(np.float32)
    assert 0 < np.count_nonzero(dh) < dh.size        # the clip acts on some units, not all
    np.testing.assert_allclose(grads["fc1.weight"], dh.T @ x, rtol=1e-6)
    np.testing.assert_allclose(dx, dh @ w1, rtol=1e-6)
