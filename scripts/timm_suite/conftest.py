"""Run timm's own ``tests/test_models.py`` on lightnets' models only (issue #32).

timm's file is theirs and stays out of this repository. Copy it next to this conftest and run pytest
there (see docs/timm.md):

    cp PATH/TO/pytorch-image-models/tests/test_models.py scripts/timm_suite/
    python -m pytest scripts/timm_suite -p no:cacheprovider -q

The test bodies run untouched. This file only narrows the model lists their ``parametrize`` calls
build at collection: ``list_models`` answers with lightnets' names (as timm's registry knows them), and
a ``module=`` filter — timm's list of families with ``forward_intermediates`` — also takes lightnets',
since every lightnets model implements it.
"""
import pytest
import timm
import timm.models
import timm.models._registry

import lightnets

_timm_list_models = timm.models._registry.list_models
_OURS = {lightnets.timm_name(name) for name in lightnets.list_models()}


def _lightnets_models(filter="", module="", pretrained=False, exclude_filters="", name_matches_cfg=False,
                      include_tags=None):
    names = _timm_list_models(filter=filter, pretrained=pretrained, exclude_filters=exclude_filters,
                              name_matches_cfg=name_matches_cfg, include_tags=include_tags)
    return [name for name in names if name.split(".")[0] in _OURS]


timm.list_models = timm.models.list_models = timm.models._registry.list_models = _lightnets_models


def pytest_configure(config: pytest.Config) -> None:
    for marker in ("base", "cfg", "torchscript", "features", "fxforward", "fxbackward", "timeout(seconds)"):
        config.addinivalue_line("markers", marker)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the tests parametrized over lightnets' models: the others test one timm model (NaFlexViT, Gemma,
    a RegNet hard-coded as its example)."""
    kept = [item for item in items
            if str(getattr(getattr(item, "callspec", None), "params", {}).get("model_name", "")).split(".")[0] in _OURS]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
