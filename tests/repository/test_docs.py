"""Every docstring example of the public API runs and shows what it says it shows."""
import doctest
import importlib
import pkgutil

import pytest

import lightnets

MODULES = sorted({"lightnets", *(info.name for info in pkgutil.walk_packages(lightnets.__path__, "lightnets."))})


def test_the_modules_with_examples_are_all_found():
    assert {"lightnets.registry", "lightnets.pretrained.load", "lightnets.publish", "lightnets.train",
            "lightnets.models.mobilenet_v1"} <= set(MODULES)


@pytest.mark.slow
@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name, capsys):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = capsys.readouterr().out  # doctest prints each failing example, its expected and its actual output
    assert result.failed == 0, report
