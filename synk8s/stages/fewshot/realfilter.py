"""Real filter (RF): drop synthetic images whose nearest real few-shot image belongs to another class.

The rule, applied after the CLIP filter (CF) to the images CF kept: let ``f`` be the L2-normalised
CLIP image feature of a synthetic image generated for class ``c``, and ``r_j`` those of the N x M real
shots of the saved split. With cosine similarities ``s_j = f . r_j``:

* ``same = max over shots j of class c of s_j`` (the nearest real image of the intended class),
* ``other = max over shots j of any other class of s_j`` (the nearest real image of another class),

and the image is **dropped when ``other > same``**, i.e. when its nearest real few-shot feature is of
another class; a tie keeps it. With a single class nothing is dropped. The rule has no threshold.

Outputs under ``out``, in the filter stage's formats so tuning reads either: ``selection.safetensors``
(``scores`` (N,) the CF confidences unchanged, ``kept`` (M,) int64 rows kept by CF and RF, ascending,
``teacher_logits`` (M, K) CF's teacher logits of those rows), ``stats.json`` (per class: CF-kept,
kept, dropped, mean ``same`` and mean ``other`` over the CF-kept images, the classes the dropped
images were nearest to; totals) and ``manifest.json``.

    result = realfilter.run(cfg, split="runs/x/split", features="runs/x/features",
                            selection="runs/x/filter", out="runs/x/realfilter")
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import MissingDataError
from synk8s.stages.zeroshot.filter import load_selection
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class RealFilterResult(BaseModel):
    """What :func:`run` wrote.

    Attributes:
        selection: URI of ``selection.safetensors``.
        stats: URI of ``stats.json``.
        manifest: URI of ``manifest.json``.
        generated: synthetic images scored by CF (N).
        cf_kept: images CF kept (the input of RF).
        kept: images kept by CF and RF.
        dropped: images RF dropped.
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    selection: str
    stats: str
    manifest: str
    generated: int
    cf_kept: int
    kept: int
    dropped: int
    seconds: float


def nearest_similarities(
    syn: torch.Tensor, syn_labels: torch.Tensor, real: torch.Tensor, real_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest real similarity of each synthetic image within its class and outside it.

    Args:
        syn: (M, D) L2-normalised synthetic features.
        syn_labels: (M,) intended classes.
        real: (R, D) L2-normalised real few-shot features.
        real_labels: (R,) their classes.

    Returns:
        ``same`` (M,) float32: the largest cosine similarity to a real shot of the intended class
        (-inf when the class has no shot); ``other`` (M,): the largest to a shot of another class
        (-inf when there is none); ``nearest_class`` (M,) int64: the class of the most similar shot
        of another class (-1 when there is none).
    """
    import torch

    sims = syn.float() @ real.float().T  # (M, R)
    mine = syn_labels.view(-1, 1) == real_labels.view(1, -1)  # (M, R)
    neg_inf = torch.tensor(float("-inf"))
    same = torch.where(mine, sims, neg_inf).max(dim=1).values  # (M,)
    other_sims = torch.where(mine, neg_inf, sims)  # (M, R)
    other, where = other_sims.max(dim=1)  # (M,), (M,)
    nearest_class = torch.where(torch.isinf(other), torch.tensor(-1), real_labels[where])
    return same, other, nearest_class.long()


def keep_mask(same: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """RF's rule: keep unless the nearest real shot of another class is strictly nearer. (M,) bool."""
    return ~(other > same)


def class_stats(
    labels: torch.Tensor,
    keep: torch.Tensor,
    same: torch.Tensor,
    other: torch.Tensor,
    nearest_class: torch.Tensor,
    classnames: Sequence[str],
) -> list[dict[str, Any]]:
    """Per-class RF statistics over the CF-kept images (all tensors (M,), in the same order).

    Returns:
        One dict per class: ``class_index``, ``class_name``, ``cf_kept``, ``kept``, ``dropped``,
        ``mean_nearest_same`` and ``mean_nearest_other`` (None when the class has no image or no such
        shot), ``dropped_nearest_to`` (up to three ``{"class_index", "class_name", "count"}``).
    """
    import torch

    stats = []
    for c, name in enumerate(classnames):
        mine = labels == c
        dropped = mine & ~keep
        same_c, other_c = same[mine], other[mine]
        counts = Counter(nearest_class[dropped].tolist())
        nearest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        stats.append(
            {
                "class_index": c,
                "class_name": name,
                "cf_kept": int(mine.sum()),
                "kept": int((mine & keep).sum()),
                "dropped": int(dropped.sum()),
                "mean_nearest_same": float(same_c.mean()) if len(same_c) and torch.isfinite(same_c).all() else None,
                "mean_nearest_other": float(other_c.mean()) if len(other_c) and torch.isfinite(other_c).all() else None,
                "dropped_nearest_to": [{"class_index": k, "class_name": classnames[k], "count": n} for k, n in nearest],
            }
        )
    return stats


def _synthetic(features: str, selection: str) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """The synthetic features (N, D) and labels (N,), and CF's scores (N,), kept rows (M,) and teacher logits (M, K).

    Raises:
        MissingDataError: the selection does not score the images of the features.
    """
    from synk8s.stages.zeroshot.feature_sets import load_feature_set

    feats, labels = load_feature_set(features, "synthetic")
    sel = load_selection(selection)
    scores, cf_kept, teacher = sel["scores"], sel["kept"].long(), sel["teacher_logits"]
    if len(scores) != len(labels) or (len(cf_kept) and int(cf_kept.max()) >= len(labels)):
        raise MissingDataError(
            f"the selection in {selection} scores {len(scores)} images, the features in {features} hold "
            f"{len(labels)}; run filter and features on the same images"
        )
    return feats, labels, (scores, cf_kept, teacher)


def run(
    cfg: ExperimentConfig, *, split: str, features: str, selection: str, out: str, progress: bool = True
) -> RealFilterResult:
    """Apply RF to the images the CLIP filter kept and write a selection in the filter's format.

    Args:
        cfg: the run's config (dataset, CLIP model for the real shots' features, store root for the cache).
        split: output folder of the split stage.
        features: output folder of the features stage (its synthetic features).
        selection: output folder of the filter stage (CF).
        out: this stage's output folder URI.
        progress: show a progress bar while the real shots are encoded.

    Raises:
        MissingDataError: an input is missing, or the selection does not match the features.
        UsageError: the split is of another dataset.
    """
    from safetensors.torch import save

    from synk8s.runs import write_manifest
    from synk8s.stages.fewshot.split import load_split, shot_features

    start = time.monotonic()
    info = datasets.info(cfg.dataset)
    shots = load_split(split)
    feats, labels, (scores, cf_kept, teacher) = _synthetic(features, selection)
    real = shot_features(cfg, shots, progress=progress)  # (R, D) in split order

    same, other, nearest_class = nearest_similarities(feats[cf_kept], labels[cf_kept], real.features, real.labels)
    keep = keep_mask(same, other)  # (M,)
    kept = cf_kept[keep]

    selection_uri = storage.join(out, "selection.safetensors")
    storage.put_bytes(
        selection_uri,
        save(
            {"scores": scores.contiguous(), "kept": kept.contiguous(), "teacher_logits": teacher[keep].contiguous()},
            metadata={"split_digest": shots.digest},
        ),
    )
    stats = class_stats(labels[cf_kept], keep, same, other, nearest_class, info.classes)
    dropped = len(cf_kept) - len(kept)
    stats_uri = storage.join(out, "stats.json")
    storage.put_json(
        stats_uri,
        {
            "rule": "drop when the nearest real shot of another class is more similar than the nearest of its own",
            "split_digest": shots.digest,
            "cf_kept": len(cf_kept),
            "kept": len(kept),
            "dropped": dropped,
            "classes": stats,
        },
    )
    seconds = time.monotonic() - start
    logger.info("real filter kept %d of %d CF-kept images", len(kept), len(cf_kept))
    manifest = write_manifest(
        out,
        "realfilter",
        cfg,
        counts={"generated": len(labels), "cf_kept": len(cf_kept), "kept": len(kept), "dropped": dropped},
        inputs={"split": split, "features": features, "selection": selection},
        split_digest=shots.digest,
        real_features=real.uri,
        seconds=seconds,
    )
    return RealFilterResult(
        selection=selection_uri,
        stats=stats_uri,
        manifest=manifest,
        generated=len(labels),
        cf_kept=len(cf_kept),
        kept=len(kept),
        dropped=dropped,
        seconds=seconds,
    )


# CLIP encodes the N x M real shots (16,000 for 16-shot ImageNet) unless the feature cache has them.
# Its rule has no setting: its folder depends only on what it reads (split, features, CF selection).
STAGE = StageSpec(
    name="realfilter",
    run=run,
    help="Real filter (RF): drop CF-kept images whose nearest real shot (CLIP cosine) is of another class.",
    inputs={"split": "split", "features": "features", "selection": "filter"},
    gpu=True,
    resources=Resources("4", "8", "16Gi", "32Gi"),
    outputs={"selection.safetensors": load_selection, "stats.json": None},
)
