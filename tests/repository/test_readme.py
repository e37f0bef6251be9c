"""The README is a short front door whose commands CI runs; its and the docs' generated tables are current;
the docs site builds strictly. (Every code block runs in tests/repository/test_doc_examples.py.)"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import forkserver

from lightnets.pretrained.manifest import read_index

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command.strip() in ci.splitlines() or f"{test_command.strip()}\n" in ci


def test_readme_is_a_short_front_door():
    """Issue #28: at most 250 lines, the two commands, the install for CPU-only machines, where the rest is."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for needed in ("python -m eval --all-pretrained", "python -m pytest -q", 'python -m pytest -q -m "not slow"',
                   "--index-url https://download.pytorch.org/whl/cpu", "dataset-fashion-mnist", "163 MiB",
                   "mkdocs serve", "mkdocs build --strict"):
        assert needed in readme, f"README.md does not say {needed!r}"
    zoo = re.search(r"<!-- BEGIN zoo_compact -->\n(\|.*?\|)\n", readme)
    assert zoo and zoo.group(1).count("|") - 1 <= 7, "the README's zoo table has at most 7 columns"


@pytest.mark.slow
def test_readme_and_docs_tables_are_up_to_date():
    # `python scripts/render_docs.py --check`, forked from a process that has imported torch (tests/forkserver.py)
    result = forkserver.server(os.environ).run(["scripts/render_docs.py", "--check"], cwd=ROOT, env=os.environ)
    assert result.returncode == 0, result.stderr


def test_every_docs_page_is_in_the_navigation():
    import yaml

    def pages(nav):
        for item in nav:
            if isinstance(item, str):
                yield item
            else:
                for value in item.values():
                    yield from pages(value) if isinstance(value, list) else [value]

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = set(pages(config["nav"]))
    on_disk = {str(path.relative_to(ROOT / "docs")) for path in (ROOT / "docs").rglob("*.md")}
    assert on_disk == in_nav


@pytest.mark.slow
def test_docs_build_strictly(tmp_path):
    """What CI runs: a broken link, a missing page or an API page whose module is gone fails the build."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]


def _quoted_top1(text: str, pattern: str) -> list[tuple[str, float]]:
    return [(name, float(top1)) for name, top1 in re.findall(pattern, text, re.M)]


def test_results_quote_the_shipped_weights_as_they_are_now():
    """Every table that names a shipped weight's top-1 was measured on the weight weights/ holds now: a
    retrained weight makes this fail until the tables that quote it are re-run (README re-rendered)."""
    from benchmarks.train_cost import recipe_cycles

    index = {name: entry["metrics"]["top1"] for name, entry in read_index(ROOT / "weights").items()}
    results = ROOT / "results"
    zoo = _quoted_top1(
        (results / "zoo.md").read_text(),
        r"^\| (\w+\.fmnist\w*) \| fmnist\w* \| \S+ \| [\d.]+ \| [\d.]+ \| (\d+\.\d+) \|",
    )
    assert sorted(name for name, _ in zoo) == sorted(index)  # the zoo table lists every shipped weight once
    train_cost = _quoted_top1((results / "train_cost.md").read_text(), r"^\| (\w+) \|.* \| (\d+\.\d+) \|$")
    # one row per architecture the recipe trains (an ablation's weight costs what its architecture does)
    assert sorted(name for name, _ in train_cost) == sorted(recipe_cycles(ablations=False))
    int8 = _quoted_top1(
        (results / "speed.md").read_text(), r"^\| (\w+\.fmnist) \| (\d+\.\d+) \| \d+\.\d+ \| [-+]?\d+\.\d+ \|"
    )
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
