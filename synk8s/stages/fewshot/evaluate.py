"""Few-shot final evaluation: top-1 of the zero-shot head, CT w. init and CT w. Syn on the real test set.

This is the only few-shot code that reads the test set, and it runs after both heads were saved
(each from the epoch ``fewshot.select`` picked: the last, or the best on a validation set). Heads trained on cached features are applied to the features stage's
cached test features; heads whose tower also trained (``visual.*`` tensors in the head file) get the
test images encoded again by their own tuned tower, in eval mode (with unfrozen BN, the running
statistics the training batches left).

    result = fewshot_evaluate.run(cfg, features="runs/x/features", tuned="runs/x/fewshot-tune",
                                  out="runs/x/fewshot-evaluate")

Outputs under ``out``: ``metrics.json`` (top-1 in [0, 1] overall and per class for ``zeroshot``,
``ct_init`` and ``ct_syn``; ``selection``: the rule, each head's rule, epoch and validation top-1
(None under ``last``); the split digest, shots, strategy, schedule, and whether the test images are a
drawn stand-in) and ``manifest.json``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.reports.fewshot import write_fewshot_report
from synk8s.runs import write_manifest
from synk8s.stages.fewshot.heads import uses_images
from synk8s.stages.fewshot.tune import FEATURES
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


class FewShotEvaluateResult(BaseModel):
    """What :func:`run` wrote and the headline numbers (top-1 in [0, 1]).

    Attributes:
        metrics: URI of ``metrics.json``.
        manifest: URI of ``manifest.json``.
        test: real test images evaluated.
        standin: True when the test images are a drawn stand-in.
        zeroshot_top1: the zero-shot text head.
        ct_init_top1: CT w. init (real shots only).
        ct_syn_top1: CT w. Syn (real shots + synthetic data).
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    metrics: str
    manifest: str
    test: int
    standin: bool
    zeroshot_top1: float
    ct_init_top1: float
    ct_syn_top1: float
    seconds: float


def _tuned_test_features(cfg: ExperimentConfig, state: dict[str, torch.Tensor], progress: bool) -> torch.Tensor:
    """(T, D) test features from a CLIP tower with the tuned tensors of ``state`` loaded."""
    from synk8s.realdata import ensure_dataset
    from synk8s.stages.fewshot.fit_images import load_encoder_state
    from synk8s.stages.zeroshot.feature_cache import compute_dtype, encode_images
    from synk8s.stages.zeroshot.feature_sets import load_clip_for

    bundle = load_clip_for(cfg)
    load_encoder_state(bundle.model.visual, state)
    info = datasets.info(cfg.dataset)
    test = datasets.load(info, info.test_split, ensure_dataset(cfg))
    return encode_images(
        bundle,
        (image for image, _label in test),
        batch_size=cfg.features.batch_size,
        dtype=compute_dtype(cfg, bundle.device),
        total=len(test),
        desc="test features (tuned tower)",
        progress=progress,
    )


def run(cfg: ExperimentConfig, *, features: str, tuned: str, out: str, progress: bool = True) -> FewShotEvaluateResult:
    """Evaluate the zero-shot head and both few-shot heads on the real test split.

    Args:
        cfg: the run's config (dataset, CLIP model, device, feature batch size).
        features: output folder of the features stage (test features, text head).
        tuned: output folder of the fewshot_tune stage.
        out: this stage's output folder URI.
        progress: show progress bars when test images are encoded again.

    Raises:
        MissingDataError: an upstream output is missing.
    """
    from synk8s.stages.fewshot.heads import VARIANTS
    from synk8s.stages.fewshot.tune import load_tuned
    from synk8s.stages.zeroshot.evaluate import per_class_top1, standin_test_set
    from synk8s.stages.zeroshot.tune import load_feature_set, load_text_head, top1

    start = time.monotonic()
    num_classes = datasets.info(cfg.dataset).num_classes
    test_x, test_y = load_feature_set(features, "test")  # (T, D), (T,)
    weight, bias = load_text_head(features)  # (K, D), (K,)
    logits = {"zeroshot": test_x @ weight.T + bias}  # (T, K)
    about = {}
    selection = {}
    for variant in VARIANTS:
        tensors, meta = load_tuned(tuned, variant)
        about = meta
        selection = {**meta.get("selection", {}), **selection, f"{variant}_val_top1": meta.get("best_val_top1")}
        state = {k: v for k, v in tensors.items() if k.startswith("visual.")}
        x = _tuned_test_features(cfg, state, progress) if state else test_x  # (T, D)
        logits[variant] = x @ tensors["weight"].T + tensors["bias"]
    top = {name: top1(lg, test_y) for name, lg in logits.items()}
    per_class = {name: per_class_top1(lg, test_y, num_classes) for name, lg in logits.items()}
    standin = standin_test_set(features)
    metrics = {
        "dataset": cfg.dataset.name,
        "standin": standin,
        "test": len(test_y),
        "top1": top,
        "per_class_top1": per_class,
        "selection": selection,
        **{k: about.get(k) for k in ("split_digest", "shots", "strategy", "schedule", "inputs", "trainable")},
    }
    metrics_uri = storage.join(out, "metrics.json")
    storage.put_json(metrics_uri, metrics)
    seconds = time.monotonic() - start
    logger.info("few-shot test top-1: %s", {k: round(v, 4) for k, v in top.items()})
    manifest = write_manifest(
        out,
        "fewshot_evaluate",
        cfg,
        counts={"test": len(test_y)},
        inputs={"features": features, "tuned": tuned},
        top1=top,
        standin=standin,
        seconds=seconds,
    )
    return FewShotEvaluateResult(
        metrics=metrics_uri,
        manifest=manifest,
        test=len(test_y),
        standin=standin,
        zeroshot_top1=top["zeroshot"],
        ct_init_top1=top["ct_init"],
        ct_syn_top1=top["ct_syn"],
        seconds=seconds,
    )


# Cached test features need no GPU; a head whose tower trained encodes the test images again with it.
STAGE = StageSpec(
    name="fewshot_evaluate",
    run=run,
    help="Top-1 of the zero-shot head, CT w. init and CT w. Syn on the real test split; the few-shot report.",
    inputs={"features": FEATURES, "tuned": "fewshot_tune"},
    gpu=uses_images,
    shm=uses_images,  # encodes the test images through the tuned tower
    resources=Resources("2", "4", "8Gi", "16Gi"),
    # report.json is the finish hook's, written after the outputs are recorded (as evaluate's run report):
    # listed here it would never be recorded, and a finished run would never count as complete.
    outputs={"metrics.json": None},
    folder="fewshot-evaluate",
    finish=write_fewshot_report,
)
