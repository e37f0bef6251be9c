"""``lightnets-weights`` (lightnets.cli.weights): usage mistakes are one line and exit 2, ``--help`` parses
before the weights machinery is imported, and the deprecated ``lightnets.hub`` still works."""
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lightnets import pretrained, publish
from lightnets.cli import weights as weights_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv, message", [
    (["pull"], "invalid choice: 'pull'"),
    (["push", "folder-only"], "the following arguments are required: repo_id"),
    ([], "the following arguments are required: {index,convert,push}"),
])
def test_usage_mistakes_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        weights_cli.main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert re.match(r"lightnets-weights( push)?: error: ", err) and message in err and err.endswith(" --help)\n")
    assert err.count("\n") == 1


def test_index_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert weights_cli.main(["index", "--weights-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err == f"lightnets-weights: error: weights folder {tmp_path / 'missing'} does not exist\n"


def test_lightnets_hub_is_a_deprecated_shim(monkeypatch, tmp_path, capsys):
    monkeypatch.delitem(sys.modules, "lightnets.hub", raising=False)
    with pytest.warns(DeprecationWarning, match=r"lightnets\.hub is deprecated; import from lightnets\.pretrained \(loading\) "
                                                r"or lightnets\.publish \(saving\); it will be removed in 0\.3"):
        hub = importlib.import_module("lightnets.hub")
    assert hub.save_pretrained is publish.save_pretrained and hub.load_checkpoint is pretrained.load_checkpoint
    for name in hub.__all__:
        assert getattr(hub, name) is not None, name
    from lightnets.hub import ChecksumError, WeightsUnavailableError, build_index, push_to_hub  # noqa: F401
    assert ChecksumError is pretrained.ChecksumError and push_to_hub is publish.push_to_hub
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hub.nothing  # noqa: B018
    # its main is the CLI under its old name
    (tmp_path / "loose").mkdir()
    assert hub.main(["push", str(tmp_path / "loose"), "org/name"]) == 2
    assert capsys.readouterr().err.startswith("python -m lightnets.hub: error: ")


@pytest.mark.slow
def test_python_m_lightnets_hub_runs_the_cli_and_help_imports_nothing_heavy():
    # `python -m lightnets.hub --help`, as runpy runs it, then: was the weights machinery imported?
    script = (
        "import runpy, sys\n"
        "sys.argv = ['-m', '--help']\n"
        "try:\n"
        "    runpy.run_module('lightnets.hub', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "print('imported', [m for m in ('torch', 'huggingface_hub', 'lightnets.publish') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: python -m lightnets.hub [-h] {index,convert,push} ...")
    assert out.splitlines()[-2:] == ["exit 0", "imported []"]
