"""Where a run's stage outputs live in the store.

    <store.root>/runs/<dataset>-<images digest>/
        prompts/                      prompts of the run
        images/                       generated shards
        filter-<digest>/              each later stage: one folder per setting of what it depends on
        features-<digest>/
        tune-<digest>/
        evaluate-<digest>/            metrics, report.md, report.json

A folder's digest covers only the config fields its stage and the stages before it read, so
runs that differ downstream share what they have in common: Table 2's CE-vs-SCE and CF-on-off
variants reuse one set of generated images, and each keeps its own filter, tune and evaluate folders.
"""

from __future__ import annotations

from synk8s import storage
from synk8s.config import ExperimentConfig

STAGE_DIRS = {
    "prompts": "prompts",
    "generate": "images",
    "filter": "filter",
    "features": "features",
    "tune": "tune",
    "evaluate": "evaluate",
}

# Config fields each stage's output depends on, its upstream stages' fields included.
_PROMPTS = ("seed", "device", "dataset.name", "models.le", "prompts")
_IMAGES = (*_PROMPTS, "models.generator", "models.generator_revision", "generate")
_ENCODER = ("dataset", "models.clip", "features")  # real test data and the image encoder
DEPENDS = {
    "prompts": _PROMPTS,
    "generate": _IMAGES,
    "filter": (*_IMAGES, *_ENCODER, "filter"),
    "features": (*_IMAGES, *_ENCODER),
    "tune": (*_IMAGES, *_ENCODER, "filter", "tune"),
    "evaluate": (*_IMAGES, *_ENCODER, "filter", "tune"),
}


def default_run_id(cfg: ExperimentConfig) -> str:
    """``<dataset>-<images digest>``: runs that generate the same images share a folder, so reruns resume."""
    return f"{cfg.dataset.name}-{cfg.digest(*DEPENDS['generate'])}"


def run_dir(cfg: ExperimentConfig, run_id: str | None = None) -> str:
    """The run's folder URI under the store root."""
    return storage.join(cfg.store.root, "runs", run_id or default_run_id(cfg))


def stage_dir(run: str, stage: str, cfg: ExperimentConfig) -> str:
    """The output folder URI of ``stage`` for ``cfg`` inside the run folder ``run``."""
    name = STAGE_DIRS[stage]
    if stage in ("prompts", "generate"):
        return storage.join(run, name)
    return storage.join(run, f"{name}-{cfg.digest(*DEPENDS[stage])}")
