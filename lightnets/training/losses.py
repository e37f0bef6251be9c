"""Training losses beyond cross-entropy: knowledge distillation, and the logits of a teacher ensemble."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss", "ensemble_logits"]


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 4.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015, arXiv 1503.02531): α·T²·KL(p_T ‖ q_T) + (1 − α)·CE(q, y).

    p_T and q_T are the teacher's and student's softmax at temperature T; the T² keeps the soft
    term's gradients on the scale of the hard term's as T changes (Section 2 of the paper).

    >>> s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    >>> round(distillation_loss(s, t, torch.tensor([0]), alpha=1.0).item(), 6)  # same logits: no soft loss
    0.0
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * temperature**2
    hard = F.cross_entropy(student_logits, targets, label_smoothing=label_smoothing)
    return alpha * soft + (1.0 - alpha) * hard


def ensemble_logits(member_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Logits of an ensemble that averages its members' probabilities: log(mean_i softmax(z_i)).

    Their softmax is the ensemble's averaged prediction, so a distillation teacher made of several models
    teaches that average (at temperature T, softened as one model's logits are). One member's logits are
    returned as they are: the soft targets are the same either way.

    >>> ensemble_logits([torch.tensor([[0.0, 50.0]]), torch.tensor([[50.0, 0.0]])]).softmax(-1)
    tensor([[0.5000, 0.5000]])
    """
    if not member_logits:
        raise ValueError("an ensemble needs at least one member's logits")
    if len(member_logits) == 1:
        return member_logits[0]
    log_probs = torch.stack([F.log_softmax(logits.float(), dim=-1) for logits in member_logits])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(member_logits))
