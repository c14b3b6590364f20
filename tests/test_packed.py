"""Packed inference against the float model in evaluation mode: equal predictions, 1/25 the size."""
import argparse
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refbinn import models
from refbinn.data import load_mnist, normalize
from refbinn.nn import (BatchNorm, Conv2d, Dense, Dropout, Flatten, Layer, MaxPool2d, ReLU,
                        Sequential, SignActivation, Tanh, sign)
from refbinn.packed import (cli_export, cli_predict, export, fit_threshold, float_keys,
                            float_values, load_packed)


# -- helpers ---------------------------------------------------------------------------------
def binary_init(model, seed):
    """params with the binary weights replaced by their signs (a mode), fresh BN state."""
    params, state = model.init(np.random.default_rng(seed), np.float32)
    return {k: sign(v) if model.kinds[k] == "binary" else v for k, v in params.items()}, state


def warm_bn(model, params, state, x, steps=4, batch=500, seed=1):
    """Realistic running statistics: a few train-mode forward passes (dropout on)."""
    rng = np.random.default_rng(seed)
    for i in range(steps):
        _, _, state = model.forward(params, x[i * batch:(i + 1) * batch], state, train=True, rng=rng)
    return state


def random_affine(model, params, seed):
    """BN gammas of both signs (and some zeros), betas around 0: thresholds in both directions."""
    rng = np.random.default_rng(seed)
    out = dict(params)
    for layer in model.layers:
        if isinstance(layer, BatchNorm) and layer.affine:
            g = rng.standard_normal(layer.num_features)
            g[rng.random(layer.num_features) < 0.1] = 0
            out[f"{layer.name}.weight"] = g.astype(np.float32)
            out[f"{layer.name}.bias"] = (0.5 * rng.standard_normal(layer.num_features)).astype(np.float32)
    return out


def float32_bytes(params, state):
    return 4 * (sum(v.size for v in params.values()) + sum(v.size for v in state.values()))


def op_names(packed):
    return [op["op"] for op in packed.ops]


def binarynet_mlp(sizes, affine=True):
    """Dense -> BN -> Sign per hidden layer, Dense -> BN for the logits (BinaryNet, no dropout)."""
    layers = []
    for k in range(1, len(sizes)):
        layers += [Dense(sizes[k - 1], sizes[k], name=f"fc{k}"),
                   BatchNorm(sizes[k], affine=affine and k < len(sizes) - 1, name=f"bn{k}")]
        if k < len(sizes) - 1:
            layers.append(SignActivation(name=f"sign{k}"))
    return Sequential(*layers)


@pytest.fixture(scope="module")
def mnist(data_root):
    ds = load_mnist(data_root)
    x_train = normalize(ds.x_train[:2000], "mnist").reshape(2000, -1)       # (2000, 784)
    x_test = normalize(ds.x_test, "mnist").reshape(len(ds.x_test), -1)     # (10000, 784)
    return x_train, x_test, ds.y_test


# -- the paper's MNIST MLP: real activations, weight-only kernel --------------------------------
def test_mlp_mnist_matches_float_and_is_small(mnist, tmp_path):
    x_train, x_test, _ = mnist
    model = models.mlp_mnist()
    params, state = binary_init(model, 0)
    state = warm_bn(model, params, state, x_train)
    packed = export(model, params, state)
    assert op_names(packed) == ["dense_real", "affine", "relu"] * 3 + ["dense_real", "affine"]
    ref = model.apply(params, x_test, state)                                # (10000, 10)
    got = packed.predict_logits(x_test, batch_size=2500)
    assert got.dtype == np.float32 and got.shape == ref.shape
    # logits within 1e-4 of each row's scale; the predicted class identical on every image
    assert np.all(np.abs(got - ref) <= 1e-4 * np.abs(ref).max(axis=1, keepdims=True))
    np.testing.assert_array_equal(packed.predict(x_test), ref.argmax(axis=1))
    path = tmp_path / "mlp.npz"
    packed.save(path)
    assert os.path.getsize(path) * 25 <= float32_bytes(params, state)
    back = load_packed(path)
    assert back.ops == packed.ops
    np.testing.assert_array_equal(back.predict_logits(x_test[:500]), got[:500])


# -- BinaryNet-style MLP: sign activations, xnor-popcount GEMM, integer thresholds -----------------
def test_binarynet_mlp_logits_bit_identical(mnist):
    x_train, x_test, _ = mnist
    model = binarynet_mlp((784, 2048, 2048, 2048, 10))
    params, state = binary_init(model, 2)
    params = random_affine(model, params, 3)
    state = warm_bn(model, params, state, x_train)
    packed = export(model, params, state)
    assert op_names(packed) == ["dense_real", "threshold"] + ["dense_binary", "threshold"] * 2 + \
        ["dense_binary", "to_float", "batchnorm"]
    # On the 1/64 grid every partial sum of the first layer is exact in float32, so BLAS and
    # the weight-only kernel agree bit for bit; the rest is integer arithmetic and thresholds.
    x = np.round(x_test * 64) / 64
    ref = model.apply(params, x, state)
    got = packed.predict_logits(x, batch_size=5000)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(packed.predict(x), ref.argmax(axis=1))


# -- CNNs ----------------------------------------------------------------------------------------------
def test_small_vgg_matches_float(tmp_path):
    rng = np.random.default_rng(4)
    model = models.vgg_cifar(width=1 / 16, image_size=8)
    params, state = binary_init(model, 5)
    x = rng.standard_normal((1200, 3, 8, 8)).astype(np.float32)
    state = warm_bn(model, params, state, x, steps=2)
    packed = export(model, params, state)
    assert op_names(packed).count("conv_real") == 6 and "threshold" not in op_names(packed)
    ref = model.apply(params, x, state)
    got = packed.predict_logits(x, batch_size=300)
    assert np.all(np.abs(got - ref) <= 1e-4 * np.abs(ref).max(axis=1, keepdims=True))
    np.testing.assert_array_equal(packed.predict(x), ref.argmax(axis=1))
    packed.save(tmp_path / "vgg.npz")
    np.testing.assert_array_equal(load_packed(tmp_path / "vgg.npz").predict_logits(x[:50]), got[:50])


def binary_cnn(padding, stride):
    """Real first conv, then binary convs with pools on both sides of BN and a negative-gamma BN."""
    return Sequential(
        Conv2d(3, 16, 3, padding=1, name="conv1"), BatchNorm(16, affine=False, name="bn1"),
        SignActivation(name="s1"),
        Conv2d(16, 70, 3, stride=stride, padding=padding, bias=True, name="conv2"),
        BatchNorm(70, affine=True, name="bn2"), MaxPool2d(2, name="pool2"), SignActivation(name="s2"),
        Conv2d(70, 24, 3, padding=1, name="conv3"), MaxPool2d(2, name="pool3"),
        BatchNorm(24, affine=False, name="bn3"), Dropout(0.3, name="drop3"), SignActivation(name="s3"),
        Flatten(name="flatten"), Dense(24 * 2 * 2, 33, bias=True, name="fc1"),
        BatchNorm(33, affine=True, name="bn4"), SignActivation(name="s4"),
        Dense(33, 10, name="fc2"), BatchNorm(10, affine=True, name="bn5"))


@pytest.mark.parametrize("padding, stride, size", [(1, 1, 9), ("same", 1, 8), (0, 2, 19)])
def test_binary_cnn_logits_bit_identical(padding, stride, size, tmp_path):
    rng = np.random.default_rng(6)
    model = binary_cnn(padding, stride)
    params, state = binary_init(model, 7)
    params = random_affine(model, params, 8)
    params["conv2.bias"] = rng.integers(-4, 5, 70).astype(np.float32) / 2   # ties with integers
    x = (rng.integers(-32, 33, (300, 3, size, size)) / 16).astype(np.float32)  # exact first-layer sums
    state = warm_bn(model, params, state, x, steps=2, batch=150)
    packed = export(model, params, state)
    assert op_names(packed) == [
        "conv_real", "threshold", "conv_binary", "threshold", "maxpool",       # pool behind the sign
        "conv_binary", "maxpool", "threshold",                                 # pool in front
        "flatten", "dense_binary", "threshold", "dense_binary", "to_float", "batchnorm"]
    ref = model.apply(params, x, state)
    np.testing.assert_array_equal(packed.predict_logits(x, batch_size=128), ref)
    packed.save(tmp_path / "cnn.npz")                     # binary convs survive the file format
    np.testing.assert_array_equal(load_packed(tmp_path / "cnn.npz").predict_logits(x[:64]), ref[:64])
    assert packed.predict_logits(x[:0]).shape == model.apply(params, x[:0], state).shape == (0, 10)
    assert packed.predict(x[:0]).shape == (0,)


# -- thresholds -------------------------------------------------------------------------------------
def bn_decide(seed, channels, scale):
    """decide(v) = BN(v + bias) >= 0 with gammas of both signs and zeros, as the float model."""
    rng = np.random.default_rng(seed)
    bn = BatchNorm(channels, eps=1e-4, affine=True)
    p = {"weight": rng.choice(np.float32([-1.5, -0.3, 0, 0.2, 2]), channels),
         "bias": (rng.standard_normal(channels) * 0.3).astype(np.float32)}
    s = {"running_mean": (rng.standard_normal(channels) * scale).astype(np.float32),
         "running_var": (rng.random(channels) * scale ** 2 + 1e-3).astype(np.float32)}
    s["running_mean"][::3] = np.round(s["running_mean"][::3])          # means on attainable values
    return lambda v: (bn.forward(p, np.asarray(v, np.float32)[None], s)[0] >= 0)[0]


def test_integer_thresholds_exhaustive():
    K, C = 97, 40
    decide = bn_decide(0, C, 10.0)
    dirs, t = fit_threshold(decide, C, K)
    h = np.arange(-K, K + 1)                                          # every integer pre-activation
    want = np.stack([decide(np.full(C, v, np.float32)) for v in h])   # (2K+1, C)
    np.testing.assert_array_equal(dirs * h[:, None] >= t, want)
    assert set(dirs) == {-1, 1}


def test_float_thresholds_at_the_boundary():
    C = 60
    decide = bn_decide(1, C, 3.0)
    bound = int(float_keys(np.float32(2.0 ** 100)))
    dirs, t = fit_threshold(decide, C, bound, float_values)
    cut = float_values(t)                                             # the first +1 value
    below = float_values(t - 1)                                       # its float32 neighbour
    inside = np.abs(t) <= bound
    np.testing.assert_array_equal(decide(dirs * cut)[inside], True)
    np.testing.assert_array_equal(decide(dirs * below)[np.abs(t - 1) <= bound], False)
    v = np.random.default_rng(2).standard_normal((500, C)).astype(np.float32) * 5
    v[:50] = np.where(inside, cut * dirs, 0)                          # exactly at the cut
    np.testing.assert_array_equal(dirs * v >= cut, np.stack([decide(r) for r in v]))


def test_float_keys_round_trip_in_order():
    v = np.float32([-np.inf, -3e38, -1.5, -1e-45, -0.0, 0.0, 1e-45, 2.5, 3e38, np.inf])
    k = float_keys(v)
    assert np.all(np.diff(k[[0, 1, 2, 3, 5, 6, 7, 8, 9]]) > 0) and k[4] == k[5] == 0
    np.testing.assert_array_equal(float_values(k), np.where(v == 0, np.float32(0), v))


@given(seed=st.integers(0, 2**16), k_in=st.integers(1, 150),
       widths=st.lists(st.integers(1, 140), min_size=1, max_size=3),
       input_sign=st.booleans(), bias=st.booleans(), affine=st.booleans(),
       act=st.sampled_from([None, "relu", "tanh"]))
def test_binary_mlps_bit_identical(seed, k_in, widths, input_sign, bias, affine, act):
    rng = np.random.default_rng(seed)
    sizes = [k_in] + widths + [5]
    layers = [SignActivation(name="s0")] if input_sign else []
    for k in range(1, len(sizes)):
        layers += [Dense(sizes[k - 1], sizes[k], bias=bias, name=f"fc{k}"),
                   BatchNorm(sizes[k], affine=affine, name=f"bn{k}")]
        if k < len(sizes) - 1:
            layers += [{"relu": ReLU, "tanh": Tanh}[act](name=f"a{k}")] if act else []
            layers.append(SignActivation(name=f"s{k}"))
    model = Sequential(*layers)
    params, state = binary_init(model, seed)
    params = random_affine(model, params, seed + 1)
    for k in range(1, len(sizes)):                                   # statistics on the value grid
        fan = sizes[k - 1]
        state[f"bn{k}.running_mean"] = (rng.integers(-fan, fan + 1, sizes[k]) / 4).astype(np.float32)
        state[f"bn{k}.running_var"] = (rng.random(sizes[k]) * fan + 0.5).astype(np.float32)
    x = (rng.integers(-16, 17, (40, k_in)) / 8).astype(np.float32)   # with exact zeros
    packed = export(model, params, state)
    assert op_names(packed).count("dense_binary") == len(sizes) - 1 - (not input_sign)
    np.testing.assert_array_equal(packed.predict_logits(x, batch_size=16), model.apply(params, x, state))


# -- errors --------------------------------------------------------------------------------------
class Odd(Layer):
    def forward(self, params, x, state, *, train=False, rng=None):
        return x, None, state


def test_errors_name_the_layer(tmp_path):
    model = Sequential(Dense(4, 3, name="fc1"), Odd(name="odd"), Dense(3, 2, name="fc2"))
    params, state = binary_init(model, 0)
    with pytest.raises(ValueError, match="layer 'odd'"):
        export(model, params, state)
    model = Sequential(Dense(4, 3, name="fc1"))
    params, _ = model.init(np.random.default_rng(0))
    with pytest.raises(ValueError, match="layer 'fc1'.*\\+-1"):
        export(model, params, {})
    zero = sign(params["fc1.weight"])
    zero[1, 2] = 0                                     # sign(0) = +1 in the kernels, 0 in the float model
    with pytest.raises(ValueError, match="layer 'fc1'.*\\+-1"):
        export(model, {"fc1.weight": zero}, {})
    packed = export(model, {"fc1.weight": sign(params["fc1.weight"])}, {})
    with pytest.raises(ValueError, match="'fc1'.*\\(5, 3\\).*\\(N, 4\\)"):
        packed.predict_logits(np.zeros((5, 3), np.float32))
    for bad in (0, True):
        with pytest.raises(ValueError, match="batch_size"):
            packed.predict_logits(np.zeros((5, 4), np.float32), batch_size=bad)
    binary = Sequential(SignActivation(name="s0"), Dense(4, 3, bias=True, name="fc1"))
    params = {"fc1.weight": sign(params["fc1.weight"]), "fc1.bias": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="'fc1'.*\\(5, 6\\).*\\(N, 4\\)"):     # no packing past k
        export(binary, params, {}).predict_logits(np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match="lack 'fc1.bias'"):
        export(binary, {"fc1.weight": params["fc1.weight"]}, {})
    two_bns = Sequential(Dense(4, 3, name="fc1"), BatchNorm(3, name="bn1"), BatchNorm(5, name="bn2"),
                         SignActivation(name="s1"))
    p2, s2 = binary_init(two_bns, 0)
    with pytest.raises(ValueError, match="layer 'bn2' has 5 channels"):
        export(two_bns, p2, s2)
    bad = tmp_path / "bad.npz"
    np.savez(bad, meta=np.array(json.dumps({"format": "refbinn.packed", "version": 99, "ops": []})))
    with pytest.raises(ValueError, match="version"):
        load_packed(bad)


def _edited(src, dst, edit_ops=None, arrays=None):
    """A copy of a packed file with its op specs edited in place and some arrays replaced."""
    with np.load(src) as f:
        files = {k: f[k] for k in f.files}
    meta = json.loads(str(files["meta"]))
    if edit_ops:
        edit_ops(meta["ops"])
    files["meta"] = np.array(json.dumps(meta))
    files.update(arrays or {})
    np.savez(dst, **files)
    return dst


def test_damaged_conv_and_channel_ops_are_refused(tmp_path):
    model = binary_cnn(1, 1)
    params, state = binary_init(model, 7)
    state = warm_bn(model, params, state, np.random.default_rng(0).standard_normal((40, 3, 9, 9)), 2, 20)
    packed = export(model, params, state)
    packed.save(tmp_path / "cnn.npz")
    ops = [op["op"] for op in packed.ops]
    conv, thr, pool = ops.index("conv_binary"), ops.index("threshold"), ops.index("maxpool")
    x = np.zeros((2, 3, 9, 9), np.float32)
    for edit, says in [(lambda o: o[conv].pop("padding"), "'padding' must be"),
                       (lambda o: o[conv].update(padding=[0, 0]), r"gives pads \[0, 0, 0, 0\]"),
                       (lambda o: o[conv].update(padding="same", stride=[2, 2]), "same"),
                       (lambda o: o[conv].update(padding=[1, True]), "'padding' must be"),
                       (lambda o: o[thr].update(pack="yes"), "'pack' must be true or false"),
                       (lambda o: o[pool].update(kernel=[0, 2]), "'kernel' must be 2 integers >= 1")]:
        with pytest.raises(ValueError, match=says):
            load_packed(_edited(tmp_path / "cnn.npz", tmp_path / "bad.npz", edit))
    taps = packed.arrays[conv]["tap_sums"]
    for arrays, says in [({f"{conv}/tap_sums": taps.astype(np.int64)}, "'tap_sums' must be int32"),
                         ({f"{thr}/scale": np.ones(16, np.float32)}, r"unexpected array\(s\) \['scale'\]")]:
        with pytest.raises(ValueError, match=says):
            load_packed(_edited(tmp_path / "cnn.npz", tmp_path / "bad.npz", arrays=arrays))
    # one threshold for all 16 channels would broadcast: refused when it meets the input
    short = {f"{thr}/dirs": np.ones(1, np.float32), f"{thr}/t": np.zeros(1, np.float32)}
    bad = load_packed(_edited(tmp_path / "cnn.npz", tmp_path / "bad.npz", arrays=short))
    with pytest.raises(ValueError, match=r"'bn1'.*\(2, 16, 9, 9\).*threshold op holds \[1\] values"):
        bad.predict_logits(x)


def test_a_binary_dense_edited_to_take_more_signs_is_refused(tmp_path):
    """k 70 -> 100 keeps the words' shape (2 per row): the threshold's packed words went
    through unchecked, read as 30 more +1 inputs (wrong logits, no error)."""
    model = binarynet_mlp((5, 70, 3))
    params, state = binary_init(model, 19)
    packed = export(model, params, state)
    assert op_names(packed)[1:3] == ["threshold", "dense_binary"] and packed.ops[1]["pack"]
    packed.save(tmp_path / "mlp.npz")
    bad = load_packed(_edited(tmp_path / "mlp.npz", tmp_path / "bad.npz", lambda o: o[2].update(k=100)))
    with pytest.raises(ValueError, match=r"'fc2'.*\(4, 70\).*\(N, 100\)"):
        bad.predict_logits(np.ones((4, 5), np.float32))


def test_a_packed_model_built_by_hand_is_checked_like_a_file():
    """PackedModel(ops, arrays) runs check_ops as load_packed does: a threshold shorter than its
    directions was read past its end by the packing kernel (wrong words, no error)."""
    from refbinn.packed.model import PackedModel
    ops = [{"op": "threshold", "name": "t", "pack": True}, {"op": "to_float", "name": "f"}]
    good = [{"dirs": np.ones(4096, np.float32), "t": np.zeros(4096, np.float32)}, {}]
    assert PackedModel(ops, good).predict_logits(np.ones((8, 4096), np.float32)).shape[0] == 8
    with pytest.raises(ValueError, match=r"op 0 \(threshold 't'\).*same length"):
        PackedModel(ops, [{"dirs": np.ones(4096, np.float32), "t": np.zeros(1, np.float32)}, {}])


# -- command-line hooks -------------------------------------------------------------------------------
def test_cli_export_and_predict(mnist, data_root, tmp_path, capsys):
    from refbinn.optim.adam import Adam
    from refbinn.optim.ste import STEAdam
    from refbinn.train import save_checkpoint
    x_train, x_test, y_test = mnist
    kw = {"hidden": [256], "dropout": 0.2}
    model = models.mlp_mnist(**kw)
    params, state = model.init(np.random.default_rng(9), np.float32)
    state = warm_bn(model, {k: sign(v) for k, v in params.items()}, state, x_train)
    config = {"meta": {"model": ["mlp_mnist", kw], "dataset": "mnist"}}
    ckpt = tmp_path / "checkpoint.npz"
    opt = STEAdam()
    opt_state = opt.init(params)
    save_checkpoint(ckpt, opt=opt, opt_state=opt_state, bn_state=state, rngs={}, epoch=1,
                    history={}, config=config)
    out = tmp_path / "mlp_packed.npz"
    assert cli_export(argparse.Namespace(checkpoint=str(ckpt), out=str(out))) == 0
    text = capsys.readouterr().out
    f32, size = float32_bytes(params, state), os.path.getsize(out)
    assert f"float32 {f32} bytes, packed {size} bytes, ratio {f32 / size:.1f}x" in text
    res_dir = tmp_path / "results"
    args = argparse.Namespace(packed=str(out), dataset="mnist", data_root=str(data_root),
                              batch_size=2000, out=str(res_dir))
    assert cli_predict(args) == 0
    assert "images/s" in capsys.readouterr().out
    res = json.loads((res_dir / "predict_mlp_packed.json").read_text())
    ref = model.apply(opt.params(opt_state), x_test, state).argmax(axis=1)
    assert res["accuracy"] == float(np.mean(ref == y_test)) and res["n_images"] == 10000
    assert res["images_per_s"] > 0 and (res["float32_bytes"], res["file_bytes"]) == (f32, size)
    assert "against" not in res
    args.against = str(ckpt)                   # beside the float model it was exported from
    assert cli_predict(args) == 0
    said = capsys.readouterr().out
    res = json.loads((res_dir / "predict_mlp_packed.json").read_text())
    logits = np.concatenate([model.apply(opt.params(opt_state), x_test[i:i + 2000], state)   # as the
                             for i in range(0, len(x_test), 2000)])                           # command: batch 2000
    packed_logits = load_packed(out).predict_logits(x_test.reshape(len(x_test), -1))
    gap = np.abs(packed_logits.astype(np.float64) - logits).max()
    assert res["float_accuracy"] == res["accuracy"] and res["float_argmax_agree"] == 10000
    assert res["float_logit_max_abs_diff"] == gap and res["float_logit_max_abs"] == np.abs(logits).max()
    assert 0 < res["float_logit_diff_over_max"] < 1e-5 and res["float_logits_bit_identical"] is False
    assert f"argmax agrees on 10000 of 10000, max |packed - float| / max |float| = " in said
    other = tmp_path / "other.npz"             # another network, or the same with other weights: refused
    p_other, s_other = models.mlp_mnist(hidden=[32], classes=4).init(np.random.default_rng(0), np.float32)
    save_checkpoint(other, opt=opt, opt_state=opt.init(p_other), bn_state=s_other, rngs={}, epoch=1,
                    history={}, config={"meta": {"model": ["mlp_mnist", {"hidden": [32], "classes": 4}],
                                                 "dataset": "mnist"}})
    p_same, _ = model.init(np.random.default_rng(10), np.float32)
    save_checkpoint(tmp_path / "same_net.npz", opt=opt, opt_state=opt.init(p_same), bn_state=state, rngs={},
                    epoch=1, history={}, config=config)
    before = (res_dir / "predict_mlp_packed.json").read_bytes()
    for ck in (other, tmp_path / "same_net.npz"):
        args.against = str(ck)
        with pytest.raises(ValueError, match=f"mlp_packed.npz was not exported from .*{ck.name}"):
            cli_predict(args)
    assert (res_dir / "predict_mlp_packed.json").read_bytes() == before      # nothing written
    save_checkpoint(ckpt, opt=Adam(), opt_state=Adam().init(params), bn_state=state, rngs={},
                    epoch=1, history={}, config=config)
    with pytest.raises(ValueError, match="layer 'fc1'"):        # real weights cannot be packed
        cli_export(argparse.Namespace(checkpoint=str(ckpt), out=str(out)))


# -- layer orders and layers the tests above do not reach (mutation audit) --------------------------
def _float_and_packed(model, seed, x, bn=None):
    """The float model's logits and the packed ones on x, with BN statistics ``bn(layer, rng)``."""
    rng = np.random.default_rng(seed)
    params, state = binary_init(model, seed)
    params = random_affine(model, params, seed + 1)
    for layer in model.layers:
        if isinstance(layer, BatchNorm) and bn is not None:
            mean, var = bn(layer, rng)
            state[f"{layer.name}.running_mean"], state[f"{layer.name}.running_var"] = mean, var
    packed = export(model, params, state)
    return model.apply(params, x, state), packed.predict_logits(x), packed, params, state


ORDERS = {   # each takes a path of export that the models above do not
    "bias straight into a sign": lambda: Sequential(
        Dense(6, 5, bias=True, name="fc1"), SignActivation(name="s1"), Dense(5, 3, name="fc2")),
    "sign as the last layer": lambda: Sequential(Dense(6, 4, name="fc1"), SignActivation(name="s1")),
    "flatten, then an activation chain": lambda: Sequential(
        Conv2d(2, 3, 3, padding=1, name="c1"), Flatten(name="flat"), Tanh(name="a"),
        SignActivation(name="s1"), Dense(3 * 4 * 4, 3, name="fc")),
    "asymmetric padding": lambda: Sequential(
        Conv2d(2, 4, 2, padding="same", name="c1"), BatchNorm(4, name="bn1"), SignActivation(name="s1"),
        Conv2d(4, 3, (3, 1), padding=(1, 0), name="c2"), Flatten(name="flat"), Dense(3 * 4 * 4, 3, name="fc")),
    "BatchNorm on the input": lambda: Sequential(BatchNorm(6, name="bn0"), Dense(6, 3, name="fc1")),
}


@pytest.mark.parametrize("name", list(ORDERS))
def test_layer_orders_match_float(name):
    rng = np.random.default_rng(10)
    model = ORDERS[name]()
    first = model.layers[0]
    shape = (64, 6) if isinstance(first, (Dense, BatchNorm)) else (64, 2, 4, 4)
    x = (rng.integers(-4, 5, shape) / 2).astype(np.float32)     # exact sums, with h = 0 among them
    x0 = x.copy()
    ref, got, _, _, _ = _float_and_packed(model, 11, x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_array_equal(x, x0)                       # the input is left as it was


def test_folded_batchnorm_keeps_the_sign_of_gamma_and_eps_inside_the_root():
    """After a real layer BN is folded into scale, shift; gammas of both signs, variances below eps."""
    model = Sequential(Dense(6, 5, name="fc1"), BatchNorm(5, eps=0.5, name="bn1"))
    x = np.random.default_rng(12).standard_normal((50, 6)).astype(np.float32)
    bn = lambda layer, rng: (rng.standard_normal(5).astype(np.float32),             # noqa: E731
                             np.float32([1e-3, 0.01, 0.1, 0.3, 2.0]))
    ref, got, packed, params, _ = _float_and_packed(model, 13, x, bn)
    assert op_names(packed) == ["dense_real", "affine"] and np.any(params["bn1.weight"] < 0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_every_input_of_a_small_binary_layer_decides_as_the_float_model():
    """All 2**K sign inputs reach every h in [-K, K]; BN channels include constant ones
    (gamma 0) and cuts at h = +-K, so a threshold off by one at either end shows."""
    K = 6
    model = Sequential(SignActivation(name="s0"), Dense(K, 8, name="fc1"), BatchNorm(8, name="bn1"),
                       SignActivation(name="s1"), Dense(8, 8, name="fc2"))
    params, state = binary_init(model, 14)
    params["fc2.weight"] = np.eye(8, dtype=np.float32) * 2 - 1            # logits show each sign
    params["bn1.weight"] = np.float32([0, 0, 1, -1, 1, -1, 2, -0.5])
    params["bn1.bias"] = np.float32([0.5, -0.5, 0, 0, 0, 0, 0.3, -0.2])
    state["bn1.running_mean"] = np.float32([0, 0, K, K, -K, -K, 1, 2])
    state["bn1.running_var"] = np.ones(8, np.float32)
    x = np.array(np.meshgrid(*[[-1.0, 1.0]] * K)).reshape(K, -1).T.astype(np.float32)   # (2**K, K)
    packed = export(model, params, state)
    np.testing.assert_array_equal(packed.predict_logits(x), model.apply(params, x, state))


def test_constant_channels_decide_alike_past_the_float_bound():
    """A channel whose sign never changes (gamma 0) gets t = +-inf: the same sign for real
    pre-activations beyond 2**100, where the other thresholds are clipped."""
    model = Sequential(Dense(4, 6, name="fc1"), BatchNorm(6, name="bn1"), SignActivation(name="s1"),
                       Dense(6, 6, name="fc2"))
    params, state = binary_init(model, 15)
    params["fc2.weight"] = np.eye(6, dtype=np.float32) * 2 - 1
    params["bn1.weight"] = np.float32([0, 0, 1, -1, 0, 0])
    params["bn1.bias"] = np.float32([0.5, -0.5, 0, 0, 0, -0.5])
    x = np.random.default_rng(16).standard_normal((40, 4)).astype(np.float32) * np.float32(1e36)
    packed = export(model, params, state)
    np.testing.assert_array_equal(packed.predict_logits(x), model.apply(params, x, state))


def test_nan_input_gives_sign_minus_one_like_the_float_model():
    model = binarynet_mlp((5, 70, 3))
    params, state = binary_init(model, 17)
    x = np.ones((3, 5), np.float32)
    x[1, 2] = np.nan
    packed = export(model, params, state)
    assert packed.ops[1]["pack"]                                        # threshold words, then xnor
    np.testing.assert_array_equal(packed.predict_logits(x), model.apply(params, x, state))


def test_one_output_predicts_class_one_only_for_a_positive_logit():
    from refbinn.predict import class_probs
    model = Sequential(SignActivation(name="s0"), Dense(4, 1, name="fc1"))
    params, state = binary_init(model, 18)
    x = np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1).T.astype(np.float32)   # h in {-4..4}
    packed = export(model, params, state)
    z = model.apply(params, x, state)
    assert np.any(z == 0)
    np.testing.assert_array_equal(packed.predict(x), class_probs(z).argmax(axis=1))
