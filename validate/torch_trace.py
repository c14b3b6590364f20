"""The torch reference (validate/torch_ref.py) replays a refbinn golden trace and writes its own.

It reads from a refbinn trace only what a port is given: the layers and
hyperparameters (``meta``), the initial state (``step0000/``, with BayesBiNN's noise
seed), and per step the minibatch and the dropout keep masks. The BayesBiNN uniforms u
are made here from the seed, as a port makes them (``torch_ref.philox_uniform``, refbinn's
counter-based stream in torch), not read. Everything else (forward weights, logits, loss,
gradients, the Lemma 1 scale, optimizer and BatchNorm state, evaluation weights) is
computed by torch, free-running from the initial state, and written in the same format
(docs/trace_format.md), so that ``refbinn check-trace`` can compare the two, u included.

``forced=True`` starts every step from the reference trace's state after the
previous step instead (teacher forcing): each step's difference is then that
step's rounding alone, which is how float32 traces are best compared.

Usage: ``python -m validate.torch_trace REFBINN_TRACE.npz OUT.npz [--forced]``.
PMF and VISPA traces are not replayed (torch_ref.py has no step for them): the command
exits 2 with "no torch replay for pmf / vispa traces".
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch

from refbinn.io.outputs import check_output_file
from refbinn.train.trace import load_trace, save_trace, step_key

from . import torch_ref as tr

# refbinn's state field -> torch_ref's state key, per optimizer class
FIELDS = {
    "BayesBiNN": {"lam": "lam", "momentum": "m", "mu": "mu", "step": "step", "seed": "seed"},
    "STEAdam": {"latent": "w", "m": "m", "v": "v", "step": "step"},
    "Adam": {"params": "w", "m": "m", "v": "v", "step": "step"},
    "Bop": {"w": "w", "m": "m"},
}


def net_from_meta(meta):
    """torch_ref.Net with the layers listed in the trace's meta."""
    specs = []
    for d in meta["layers"]:
        kind, name = d["type"], d["name"]
        if kind == "dense":
            specs.append(("linear", name, d["in_features"], d["out_features"], d["bias"]))
        elif kind == "conv2d":
            (pt, pb), (pl, pr) = d["padding"]
            k = d["kernel_size"]
            if not (pt == pb == pl == pr and k[0] == k[1] and d["stride"] == [1, 1]):
                raise NotImplementedError(f"conv '{name}': only square kernels, stride 1 and "
                                          f"symmetric padding are replayed here")
            specs.append(("conv", name, d["in_channels"], d["out_channels"], k[0], pt, d["bias"]))
        elif kind == "batchnorm":
            if d["affine"]:
                raise NotImplementedError(f"batchnorm '{name}': affine BatchNorm is not replayed here")
            specs.append(("bn", name, d["num_features"], d["momentum"], d["eps"]))
        elif kind == "dropout":
            specs.append(("dropout", name, d["p"]))
        elif kind == "maxpool2d":
            if d["stride"] != d["kernel_size"] or d["kernel_size"][0] != d["kernel_size"][1]:
                raise NotImplementedError(f"pool '{name}': only square pools with stride = kernel")
            specs.append(("pool", name, d["kernel_size"][0]))
        elif kind in ("relu", "tanh", "flatten"):
            specs.append((kind, name))
        else:
            raise NotImplementedError(f"layer '{name}' of type {kind!r}")
    return tr.Net(specs)


def _flat(arrays, prefix, names):
    """One flat torch vector from per-parameter entries ``prefix/name``, in parameter order."""
    return torch.from_numpy(np.concatenate([arrays[f"{prefix}/{k}"].reshape(-1) for k in names]))


def _split(vec, meta):
    """Flat torch vector -> dict name -> ndarray of the parameter's shape."""
    out, i, v = {}, 0, vec.detach().numpy()
    for k in meta["param_names"]:
        shape = tuple(meta["param_shapes"][k])
        n = math.prod(shape)
        out[k] = v[i:i + n].reshape(shape).copy()          # (parameter shape)
        i += n
    return out


def _state_at(arrays, t, meta, cls):
    """torch_ref's state dict from the trace's state after step t."""
    names, pre = meta["param_names"], step_key(t)
    st = {}
    for field, key in FIELDS[cls].items():
        if field in ("step", "seed"):
            st[key] = int(arrays[f"{pre}/{field}"])
        elif f"{pre}/{field}/{names[0]}" in arrays:
            st[key] = _flat(arrays, f"{pre}/{field}", names)
    if cls == "BayesBiNN" and "mu" not in st:                  # 'exact' stores no mu
        st["mu"] = torch.tanh(st["lam"])
    return st


def port_uniforms(meta, seed, t, j):
    """The u of pass j of update t, made here from the noise seed (refbinn.noise's stream in
    torch: ``torch_ref.philox_uniform``), not read from the trace. Flat, in parameter order."""
    dt = getattr(torch, meta["dtype"])
    return torch.cat([tr.philox_uniform(seed, t - 1, j, k, math.prod(meta["param_shapes"][k]), dt)
                      for k in meta["param_names"]])


def _bn_at(arrays, t, meta):
    return {k: torch.from_numpy(arrays[f"{step_key(t)}/bn/{k}"].copy()) for k in meta["bn_names"]}


def _loss_grad(net, w, x, y, bn, masks):
    """Loss, d loss / d w (flat), logits and the new BN state at flat weights w (training mode)."""
    w = w.detach().clone().requires_grad_(True)
    out, new_bn = net.forward(net.unflatten(w), x, bn, train=True, masks=masks)
    loss = tr.cross_entropy(out, y)
    (g,) = torch.autograd.grad(loss, w)
    return loss.item(), g, out.detach(), {k: v.detach() for k, v in new_bn.items()}


def _forward_weights(cls, ts, u, hp):
    if cls == "BayesBiNN":
        return tr.bayesbinn_forward_weights(ts, u, tau=hp["tau"])
    if cls == "STEAdam":
        return tr.ste_forward_weights(ts)
    return ts["w"]


def _scale(ts, u, hp):
    """The Lemma 1 factor s of one pass (refbinn's trace entry ``scale``), N included."""
    if hp["numerics"] == "official":
        w_r = tr.relaxed_sample(ts["lam"], u, hp["tau"])
        return tr.concrete_scale_official(w_r, ts["mu"], hp["tau"]) * hp["N"]
    return tr.concrete_scale_exact(ts["lam"], u, hp["tau"], hp["N"])


def _update(cls, ts, grads, us, hp):
    if cls == "BayesBiNN":
        return tr.bayesbinn_step(ts, grads, us, lr=hp["lr"], beta=hp["beta"], tau=hp["tau"],
                                 n_train=hp["N"], lam0=hp["lam0"], reweight=hp["reweight"],
                                 numerics=hp["numerics"])
    g = sum(grads) / len(grads) if len(grads) > 1 else grads[0]
    if cls == "Bop":
        return tr.bop_step(ts, g, gamma=hp["gamma"], threshold=hp["threshold"])
    if cls == "STEAdam":
        g = tr.clip_gradient(g, clip_value=hp["clip_value"], clip_norm=hp["clip_norm"])
        return tr.ste_adam_step(ts, g, lr=hp["lr"], betas=tuple(hp["betas"]), eps=hp["eps"])
    if hp.get("weight_decay", 0.0):
        raise NotImplementedError("Adam with weight decay is not replayed here")
    return tr.adam_step(ts, g, lr=hp["lr"], betas=tuple(hp["betas"]), eps=hp["eps"])


def _eval_weights(cls, ts, hp):
    if cls == "BayesBiNN":
        return tr.bayesbinn_mode(ts, hp["numerics"])
    if cls == "STEAdam":
        return tr.ste_forward_weights(ts)
    return ts["w"]


def _put_state(out, t, ts, meta, cls):
    pre = step_key(t)
    for field in meta["state_fields"]:
        key = FIELDS[cls][field]
        if field in ("step", "seed"):
            out[f"{pre}/{field}"] = np.asarray(ts[key], dtype=np.int64)
        elif field == "mu" and meta["hparams"]["numerics"] != "official":
            continue                                           # 'exact' stores no mu
        else:
            out.update({f"{pre}/{field}/{k}": v for k, v in _split(ts[key], meta).items()})


def replay(ref, *, forced=False):
    """Replay a refbinn trace in torch; return ``(meta, arrays)`` of the torch trace.

    Parameters
    ----------
    ref : str or PathLike, or ``(meta, arrays)`` from ``refbinn.train.trace.load_trace``
    forced : bool
        Start every step from the reference's state after the previous step.

    Raises
    ------
    NotImplementedError
        For a trace this replay does not cover: PMF and VISPA ("no torch replay for pmf /
        vispa traces"), a per-weight prior lam0, affine BatchNorm, Adam with weight decay.
    """
    meta, ref_arrays = ref if isinstance(ref, tuple) else load_trace(ref)
    cls, hp = meta["optimizer_class"], meta["hparams"]
    if cls not in FIELDS:                                      # torch_ref.py has no PMF or VISPA step
        raise NotImplementedError("no torch replay for pmf / vispa traces" if cls in ("PMF", "VISPA")
                                  else f"no torch replay for {cls} traces")
    if isinstance(hp.get("lam0"), (list, dict)):
        raise NotImplementedError("a per-weight prior lam0 is not replayed here")
    net = net_from_meta(meta)
    names = meta["param_names"]
    if list(net.shapes) != names:
        raise ValueError(f"trace: parameter names {names} differ from the layers' {list(net.shapes)}")
    s = meta["samples"]
    out = {k: v for k, v in ref_arrays.items() if k.startswith(step_key(0) + "/")}   # the given start
    ts, tbn = _state_at(ref_arrays, 0, meta, cls), _bn_at(ref_arrays, 0, meta)
    out.update({f"{step_key(0)}/eval_w/{k}": v
                for k, v in _split(_eval_weights(cls, ts, hp), meta).items()})
    for t in range(1, meta["steps"] + 1):
        pre = step_key(t)
        if forced:
            ts, tbn = _state_at(ref_arrays, t - 1, meta, cls), _bn_at(ref_arrays, t - 1, meta)
        x, y = ref_arrays[f"{pre}/x"], ref_arrays[f"{pre}/y"]
        out[f"{pre}/x"], out[f"{pre}/y"] = x, y
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        grads, us = [], []
        for j in range(s):
            sp = f"{pre}/sample{j}"
            u = port_uniforms(meta, ts["seed"], t, j) if f"{sp}/u/{names[0]}" in ref_arrays else None
            masks = {d: torch.from_numpy(ref_arrays[f"{sp}/mask/{d}"])
                     for d in meta["dropout_layers"] if f"{sp}/mask/{d}" in ref_arrays}
            w = _forward_weights(cls, ts, u, hp)
            loss, g, logits, tbn = _loss_grad(net, w, xt, yt, tbn, masks)
            grads.append(g)
            us.append(u)
            if u is not None:
                out.update({f"{sp}/u/{k}": v for k, v in _split(u, meta).items()})
            out.update({f"{sp}/mask/{d}": m.numpy() for d, m in masks.items()})
            out.update({f"{sp}/w/{k}": v for k, v in _split(w, meta).items()})
            out[f"{sp}/out"] = logits.numpy()
            out[f"{sp}/loss"] = np.float64(loss)
            out.update({f"{sp}/grad/{k}": v for k, v in _split(g, meta).items()})
            if cls == "BayesBiNN" and u is not None:
                out.update({f"{sp}/scale/{k}": v for k, v in _split(_scale(ts, u, hp), meta).items()})
        new = _update(cls, ts, grads, us, hp)
        if cls == "BayesBiNN":
            new["seed"] = ts["seed"]
            if hp["beta"] == 0:
                new["m"] = ts["m"]                             # beta = 0: the momentum is not part of the step
        ts = new
        _put_state(out, t, ts, meta, cls)
        out.update({f"{pre}/bn/{k}": v.numpy() for k, v in tbn.items()})
        out.update({f"{pre}/eval_w/{k}": v for k, v in _split(_eval_weights(cls, ts, hp), meta).items()})
    tmeta = dict(meta, writer=f"validate.torch_trace (torch {torch.__version__}"
                              f"{', teacher-forced' if forced else ''})")
    return tmeta, out


def write_torch_trace(ref_path, out_path, *, forced=False):
    """Replay the refbinn trace at ``ref_path`` in torch and save the result at ``out_path``."""
    meta, arrays = replay(ref_path, forced=forced)
    save_trace(out_path, meta, arrays)
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m validate.torch_trace", description=__doc__.splitlines()[0])
    ap.add_argument("reference", help="a trace written by `refbinn trace`")
    ap.add_argument("out", help="where to write the torch trace")
    ap.add_argument("--forced", action="store_true", help="teacher forcing: each step from the reference state")
    a = ap.parse_args(argv)
    try:
        if not a.out:
            raise ValueError("out is empty; give the file to write")
        check_output_file(a.out, "out", [a.reference])          # out = reference overwrote the reference
        meta = write_torch_trace(a.reference, a.out, forced=a.forced)
    # a trace this replay does not cover; a missing or damaged reference (FileFormatError), a bad out
    except (NotImplementedError, ValueError, OSError) as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: {meta['writer']}, {meta['model']}, {meta['optimizer']}, {meta['steps']} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
