"""``synk8s stage NAME``: run one stage of the zero-shot method alone.

Every stage reads its inputs from, and writes its outputs to, the run folder
``<store.root>/runs/<run id>/``; the run id defaults to ``<dataset>-<config digest>``,
so running the stages in order with the same options chains them:

    synk8s stage prompts  --profile tiny --dataset cifar10
    synk8s stage generate --profile tiny --dataset cifar10 --shard 0 --num-shards 2
    synk8s stage generate --profile tiny --dataset cifar10 --shard 1 --num-shards 2
    synk8s stage collect  --profile tiny --dataset cifar10
    synk8s stage filter   --profile tiny --dataset cifar10
    synk8s stage features --profile tiny --dataset cifar10
    synk8s stage tune     --profile tiny --dataset cifar10
    synk8s stage evaluate --profile tiny --dataset cifar10
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from synk8s import config, datasets
from synk8s.stages.layout import run_dir, stage_dir

app = typer.Typer(no_args_is_help=True)

PROFILE = typer.Option("tiny", "--profile", "-p", help="Profile name: paper or tiny.")
SET = typer.Option([], "--set", "-s", help="Override a config field: key.path=value (repeatable).")
DATASET = typer.Option(None, "--dataset", "-d", help="Dataset name (shortcut for --set dataset.name=...).")
STORE = typer.Option(None, "--store", help="Store root: a folder or s3://bucket/prefix (shortcut for store.root).")
RUN_ID = typer.Option(None, "--run-id", help="Run folder name; default <dataset>-<config digest>.")


def _setup(profile: str, overrides: list[str], dataset: Optional[str], store: Optional[str], run_id: Optional[str]):
    extra = [f"dataset.name={dataset}"] if dataset else []
    extra += [f"store.root={store}"] if store else []
    cfg = config.load(profile, [*overrides, *extra])
    datasets.require_classification(cfg.dataset.name)
    return cfg, run_dir(cfg, run_id)


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _print(result) -> None:
    typer.echo(json.dumps(_rounded(result.model_dump(mode="json")), indent=2))


@app.command("prompts")
def prompts(profile: str = PROFILE, overrides: list[str] = SET, dataset: Optional[str] = DATASET,
            store: Optional[str] = STORE, run_id: Optional[str] = RUN_ID) -> None:
    """Build the prompts (B: templates x class names; LE: T5 sentences)."""
    from synk8s.stages import prompts as stage

    cfg, run = _setup(profile, overrides, dataset, store, run_id)
    _print(stage.run(cfg, out=stage_dir(run, "prompts", cfg)))


@app.command("generate")
def generate(profile: str = PROFILE, overrides: list[str] = SET, dataset: Optional[str] = DATASET,
             store: Optional[str] = STORE, run_id: Optional[str] = RUN_ID,
             shard: int = typer.Option(0, "--shard", help="Which shard to generate (0-based)."),
             num_shards: Optional[int] = typer.Option(None, "--num-shards", help="Shard count; default generate.num_shards.")) -> None:
    """Generate one shard of the images; reruns skip finished tars."""
    from synk8s.stages import generate as stage

    cfg, run = _setup(profile, overrides, dataset, store, run_id)
    _print(stage.run(cfg, prompts=stage_dir(run, "prompts", cfg), out=stage_dir(run, "generate", cfg),
                     shard=shard, num_shards=num_shards))


@app.command("collect")
def collect(profile: str = PROFILE, overrides: list[str] = SET, dataset: Optional[str] = DATASET,
            store: Optional[str] = STORE, run_id: Optional[str] = RUN_ID,
            num_shards: Optional[int] = typer.Option(None, "--num-shards", help="Shard count; default generate.num_shards.")) -> None:
    """Check every shard finished and write the images manifest."""
    from synk8s.stages import generate as stage

    cfg, run = _setup(profile, overrides, dataset, store, run_id)
    _print(stage.collect(cfg, out=stage_dir(run, "generate", cfg), num_shards=num_shards))


@app.command("filter")
def filter_(profile: str = PROFILE, overrides: list[str] = SET, dataset: Optional[str] = DATASET,
            store: Optional[str] = STORE, run_id: Optional[str] = RUN_ID) -> None:
    """CLIP filter (CF): keep images CLIP assigns to their class with enough confidence."""
    from synk8s.stages import filter as stage

    cfg, run = _setup(profile, overrides, dataset, store, run_id)
    _print(stage.run(cfg, images=stage_dir(run, "generate", cfg), out=stage_dir(run, "filter", cfg)))


@app.command("features")
def features(profile: str = PROFILE, overrides: list[str] = SET, dataset: Optional[str] = DATASET,
             store: Optional[str] = STORE, run_id: Optional[str] = RUN_ID) -> None:
    """CLIP image features of the synthetic and real test images (cached)."""
    from synk8s.stages import features as stage

    cfg, run = _setup(profile, overrides, dataset, store, run_id)
    _print(stage.run(cfg, images=stage_dir(run, "generate", cfg), out=stage_dir(run, "features", cfg)))


@app.command("tune")
def tune(profile: str = PROFILE, overrides: list[str] = SET, dataset: Optional[str] = DATASET,
         store: Optional[str] = STORE, run_id: Optional[str] = RUN_ID) -> None:
    """Classifier tuning (CT) of a linear head on frozen CLIP features (CE or SCE)."""
    from synk8s.stages import tune as stage

    cfg, run = _setup(profile, overrides, dataset, store, run_id)
    _print(stage.run(cfg, features=stage_dir(run, "features", cfg), selection=stage_dir(run, "filter", cfg),
                     out=stage_dir(run, "tune", cfg)))


@app.command("evaluate")
def evaluate(profile: str = PROFILE, overrides: list[str] = SET, dataset: Optional[str] = DATASET,
             store: Optional[str] = STORE, run_id: Optional[str] = RUN_ID) -> None:
    """Top-1 of the zero-shot and tuned heads on the real test split; metrics and report."""
    from synk8s.stages import evaluate as stage

    cfg, run = _setup(profile, overrides, dataset, store, run_id)
    _print(stage.run(cfg, features=stage_dir(run, "features", cfg), head=stage_dir(run, "tune", cfg),
                     images=stage_dir(run, "generate", cfg), selection=stage_dir(run, "filter", cfg),
                     out=stage_dir(run, "evaluate", cfg)))
