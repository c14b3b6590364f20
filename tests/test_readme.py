"""The README stays true: .ci/run runs exactly the README's test command, its snippets run, its MNIST
BayesBiNN rows quote the results files."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    blocks = _bash_blocks(readme)
    assert len(blocks) >= 2, "README must start with two bash commands"
    test_cmd = blocks[1].strip()
    assert "pytest" in test_cmd
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines(), f"the README's test command {test_cmd!r} is not a line of .ci/run"


def test_readme_main_command_runs_the_demo():
    first = _bash_blocks((REPO / "README.md").read_text())[0]
    assert "refbinn demo" in first


def test_readme_python_examples_run():
    """The README's Python snippets are executed in order, as a reader would paste them."""
    import numpy as np
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 2
    ns = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README python block {i}", "exec"), ns)
    # the optimizer example ends with the mode weights: exactly -1 or +1
    assert all(set(np.unique(v)) <= {-1.0, 1.0} for v in ns["mode"].values())


def test_readme_mnist_bayesbinn_rows_quote_the_results_files():
    """The MNIST table's BayesBiNN rows (test accuracy at best validation, its epoch, per seed, and
    the ten seeds' mean +- sample std) are the figures of results/mnist_bayesbinn_official*.json."""
    import json
    import numpy as np
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| BayesBiNN \(mode\), official numerics, seeds ([\d /]+) \| \**([\d. /]+)%\** "
                      r"\(epochs ([\d /]+)\)", readme, flags=re.M)
    assert len(rows) == 2, rows

    def summary(seed):
        name = "mnist_bayesbinn_official" + (f"_seed{seed}" if seed else "")
        return json.loads((REPO / "results" / f"{name}.json").read_text())["summary"]
    quoted = {}
    for seeds, accs, epochs in rows:
        for s, a, e in zip(*(field.split(" / ") for field in (seeds, accs, epochs)), strict=True):
            quoted[int(s)] = (a, int(e))
    assert sorted(quoted) == list(range(10))
    best = []
    for s, (acc, epoch) in quoted.items():
        got = summary(s)
        best.append(100 * got["test_acc_mode_at_best_val"])
        assert (f"{best[-1]:.2f}", got["best_val_epoch"]) == (acc, epoch), s
    mean, std = re.search(r"\*\*seeds 0-9: ([\d.]+) \+- ([\d.]+)\*\*", readme).groups()
    assert (mean, std) == (f"{np.mean(best):.2f}", f"{np.std(best, ddof=1):.2f}")


def test_readme_seed0_rerun_on_a_second_cpu_matches_bit_for_bit():
    """The README says the item-6 command re-run on a second CPU model gave the same bits in all
    25 epochs: every figure of each epoch (times aside) equals results/mnist_bayesbinn_official.json's."""
    import json
    readme = (REPO / "README.md").read_text()
    assert "results/mnist_bayesbinn_official_seed0_xeon.json" in readme
    first, again = (json.loads((REPO / "results" / f"{name}.json").read_text())
                    for name in ("mnist_bayesbinn_official", "mnist_bayesbinn_official_seed0_xeon"))
    assert first["settings"] == again["settings"]
    timing = {"seconds", "seconds_diagnostics", "examples_per_s"}
    assert len(first["history"]) == len(again["history"]) == 25
    for a, b in zip(first["history"], again["history"], strict=True):
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    summary = lambda d: {k: v for k, v in d["summary"].items() if k != "train_seconds"}
    assert summary(first) == summary(again)
