"""The ``refbinn export`` and ``refbinn predict`` commands (wired up in ``refbinn/cli.py``).

What they compute::

    export:   export(model, opt.params(state), bn_state).save(OUT)   (the mode weights w*)
              ratio = float32 bytes of params and BN state / packed file bytes
    predict:  accuracy = mean(predict(x_test) == y_test),  images/s = N_test / seconds
              --against CHECKPOINT: the float model's eval-mode logits F beside the packed P:
              argmax agreement, max |P - F| / max |F| (one scale for all logits); refused
              before any work unless exporting CHECKPOINT gives this file's ops and arrays
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..io import write_json
from .export import export
from .model import load_packed


def _mode_model(checkpoint):
    """(model spec, model, mode weights, BN state) of a training checkpoint, its meta and state checked."""
    from ..experiments import DATASETS
    from ..train import load_checkpoint
    from ..train.checkpoint_check import check_meta, check_state, model_of
    ck = load_checkpoint(checkpoint)
    check_meta(checkpoint, ck["config"], tuple(DATASETS))
    model = model_of(checkpoint, ck["config"])
    check_state(checkpoint, ck, model)
    return ck["config"]["meta"]["model"], model, ck["opt"].params(ck["opt_state"]), ck["bn_state"]


def cli_export(args):
    """``refbinn export CHECKPOINT OUT``: pack the mode weights of a training checkpoint.

    Packs ``export(model, opt.params(state), bn_state)`` and prints the compression
    ratio, float32 bytes of the parameters and BN state / bytes of the packed file.

    Parameters
    ----------
    args : argparse.Namespace
        ``checkpoint`` (a training checkpoint, whose recorded model and state are
        checked first) and ``out`` (the packed .npz to write, atomically).

    Returns
    -------
    int
        0, the exit status (bad input raises ValueError for the command line's boundary).
    """
    spec, model, params, bn_state = _mode_model(args.checkpoint)
    packed = export(model, params, bn_state)
    packed.save(args.out)
    size, f32 = os.path.getsize(args.out), packed.meta["float32_bytes"]
    print(f"refbinn export: {args.checkpoint} ({spec[0]}) -> {args.out}")
    print(f"float32 {f32} bytes, packed {size} bytes, ratio {f32 / size:.1f}x")
    return 0


def cli_predict(args):
    """``refbinn predict PACKED --dataset mnist``: test accuracy and images per second.

    accuracy = mean(predict(x_test) == y_test), images/s = N_test / seconds of the timed
    ``predict`` (after one warm-up batch); both go to ``OUT/predict_<PACKED name>.json``.

    Parameters
    ----------
    args : argparse.Namespace
        ``packed`` (a file from ``refbinn export``), ``dataset`` ('mnist' or
        'fashion-mnist'), ``data_root`` (None: the default data folder), ``batch_size``
        (rows per call of the kernels, default 1000), ``out`` (the results folder,
        default ``results``) and ``against`` (None, or the training checkpoint the file was
        exported from: its float model's eval-mode logits are compared, ``float_*`` keys).

    Returns
    -------
    int
        0, the exit status.
    """
    from .. import data as D
    from ..io.outputs import check_output_file
    if args.dataset not in ("mnist", "fashion-mnist"):
        raise ValueError(f"predict: dataset must be 'mnist' or 'fashion-mnist', got {args.dataset!r}")
    out_dir = getattr(args, "out", None) or "results"
    path = os.path.join(out_dir, f"predict_{os.path.splitext(os.path.basename(args.packed))[0]}.json")
    against = getattr(args, "against", None)
    check_output_file(path, "the results file", [args.packed] + ([against] if against else []))
    packed = load_packed(args.packed)
    float_model = _exported_from(packed, args.packed, against) if against else None   # before any work
    ds = D.load_mnist(args.data_root, kind=args.dataset)
    x = D.normalize(ds.x_test, args.dataset)                               # (N, 28, 28)
    first = next((op["op"] for op in packed.ops if op["op"].startswith(("dense", "conv"))), "dense")
    x = x.reshape(len(x), -1) if first.startswith("dense") else x[:, None]   # (N, 784) or (N, 1, 28, 28)
    batch = int(args.batch_size or 1000)
    packed.predict_logits(x[:batch], batch)                                # warm-up: load compiled kernels
    t0 = time.perf_counter()
    pred = packed.predict(x, batch)
    seconds = time.perf_counter() - t0
    res = {"packed": args.packed, "dataset": args.dataset, "n_images": int(len(x)),
           "accuracy": float(np.mean(pred == ds.y_test)), "seconds": seconds,
           "images_per_s": len(x) / seconds, "batch_size": batch,
           "file_bytes": os.path.getsize(args.packed), "float32_bytes": packed.meta.get("float32_bytes")}
    if against:
        res.update(_against_float(packed, against, float_model, x, ds.y_test, batch))
    write_json(path, res)
    print(f"refbinn predict: {args.packed} on {args.dataset} test ({len(x)} images): accuracy "
          f"{res['accuracy']:.4f}, {res['images_per_s']:.0f} images/s (batch {batch})")
    if against:
        print(f"against the float model of {against}: argmax agrees on {res['float_argmax_agree']} of "
              f"{len(x)}, max |packed - float| / max |float| = {res['float_logit_diff_over_max']:.2e} "
              f"(float accuracy {res['float_accuracy']:.4f})")
    print(f"wrote {path}")
    return 0


def _exported_from(packed, packed_path, checkpoint):
    """``_mode_model(checkpoint)`` if exporting it gives ``packed`` (the same ops and arrays),
    else ValueError: a checkpoint of another network, or of the same one with other weights."""
    spec, model, params, bn_state = _mode_model(checkpoint)
    try:
        mine = export(model, params, bn_state)
    except ValueError as e:
        raise ValueError(f"predict --against: {checkpoint} cannot be packed ({e})") from None
    same = mine.ops == packed.ops and len(mine.arrays) == len(packed.arrays) and all(
        a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        for a, b in zip(mine.arrays, packed.arrays))
    if not same:
        raise ValueError(f"predict --against: {packed_path} was not exported from {checkpoint} "
                         f"(exporting it gives other ops or arrays)")
    return spec, model, params, bn_state


def _against_float(packed, checkpoint, float_model, x, y, batch):
    """The packed logits P beside the float model's eval-mode logits F on the same x."""
    _, model, params, bn_state = float_model
    P = packed.predict_logits(x, batch)
    F = np.concatenate([np.asarray(model.apply(params, x[i:i + batch], bn_state)) for i in range(0, len(x), batch)])
    diff = np.abs(P.astype(np.float64) - F)
    return {"against": str(checkpoint), "float_accuracy": float(np.mean(F.argmax(1) == y)),
            "float_argmax_agree": int(np.sum(P.argmax(1) == F.argmax(1))),
            "float_logit_max_abs_diff": float(diff.max()), "float_logit_max_abs": float(np.abs(F).max()),
            "float_logit_diff_over_max": float(diff.max() / np.abs(F).max()),
            "float_logits_bit_identical": bool(np.array_equal(P, F))}
