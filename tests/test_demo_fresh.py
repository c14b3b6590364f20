"""`refbinn demo` on a fresh machine: empty HOME, no REFBINN_DATA, no data folder anywhere."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_whole_without_any_data_folder(tmp_path):
    pytest.importorskip("matplotlib")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REFBINN_DATA", "XDG_CACHE_HOME", "MPLCONFIGDIR")}
    # this tree's refbinn, whatever is installed; HOME empty, so ~/.cache/refbinn does not exist
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "refbinn", "demo", "--quick"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" not in proc.stdout
    results = work / "results"                                  # the default --out, under the cwd
    d = json.loads((results / "demo.json").read_text())
    assert d["snelson"] is not None and len(d["snelson"]["rows"]) == 2
    for png in ("two_moons.png", "snelson.png"):
        assert (results / png).stat().st_size > 10_000
    assert not (home / ".cache" / "refbinn").exists()          # nothing was downloaded
