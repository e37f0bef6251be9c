"""Every published ImageNet weight of our architectures, as pretrained cfgs (data, no code).

Four sources train MobileNet v1 and ShuffleNet v1 on ImageNet-1k; each tag names one of their files
and builds the network it was trained with (``model_args``: where a source departs from the paper,
a constructor option reproduces it). The accuracies are the sources' own (``metrics["reported_by"]``):
there is no ImageNet here to re-measure them; ``python -m eval --model TAG --dataset imagefolder:PATH``
does it where there is.

=========  =============================================  =====================================
source     tags                                           how the file is had
=========  =============================================  =====================================
timm       ``mobilenet_v1_{100,125}.timm_in1k``           Hugging Face Hub (safetensors)
pytorchcv  ``mobilenet_v1_*.osmr_in1k``,                  GitHub release ``.pth.zip``, sha1 checked
           ``shufflenet_g*.osmr_in1k``
megvii     ``shufflenet_g{3,8}*.megvii_in1k``             manual download, ``pretrained_path=``
keras      ``mobilenet_v1_*.keras_r{128,160,192,224}``    ``.h5`` URL (no published checksum)
=========  =============================================  =====================================

>>> cfgs = published_cfgs()
>>> len(cfgs)
41
>>> cfg = cfgs["shufflenet_g3.osmr_in1k"]
>>> cfg["source"], cfg["license"], cfg["model_args"], cfg["metrics"]["top1"]
('pytorchcv', 'mit', {'shortcut_first': False}, 65.61)
"""
from __future__ import annotations

from typing import Any

__all__ = ["SOURCES", "published_cfgs"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # x / 127.5 - 1 (TF-slim, Keras, timm's MobileNet v1)
INCEPTION_STD = (0.5, 0.5, 0.5)

# Who publishes what, and under which licence (the docs' weight table reads this).
SOURCES: dict[str, dict[str, str]] = {
    "timm": {"name": "timm (Ross Wightman)", "license": "apache-2.0", "home": "https://github.com/huggingface/pytorch-image-models"},
    "pytorchcv": {"name": "pytorchcv / imgclsmob (Oleg Sémery)", "license": "mit", "home": "https://github.com/osmr/imgclsmob"},
    "megvii": {"name": "Megvii ShuffleNet-Series (the paper's authors)", "license": "mit",
               "home": "https://github.com/megvii-model/ShuffleNet-Series/tree/master/ShuffleNetV1"},
    "keras": {"name": "Keras Applications (TF-slim's checkpoints)", "license": "apache-2.0",
              "home": "https://keras.io/api/applications/mobilenet/"},
}


def _cfg(source: str, **cfg: Any) -> dict[str, Any]:
    return {"source": source, "license": SOURCES[source]["license"], "dataset": "imagenet-1k", "num_classes": 1000, **cfg}


# --- timm: the Hub repos of timm's ra4 recipe (3600 epochs); top-1/top-5 @224 from timm's results tables.
_TIMM = {
    "mobilenet_v1_100": ("timm/mobilenetv1_100.ra4_e3600_r224_in1k", 0.875, 75.382, 92.312),
    "mobilenet_v1_125": ("timm/mobilenetv1_125.ra4_e3600_r224_in1k", 0.9, 76.924, 93.234),
}

# --- pytorchcv: name in pytorchcv, release tag, sha1 of the .pth, (top-1, top-5) error of that .pth as
# imgclsmob's PyTorch results table reports it (pytorchcv/models/common/model_metainfos.csv has the same
# sha1 and top-5 error; its file names carry the top-5 error × 100).
_OSMR_RELEASES = "https://github.com/osmr/imgclsmob/releases/download"
_OSMR: dict[str, tuple[str, str, str, float, float]] = {
    "mobilenet_v1_025": ("mobilenet_wd4", "v0.0.62", "1ad5e8fe8674cdf7ffda8450095eb96d227397e0", 46.26, 22.49),
    "mobilenet_v1_050": ("mobilenet_wd2", "v0.0.156", "41a21242c95050407df876cfa44bb5d3676aa751", 34.15, 13.55),
    "mobilenet_v1_075": ("mobilenet_w3d4", "v0.0.130", "d801bcaea83885b16a0306b8b77fe314bbc585c3", 30.14, 10.76),
    "mobilenet_v1_100": ("mobilenet_w1", "v0.0.155", "7e1d739f0fd4b95c16eef077c5dc0a5bb1da8ad5", 26.61, 8.95),
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


def _osmr_cfg(name: str) -> dict[str, Any]:
    source_name, release, sha1, top1_err, top5_err = _OSMR[name]
    file_name = f"{source_name}-{round(top5_err * 100):04d}-{sha1[:8]}.pth"
    shufflenet = name.startswith("shufflenet")
    model_args: dict[str, Any] = {}
    if shufflenet:
        model_args["shortcut_first"] = False  # pytorchcv concatenates (main branch, shortcut)
        if name.endswith("_025"):
            model_args["stem_channels"] = 6  # int(24 × 0.25); our 0.25× keeps 12
    return _cfg(
        "pytorchcv",
        url=f"{_OSMR_RELEASES}/{release}/{file_name}.zip",
        sha1=sha1,  # of the .pth inside the zip, as pytorchcv's model store checks it
        source_name=source_name,
        source_format="pytorchcv_shufflenet" if shufflenet else "pytorchcv_mobilenet",
        model_args=model_args,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875, interpolation="bilinear",
        metrics={"top1": round(100 - top1_err, 2), "top5": round(100 - top5_err, 2),
                 "reported_by": "imgclsmob's PyTorch results table (pytorchcv's weight file)"},
    )


# --- megvii: (groups, scale) -> (top-1, top-5) error from ShuffleNet-Series/ShuffleNetV1/README.md.
_MEGVII_DOWNLOAD = ("OneDrive https://1drv.ms/f/s!AgaP37NGYuEXhRfQxHRseR7eSxXo or BaiduYun "
                    "https://pan.baidu.com/s/1EUQVoFPb74yZm0JWHKjFOw (extract code mc24)")
_MEGVII: dict[str, tuple[float, float]] = {
    "shufflenet_g3_050": (42.7, 20.0), "shufflenet_g3": (32.2, 12.3), "shufflenet_g3_150": (28.4, 9.8),
    "shufflenet_g3_200": (25.9, 8.6), "shufflenet_g8_050": (41.2, 19.0), "shufflenet_g8": (32.0, 13.6),
    "shufflenet_g8_150": (29.0, 10.4), "shufflenet_g8_200": (27.1, 9.2),
}


def _megvii_cfg(name: str) -> dict[str, Any]:
    top1_err, top5_err = _MEGVII[name]
    groups = name.split("_")[1][1:]
    scale = {"050": "0.5x", "150": "1.5x", "200": "2.0x"}.get(name.rsplit("_", 1)[-1], "1.0x")
    return _cfg(
        "megvii",
        download_page=_MEGVII_DOWNLOAD,
        download_file=f"the ShuffleNetV1 {scale} (group={groups}) checkpoint (a .pth.tar)",
        source_format="megvii_shufflenet",
        model_args={"shuffle_layout": "megvii"},
        # megvii evaluates OpenCV BGR images in 0-255 (resize 256, crop 224, bilinear): the converter folds the
        # channel order and the scale into the stem, so the model takes RGB in 0-1, unnormalised.
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=0.875, interpolation="bilinear",
        source_transform="OpenCV BGR, 0-255, resize 256, centre crop 224 (folded into the stem: feed RGB in 0-1)",
        metrics={"top1": round(100 - top1_err, 1), "top5": round(100 - top5_err, 1),
                 "reported_by": "megvii ShuffleNet-Series/ShuffleNetV1 README"},
    )


# --- keras: (alpha, size) -> (top-1, top-5) accuracy. Keras Applications reports its own evaluation only
# for 1.0 @224 (70.4 / 89.5, keras.io); the rest are TF-slim's mobilenet_v1.md table for the checkpoint
# of the same width and size, which Keras's .h5 files were converted from.
_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
_KERAS_REPORTED: dict[tuple[str, int], tuple[float, float]] = {
    ("100", 224): (70.4, 89.5), ("100", 192): (70.0, 89.2), ("100", 160): (68.0, 87.7), ("100", 128): (65.2, 85.8),
    ("075", 224): (68.4, 88.2), ("075", 192): (67.2, 87.3), ("075", 160): (65.3, 86.0), ("075", 128): (62.1, 83.9),
    ("050", 224): (63.3, 84.9), ("050", 192): (61.7, 83.6), ("050", 160): (59.1, 81.9), ("050", 128): (56.3, 79.4),
    ("025", 224): (49.8, 74.2), ("025", 192): (47.7, 72.3), ("025", 160): (45.5, 70.3), ("025", 128): (41.5, 66.3),
}
_KERAS_ALPHA_TEXT = {"100": "1_0", "075": "7_5", "050": "5_0", "025": "2_5"}  # keras' mobilenet.py file names


def _keras_cfg(width: str, size: int) -> dict[str, Any]:
    top1, top5 = _KERAS_REPORTED[width, size]
    reported_by = ("Keras Applications (keras.io)" if (width, size) == ("100", 224)
                   else "TF-slim mobilenet_v1.md (the checkpoint Keras's file was converted from)")
    return _cfg(
        "keras",
        url=f"{_KERAS_BASE}mobilenet_{_KERAS_ALPHA_TEXT[width]}_{size}_tf.h5",
        source_format="keras_mobilenet",
        # TF "SAME" padding, BatchNorm eps 1e-3 and ReLU6, as Keras's MobileNet; its 1×1-conv classifier is
        # the same affine map as our FC.
        model_args={"act_layer": "relu6", "padding": "tf", "bn_eps": 1e-3, "img_size": size},
        input_size=(3, size, size),
        mean=INCEPTION_MEAN, std=INCEPTION_STD, crop_pct=0.875, interpolation="bilinear",
        metrics={"top1": top1, "top5": top5, "reported_by": reported_by},
    )


def published_cfgs() -> dict[str, dict[str, Any]]:
    """Pretrained cfgs of every published ImageNet weight, keyed ``"name.tag"``; per name, the default
    (first) tag first: timm, then pytorchcv, megvii, Keras."""
    cfgs: dict[str, dict[str, Any]] = {}
    for name, (hub_id, crop_pct, top1, top5) in _TIMM.items():
        cfgs[f"{name}.timm_in1k"] = _cfg(
            "timm", hf_hub_id=hub_id, source_format="timm_mobilenetv1", model_args={"act_layer": "relu6"},
            mean=INCEPTION_MEAN, std=INCEPTION_STD, crop_pct=crop_pct, interpolation="bicubic",
            metrics={"top1": top1, "top5": top5, "reported_by": "timm's ImageNet results (224 px)"},
        )
    for name in _OSMR:
        cfgs[f"{name}.osmr_in1k"] = _osmr_cfg(name)
    for name in _MEGVII:
        cfgs[f"{name}.megvii_in1k"] = _megvii_cfg(name)
    for width, size in _KERAS_REPORTED:
        cfgs[f"mobilenet_v1_{width}.keras_r{size}_in1k"] = _keras_cfg(width, size)
    return cfgs
