"""Feature distillation: the student matches chosen feature maps of a teacher, read through timm's
``forward_intermediates``, next to (or instead of) the soft targets of :func:`distillation_loss`.

* ``"hint"`` — FitNets (Romero et al. 2015, arXiv 1412.6550, Eq. 3): ‖u_h(x) − r(v_g(x))‖², the teacher's
  hint map u_h against the student's guided map v_g through a regressor r, here a 1×1 conv where the
  widths differ (identity where they agree); averaged over the elements of each map and divided by the
  teacher map's mean square (:func:`hint_loss`), so that the weight does not depend on the maps' scale.
* ``"attention"`` — attention transfer (Zagoruyko and Komodakis 2017, arXiv 1612.03928, Eq. 2):
  ‖Q_S/‖Q_S‖₂ − Q_T/‖Q_T‖₂‖² with Q = mean_c |A_c|² (p = 2) flattened per image, averaged over
  positions; no adapter, the channel mean makes widths irrelevant.

The maps are paired by index into each model's ``feature_info``; by default, for every downsampling
factor (``reduction``) both models have, the deepest map at it (the ends of the stages, as attention
transfer pairs the groups of a ResNet). Maps whose sizes differ are average-pooled to the smaller.

>>> import lightnets
>>> student = lightnets.create_model("mobilenet_v1_025", small_input=True, in_chans=1, img_size=28)
>>> teacher = lightnets.create_model("mobilenet_v1_050", small_input=True, in_chans=1, img_size=28)
>>> distill = FeatureDistillation(student, teacher, "hint")
>>> distill.pairs, distill.adapters[-1]
([(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)], Conv2d(256, 512, kernel_size=(1, 1), stride=(1, 1), bias=False))
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FEATURE_LOSSES", "FeatureDistillation", "FeatureStudent", "hint_loss", "attention_loss", "attention_map"]

FEATURE_LOSSES = ("hint", "attention")
# The paper's attention weight β/2 = 500 suits its 32×32 to 8×8 CIFAR maps. Averaged over positions, the
# term grows as the maps shrink (a unit-norm map of 2×2 positions has entries near ½), and on 28×28 inputs,
# whose maps go down to 2×2, 500 made a fine-tune at lr 0.01 oscillate where 50 converged
# (tests/training/test_feature_distillation.py's short run): 50 is the default here.
DEFAULT_WEIGHTS = {"hint": 1.0, "attention": 50.0}


def hint_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """FitNets' hint term for one pair of equal-shape maps: the mean of (student − teacher)², divided by the mean
    of teacher², so that one weight serves maps of any scale (a deep map's activations can be a hundred
    times a shallow one's, and a raw L2 term of weight 1 swamped the labels: seven fine-tuning steps took a
    pruned mobilenet_v1_050.fmnist from 44% to 43% where the labels alone took it to 89%).

    >>> hint_loss(torch.full((1, 2, 2, 2), 3.0), torch.full((1, 2, 2, 2), 2.0)).item()  # 1 / 4
    0.25
    """
    teacher_map = teacher_map.float()
    return F.mse_loss(student_map.float(), teacher_map) / teacher_map.pow(2).mean().clamp_min(1e-12)


def attention_map(feature_map: torch.Tensor) -> torch.Tensor:
    """Attention transfer's spatial map of one feature map (N, C, H, W): Q = mean over channels of A², flattened
    and scaled to unit L2 norm per image, (N, H·W).

    >>> attention_map(torch.tensor([[[[3.0, 0.0]], [[0.0, 4.0]]]]))  # Q = (4.5, 8), normalised
    tensor([[0.4903, 0.8716]])
    """
    return F.normalize(feature_map.float().pow(2).mean(1).flatten(1), dim=1)


def attention_loss(student_map: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Attention transfer's term for one pair of maps of equal spatial size: mean of (Q_S − Q_T)² over images and
    positions, Q the unit-norm attention maps (:func:`attention_map`); the widths may differ.

    >>> round(attention_loss(torch.ones(1, 4, 1, 2), torch.tensor([[[[1.0, 0.0]]]])).item(), 4)  # (√½ − 1)², (√½)²
    0.2929
    """
    return (attention_map(student_map) - attention_map(teacher_map)).pow(2).mean()


def _to_common_size(student_map: torch.Tensor, teacher_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    size = (min(student_map.shape[2], teacher_map.shape[2]), min(student_map.shape[3], teacher_map.shape[3]))
    if tuple(student_map.shape[2:]) != size:
        student_map = F.adaptive_avg_pool2d(student_map, size)
    if tuple(teacher_map.shape[2:]) != size:
        teacher_map = F.adaptive_avg_pool2d(teacher_map, size)
    return student_map, teacher_map


def _feature_info(model: nn.Module, role: str) -> list[dict]:
    info = getattr(model, "feature_info", None)
    info = getattr(info, "info", info)  # timm's FeatureInfo holds a list
    if not info or not hasattr(model, "forward_intermediates"):
        raise ValueError(f"feature distillation reads the {role}'s maps through forward_intermediates and its "
                         f"feature_info; {type(model).__name__} has no such API (a lightnets or timm model has)")
    return list(info)


class FeatureDistillation(nn.Module):
    """The feature term of a distillation run: which student and teacher maps are paired, the 1×1 adapters
    (``"hint"`` where widths differ; they train with the student and are dropped after) and the loss.

    Args:
        student: the model being trained (its ``feature_info`` as it is now, e.g. after pruning).
        teacher: the model whose maps are matched; kept out of this module's parameters and state.
        kind: ``"hint"`` (FitNets) or ``"attention"`` (attention transfer).
        pairs: (student index, teacher index) into the two ``feature_info`` lists; default: per common
            reduction, the deepest map at it.
        weight: the term's weight in the loss; default 1 for hints, 50 for attention (see ``DEFAULT_WEIGHTS``).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, kind: str = "hint",
                 pairs: Optional[Sequence[tuple[int, int]]] = None, weight: Optional[float] = None) -> None:
        super().__init__()
        if kind not in FEATURE_LOSSES:
            raise ValueError(
                f"feature distillation kind must be one of {', '.join(map(repr, FEATURE_LOSSES))}, got {kind!r}"
            )
        weight = DEFAULT_WEIGHTS[kind] if weight is None else weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"feature distillation weight must be a finite number > 0, got {weight!r}")
        student_info, teacher_info = _feature_info(student, "student"), _feature_info(teacher, "teacher")
        if pairs is None:
            deepest = {}
            for index, info in enumerate(teacher_info):
                deepest[info["reduction"]] = index
            pairs = [(index, deepest[info["reduction"]]) for index, info in enumerate(student_info)
                     if info["reduction"] in deepest
                     and all(later["reduction"] != info["reduction"] for later in student_info[index + 1:])]
            if not pairs:
                raise ValueError(
                    "the student and the teacher have no feature map at a common reduction "
                    f"({[i['reduction'] for i in student_info]} vs {[i['reduction'] for i in teacher_info]}); "
                    "give pairs=[(student index, teacher index), ...]"
                )
        pairs = [tuple(pair) for pair in pairs]
        for pair in pairs:
            if len(pair) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair) \
                    or not 0 <= pair[0] < len(student_info) or not 0 <= pair[1] < len(teacher_info):
                raise ValueError(f"feature pair {pair!r} must be (student index, teacher index) with the student's in "
                                 f"0..{len(student_info) - 1} and the teacher's in 0..{len(teacher_info) - 1}")
        if len({s for s, _ in pairs}) != len(pairs):
            raise ValueError(f"feature pairs {pairs} use a student map twice")
        self.kind, self.weight, self.pairs = kind, float(weight), sorted(pairs)
        self.adapters = nn.ModuleList(
            nn.Conv2d(student_info[s]["num_chs"], teacher_info[t]["num_chs"], 1, bias=False)
            if kind == "hint" and student_info[s]["num_chs"] != teacher_info[t]["num_chs"] else nn.Identity()
            for s, t in self.pairs)
        self._teacher = [teacher.eval()]  # a list: not a submodule, so neither trained nor saved with the adapters

    @property
    def teacher(self) -> nn.Module:
        """The model whose feature maps the student matches."""
        return self._teacher[0]

    def student_outputs(self, student: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The student's logits and its paired maps, adapted to the teacher's widths, from one forward pass."""
        final, maps = student.forward_intermediates(images, indices=[s for s, _ in self.pairs])
        return student.forward_head(final), [adapter(m) for adapter, m in zip(self.adapters, maps)]

    @torch.no_grad()
    def teacher_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's logits and its paired maps, in pair order, from one forward pass."""
        indices = sorted({t for _, t in self.pairs})
        final, maps = self.teacher.forward_intermediates(images, indices=indices)
        by_index = dict(zip(indices, maps))
        return self.teacher.forward_head(final), [by_index[t] for _, t in self.pairs]

    @torch.no_grad()
    def fit_adapters(
        self, student: nn.Module, images: torch.Tensor, teacher_images: Optional[torch.Tensor] = None
    ) -> None:
        """Set each 1×1 adapter to the least-squares map from the student's channels to the teacher's over
        ``images`` (every position a sample; ``teacher_images``: the same images normalised for the teacher,
        default ``images``), so the hint term starts from its minimum for the student as it
        is: randomly initialised adapters start it far off, and its first gradients then pull the student's
        maps toward a random projection of the teacher's (on a pruned model, 7 steps of that cost 60 points).
        Meant for a trained student (fine-tuning, compression): a randomly initialised one has no features
        worth mapping yet, and FitNets trains its regressor from a random start alongside it."""
        # In training mode, as the term will see the maps (a pruned model's batch statistics can be far from its
        # running ones), with momentum 0 so that the running statistics stay as they are.
        was_training = student.training
        norms = [m for m in student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        student.train()
        try:
            for norm in norms:
                norm.momentum = 0.0
            _, maps = student.forward_intermediates(images, indices=[s for s, _ in self.pairs])
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum
            student.train(was_training)
        _, wanted = self.teacher_outputs(images if teacher_images is None else teacher_images)
        for adapter, student_map, teacher_map in zip(self.adapters, maps, wanted):
            if not isinstance(adapter, nn.Conv2d):
                continue
            student_map, teacher_map = _to_common_size(student_map, teacher_map)
            inputs = student_map.double().transpose(0, 1).flatten(1).T  # (positions, student channels)
            targets = teacher_map.double().transpose(0, 1).flatten(1).T
            normal = inputs.T @ inputs
            energy = float(normal.diagonal().mean())
            if not energy > 0:  # the student's map is all zeros: nothing to fit, the adapter keeps its init
                continue
            normal += 1e-3 * energy * torch.eye(len(normal), dtype=normal.dtype, device=normal.device)
            solution = torch.linalg.solve(normal, inputs.T @ targets)  # (student channels, teacher channels)
            if bool(torch.isfinite(solution).all()):
                adapter.weight.copy_(solution.T[:, :, None, None].to(adapter.weight.dtype))

    def loss(self, student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """The weighted feature term: ``weight`` · Σ over pairs of the hint or attention loss."""
        term = hint_loss if self.kind == "hint" else attention_loss
        total = sum(term(*_to_common_size(s, t)) for s, t in zip(student_maps, teacher_maps))
        return self.weight * total


class FeatureStudent(nn.Module):
    """The student and the adapters as one module, whose forward returns (logits, adapted maps): what DDP or
    ``torch.compile`` wraps when a run distils features, so the adapters' gradients are synchronised too."""

    def __init__(self, student: nn.Module, distillation: FeatureDistillation) -> None:
        super().__init__()
        self.student, self.distillation = student, distillation

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.distillation.student_outputs(self.student, images)
