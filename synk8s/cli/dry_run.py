"""``synk8s submit --dry-run``: what a submission would run, without running it.

Prints the resolved pipeline parameters (as the Kubeflow UI would show them) and the pipeline's
tasks in order, each with the stage it runs, whether it asks for a GPU and what it waits for.
"""

from __future__ import annotations

import json

import typer

from synk8s.config import ExperimentConfig


def print_plan(pipeline: str, cfg: ExperimentConfig, *, local: bool) -> None:
    """Print the parameters and tasks of ``pipeline`` under ``cfg`` on stdout."""
    from synk8s.pipelines import arguments
    from synk8s.pipelines.tasks import pipeline_tasks

    where = "here with kfp.local" if local else "on Kubeflow Pipelines"
    typer.echo(f"pipeline {pipeline} ({where}), profile {cfg.profile}, config digest {cfg.digest()}")
    typer.echo("parameters:")
    for name, value in arguments(pipeline, cfg).items():
        typer.echo(f"  {name} = {json.dumps(value)}")
    typer.echo("tasks:")
    for task in pipeline_tasks(pipeline, cfg):
        device = "GPU" if task.gpu else "CPU"
        shards = " (one per shard)" if task.loop else ""
        after = f"  after {', '.join(task.after)}" if task.after else ""
        typer.echo(f"  {task.display:<16} {device}{shards}{after}")
