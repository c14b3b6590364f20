"""Files name classes only by registry keys: loading never imports or calls what a file names."""
import builtins
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from refbinn.errors import FileFormatError
from refbinn.io import atomic_savez, atomic_write, remove_partials, tree_from_arrays, tree_to_arrays, write_json
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


def test_atomic_write_syncs_the_data_before_it_replaces_the_target(tmp_path, monkeypatch):
    # the rename must not reach the disk before the data: a crash would leave an empty file
    events, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.fstat(fd).st_size)) or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", os.path.basename(b))) or replace(a, b))
    atomic_write(tmp_path / "x.txt", "hello")
    assert events == [("fsync", 5), ("replace", "x.txt")]


def test_atomic_files_get_the_mode_of_a_new_file(tmp_path):
    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {})
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o640        # not mkstemp's 0600


def test_atomic_write_refuses_other_data_and_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="data must be str or bytes, got int"):
        atomic_write(tmp_path / "x", 3)
    assert os.listdir(tmp_path) == []


def test_atomic_write_onto_a_folder_names_the_folder_and_leaves_nothing(tmp_path):
    (tmp_path / "x.json").mkdir()
    with pytest.raises(IsADirectoryError) as e:       # not the temporary file's name
        write_json(tmp_path / "x.json", {"a": 1})
    assert e.value.filename == str(tmp_path / "x.json")
    assert os.listdir(tmp_path) == ["x.json"] and os.listdir(tmp_path / "x.json") == []


def test_remove_partials_removes_only_that_files_leftovers(tmp_path):
    for n in (".ck.npz.abc.partial", ".ck.npz.x1.partial", ".other.npz.abc.partial", "ck.npz", ".ck.npz.abc"):
        (tmp_path / n).write_bytes(b"")
    removed = remove_partials(tmp_path / "ck.npz")
    assert sorted(os.path.basename(p) for p in removed) == [".ck.npz.abc.partial", ".ck.npz.x1.partial"]
    assert sorted(os.listdir(tmp_path)) == [".ck.npz.abc", ".other.npz.abc.partial", "ck.npz"]


def test_tree_round_trip_keeps_tuples_lists_and_key_order():
    tree = {"b": (1, 2.5), "a": [True, None, "s"], "c": {"z": np.arange(2, dtype=np.int8)}}
    back = tree_from_arrays(tree_to_arrays(tree, "t", {}), "t", {})
    assert list(back) == ["b", "a", "c"] and back["b"] == (1, 2.5) and type(back["b"]) is tuple
    assert back["a"] == [True, None, "s"] and type(back["a"][0]) is bool
    assert back["c"]["z"].dtype == np.int8 and back["c"]["z"].tolist() == [0, 1]


def test_check_output_file_refuses_a_folder_an_input_and_a_checkpoint(tmp_path):
    from refbinn.io.outputs import check_output_file
    ck, src, out = tmp_path / "ck.npz", tmp_path / "in.json", tmp_path / "out.json"
    atomic_savez(ck, {"epoch": np.array(1), "config": np.array("{}")})        # the entries, and no more
    src.write_text("{}")
    with pytest.raises(ValueError, match=r"^--out .*ck.npz is a training checkpoint"):
        check_output_file(ck, "--out")
    with pytest.raises(ValueError, match=r"^OUT .* is the input"):
        check_output_file(tmp_path / "." / "in.json", "OUT", [str(src)])          # another spelling of it
    with pytest.raises(ValueError, match="is a folder"):
        check_output_file(tmp_path, "--out")
    check_output_file(out, "--out", [str(src), str(ck)])                        # a new file may be written
    atomic_savez(out, {"epoch": np.array(1)})
    check_output_file(out, "--out")                                             # not a checkpoint: no config


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


# -- refbinn.train.checkpoint: what is saved comes back exactly, written atomically, never unpickled --
def _full_checkpoint(path, epoch=3):
    """Save a checkpoint with every entry non-trivial; return what was saved."""
    opt = BayesBiNN(N=50.0, tau=0.3, beta=0.9, samples=2, numerics="official", backend="numpy")
    state = opt.init({"a.weight": np.zeros((3, 2), np.float32), "b.weight": np.zeros(4, np.float32)},
                     np.random.default_rng(0))
    state = state._replace(step=7, momentum={k: v + 0.25 for k, v in state.momentum.items()})
    bn = {"bn1.running_mean": np.array([0.5, -1.5], np.float32), "bn1.running_var": np.array([2.0, 3.0], np.float32)}
    rngs = {k: np.random.default_rng(i + 10) for i, k in enumerate(("data", "noise", "drop"))}
    for i, g in enumerate(rngs.values()):
        g.random(i + 1)                                          # advanced: not a fresh stream's state
    history = {"config": {"epochs": 5}, "epochs": [{"epoch": e + 1, "loss": 0.5 / (e + 1)} for e in range(epoch)],
               "summary": {"best_val_epoch": 2}}
    config = {"epochs": 5, "seed": 4, "meta": {"dataset": "mnist", "model": ["mlp_mnist", {"hidden": [16]}]}}
    save_checkpoint(path, opt=opt, opt_state=state, bn_state=bn, rngs=rngs, epoch=epoch, history=history,
                    config=config)
    return dict(opt=opt, opt_state=state, bn_state=bn, rngs=rngs, epoch=epoch, history=history, config=config)


def test_checkpoint_round_trip_is_exact(tmp_path):
    saved = _full_checkpoint(tmp_path / "ck.npz")
    ck = load_checkpoint(tmp_path / "ck.npz")
    assert set(ck) == set(saved)
    assert type(ck["opt"]) is BayesBiNN and ck["opt"].config() == saved["opt"].config()
    assert type(ck["opt_state"]) is type(saved["opt_state"])
    for f in saved["opt_state"]._fields:
        a, b = getattr(saved["opt_state"], f), getattr(ck["opt_state"], f)
        if isinstance(a, dict):
            assert list(b) == list(a), f
            for k in a:
                assert b[k].dtype == a[k].dtype and b[k].shape == a[k].shape, (f, k)
                np.testing.assert_array_equal(b[k], a[k], err_msg=f"{f}[{k}]")
        else:
            assert b == a and type(b) is type(a), f
    assert list(ck["bn_state"]) == list(saved["bn_state"])
    for k, v in saved["bn_state"].items():
        assert ck["bn_state"][k].dtype == v.dtype
        np.testing.assert_array_equal(ck["bn_state"][k], v)
    assert set(ck["rngs"]) == {"data", "noise", "drop"}
    for k, g in saved["rngs"].items():                              # each stream goes on where it stopped
        np.testing.assert_array_equal(ck["rngs"][k].random(5), g.random(5), err_msg=k)
    assert ck["epoch"] == 3 and type(ck["epoch"]) is int
    assert ck["history"] == saved["history"] and ck["config"] == saved["config"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A write that fails half way (disk full, killed) leaves the previous checkpoint whole and no
    temporary file behind."""
    import numpy.lib.format as npformat
    path = tmp_path / "ck.npz"
    _full_checkpoint(path, epoch=2)
    before = path.read_bytes()
    real_write, calls = npformat.write_array, []

    def fail_on_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_write(*a, **k)
    monkeypatch.setattr(npformat, "write_array", fail_on_third)
    with pytest.raises(OSError, match="No space left"):
        _full_checkpoint(path, epoch=3)
    monkeypatch.undo()
    assert len(calls) == 3                                          # it did fail half way
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 2
    assert os.listdir(tmp_path) == ["ck.npz"]


PICKLED = []


def _record_unpickling(what):
    PICKLED.append(what)
    return what


class _Payload:
    def __reduce__(self):
        return _record_unpickling, ("unpickled",)


def test_checkpoint_with_a_pickled_entry_is_refused_unread(tmp_path):
    """An object array (a pickle) in a checkpoint is refused, and nothing in it is unpickled."""
    path, data = _checkpoint(tmp_path)
    data["extra"] = np.array([_Payload()], dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **data)                                        # np.savez pickles object arrays
    PICKLED.clear()
    with pytest.raises(FileFormatError, match="^" + re.escape(str(path))):
        load_checkpoint(path)
    assert PICKLED == []
