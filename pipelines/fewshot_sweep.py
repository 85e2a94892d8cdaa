"""The few-shot sweep over ``fewshot.shots`` in one run (Figure 1): see :mod:`synk8s.pipelines.fewshot`."""

from __future__ import annotations

from synk8s.config import ExperimentConfig
from synk8s.pipelines import fewshot

PARAMETERS = fewshot.SWEEP_PARAMETERS


def build_pipeline(
    cfg: ExperimentConfig, *, retry: bool = True, parallelism: int | None = None, threads: int | None = None
):
    """The sweep pipeline function: :func:`synk8s.pipelines.fewshot.build_pipeline` with ``sweep=True``."""
    return fewshot.build_pipeline(cfg, retry=retry, parallelism=parallelism, threads=threads, sweep=True)
