"""Model builders: end-to-end gradient checks on small versions, layer order and names
as in spec section 9, parameter kinds, and the flat parameter vector round trip."""
import numpy as np
import pytest

from refbinn.models import mlp_continual, mlp_mnist, mlp_toy, vgg_cifar
from refbinn.nn import (BatchNorm, Conv2d, Dense, Dropout, MaxPool2d, ReLU, Sequential,
                        flatten_params, logistic_loss, mse, softmax_cross_entropy,
                        unflatten_params)
from refbinn.testing import GradientCheckError, check_model


def data_rng(seed):
    return np.random.default_rng([23, seed])          # not check_vjp's default_rng(0) stream


def labels(n, k, rng):
    return rng.integers(0, k, n)


# (name, builder, input shape, loss, target maker, modes checked by check_model).
# Small widths, with a larger BatchNorm eps in the CNNs: in a net this narrow some channels
# are nearly constant over the batch (dead ReLUs), and with var ~ eps the loss curves on a
# scale of sqrt(eps), too sharp for central differences with step 1e-6 at rtol 1e-6.
# Small batches and images also keep ReLU/max-pool kinks few (see the retry below).
SMALL = [
    ("mlp_mnist", lambda: mlp_mnist(in_features=12, hidden=(7, 5, 6), classes=3, bn_eps=1e-3), (8, 12),
     softmax_cross_entropy, lambda rng: labels(8, 3, rng), (True, False)),
    ("vgg_cifar", lambda: vgg_cifar(width=1 / 64, image_size=8, bn_eps=1e-2), (4, 3, 8, 8),
     softmax_cross_entropy, lambda rng: labels(4, 10, rng), (True, False)),
    ("vgg_cifar_odd", lambda: vgg_cifar(num_classes=3, width=1 / 32, in_channels=1, image_size=9, bn_eps=1e-2),
     (3, 1, 9, 9), softmax_cross_entropy, lambda rng: labels(3, 3, rng), (True, False)),
    ("mlp_continual", lambda: mlp_continual(in_features=10, hidden=(6, 5), classes=4), (7, 10),
     softmax_cross_entropy, lambda rng: labels(7, 4, rng), (True, False)),
    ("mlp_toy", lambda: mlp_toy(2, 1, hidden=5), (9, 2),
     logistic_loss, lambda rng: rng.integers(0, 2, (9, 1)), (True, False)),
    # Snelson's net: in training mode the output BN removes fc3.bias (zero gradient, see
    # test_bias_before_training_batchnorm_has_zero_gradient), which a relative check cannot
    # resolve, so that mode is checked on the same net without biases.
    ("mlp_toy_bn", lambda: mlp_toy(1, 1, hidden=6, output_bn=True), (10, 1),
     mse, lambda rng: rng.standard_normal((10, 1)), (False,)),
    ("mlp_toy_bn_nobias", lambda: mlp_toy(1, 1, hidden=6, output_bn=True, bias=False), (10, 1),
     mse, lambda rng: rng.standard_normal((10, 1)), (True, False)),
    ("mlp_toy_relu", lambda: mlp_toy(3, 2, hidden=4, act="relu"), (6, 3),
     mse, lambda rng: rng.standard_normal((6, 2)), (True, False)),
]
GRAD_CASES = [pytest.param(*case[:5], train, id=f"{case[0]}-{'train' if train else 'eval'}")
              for case in SMALL for train in case[5]]


@pytest.mark.parametrize("name, build, shape, loss, target, train", GRAD_CASES)
def test_model_gradients(name, build, shape, loss, target, train):
    rng = data_rng(sum(map(ord, name)))
    model = build()
    params, state = model.init(rng, np.float64)
    x = rng.standard_normal(shape)
    if not train:
        # Running statistics close to this batch's (as after training): with the init
        # values (0, 1) a deep net's activations shrink layer by layer and the loss is
        # too flat for central differences to resolve to 1e-6.
        for layer in model.layers:
            if isinstance(layer, BatchNorm):
                layer.momentum = 1.0
        _, _, state = model.forward(params, x, state, train=True, rng=np.random.default_rng(3))
        state = {k: v * rng.uniform(0.8, 1.2, v.shape) for k, v in state.items()}
    y = target(rng)
    try:
        res = check_model(model, params, x, loss, y, state, train=train, seed=3)
    except GradientCheckError:
        # A ReLU input or a max-pool near-tie within the step (1e-6 * |v|) of a kink makes
        # the difference quotient wrong by O(1) while the backward pass is right; a 10x
        # smaller step crosses 10x fewer kinks. A wrong backward stays wrong at any step.
        res = check_model(model, params, x, loss, y, state, train=train, seed=3, eps=1e-7)
    assert set(res) == {"input", *params}


def test_bias_before_training_batchnorm_has_zero_gradient():
    """BN in training mode subtracts the batch mean, so a bias right before it has no effect."""
    model = mlp_toy(1, 1, hidden=6, output_bn=True)
    rng = data_rng(2)
    params, state = model.init(rng, np.float64)
    out, cache, _ = model.forward(params, rng.standard_normal((10, 1)), state, train=True)
    _, dout = mse(out, rng.standard_normal((10, 1)))
    _, grads = model.backward(params, cache, dout)
    assert abs(grads["fc3.bias"][0]) < 1e-14
    assert np.abs(grads["fc3.weight"]).max() > 1e-3


def test_gradient_check_catches_a_wrong_model_gradient():
    """check_model can fail: a ReLU that lets the gradient through everywhere is caught."""
    class Leaky(ReLU):
        def backward(self, params, cache, dy):
            return dy, {}
    model = mlp_continual(in_features=4, hidden=(5,), classes=3)
    model.layers[2] = Leaky(name="relu1")
    rng = data_rng(1)
    params, state = model.init(rng, np.float64)
    with pytest.raises(AssertionError):
        check_model(model, params, rng.standard_normal((6, 4)), softmax_cross_entropy,
                    labels(6, 3, rng), state)


# -- structure: layer order (spec section 9), names, kinds --------------------------------
def describe(model):
    return [(type(l).__name__, l.name) for l in model.layers]


def test_repeated_names_get_suffixes_that_no_layer_has():
    # 'fc1' is given by hand, so the second 'fc' must skip it: every parameter keeps its own name
    m = Sequential(Dense(4, 3, name="fc1"), ReLU(), Dense(3, 3, name="fc"), ReLU(), Dense(3, 2, name="fc"),
                   ReLU(), ReLU(name="relu1"))
    assert [l.name for l in m.layers] == ["fc1", "relu", "fc", "relu1", "fc2", "relu2", "relu11"]
    params, state = m.init(np.random.default_rng(0), np.float32)
    assert {k: v.shape for k, v in params.items()} == \
        {"fc1.weight": (3, 4), "fc.weight": (3, 3), "fc2.weight": (2, 3)}
    assert m.apply(params, np.ones((2, 4), np.float32), state).shape == (2, 2)


def test_the_same_layer_object_twice_is_refused():
    relu = ReLU()
    with pytest.raises(ValueError, match="layer 2 .* same object as an earlier layer"):
        Sequential(relu, Dense(3, 3), relu)


def test_mlp_mnist_structure():
    m = mlp_mnist()
    expected = [("Dropout", "drop0")]
    for k in (1, 2, 3):
        expected += [("Dense", f"fc{k}"), ("BatchNorm", f"bn{k}"), ("ReLU", f"relu{k}"), ("Dropout", f"drop{k}")]
    expected += [("Dense", "fc4"), ("BatchNorm", "bn4")]
    assert describe(m) == expected
    dense = [l for l in m.layers if isinstance(l, Dense)]
    assert [(l.in_features, l.out_features, l.bias) for l in dense] == \
        [(784, 2048, False), (2048, 2048, False), (2048, 2048, False), (2048, 10, False)]
    assert all(not l.affine and l.momentum == 0.15 and l.eps == 1e-4
               for l in m.layers if isinstance(l, BatchNorm))
    assert all(l.p == 0.2 for l in m.layers if isinstance(l, Dropout))
    assert m.kinds == {f"fc{k}.weight": "binary" for k in (1, 2, 3, 4)}


def test_vgg_cifar_structure():
    m = vgg_cifar()
    expected = []
    for k in range(1, 7):
        expected += [("Conv2d", f"conv{k}"), ("BatchNorm", f"bn{k}"), ("ReLU", f"relu{k}")]
        if k % 2 == 0:
            expected.append(("MaxPool2d", f"pool{k // 2}"))
    expected.append(("Flatten", "flatten"))
    expected += [("Dense", "fc1"), ("BatchNorm", "bn7"), ("ReLU", "relu7"),
                 ("Dense", "fc2"), ("BatchNorm", "bn8"), ("ReLU", "relu8"),
                 ("Dense", "fc3"), ("BatchNorm", "bn9")]
    assert describe(m) == expected
    convs = [l for l in m.layers if isinstance(l, Conv2d)]
    assert [(l.in_channels, l.out_channels) for l in convs] == \
        [(3, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
    assert all(l.kernel_size == (3, 3) and l.padding == 1 and not l.bias for l in convs)
    assert all(l.kernel_size == (2, 2) and l.stride == (2, 2) for l in m.layers if isinstance(l, MaxPool2d))
    dense = [l for l in m.layers if isinstance(l, Dense)]
    assert [(l.in_features, l.out_features, l.bias) for l in dense] == \
        [(512 * 4 * 4, 1024, False), (1024, 1024, False), (1024, 10, False)]
    assert all(not l.affine and l.momentum == 0.1 and l.eps == 1e-5
               for l in m.layers if isinstance(l, BatchNorm))
    assert list(m.kinds) == [f"conv{k}.weight" for k in range(1, 7)] + [f"fc{k}.weight" for k in (1, 2, 3)]
    assert set(m.kinds.values()) == {"binary"}
    assert vgg_cifar(num_classes=100).layers[-2].out_features == 100


def test_mlp_continual_structure():
    m = mlp_continual()
    assert describe(m) == [("Dense", "fc1"), ("BatchNorm", "bn1"), ("ReLU", "relu1"),
                           ("Dense", "fc2"), ("BatchNorm", "bn2"), ("ReLU", "relu2"),
                           ("Dense", "fc3"), ("BatchNorm", "bn3")]
    params, state = m.init(np.random.default_rng(0), np.float32)
    assert {k: v.shape for k, v in params.items()} == \
        {"fc1.weight": (100, 784), "fc2.weight": (100, 100), "fc3.weight": (10, 100)}
    assert list(state) == [f"bn{k}.{s}" for k in (1, 2, 3) for s in ("running_mean", "running_var")]
    assert all(not l.affine and l.momentum == 0.1 and l.eps == 1e-5
               for l in m.layers if isinstance(l, BatchNorm))


@pytest.mark.parametrize("output_bn", [False, True])
def test_mlp_toy_structure(output_bn):
    m = mlp_toy(2, 1, output_bn=output_bn)
    expected = [("Dense", "fc1"), ("Tanh", "tanh1"), ("Dense", "fc2"), ("Tanh", "tanh2"), ("Dense", "fc3")]
    assert describe(m) == expected + ([("BatchNorm", "bn3")] if output_bn else [])
    params, state = m.init(np.random.default_rng(0), np.float64)
    assert {k: v.shape for k, v in params.items()} == {
        "fc1.weight": (64, 2), "fc1.bias": (64,), "fc2.weight": (64, 64), "fc2.bias": (64,),
        "fc3.weight": (1, 64), "fc3.bias": (1,)}
    assert list(m.kinds.values()) == ["binary", "real"] * 3
    assert list(state) == (["bn3.running_mean", "bn3.running_var"] if output_bn else [])
    assert [type(l).__name__ for l in mlp_toy(1, 1, act="relu", bias=False).layers] == \
        ["Dense", "ReLU", "Dense", "ReLU", "Dense"]
    assert list(mlp_toy(1, 1, bias=False).kinds) == ["fc1.weight", "fc2.weight", "fc3.weight"]


@pytest.mark.parametrize("call, match", [
    (lambda: mlp_toy(2, 1, act="sigmoid"), "act"),
    (lambda: mlp_toy(0, 1), "in_features"),
    (lambda: vgg_cifar(image_size=4), "image_size"),
    (lambda: vgg_cifar(width=0), "width"),
    (lambda: mlp_mnist(dropout=1.0), r"p must be in \[0, 1\)"),
    (lambda: mlp_mnist(hidden=(5, 0)), "hidden"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- forward shapes, state, flat vector ---------------------------------------------
@pytest.mark.parametrize("name, build, shape", [c[:3] for c in SMALL], ids=[c[0] for c in SMALL])
def test_forward_shapes_state_and_flat_round_trip(name, build, shape):
    rng = data_rng(1 + sum(map(ord, name)))
    model = build()
    params, state = model.init(rng, np.float32)
    assert list(model.kinds) == list(params)
    x = rng.standard_normal(shape).astype(np.float32)
    y, cache, new_state = model.forward(params, x, state, train=True, rng=rng)
    assert y.dtype == np.float32 and y.shape[0] == shape[0]
    assert list(new_state) == list(state)
    if state:       # training moved the running statistics, evaluation uses them
        assert any(not np.array_equal(new_state[k], state[k]) for k in state)
        assert np.isfinite(model.apply(params, x, new_state)).all()
    dx, grads = model.backward(params, cache, np.ones_like(y))
    assert dx.shape == x.shape and list(grads) == list(params)
    assert all(grads[k].shape == params[k].shape and grads[k].dtype == np.float32 for k in params)

    vec = flatten_params(params)
    assert vec.shape == (sum(v.size for v in params.values()),) and vec.dtype == np.float32
    back = unflatten_params(vec, params)
    assert list(back) == list(params)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])
    # the flat order is the parameter order: the first block is the first tensor
    first = next(iter(params))
    np.testing.assert_array_equal(vec[:params[first].size], params[first].ravel())


def test_a_suffix_skips_every_name_already_given():
    m = Sequential(ReLU(), ReLU(name="relu1"), ReLU(name="relu2"), ReLU())
    assert [l.name for l in m.layers] == ["relu", "relu1", "relu2", "relu3"]


def test_a_non_layer_is_refused_by_type():
    with pytest.raises(TypeError, match="Sequential: expected Layer objects, got str"):
        Sequential(Dense(2, 2), "relu")


@pytest.mark.parametrize("dtype", [np.float16, np.int32])
def test_init_dtype_must_be_float32_or_float64(dtype):
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        Sequential(Dense(2, 2)).init(np.random.default_rng(0), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_gives_every_array_the_dtype(dtype):
    model = Sequential(Dense(3, 2, bias=True, name="fc"), BatchNorm(2, name="bn"))
    params, state = model.init(np.random.default_rng(0), dtype)
    assert {v.dtype for v in [*params.values(), *state.values()]} == {np.dtype(dtype)}
    assert model.apply(params, np.ones((2, 3), dtype), state).dtype == dtype


@pytest.mark.parametrize("train", [True, False])
def test_a_name_that_prefixes_another_keeps_its_own_keys(train):
    """'bn' is a prefix of 'bn1': each layer reads and returns only its own state."""
    model = Sequential(BatchNorm(2, name="bn"), BatchNorm(2, name="bn1"))
    params, state = model.init(np.random.default_rng(0), np.float64)
    x = np.random.default_rng(1).standard_normal((4, 2))
    _, _, new_state = model.forward(params, x, state, train=train)
    assert list(new_state) == list(state)


def test_unflatten_refuses_a_vector_of_the_right_size_but_not_1d():
    like = {"a": np.zeros((2, 2))}
    with pytest.raises(ValueError, match=r"unflatten_params: vector has shape \(1, 4\), expected \(4,\)"):
        unflatten_params(np.zeros((1, 4)), like)
