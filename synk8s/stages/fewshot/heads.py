"""The two few-shot heads, CT w. init and CT w. Syn: their names, selection rules, training settings and data.

Shared by the tuning stage (:mod:`synk8s.stages.fewshot.tune`) and its two training paths, on cached
features (:mod:`.fit_features`) and on images through the tower (:mod:`.fit_images`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError

if TYPE_CHECKING:
    import torch

    from synk8s.stages.fewshot.fit import Hyper
    from synk8s.stages.fewshot.split import FewShotSplit

VARIANTS = ("ct_init", "ct_syn")
RULES = ("last", "real-val", "syn-val")

@dataclass(frozen=True)
class Inputs:
    """The stage's data: kept synthetic rows (train, and validation under ``syn-val``), the split, the head."""

    split: FewShotSplit
    feats: torch.Tensor  # (N, D) every synthetic image
    labels: torch.Tensor  # (N,)
    train_rows: torch.Tensor  # (T,) rows of feats
    val_rows: torch.Tensor  # (V,), empty unless fewshot.select is syn-val
    teacher: dict[int, torch.Tensor]  # row -> (K,) teacher logits of a kept row
    weight: torch.Tensor  # (K, D) text head x logit_scale
    bias: torch.Tensor  # (K,)
    val_seed: int

    def teacher_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(R, K) teacher logits of kept rows ``rows`` (R,)."""
        import torch

        return torch.stack([self.teacher[int(r)] for r in rows])


def head_rules(select: str) -> dict[str, str]:
    """Each head's selection rule under ``fewshot.select``: CT w. init never uses synthetic images.

    Raises:
        UsageError: ``select`` is not ``last``, ``real-val`` or ``syn-val``.
    """
    if select not in RULES:
        raise UsageError(f"fewshot.select must be one of {', '.join(RULES)}, got {select!r}")
    return {"ct_init": "last" if select == "syn-val" else select, "ct_syn": select}


def uses_images(cfg: ExperimentConfig) -> bool:
    """Whether the encoder must run on images: anything but a frozen-BN, head-only run."""
    return cfg.tune.trainable != "head" or not cfg.fewshot.freeze_bn


def hyper_of(cfg: ExperimentConfig) -> Hyper:
    """The loop's settings: ``fewshot`` batch sizes, lr and weights; ``tune`` loss, decay, clipping, warmup."""
    from synk8s.stages.fewshot.fit import Hyper

    fs, tc = cfg.fewshot, cfg.tune
    return Hyper(
        lr=fs.lr,
        weight_decay=tc.weight_decay,
        real_batch_size=fs.real_batch_size,
        syn_batch_size=fs.synthetic_batch_size,
        w_real=fs.w_real,
        w_syn=fs.w_syn,
        soft_weight=tc.soft_weight if tc.loss == "sce" else 0.0,
        temperature=tc.temperature,
        grad_clip=tc.grad_clip,
        warmup_epochs=tc.warmup_epochs,
    )
