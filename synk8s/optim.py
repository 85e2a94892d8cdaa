"""Optimiser, learning-rate schedule and losses shared by the classifier-tuning code.

Pure torch, imported lazily by the stages that train something:

    opt = adamw(head.parameters(), lr=2e-3, weight_decay=0.1)
    sched = cosine_schedule(opt, total_steps=300, warmup_steps=10)
    loss = tuning_loss(logits, labels, teacher_logits, soft_weight=0.5, temperature=2.0)
    loss.backward(); grad_norm = clip_and_step(opt, head.parameters(), max_norm=1.0); sched.step()
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def cosine_factor(step: int, *, total_steps: int, warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warmup from ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps, then a
    half cosine from 1 down to 0 at ``total_steps``. Steps at or past ``total_steps`` give 0.

    Args:
        step: index of the optimiser step about to be taken.
        total_steps: number of optimiser steps in the whole run (>= 1).
        warmup_steps: linear warmup steps (0 = no warmup); must be below ``total_steps``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, {total_steps}), got {warmup_steps}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw(params: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with torch's default betas (0.9, 0.999) and eps 1e-8 on every parameter given."""
    import torch

    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step scheduler applying :func:`cosine_factor`; call ``.step()`` after each optimiser step."""
    import torch

    cosine_factor(0, total_steps=total_steps, warmup_steps=warmup_steps)  # validates the arguments
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, total_steps=total_steps, warmup_steps=warmup_steps)
    )


def clip_and_step(
    optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], *, max_norm: float | None
) -> float:
    """Clip the gradients' global L2 norm to ``max_norm`` (None = no clipping), then step.

    Returns:
        The global gradient norm before clipping.
    """
    import torch

    params = [p for p in params if p.grad is not None]
    if max_norm is None:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    return float(norm)


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft labels ``softmax(teacher_logits / temperature)`` over the class axis.

    Args:
        teacher_logits: (N, K) logits of the frozen teacher (the zero-shot text head).
        temperature: T > 0; larger T gives flatter targets.

    Returns:
        (N, K) probabilities, each row summing to 1.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return (teacher_logits / temperature).softmax(dim=-1)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k target_k * log_softmax(logits)_k``.

    Args:
        logits: (N, K) student logits.
        target: (N, K) target probabilities.
    """
    return -(target * logits.log_softmax(dim=-1)).sum(dim=-1).mean()


def tuning_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    *,
    soft_weight: float = 0.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Classifier-tuning loss ``sl * SCE + (1 - sl) * CE``.

    ``soft_weight`` 0 (the CE ablation) needs no teacher and equals plain cross-entropy exactly.

    Args:
        logits: (N, K) student logits.
        labels: (N,) int64 hard labels (the class each image was generated for).
        teacher_logits: (N, K) teacher logits; required when ``soft_weight`` > 0.
        soft_weight: sl in [0, 1], the weight of the soft-target term.
        temperature: T of :func:`soft_targets`.
    """
    import torch.nn.functional as F

    if not 0.0 <= soft_weight <= 1.0:
        raise ValueError(f"soft_weight must be in [0, 1], got {soft_weight}")
    ce = F.cross_entropy(logits, labels)
    if soft_weight == 0.0:
        return ce
    if teacher_logits is None:
        raise ValueError("soft_weight > 0 needs teacher_logits")
    sce = soft_cross_entropy(logits, soft_targets(teacher_logits, temperature))
    return soft_weight * sce + (1.0 - soft_weight) * ce
