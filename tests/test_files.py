"""Files name classes only by registry keys: loading never imports or calls what a file names."""
import builtins
import os
import subprocess
import sys

import numpy as np
import pytest

from refbinn.io import atomic_savez, tree_from_arrays, tree_to_arrays, write_json
from refbinn.optim import Adam, BayesBiNN, load_state, save_state
from refbinn.optim.registry import FILE_NAMES
from refbinn.train import load_checkpoint, save_checkpoint

HOSTILE = ["subprocess:run", "os:system", "builtins:eval", "refbinn_never_imported_module:thing"]


@pytest.fixture
def tripwires(monkeypatch):
    """Record any call of subprocess.run, os.system or eval while a file is loaded."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(("subprocess.run", a)))
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(("os.system", a)))
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: calls.append(("eval", a)))
    return calls


def _checkpoint(tmp_path):
    opt = BayesBiNN(N=10.0, tau=1.0, samples=1, backend="numpy")
    state = opt.init({"w": np.zeros(3)}, np.random.default_rng(0))
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, opt=opt, opt_state=state, bn_state={}, rngs={"data": np.random.default_rng(1)},
                    epoch=1, history={"epochs": []}, config={})
    with np.load(path) as z:
        return path, {k: z[k] for k in z.files}


def test_checkpoint_names_classes_by_registry_key(tmp_path):
    path, data = _checkpoint(tmp_path)
    names = {str(v) for k, v in data.items() if k.endswith(("#object", "#namedtuple"))}
    assert names == {"bayesbinn", "bayesbinn_state"}
    ck = load_checkpoint(path)
    assert isinstance(ck["opt"], BayesBiNN) and ck["opt_state"].step == 0


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("entry", ["optimizer#object", "state#namedtuple"])
def test_checkpoint_naming_a_callable_is_refused(tmp_path, tripwires, hostile, entry):
    path, data = _checkpoint(tmp_path)
    data[entry] = np.array(hostile)
    bad = tmp_path / "hostile.npz"
    atomic_savez(bad, data)
    with pytest.raises(ValueError) as e:
        load_checkpoint(bad)
    assert str(bad) in str(e.value) and repr(hostile) in str(e.value)
    assert tripwires == []
    assert "refbinn_never_imported_module" not in sys.modules


@pytest.mark.parametrize("hostile", HOSTILE)
def test_state_file_naming_a_callable_is_refused(tmp_path, tripwires, hostile):
    path = tmp_path / "state.npz"
    opt = Adam(lr=0.1)
    save_state(path, opt, opt.init({"w": np.ones(2)}))
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["optimizer#optimizer"] = np.array(hostile)             # the pre-issue-11 tag, too
    del data["optimizer#object"]
    atomic_savez(path, data)
    with pytest.raises(ValueError, match="not one of"):
        load_state(path)
    assert tripwires == []


def test_old_spelling_of_a_class_still_loads(tmp_path):
    """Files written before issue 11 spelled classes 'module:QualName' (a fixed table maps them)."""
    opt = Adam(lr=0.1)
    arrays = tree_to_arrays(opt, "optimizer", FILE_NAMES)
    arrays["optimizer#optimizer"] = np.array("refbinn.optim.adam:Adam")
    del arrays["optimizer#object"]
    assert tree_from_arrays(arrays, "optimizer", FILE_NAMES).config() == opt.config()


def test_generator_state_names_only_known_bit_generators(tmp_path, tripwires):
    path, data = _checkpoint(tmp_path)
    data["rng/data"] = np.array('{"bit_generator": "os.system", "state": {}}')
    atomic_savez(path, data)
    with pytest.raises(ValueError, match="bit generator"):
        load_checkpoint(path)
    assert tripwires == []


def test_write_json_is_atomic_and_lists_arrays(tmp_path):
    path = tmp_path / "sub" / "x.json"
    write_json(str(path), {"a": np.arange(3), "b": np.float32(0.5)})
    assert path.read_text().replace(" ", "").replace("\n", "") == '{"a":[0,1,2],"b":0.5}'
    assert os.listdir(path.parent) == ["x.json"]


def test_packed_model_naming_an_unknown_op_is_refused(tmp_path, tripwires):
    import json

    from refbinn.packed.model import FORMAT, FORMAT_VERSION, load_packed
    path = tmp_path / "packed.npz"
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "ops": [{"op": "os:system", "name": "x"}]}
    atomic_savez(path, {"meta": np.array(json.dumps(meta))})
    with pytest.raises(ValueError, match="op 0 names 'os:system'") as e:
        load_packed(path)
    assert str(path) in str(e.value) and tripwires == []


def test_a_state_saved_without_a_later_field_says_why_it_cannot_load(tmp_path):
    """A BayesBiNN state from before the noise seed (no 'state/seed' entry) is refused with
    a message naming the missing field, the fields the file has, and what to do."""
    opt = BayesBiNN(N=100.0, tau=1.0)
    state = opt.init({"w": np.zeros((3, 2), np.float32)}, np.random.default_rng(0))
    path = tmp_path / "old.npz"
    save_state(path, opt, state)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("state/seed")}
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"no entry 'state/seed'.*without the field 'seed'.*"
                                         r"lam, momentum, mu, step.*start the run again"):
        load_state(path)
    save_state(path, opt, state)                                  # the control: the whole file loads
    assert load_state(path)[1].seed == state.seed
