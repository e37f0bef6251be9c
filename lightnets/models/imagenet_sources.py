"""Who publishes ImageNet weights of our families, under which licence, and how their cfgs are written.

Four sources train MobileNet v1 and ShuffleNet v1 on ImageNet-1k; each family declares the files of
its own in a sibling module (:mod:`~lightnets.models.mobilenet_v1_weights`,
:mod:`~lightnets.models.shufflenet_v1_weights`). A tag names one source's file and builds the network
it was trained with (``model_args``: where a source departs from the paper, a constructor option
reproduces it). The accuracies are the sources' own (each metric's ``reported_by``): there is no
ImageNet here to re-measure them; ``python -m eval --model TAG --dataset imagefolder:PATH`` does it
where there is.

=========  =============================================  =====================================
source     tags                                           how the file is had
=========  =============================================  =====================================
timm       ``mobilenet_v1_{100,125}.timm_in1k``           Hugging Face Hub (safetensors)
pytorchcv  ``mobilenet_v1_*.osmr_in1k``,                  GitHub release ``.pth.zip``, sha1 checked
           ``shufflenet_g*.osmr_in1k``
megvii     ``shufflenet_g{3,8}*.megvii_in1k``             manual download, ``pretrained_path=``
keras      ``mobilenet_v1_*.keras_r{128,160,192,224}``    ``.h5`` URL (no published checksum)
=========  =============================================  =====================================

>>> cfg = pytorchcv_weight("mobilenet_wd4", "v0.0.62", "1ad5e8fe8674cdf7ffda8450095eb96d227397e0", 46.26, 22.49,
...                        source_format="pytorchcv_mobilenet")
>>> cfg.url.rsplit("/", 1)[-1], cfg.license, cfg.metrics.get("top1").value
('mobilenet_wd4-2249-1ad5e8fe.pth.zip', 'mit', 53.74)
"""
from __future__ import annotations

from typing import Any, Optional

from ..weight_cfg import Metric, Metrics, WeightCfg

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "SOURCES", "imagenet_weight",
           "pytorchcv_weight", "reported_accuracy"]

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


def reported_accuracy(top1: float, top5: float, reported_by: str) -> Metrics:
    """A source's own ImageNet top-1 / top-5 (%), quoted, not measured here."""
    return Metrics((Metric("top1", top1, reported_by=reported_by), Metric("top5", top5, reported_by=reported_by)))


def imagenet_weight(source: str, **fields: Any) -> WeightCfg:
    """The cfg of one of ``source``'s ImageNet-1k weights: its licence, the dataset and 1000 classes, and ``fields``."""
    return WeightCfg(
        source=source, license=SOURCES[source]["license"], dataset="imagenet-1k", num_classes=1000, **fields
    )


# pytorchcv's GitHub releases: the file name carries the top-5 error × 100 and the sha1's first 8 digits
# (pytorchcv/models/common/model_store.py).
_OSMR_RELEASES = "https://github.com/osmr/imgclsmob/releases/download"


def pytorchcv_weight(source_name: str, release: str, sha1: str, top1_err: float, top5_err: float, source_format: str,
                     model_args: Optional[dict[str, Any]] = None) -> WeightCfg:
    """A pytorchcv ``.pth.zip`` release: its name in pytorchcv, release tag, the sha1 of the .pth, and the (top-1,
    top-5) error of that .pth as imgclsmob's PyTorch results table reports it
    (pytorchcv/models/common/model_metainfos.csv has the same sha1 and top-5 error)."""
    file_name = f"{source_name}-{round(top5_err * 100):04d}-{sha1[:8]}.pth"
    return imagenet_weight(
        "pytorchcv",
        url=f"{_OSMR_RELEASES}/{release}/{file_name}.zip",
        sha1=sha1,  # of the .pth inside the zip, as pytorchcv's model store checks it
        source_name=source_name,
        source_format=source_format,
        model_args=model_args or {},
        mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875, interpolation="bilinear",
        metrics=reported_accuracy(round(100 - top1_err, 2), round(100 - top5_err, 2),
                                  "imgclsmob's PyTorch results table (pytorchcv's weight file)"),
    )
