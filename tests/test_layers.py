"""Layers: VJP checks in float64 (hypothesis shapes), BatchNorm's running-stat convention,
state immutability, dtype preservation, dropout's mask, and shape errors."""
import re

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from refbinn.nn import BatchNorm, Dense, Dropout, Flatten, ReLU, Tanh
from refbinn.testing import check_layer

seeds = st.integers(0, 2**32 - 1)


@st.composite
def shapes(draw, min_ndim=1, max_ndim=4):
    """(N, ...) with small, odd or even sizes."""
    ndim = draw(st.integers(min_ndim, max_ndim))
    return tuple(draw(st.integers(1, 5)) for _ in range(ndim))


def data_rng(seed):
    """Test data from a stream other than check_vjp's default_rng(0) directions: with the
    same stream, x would be a multiple of the direction v, and BatchNorm (scale invariant)
    has J x = 0, so the check would compare two near-zero numbers."""
    return np.random.default_rng([7, seed])


def away_from_zero(x):
    """Move entries off ReLU's kink so central differences (step 1e-6) never straddle it."""
    return np.where(np.abs(x) < 1e-2, x + np.copysign(2e-2, x), x)


# -- gradient checks (float64, rtol 1e-6) -------------------------------------------
@given(n=st.integers(1, 6), fin=st.integers(1, 7), fout=st.integers(1, 7), bias=st.booleans(), seed=seeds)
def test_dense_vjp(n, fin, fout, bias, seed):
    rng = data_rng(seed)
    layer = Dense(fin, fout, bias=bias, name="fc")
    params, _ = layer.init(rng, np.float64)
    res = check_layer(layer, params, rng.standard_normal((n, fin)))
    assert set(res) == {"input", "weight"} | ({"bias"} if bias else set())


@st.composite
def bn_case(draw):
    four_d = draw(st.booleans())
    train = draw(st.booleans())
    c = draw(st.integers(1, 4))
    if four_d:
        h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        n = draw(st.integers(2 if train and h * w == 1 else 1, 4))
        shape = (n, c, h, w)
    else:
        shape = (draw(st.integers(2 if train else 1, 7)), c)
    return shape, train, draw(st.booleans()), draw(seeds)


@given(case=bn_case(), momentum=st.floats(0.0, 1.0))
@example(case=((3, 1, 1, 2), True, True, 494), momentum=0.0)   # <u, J v> cancels to 1.5e-5: f's rounding
def test_batchnorm_vjp(case, momentum):
    shape, train, affine, seed = case
    rng = data_rng(seed)
    c = shape[1]
    # With two values per channel the normalised output is +-sqrt(var/(var+eps)), nearly
    # constant: its Jacobian is O(eps/var) and central differences cannot resolve it to
    # 1e-6 relative. A large eps keeps that case checkable.
    eps = 0.5 if train and np.prod(shape) // c == 2 else 1e-5
    layer = BatchNorm(c, eps=eps, momentum=momentum, affine=affine, name="bn")
    params = {"weight": rng.standard_normal(c), "bias": rng.standard_normal(c)} if affine else {}
    state = {"running_mean": rng.standard_normal(c), "running_var": rng.uniform(0.5, 2.0, c)}
    x = 1.5 * rng.standard_normal(shape) + 0.3
    res = check_layer(layer, params, x, state, train=train)
    assert set(res) == {"input"} | ({"weight", "bias"} if affine else set())


@given(shape=shapes(), seed=seeds)
def test_relu_tanh_flatten_vjp(shape, seed):
    rng = data_rng(seed)
    x = away_from_zero(rng.standard_normal(shape))
    check_layer(ReLU(), {}, x)
    check_layer(Tanh(), {}, x)
    if len(shape) >= 2:
        check_layer(Flatten(), {}, x)


@given(shape=shapes(), p=st.floats(0.05, 0.9), seed=seeds)
def test_dropout_vjp(shape, p, seed):
    rng = data_rng(seed)
    check_layer(Dropout(p), {}, rng.standard_normal(shape), seed=seed)


def test_gradient_check_catches_a_wrong_backward():
    """The checks above can fail: a BatchNorm whose backward drops the mean term is caught."""
    class Broken(BatchNorm):
        def backward(self, params, cache, dy):
            xhat, inv_std, train = cache
            return dy * inv_std, {}
    rng = np.random.default_rng(0)
    layer = Broken(3, affine=False)
    _, state = layer.init(rng, np.float64)
    with pytest.raises(AssertionError, match="bn|batchnorm"):
        check_layer(layer, {}, rng.standard_normal((5, 3)), state, train=True)


# -- BatchNorm conventions -----------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 3)])
def test_batchnorm_matches_hand_computation(shape):
    rng = np.random.default_rng(1)
    mom, eps = 0.15, 1e-4
    layer = BatchNorm(3, eps=eps, momentum=mom, affine=True)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    x = 2.0 * rng.standard_normal(shape) + 1.0
    params = {"weight": rng.standard_normal(3), "bias": rng.standard_normal(3)}
    state = {"running_mean": rng.standard_normal(3), "running_var": rng.uniform(0.5, 2, 3)}
    saved = {k: v.copy() for k, v in state.items()}

    y, _, new = layer.forward(params, x, state, train=True)
    mean, var_b, var_u = x.mean(axes), x.var(axes), x.var(axes, ddof=1)
    ref = (x - mean.reshape(bshape)) / np.sqrt(var_b.reshape(bshape) + eps)
    np.testing.assert_allclose(y, ref * params["weight"].reshape(bshape) + params["bias"].reshape(bshape),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new["running_mean"], (1 - mom) * saved["running_mean"] + mom * mean, rtol=1e-12)
    np.testing.assert_allclose(new["running_var"], (1 - mom) * saved["running_var"] + mom * var_u, rtol=1e-12)
    # the input state is untouched and not aliased
    for k in saved:
        np.testing.assert_array_equal(state[k], saved[k])
        assert new[k] is not state[k]

    y_eval, _, same = layer.forward(params, x, new, train=False)
    ref = (x - new["running_mean"].reshape(bshape)) / np.sqrt(new["running_var"].reshape(bshape) + eps)
    np.testing.assert_allclose(y_eval, ref * params["weight"].reshape(bshape) + params["bias"].reshape(bshape),
                               rtol=1e-12, atol=1e-12)
    for k in new:
        np.testing.assert_array_equal(same[k], new[k])


def test_batchnorm_running_var_is_unbiased():
    """Batch [0, 2]: biased variance 1, unbiased 2; momentum 1 keeps only the batch."""
    layer = BatchNorm(1, momentum=1.0, affine=False)
    _, state = layer.init(None, np.float64)
    _, _, new = layer.forward({}, np.array([[0.0], [2.0]]), state, train=True)
    assert new["running_mean"][0] == 1.0
    assert new["running_var"][0] == 2.0


def test_batchnorm_init_and_kinds():
    p, s = BatchNorm(4).init(np.random.default_rng(0), np.float64)
    np.testing.assert_array_equal(p["weight"], np.ones(4))
    np.testing.assert_array_equal(p["bias"], np.zeros(4))
    np.testing.assert_array_equal(s["running_mean"], np.zeros(4))
    np.testing.assert_array_equal(s["running_var"], np.ones(4))
    assert BatchNorm(4).kinds == {"weight": "real", "bias": "real"}
    assert BatchNorm(4, affine=False).kinds == {}
    assert BatchNorm(4, affine=False).init(None)[0] == {}


def test_batchnorm_training_needs_two_values_per_channel():
    layer = BatchNorm(3, affine=False, name="bn5")
    _, state = layer.init(None)
    with pytest.raises(ValueError, match="bn5"):
        layer.forward({}, np.ones((1, 3), np.float32), state, train=True)
    layer.forward({}, np.ones((1, 3), np.float32), state, train=False)     # eval is fine


@pytest.mark.parametrize("bad", [dict(momentum=1.5), dict(momentum=-0.1), dict(momentum=float("nan")),
                                 dict(eps=-1.0), dict(eps=float("inf")), dict(eps="a"),
                                 dict(num_features=0), dict(num_features=2.5), dict(num_features="3")])
def test_batchnorm_bad_hyperparameters(bad):
    kw = dict(num_features=3) | bad
    with pytest.raises(ValueError, match=f"BatchNorm: {next(iter(bad))} must be"):
        BatchNorm(**kw)


@pytest.mark.parametrize("bad", [dict(in_features=0), dict(in_features=2.5), dict(out_features="a"),
                                 dict(out_features=True)])
def test_dense_bad_sizes_name_the_argument(bad):
    kw = dict(in_features=3, out_features=2) | bad
    with pytest.raises(ValueError, match=rf"Dense: {next(iter(bad))} must be an integer in \[1, inf\)"):
        Dense(**kw)


@pytest.mark.parametrize("key", ["running_mean", "running_var"])
def test_batchnorm_state_of_another_shape_is_refused(key):
    layer = BatchNorm(3, name="bn6")
    params, state = layer.init(np.random.default_rng(0))
    state = dict(state, **{key: state[key][:1]})               # would broadcast over the 3 channels
    for train in (False, True):
        with pytest.raises(ValueError, match=rf"bn6.*{key}.*\(1,\), expected \(3,\)"):
            layer.forward(params, np.ones((2, 3), np.float32), state, train=train)


# -- dtype ------------------------------------------------------------------------------
@pytest.mark.parametrize("make, shape", [
    (lambda: Dense(4, 3, bias=True), (5, 4)),
    (lambda: BatchNorm(4), (5, 4)),
    (lambda: BatchNorm(4, affine=False), (2, 4, 3, 3)),
    (ReLU, (5, 4)), (Tanh, (5, 4)), (Flatten, (2, 4, 3)), (lambda: Dropout(0.3), (5, 4)),
])
@pytest.mark.parametrize("train", [True, False])
def test_float32_preserved(make, shape, train):
    rng = np.random.default_rng(0)
    layer = make()
    params, state = layer.init(rng, np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    y, cache, new = layer.forward(params, x, state, train=train, rng=rng)
    dx, grads = layer.backward(params, cache, np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert dx.shape == x.shape
    assert all(v.dtype == np.float32 for v in [*grads.values(), *new.values()])
    assert set(grads) == set(params)


# -- activations and dropout ------------------------------------------------------------
def test_relu_tanh_flatten_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    y, c, _ = ReLU().forward({}, x, {})
    np.testing.assert_array_equal(y, [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(ReLU().backward({}, c, np.ones_like(x))[0], [[0.0, 0.0, 1.0]])  # 0 at the kink
    np.testing.assert_array_equal(Tanh().forward({}, x, {})[0], np.tanh(x))
    x4 = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    y, c, _ = Flatten().forward({}, x4, {})
    np.testing.assert_array_equal(y, x4.reshape(2, 12))
    np.testing.assert_array_equal(Flatten().backward({}, c, y)[0], x4)
    y, c, _ = Flatten().forward({}, x4[:0], {})                        # an empty batch
    assert y.shape == (0, 12) and Flatten().backward({}, c, y)[0].shape == (0, 3, 2, 2)


def test_dropout_mask_convention():
    """mask = (Generator(seed).random(shape, float32) >= p) / (1 - p), the documented stream."""
    p, shape = 0.3, (7, 11)
    x = np.random.default_rng(1).standard_normal(shape)
    y, cache, _ = Dropout(p).forward({}, x, {}, train=True, rng=np.random.default_rng(5))
    mask = (np.random.default_rng(5).random(shape, dtype=np.float32) >= p) / (1 - p)
    np.testing.assert_array_equal(y, x * mask)
    dx, _ = Dropout(p).backward({}, cache, np.ones(shape))
    np.testing.assert_array_equal(dx, mask)


def test_dropout_rate_and_mean():
    """Fraction dropped ~ Binomial(n, p)/n: within 5 standard errors (fixed seed)."""
    p, n = 0.2, 200_000
    y, _, _ = Dropout(p).forward({}, np.ones(n, np.float32), {}, train=True, rng=np.random.default_rng(0))
    frac = np.mean(y == 0)
    assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert set(np.unique(y)) == {np.float32(0), np.float32(1 / (1 - p))}


def test_dropout_identity_and_errors():
    x = np.ones((3, 4))
    assert Dropout(0.5).forward({}, x, {}, train=False)[0] is x
    assert Dropout(0.0).forward({}, x, {}, train=True, rng=None)[0] is x
    with pytest.raises(ValueError, match="rng"):
        Dropout(0.5, name="drop1").forward({}, x, {}, train=True, rng=None)
    for p in (-0.1, 1.0, 1.5, float("nan"), 1 - 2e-8, 1 - 1e-7, 0.9999):   # 1 - 2e-8 is 1 in float32
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\) and at most 1 - 2\*\*-12"):
            Dropout(p)
    assert Dropout(1 - 2 ** -12).p == 1 - 2 ** -12


def test_dropout_keeps_one_minus_p_at_the_largest_p():
    """At p = 1 - 2**-12 the kept fraction is (1 - p)(1 + d), |d| <= 2**-11: 5 standard errors."""
    p, n = 1 - 2 ** -12, 4_000_000
    y, _, _ = Dropout(p).forward({}, np.ones(n, np.float32), {}, train=True, rng=np.random.default_rng(3))
    kept = np.count_nonzero(y)
    assert abs(kept - n * (1 - p)) < 5 * np.sqrt(n * p * (1 - p)) + n * (1 - p) * 2 ** -11


# -- shape errors ----------------------------------------------------------------------
@pytest.mark.parametrize("layer, x, expected", [
    (Dense(3, 4, name="fc7"), np.zeros((5, 2)), "(N, 3)"),
    (Dense(3, 4, name="fc7"), np.zeros((5, 3, 1)), "(N, 3)"),
    (BatchNorm(3, name="bn2"), np.zeros((5, 4)), "(N, 3)"),
    (BatchNorm(3, name="bn2"), np.zeros((5, 4, 2, 2)), "(N, 3, *, *)"),
    (BatchNorm(3, name="bn2"), np.zeros((5, 3, 2)), "(N, 3, H, W)"),
    (Flatten(name="flat"), np.zeros(5), "(N, d1, ...)"),
])
def test_bad_shape_names_layer_and_shapes(layer, x, expected):
    params, state = layer.init(np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError) as err:
        layer.forward(params, x, state, train=False)
    msg = str(err.value)
    assert layer.name in msg and str(x.shape) in msg and expected in msg


def test_integer_input_rejected():
    with pytest.raises(ValueError, match="relu.*dtype"):
        ReLU().forward({}, np.ones((2, 2), dtype=int), {})


@pytest.mark.parametrize("layer, x", [
    (Dense(3, 2, name="fc7"), np.ones((2, 3), dtype=int)),
    (BatchNorm(3, name="bn2"), np.ones((2, 3), dtype=bool)),
])
def test_integer_input_rejected_by_layers_with_parameters(layer, x):
    params, state = layer.init(np.random.default_rng(0), np.float32)
    with pytest.raises(ValueError, match=f"{layer.name}.*dtype {x.dtype}.*float"):
        layer.forward(params, x, state)


def test_dense_init_bound_is_one_over_sqrt_in_features():
    """torch's default U(-1/sqrt(in), 1/sqrt(in)); with 4 in and 64 out the bound is 1/2, and
    the largest of 256 draws is above 1/4 but for a chance of 2**-256."""
    p, _ = Dense(4, 64, bias=True).init(np.random.default_rng(2), np.float64)
    for v in p.values():
        assert np.abs(v).max() <= 0.5
    assert np.abs(p["weight"]).max() > 0.25


def test_batchnorm_state_without_running_stats_is_refused():
    layer = BatchNorm(3, name="bn4")
    params, _ = layer.init(np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError, match=r"bn4.*state lacks \['running_var'\]"):
        layer.forward(params, np.ones((2, 3)), {"running_mean": np.zeros(3)}, train=False)


class _FixedUniforms:
    """A stand-in Generator whose ``random`` returns given uniforms (Dropout's one draw)."""

    def __init__(self, u):
        self.u = np.asarray(u, dtype=np.float32)

    def random(self, shape, dtype):
        return self.u.reshape(shape).astype(dtype)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 1, 1)])    # the fused 2-D pass and the NumPy one
def test_dropout_keeps_u_equal_to_p(shape):
    """mask = (u >= p): a uniform exactly at p keeps its unit, on both code paths."""
    u = [0.0, 0.25, 0.5, 0.5, 0.75, 0.9]
    x = np.ones(shape)
    y, _, _ = Dropout(0.5).forward({}, x, {}, train=True, rng=_FixedUniforms(u))
    np.testing.assert_array_equal(y.ravel(), [0, 0, 2, 2, 2, 2])


def test_dropout_p_that_is_not_a_number_is_named():
    with pytest.raises(ValueError, match=r"Dropout: p must be a real number.*'abc'"):
        Dropout("abc")


@pytest.mark.parametrize("make", [lambda: Dense(3, 2, bias=True, name="fc7"),
                                  lambda: BatchNorm(2, name="bn2")], ids=["dense", "batchnorm"])
def test_params_missing_or_of_another_shape_name_layer_key_and_shapes(make):
    layer = make()
    params, state = layer.init(np.random.default_rng(0), np.float64)
    x = np.ones((2, 3 if isinstance(layer, Dense) else 2))
    for key, p in params.items():
        with pytest.raises(ValueError, match=rf"{layer.name}.*params lack '{key}'"):
            layer.forward({k: v for k, v in params.items() if k != key}, x, state)
        wrong = np.zeros(p.shape[:-1] + (p.shape[-1] + 1,))
        with pytest.raises(ValueError, match=re.escape(f"{layer.name}': params['{key}'] has shape "
                                                       f"{wrong.shape}, expected {p.shape}")):
            layer.forward({**params, key: wrong}, x, state)


def test_check_vjp_resolves_rtol_where_rounding_allows():
    # f's rounding enters the tolerance (refbinn.testing.check_vjp): for a well-scaled f it
    # is far below rtol, so a VJP wrong by 1e-5 relative still fails
    from refbinn.testing import GradientCheckError, check_vjp
    x = np.linspace(-2.0, 2.0, 50)
    check_vjp(np.sin, lambda u: u * np.cos(x), x)
    with pytest.raises(GradientCheckError, match="relative error"):
        check_vjp(np.sin, lambda u: u * np.cos(x) * (1 + 1e-5), x)


# -- dy of another shape ---------------------------------------------------------------
def _dy_cases():
    from refbinn.nn import Conv2d, MaxPool2d, SignActivation
    return [
        (Dense(3, 4, bias=True, name="fc7"), (5, 3), False),
        (Conv2d(2, 3, kernel_size=3, padding=1, name="conv8"), (2, 2, 4, 4), False),
        (MaxPool2d(2, name="pool3"), (2, 3, 4, 4), False),
        (MaxPool2d(3, stride=1, name="pool3"), (2, 3, 4, 4), False),    # overlapping windows
        (BatchNorm(3, name="bn2"), (5, 3), True),
        (BatchNorm(3, name="bn2"), (5, 3), False),
        (BatchNorm(3, name="bn2"), (4, 3, 2, 2), True),
        (ReLU(name="relu5"), (5, 3), False),
        (Tanh(name="tanh5"), (5, 3), False),
        (Flatten(name="flat"), (2, 3, 2, 2), False),
        (Dropout(0.5, name="drop1"), (5, 3), True),
        (Dropout(0.5, name="drop1"), (2, 3, 2, 2), True),               # the NumPy path
        (SignActivation(name="sign4"), (5, 3), False),
    ]


@pytest.mark.parametrize("layer, shape, train", _dy_cases(), ids=lambda v: getattr(v, "name", None))
def test_dy_of_another_shape_names_layer_and_shapes(layer, shape, train):
    """A dy that broadcasts against the output (one row, one column more, transposed) gave a
    wrong gradient silently in Dense, ReLU, Dropout, ...; every backward now names the layer."""
    rng = np.random.default_rng(0)
    params, state = layer.init(rng, np.float64)
    y, cache, _ = layer.forward(params, rng.standard_normal(shape), state, train=train, rng=rng)
    dx, _ = layer.backward(params, cache, np.ones_like(y))             # the right shape passes
    assert dx.shape == shape
    wrong = [y[:1], y[..., :1], y[0], np.concatenate([y, y[:1]]), y.reshape(-1)]
    if y.ndim == 2:
        wrong.append(np.ones((y.shape[0], y.shape[1] + 1)))
    for dy in wrong:
        if dy.shape == y.shape:
            continue
        with pytest.raises(ValueError, match=re.escape(
                f"layer '{layer.name}': dy has shape {dy.shape}, the output has shape {y.shape}")):
            layer.backward(params, cache, dy)


def test_dy_of_another_shape_is_named_by_the_fused_batchnorm_relu_dropout():
    from refbinn.nn import Sequential
    model = Sequential(Dense(4, 3, name="fc1"), BatchNorm(3, affine=False, name="bn1"), ReLU(),
                       Dropout(0.2))
    rng = np.random.default_rng(1)
    params, state = model.init(rng, np.float32)
    y, cache, _ = model.forward(params, rng.standard_normal((6, 4)).astype(np.float32), state,
                                train=True, rng=rng)
    model.backward(params, cache, np.ones_like(y))
    for dy in (np.ones((1, 3), np.float32), np.ones((6, 1), np.float32), np.ones(3, np.float32)):
        with pytest.raises(ValueError, match=re.escape(
                f"layer 'bn1': dy has shape {dy.shape}, the output has shape (6, 3)")):
            model.backward(params, cache, dy)


# -- hostile input kinds: one ValueError naming the argument, never a raw error or a silent result --
def _mlp():
    from refbinn.nn import Sequential
    m = Sequential(Dense(2, 4, name="fc1"), BatchNorm(4, name="bn1"), ReLU(), Dropout(0.5), Dense(4, 3, name="fc2"))
    p, s = m.init(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((5, 2)).astype(np.float32)
    return m, p, s, x


@pytest.mark.parametrize("make,says", [
    (lambda: Dense(2, 3, name=5), "Dense: name must be a str, got 5"),
    (lambda: ReLU(name=b"relu"), "ReLU: name must be a str"),
    (lambda: Dropout("0.5"), "Dropout: p must be a real number in [0, 1), got '0.5'"),
    (lambda: Dropout(True), "Dropout: p must be a real number in [0, 1), got True"),
])
def test_layer_constructors_refuse_names_and_rates_of_the_wrong_kind(make, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        make()


@pytest.mark.parametrize("rng,dtype,says", [
    (None, np.float32, "rng must be a numpy.random.Generator, got NoneType"),
    (0, np.float32, "rng must be a numpy.random.Generator, got int"),
    ("gen", np.float32, "rng must be a numpy.random.Generator, got str"),
    (np.random.default_rng(0), "banana", "dtype must be float32 or float64, got 'banana'"),
    (np.random.default_rng(0), np.int64, "dtype must be float32 or float64"),
])
def test_sequential_init_refuses_rng_and_dtype_of_the_wrong_kind(rng, dtype, says):
    m = _mlp()[0]
    with pytest.raises(ValueError, match="Sequential.init: " + re.escape(says)):
        m.init(rng, dtype)


def test_sequential_forward_refuses_params_state_and_rng_of_the_wrong_kind():
    m, p, s, x = _mlp()
    with pytest.raises(ValueError, match="params must be a dict .*got NoneType"):
        m.forward(None, x, s)
    with pytest.raises(ValueError, match="state must be a dict .*got list"):
        m.forward(p, x, [])
    with pytest.raises(ValueError, match=r"layer 'dropout': training with p=0.5 needs rng .*got 0"):
        m.forward(p, x, s, train=True, rng=0)
    with pytest.raises(ValueError, match=r"layer 'dropout': training with p=0.5 needs rng .*got RandomState$"):
        m.forward(p, x, s, train=True, rng=np.random.RandomState(0))        # was a TypeError from random()
    for w, dt in ((np.ones((4, 2), complex), "complex128"), (np.ones((4, 2), object), "object")):
        with pytest.raises(ValueError, match=rf"layer 'fc1': params\['weight'\] must hold real numbers, got dtype {dt}"):
            m.apply({**p, "fc1.weight": w}, x, s)
    y = m.apply({**p, "fc1.weight": p["fc1.weight"].tolist()}, x, s)        # a list: was AttributeError .T
    np.testing.assert_allclose(y, m.apply(p, x, s), rtol=1e-5, atol=1e-6)  # (float64 weights: other rounding)
    y = m.apply(p, x, {**s, "bn1.running_mean": [0.0] * 4})              # was AttributeError .reshape
    np.testing.assert_allclose(y, m.apply(p, x, s), rtol=1e-5, atol=1e-6)


def test_sequential_backward_refuses_cache_dy_and_params_of_the_wrong_kind():
    m, p, s, x = _mlp()
    y, cache, _ = m.forward(p, x, s, train=True, rng=np.random.default_rng(2))
    dy = np.ones_like(y)
    for bad, got in ((None, "NoneType"), ([], "0 entries"), (cache[:2], "2 entries")):
        with pytest.raises(ValueError, match=f"cache must be the list of 5 entries .*got {got}"):
            m.backward(p, bad, dy)
    for bad in (dy.astype(np.int64), dy.astype(complex), dy.astype(object), dy.astype(bool)):
        with pytest.raises(ValueError, match=f"layer 'fc2': dy has dtype {bad.dtype}, expected a float dtype"):
            m.backward(p, cache, bad)
    with pytest.raises(ValueError, match="layer 'fc2': params lack 'weight'"):
        m.backward({}, cache, dy)
    with pytest.raises(ValueError, match=re.escape("layer 'fc2': params['weight'] has shape (3, 3), expected (3, 4)")):
        m.backward({**p, "fc2.weight": np.ones((3, 3), np.float32)}, cache, dy)


def test_flatten_params_refuses_keys_it_does_not_have():
    from refbinn.nn import flatten_params, unflatten_params
    p = {"fc1.weight": np.ones((2, 2)), "fc1.bias": np.zeros(2)}
    with pytest.raises(ValueError, match=r"flatten_params: keys \['nope'\] are not in the dict"):
        flatten_params(p, keys=["nope"])
    with pytest.raises(ValueError, match="flatten_params: keys must be a sequence of names, got the str 'fc1.weight'"):
        flatten_params(p, keys="fc1.weight")
    with pytest.raises(ValueError, match="flatten_params: params must be a dict name -> array, got NoneType"):
        flatten_params(None)
    with pytest.raises(ValueError, match=r"unflatten_params: keys \['nope'\] are not in the dict"):
        unflatten_params(np.zeros(4), p, keys=["nope"])
    with pytest.raises(ValueError, match="unflatten_params: keys must be a sequence of names, got the str 'fc1.bias'"):
        unflatten_params(np.zeros(2), p, keys="fc1.bias")


def test_layer_init_refuses_an_integer_dtype_and_a_missing_rng():
    from refbinn.nn import Conv2d
    with pytest.raises(ValueError, match=re.escape("layer 'fc': init: dtype must be float32 or float64, got dtype('int64')")):
        Dense(2, 3, name="fc").init(np.random.default_rng(0), np.int64)     # weights were all rounded to 0
    with pytest.raises(ValueError, match="layer 'conv': init: rng must be a numpy.random.Generator, got NoneType"):
        Conv2d(1, 2, 3).init(None)                                          # was AttributeError
    with pytest.raises(ValueError, match="layer 'fc': init: rng must be a numpy.random.Generator, got RandomState"):
        Dense(2, 3, name="fc").init(np.random.RandomState(0))               # drew from another stream
    with pytest.raises(ValueError, match="layer 'bn': init: dtype must be float32 or float64, got 'banana'"):
        BatchNorm(3, name="bn").init(None, "banana")
    assert BatchNorm(3).init(None)[1]["running_var"].dtype == np.float32   # BatchNorm draws nothing: no rng


@pytest.mark.parametrize("shape", [(64, 2), (64, 2, 1, 1), (64, 1)])
def test_batchnorm_float32_squares_beyond_float32(shape):
    """One value 1e20 among 63 zeros: (x - mean)**2 ~ 1e40 overflows float32 (it gave var = inf,
    y = 0), but var = 1.5625e37 and y fit; y must match a two-pass float64 reference. A variance
    beyond float32 (the running variance could not hold it) is a FloatingPointError."""
    bn = BatchNorm(shape[1], affine=False)
    params, state = bn.init(None, np.float32)
    x = np.zeros(shape, np.float32)
    x[0, 0] = 1e20
    y, _, new_state = bn.forward(params, x, state, train=True)
    col = x[:, 0].reshape(-1).astype(np.float64)
    d = col - col.mean()
    ref = d / np.sqrt((d * d).mean() + 1e-5)
    np.testing.assert_allclose(y[:, 0].reshape(-1), ref, rtol=4 * np.finfo(np.float32).eps)
    assert np.isfinite(new_state["running_var"]).all()
    x[1, 0] = -1e20
    with pytest.raises(FloatingPointError, match="channel 0"):
        bn.forward(params, x * np.float32(10), state, train=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_names_nan_input_and_float64_overflow_for_what_they_are(dtype):
    """NaN (or inf) in the input makes the batch variance NaN in any dtype: the message said it was
    'beyond float32; use float64', which cannot help; a float64 overflow told the user to use float64."""
    bn = BatchNorm(2, affine=False, name="bn")
    params, state = bn.init(None, dtype)
    x = np.ones((4, 2), dtype)
    x[1, 1] = np.inf
    with pytest.raises(FloatingPointError, match="layer 'bn': the input of channel 1 holds NaN/inf values"):
        bn.forward(params, x, state, train=True)
    if dtype == np.float64:
        x[1, 1] = 1e200                                     # (x - mean)**2 beyond float64
        with pytest.raises(FloatingPointError, match=r"beyond float64; rescale the input$"):
            bn.forward(params, x, state, train=True)


def test_batchnorm_constant_channel_with_eps_zero_is_refused():
    """eps = 0 and a constant channel: (x - mean)/sqrt(0) = 0/0; a clear error, not NaN."""
    bn = BatchNorm(2, eps=0.0, affine=False)
    params, state = bn.init(None, np.float32)
    x = np.array([[1, 2], [1, 3], [1, 4]], np.float32)
    with pytest.raises(FloatingPointError, match="channel 0 has variance 0 and eps = 0"):
        bn.forward(params, x, state, train=True)
