"""``lightnets-weights`` (lightnets.cli.weights): usage mistakes are one line and exit 2, ``--help`` parses
before the weights machinery is imported."""
import re

import pytest

from lightnets.cli import weights as weights_cli


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
