"""Few-shot export stage: both tuned heads of a few-shot run as self-contained classifier folders.

Each head of ``fewshot_tune`` (CT w. init, CT w. Syn) becomes a classifier folder of the zero-shot
export's format (:mod:`synk8s.models.classifier`, written by
:func:`synk8s.stages.zeroshot.export.write_run_classifier`): the run's CLIP image tower, checked
against the weights digest and preprocessing its feature cache recorded, with the tower tensors the
head's tuning trained (``visual.*``, when ``tune.trainable`` is not ``head``) loaded over it; the head;
the class names, preprocessing and provenance (the head, shots, strategy). Its logits are those
``fewshot_evaluate`` scores the test set with. ``synk8s export --head`` copies one out
(:mod:`synk8s.stages.export`)::

    result = fewshot_export.run(cfg, features="runs/x/features", tuned="runs/x/fewshot-tune",
                                out="runs/x/fewshot-export")

Outputs under ``out``: ``ct_init/`` and ``ct_syn/`` (each ``manifest.json``, ``encoder.safetensors``,
``head.safetensors``, ``model.onnx``) and ``manifest.json``.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.models.export_folder import verify_export
from synk8s.runs import write_manifest
from synk8s.stages.fewshot.heads import VARIANTS
from synk8s.stages.fewshot.tune import FEATURES
from synk8s.stagetable.spec import Resources, StageSpec


class FewShotExportResult(BaseModel):
    """What :func:`run` wrote.

    Attributes:
        ct_init: URI of the CT w. init classifier folder.
        ct_syn: URI of the CT w. Syn classifier folder.
        manifest: URI of the stage's ``manifest.json``.
        classes: K, the classes the classifiers score.
        dim: D, the image feature size.
        tuned_tower: whether the heads carry trained tower tensors.
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    ct_init: str
    ct_syn: str
    manifest: str
    classes: int
    dim: int
    tuned_tower: bool
    seconds: float


def run(cfg: ExperimentConfig, *, features: str, tuned: str, out: str, progress: bool = True) -> FewShotExportResult:
    """Write each few-shot head of ``tuned`` into ``<out>/<head>`` (see the module docstring).

    Args:
        cfg: the run's config: ``models.clip``, ``models.cache`` and ``dataset`` (the class names).
        features: output folder of the features stage the heads were tuned on.
        tuned: output folder of the fewshot_tune stage.
        out: this stage's output folder URI.
        progress: part of every stage's signature; export shows no progress bar.

    Raises:
        MissingDataError: an upstream output is missing.
        IntegrityError: the CLIP loaded now is not the one the run encoded its features with.
    """
    from synk8s.stages.fewshot.tune import load_tuned
    from synk8s.stages.zeroshot.export import write_run_classifier
    from synk8s.stages.zeroshot.feature_sets import load_clip_for

    started = time.perf_counter()
    classes = datasets.info(cfg.dataset).classes
    folders, dims, tower = {}, set(), False
    for variant in VARIANTS:
        tensors, about = load_tuned(tuned, variant)
        tower = tower or any(name.startswith("visual.") for name in tensors)
        bundle = load_clip_for(cfg.model_copy(update={"device": "cpu"}))  # fresh weights per head, float32 on the CPU
        folders[variant] = storage.join(out, variant)
        provenance = {"variant": variant, **{k: about.get(k) for k in ("shots", "strategy", "schedule", "inputs")}}
        manifest = write_run_classifier(
            bundle, cfg.models.clip, tensors=tensors, head={"stage": "fewshot_tune", **about}, source=tuned,
            features=features, out=folders[variant], classes=classes, provenance=provenance,
        )  # fmt: skip
        dims.add(int(manifest.head["dim"]))
    seconds = time.perf_counter() - started
    uri = write_manifest(
        out,
        "fewshot_export",
        cfg,
        counts={"classes": len(classes), "dim": max(dims)},
        inputs={"features": features, "tuned": tuned},
        outputs=folders,
        tuned_tower=tower,
        seconds=seconds,
    )
    return FewShotExportResult(
        **folders, manifest=uri, classes=len(classes), dim=max(dims), tuned_tower=tower, seconds=seconds
    )


def load_fewshot_export(out: str) -> list[str]:
    """Both classifier folders' files (``<head>/<file>``), each checked against the SHA-256 its manifest recorded."""
    return sorted(f"{variant}/{name}" for variant in VARIANTS for name in verify_export(storage.join(out, variant)))


# A CPU task, as the zero-shot export: it loads the run's CLIP once per head and traces each to ONNX.
STAGE = StageSpec(
    name="fewshot_export",
    run=run,
    help="Export both few-shot heads (CLIP image tower with its tuned tensors, head, classes; ONNX too) as folders.",
    inputs={"features": FEATURES, "tuned": "fewshot_tune"},
    resources=Resources("1", "2", "4Gi", "8Gi"),
    outputs={"ct_*/*": load_fewshot_export},
    artifact="Model",
    folder="fewshot-export",
)
