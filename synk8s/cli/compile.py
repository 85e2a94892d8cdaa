"""``synk8s compile``: a pipeline as the YAML that Kubeflow Pipelines runs.

    synk8s compile zeroshot -o zeroshot.yaml --profile paper
"""

from __future__ import annotations

from pathlib import Path

import typer

from synk8s.cli.kfp_client import PIPELINE, PROFILE, SET, resolve_pipeline_config


def compile_cmd(
    pipeline: str = PIPELINE,
    output: Path = typer.Option(..., "--output", "-o", help="YAML file to write."),
    profile: str = PROFILE,
    overrides: list[str] = SET,
) -> None:
    """Compile a pipeline to the YAML that Kubeflow Pipelines runs (defaults from the profile).

    The config is resolved and checked as ``synk8s submit`` resolves it (the same function), so a
    value that ``submit`` refuses is refused here too.
    """
    from synk8s.pipelines import compile_pipeline

    path = compile_pipeline(pipeline, resolve_pipeline_config(pipeline, profile, overrides), output)
    typer.echo(str(path))
