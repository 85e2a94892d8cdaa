"""CLIP filter (CF): keep the generated images that CLIP recognises as their intended class.

The confidence of an image is the zero-shot probability of the class it was generated for,
``softmax(logit_scale * f @ W.T)[label]`` with ``f`` its L2-normalised CLIP feature and ``W`` the
text head (see :mod:`synk8s.zeroshot`). An image passes when its confidence is above the
threshold (``filter.threshold``, default 1/K; ``filter.strict: false`` also passes equality).
``filter.keep_per_class`` then keeps N images per class: ``keep_mode: random`` draws N of the
passing images with a seeded generator, ``top`` keeps the N most confident passing ones, and
``fill`` (the official code) draws N of the passing images when at least N pass, else keeps the N
most confident images of the class, passing or not. The teacher logits of the kept images (the soft targets of SCE) are
the zero-shot logits. ``filter.enabled: false`` keeps every image and still writes its logits.

    cfg = config.load("tiny")
    result = filter.run(cfg, images="runs/x/images", out="runs/x/filter")

Outputs under ``out``: ``selection.safetensors`` (``scores`` (N,) float32 for every image in
manifest order, ``kept`` (M,) int64 row indices, ``teacher_logits`` (M, K) float32),
``stats.json`` (per class: generated, kept, mean_confidence, most_confused) and ``manifest.json``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import UsageError
from synk8s.runs import read_manifest
from synk8s.seeds import derive_seed
from synk8s.stages.zeroshot.feature_sets import read_tensors
from synk8s.stages.zeroshot.head_templates import head_templates
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MOST_CONFUSED = 3  # other classes listed per class in stats.json


class FilterResult(BaseModel):
    """What :func:`run` wrote and how many images it kept.

    Attributes:
        selection: URI of ``selection.safetensors``.
        stats: URI of ``stats.json``.
        manifest: URI of ``manifest.json``.
        generated: images scored (N).
        kept: images kept (M).
        threshold: confidence threshold applied, or None when the filter is disabled.
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    selection: str
    stats: str
    manifest: str
    generated: int
    kept: int
    threshold: float | None
    seconds: float


# ----------------------------------------------------------------------------- pure maths


def class_probabilities(features: torch.Tensor, weight: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Zero-shot class probabilities ``softmax(logit_scale * features @ weight.T)``.

    Args:
        features: (N, D) L2-normalised image features.
        weight: (K, D) text head.
        logit_scale: CLIP's exponentiated temperature.

    Returns:
        (N, K) float32 probabilities; rows sum to 1.
    """
    from synk8s.zeroshot import zeroshot_logits

    return zeroshot_logits(features, weight, logit_scale).softmax(dim=-1)


def confidences(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Probability of the intended class: (N, K) probabilities, (N,) labels -> (N,) float32."""
    return probs.gather(1, labels.long().view(-1, 1)).squeeze(1).float()


def resolve_threshold(threshold: float | None, num_classes: int) -> float:
    """The configured threshold, or 1/K when it is None."""
    return 1.0 / num_classes if threshold is None else float(threshold)


def select(
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    threshold: float,
    keep_per_class: int | None,
    keep_mode: str,
    seed: int,
    strict: bool = False,
) -> torch.Tensor:
    """Row indices of the images to keep.

    Args:
        scores: (N,) confidence of each image in its intended class.
        labels: (N,) intended class of each image.
        threshold: minimum confidence; an image with ``score >= threshold`` passes (``>`` when ``strict``).
        keep_per_class: keep this many images per class (at most, except in ``fill`` mode); None keeps
            every passing image.
        keep_mode: ``random`` (a draw seeded by ``seed`` and the class) or ``top`` (highest scores,
            ties to the earlier row) among the passing images; ``fill``: ``random`` when at least N
            pass, else the N highest-scoring images of the class, passing or not.
        seed: seed of the random draw.
        strict: pass only scores above the threshold (the official code's ``>``); default ``>=``.

    Returns:
        (M,) int64 row indices in ascending order.
    """
    import torch

    if keep_mode not in ("random", "top", "fill"):
        raise ValueError(f"keep_mode must be 'random', 'top' or 'fill', got {keep_mode!r}")
    passing = scores > threshold if strict else scores >= threshold  # (N,)
    if keep_per_class is None:
        return passing.nonzero().flatten().long()
    kept = []
    for c in labels.unique(sorted=True).tolist():
        rows = (passing & (labels == c)).nonzero().flatten()  # ascending
        if keep_mode == "fill" and len(rows) < keep_per_class:
            rows = (labels == c).nonzero().flatten()  # too few pass: the top N of the whole class
            order = torch.sort(scores[rows], descending=True, stable=True).indices
            rows = rows[order[:keep_per_class]]
        elif len(rows) > keep_per_class:
            if keep_mode == "top":
                order = torch.sort(scores[rows], descending=True, stable=True).indices
            else:
                gen = torch.Generator().manual_seed(derive_seed(seed, "filter-keep", c))
                order = torch.randperm(len(rows), generator=gen)
            rows = rows[order[:keep_per_class]]
        kept.append(rows)
    return torch.sort(torch.cat(kept)).values.long() if kept else torch.zeros(0, dtype=torch.int64)


def teacher_logits(
    features: torch.Tensor, weight: torch.Tensor, logit_scale: float, kept: torch.Tensor
) -> torch.Tensor:
    """Zero-shot logits of the kept rows: (N, D) features, (K, D) head, (M,) rows -> (M, K) float32."""
    from synk8s.zeroshot import zeroshot_logits

    return zeroshot_logits(features[kept], weight, logit_scale).contiguous()


def class_stats(
    probs: torch.Tensor, labels: torch.Tensor, kept: torch.Tensor, classnames: Sequence[str]
) -> list[dict[str, Any]]:
    """Per-class filter statistics.

    Args:
        probs: (N, K) zero-shot probabilities.
        labels: (N,) intended classes.
        kept: (M,) kept row indices.
        classnames: K class names.

    Returns:
        One dict per class, in class order: ``class_index``, ``class_name``, ``generated``, ``kept``,
        ``mean_confidence`` (of the generated images; None when none) and ``most_confused``: up to
        three other classes CLIP predicted for this class's images, as ``{"class_index",
        "class_name", "count"}``, most frequent first (ties to the lower index).
    """
    import torch

    num_classes = len(classnames)
    labels = labels.long()
    scores = confidences(probs, labels)  # (N,)
    predicted = probs.argmax(dim=1)  # (N,)
    kept_mask = torch.zeros(len(labels), dtype=torch.bool)
    kept_mask[kept] = True
    # confusion[c, p]: images generated for class c that CLIP assigns to class p.
    confusion = torch.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    confusion = confusion.view(num_classes, num_classes)
    stats = []
    for c, name in enumerate(classnames):
        mine = labels == c
        others = confusion[c].clone()
        others[c] = 0
        counts, classes = torch.sort(others, descending=True, stable=True)
        confused = [
            {"class_index": int(p), "class_name": classnames[int(p)], "count": int(n)}
            for n, p in zip(counts[:MOST_CONFUSED].tolist(), classes[:MOST_CONFUSED].tolist(), strict=True)
            if n > 0
        ]
        stats.append(
            {
                "class_index": c,
                "class_name": name,
                "generated": int(mine.sum()),
                "kept": int((mine & kept_mask).sum()),
                "mean_confidence": float(scores[mine].mean()) if mine.any() else None,
                "most_confused": confused,
            }
        )
    return stats


# ----------------------------------------------------------------------------- stage


def _kept(
    cfg: ExperimentConfig, scores: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, float | None]:
    """The rows the ``filter`` settings keep (every row when it is off) and the threshold used (None: off)."""
    import torch

    threshold = resolve_threshold(cfg.filter.threshold, num_classes) if cfg.filter.enabled else None
    if threshold is None:
        return torch.arange(len(labels), dtype=torch.int64), None
    fc = cfg.filter
    kept = select(scores, labels, threshold=threshold, keep_per_class=fc.keep_per_class, keep_mode=fc.keep_mode,
                  seed=cfg.seed, strict=fc.strict)  # fmt: skip
    return kept, threshold


def run(cfg: ExperimentConfig, *, images: str, out: str, progress: bool = True) -> FilterResult:
    """Score every generated image with CLIP and write the selection, teacher logits and stats.

    Args:
        cfg: the run's config (``filter`` section, CLIP model, dataset classes and templates).
        images: the generate stage's output folder.
        out: this stage's output folder URI.
        progress: show progress bars.

    Raises:
        MissingDataError: no collected generation output in ``images``.
        UsageError: the images were generated for another dataset.
    """
    from safetensors.torch import save

    from synk8s.runs import write_manifest
    from synk8s.stages.zeroshot.feature_sets import load_clip_for
    from synk8s.stages.zeroshot.features import synthetic_features
    from synk8s.zeroshot import text_head

    start = time.monotonic()
    info = datasets.info(cfg.dataset)
    num_classes = len(info.classes)

    # 1. Features (through the cache) and the zero-shot head.
    generated_for = read_manifest(images, "generate")["dataset"]
    if generated_for != cfg.dataset.name:
        raise UsageError(
            f"images in {images} were generated for {generated_for}, not {cfg.dataset.name}; "
            f"set dataset.name={generated_for} or generate images for {cfg.dataset.name}"
        )
    bundle = load_clip_for(cfg)
    feats = synthetic_features(cfg, images, bundle=bundle, progress=progress)
    weight = text_head(bundle, info.classes, head_templates(cfg)[0])  # (K, D)
    labels = feats.labels  # (N,)

    # 2. Scores and selection.
    probs = class_probabilities(feats.features, weight, bundle.logit_scale)  # (N, K)
    scores = confidences(probs, labels)  # (N,)
    kept, threshold = _kept(cfg, scores, labels, num_classes)
    teacher = teacher_logits(feats.features, weight, bundle.logit_scale, kept)  # (M, K)

    # 3. Outputs.
    selection_uri = storage.join(out, "selection.safetensors")
    storage.put_bytes(
        selection_uri,
        save(
            {"scores": scores.contiguous(), "kept": kept.contiguous(), "teacher_logits": teacher},
            metadata={"features": feats.uri},  # one entry: several would be written in a random order
        ),
    )
    stats = class_stats(probs, labels, kept, info.classes)
    stats_uri = storage.join(out, "stats.json")
    storage.put_json(stats_uri, {"threshold": threshold, "classes": stats})
    seconds = time.monotonic() - start
    logger.info("filter kept %d of %d images (threshold %s)", len(kept), len(labels), threshold)
    manifest = write_manifest(
        out,
        "filter",
        cfg,
        counts={"generated": len(labels), "kept": len(kept)},
        inputs={"images": images},
        features=feats.uri,
        clip=bundle.identity,
        threshold=threshold,
        seconds=seconds,
    )
    return FilterResult(
        selection=selection_uri,
        stats=stats_uri,
        manifest=manifest,
        generated=len(labels),
        kept=len(kept),
        threshold=threshold,
        seconds=seconds,
    )


def load_selection(selection: str) -> dict[str, torch.Tensor]:
    """The filter stage's ``scores`` (N,), ``kept`` (M,) row indices and ``teacher_logits`` (M, K)."""
    read_manifest(selection, "filter")
    tensors, _ = read_tensors(storage.join(selection, "selection.safetensors"))
    return tensors


# The CLIP image encoder runs over every generated image (and fills the feature cache).
STAGE = StageSpec(
    name="filter",
    run=run,
    help="CLIP filter (CF): keep images CLIP assigns to their class with enough confidence.",
    inputs={"images": "generate"},
    depends=("dataset", "models.clip", "features", "filter"),
    gpu=True,
    shm=True,  # its feature cache decodes on features.workers DataLoader workers
    resources=Resources("4", "8", "16Gi", "32Gi"),
    outputs={"selection.safetensors": load_selection, "stats.json": None},
)
