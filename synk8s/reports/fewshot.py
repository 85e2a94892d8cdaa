"""The few-shot run report: one N-way M-shot run's headline numbers in one small file.

``<fewshot_evaluate folder>/report.json`` is written after the fewshot_evaluate stage (its ``finish``
hook), so a pipeline run, a local run and ``synk8s stage fewshot_evaluate`` all leave one::

    {"dataset": "eurosat", "shots": 4, "strategy": "RG", "schedule": "mix", "freeze_bn": true,
     "trainable": "head", "split_digest": "...",
     "top1": {"zeroshot": 0.1, "ct_init": 0.12, "ct_syn": 0.15},     # CT w. init: real only
     "selection": {"rule": "last", "ct_init_rule": "last", "ct_syn_rule": "last",   # fewshot.select
                   "ct_init_epoch": 100, "ct_syn_epoch": 30, "ct_init_val_top1": null, "ct_syn_val_top1": null},
     "counts": {"real": 40, "synthetic_train": 40, "synthetic_val": 0, "real_val": 0, "test": 40},
     "seconds": {"split": 0.4, ...}, "config_digest": "...", "store_root": "...", "run_dir": "...",
     "estimate": {"basis": "estimate", "total": {"gpu_hours": ...}, ...},  # synk8s.estimate, this config
     "cost": {"device_hours": ..., "points_per_device_hour": ...},  # measured (gain: CT w. Syn - CT w. init)
     "notice": "stand-in data: ..."}        # only when the test set is the drawn stand-in

It reads the stage manifests and ``metrics.json`` only; the folders come from the stage table's caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from synk8s import cost, storage
from synk8s.estimate import estimate
from synk8s.reports.zeroshot import REPORT_FILE, STANDIN_NOTICE
from synk8s.runs import read_manifest

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig


def fewshot_report(cfg: ExperimentConfig, run: str, folders: Mapping[str, str]) -> dict[str, Any]:
    """Gather the report of a few-shot run from its stage outputs.

    Args:
        cfg: the run's config.
        run: the run folder URI.
        folders: the output folder of ``fewshot_evaluate`` and of every stage upstream of it, by stage name.

    Raises:
        MissingDataError: a stage of the run has not finished.
    """
    evaluate = folders["fewshot_evaluate"]
    read_manifest(evaluate, "fewshot_evaluate")
    metrics = storage.get_json(storage.join(evaluate, "metrics.json"))
    tune = read_manifest(folders["fewshot_tune"], "fewshot_tune")
    seconds = {}
    for stage, folder in folders.items():  # every stage of the run, in table order (sharded: summed over shards)
        manifest = read_manifest(folder, stage)
        seconds[stage] = round(float(manifest.get("shard_seconds", manifest["seconds"])), 3)
    report: dict[str, Any] = {
        "dataset": cfg.dataset.name,
        "profile": cfg.profile,
        "shots": metrics["shots"],
        "strategy": metrics["strategy"],
        "schedule": metrics["schedule"],
        "freeze_bn": cfg.fewshot.freeze_bn,
        "trainable": cfg.tune.trainable,
        "inputs": metrics["inputs"],
        "split_digest": metrics["split_digest"],
        "top1": {name: metrics["top1"][name] for name in ("zeroshot", "ct_init", "ct_syn")},
        "selection": metrics["selection"],
        "counts": {
            "real": tune["counts"]["real"],
            "synthetic_train": tune["counts"]["train"],
            "synthetic_val": tune["counts"]["val"],
            "real_val": tune["counts"]["real_val"],
            "test": metrics["test"],
        },
        "seconds": seconds,
        "config_digest": cfg.digest(),
        "store_root": cfg.store.root,
        "run_dir": run,
        "estimate": estimate(cfg, "fewshot").to_dict(),
    }
    records = cost.read_records(run, folders)
    if records:
        gain = float(metrics["top1"]["ct_syn"]) - float(metrics["top1"]["ct_init"])
        generated = sum(int(r.get("images") or 0) for r in records if r["stage"] in ("generate", "guided"))
        report["cost"] = cost.run_cost(records, generated=generated, gain=gain)
    if metrics["standin"]:
        report["notice"] = STANDIN_NOTICE
    return report


def write_fewshot_report(cfg: ExperimentConfig, run: str, folders: Mapping[str, str]) -> str:
    """Write :func:`fewshot_report` into the fewshot_evaluate folder as ``report.json``; returns its URI."""
    uri = storage.join(folders["fewshot_evaluate"], REPORT_FILE)
    storage.put_json(uri, fewshot_report(cfg, run, folders))
    return uri


SWEEP_FILE = "sweep.json"


def sweep_report(cfg: ExperimentConfig, run: str, folders: Mapping[int, str]) -> dict[str, Any]:
    """The reports of every shot count M of a sweep, in the order of ``fewshot.shots``: Figure 1's curve.

    Args:
        cfg: the sweep's config.
        run: the run folder URI.
        folders: each M's fewshot_evaluate folder (holding its ``report.json``).

    Raises:
        MissingDataError: the run of some M has not finished.
    """
    rows = []
    for shots in cfg.fewshot.shots:
        read_manifest(folders[shots], "fewshot_evaluate")
        uri = storage.join(folders[shots], REPORT_FILE)
        rows.append({"report": uri, **storage.get_json(uri)})
    return {
        "dataset": cfg.dataset.name,
        "strategy": cfg.fewshot.strategy,
        "schedule": cfg.fewshot.schedule,
        "select": cfg.fewshot.select,
        "shots": list(cfg.fewshot.shots),
        "ct_init_top1": [row["top1"]["ct_init"] for row in rows],
        "ct_syn_top1": [row["top1"]["ct_syn"] for row in rows],
        "selection": [row["selection"] for row in rows],
        "runs": rows,
        "run_dir": run,
    }


def write_sweep_report(cfg: ExperimentConfig, run: str, folders: Mapping[int, str], out: str) -> str:
    """Write :func:`sweep_report` to ``<out>/sweep.json``; returns its URI."""
    uri = storage.join(out, SWEEP_FILE)
    storage.put_json(uri, sweep_report(cfg, run, folders))
    return uri
