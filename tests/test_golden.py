"""Bit-identical behaviour against the golden fixtures (recorded before the issue-11 refactor;
BayesBiNN's re-recorded for the counter-based noise stream of issue 12).

tests/golden/record.py wrote them; every trace written now must match with rtol = atol = 0
(``refbinn check-trace``), and the digests of the larger traces and of the fused-kernel
steps must be the same bits.
"""
import importlib.util
import json
import os

import pytest

from refbinn.cli import main
from refbinn.train.trace import compare_traces, key_differences, load_trace, write_trace

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
_spec = importlib.util.spec_from_file_location("golden_record", os.path.join(GOLDEN, "record.py"))
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)


@pytest.mark.parametrize("model,optimizer,dtype", record.TRACES)
def test_trace_matches_golden_bit_for_bit(tmp_path, capsys, model, optimizer, dtype):
    golden = os.path.join(GOLDEN, record.trace_name(model, optimizer, dtype))
    mine = tmp_path / "mine.npz"
    write_trace(mine, model_name=model, optimizer_name=optimizer, steps=record.TINY_STEPS, dtype=dtype)
    assert main(["check-trace", str(mine), golden, "--rtol", "0", "--atol", "0"]) == 0
    assert capsys.readouterr().out.startswith("match")
    assert key_differences(mine, golden) == ([], [])
    assert compare_traces(mine, golden, rtol=0.0) is None
    (meta, _), (want, _) = load_trace(mine), load_trace(golden)
    meta["hparams"].pop("backend", None)        # Adam, STE and PMF gained the backend switch (issue 11)
    want["hparams"].pop("backend", None)
    assert meta == want


def test_check_trace_sees_a_one_ulp_change(tmp_path, capsys):
    """Negative control: the comparison above can fail."""
    import numpy as np
    golden = os.path.join(GOLDEN, record.trace_name(*record.TRACES[0]))
    meta, arrays = load_trace(golden)
    key = "step0002/lam/fc1.weight"
    arrays[key] = np.nextafter(arrays[key], np.inf)
    from refbinn.train.trace import save_trace
    save_trace(tmp_path / "off.npz", meta, arrays)
    assert main(["check-trace", str(tmp_path / "off.npz"), golden, "--rtol", "0"]) == 1
    assert "step 2, tensor lam/fc1.weight" in capsys.readouterr().out


@pytest.mark.parametrize("model,optimizer,dtype", record.DIGEST_TRACES)
def test_larger_trace_digest_unchanged(tmp_path, model, optimizer, dtype):
    with open(os.path.join(GOLDEN, "traces.json")) as fh:
        want = json.load(fh)[record.trace_name(model, optimizer, dtype)]
    path = tmp_path / "t.npz"
    write_trace(path, model_name=model, optimizer_name=optimizer, steps=record.STEPS, dtype=dtype)
    assert record.trace_digest(path) == want


@pytest.mark.parametrize("name", sorted(record.KERNEL_CASES))
def test_fused_kernel_steps_unchanged(name):
    with open(os.path.join(GOLDEN, "kernels.json")) as fh:
        want = json.load(fh)[name]
    assert record.kernel_digests(name) == want
