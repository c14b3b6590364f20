"""Conv2d and MaxPool2d: VJP checks, slow loop references, dtypes, shape errors."""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refbinn.nn.conv import Conv2d, col2im, conv_output_size, im2col
from refbinn.nn.pool import MaxPool2d
from refbinn.testing import check_layer


# -- slow references --------------------------------------------------------------
def naive_conv(x, w, b, stride, pads):
    """Nested-loop cross-correlation; pads = ((top, bottom), (left, right))."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (top, bottom), (left, right) = pads
    xp = np.zeros((n, c, h + top + bottom, wd + left + right))
    xp[:, :, top:top + h, left:left + wd] = x
    ho = (xp.shape[2] - kh) // stride[0] + 1
    wo = (xp.shape[3] - kw) // stride[1] + 1
    y = np.zeros((n, o, ho, wo))
    for ni in range(n):
        for oi in range(o):
            for p in range(ho):
                for q in range(wo):
                    r, s = p * stride[0], q * stride[1]
                    y[ni, oi, p, q] = np.sum(w[oi] * xp[ni, :, r:r + kh, s:s + kw])
                    if b is not None:
                        y[ni, oi, p, q] += b[oi]
    return y


def naive_pool(x, kernel, stride):
    """torch's scan: the running max is replaced when val > max or val is NaN."""
    n, c, h, w = x.shape
    ho, wo = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
    y = np.zeros((n, c, ho, wo), dtype=x.dtype)
    arg = np.zeros((n, c, ho, wo, 2), dtype=int)
    for ni in range(n):
        for ci in range(c):
            for p in range(ho):
                for q in range(wo):
                    best, where = -np.inf, None
                    for i in range(kernel[0]):
                        for j in range(kernel[1]):
                            r, s = p * stride[0] + i, q * stride[1] + j
                            val = x[ni, ci, r, s]
                            if where is None or val > best or np.isnan(val):
                                best, where = val, (r, s)
                    y[ni, ci, p, q], arg[ni, ci, p, q] = best, where
    return y, arg


def naive_pool_grad(x_shape, arg, dy):
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for idx in np.ndindex(dy.shape):
        r, s = arg[idx]
        dx[idx[0], idx[1], r, s] += dy[idx]
    return dx


# -- Conv2d -------------------------------------------------------------------------
@st.composite
def conv_cases(draw):
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from([0, 1, "same"] if stride == (1, 1) else [0, 1]))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 4)), o=draw(st.integers(1, 4)),
                h=draw(st.integers(3, 9)), w=draw(st.integers(3, 9)),
                kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                stride=stride,
                padding=padding, bias=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@given(conv_cases())
def test_conv_vjp(case):
    rng = np.random.default_rng(case["seed"])
    layer = Conv2d(case["c"], case["o"], case["kernel"], case["stride"], case["padding"],
                   bias=case["bias"], name="convx")
    params, _ = layer.init(rng, np.float64)
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    results = check_layer(layer, params, x, rtol=1e-6)
    assert set(results) == {"input", *params}


@given(conv_cases())
def test_conv_output_shape_matches_formula(case):
    layer = Conv2d(case["c"], case["o"], case["kernel"], case["stride"], case["padding"])
    params, _ = layer.init(np.random.default_rng(0), np.float64)
    x = np.ones((case["n"], case["c"], case["h"], case["w"]))
    y, _, _ = layer.forward(params, x, {})
    (kh, kw), (sh, sw) = case["kernel"], case["stride"]
    if case["padding"] == "same":
        assert y.shape == (case["n"], case["o"], case["h"], case["w"])
    else:
        p = case["padding"]
        assert y.shape == (case["n"], case["o"], (case["h"] + 2 * p - kh) // sh + 1,
                           (case["w"] + 2 * p - kw) // sw + 1)


@pytest.mark.parametrize("c,o,hw,kernel,stride,padding,pads,bias", [
    (3, 4, (7, 7), 3, 1, 1, ((1, 1), (1, 1)), False),
    (2, 3, (8, 5), 3, 2, 0, ((0, 0), (0, 0)), True),
    (2, 2, (6, 7), 2, 1, "same", ((0, 1), (0, 1)), True),     # even kernel: extra pad bottom/right
    (1, 2, (5, 6), (3, 2), 1, "same", ((1, 1), (0, 1)), False),
    (3, 2, (9, 8), (1, 3), (2, 1), (2, 0), ((2, 2), (0, 0)), True),
])
def test_conv_forward_matches_loops(c, o, hw, kernel, stride, padding, pads, bias):
    rng = np.random.default_rng(3)
    layer = Conv2d(c, o, kernel, stride, padding, bias=bias)
    params, _ = layer.init(rng, np.float64)
    x = rng.standard_normal((2, c, *hw))
    y, _, _ = layer.forward(params, x, {})
    ref = naive_conv(x, params["weight"], params.get("bias"), layer.stride, pads)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_col2im_is_adjoint_of_im2col():
    rng = np.random.default_rng(4)
    xp = rng.standard_normal((2, 3, 9, 8))
    cols = im2col(xp, (3, 2), (2, 3))
    ho, wo = conv_output_size(9, 3, 2), conv_output_size(8, 2, 3)
    assert cols.shape == (3 * 3 * 2, 2 * ho * wo)
    u = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * u)
    rhs = np.sum(xp * col2im(u, xp.shape, (3, 2), (2, 3)))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_dtype_preserved(dtype):
    rng = np.random.default_rng(5)
    layer = Conv2d(3, 4, 3, padding=1, bias=True)
    params, _ = layer.init(rng, dtype)
    assert all(v.dtype == dtype for v in params.values())
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    y, cache, _ = layer.forward(params, x, {}, train=True)
    dx, grads = layer.backward(params, cache, np.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    assert {k: g.dtype for k, g in grads.items()} == {"weight": dtype, "bias": dtype}
    assert {k: g.shape for k, g in grads.items()} == {k: v.shape for k, v in params.items()}


def test_conv_kinds_and_init_bound():
    layer = Conv2d(64, 64, 3, bias=True)
    assert layer.kinds == {"weight": "binary", "bias": "real"}
    w = layer.init(np.random.default_rng(6), np.float64)[0]["weight"]
    bound = 1 / np.sqrt(64 * 9)
    assert w.shape == (64, 64, 3, 3) and np.abs(w).max() <= bound
    # U(-b, b): E w^2 = b^2/3, Var w^2 = 4 b^4 / 45; allow 4 standard errors
    se = np.sqrt(4 / 45) * bound**2 / np.sqrt(w.size)
    assert abs(np.mean(w**2) - bound**2 / 3) < 4 * se


@pytest.mark.parametrize("shape", [(2, 3, 8), (2, 4, 8, 8), (2, 3, 2, 8), (2, 3, 8, 1)])
def test_conv_bad_shape_names_layer_and_shapes(shape):
    layer = Conv2d(3, 5, 3, padding=0, name="conv7")
    params, _ = layer.init(np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError, match=r"conv7.*" + re.escape(str(shape)) + r".*expected \(N, 3"):
        layer.forward(params, np.zeros(shape), {})


@pytest.mark.parametrize("kwargs,arg", [
    (dict(stride=2, padding="same"), "same"), (dict(kernel_size=0), "kernel_size"),
    (dict(stride=(1, 0)), "stride"), (dict(padding=-1), "padding"), (dict(padding="full"), "padding"),
    (dict(kernel_size=(3, 3, 3)), "kernel_size"), (dict(stride=True), "stride"), (dict(padding=(1, False)), "padding"),
])
def test_conv_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        Conv2d(3, 4, **{"kernel_size": 3, **kwargs})


def test_conv_too_small_input_names_the_size_padding_allows():
    # kernel 5 with padding 1 on each side needs H, W >= 3
    layer = Conv2d(1, 2, 5, padding=1, name="conv5")
    params, _ = layer.init(np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError, match=r"conv5.*\(1, 1, 2, 3\).*H >= 3, W >= 3"):
        layer.forward(params, np.zeros((1, 1, 2, 3)), {})
    assert layer.forward(params, np.zeros((1, 1, 3, 3)), {})[0].shape == (1, 2, 1, 1)


def test_conv_params_of_another_shape_name_layer_and_shapes():
    layer = Conv2d(2, 3, 3, bias=True, name="conv8")
    params, _ = layer.init(np.random.default_rng(0), np.float64)
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match=re.escape("conv8': params['weight'] has shape (3, 2, 2, 2), "
                                                   "expected (3, 2, 3, 3)")):
        layer.forward({**params, "weight": np.zeros((3, 2, 2, 2))}, x, {})
    with pytest.raises(ValueError, match=re.escape("conv8': params['bias'] has shape (1,), expected (3,)")):
        layer.forward({**params, "bias": np.zeros(1)}, x, {})      # would broadcast silently
    with pytest.raises(ValueError, match="conv8.*params lack 'bias'"):
        layer.forward({"weight": params["weight"]}, x, {})


def test_conv_bad_channels():
    with pytest.raises(ValueError, match="in_channels"):
        Conv2d(0, 4)


# -- MaxPool2d ----------------------------------------------------------------------
@st.composite
def pool_cases(draw):
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 4)),
                h=draw(st.integers(3, 9)), w=draw(st.integers(3, 9)),
                kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                stride=draw(st.sampled_from([None, 1, 2, (1, 2), (2, 1)])),
                seed=draw(st.integers(0, 2**16)))


@given(pool_cases())
def test_pool_vjp(case):
    rng = np.random.default_rng(case["seed"])
    layer = MaxPool2d(case["kernel"], case["stride"], name="poolx")
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    check_layer(layer, {}, x, rtol=1e-6)


@given(pool_cases())
def test_pool_matches_loops_with_ties(case):
    # values from {0, 1, 2}: many ties, so the first-max rule is exercised
    rng = np.random.default_rng(case["seed"])
    layer = MaxPool2d(case["kernel"], case["stride"])
    x = rng.integers(0, 3, (case["n"], case["c"], case["h"], case["w"])).astype(np.float64)
    y, cache, _ = layer.forward({}, x, {})
    ref, arg = naive_pool(x, layer.kernel_size, layer.stride)
    np.testing.assert_array_equal(y, ref)
    dy = rng.integers(-9, 10, y.shape).astype(np.float64)   # integers: sums exact in any order
    dx, grads = layer.backward({}, cache, dy)
    assert grads == {}
    np.testing.assert_array_equal(dx, naive_pool_grad(x.shape, arg, dy))


@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 1)])
def test_pool_nan_like_torch(kernel, stride):
    x = np.arange(2 * 6 * 6, dtype=np.float64).reshape(1, 2, 6, 6)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = np.nan          # two NaNs in the first window
    x[0, 1, 1, 1] = np.nan
    layer = MaxPool2d(kernel, stride)
    y, cache, _ = layer.forward({}, x, {})
    ref, arg = naive_pool(x, layer.kernel_size, layer.stride)
    np.testing.assert_array_equal(y, ref)            # NaN positions equal too
    dy = np.arange(1, y.size + 1, dtype=np.float64).reshape(y.shape)
    np.testing.assert_array_equal(layer.backward({}, cache, dy)[0], naive_pool_grad(x.shape, arg, dy))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9)])   # tiled fast path and the floor path
def test_pool_dtype_and_shapes(dtype, hw):
    x = np.random.default_rng(7).standard_normal((2, 3, *hw)).astype(dtype)
    layer = MaxPool2d()
    y, cache, _ = layer.forward({}, x, {})
    dx, _ = layer.backward({}, cache, np.ones_like(y))
    assert y.shape == (2, 3, hw[0] // 2, hw[1] // 2)
    assert y.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    assert dx.sum() == y.size                        # one unit of gradient per window
    if hw[0] % 2:
        assert not dx[:, :, -1].any()                # the dropped last row gets no gradient


@pytest.mark.parametrize("shape", [(2, 3, 8), (2, 3, 1, 8), (2, 3, 8, 1)])
def test_pool_bad_shape_names_layer_and_shapes(shape):
    layer = MaxPool2d(2, name="pool3")
    with pytest.raises(ValueError, match=r"pool3.*" + re.escape(str(shape)) + r".*expected \(N"):
        layer.forward({}, np.zeros(shape), {})


def test_pool_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        MaxPool2d(0)
    with pytest.raises(ValueError, match="stride"):
        MaxPool2d(2, stride=-1)


def test_pool_too_small_input_names_the_kernel():
    with pytest.raises(ValueError, match=r"pool4.*\(1, 2, 3, 2\).*H >= 3, W >= 3"):
        MaxPool2d(3, name="pool4").forward({}, np.zeros((1, 2, 3, 2)), {})


def test_pool_window_of_at_most_255_elements():
    """The argmax is kept as a uint8 offset; the documented limit is 255 elements."""
    assert MaxPool2d((15, 17)).kernel_size == (15, 17)
    with pytest.raises(ValueError, match="kernel_size must have at most 255 elements"):
        MaxPool2d(16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_window_equal_to_the_input(dtype):
    """One window over the whole image: y is the max, the gradient goes to its first position."""
    x = np.array([[[[1, 5, 2], [5, 0, 3]]]], dtype=dtype)          # (1, 1, 2, 3), max 5 twice
    layer = MaxPool2d((2, 3))
    y, cache, _ = layer.forward({}, x, {})
    dx, _ = layer.backward({}, cache, np.full((1, 1, 1, 1), 7, dtype))
    assert y.dtype == dx.dtype == dtype and y.shape == (1, 1, 1, 1) and y.item() == 5
    np.testing.assert_array_equal(dx, [[[[0, 7, 0], [0, 0, 0]]]])
