"""refbinn.experiments.demo on its own (the command end to end is in test_cli and test_demo_fresh):
the numbers in demo.json are the trainings' own, and what is written without matplotlib or
without the Snelson data."""
import json
import sys

import pytest

from refbinn.data import DatasetNotFound
from refbinn.experiments import demo


class BrokenMatplotlib:
    """A meta path finder for which importing matplotlib fails (as a broken install does)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("matplotlib is broken")


def test_demo_without_matplotlib_writes_the_trainings_numbers_and_no_png(tmp_path, monkeypatch, capsys):
    for mod in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [BrokenMatplotlib(), *sys.meta_path])
    fit, histories = demo.fit, []

    def logged_fit(*args, **kwargs):
        res = fit(*args, **kwargs)
        histories.append(res["history"]["epochs"])
        return res

    monkeypatch.setattr(demo, "fit", logged_fit)
    overrides = demo._overrides
    assert overrides(3, True)["epochs"] == 300 and "epochs" not in overrides(3, False)   # quick: 300, else the preset's
    monkeypatch.setattr(demo, "_overrides", lambda seed, quick: {**overrides(seed, quick), "epochs": 20})
    out = tmp_path / "new" / "folder"                                # created by the demo
    assert demo.run_demo(out=str(out), quick=True, seed=3) == 0
    d = json.loads((out / "demo.json").read_text())
    assert (d["quick"], d["seed"]) == (True, 3)
    assert [len(h) for h in histories] == [20] * 4
    bayes, ste = histories[0][-1], histories[1][-1]
    got = {r["method"]: (r["test_acc"], r["test_nll"]) for r in d["two_moons"]["rows"]}
    assert got == {"BayesBiNN (mode)": (bayes["test_acc_mode"], bayes["test_nll_mode"]),
                   "BayesBiNN (mean)": (bayes["test_acc_mean"], bayes["test_nll_mean"]),
                   "STE-Adam": (ste["test_acc_mode"], ste["test_nll_mode"])}
    assert [r["method"] for r in d["snelson"]["rows"]] == ["BayesBiNN (mode)", "STE-Adam"]
    assert d["two_moons"]["png"] is None and d["snelson"]["png"] is None
    assert sorted(p.name for p in out.iterdir()) == ["demo.json"]
    assert "matplotlib is not installed" in capsys.readouterr().out


def test_demo_without_the_snelson_data_skips_it(tmp_path, monkeypatch, capsys):
    def no_snelson(*args, **kwargs):
        raise DatasetNotFound("snelson", [tmp_path], "get it")

    monkeypatch.setattr(demo, "two_moons", lambda out, quick, seed: ([("STE-Adam", 1.0, 0.0, 0.1)], None))
    monkeypatch.setattr(demo, "snelson", no_snelson)
    assert demo.run_demo(out=str(tmp_path), quick=True) == 0
    assert "Snelson skipped: data set 'snelson' not found" in capsys.readouterr().out
    assert json.loads((tmp_path / "demo.json").read_text())["snelson"] is None
