"""``synk8s export``: copy a run's classifier out of the store, or write a pre-training run's backbone.

A zero-shot run's classifier is written by its ``export`` stage (:mod:`synk8s.stages.zeroshot.export`),
a few-shot run's two heads by its ``fewshot_export`` stage (:mod:`synk8s.stages.fewshot.export`);
:func:`export_folder` finds the one asked for from the run folder or its tune, evaluate or export
folder and copies it, every file checked. A pre-training run's trunk becomes ``backbone.pth``,
``torch.save`` of a plain ``state_dict`` in torchvision's ResNet names, with a ``manifest.json``
(:func:`export_backbone`)::

    export_folder("store/runs/cifar10-46c0...", "exports/cifar10")                 # "classifier"
    export_folder("store/runs/eurosat-1b2c...", "exports/ct-init", head="ct_init")  # a few-shot head
    export_folder("store/runs/cifar100-9f8e.../pretrain-7d6c...", "exports/trunk")  # "backbone"
"""

from __future__ import annotations

import io

from synk8s import __version__, storage
from synk8s.errors import MissingDataError, UsageError
from synk8s.models.export_folder import MANIFEST, read_export_manifest, read_verified
from synk8s.runs import read_manifest
from synk8s.stages.fewshot.heads import VARIANTS
from synk8s.stages.zeroshot.export import CLASSIFIER

DEFAULT_HEAD = "ct_syn"  # the few-shot head exported unless --head names another
BACKBONE_FILE = "backbone.pth"
BACKBONE_FORMAT = "synk8s-backbone/1"
_WRITTEN = {MANIFEST, BACKBONE_FILE, "encoder.safetensors", "head.safetensors", "model.onnx"}  # an export's files


def export_folder(folder: str, out: str, head: str | None = None) -> str:
    """Export what ``folder`` holds into ``out``; returns the kind written, ``classifier`` or ``backbone``.

    ``folder`` is a run folder (its one ``export-*``, else ``fewshot-export-*``, else ``pretrain-*``
    folder), one of those, a ``tune-*``, ``evaluate-*``, ``fewshot-tune-*`` or ``fewshot-evaluate-*``
    folder (the export folder of the same head), or an export folder (copied, every file checked).
    ``head`` picks a few-shot run's head, ``ct_syn`` (default) or ``ct_init``.

    Raises:
        MissingDataError: nothing to export at ``folder``, or the run's export stage has not run.
        UsageError: ``folder`` is ambiguous or another stage's folder, ``head`` is not a few-shot head
            or names one for a zero-shot run, or ``out`` holds other files.
    """
    if head is not None and head not in VARIANTS:
        raise UsageError(f"--head must be one of {', '.join(VARIANTS)}, got {head!r}")
    kind, source = _locate(folder.rstrip("/"), head or DEFAULT_HEAD)
    if head is not None and kind != "fewshot":
        raise UsageError(f"--head picks a few-shot run's head; {folder} holds a zero-shot classifier or a backbone")
    _check_out(out)
    if kind == "pretrain":
        export_backbone(source, out)
        return "backbone"
    body = read_export_manifest(source)
    data = {name: read_verified(source, name, sha) for name, sha in body["files"].items()}  # all checked first
    manifest = storage.get_bytes(storage.join(source, MANIFEST))
    storage.delete(storage.join(out, MANIFEST))
    for name, content in data.items():
        storage.put_bytes(storage.join(out, name), content)
    storage.put_bytes(storage.join(out, MANIFEST), manifest)
    return "backbone" if body["format"] == BACKBONE_FORMAT else "classifier"


def _locate(folder: str, head: str) -> tuple[str, str]:
    """(``copy`` | ``fewshot`` | ``pretrain``, the folder to read) for what ``synk8s export`` was given."""
    uri = storage.join(folder, MANIFEST)
    if not storage.exists(uri):
        return _in_run(folder, head)
    body = storage.get_json(uri)
    stage = body.get("stage")
    if "format" in body:
        return "copy", folder
    if stage == "export":
        return "copy", storage.join(folder, CLASSIFIER)
    if stage == "pretrain":
        return "pretrain", folder
    if stage == "fewshot_export":
        return "fewshot", storage.join(folder, head)
    if stage == "evaluate":
        return _locate(body["inputs"]["head"], head)
    if stage == "fewshot_evaluate":
        return _locate(body["inputs"]["tuned"], head)
    if stage in ("tune", "fewshot_tune"):  # each export reads its tune's inputs, so its folder has tune's digest
        export_stage = "export" if stage == "tune" else "fewshot_export"
        return _locate(_export_of(folder, export_stage), head)
    raise UsageError(
        f"{folder} is the output of the {stage} stage; export a run folder or its (fewshot-)export, "
        "(fewshot-)tune, (fewshot-)evaluate or pretrain folder"
    )


def _export_of(tune: str, stage: str) -> str:
    """The folder of export stage ``stage`` beside the tune folder ``tune``.

    Raises:
        MissingDataError: the export stage has not run.
    """
    parent, name = tune.rsplit("/", 1)
    export = f"{parent}/{name.replace('tune', 'export', 1)}"
    if not storage.exists(storage.join(export, MANIFEST)):
        raise MissingDataError(
            f"no export of {tune} (expected {export}); run `synk8s stage {stage}` with the run's "
            "--profile and --set options, or submit the run again"
        )
    return export


def _in_run(folder: str, head: str) -> tuple[str, str]:
    """What a run folder holds to export: its one export, else fewshot-export, else pretrain folder."""
    prefixes = [p.rstrip("/") for p in storage.list_prefixes(folder)]
    if not prefixes:
        raise MissingDataError(
            f"no run folder at {folder}; pass a run folder (<store>/runs/<run id>) or a stage folder"
        )
    for stage in ("export", "fewshot-export", "pretrain"):
        found = [p for p in prefixes if p.rsplit("/", 1)[-1].startswith(f"{stage}-")]
        if len(found) > 1:
            names = ", ".join(p.rsplit("/", 1)[-1] for p in found)
            raise UsageError(f"{folder} holds {len(found)} {stage} folders ({names}); pass the one to export")
        if found:
            return _locate(found[0], head)
    raise MissingDataError(
        f"{folder} holds no export, fewshot-export or pretrain folder; run the zero-shot or few-shot "
        "pipeline, or `synk8s stage export` after `synk8s stage tune`"
    )


def _check_out(out: str) -> None:
    """Refuse an output folder that holds files an export does not write."""
    other = sorted(info.uri[len(out) :].lstrip("/") for info in storage.list(out))
    other = [name for name in other if name not in _WRITTEN]
    if other:
        raise UsageError(f"{out} holds other files ({', '.join(other[:3])}); export into an empty or new folder")


def export_backbone(pretrain: str, out: str) -> dict:
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

    from synk8s.stages.pretraining.pretrain import load_backbone

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
            "run_id": pretrain.rstrip("/").rsplit("/", 2)[-2],
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
