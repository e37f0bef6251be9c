"""The package's shape holds: layered imports (import-linter), a fast `import lightnets`,
and command lines that answer --help before importing torch."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each console script (pyproject.toml) and the module `python -m` runs for it.
COMMAND_LINES = {
    "lightnets-eval": "lightnets.eval",
    "lightnets-export": "lightnets.cli.export",
    "lightnets-flops": "lightnets.cli.flops",
    "lightnets-train": "lightnets.cli.train",
    "lightnets-weights": "lightnets.cli.weights",
}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_layers_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 kept, 0 broken" in result.stdout


def test_the_contract_names_every_module_of_the_package():
    """A new top-level module must be placed in a layer, or import-linter would not check it."""
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {part.strip() for layer in layers for part in layer.replace("|", ":").split(":")}
    package = ROOT / "lightnets"
    found = {f"lightnets.{path.stem}" for path in package.glob("*.py") if path.stem != "__init__"}
    found |= {f"lightnets.{path.parent.name}" for path in package.glob("*/__init__.py")
              if path.parent.name != "datasets"}
    assert found - named == set(), f"modules in no layer of pyproject.toml's contract: {sorted(found - named)}"


def test_import_lightnets_does_not_import_torch():
    result = _run("import sys, lightnets; print('torch' in sys.modules, len(lightnets.__all__) > 10)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


@pytest.mark.parametrize("first", ["lightnets", "timm"])
@pytest.mark.slow
def test_models_reach_timms_registry_whichever_is_imported_first(first):
    second = "timm" if first == "lightnets" else "lightnets"
    result = _run(f"import {first}, {second}, timm; print(timm.is_model('shufflenet_g3'), "
                  "timm.create_model('smallcnn_3x2').num_classes)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "10"]


@pytest.mark.parametrize("script", sorted(COMMAND_LINES))
def test_help_answers_before_torch_is_imported(script):
    module = COMMAND_LINES[script]
    result = _run(f"import sys, {module} as cli\n"
                  "try:\n    cli.main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code == 0, stop.code\n"
                  "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "NO-TORCH", f"{script} --help imported torch"
    assert "usage:" in result.stdout


def test_console_scripts_are_the_modules_tested_here():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {name: target.split(":")[0] for name, target in scripts.items()} == COMMAND_LINES
