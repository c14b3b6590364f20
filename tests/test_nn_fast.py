"""refbinn.nn._fused: every Numba kernel equals its NumPy twin bit for bit, and the fused
BatchNorm -> ReLU -> Dropout path of Sequential equals the layers called one by one."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refbinn.models import mlp_continual, mlp_mnist
from refbinn.nn import _fused
from refbinn.nn import softmax_cross_entropy


def same(a, b):
    """Bit-identical: dtype, shape, values, NaN positions and the sign of zeros (a NaN's sign bit
    is not compared: NumPy's SIMD and scalar loops already differ there)."""
    a, b = np.asarray(a), np.asarray(b)
    if not (a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)):
        return False
    if a.dtype == bool:
        return True
    num = ~np.isnan(a)
    return np.array_equal(np.signbit(a[num]), np.signbit(b[num]))


def inputs(rng, n, c, dtype, edge):
    """(N, C) values over many magnitudes; with ``edge``: +-0, NaN, +-inf among them."""
    x = (rng.standard_normal((n, c)) * 10.0 ** rng.uniform(-4, 4, (n, c))).astype(dtype)
    if edge:
        pick = rng.random((n, c))
        x[pick < 0.2] = 0.0
        x[(pick >= 0.2) & (pick < 0.3)] = -0.0
        x[(pick >= 0.3) & (pick < 0.32)] = np.nan
        x[(pick >= 0.32) & (pick < 0.33)] = np.inf
        x[(pick >= 0.33) & (pick < 0.34)] = -np.inf
    return x


shapes = st.tuples(st.integers(2, 130), st.integers(2, 600))
dtypes = st.sampled_from([np.float32, np.float64])


@given(shapes, dtypes, st.booleans(), st.integers(0, 2**32 - 1))
def test_center_equals_numpy(shape, dtype, edge, seed):
    x = inputs(np.random.default_rng(seed), *shape, dtype, edge)
    with np.errstate(all="ignore"):
        for a, b in zip(_fused.center(x), _fused.center_numpy(x)):
            assert same(a, b)


@given(shapes, dtypes, st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_scale_relu_dropout_equals_numpy(shape, dtype, edge, drop, seed):
    rng = np.random.default_rng(seed)
    d = inputs(rng, *shape, dtype, edge)
    inv_std = np.abs(inputs(rng, 1, shape[1], dtype, edge)[0])
    u = rng.random(shape, dtype=np.float32) if drop else None
    p = float(rng.uniform(0, 0.9))
    d1, d2 = d.copy(), d.copy()
    with np.errstate(all="ignore"):
        y1, k1 = _fused.scale_relu(d1, inv_std, u, p, 1.0 / (1.0 - p))
        y2, k2 = _fused.scale_relu_numpy(d2, inv_std, u, p, 1.0 / (1.0 - p))
    assert same(d1, d2) and same(y1, y2)
    assert (k1 is None and k2 is None) if not drop else same(k1, k2)


@given(st.tuples(st.integers(1, 130), st.integers(1, 600)), dtypes, st.booleans(), st.integers(0, 2**32 - 1))
def test_dropout_equals_numpy(shape, dtype, edge, seed):
    rng = np.random.default_rng(seed)
    x = inputs(rng, *shape, dtype, edge)
    u = rng.random(shape, dtype=np.float32)
    u[0, 0] = np.float32(0.2)                                    # u == p exactly: kept
    with np.errstate(all="ignore"):
        for a, b in zip(_fused.dropout(x, u, 0.2, 1.25), _fused.dropout_numpy(x, u, 0.2, 1.25)):
            assert same(a, b)


@given(shapes, dtypes, st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_relu_grad_sums_and_bn_dx_equal_numpy(shape, dtype, edge, drop, seed):
    rng = np.random.default_rng(seed)
    dy, xhat = inputs(rng, *shape, dtype, edge), inputs(rng, *shape, dtype, edge)
    keep = rng.random(shape) >= 0.3 if drop else None
    with np.errstate(all="ignore"):
        got = _fused.relu_grad_sums(dy, xhat, keep, 1.25)
        want = _fused.relu_grad_sums_numpy(dy, xhat, keep, 1.25)
        for a, b in zip(got, want):
            assert same(a, b)
        a, b, inv_std = (inputs(rng, 1, shape[1], dtype, edge)[0] for _ in range(3))
        g1 = _fused.bn_dx(xhat, a, b, inv_std, got[0].copy())
        g2 = _fused.bn_dx_numpy(xhat, a, b, inv_std, want[0].copy())
    assert same(g1, g2)


def test_fusable():
    x = np.zeros((4, 3), np.float32)
    assert _fused.fusable(x, x, x >= 0, sums=True)
    assert not _fused.fusable(x.T)                               # not C-order
    assert not _fused.fusable(x, x.astype(np.float64))           # mixed float dtypes
    assert not _fused.fusable(np.zeros((4, 1), np.float32), sums=True)   # one column: NumPy sums pairwise
    assert not _fused.fusable(np.zeros((4, 3), np.float16))


def _layer_by_layer(model, params, x, state, rng, dout=None):
    """Sequential.forward/backward without the fused groups: each layer's own methods."""
    caches, new_state, h = [], {}, x
    for layer in model.layers:
        h, c, s = layer.forward(model._split(layer, params), h, model._split(layer, state), train=True, rng=rng)
        caches.append(c)
        new_state.update({f"{layer.name}.{k}": v for k, v in s.items()})
    _, dout = softmax_cross_entropy(h, dout)
    grads, dy = {}, dout
    for layer, c in zip(reversed(model.layers), reversed(caches)):
        dy, g = layer.backward(model._split(layer, params), c, dy)
        grads.update({f"{layer.name}.{k}": v for k, v in g.items()})
    return h, caches, new_state, dy, grads


@pytest.mark.parametrize("build", [lambda: mlp_mnist(hidden=(64, 48)), lambda: mlp_continual(30, (20, 16), 10)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_fused_equals_layer_by_layer(build, dtype):
    model = build()
    rng = np.random.default_rng(0)
    params, state = model.init(rng, dtype)
    n_in = model.layers[0].in_features if hasattr(model.layers[0], "in_features") else model.layers[1].in_features
    x = rng.standard_normal((33, n_in)).astype(dtype)
    x[:, :3] = 0.0
    y = rng.integers(0, 10, 33)
    out, caches, new_state = model.forward(params, x, state, train=True, rng=np.random.default_rng(5))
    dx, grads = model.backward(params, caches, softmax_cross_entropy(out, y)[1])
    out2, caches2, state2, dx2, grads2 = _layer_by_layer(model, params, x, state, np.random.default_rng(5), y)
    assert same(out, out2) and same(dx, dx2)
    assert list(grads) == list(params) and set(grads2) == set(params)
    assert all(same(grads[k], grads2[k]) for k in grads)
    assert list(new_state) == list(state2) and all(same(new_state[k], state2[k]) for k in state2)
    for layer, c, c2 in zip(model.layers, caches, caches2):
        if type(layer).__name__ == "Dropout":
            assert same(c, c2) and c.dtype == bool              # the masks the trace records
    none, grads3 = model.backward(params, caches, softmax_cross_entropy(out, y)[1], input_grad=False)
    assert none is None and all(same(grads[k], grads3[k]) for k in grads)


def test_fused_bn_relu_backward_refuses_a_dy_of_another_shape():
    """The fused kernels read dy and the cached xhat row by row: a taller dy was read past xhat's end."""
    from refbinn.nn import BatchNorm, ReLU
    bn, relu = BatchNorm(512, affine=False, name="bn3"), ReLU()
    _, state = bn.init(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((4, 512)).astype(np.float32)
    y, caches, _ = bn.forward_relu({}, x, state, relu, train=True)
    assert bn.backward_relu({}, caches, np.ones_like(y), relu)[0].shape == (4, 512)
    with pytest.raises(ValueError, match=r"bn3.*\(2000, 512\).*\(4, 512\)"):
        bn.backward_relu({}, caches, np.ones((2000, 512), np.float32), relu)


def test_split_all_equals_split_per_layer_and_follows_renamed_and_replaced_layers():
    from refbinn.nn.activations import ReLU
    from refbinn.nn.dense import Dense
    from refbinn.nn.sequential import Sequential
    model = Sequential(Dense(3, 4, bias=True, name="fc"), ReLU(), Dense(4, 2, name="fc.out"))
    params, _ = model.init(np.random.default_rng(0), np.float32)
    # "fc." is a prefix of "fc.out.weight" too: the prefix rule gives it to both layers
    for _ in range(2):                                          # the second call reads the kept plan
        assert model._split_all(params) == {l.name: model._split(l, params) for l in model.layers}
    assert sorted(model._split_all(params)["fc"]) == ["bias", "out.weight", "weight"]
    model.layers[0].name = "first"                              # a renamed layer: a new plan
    got = model._split_all({"first.weight": 1, "first.bias": 2, "fc.out.weight": 3})
    assert got == {"first": {"weight": 1, "bias": 2}, "relu": {}, "fc.out": {"weight": 3}}
    model.layers[2] = Dense(4, 2, name="head")                  # a replaced layer
    assert model._split_all({"head.weight": 5}) == {"first": {}, "relu": {}, "head": {"weight": 5}}
