"""The issue-15 experiment files: sweeps/issue15_*.toml name only settings `refbinn train` /
``experiments.build`` know, and scripts/run_continual_ratio.py runs in its smoke setting."""
import importlib.util
import itertools
import json
import tomllib
from pathlib import Path

import pytest

from refbinn.experiments import build

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("issue15_*.toml"))
# the overrides experiments.build uses (plus the sweep file's dataset/optimizer/preset/model)
KNOWN = {"dataset", "optimizer", "preset", "epochs", "batch_size", "max_train", "eval_samples", "lr", "tau",
         "tau_end", "samples", "numerics", "lam_init", "beta", "reweight", "recalibrate_bn", "eval_mean_every",
         "diagnostics_every", "model"}


def test_there_are_sweep_files():
    assert len(SWEEPS) >= 6


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_file_settings_build(path, data_root):
    doc = tomllib.loads(path.read_text())
    assert doc["name"] == path.stem and doc["seeds"]
    base, grid = doc["base"], doc.get("grid", {})
    assert set(base) | set(grid) <= KNOWN, set(base) | set(grid) - KNOWN
    first = {k: v[0] for k, v in grid.items()}
    points = [first] + [{**first, k: v} for k, vs in grid.items() for v in vs[1:]]   # every value once
    for point in points:
        s = {**base, **point}
        over = {k: v for k, v in s.items() if k not in ("dataset", "optimizer", "preset", "model")}
        over["model_kwargs"] = {k: tuple(v) for k, v in s.get("model", {}).items()}
        over["max_train"] = 200
        setup = build(s["dataset"], s["optimizer"], preset=s["preset"], overrides=over, root=data_root)
        assert setup.opt.numerics == s["numerics"] and setup.cfg.recalibrate_bn == s["recalibrate_bn"]
        assert (setup.tau_schedule is None) == ("tau_end" not in s)
    try:                                   # once refbinn sweep (issue 14) is in the tree, it must accept them
        from refbinn.sweep.spec import parse_spec
    except ImportError:
        return
    assert len(parse_spec(doc, name=path.stem, path=str(path)).runs) == len(doc["seeds"]) * len(
        list(itertools.product(*grid.values())))


def _load_script(name):
    spec = importlib.util.spec_from_file_location(f"refbinn_script_{name}", REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_continual_ratio_script_quick(tmp_path, data_root):
    mod = _load_script("run_continual_ratio")
    res = mod.main(["--quick", "--out", str(tmp_path), "--data-root", str(data_root), "--quiet",
                    "--configs", "official_rw1", "official_rw10"])
    saved = json.loads((tmp_path / "continual_ratio.json").read_text())
    assert set(saved["summary"]) == {"official_rw1", "official_rw10"}
    d1 = saved["runs"]["official_rw1"]["0"]["diagnostics"]
    d10 = saved["runs"]["official_rw10"]["0"]["diagnostics"]
    assert len(d1) == 2 and d1[0]["data_over_prior"] > 0
    # reweight multiplies the prior term: at task 1 (same start, same data) the prior RMS is larger
    assert d10[0]["prior_rms"] > d1[0]["prior_rms"]
    assert res["summary"]["official_rw1"]["seeds"] == 1
    assert mod.CONFIGS["official_rw1"] == dict(numerics="official", tau=1e-2, lr=1e-3, lam_init=10.0, reweight=1.0)


def test_exact_probes_script_quick(tmp_path, data_root):
    mod = _load_script("run_exact_probes")
    doc = mod.main(["--quick", "--out", str(tmp_path), "--data-root", str(data_root)])
    (row,) = doc["rows"]
    assert row["name"] == "base" and row["curve"] == [row["mode"]] and row["mode_trainbn"] is not None
    assert row["active"] is not None and row["dp"] > 0
    names = [n for n, _ in mod.PROBES]
    assert len(names) == len(set(names))
    committed = json.loads((REPO / "results" / "issue15_probes.json").read_text())
    assert [r["name"] for r in committed["rows"]] == names          # the JSON holds every probe, in order
    assert all(r["over"] == dict(over) for r, (_, over) in zip(committed["rows"], mod.PROBES))
    with pytest.raises(ValueError, match="unknown probes"):
        mod.main(["--only", "nope", "--out", str(tmp_path)])
