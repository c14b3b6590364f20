"""The PyTorch peer of scripts/bench_train.py computes refbinn's BayesBiNN step.

From the same lam and the same noise u, one (then a second) step of the eager torch
peer (scripts/_torch_peer.py) and of refbinn give the same lam within float32
rounding, on a tiny MLP with BatchNorm, both numerics, with and without momentum; so
the benchmark compares two implementations of the same computation. The compiled
variant's functions, run eagerly, agree with the eager peer's update too.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from refbinn.models import mlp_continual, mlp_mnist  # noqa: E402
from refbinn.nn import softmax_cross_entropy  # noqa: E402
from refbinn.optim import BayesBiNN  # noqa: E402
from refbinn.optim._bayesbinn_math import open_uniform  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_peer():
    spec = importlib.util.spec_from_file_location("refbinn_script__torch_peer", SCRIPTS / "_torch_peer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def flat(d, names):
    return np.concatenate([d[k].reshape(-1) for k in names])


MODELS = {"continual": (lambda: mlp_continual(in_features=12, hidden=(16, 8), classes=5), None, 0.1, 1e-5),
          "mnist": (lambda: mlp_mnist(in_features=12, hidden=(16, 8), classes=5, dropout=0.0), 0.0, 0.15, 1e-4)}


@pytest.mark.parametrize("beta", [0.0, 0.5])
@pytest.mark.parametrize("numerics", ["official", "exact"])
@pytest.mark.parametrize("model_name", list(MODELS))
def test_one_step_of_the_peer_is_refbinns(model_name, numerics, beta):
    peer = load_peer()
    make, dropout, bn_m, bn_eps = MODELS[model_name]
    model = make()
    rng = np.random.default_rng(5)
    params, bn = model.init(rng, np.float32)
    names = list(params)
    n_train, tau, lr = 200.0, 0.7, 0.05
    opt = BayesBiNN(N=n_train, tau=tau, lr=lr, beta=beta, samples=1, lam_init=1.0, lam_init_std=0.5,
                    numerics=numerics, dtype="float32", backend="numpy")
    state = opt.init(params, rng)
    sizes = [12, 16, 8, 5]
    th = peer.TorchPeer(sizes, torch.from_numpy(flat(state.lam, names)), dropout=dropout, bn_momentum=bn_m,
                        bn_eps=bn_eps, n_train=n_train, tau=tau, lr=lr, beta=beta, numerics=numerics)
    for step in range(2):                                   # the second step reads the (lagged) mu
        x = rng.standard_normal((20, 12)).astype(np.float32)
        y = rng.integers(0, 5, 20)
        noise = [{k: open_uniform(rng, v.shape, np.float32) for k, v in state.lam.items()}]
        p = opt.forward_params(state, noise[0])
        out, cache, bn = model.forward(p, x, bn, train=True, rng=np.random.default_rng(0))
        loss, dout = softmax_cross_entropy(out, y)
        _, g = model.backward(p, cache, dout)
        state = opt.update([g], state, noise)
        t_loss = th.step(torch.from_numpy(x), torch.from_numpy(y), u=torch.from_numpy(flat(noise[0], names)))
        np.testing.assert_allclose(float(t_loss), loss, rtol=1e-5)
        lam_ref = flat(state.lam, names)
        assert th.lam.dtype == torch.float32
        np.testing.assert_allclose(th.lam.numpy(), lam_ref, rtol=2e-5, atol=2e-5 * np.abs(lam_ref).max(),
                                   err_msg=f"step {step + 1}")
        np.testing.assert_array_equal(th.mode().numpy()[np.abs(lam_ref) > 1e-3],
                                      flat(opt.params(state), names)[np.abs(lam_ref) > 1e-3])
        for k, (rm, rv) in zip([n for n in bn if n.endswith("running_mean")], th.bn):
            np.testing.assert_allclose(rm.numpy(), bn[k], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(rv.numpy(), bn[k.replace("mean", "var")], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("numerics", ["official", "exact"])
def test_the_compiled_variants_update_is_the_eager_one(numerics):
    """The functions the compiled variant hands to torch.compile, run eagerly, do the eager update."""
    peer = load_peer()
    g = torch.Generator().manual_seed(0)
    lam = torch.randn(300, generator=g) * 2
    u = torch.rand(300, generator=g)
    grads = [torch.randn(10, 20, generator=g), torch.randn(100, generator=g)]
    kw = dict(lr=0.05, tau=0.7, n_train=50.0)
    z = (lam + 0.5 * torch.log(u / (1 - u))) / kw["tau"]
    w = torch.tanh(z)
    mu = torch.tanh(lam * 0.9)
    gflat = torch.cat([x.reshape(-1) for x in grads])
    lam_a, mu_a, lam_b, mu_b = lam.clone(), mu.clone(), lam.clone(), mu.clone()
    if numerics == "official":
        peer.official_update(lam_a, mu_a, None, w.clone(), [x.clone() for x in grads], beta=0.0, t=1, **kw)
        peer._official_compiled(lam_b, mu_b, w.clone(), gflat, **kw)
        torch.testing.assert_close(mu_a, mu_b, rtol=0, atol=0)
    else:
        peer.exact_update(lam_a, None, z.clone(), w.clone(), [x.clone() for x in grads], beta=0.0, t=1, **kw)
        peer._exact_compiled(lam_b, z.clone(), gflat, **kw)
    torch.testing.assert_close(lam_a, lam_b, rtol=1e-4, atol=1e-5 * float(lam_a.abs().max()))  # float32 rounding
