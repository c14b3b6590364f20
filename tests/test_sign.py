"""sign: +1 where x >= 0 (exact zeros and -0.0 included), -1 elsewhere, dtype kept;
checked against a plain Python reference (larq-style non-smooth op test)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from refbinn import sign
from refbinn.nn import sign as nn_sign


def reference(x):
    """One element at a time, in Python: 1 if v >= 0 else -1 (NaN compares False -> -1)."""
    flat = [1 if v >= 0 else -1 for v in np.asarray(x).ravel().tolist()]
    return np.array(flat, dtype=np.asarray(x).dtype).reshape(np.shape(x))


def with_zeros(elements):
    """Elements with exact zeros (both signs) drawn often, not left to chance."""
    return st.one_of(st.sampled_from([0.0, -0.0]), elements)


@pytest.mark.parametrize("dtype, width", [(np.float32, 32), (np.float64, 64), (np.float16, 16)])
@given(data=st.data())
def test_float_against_reference(dtype, width, data):
    x = data.draw(arrays(dtype, array_shapes(min_dims=0, max_dims=3, max_side=6),
                         elements=with_zeros(st.floats(width=width, allow_nan=True, allow_infinity=True))))
    s = sign(x)
    assert s.dtype == dtype and s.shape == x.shape
    np.testing.assert_array_equal(s, reference(x))
    assert not np.signbit(s[x == 0]).any()           # +1, not -1 and not -0.0


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
@given(data=st.data())
def test_int_against_reference(dtype, data):
    info = np.iinfo(dtype)
    x = data.draw(arrays(dtype, array_shapes(min_dims=1, max_dims=2, max_side=8),
                         elements=st.one_of(st.just(0), st.integers(int(info.min), int(info.max)))))
    s = sign(x)
    assert s.dtype == dtype
    np.testing.assert_array_equal(s, reference(x))


def test_exact_zeros_and_specials():
    x = np.array([0.0, -0.0, 1e-45, -1e-45, 5e-324, -5e-324, np.inf, -np.inf, np.nan, -3.0, 2.0])
    np.testing.assert_array_equal(sign(x), [1, 1, 1, -1, 1, -1, 1, -1, -1, -1, 1])
    np.testing.assert_array_equal(sign(x.astype(np.float32)), sign(x.astype(np.float32).astype(np.float64)))
    assert sign(np.float32(-0.0)) == 1 and sign(np.float32(-0.0)).dtype == np.float32
    assert sign(0) == 1 and sign(-0.0) == 1 and sign(-2) == -1
    assert sign([0.0, -1.5]).tolist() == [1.0, -1.0]
    assert nn_sign is sign


def test_values_are_exactly_plus_minus_one():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    s = sign(x)
    assert set(np.unique(s).tolist()) == {-1.0, 1.0}
    assert not np.shares_memory(s, x)
