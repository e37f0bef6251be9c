"""Write weights as Hub-layout folders, index the bundled ones and upload them to the Hugging Face Hub.

A Hub-layout folder is what a Hub model repo holds: ``model.safetensors``, ``config.json`` (timm's
schema, so ``timm.create_model("hf-hub:org/name")`` builds our model) and a ``README.md`` model card.
:func:`save_pretrained` writes one (checking that its recorded arguments rebuild the model),
:func:`build_index` rewrites ``weights/index.json`` from the bundled folders and :func:`push_to_hub`
uploads a folder. Loading them back is :mod:`lightnets.pretrained`'s job. The command line is
``lightnets-weights`` (:mod:`lightnets.cli.weights`).

>>> import tempfile, lightnets
>>> model = lightnets.create_model("mobilenet_v1_025", num_classes=10, small_input=True)
>>> folder = save_pretrained(model, tempfile.mkdtemp(), metrics={"top1": 10.0})
>>> sorted(p.name for p in folder.iterdir())
['README.md', 'config.json', 'model.safetensors']
>>> again = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_path=str(folder),
...                                num_classes=10, small_input=True)
"""
from __future__ import annotations

from .card import model_card, weight_name
from .hub import push_to_hub
from .index import build_index
from .save import check_output_folder, save_pretrained

__all__ = ["save_pretrained", "push_to_hub", "build_index", "check_output_folder", "weight_name", "model_card"]
