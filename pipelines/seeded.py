"""Several seeds of one pipeline run here, one after another, and one aggregate report over them.

    uri = run_local_seeds("zeroshot", cfg, "0,1,2")   # what ``synk8s submit ... --seeds 0,1,2 --local`` does

Each seed is a whole run (``seed=<s>`` on the config, so its own run folder); the aggregate
(:func:`synk8s.reports.results.write_aggregate`) lands in ``<store>/results/`` and gives every number as
the seed count, mean and standard deviation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from synk8s import config
from synk8s.reports import results

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

log = logging.getLogger(__name__)


def run_local_seeds(
    pipeline: str, cfg: ExperimentConfig, seeds: str, *, threads: int | None = None, verbose: bool = False
) -> str:
    """Run ``pipeline`` here once per seed of ``seeds`` and aggregate the reports.

    Args:
        pipeline: a pipeline name whose output is a run's ``report.json`` URI (``zeroshot``).
        cfg: the run's config; its ``seed`` is replaced by each seed in turn.
        seeds: ``"0,1,2"`` or a count (``"3"`` is seeds 0, 1, 2).
        threads: ``OMP_NUM_THREADS`` of every task; None: the local default.
        verbose: stream every task line instead of the progress display.

    Returns:
        The URI of the aggregate Markdown report.

    Raises:
        UsageError: a malformed ``seeds``.
        Synk8sError: a run failed.
    """
    from synk8s.pipelines.local import run_local

    reports = []
    for seed in results.parse_seeds(seeds):
        log.info("seed %d: running %s", seed, pipeline)
        reports.append(run_local(pipeline, config.with_overrides(cfg, [f"seed={seed}"]), threads=threads, verbose=verbose))
    return results.write_aggregate(reports, cfg.store.root)
