"""The body shared by the stage components: run one stage into its folder and report its counts."""

import importlib
from typing import Any


def run_stage(stage: str, config_json: str, run_dir: str, metrics: Any, **inputs: str) -> str:
    """Run ``synk8s.stages.<stage>.run`` into the stage's folder of the run and log its manifest.

    Args:
        stage: stage module and folder name, e.g. ``"filter"``.
        config_json: the resolved config, as ``plan`` returns it.
        run_dir: the run folder URI.
        metrics: a ``dsl.Metrics`` output; gets the manifest's counts and seconds.
        **inputs: the upstream output folder URIs the stage's ``run`` takes, e.g. ``images=...``.

    Returns:
        The stage's output folder URI.
    """
    from synk8s.components.metrics import log_manifest
    from synk8s.config import ExperimentConfig
    from synk8s.stages.layout import stage_dir
    from synk8s.runs import read_manifest

    cfg = ExperimentConfig.model_validate_json(config_json)
    out = stage_dir(run_dir, stage, cfg)
    importlib.import_module(f"synk8s.stages.{stage}").run(cfg, out=out, **inputs)
    log_manifest(metrics, read_manifest(out, stage))
    return out
