"""The ImageNet-1k weights published for MobileNet v1: timm's, pytorchcv's and Keras's (TF-slim's).

Each is a :class:`~lightnets.weight_cfg.WeightCfg` keyed ``"name.tag"``; :mod:`~lightnets.models.mobilenet_v1`
declares them as its ``default_cfgs``. Per name, the order is the order of preference for the bare
name's default weight: timm, pytorchcv, Keras (the registry takes the first that builds the bare name's
own network). Who each source is: :mod:`lightnets.models.imagenet_sources`.

>>> cfg = IMAGENET_WEIGHTS["mobilenet_v1_050.keras_r160_in1k"]
>>> cfg.input_size, cfg.model_args["padding"], cfg.metrics.get("top1").value
((3, 160, 160), 'tf', 59.1)
"""
from __future__ import annotations

from ..weight_cfg import WeightCfg
from .imagenet_sources import INCEPTION_MEAN, INCEPTION_STD, imagenet_weight, pytorchcv_weight, reported_accuracy

__all__ = ["IMAGENET_WEIGHTS"]

# --- timm: the Hub repos of timm's ra4 recipe (3600 epochs); (crop_pct, top-1, top-5) @224 from timm's results tables.
_TIMM: dict[str, tuple[str, float, float, float]] = {
    "mobilenet_v1_100": ("timm/mobilenetv1_100.ra4_e3600_r224_in1k", 0.875, 75.382, 92.312),
    "mobilenet_v1_125": ("timm/mobilenetv1_125.ra4_e3600_r224_in1k", 0.9, 76.924, 93.234),
}


def _timm_weight(hub_id: str, crop_pct: float, top1: float, top5: float) -> WeightCfg:
    return imagenet_weight(
        "timm", hf_hub_id=hub_id, source_format="timm_mobilenetv1", model_args={"act_layer": "relu6"},
        mean=INCEPTION_MEAN, std=INCEPTION_STD, crop_pct=crop_pct, interpolation="bicubic",
        metrics=reported_accuracy(top1, top5, "timm's ImageNet results (224 px)"),
    )


# --- pytorchcv: name in pytorchcv, release tag, sha1 of the .pth, (top-1, top-5) error of that .pth.
_OSMR: dict[str, tuple[str, str, str, float, float]] = {
    "mobilenet_v1_025": ("mobilenet_wd4", "v0.0.62", "1ad5e8fe8674cdf7ffda8450095eb96d227397e0", 46.26, 22.49),
    "mobilenet_v1_050": ("mobilenet_wd2", "v0.0.156", "41a21242c95050407df876cfa44bb5d3676aa751", 34.15, 13.55),
    "mobilenet_v1_075": ("mobilenet_w3d4", "v0.0.130", "d801bcaea83885b16a0306b8b77fe314bbc585c3", 30.14, 10.76),
    "mobilenet_v1_100": ("mobilenet_w1", "v0.0.155", "7e1d739f0fd4b95c16eef077c5dc0a5bb1da8ad5", 26.61, 8.95),
}

# --- keras: (width, size) -> (top-1, top-5) accuracy. Keras Applications reports its own evaluation only
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


def _keras_weight(width: str, size: int) -> WeightCfg:
    top1, top5 = _KERAS_REPORTED[width, size]
    reported_by = ("Keras Applications (keras.io)" if (width, size) == ("100", 224)
                   else "TF-slim mobilenet_v1.md (the checkpoint Keras's file was converted from)")
    return imagenet_weight(
        "keras",
        url=f"{_KERAS_BASE}mobilenet_{_KERAS_ALPHA_TEXT[width]}_{size}_tf.h5",
        source_format="keras_mobilenet",
        # TF "SAME" padding, BatchNorm eps 1e-3 and ReLU6, as Keras's MobileNet; its 1×1-conv classifier is
        # the same affine map as our FC.
        model_args={"act_layer": "relu6", "padding": "tf", "bn_eps": 1e-3, "img_size": size},
        input_size=(3, size, size),
        mean=INCEPTION_MEAN, std=INCEPTION_STD, crop_pct=0.875, interpolation="bilinear",
        metrics=reported_accuracy(top1, top5, reported_by),
    )


IMAGENET_WEIGHTS: dict[str, WeightCfg] = {
    **{f"{name}.timm_in1k": _timm_weight(*row) for name, row in _TIMM.items()},
    **{f"{name}.osmr_in1k": pytorchcv_weight(*row, source_format="pytorchcv_mobilenet") for name, row in _OSMR.items()},
    **{f"mobilenet_v1_{width}.keras_r{size}_in1k": _keras_weight(width, size) for width, size in _KERAS_REPORTED},
}
