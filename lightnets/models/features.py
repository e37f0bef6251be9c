"""timm's ``features_only`` backbones over any lightnets model (what ``create_model(..., features_only=True)``
returns).

>>> from lightnets import create_model
>>> backbone = create_model("mobilenet_v1_025", features_only=True, feature_cls="fx", out_indices=(-1,))
>>> backbone.feature_info.channels()
[256]
"""
from typing import Sequence, Union

import torch  # noqa: F401  (the doctests use it)
from torch import nn

__all__ = ["FEATURE_CLASSES", "feature_extractor"]


# timm's feature extractor classes that work on every lightnets model: "getter" runs forward_intermediates
# (and removes what follows the last map taken), "fx" traces the model with torch.fx and returns the
# outputs of the feature_info modules.
FEATURE_CLASSES = ("getter", "fx")


def feature_extractor(model: nn.Module, out_indices: Union[None, int, Sequence[int]] = None,
                      feature_cls: str = "getter") -> nn.Module:
    """``model`` as timm's ``features_only`` backbone: its forward returns the feature maps ``out_indices``
    picks (None: all), and the layers after the last of them and the head are removed (``feature_cls``
    ``"getter"``) or left out of the traced graph (``"fx"``).

    >>> from lightnets import create_model
    >>> backbone = create_model("mobilenet_v1_050", features_only=True, out_indices=(2, 3, 4))
    >>> backbone.feature_info.channels(), backbone.feature_info.reduction()
    ([128, 256, 512], [8, 16, 32])
    >>> [tuple(m.shape) for m in backbone(torch.zeros(1, 3, 224, 224))]
    [(1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7)]
    """
    if feature_cls not in FEATURE_CLASSES:
        raise ValueError(f"feature_cls must be one of {', '.join(map(repr, FEATURE_CLASSES))}, got {feature_cls!r}")
    try:
        from timm.models._features import FeatureGetterNet
        from timm.models._features_fx import FeatureGraphNet
    except ImportError as error:  # moved or absent in a timm this version does not know
        raise ImportError(
            f"features_only needs timm's FeatureGetterNet and FeatureGraphNet (timm >= 1.0): {error}"
        ) from error
    indices = model.feature_indices(out_indices)  # our error message for a bad index, before timm's assert
    extractor = FeatureGetterNet if feature_cls == "getter" else FeatureGraphNet
    backbone = extractor(model, out_indices=tuple(indices))
    cfg = getattr(model, "pretrained_cfg", {})
    # As timm's pretrained_cfg_for_features: a backbone has no classifier.
    backbone.pretrained_cfg = {
        key: value for key, value in cfg.items() if key not in ("num_classes", "classifier", "global_pool")
    }
    backbone.default_cfg = backbone.pretrained_cfg
    backbone.in_chans = model.in_chans
    return backbone
