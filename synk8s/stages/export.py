"""Export: a run's tuned classifier as a self-contained folder, and a pre-training run's backbone.

The stage writes the zero-shot run's classifier (:mod:`synk8s.models.classifier`) into its folder:
the CLIP image tower the run encoded its features with (checked against the weights digest and the
preprocessing its feature cache recorded), the tuned head of ``tune``, the run's class names (as
``evaluate`` reads them, from the run's dataset) and its provenance. ``synk8s export FOLDER -o DIR``
(:func:`export_folder`) copies such a folder out, or exports straight from a run's ``tune`` or
``evaluate`` folder, or writes a pre-training run's trunk as a torchvision ``state_dict``::

    result = export.run(cfg, features="runs/x/features-...", head="runs/x/tune-...", out="runs/x/export-...")
    export_folder("store/runs/cifar10-46c0...", "exports/cifar10")

Outputs under ``out``: ``classifier/`` (``manifest.json``, ``encoder.safetensors``, ``head.safetensors``,
``model.onnx``) and ``manifest.json``. A backbone export holds ``backbone.pth`` (``torch.save`` of the
trunk's ``state_dict`` in torchvision's ResNet names, without ``fc.weight`` and ``fc.bias``: the
pre-training head is not part of the trunk) and ``manifest.json``.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from synk8s import __version__, datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import IntegrityError, MissingDataError, UsageError
from synk8s.models.export_folder import MANIFEST, read_export_manifest, read_verified
from synk8s.runs import read_manifest, write_manifest
from synk8s.stages.spec import Resources, StageSpec

if TYPE_CHECKING:
    from synk8s.models.classifier import ClassifierManifest

logger = logging.getLogger(__name__)

CLASSIFIER = "classifier"  # the classifier folder inside the stage's folder
BACKBONE_FILE = "backbone.pth"
BACKBONE_FORMAT = "synk8s-backbone/1"
_SOURCES = ("export", "tune", "pretrain")  # what a run folder is searched for, in this order


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
        cfg: the run's config: ``models.clip``, ``models.cache`` and ``dataset.name`` (the class names).
        features: output folder of the features stage (the CLIP identity and feature cache the run used).
        head: output folder of the tune stage.
        out: this stage's output folder URI.
        progress: part of every stage's signature; export shows no progress bar.

    Raises:
        MissingDataError: an upstream output is missing.
        IntegrityError: the CLIP loaded now is not the one the run encoded its features with.
    """
    started = time.perf_counter()
    folder = storage.join(out, CLASSIFIER)
    manifest = export_classifier(
        head=head,
        features=features,
        out=folder,
        clip=cfg.models.clip,
        cache=cfg.models.cache,
        classes=datasets.get(cfg.dataset.name).classes,
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
    *, head: str, features: str, out: str, clip: str, cache: str | None, classes: Sequence[str]
) -> ClassifierManifest:
    """Write the classifier of a tune folder into ``out``; returns its manifest (``ClassifierManifest``).

    Args:
        head: the tune stage's folder (its ``head.safetensors`` and manifest).
        features: the features stage's folder the head was tuned on.
        out: the classifier folder URI.
        clip: the CLIP registry name of the run (``models.clip``).
        cache: the run's model cache (``models.cache``), where its CLIP weights came from; None: the hub.
        classes: the run's K class names, in label order.

    Raises:
        IntegrityError: the CLIP loaded now differs from the one the run encoded with.
    """
    from synk8s.models import load_clip
    from synk8s.models.classifier import write_classifier
    from synk8s.stages.features import CLIP_WEIGHT_SEED
    from synk8s.stages.tune import load_head

    tensors, about = load_head(head)
    tune = read_manifest(head, "tune")
    bundle = load_clip(clip, cache=cache, seed=CLIP_WEIGHT_SEED)
    weights, settings = _check_encoder(bundle, features)
    provenance = {
        "run_id": _parent(head).rsplit("/", 1)[-1],
        "run_dir": _parent(head),
        "head": head,
        "features": features,
        "config_digest": tune["config_digest"],
        "stage_digest": tune.get("stage_digest"),
        "profile": tune["profile"],
        "dataset": tune["dataset"],
        "seed": tune["seed"],
        "run_synk8s_version": tune["synk8s_version"],
        "synk8s_version": __version__,
    }
    logger.info("exporting %s (%d classes) to %s", head, len(classes), out)
    return write_classifier(
        out,
        tower=bundle.model.visual,
        weight=tensors["weight"],
        bias=tensors["bias"],
        classes=classes,
        preprocess=settings,
        encoder={"clip": clip, "identity": bundle.identity, "weights_digest": weights, "open_clip": _open_clip()},
        head={"stage": "tune", "dim": int(tensors["weight"].shape[1]), **about},
        provenance=provenance,
    )


def _check_encoder(bundle: Any, features: str) -> tuple[str, dict[str, Any]]:
    """The weights digest and preprocessing of ``bundle``, checked against the run's test feature cache entry."""
    from synk8s.models.clip import eval_transform, preprocess_settings, weights_digest
    from synk8s.stages.feature_cache import entry_info
    from synk8s.stages.feature_keys import describe_preprocess

    listed = read_manifest(features, "features")["feature_sets"]["test"]["uri"]
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


def _parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def load_export(out: str) -> list[str]:
    """The files of the stage's classifier folder, each checked against the SHA-256 its manifest recorded."""
    folder = storage.join(out, CLASSIFIER)
    body = read_export_manifest(folder)
    for name, sha in body["files"].items():
        storage.verify(storage.join(folder, name), sha)
    return sorted(body["files"])


# ----------------------------------------------------------------------------- backbone


def export_backbone(pretrain: str, out: str) -> dict[str, Any]:
    """Write a pre-training run's trunk into ``out`` as ``backbone.pth`` and ``manifest.json``; returns the manifest.

    ``backbone.pth`` is ``torch.save`` of the trunk's ``state_dict`` in torchvision's ResNet names. A
    ``resnet50`` trunk loads into ``torchvision.models.resnet50()`` with ``load_state_dict(state,
    strict=False)``, whose only missing keys are ``fc.weight`` and ``fc.bias``: the head of the
    pre-training (a label-space classifier, or MoCo's projection) is not part of the trunk.

    Raises:
        MissingDataError: ``pretrain`` holds no finished pre-training.
        IntegrityError: the trunk differs from what the pre-training wrote.
    """
    import torch

    from synk8s.stages.pretrain import load_backbone

    state, meta = load_backbone(pretrain)
    stage = read_manifest(pretrain, "pretrain")
    buffer = io.BytesIO()
    torch.save(dict(sorted(state.items())), buffer)
    storage.delete(storage.join(out, MANIFEST))
    sha = storage.put_bytes(storage.join(out, BACKBONE_FILE), buffer.getvalue()).sha256
    body = {
        "format": BACKBONE_FORMAT,
        "backbone": meta["backbone"],
        "torchvision": "resnet50" if meta["backbone"] == "resnet50" else None,
        "missing_keys": ["fc.weight", "fc.bias"],
        "meta": meta,
        "provenance": {
            "run_id": _parent(pretrain).rsplit("/", 1)[-1],
            "pretrain": pretrain,
            "config_digest": stage["config_digest"],
            "stage_digest": stage.get("stage_digest"),
            "run_synk8s_version": stage["synk8s_version"],
            "synk8s_version": __version__,
        },
        "files": {BACKBONE_FILE: sha},
    }
    storage.put_json(storage.join(out, MANIFEST), body)
    return body


# ----------------------------------------------------------------------------- synk8s export


def export_folder(folder: str, out: str) -> str:
    """Export what ``folder`` holds into ``out``: ``classifier`` or ``backbone``, the kind written.

    ``folder`` is a run folder (its one ``export-*``, else its one ``tune-*``, else its one
    ``pretrain-*`` folder is exported), one of those stage folders, an ``evaluate-*`` folder (its tune
    folder), or an export folder (copied, every file checked).

    Raises:
        MissingDataError: nothing to export at ``folder``.
        UsageError: ``folder`` is ambiguous or another stage's folder, or ``out`` holds other files.
    """
    kind, source = _locate(folder.rstrip("/"))
    _check_out(out)
    if kind == "copy":
        return _copy(source, out)
    if kind == "pretrain":
        export_backbone(source, out)
        return "backbone"
    tune = read_manifest(source, "tune")
    features = tune["inputs"]["features"]
    export_classifier(
        head=source,
        features=features,
        out=out,
        clip=tune["models"]["clip"],
        cache=tune["models"]["cache"],
        classes=datasets.get(tune["dataset"]).classes,
    )
    return "classifier"


def _locate(folder: str) -> tuple[str, str]:
    """(``copy`` | ``tune`` | ``pretrain``, the folder to read) for what ``synk8s export`` was given."""
    uri = storage.join(folder, MANIFEST)
    if storage.exists(uri):
        body = storage.get_json(uri)
        stage = body.get("stage")
        if "format" in body:
            return "copy", folder
        if stage == "export":
            return "copy", storage.join(folder, CLASSIFIER)
        if stage in ("tune", "pretrain"):
            return stage, folder
        if stage == "evaluate":
            return "tune", body["inputs"]["head"]
        raise UsageError(
            f"{folder} is the output of the {stage} stage; export a run folder or its export, tune, evaluate "
            "or pretrain folder"
        )
    prefixes = [p.rstrip("/") for p in storage.list_prefixes(folder)]
    if not prefixes:
        raise MissingDataError(
            f"no run folder at {folder}; pass a run folder (<store>/runs/<run id>) or a stage folder"
        )
    for stage in _SOURCES:
        found = [p for p in prefixes if p.rsplit("/", 1)[-1].startswith(f"{stage}-")]
        if len(found) > 1:
            names = ", ".join(p.rsplit("/", 1)[-1] for p in found)
            raise UsageError(f"{folder} holds {len(found)} {stage} folders ({names}); pass the one to export")
        if found:
            return _locate(found[0])
    raise MissingDataError(
        f"{folder} holds no export, tune or pretrain folder (few-shot heads are not exported); "
        "run the zero-shot pipeline (or `synk8s stage tune`) first"
    )


def _check_out(out: str) -> None:
    """Refuse an output folder that holds files an export does not write."""
    ours = {MANIFEST, BACKBONE_FILE, "encoder.safetensors", "head.safetensors", "model.onnx"}
    other = sorted(info.uri[len(out) :].lstrip("/") for info in storage.list(out))
    other = [name for name in other if name not in ours]
    if other:
        raise UsageError(f"{out} holds other files ({', '.join(other[:3])}); export into an empty or new folder")


def _copy(source: str, out: str) -> str:
    """Copy the export folder ``source`` to ``out``, every file checked before anything is written."""
    body = read_export_manifest(source)
    data = {name: read_verified(source, name, sha) for name, sha in body["files"].items()}
    manifest = storage.get_bytes(storage.join(source, MANIFEST))
    storage.delete(storage.join(out, MANIFEST))
    for name, content in data.items():
        storage.put_bytes(storage.join(out, name), content)
    storage.put_bytes(storage.join(out, MANIFEST), manifest)
    return "backbone" if body["format"] == BACKBONE_FORMAT else "classifier"


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
