"""``<run dir>/report.json``: the headline numbers of a zero-shot run in one small file.

Written by the pipeline's ``evaluate`` task, so cluster and local runs both leave one::

    {"dataset": "cifar10", "zeroshot_top1": 0.12, "tuned_top1": 0.15,
     "counts": {"prompts": 40, "generated": 40, "kept": 31},
     "seconds": {"prompts": 1.2, "generate": 20.5, ...}, "config_digest": "...", "store_root": "...",
     "notice": "stand-in data: ..."}        # only when the test set is the drawn stand-in
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

REPORT_FILE = "report.json"
STANDIN_NOTICE = (
    "stand-in data: the test images are a small drawn stand-in for the real dataset, "
    "so these accuracies say nothing about the method"
)


def run_report(cfg: ExperimentConfig, run: str) -> dict[str, Any]:
    """Gather the report of the run folder ``run`` from its stage manifests.

    ``seconds.generate`` is the sum over shards (GPU-seconds when each shard has one GPU).

    Raises:
        MissingDataError: a stage of the run has not finished.
    """
    from synk8s.stages.layout import stage_dir
    from synk8s.runs import read_manifest

    manifests = {
        stage: read_manifest(stage_dir(run, stage, cfg), stage)
        for stage in ("prompts", "generate", "filter", "features", "tune", "evaluate")
    }
    evaluate = manifests["evaluate"]
    seconds = {stage: round(float(m["seconds"]), 3) for stage, m in manifests.items()}
    seconds["generate"] = round(float(manifests["generate"]["shard_seconds"]), 3)
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
    }
    if evaluate["standin"]:
        report["notice"] = STANDIN_NOTICE
    return report


def write_run_report(cfg: ExperimentConfig, run: str) -> str:
    """Write :func:`run_report` into the run's evaluate folder as ``report.json``; returns its URI."""
    from synk8s import storage
    from synk8s.stages.layout import stage_dir

    uri = storage.join(stage_dir(run, "evaluate", cfg), REPORT_FILE)
    storage.put_json(uri, run_report(cfg, run))
    return uri


def report_markdown(evaluate_out: str) -> str:
    """The evaluate stage's ``report.md`` with its image grid inlined as a data URI.

    The Kubeflow UI shows a Markdown artifact on its own, without the files beside it, so a
    relative ``grid.png`` link would show nothing there.
    """
    import base64

    from synk8s import storage

    text = storage.get_bytes(storage.join(evaluate_out, "report.md")).decode("utf-8")
    grid = storage.join(evaluate_out, "grid.png")
    if storage.exists(grid):
        encoded = base64.b64encode(storage.get_bytes(grid)).decode("ascii")
        text = text.replace("(grid.png)", f"(data:image/png;base64,{encoded})")
    return text
