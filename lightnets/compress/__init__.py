"""Model compression: conv → depthwise-separable conversion, filter pruning by four criteria, fine-tuning with
distillation.

Every tool returns a new model and leaves its input untouched; every tool works on any model of the
zoo (and on a plain ``nn.Module`` whose forward torch.fx can trace). One concept per module:

* :mod:`~lightnets.compress.separable`: :func:`to_separable` replaces chosen standard k×k convs by
  depthwise k×k + BN + ReLU + pointwise 1×1 (MobileNet v1, Fig. 3), initialised randomly or by a rank-1
  factorisation of each input channel's kernels, so that the converted model starts close to the original.
* :mod:`~lightnets.compress.prune`: :func:`prune_l1` removes the output filters with the smallest L1 norms
  (Li et al. 2017, "Pruning Filters for Efficient ConvNets", arXiv 1608.08710, Sec. 3.1) and rebuilds every
  layer that reads them. Which layers read which channels comes from the forward's data flow, traced with
  torch.fx (:mod:`~lightnets.compress.graph`): BatchNorm, depthwise convs, grouped convs (pruned evenly per
  group), channel shuffles, residual adds (joined filters are kept or removed together, ranked by their
  summed norms), concatenations and the classifier.
* :mod:`~lightnets.compress.criteria`: what ranks the filters — L1 norm, APoZ after the ReLU over
  calibration images (Hu et al. 2016), the LASSO of He et al. 2017 on the next layer's output
  (:mod:`~lightnets.compress.reconstruction`, which also refits those layers by least squares), BatchNorm
  |γ| (network slimming, Liu et al. 2017) — through one entry point, :func:`prune`.
* :mod:`~lightnets.compress.sensitivity`: :func:`sensitivity_scan` prunes one layer at a time (Li et al.,
  Sec. 3.3, Fig. 2b); :func:`iterative_prune` alternates pruning and fine-tuning.
* :mod:`~lightnets.compress.finetuning`: :func:`finetune` trains a model in memory, optionally distilling
  a teacher's soft targets and feature maps (FitNets hints, attention transfer).
* :mod:`~lightnets.compress.cost`: :func:`compare_cost`, params and MACs before and after.

A model saved after any of these loads back through :func:`lightnets.models.restructure.restructure`.

>>> import lightnets
>>> model = lightnets.create_model("smallcnn_3x2", in_chans=1)
>>> separable = to_separable(model, ["features.conv2.conv"])
>>> pruned = prune_l1(model, ratio=0.5)
>>> [compare_cost(model, m, (1, 28, 28)).macs_after for m in (separable, pruned)]
[4445056, 1994240]
"""
from .cost import CostChange, compare_cost
from .finetuning import finetune
from .graph import ChannelGraph
from .criteria import CRITERIA
from .prune import joined_layers, prunable_layers, prune, prune_l1
from .sensitivity import iterative_prune, sensitivity_scan, top1_accuracy
from .separable import rank1_factors, standard_convs, to_separable

__all__ = [
    "CostChange", "compare_cost", "standard_convs", "to_separable", "prunable_layers", "joined_layers",
    "prune", "prune_l1", "CRITERIA", "sensitivity_scan", "iterative_prune", "finetune", "top1_accuracy",
    "rank1_factors", "ChannelGraph",
]
