"""The tune stage's input checks: do the features, text head and selection fit, and which kept rows leaked.

    from synk8s.stages.zeroshot.tune_inputs import check_inputs, drop_leaked
    check_inputs(feats, labels, weight, kept, teacher, features="runs/x/features", selection="runs/x/filter")
    kept, teacher, leaked = drop_leaked(kept, teacher, "runs/x/leakage")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from synk8s.errors import MissingDataError

if TYPE_CHECKING:
    import torch


def check_inputs(
    feats: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    kept: torch.Tensor,
    teacher: torch.Tensor,
    *,
    features: str,
    selection: str,
) -> None:
    """Fail with one line when the features, text head and selection do not belong together."""
    rerun = "rerun `synk8s stage filter` and `synk8s stage features` on the same images"
    n, d = feats.shape
    k = weight.shape[0]
    if weight.shape[1] != d:
        raise MissingDataError(f"text head in {features} has dimension {weight.shape[1]}, features have {d}; {rerun}")
    if len(kept) == 0:
        raise MissingDataError(
            f"the filter at {selection} kept no images; lower filter.threshold or disable the filter"
        )
    if int(kept.max()) >= n or int(kept.min()) < 0:
        raise MissingDataError(
            f"selection at {selection} indexes row {int(kept.max())} of {n} synthetic features; {rerun}"
        )
    if tuple(teacher.shape) != (len(kept), k):
        raise MissingDataError(
            f"teacher logits at {selection} have shape {tuple(teacher.shape)}, expected ({len(kept)}, {k}); {rerun}"
        )
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        raise MissingDataError(f"synthetic labels in {features} fall outside the {k} classes of the text head; {rerun}")


def drop_leaked(kept: torch.Tensor, teacher: torch.Tensor, leakage: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Leave out the kept rows the leakage stage at ``leakage`` flags: (kept, teacher, rows left out)."""
    import torch

    from synk8s.stages.zeroshot.leakage import load_flagged

    clean = ~torch.isin(kept, torch.tensor(load_flagged(leakage), dtype=kept.dtype))  # (M,)
    leaked = int((~clean).sum())
    kept, teacher = kept[clean], teacher[clean]
    if len(kept) == 0:
        raise MissingDataError(
            f"the leakage check at {leakage} flags every image the filter kept; set leakage.drop=false "
            "or raise leakage.clip_threshold"
        )
    return kept, teacher, leaked
