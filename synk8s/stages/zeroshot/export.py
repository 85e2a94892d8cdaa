"""Export stage: the run's tuned classifier as a self-contained folder (:mod:`synk8s.models.classifier`).

The folder holds the CLIP image tower the run encoded its features with (checked against the weights
digest and the preprocessing its feature cache recorded), the tuned head of ``tune``, the run's class
names as ``evaluate`` reads them (:func:`synk8s.datasets.info` of the run's dataset, your own label
space included), the preprocessing and the run's provenance. ``synk8s export`` copies it out
(:mod:`synk8s.stages.export`)::

    result = export.run(cfg, features="runs/x/features-...", head="runs/x/tune-...", out="runs/x/export-...")

Outputs under ``out``: ``classifier/`` (``manifest.json``, ``encoder.safetensors``, ``head.safetensors``,
``model.onnx``) and ``manifest.json``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import __version__, datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import IntegrityError
from synk8s.models.export_folder import verify_export
from synk8s.runs import read_manifest, write_manifest
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    import torch

    from synk8s.models.classifier import ClassifierManifest
    from synk8s.models.clip import ClipBundle

logger = logging.getLogger(__name__)

CLASSIFIER = "classifier"  # the classifier folder inside the stage's folder


class ExportResult(BaseModel):
    """What :func:`run` wrote.

    Attributes:
        classifier: URI of the classifier folder.
        manifest: URI of the stage's ``manifest.json``.
        classes: K, the classes the classifier scores.
        dim: D, the image feature size.
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    classifier: str
    manifest: str
    classes: int
    dim: int
    seconds: float


def run(cfg: ExperimentConfig, *, features: str, head: str, out: str, progress: bool = True) -> ExportResult:
    """Write the run's tuned classifier into ``<out>/classifier`` (see the module docstring).

    Args:
        cfg: the run's config: ``models.clip``, ``models.cache`` and ``dataset`` (the class names).
        features: output folder of the features stage (the CLIP identity and feature cache the run used).
        head: output folder of the tune stage.
        out: this stage's output folder URI.
        progress: part of every stage's signature; export shows no progress bar.

    Raises:
        MissingDataError: an upstream output is missing.
        IntegrityError: the CLIP loaded now is not the one the run encoded its features with.
    """
    from synk8s.stages.zeroshot.feature_sets import load_clip_for

    started = time.perf_counter()
    folder = storage.join(out, CLASSIFIER)
    bundle = load_clip_for(cfg.model_copy(update={"device": "cpu"}))  # exported in float32 on the CPU
    manifest = export_classifier(
        bundle, cfg.models.clip, head=head, features=features, out=folder, classes=datasets.info(cfg.dataset).classes
    )
    seconds = time.perf_counter() - started
    dim = int(manifest.head["dim"])
    uri = write_manifest(
        out,
        "export",
        cfg,
        counts={"classes": len(manifest.classes), "dim": dim},
        inputs={"features": features, "head": head},
        outputs={"classifier": folder},
        clip=manifest.encoder.identity,
        seconds=seconds,
    )
    return ExportResult(classifier=folder, manifest=uri, classes=len(manifest.classes), dim=dim, seconds=seconds)


def export_classifier(
    bundle: ClipBundle, clip: str, *, head: str, features: str, out: str, classes: tuple[str, ...]
) -> ClassifierManifest:
    """Write the classifier of a tune folder into ``out``; returns its manifest.

    Args:
        bundle: the run's CLIP model, loaded as its features stage loaded it.
        clip: its registry name (``models.clip``).
        head: the tune stage's folder (its ``head.safetensors`` and manifest).
        features: the features stage's folder the head was tuned on.
        out: the classifier folder URI.
        classes: the run's K class names, in label order.

    Raises:
        IntegrityError: ``bundle`` differs from the CLIP the run encoded its features with.
    """
    from synk8s.stages.zeroshot.tune import load_head

    tensors, about = load_head(head)
    return write_run_classifier(
        bundle, clip, tensors=tensors, head={"stage": "tune", **about}, source=head, features=features, out=out,
        classes=classes,
    )


def write_run_classifier(
    bundle: ClipBundle,
    clip: str,
    *,
    tensors: dict[str, torch.Tensor],
    head: dict[str, Any],
    source: str,
    features: str,
    out: str,
    classes: tuple[str, ...],
    provenance: dict[str, Any] | None = None,
) -> ClassifierManifest:
    """Write the classifier of a tuning stage's head into ``out``; returns its manifest.

    Args:
        bundle: the run's CLIP model, loaded as its features stage loaded it.
        clip: its registry name (``models.clip``).
        tensors: ``weight`` (K, D), ``bias`` (K,) and any ``visual.*`` tensors the tuning trained, which
            replace the tower's after the CLIP was checked against the run's features.
        head: facts about the head for the manifest; ``head["stage"]`` names the stage that wrote ``source``.
        source: the tuning stage's folder (its manifest is read for the run's provenance).
        features: the features stage's folder the head was tuned on.
        out: the classifier folder URI.
        classes: the run's K class names, in label order.
        provenance: more facts about the head's origin for the manifest's provenance.

    Raises:
        IntegrityError: ``bundle`` differs from the CLIP the run encoded its features with, or the
            tuned tower tensors do not fit it.
    """
    from synk8s.models.classifier import write_classifier

    tune = read_manifest(source, head["stage"])
    weights, settings = _check_encoder(bundle, features)
    tuned = {name: t for name, t in tensors.items() if name.startswith("visual.")}
    if tuned:
        unexpected = bundle.model.load_state_dict(tuned, strict=False).unexpected_keys
        if unexpected:
            raise IntegrityError(f"the tuned tower tensors {unexpected[:3]} in {source} do not fit {bundle.identity}")
    run_dir = source.rstrip("/").rsplit("/", 1)[0]
    provenance = {
        "run_id": run_dir.rsplit("/", 1)[-1],
        "run_dir": run_dir,
        "head": source,
        "features": features,
        "config_digest": tune["config_digest"],
        "stage_digest": tune.get("stage_digest"),
        "profile": tune["profile"],
        "dataset": tune["dataset"],
        "seed": tune["seed"],
        "run_synk8s_version": tune["synk8s_version"],
        "synk8s_version": __version__,
        **(provenance or {}),
    }
    logger.info("exporting %s (%d classes) to %s", source, len(classes), out)
    return write_classifier(
        out,
        tower=bundle.model.visual,
        weight=tensors["weight"],
        bias=tensors["bias"],
        classes=classes,
        preprocess=settings,
        encoder={"clip": clip, "identity": bundle.identity, "weights_digest": weights, "open_clip": _open_clip()},
        head={**head, "dim": int(tensors["weight"].shape[1])},
        provenance=provenance,
    )


def _check_encoder(bundle: ClipBundle, features: str) -> tuple[str, dict[str, Any]]:
    """The weights digest and preprocessing of ``bundle``, checked against the run's synthetic feature cache entry."""
    from synk8s.models.clip import eval_transform, preprocess_settings, weights_digest
    from synk8s.stages.zeroshot.feature_cache import entry_info
    from synk8s.stages.zeroshot.feature_keys import describe_preprocess

    listed = read_manifest(features, "features")["feature_sets"]["synthetic"]["uri"]
    parts = entry_info(listed)["parts"]
    weights, settings = weights_digest(bundle.model), preprocess_settings(bundle)
    if weights != parts["weights"]:
        raise IntegrityError(
            f"the CLIP weights loaded now ({bundle.identity}, digest {weights[:12]}...) are not the ones the run "
            f"encoded its features with (digest {parts['weights'][:12]}...); set models.cache to the run's cache"
        )
    if describe_preprocess(eval_transform(settings)) != parts["preprocess"]:
        raise IntegrityError(f"the preprocessing of {bundle.identity} differs from the one the run's features used")
    return weights, settings


def _open_clip() -> str:
    import open_clip

    return open_clip.__version__


def load_export(out: str) -> list[str]:
    """The files of the stage's classifier folder, each checked against the SHA-256 its manifest recorded."""
    return verify_export(storage.join(out, CLASSIFIER))


# A CPU task: it loads the run's CLIP once, checks it against the feature cache and traces it to ONNX.
STAGE = StageSpec(
    name="export",
    run=run,
    help="Export the tuned classifier (CLIP image tower, head, preprocessing, classes; ONNX too) as a folder.",
    inputs={"features": "features", "head": "tune"},
    resources=Resources("1", "2", "4Gi", "8Gi"),
    outputs={f"{CLASSIFIER}/*": load_export},
    artifact="Model",
)
