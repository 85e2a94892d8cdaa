"""The report of a pre-training run: what was pre-trained, and its transfer next to training from scratch.

The pretrain pipeline measures a synthetic pre-training by one transfer, run twice: from the
pre-trained trunk and from random weights. ``report.json`` sets the two side by side::

    {"method": "moco", "label_space": "cifar100", "classes": 10, "label_space_classes": 100,
     "pretrain_init": "scratch", "profile": "tiny", "images": 200, "images_trained": 160,
     "transfer": "cifar100", "metric": "top1",
     "pretrained": {"top1": 0.31, "folder": ...}, "scratch": {"top1": 0.22, "folder": ...},
     "curves": {"pretrain": [...per epoch...], "pretrained": [...], "scratch": [...]},
     "seconds": {...}, "run_dir": ..., "config_digest": ..., "notice": "stand-in data: ...",
     "estimate": {"basis": "estimate", "total": {"gpu_hours": ...}, ...}}   # synk8s.estimate, this config

``classes`` counts the classes the images were generated for (the generate manifest's), out of
``label_space_classes`` in the label space (fewer with ``pretrain.classes``); ``pretrain_init`` is
where pre-training started (``pretrain.init``: ``scratch``, or ``imagenet`` for Table 8's second
column and the "IN-1k init" rows of Tables 9-10). For ``voc`` each side
holds ``ap50``, ``ap`` and ``ap75`` (percent) and ``tables`` lays both runs out as Tables 9-10
(:func:`synk8s.detection.tables.detection_tables`, one layout per metric). It reads the stages'
files only (manifests, ``backbone.json``, metrics, curves); it is written into the folder of the
transfer from the pre-trained trunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synk8s import storage
from synk8s.config import with_overrides
from synk8s.errors import UsageError
from synk8s.estimate import estimate
from synk8s.reports.zeroshot import REPORT_FILE
from synk8s.runs import read_manifest

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

TRANSFERS = ("cifar100", "voc")
STANDIN_NOTICE = (
    "stand-in data: the downstream images are a small drawn stand-in, and the models are tiny, "
    "so these numbers say nothing about the method"
)
DETECTION_METRICS = ("ap50", "ap", "ap75")


def _finetune_side(folder: str) -> tuple[dict[str, Any], list[Any], bool, float]:
    manifest = read_manifest(folder, "finetune")
    metrics = storage.get_json(storage.join(folder, "metrics.json"))
    curve = storage.get_json(storage.join(folder, "curve.json"))["epochs"]
    side = {"top1": metrics["top1"], "init": metrics["init"], "train": metrics["train"], "test": metrics["test"]}
    return {**side, "folder": folder}, curve, bool(metrics["standin"]), float(manifest["seconds"])


def _detect_side(folder: str) -> tuple[dict[str, Any], list[Any], bool, float, dict[str, Any]]:
    manifest = read_manifest(folder, "detect")
    metrics = storage.get_json(storage.join(folder, "metrics.json"))
    curve = storage.get_json(storage.join(folder, "curve.json"))["entries"]
    side = {m: metrics[m] for m in DETECTION_METRICS}
    side.update(train_images=metrics["train_images"], iterations=metrics["iterations"], folder=folder)
    return side, curve, bool(metrics["standin"]), float(manifest["seconds"]), metrics


def transfer_report(
    cfg: ExperimentConfig, run: str, *, transfer: str, pretrain: str, pretrained: str, scratch: str
) -> dict[str, Any]:
    """Gather the report of a pre-training run and its two transfer runs.

    Args:
        cfg: the run's config.
        run: the run folder URI.
        transfer: ``cifar100`` (finetune folders) or ``voc`` (detect folders).
        pretrain: the pretrain stage's folder.
        pretrained: the transfer's folder that started from the pre-trained trunk.
        scratch: the transfer's folder that started from random weights.

    Raises:
        UsageError: unknown ``transfer``.
        MissingDataError: a stage has not finished.
    """
    if transfer not in TRANSFERS:
        raise UsageError(f"unknown transfer {transfer!r}; choose one of: {', '.join(TRANSFERS)}")
    manifest = read_manifest(pretrain, "pretrain")
    meta = storage.get_json(storage.join(pretrain, "backbone.json"))
    generated = read_manifest(manifest["inputs"]["images"], "generate")
    classes = len(generated["per_class"])
    report: dict[str, Any] = {
        "method": meta["method"],
        "label_space": meta["label_space"],
        "classes": classes,
        "label_space_classes": generated.get("label_space_classes", classes),
        "pretrain_init": cfg.pretrain.init,
        "profile": cfg.profile,
        "images": meta.get("num_images", meta["images"]),
        "images_trained": meta["images"],
        "backbone": meta["backbone"],
        "world_size": manifest["world_size"],
        "transfer": transfer,
        "metric": "top1" if transfer == "cifar100" else "ap50",
    }
    curves: dict[str, Any] = {"pretrain": storage.get_json(storage.join(pretrain, "curve.json"))["epochs"]}
    seconds = {"pretrain": float(manifest["seconds"])}
    standin = False
    if transfer == "cifar100":
        for name, folder in (("pretrained", pretrained), ("scratch", scratch)):
            report[name], curves[name], flag, seconds[name] = _finetune_side(folder)
            standin |= flag
    else:
        runs = []
        for name, folder in (("pretrained", pretrained), ("scratch", scratch)):
            report[name], curves[name], flag, seconds[name], metrics = _detect_side(folder)
            runs.append(metrics)
            standin |= flag
        from synk8s.detection.tables import detection_tables

        report["tables"] = {metric: detection_tables(runs, metric) for metric in DETECTION_METRICS}
    report.update(curves=curves, seconds=seconds, config_digest=cfg.digest(), store_root=cfg.store.root, run_dir=run,
                  estimate=estimate(with_overrides(cfg, [f"pretrain.transfer={transfer}"]), "pretrain").to_dict())  # fmt: skip
    if standin:
        report["notice"] = STANDIN_NOTICE
    return report


def write_transfer_report(
    cfg: ExperimentConfig, run: str, *, transfer: str, pretrain: str, pretrained: str, scratch: str
) -> str:
    """Write :func:`transfer_report` as ``report.json`` into the ``pretrained`` folder; returns its URI."""
    uri = storage.join(pretrained, REPORT_FILE)
    report = transfer_report(cfg, run, transfer=transfer, pretrain=pretrain, pretrained=pretrained, scratch=scratch)
    storage.put_json(uri, report)
    return uri
