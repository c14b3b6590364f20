"""refbinn.interop: torch-style state_dict and BayesBiNN state round trips (NumPy only)."""
import numpy as np
import pytest

from refbinn.interop import (bayesbinn_from_torch, bayesbinn_to_torch, from_state_dict,
                             params_to_vector, to_state_dict, vector_to_params)
from refbinn.models import mlp_mnist


def _trained_like(dtype=np.float32, seed=0):
    """A small mlp_mnist with non-trivial parameters and BN state."""
    model = mlp_mnist(in_features=12, hidden=(8, 6), classes=3)
    rng = np.random.default_rng(seed)
    params, state = model.init(rng, dtype)
    state = {k: (rng.uniform(0.5, 2.0, v.shape) if k.endswith("var") else rng.standard_normal(v.shape))
             .astype(dtype) for k, v in state.items()}
    return model, params, state


def test_state_dict_names_order_and_dtypes():
    model, params, state = _trained_like()
    assert list(to_state_dict(params, state)) == [
        "fc1.weight", "fc2.weight", "fc3.weight", "bn1.running_mean", "bn1.running_var",
        "bn1.num_batches_tracked", "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked",
        "bn3.running_mean", "bn3.running_var", "bn3.num_batches_tracked"]
    sd = to_state_dict(params, state, num_batches_tracked=7, model=model)
    assert list(sd) == ["fc1.weight", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
                        "fc2.weight", "bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked",
                        "fc3.weight", "bn3.running_mean", "bn3.running_var", "bn3.num_batches_tracked"]
    assert sd["fc1.weight"].shape == (8, 12) and sd["fc1.weight"].dtype == np.float32
    assert sd["bn2.num_batches_tracked"].dtype == np.int64 and int(sd["bn2.num_batches_tracked"]) == 7
    sd["fc1.weight"][0, 0] = 99.0                        # a copy: the model's arrays are untouched
    assert params["fc1.weight"][0, 0] != 99.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_exact(dtype):
    _, params, state = _trained_like(dtype)
    sd = to_state_dict(params, state, num_batches_tracked={"bn1": 3, "bn2": 4, "bn3": 5})
    p2, s2, nbt = from_state_dict(sd, like_params=params, like_state=state)
    assert list(p2) == list(params) and list(s2) == list(state)
    for k in params:
        assert p2[k].dtype == params[k].dtype and np.array_equal(p2[k], params[k])
    for k in state:
        assert s2[k].dtype == state[k].dtype and np.array_equal(s2[k], state[k])
    assert nbt == {"bn1": 3, "bn2": 4, "bn3": 5}


def test_from_state_dict_checks_layout():
    _, params, state = _trained_like()
    sd = to_state_dict(params, state)
    bad = dict(sd)
    del bad["fc2.weight"]
    with pytest.raises(ValueError, match="missing \\['fc2.weight'\\]"):
        from_state_dict(bad, like_params=params)
    bad = {**sd, "fc9.weight": np.zeros((2, 2))}
    with pytest.raises(ValueError, match="unexpected \\['fc9.weight'\\]"):
        from_state_dict(bad, like_params=params)
    bad = {**sd, "bn1.running_var": np.ones(5, np.float32)}
    with pytest.raises(ValueError, match="'bn1.running_var' has shape \\(5,\\)"):
        from_state_dict(bad, like_state=state)
    with pytest.raises(ValueError, match="num_batches_tracked"):
        to_state_dict(params, state, num_batches_tracked=-1)
    with pytest.raises(ValueError, match="not a BatchNorm buffer"):
        to_state_dict(params, {"bn1.mean": np.zeros(8)})


def test_vector_round_trip_and_order():
    _, params, _ = _trained_like(np.float64)
    vec = params_to_vector(params)
    assert vec.shape == (8 * 12 + 6 * 8 + 3 * 6,)
    assert np.array_equal(vec[:96], params["fc1.weight"].ravel())       # torch's row-major layout
    back = vector_to_params(vec, params)
    assert all(np.array_equal(back[k], params[k]) for k in params)
    with pytest.raises(ValueError, match="expected \\(162,\\)"):
        vector_to_params(vec[:-1], params)


@pytest.mark.parametrize("with_mu", [False, True])
def test_bayesbinn_state_round_trip(with_mu):
    _, params, _ = _trained_like(np.float32)
    rng = np.random.default_rng(1)
    lam = {k: (10 * rng.choice([-1.0, 1.0], v.shape)).astype(np.float32) for k, v in params.items()}
    mom = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    lam0 = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    state = {"lam": lam, "momentum": mom, "lam0": lam0, "step": 12}
    if with_mu:
        state["mu"] = {k: np.tanh(v - 1).astype(np.float32) for k, v in lam.items()}
    t = bayesbinn_to_torch(state)
    assert t["step"] == 12 and t["lamda"].shape == (162,) and t["lamda"].dtype == np.float32
    mu_expect = params_to_vector(state["mu"]) if with_mu else np.tanh(t["lamda"])
    assert np.array_equal(t["mu"], mu_expect)
    back = bayesbinn_from_torch(t, params)
    for f, ref in (("lam", lam), ("momentum", mom), ("lam0", lam0)):
        assert all(np.array_equal(back[f][k], ref[k]) for k in params)
    assert back["step"] == 12
    scalar = bayesbinn_to_torch({**state, "lam0": 0.0})
    assert np.array_equal(scalar["prior_lamda"], np.zeros(162, np.float32))
    with pytest.raises(ValueError, match="'lamda' and 'momentum'"):
        bayesbinn_from_torch({"lamda": t["lamda"]}, params)


def test_real_bayesbinn_state_round_trip_and_step():
    """A refbinn BayesBiNN state survives the round trip, and one step from either copy is identical."""
    from refbinn.optim.bayesbinn import BayesBiNN, BayesBiNNState
    _, params, _ = _trained_like(np.float32)
    opt = BayesBiNN(N=100, tau=1e-10, lr=1e-4, numerics="official")
    rng = np.random.default_rng(3)
    state = opt.init(params, rng)
    noise = opt.sample(state, rng)
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}]
    state = opt.update(grads, state, noise)                       # mu now lags lam
    t = bayesbinn_to_torch(state)
    assert not np.array_equal(t["mu"], np.tanh(t["lamda"]))
    out = bayesbinn_from_torch(t, params)
    back = BayesBiNNState(out["lam"], out["momentum"], out["mu"], out["step"], out["seed"])
    for f in ("lam", "momentum", "mu"):
        assert all(np.array_equal(getattr(back, f)[k], getattr(state, f)[k]) for k in params)
    assert back.step == state.step == 1 and back.seed == state.seed != 0
    # each copy draws its own noise key: the same seed gives the same key, weights and step
    na, nb = opt.sample(state, rng), opt.sample(back, rng)
    assert all(np.array_equal(x, y) for x, y in zip(opt.forward_params(state, na[0]).values(),
                                                     opt.forward_params(back, nb[0]).values()))
    a, b = opt.update(grads, state, na), opt.update(grads, back, nb)
    assert all(np.array_equal(a.lam[k], b.lam[k]) and np.array_equal(a.mu[k], b.mu[k]) for k in params)


def test_exact_bayesbinn_state_round_trip_stores_no_mu():
    from refbinn.optim.bayesbinn import BayesBiNN, BayesBiNNState
    _, params, _ = _trained_like(np.float32)
    opt = BayesBiNN(N=100, tau=1.0, lr=1e-2, numerics="exact")
    state = opt.init(params, np.random.default_rng(4))
    out = bayesbinn_from_torch(bayesbinn_to_torch(state), params, numerics="exact")
    back = BayesBiNNState(out["lam"], out["momentum"], out["mu"], out["step"], out["seed"])
    assert back.mu == {} == state.mu and back.seed == state.seed
    with pytest.raises(ValueError, match="numerics must be"):
        bayesbinn_from_torch(bayesbinn_to_torch(state), params, numerics="exakt")


def test_vectors_check_their_input_and_return_copies():
    _, params, _ = _trained_like(np.float32)
    with pytest.raises(ValueError, match="names not in params: \\['fc9.weight'\\]"):
        params_to_vector(params, ["fc1.weight", "fc9.weight"])
    with pytest.raises(ValueError, match="names not in like: \\['fc9.weight'\\]"):
        vector_to_params(np.zeros(96), params, ["fc1.weight", "fc9.weight"])
    vec = params_to_vector(params)
    with pytest.raises(ValueError, match="vector has shape \\(2, 81\\), expected \\(162,\\)"):
        vector_to_params(vec.reshape(2, 81), params)               # the right size is not enough
    back = vector_to_params(vec, params)                           # the same dtype: still copies
    assert not any(np.shares_memory(back[k], vec) for k in params)
    back = vector_to_params(vec.astype(np.float64), params)        # cast to the dtype of like
    assert all(back[k].dtype == np.float32 and np.array_equal(back[k], params[k]) for k in params)


def test_state_dict_with_nested_module_names():
    """torch names such as 'features.0.weight': the last dot separates the module."""
    params = {"features.0.weight": np.ones((2, 3), np.float32)}
    state = {"features.1.running_mean": np.zeros(2, np.float32), "features.1.running_var": np.ones(2, np.float32)}
    sd = to_state_dict(params, state, num_batches_tracked=4)
    assert list(sd) == ["features.0.weight", "features.1.running_mean", "features.1.running_var",
                        "features.1.num_batches_tracked"]
    p2, s2, nbt = from_state_dict(sd, like_params=params, like_state=state)
    assert list(p2) == list(params) and list(s2) == list(state) and nbt == {"features.1": 4}
    with pytest.raises(ValueError, match="'weight' has no module prefix"):
        to_state_dict({"weight": np.ones(2)}, {})


def test_state_dicts_are_copies_both_ways():
    _, params, state = _trained_like()
    sd = to_state_dict(params, state)
    sd["bn1.running_var"][0] = -1.0
    assert state["bn1.running_var"][0] != -1.0
    p2, s2, _ = from_state_dict(sd)
    p2["fc1.weight"][0, 0] = s2["bn1.running_mean"][0] = 99.0
    assert sd["fc1.weight"][0, 0] != 99.0 and sd["bn1.running_mean"][0] != 99.0


def test_from_state_dict_casts_to_the_model_dtype():
    _, params, state = _trained_like(np.float32)
    sd = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in to_state_dict(params, state).items()}
    p2, s2, _ = from_state_dict(sd, like_params=params, like_state=state)
    assert all(v.dtype == np.float32 for v in [*p2.values(), *s2.values()])


@pytest.mark.parametrize("bad", [-1, 2.5, float("inf"), float("nan"), None, True, {"bn2": 2.5}])
def test_num_batches_tracked_must_be_a_count(bad):
    _, params, state = _trained_like()
    what = "num_batches_tracked\\['bn2'\\]" if isinstance(bad, dict) else "num_batches_tracked"
    with pytest.raises(ValueError, match=f"^to_state_dict: {what} must be an integer in \\[0, inf\\)"):
        to_state_dict(params, state, num_batches_tracked=bad)


def test_bayesbinn_vectors_take_the_dtype_of_lam_and_defaults():
    _, params, _ = _trained_like(np.float32)
    lam = {k: np.full(v.shape, 2.0, np.float32) for k, v in params.items()}
    state = {"lam": lam, "momentum": {k: np.zeros_like(v) for k, v in lam.items()}, "step": 3,
             "lam0": {k: np.ones(v.shape) for k, v in params.items()}}           # float64 prior
    t = bayesbinn_to_torch(state)
    assert t["prior_lamda"].dtype == np.float32 and t["seed"] == 0
    state64 = dict(state, mu={k: np.tanh(v).astype(np.float64) for k, v in lam.items()},
                   momentum={k: np.zeros(v.shape) for k, v in lam.items()})      # float64 beside float32 lam
    assert all(v.dtype == np.float32 for k, v in bayesbinn_to_torch(state64).items() if k not in ("step", "seed"))
    out = bayesbinn_from_torch({"lamda": t["lamda"], "momentum": t["momentum"]}, params)
    assert out["step"] == 0 and out["seed"] == 0 and out["lam0"] is None
    assert all(np.array_equal(out["mu"][k], np.tanh(lam[k])) for k in params)   # no mu: tanh(lamda)


def test_torch_tensors_of_the_wrong_kind_are_named_not_cast():
    """A complex tensor lost its imaginary part, num_batches_tracked 2.5 became 2 and -3 was kept, step 2.7
    became 2; a tensor that requires grad or is bfloat16, a vector count or None was a raw
    RuntimeError / TypeError."""
    torch = pytest.importorskip("torch")
    _, params, state = _trained_like()
    sd = {k: torch.from_numpy(v) for k, v in to_state_dict(params, state).items()}
    assert from_state_dict(sd, params, state)[2] == {"bn1": 0, "bn2": 0, "bn3": 0}
    w = "fc1.weight"
    for key, value, says in (
            (w, sd[w].to(torch.complex64), "must hold real numbers, got dtype complex64"),
            (w, sd[w].clone().requires_grad_(), r"cannot be read as a NumPy array "
                                                r"\(Can't call numpy\(\) on Tensor that requires grad"),
            (w, sd[w].bfloat16(), "cannot be read as a NumPy array"),
            (w, "abc", "must hold real numbers, got dtype <U3"),
            ("bn1.num_batches_tracked", torch.tensor(2.5), r"must be an integer in \[0, inf\), got 2.5"),
            ("bn1.num_batches_tracked", torch.tensor(-3), r"must be an integer in \[0, inf\), got -3"),
            ("bn1.num_batches_tracked", torch.tensor([1, 2]), r"must be an integer in \[0, inf\), got \[1, 2\]"),
            ("bn1.num_batches_tracked", None, "must hold real numbers, got dtype object")):
        with pytest.raises(ValueError, match=rf"from_state_dict: state_dict\['{key}'\] " + says):
            from_state_dict({**sd, key: value}, params, state)
    with pytest.raises(ValueError, match=r"to_state_dict: params\['fc1.weight'\] must hold real numbers"):
        to_state_dict({**params, w: "abc"}, state)

    st = {"lam": {k: np.ones(v.shape) for k, v in params.items()}, "momentum": {k: np.zeros(v.shape)
                                                                              for k, v in params.items()},
          "step": 3, "seed": 1}
    flat = {k: torch.tensor(v) for k, v in bayesbinn_to_torch(st).items()}
    back = bayesbinn_from_torch(flat, st["lam"])
    assert (back["step"], back["seed"]) == (3, 1) and isinstance(back["step"], int)
    for over, says in (({"step": 2.7}, r"opt_state\['step'\] must be an integer in \[0, inf\), got 2.7"),
                       ({"step": torch.tensor(-1)}, r"opt_state\['step'\] must be an integer in \[0, inf\), got -1"),
                       ({"step": None}, r"opt_state\['step'\] must hold real numbers, got dtype object"),
                       ({"seed": -5}, r"opt_state\['seed'\] must be an integer in \[0, 9223372036854775807\]"),
                       ({"lamda": flat["lamda"].bfloat16()}, r"opt_state\['lamda'\] cannot be read as a NumPy")):
        with pytest.raises(ValueError, match="bayesbinn_from_torch: " + says):
            bayesbinn_from_torch({**flat, **over}, st["lam"])
    for over, kw, says in (({"step": 2.7}, {}, r"state.step must be an integer in \[0, inf\), got 2.7"),
                           ({"step": None}, {}, "state.step must hold real numbers"),
                           ({}, {"lam0": float("nan")}, r"lam0 must be in \(-inf, inf\), got nan"),
                           ({}, {"lam0": "x"}, "lam0 must be a real number, got 'x'")):
        with pytest.raises(ValueError, match="bayesbinn_to_torch: " + says):
            bayesbinn_to_torch({**st, **over}, **kw)
