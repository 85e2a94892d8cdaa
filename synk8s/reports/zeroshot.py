"""The run report: a zero-shot run's headline numbers in one small file, and Markdown for the Kubeflow UI.

``<evaluate folder>/report.json`` is written after the evaluate stage (its ``finish`` hook), so a
pipeline run, a local run and ``synk8s stage evaluate`` all leave one::

    {"dataset": "cifar10", "zeroshot_top1": 0.12, "tuned_top1": 0.15,
     "counts": {"prompts": 40, "generated": 40, "kept": 31, "test": 40}, "seed": 0, "setting_digest": "...",
     "setting": {"prompts": "LE", "filter": true, "loss": "sce"}, "generator": "tiny-sd", "generator_note": "...",
     "seconds": {"prompts": 1.2, "generate": 20.5, ...}, "config_digest": "...", "store_root": "...",
     "cost": {"devices": ["cpu"], "device_hours": 0.01, "device_hours_per_1000_images": 0.2, ...},
     "estimate": {"basis": "estimate", "gpu_type": "h100", "total": {"gpu_hours": ...}, ...},
     "notice": "stand-in data: ..."}        # only when the test set is the drawn stand-in

A run over your own label space without real images has ``zeroshot_top1`` and ``tuned_top1`` null,
``synthetic_val_images``, ``synthetic_val_zeroshot_top1`` and ``synthetic_val_tuned_top1`` (both heads
on the synthetic images tune held out) and the notice ``"no real test set: ..."``.

It reads the stage manifests only; the folders come from the stage table's caller. ``estimate`` is
:func:`synk8s.estimate.estimate` of the run's config (H100s, one per shard), beside the measured ``cost``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synk8s import cost, storage
from synk8s.estimate import estimate
from synk8s.runs import read_manifest

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

REPORT_FILE = "report.json"
STANDIN_NOTICE = (
    "stand-in data: the test images are a small drawn stand-in for the real dataset, "
    "so these accuracies say nothing about the method"
)
GENERATOR_NOTE = (
    "the paper generated with GLIDE (64 px base + 256 px upsampler, guidance 3, 100 steps); this run used "
    "the generator named beside this note instead"
)
SYNTHETIC_VAL_FIELDS = ("synthetic_val_images", "synthetic_val_zeroshot_top1", "synthetic_val_tuned_top1")
_PNG_IMAGE = re.compile(r"!\[([^\]]*)\]\(([\w.-]+\.png)\)")


def run_report(cfg: ExperimentConfig, run: str, folders: Mapping[str, str]) -> dict[str, Any]:
    """Gather the report of a zero-shot run from its stage manifests.

    ``seconds`` has every stage of the run, in table order; a sharded stage's is the sum over its
    shards (GPU-seconds when each shard has one GPU).

    Args:
        cfg: the run's config.
        run: the run folder URI.
        folders: the output folder of ``evaluate`` and of every stage upstream of it, by stage name.

    Raises:
        MissingDataError: a stage of the run has not finished.
    """
    manifests = {stage: read_manifest(folder, stage) for stage, folder in folders.items()}
    evaluate = manifests["evaluate"]
    seconds = {stage: round(float(m.get("shard_seconds", m["seconds"])), 3) for stage, m in manifests.items()}
    report: dict[str, Any] = {
        "dataset": cfg.dataset.name,
        "profile": cfg.profile,
        "zeroshot_top1": evaluate["zeroshot_top1"],
        "tuned_top1": evaluate["tuned_top1"],
        "counts": {
            "prompts": manifests["prompts"]["counts"]["prompts"],
            "generated": manifests["filter"]["counts"]["generated"],
            "kept": manifests["filter"]["counts"]["kept"],
            "test": evaluate["counts"]["test"],
        },
        "seconds": seconds,
        "config_digest": cfg.digest(),
        "store_root": cfg.store.root,
        "run_dir": run,
        **setting_fields(cfg),
    }
    if "templates" in manifests["features"]:
        report["templates"] = manifests["features"]["templates"]
    report.update({key: evaluate[key] for key in SYNTHETIC_VAL_FIELDS if key in evaluate})
    records = cost.read_records(run, folders)
    if records:
        measured = evaluate["tuned_top1"] is not None
        gain = float(evaluate["tuned_top1"]) - float(evaluate["zeroshot_top1"]) if measured else None
        report["cost"] = cost.run_cost(records, generated=report["counts"]["generated"], gain=gain)
    report["estimate"] = estimate(cfg, "zeroshot").to_dict()
    if evaluate["standin"]:
        report["notice"] = STANDIN_NOTICE
    elif "notice" in evaluate:
        report["notice"] = evaluate["notice"]
    return report


def setting_fields(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a results table groups and places a run by: its seed, the digest of everything else, the
    Table 2 setting (prompt mode, filter, loss), and the generator with the substitution it makes."""
    others = sorted(set(type(cfg).model_fields) - {"seed", "store", "cluster"})
    return {
        "seed": cfg.seed,
        "setting_digest": cfg.digest(*others),
        "setting": {"prompts": cfg.prompts.mode, "filter": cfg.filter.enabled, "loss": cfg.tune.loss},
        "generator": cfg.models.generator,
        "generator_note": GENERATOR_NOTE,
    }


def write_run_report(cfg: ExperimentConfig, run: str, folders: Mapping[str, str]) -> str:
    """Write :func:`run_report` into the evaluate folder as ``report.json``; returns its URI."""
    uri = storage.join(folders["evaluate"], REPORT_FILE)
    storage.put_json(uri, run_report(cfg, run, folders))
    return uri


def report_markdown(folder: str, name: str) -> str:
    """The Markdown file ``name`` of ``folder`` for the Kubeflow UI, with its images as links to artifacts.

    The UI shows a Markdown artifact on its own, without the files beside it. Inlining the PNGs
    made a 100-class report about 1 MB; instead each image link says which artifact of the task
    shows the image (a row's ``attachments``) and where the store keeps it, so the Markdown stays
    small (tens of KB for 100 classes).
    """
    text = storage.get_bytes(storage.join(folder, name)).decode("utf-8")

    def pointer(match: re.Match[str]) -> str:
        image = match.group(2)
        artifact = image.rsplit(".", 1)[0]
        return f"*{match.group(1)}: the task's `{artifact}` artifact ({storage.join(folder, image)})*"

    return _PNG_IMAGE.sub(pointer, text)
