"""One lightweight KFP component per zero-shot stage, each a thin adapter over ``synk8s.stages``.

Every component takes the resolved config as JSON (from ``plan``) and the run folder URI, calls
the stage's ``run`` function, copies the stage manifest's counts into a ``Metrics`` output and
returns the stage's output folder URI. Artifacts themselves stay in the store; only these small
strings pass between tasks.

KFP embeds each function's source in the compiled pipeline, so a body imports what it needs
itself; the module top imports only the standard library and kfp, and a pipeline compiles without
torch. The images already contain synk8s and kfp, so nothing is installed when a task starts::

    comps = make_components("ghcr.io/synk8s/synk8s-gpu:0.1.0", "ghcr.io/synk8s/synk8s-cpu:0.1.0")
    plan_task = comps.plan(profile="tiny", dataset="cifar10", ...)
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from kfp import dsl


def plan(
    profile: str,
    dataset: str,
    images_per_class: int,
    num_shards: int,
    generator: str,
    seed: int,
    store_root: str,
    overrides: str,
) -> NamedTuple("PlanOutputs", [("config_json", str), ("run_dir", str)]):
    """Resolve the pipeline parameters into the run's config (JSON) and its run folder URI.

    In a pod a local ``store_root`` (the profile default) becomes ``$SYNK8S_STORE_ROOT`` from the
    ConfigMap; without it the task fails with a one-line error asking for ``store_root=s3://...``.
    """
    from collections import namedtuple

    from synk8s.components.params import config_from_arguments, pod_store_root
    from synk8s.stages.layout import run_dir as layout_run_dir

    cfg = config_from_arguments(
        profile=profile,
        overrides=overrides,
        dataset=dataset,
        images_per_class=images_per_class,
        num_shards=num_shards,
        generator=generator,
        seed=seed,
        store_root=pod_store_root(store_root),
    )
    outputs = namedtuple("PlanOutputs", ["config_json", "run_dir"])
    return outputs(cfg.model_dump_json(), layout_run_dir(cfg))


def shard_list(config_json: str, run_dir: str, prompts: str) -> list[dict]:
    """The items of the generate ParallelFor: one per shard in ``[0, generate.num_shards)``.

    Each item carries what its generate task reads (shard index, config, run folder, prompts
    folder) rather than the task reading upstream outputs itself: kfp.local (2.17) hands a task
    inside a ParallelFor the loop item in place of every upstream task output it consumes.
    """
    from synk8s.config import ExperimentConfig

    cfg = ExperimentConfig.model_validate_json(config_json)
    return [
        {"shard": shard, "config_json": config_json, "run_dir": run_dir, "prompts": prompts}
        for shard in range(cfg.generate.num_shards)
    ]


def prompts(config_json: str, run_dir: str, metrics: dsl.Output[dsl.Metrics]) -> str:
    """Build the prompts of every class (B or LE); returns the prompts folder URI."""
    from synk8s.components.run_stage import run_stage

    return run_stage("prompts", config_json, run_dir, metrics)


def generate(config_json: str, prompts: str, run_dir: str, shard: int, metrics: dsl.Output[dsl.Metrics]) -> str:
    """Generate one shard of the images; returns the shard manifest URI.

    A rerun (retry, or a resubmitted run) skips the tar files the shard already finished.
    """
    from synk8s.config import ExperimentConfig
    from synk8s.stages import generate as stage
    from synk8s.stages.layout import stage_dir

    cfg = ExperimentConfig.model_validate_json(config_json)
    result = stage.run(cfg, prompts=prompts, out=stage_dir(run_dir, "generate", cfg), shard=shard)
    metrics.log_metric("images", result.images)
    metrics.log_metric("generated", result.generated)
    metrics.log_metric("seconds", round(result.seconds, 3))
    return result.manifest_uri


def collect(config_json: str, run_dir: str, shard_manifests: list[str], metrics: dsl.Output[dsl.Metrics]) -> str:
    """Check every shard finished and write the images manifest; returns the images folder URI.

    Args:
        shard_manifests: the shard manifest URIs of all generate tasks (one per shard).
    """
    from synk8s.components.metrics import log_manifest
    from synk8s.config import ExperimentConfig
    from synk8s.errors import MissingDataError
    from synk8s.stages import generate as stage
    from synk8s.stages.layout import stage_dir
    from synk8s.runs import read_manifest

    cfg = ExperimentConfig.model_validate_json(config_json)
    if len(shard_manifests) != cfg.generate.num_shards:
        raise MissingDataError(
            f"got {len(shard_manifests)} generated shards, expected generate.num_shards={cfg.generate.num_shards}"
        )
    out = stage_dir(run_dir, "generate", cfg)
    stage.collect(cfg, out=out)
    log_manifest(metrics, read_manifest(out, "generate"))
    return out


def filter_images(config_json: str, images: str, run_dir: str, metrics: dsl.Output[dsl.Metrics]) -> str:
    """CLIP-filter the generated images; returns the filter folder URI (selection + teacher logits)."""
    from synk8s.components.run_stage import run_stage

    return run_stage("filter", config_json, run_dir, metrics, images=images)


def features(config_json: str, images: str, run_dir: str, metrics: dsl.Output[dsl.Metrics]) -> str:
    """Encode synthetic and real test images with CLIP (cached); returns the features folder URI."""
    from synk8s.components.run_stage import run_stage

    return run_stage("features", config_json, run_dir, metrics, images=images)


def tune(config_json: str, features: str, selection: str, run_dir: str, metrics: dsl.Output[dsl.Metrics]) -> str:
    """Tune the linear head on the kept synthetic features; returns the tune folder URI."""
    from synk8s.components.run_stage import run_stage

    return run_stage("tune", config_json, run_dir, metrics, features=features, selection=selection)


def evaluate(
    config_json: str,
    features: str,
    head: str,
    images: str,
    selection: str,
    run_dir: str,
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
) -> str:
    """Top-1 of the zero-shot and the tuned head on the real test set; writes the run report.

    Returns:
        The URI of the run's ``report.json`` in the evaluate folder (headline numbers, counts,
        seconds per stage).
    """
    from synk8s.components.report import report_markdown, write_run_report
    from synk8s.config import ExperimentConfig
    from synk8s.stages import evaluate as stage
    from synk8s.stages.layout import stage_dir

    cfg = ExperimentConfig.model_validate_json(config_json)
    out = stage_dir(run_dir, "evaluate", cfg)
    result = stage.run(cfg, features=features, head=head, images=images, selection=selection, out=out)
    metrics.log_metric("zeroshot_top1", result.zeroshot_top1)
    metrics.log_metric("tuned_top1", result.tuned_top1)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(report_markdown(out))
    return write_run_report(cfg, run_dir)


@dataclass(frozen=True)
class StageComponents:
    """The zero-shot components, bound to their container images."""

    plan: Callable
    prompts: Callable
    shard_list: Callable
    generate: Callable
    collect: Callable
    filter_images: Callable
    features: Callable
    tune: Callable
    evaluate: Callable


# Which image each component runs in: the GPU image carries CUDA torch and the diffusion stack.
_GPU_FUNCS = (prompts, generate, filter_images, features)
_CPU_FUNCS = (plan, shard_list, collect, tune, evaluate)


def make_components(image: str, cpu_image: str) -> StageComponents:
    """Wrap the stage adapters as KFP components that run in prebuilt images.

    Args:
        image: GPU image (``cluster.image``) with synk8s and kfp installed; pin it by digest.
        cpu_image: CPU image (``cluster.cpu_image``) for the light tasks.

    Returns:
        The components; ``install_kfp_package=False``, so a task installs nothing when it starts.
    """
    built = {}
    for func in _GPU_FUNCS:
        built[func.__name__] = dsl.component(func, base_image=image, install_kfp_package=False)
    for func in _CPU_FUNCS:
        built[func.__name__] = dsl.component(func, base_image=cpu_image, install_kfp_package=False)
    return StageComponents(**built)
