"""Pretrained weights: resolve, download, verify, convert, adapt and load them.

``create_model(name, pretrained=True)`` calls :func:`load_pretrained`: the weight is found
(:mod:`~lightnets.pretrained.download`: an explicit path, the bundled ``weights/`` listed in
:mod:`~lightnets.pretrained.manifest`, the Hugging Face Hub, a URL), its sha256 verified, converted from
its publisher's layout (:mod:`~lightnets.pretrained.convert`), fitted to the model's input channels and
classes (:mod:`~lightnets.pretrained.adapt`) and loaded (:mod:`~lightnets.pretrained.load`). A weight
folder describes itself in its config.json (:mod:`~lightnets.pretrained.folder_config`); every cfg is a
:class:`~lightnets.weight_cfg.WeightCfg` here, and its plain dict at the public functions.
Writing and publishing weights is :mod:`lightnets.publish`'s job.

>>> import lightnets
>>> from lightnets.pretrained import load_pretrained
>>> model = load_pretrained(lightnets.create_model("smallcnn_3x2.fmnist"))
>>> model.num_classes, model.in_chans
(10, 1)
"""
from .adapt import adapt_input_conv, adapt_state_dict
from .convert import convert_state_dict
from .download import ChecksumError, WeightsUnavailableError, resolve_weights, sha256sum
from .load import folder_cfg, hub_repo_cfg, load_checkpoint, load_pretrained, read_config
from .manifest import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME

__all__ = [
    "folder_cfg",
    "hub_repo_cfg",
    "load_pretrained",
    "load_checkpoint",
    "read_config",
    "resolve_weights",
    "sha256sum",
    "ChecksumError",
    "WeightsUnavailableError",
    "adapt_input_conv",
    "adapt_state_dict",
    "WEIGHTS_NAME",
    "CONFIG_NAME",
    "CARD_NAME",
    "convert_state_dict",
]
