"""One table of every optimizer, run through the shared contract tests.

Contract: exact save/load round trip and a resumed run bit-identical to an
uninterrupted one; dtype preserved; inputs never mutated; a NaN gradient raises
FloatingPointError naming the parameter and changes nothing; on a planted binary
teacher every binary optimizer recovers the teacher's function (>= 95% agreement
on held-out inputs) with weights exactly -1 or +1.

Planted problem: y = sign(X @ w*) with w* in {-1,+1}^32 and X ~ N(0, I). A
student with binary weights w agrees with the teacher on a fraction
1 - angle(w, w*)/pi of inputs, so 95% needs every one of the 32 weights right
(one wrong weight gives 88.7%): recovery is exact, not approximate.
"""
import copy
from typing import Callable, NamedTuple

import numpy as np
import pytest

from refbinn.nn import Dense, Sequential
from refbinn.optim.adam import Adam
from refbinn.optim import Optimizer, load_state, save_state
from refbinn.optim.bop import Bop
from refbinn.optim.partition import Partition
from refbinn.optim.pmf import PMF
from refbinn.optim.ste import STEAdam
from refbinn.optim.vispa import VISPA
from refbinn.train.schedules import cosine

D, N_TRAIN, N_TEST, BATCH, STEPS = 32, 1000, 2000, 50, 300


@pytest.fixture(autouse=True, scope="module")
def one_numba_thread():
    """BayesBiNN's float32 kernels are parallel; on 32 weights launching the threads
    costs far more than the work (25-40 ms a step on a loaded 2-core machine against
    0.2 ms on one thread), so this module runs them on one thread. The kernels are
    elementwise, so the results do not depend on the thread count."""
    numba = pytest.importorskip("numba")
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)


def bayesbinn(**kw):
    """Exact numerics at tau = 1. N = 30 < N_TRAIN tempers the posterior: with
    N = N_TRAIN, |lam| grows past 100, the Lemma 1 factor becomes heavy-tailed and
    only about half of the seeds recover the teacher even in 3000 steps."""
    from refbinn.optim.bayesbinn import BayesBiNN
    settings = dict(lr=0.1, beta=0.0, tau=1.0, samples=1, N=30, lam_init=1.0,
                    lam_init_std=0.0, lam0=0.0, reweight=1.0, numerics="exact")
    settings.update(kw)
    return BayesBiNN(**settings)


class Entry(NamedTuple):
    make: Callable      # kinds -> Optimizer
    binary: bool        # does params(state) hold binary weights?
    bias: bool          # student Dense with a (real) bias, needs a Partition


OPTIMIZERS = [
    pytest.param(Entry(lambda kinds: bayesbinn(), True, False), id="bayesbinn"),
    pytest.param(Entry(lambda kinds: bayesbinn(samples=3, beta=0.9, lr=0.05), True, False),
                 id="bayesbinn-S3-momentum"),
    pytest.param(Entry(lambda kinds: STEAdam(lr=1e-2), True, False), id="ste"),
    pytest.param(Entry(lambda kinds: STEAdam(lr=1e-2, clip_norm=0.5), True, False), id="ste-clipnorm"),
    pytest.param(Entry(lambda kinds: Bop(threshold=1e-6, gamma=1e-2), True, False), id="bop"),
    pytest.param(Entry(lambda kinds: PMF(lr=1e-2, rho=1.2, anneal_every=20), True, False), id="pmf"),
    pytest.param(Entry(lambda kinds: Adam(lr=5e-2), False, False), id="adam"),
    pytest.param(Entry(lambda kinds: VISPA(), True, False), id="vispa"),
    pytest.param(Entry(lambda kinds: VISPA(rank=0, project=False, lr=0.01), True, False), id="vispa-K0-ste"),
    pytest.param(Entry(lambda kinds: Partition(VISPA(), Adam(lr=1e-2), kinds), True, True),
                 id="partition-vispa-adam"),
    pytest.param(Entry(lambda kinds: Partition(bayesbinn(samples=2), Adam(lr=1e-2), kinds), True, True),
                 id="partition-bayesbinn-adam"),
    pytest.param(Entry(lambda kinds: Partition(STEAdam(lr=1e-2), Adam(lr=1e-2), kinds), True, True),
                 id="partition-ste-adam"),
]


# -- the planted problem ----------------------------------------------------------------
def make_problem(dtype, bias, seed=0):
    rng = np.random.default_rng(seed)
    w_star = rng.choice([-1.0, 1.0], size=D)
    X = rng.normal(size=(N_TRAIN + N_TEST, D))
    y = np.where(X @ w_star >= 0, 1.0, -1.0)
    model = Sequential(Dense(D, 1, bias=bias, name="fc"))
    params, _ = model.init(rng, dtype)
    X, y = X.astype(dtype), y.astype(dtype)
    return model, params, (X[:N_TRAIN], y[:N_TRAIN]), (X[N_TRAIN:], y[N_TRAIN:])


def logistic_grads(model, params, x, y):
    """Gradient of mean(log(1 + exp(-y z))), z = model(x)."""
    z, cache, _ = model.forward(params, x, {}, train=True)      # (B, 1)
    yz = y[:, None] * z
    dz = -y[:, None] * (0.5 - 0.5 * np.tanh(yz / 2)) / len(y)  # -y * sigmoid(-y z) / B
    return model.backward(params, cache, dz.astype(z.dtype))[1]


def base_lr(opt):
    """The step size ``update(lr=...)`` overrides: Bop's gamma; a pair for Partition."""
    if isinstance(opt, Partition):
        return base_lr(opt.binary_opt), base_lr(opt.real_opt)
    return opt.config()["gamma" if isinstance(opt, Bop) else "lr"]


def train(opt, model, state, data, start, stop, seed=1):
    """Steps start..stop-1 with cosine decay over STEPS (the paper's schedule);
    step t draws its batch and noise from its own Generator, so a run can resume at any t."""
    X, y = data
    lr0, decay = base_lr(opt), cosine(1.0, STEPS)
    for t in range(start, stop):
        lr = tuple(decay(t) * v for v in lr0) if isinstance(lr0, tuple) else decay(t) * lr0
        rng = np.random.default_rng([seed, t])
        idx = rng.choice(len(X), BATCH, replace=False)
        noise = opt.sample(state, rng)
        grads = [logistic_grads(model, opt.forward_params(state, n), X[idx], y[idx]) for n in noise]
        state = opt.update(grads, state, noise, lr=lr)
    return state


def assert_tree_identical(a, b, where="state"):
    """Same structure, same types, arrays equal bit for bit with the same dtype."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_identical(x, y, f"{where}.{getattr(a, '_fields', range(len(a)))[i]}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_tree_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def float_arrays(tree):
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return [a for t in tree for a in float_arrays(t)]
    if isinstance(tree, (np.ndarray, np.generic)) and np.issubdtype(tree.dtype, np.floating):
        return [tree]
    return []


def setup(entry, dtype=np.float32):
    model, params, train_data, test_data = make_problem(dtype, entry.bias)
    opt = entry.make(model.kinds)
    assert isinstance(opt, Optimizer)
    return opt, model, params, train_data, test_data


# -- the contract ------------------------------------------------------------------------
@pytest.mark.parametrize("entry", OPTIMIZERS)
def test_save_load_and_resume_bit_identical(entry, tmp_path):
    opt, model, params, data, _ = setup(entry)
    st0 = opt.init(params, np.random.default_rng(2))
    straight = train(opt, model, st0, data, 0, 20)
    half = train(opt, model, st0, data, 0, 10)
    save_state(tmp_path / "ckpt.npz", opt, half)
    opt2, half2 = load_state(tmp_path / "ckpt.npz")
    assert type(opt2) is type(opt) and repr(opt2) == repr(opt)
    assert_tree_identical(half2, half)
    resumed = train(opt2, model, half2, data, 10, 20)
    assert_tree_identical(resumed, straight)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("entry", OPTIMIZERS)
def test_dtype_preserved(entry, dtype):
    opt, model, params, (X, y), _ = setup(entry, dtype)
    st = opt.init(params, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    noise = opt.sample(st, rng)
    # gradients in float64 must not promote a float32 state
    grads = [{k: v.astype(np.float64) for k, v in
              logistic_grads(model, opt.forward_params(st, n), X[:BATCH], y[:BATCH]).items()}
             for n in noise]
    st = opt.update(grads, st, noise)
    for n in opt.sample(st, rng):
        assert {v.dtype for v in opt.forward_params(st, n).values()} == {np.dtype(dtype)}
    assert {v.dtype for v in opt.params(st).values()} == {np.dtype(dtype)}
    assert {a.dtype for a in float_arrays(st)} == {np.dtype(dtype)}


@pytest.mark.parametrize("entry", OPTIMIZERS)
def test_inputs_not_mutated(entry):
    opt, model, params, (X, y), _ = setup(entry)
    params_copy = copy.deepcopy(params)
    st = opt.init(params, np.random.default_rng(5))
    assert_tree_identical(params, params_copy, "params")
    st_copy = copy.deepcopy(st)
    noise = opt.sample(st, np.random.default_rng(6))
    grads = [logistic_grads(model, opt.forward_params(st, n), X[:BATCH], y[:BATCH]) for n in noise]
    grads_copy, noise_copy = copy.deepcopy(grads), copy.deepcopy(noise)
    new = opt.update(grads, st, noise)
    opt.params(new)
    assert_tree_identical(st, st_copy)
    assert_tree_identical(grads, grads_copy, "grads")
    assert_tree_identical(noise, noise_copy, "noise")


@pytest.mark.parametrize("entry", OPTIMIZERS)
def test_nonfinite_gradient_raises_and_leaves_state(entry):
    opt, model, params, (X, y), _ = setup(entry)
    st = train(opt, model, opt.init(params, np.random.default_rng(7)), (X, y), 0, 3)
    st_copy = copy.deepcopy(st)
    noise = opt.sample(st, np.random.default_rng(8))
    grads = [logistic_grads(model, opt.forward_params(st, n), X[:BATCH], y[:BATCH]) for n in noise]
    for bad in (np.nan, np.inf):
        g = copy.deepcopy(grads)
        g[-1]["fc.weight"][0, 3] = bad
        with pytest.raises(FloatingPointError, match="fc.weight"):
            opt.update(g, st, noise)
        assert_tree_identical(st, st_copy)


@pytest.mark.parametrize("entry", OPTIMIZERS)
def test_recovers_planted_binary_teacher(entry):
    opt, model, params, data, (X_test, y_test) = setup(entry)
    st = train(opt, model, opt.init(params, np.random.default_rng(9)), data, 0, STEPS)
    p = opt.params(st)
    if entry.binary:
        w = p["fc.weight"]
        assert np.all((w == 1) | (w == -1)), "binary weights must be exactly -1 or +1"
    z = model.apply(p, X_test, {})[:, 0]
    agreement = np.mean(np.where(z >= 0, 1.0, -1.0) == y_test)
    assert agreement >= 0.95, f"agreement with the teacher {agreement:.3f} < 0.95"


# -- a state that does not fit its parameters is refused before any kernel runs ----------------
BASELINES = {"Adam": lambda be: Adam(backend=be), "STEAdam": lambda be: STEAdam(backend=be),
             "PMF": lambda be: PMF(backend=be), "Bop": lambda be: Bop()}


def _forbid_kernels(monkeypatch):
    """Replace the Adam/PMF kernels by a failing stand-in: a state array smaller than its
    parameter must be refused before dispatch (the real kernel would write past its end)."""
    import refbinn.optim.adam as adam_module
    import refbinn.optim.pmf as pmf_module

    def reached(*args, **kw):
        raise AssertionError("a Numba kernel was called with state arrays that do not fit the parameter")
    monkeypatch.setattr(adam_module, "adam_update_fused", reached)
    monkeypatch.setattr(pmf_module, "pmf_step_fused", reached)


def _moment_fields(state):
    return [f for f in ("m", "v") if f in state._fields]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", list(BASELINES))
def test_state_arrays_that_do_not_fit_the_parameter_raise_valueerror(name, backend, monkeypatch):
    """Adam/STE/PMF/Bop: a moment array smaller, larger, of another dtype or missing raises a
    ValueError naming the optimizer, the parameter, the field and both shapes (the Numba path
    used to write past the end of a smaller array: heap corruption)."""
    from refbinn.optim._backend import FUSED_MIN_SIZE
    _forbid_kernels(monkeypatch)
    n = FUSED_MIN_SIZE + 7232                                  # 40000: the kernels' size
    opt = BASELINES[name](backend)
    st = opt.init({"w": np.zeros(n, np.float32)})
    grad = {"w": np.zeros(n, np.float32)}
    for field in _moment_fields(st):
        good = getattr(st, field)["w"]
        lead = good.shape[:-1]                                 # PMF: (2,)
        for bad, shape in ((np.zeros(lead + (1 << 15,), np.float32), lead + (1 << 15,)),
                           (np.zeros(lead + (n + 1,), np.float32), lead + (n + 1,))):
            wrong = st._replace(**{field: {"w": bad}})
            with pytest.raises(ValueError, match=rf"{name}: state\.{field}\['w'\] has shape "
                                                 rf"{re_shape(shape)}.*shape {re_shape(good.shape)}"):
                opt.update(grad, wrong)
        wrong = st._replace(**{field: {"w": good.astype(np.float64)}})
        with pytest.raises(ValueError, match=rf"{name}: state\.{field}\['w'\].*dtype float64.*float32"):
            opt.update(grad, wrong)
        with pytest.raises(ValueError, match=rf"{name}: state\.{field} has no entry for parameter 'w'"):
            opt.update(grad, st._replace(**{field: {}}))


def re_shape(shape):
    import re
    return re.escape(str(tuple(shape)))


def test_fused_adam_and_pmf_refuse_arrays_of_different_shapes():
    """The kernels' own guard (their callers check first): m, v larger than g would leave
    uninitialised values in the returned moments."""
    from refbinn.optim._adam_kernels import adam_update_fused
    from refbinn.optim._pmf_kernels import pmf_step_fused
    g = np.ones(10, np.float32)
    big = np.zeros(20, np.float32)
    with pytest.raises(ValueError, match=r"adam_update_fused: .*\(10,\), \(20,\)"):
        adam_update_fused(g, big, big, 1, 1e-3, 0.9, 0.999, 1e-8)
    u = np.zeros((2, 10), np.float32)
    with pytest.raises(ValueError, match=r"pmf_step_fused: .*\(2, 20\)"):
        pmf_step_fused(g, g, u, np.zeros((2, 20), np.float32), u, 1, 1e-3, 1.0, 0.0, 0.9, 0.999, 1e-8)


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
@pytest.mark.parametrize("make", [lambda: Adam(), lambda: STEAdam(), lambda: PMF(), lambda: Bop(),
                                  lambda: bayesbinn(), lambda: VISPA()],
                         ids=["adam", "ste", "pmf", "bop", "bayesbinn", "vispa"])
def test_only_float32_and_float64_parameters_are_accepted(make, dtype):
    """float16/longdouble used to be accepted by Adam/STE/PMF/Bop and then fail in update with
    a misleading FloatingPointError; every optimizer refuses them in init, naming the dtype."""
    name = np.dtype(dtype).name
    with pytest.raises(ValueError, match=rf"{name}.*float32 or float64|float32 or float64.*{name}"):
        make().init({"w": np.array([0.5, -0.5], dtype)}, np.random.default_rng(0))


@pytest.mark.parametrize("make", [Adam, STEAdam, PMF], ids=["adam", "ste", "pmf"])
def test_eps_must_be_positive(make):
    """eps = 0 gives 0/0 = NaN at step 1 wherever the gradient is 0."""
    with pytest.raises(ValueError, match=r"eps must be in \(0, inf\), got 0"):
        make(eps=0.0)
    opt = make(eps=1e-30)
    st = opt.init({"w": np.array([0.5, -0.5], np.float32)})
    opt.update({"w": np.array([0.0, 1.0], np.float32)}, st)     # finite
