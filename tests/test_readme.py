"""The README's two commands stay true: .ci/run runs exactly the README's test command."""
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
