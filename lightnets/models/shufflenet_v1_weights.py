"""The ImageNet-1k weights published for ShuffleNet v1: pytorchcv's and megvii's (the paper's authors').

Each is a :class:`~lightnets.weight_cfg.WeightCfg` keyed ``"name.tag"``; :mod:`~lightnets.models.shufflenet_v1`
declares them as its ``default_cfgs``. Neither source's network is exactly the paper's (pytorchcv
concatenates the main branch before the shortcut; megvii shuffles after the depthwise conv), so each
tag builds its source's layout and no bare name defaults to one of them. Who each source is:
:mod:`lightnets.models.imagenet_sources`.

>>> cfg = IMAGENET_WEIGHTS["shufflenet_g3.osmr_in1k"]
>>> cfg.source, cfg.license, cfg.model_args, cfg.metrics.get("top1").value
('pytorchcv', 'mit', {'shortcut_first': False}, 65.61)
"""
from __future__ import annotations

from typing import Any

from ..weight_cfg import WeightCfg
from .imagenet_sources import imagenet_weight, pytorchcv_weight, reported_accuracy

__all__ = ["IMAGENET_WEIGHTS"]

# --- pytorchcv: name in pytorchcv, release tag, sha1 of the .pth, (top-1, top-5) error of that .pth.
_OSMR: dict[str, tuple[str, str, str, float, float]] = {
    "shufflenet_g1": ("shufflenet_g1_w1", "v0.0.223", "4cfb65a30761fe548e0b5afbb5d89793ec41e4e9", 34.93, 13.89),
    "shufflenet_g2": ("shufflenet_g2_w1", "v0.0.241", "07256203e217a7b31f1c69a5bd38a6674bce75bc", 34.25, 13.63),
    "shufflenet_g3": ("shufflenet_g3_w1", "v0.0.244", "ce54f64ecff87556a4303380f46abaaf649eb308", 34.39, 13.48),
    "shufflenet_g4": ("shufflenet_g4_w1", "v0.0.245", "e2415f8270a4b6cbfe7dc97044d497edbc898577", 34.19, 13.35),
    "shufflenet_g8": ("shufflenet_g8_w1", "v0.0.250", "9a979b365424addba75c559a61a77ac7154b26eb", 34.06, 13.42),
    "shufflenet_g1_075": ("shufflenet_g1_w3d4", "v0.0.218", "161cd24aa0b2e2afadafa69b44a28af222f2ec7a", 39.58, 17.11),
    "shufflenet_g3_075": ("shufflenet_g3_w3d4", "v0.0.219", "3f3b0aef0ce3174c78ff42cf6910c6e34540fc41", 38.20, 16.50),
    "shufflenet_g1_050": ("shufflenet_g1_wd2", "v0.0.174", "dae4bdadd7d48bee791dff2a08cd697cff0e9320", 46.59, 22.61),
    "shufflenet_g3_050": ("shufflenet_g3_wd2", "v0.0.167", "ccaacfc8d9ac112c6143269df6e258fd55b662a7", 44.16, 20.80),
    "shufflenet_g1_025": ("shufflenet_g1_wd4", "v0.0.134", "47dbd0f279da6d3056079bb79ad39cabbb3b9415", 62.44, 37.29),
    "shufflenet_g3_025": ("shufflenet_g3_wd4", "v0.0.135", "6abdd65e087e71f80345415cdf7ada6ed2762d60", 61.74, 36.53),
}


def _osmr_weight(name: str) -> WeightCfg:
    model_args: dict[str, Any] = {"shortcut_first": False}  # pytorchcv concatenates (main branch, shortcut)
    if name.endswith("_025"):
        model_args["stem_channels"] = 6  # int(24 × 0.25); our 0.25× keeps 12
    return pytorchcv_weight(*_OSMR[name], source_format="pytorchcv_shufflenet", model_args=model_args)


# --- megvii: (groups, scale) -> (top-1, top-5) error from ShuffleNet-Series/ShuffleNetV1/README.md.
_MEGVII_DOWNLOAD = ("OneDrive https://1drv.ms/f/s!AgaP37NGYuEXhRfQxHRseR7eSxXo or BaiduYun "
                    "https://pan.baidu.com/s/1EUQVoFPb74yZm0JWHKjFOw (extract code mc24)")
_MEGVII: dict[str, tuple[float, float]] = {
    "shufflenet_g3_050": (42.7, 20.0), "shufflenet_g3": (32.2, 12.3), "shufflenet_g3_150": (28.4, 9.8),
    "shufflenet_g3_200": (25.9, 8.6), "shufflenet_g8_050": (41.2, 19.0), "shufflenet_g8": (32.0, 13.6),
    "shufflenet_g8_150": (29.0, 10.4), "shufflenet_g8_200": (27.1, 9.2),
}


def _megvii_weight(name: str) -> WeightCfg:
    top1_err, top5_err = _MEGVII[name]
    groups = name.split("_")[1][1:]
    scale = {"050": "0.5x", "150": "1.5x", "200": "2.0x"}.get(name.rsplit("_", 1)[-1], "1.0x")
    return imagenet_weight(
        "megvii",
        download_page=_MEGVII_DOWNLOAD,
        download_file=f"the ShuffleNetV1 {scale} (group={groups}) checkpoint (a .pth.tar)",
        source_format="megvii_shufflenet",
        model_args={"shuffle_layout": "megvii"},
        # megvii evaluates OpenCV BGR images in 0-255 (resize 256, crop 224, bilinear): the converter folds the
        # channel order and the scale into the stem, so the model takes RGB in 0-1, unnormalised.
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=0.875, interpolation="bilinear",
        source_transform="OpenCV BGR, 0-255, resize 256, centre crop 224 (folded into the stem: feed RGB in 0-1)",
        metrics=reported_accuracy(round(100 - top1_err, 1), round(100 - top5_err, 1),
                                  "megvii ShuffleNet-Series/ShuffleNetV1 README"),
    )


IMAGENET_WEIGHTS: dict[str, WeightCfg] = {
    **{f"{name}.osmr_in1k": _osmr_weight(name) for name in _OSMR},
    **{f"{name}.megvii_in1k": _megvii_weight(name) for name in _MEGVII},
}
