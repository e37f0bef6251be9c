"""Every registered name, cheaply: its network's numbers against a recorded expect-file.

Behaviour is tested on one representative per family and per source layout (tests/conftest.py); what
differs between registered variants is only numbers (ShuffleNet Table 1's channels per group count and
scale, MobileNet's width α, VGG's depth). Each name is built on the meta device, so no weight is
allocated and no arithmetic runs, and its parameters, its conv + FC multiply-adds (from the layers'
output shapes, MobileNet v1 Eq. 1 and 3, ShuffleNet v1 Sec. 3.2), its feature maps and its head widths
are compared with ``tests/expect/registered_models.json``. A change to any variant's numbers fails here.

A deliberate change of a network: ``LIGHTNETS_ACCEPT=1 python -m pytest tests/models/test_registered_models.py``
rewrites the file; review its diff like code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import lightnets

EXPECT_FILE = Path(__file__).parent.parent / "expect" / "registered_models.json"
ACCEPT = os.environ.get("LIGHTNETS_ACCEPT") == "1"


def conv_and_fc_macs(model: nn.Module, input_size: tuple[int, ...]) -> tuple[int, torch.Tensor]:
    """Multiply-adds of every conv and FC layer, from the shapes their forward hooks see (meta tensors do), and the
    map ``forward_features`` returns."""
    total = 0

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features * (output.numel() // output.shape[-1])
        else:
            kernel_h, kernel_w = module.kernel_size
            per_output = kernel_h * kernel_w * module.in_channels // module.groups
            total += per_output * output.shape[1] * output.shape[-2] * output.shape[-1] * output.shape[0]

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [layer.register_forward_hook(count) for layer in layers]
    try:
        features = model.forward_features(torch.zeros(1, *input_size, device="meta"))
        model.forward_head(features)
    finally:
        for handle in handles:
            handle.remove()
    return total, features


def _shape_only(module: nn.Module) -> None:
    """BatchNorm keeps shapes, and on the meta device it runs a slow Python decomposition: skip its arithmetic."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.forward = lambda x: x


def describe(name: str, **kwargs) -> dict:
    """The numbers that tell one registered network from another, measured without allocating a weight."""
    with torch.device("meta"):
        model = lightnets.create_model(name, **kwargs).eval()
    input_size = tuple(model.pretrained_cfg["input_size"])
    params = sum(p.numel() for p in model.parameters())
    _shape_only(model)
    macs, features = conv_and_fc_macs(model, input_size)
    return {
        "input_size": list(input_size),
        "params": params,
        "conv_fc_macs": macs,
        "num_features": model.num_features,
        "head_hidden_size": model.head_hidden_size,
        "feature_map": list(features.shape[1:]),
        "feature_info": [[info["module"], info["num_chs"], info["reduction"]] for info in model.feature_info],
    }


def measure_all() -> dict[str, dict]:
    return {
        name: {"default": describe(name), "small_input_28px_gray": describe(name, small_input=True, in_chans=1,
                                                                             num_classes=10, img_size=28)}
        for name in lightnets.list_models()
    }


@pytest.fixture(scope="module")
def measured() -> dict[str, dict]:
    return measure_all()


@pytest.fixture(scope="module")
def expected(measured) -> dict[str, dict]:
    if ACCEPT:
        EXPECT_FILE.parent.mkdir(exist_ok=True)
        EXPECT_FILE.write_text(json.dumps(measured, indent=1, sort_keys=True) + "\n")
    return json.loads(EXPECT_FILE.read_text())


def test_every_registered_name_is_recorded(measured, expected):
    assert sorted(measured) == sorted(expected), "a model was registered or removed: LIGHTNETS_ACCEPT=1 records it"


@pytest.mark.parametrize("name", lightnets.list_models())
def test_registered_network_matches_its_record(name, measured, expected):
    assert measured[name] == expected.get(name), (
        f"{name}'s numbers changed; if on purpose, LIGHTNETS_ACCEPT=1 records them"
    )


def test_the_record_holds_the_papers_numbers(expected):
    """The expect-file is not only self-consistent: spot-check it against the papers (../shared/NOTES.md)."""
    params = {name: expected[name]["default"]["params"] for name in expected}
    # MobileNet v1, 1000 classes, FC bias and BN affine counted.
    assert params["mobilenet_v1_100"] == 4_231_976 and params["mobilenet_v1_025"] == 470_072
    # ShuffleNet 1x g3: pytorchcv's count, which equals ours layer for layer.
    assert params["shufflenet_g3"] == 1_865_728
    # MobileNet v1 Table 8: 1.0 MobileNet-224 is 569 million mult-adds.
    assert round(expected["mobilenet_v1_100"]["default"]["conv_fc_macs"] / 1e6) == 569
    # ShuffleNet v1 Table 2 ("140 MFLOPs" at 1x, conv + FC mult-adds): g3 counts 137 M layer by layer.
    assert round(expected["shufflenet_g3"]["default"]["conv_fc_macs"] / 1e6) == 137
