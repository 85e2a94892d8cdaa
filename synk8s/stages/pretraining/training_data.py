"""The generate output as the pre-training loop sees it: its tars, the held-out monitor tars, counts and classes."""

from __future__ import annotations

from dataclasses import dataclass

from synk8s import shards
from synk8s.config import ExperimentConfig
from synk8s.runs import read_manifest


@dataclass(frozen=True)
class TrainingData:
    """The generate output as the trainer sees it: tars, monitor tars and counts."""

    tars: list[shards.TarRecord]
    monitor: frozenset[shards.TarRecord]
    images: int
    held_out: int
    num_classes: int
    label_space: str


def training_data(cfg: ExperimentConfig, images: str) -> TrainingData:
    """Tars, monitor tars, image counts and classes of a generate output.

    Raises:
        MissingDataError: no collected generate output in ``images``.
    """
    from synk8s import stream

    manifest = read_manifest(images, "generate")
    records = shards.manifest_tars(images)
    tars = list(records)
    monitor = stream.monitor_tar_uris(tars, cfg.pretrain.monitor_tars)
    held = sum(1 for _ in stream.held_out(tars, monitor, cfg.seed, cfg.pretrain.monitor_fraction))
    return TrainingData(
        tars=tars,
        monitor=monitor,
        images=sum(t.count for t in records),
        held_out=held,
        num_classes=len(manifest["per_class"]),
        label_space=manifest.get("label_space") or manifest["dataset"],
    )
