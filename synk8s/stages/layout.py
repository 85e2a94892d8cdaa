"""Where a run's stage outputs live in the store: ``<store.root>/runs/<run_id>/<stage dir>/``."""

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


def default_run_id(cfg: ExperimentConfig) -> str:
    """``<dataset>-<config digest>``: the same experiment maps to the same folder, so reruns resume."""
    return f"{cfg.dataset.name}-{cfg.digest()}"


def run_dir(cfg: ExperimentConfig, run_id: str | None = None) -> str:
    """The run's folder URI under the store root."""
    return storage.join(cfg.store.root, "runs", run_id or default_run_id(cfg))


def stage_dir(run: str, stage: str) -> str:
    """The output folder URI of ``stage`` inside the run folder ``run``."""
    return storage.join(run, STAGE_DIRS[stage])
