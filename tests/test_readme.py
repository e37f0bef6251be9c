"""The README's generated tables are current, and CI runs exactly the README's test command."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lightnets.manifest import read_index

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command.strip() in ci.splitlines() or f"{test_command.strip()}\n" in ci


@pytest.mark.slow
def test_readme_tables_are_up_to_date():
    result = subprocess.run([sys.executable, "scripts/render_readme.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _quoted_top1(text: str, pattern: str) -> list[tuple[str, float]]:
    return [(name, float(top1)) for name, top1 in re.findall(pattern, text, re.M)]


def test_results_quote_the_shipped_weights_as_they_are_now():
    """Every table that names a shipped weight's top-1 was measured on the weight weights/ holds now: a
    retrained weight makes this fail until the tables that quote it are re-run (README re-rendered)."""
    index = {name: entry["metrics"]["top1"] for name, entry in read_index(ROOT / "weights").items()}
    results = ROOT / "results"
    zoo = _quoted_top1((results / "zoo.md").read_text(), r"^\| (\w+\.fmnist) \| fmnist \| \S+ \| [\d.]+ \| [\d.]+ \| (\d+\.\d+) \|")
    assert sorted(name for name, _ in zoo) == sorted(index)  # the zoo table lists every shipped weight once
    train_cost = _quoted_top1((results / "train_cost.md").read_text(), r"^\| (\w+) \|.* \| (\d+\.\d+) \|$")
    assert len(train_cost) == len(index)
    int8 = _quoted_top1((results / "speed.md").read_text(), r"^\| (\w+\.fmnist) \| (\d+\.\d+) \| \d+\.\d+ \| [-+]?\d+\.\d+ \|")
    headings = [(path.name, quote) for path in sorted(results.glob("*.md"))
                for quote in _quoted_top1(path.read_text(), r"(\w+\.fmnist) \((\d+\.\d+)% top-1\)")]
    assert int8 and len(headings) >= 6
    # Measured again by each table's own run: the same evaluation, so within the re-check tolerance.
    for table, quotes in (("zoo.md", zoo), ("speed.md int8", int8)):
        for name, top1 in quotes:
            assert abs(top1 - index[name]) <= 0.1, f"results/{table}: {name} {top1}% but weights/ ships {index[name]}%"
    # Copied from the weight's card: exactly.
    for table, name, top1 in [("train_cost.md", f"{name}.fmnist", top1) for name, top1 in train_cost] + \
            [(file, name, top1) for file, (name, top1) in headings]:
        assert top1 == index[name], f"results/{table}: {name} {top1}% but weights/ ships {index[name]}%"
