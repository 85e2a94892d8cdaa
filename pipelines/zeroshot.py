"""The zero-shot pipeline (paper section 3.1) as a Kubeflow pipeline.

    plan -> prompts -> shard_list -> generate x num_shards (ParallelFor) -> collect
         -> filter -> features -> tune -> evaluate

Compile it with ``synk8s compile zeroshot -o zeroshot.yaml --profile paper``, or run it with
``synk8s submit zeroshot --dataset cifar100``. The config chosen at compile time gives every
parameter its default, the container images, the GPU type, the Secret and ConfigMap names and the
ParallelFor limit; the parameters can be changed per run (the ``plan`` task resolves them).
"""

from kfp import dsl, kubernetes

from synk8s.components.params import STORE_ROOT_ENV, pipeline_arguments
from synk8s.components.stages import make_components
from synk8s.config import ExperimentConfig

PIPELINE_NAME = "synk8s-zeroshot"

# Requests and limits per task: (cpu request, cpu limit, memory request, memory limit).
# The GPU stages decode and batch images on the CPU side, and a Stable Diffusion pipeline takes
# about 10 GiB of host memory while it loads; tuning holds all kept features in memory
# (200k x 1024 float32 is 0.8 GB for CIFAR-100 at 2000 images per class).
RESOURCES = {
    "plan": ("250m", "1", "512Mi", "1Gi"),
    "prompts": ("2", "4", "8Gi", "16Gi"),
    "shard_list": ("250m", "1", "512Mi", "1Gi"),
    "generate": ("4", "8", "24Gi", "32Gi"),
    "collect": ("500m", "1", "1Gi", "2Gi"),
    "filter": ("4", "8", "16Gi", "32Gi"),
    "features": ("4", "8", "16Gi", "32Gi"),
    "tune": ("4", "8", "8Gi", "16Gi"),
    "evaluate": ("2", "4", "8Gi", "16Gi"),
}

# Tasks that get a GPU. generate runs the diffusion model; filter and features run the CLIP image
# encoder over every generated image. prompts gets one only in LE mode, where T5 samples
# classes x sentences_per_class x oversample sentences (40k for CIFAR-100), minutes on a GPU and
# hours on a CPU; B mode is string formatting. tune fits a linear head on cached features and
# evaluate multiplies test features by two heads: a CPU node is enough for both.
_ALWAYS_GPU = ("generate", "filter", "features")


def _gpu_tasks(cfg: ExperimentConfig) -> tuple[str, ...]:
    return _ALWAYS_GPU + (("prompts",) if cfg.prompts.mode == "LE" else ())


def _resources(task: dsl.PipelineTask, name: str) -> None:
    cpu_request, cpu_limit, memory_request, memory_limit = RESOURCES[name]
    task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory_request).set_memory_limit(memory_limit)


def _store_access(task: dsl.PipelineTask, cfg: ExperimentConfig, credentials: bool = True) -> None:
    """Store settings from the ConfigMap and credentials from the Secret; no values in the YAML.

    Every task gets ``SYNK8S_S3_ENDPOINT`` and ``SYNK8S_STORE_ROOT`` (``plan`` puts the latter in
    place of a local ``store_root``); tasks that read or write the store also get the credentials.
    """
    if credentials:
        kubernetes.use_secret_as_env(
            task,
            secret_name=cfg.cluster.s3_secret,
            secret_key_to_env={
                "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
            },
        )
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=cfg.cluster.s3_config_map,
        config_map_key_to_env={"SYNK8S_S3_ENDPOINT": "SYNK8S_S3_ENDPOINT", STORE_ROOT_ENV: STORE_ROOT_ENV},
    )


def build_pipeline(cfg: ExperimentConfig, *, retry: bool = True, parallelism: int | None = None):
    """The zero-shot pipeline function for ``cfg``.

    Args:
        cfg: resolved config; it sets the parameter defaults and the cluster settings
            (``cluster.image``, ``cluster.cpu_image``, ``cluster.accelerator``, ``cluster.s3_secret``,
            ``cluster.s3_config_map``, ``cluster.generate_retries``).
        retry: retry a failed generate task ``cluster.generate_retries`` times with exponential
            backoff from 60 s (a preempted GPU node). A local run sets False and stops at the first
            failure; rerunning it keeps the finished tar files.
        parallelism: generate tasks that run at once; None means all ``generate.num_shards``. A local
            run sets 1: on one machine concurrent shards only share its cores (two tiny shards at once
            on 2 cores ran 10x slower each than one alone).

    Returns:
        A ``@dsl.pipeline`` function: compile it, submit it, or call it under ``kfp.local``.
    """
    comps = make_components(cfg.cluster.image, cfg.cluster.cpu_image)
    defaults = pipeline_arguments(cfg)
    gpu_tasks = _gpu_tasks(cfg)

    def configure(task: dsl.PipelineTask, name: str, gpu_node_selector, gpu_tolerations, store: bool = True):
        task.set_display_name(name).set_caching_options(True)
        _resources(task, name)
        _store_access(task, cfg, credentials=store)
        if name in gpu_tasks:
            task.set_accelerator_type(cfg.cluster.accelerator).set_accelerator_limit(1)
            kubernetes.add_node_selector_json(task, node_selector_json=gpu_node_selector)
            kubernetes.add_toleration_json(task, toleration_json=gpu_tolerations)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Synthetic images from a text-to-image model -> CLIP filter -> tuned CLIP classifier, "
        "evaluated zero-shot on a real test set.",
    )
    def zeroshot(
        dataset: str = defaults["dataset"],
        profile: str = defaults["profile"],
        images_per_class: int = defaults["images_per_class"],
        num_shards: int = defaults["num_shards"],
        generator: str = defaults["generator"],
        seed: int = defaults["seed"],
        store_root: str = defaults["store_root"],
        overrides: str = defaults["overrides"],
        # KFP reads parameter defaults from the signature; these objects are never mutated.
        gpu_node_selector: dict = dict(cfg.cluster.gpu_node_selector),  # noqa: B006
        gpu_tolerations: list = [dict(t) for t in cfg.cluster.gpu_tolerations],  # noqa: B006
    ) -> str:
        sched = {"gpu_node_selector": gpu_node_selector, "gpu_tolerations": gpu_tolerations}
        plan = comps.plan(
            profile=profile,
            dataset=dataset,
            images_per_class=images_per_class,
            num_shards=num_shards,
            generator=generator,
            seed=seed,
            store_root=store_root,
            overrides=overrides,
        )
        configure(plan, "plan", **sched, store=False)
        config_json, run_dir = plan.outputs["config_json"], plan.outputs["run_dir"]

        prompts = configure(comps.prompts(config_json=config_json, run_dir=run_dir), "prompts", **sched)
        shards = comps.shard_list(config_json=config_json, run_dir=run_dir, prompts=prompts.outputs["Output"])
        configure(shards, "shard_list", **sched, store=False)

        # All shards of the compiled config run at once; shards added at submit time queue behind them.
        with dsl.ParallelFor(shards.output, parallelism=parallelism or cfg.generate.num_shards) as item:
            generate = comps.generate(
                config_json=item.config_json, prompts=item.prompts, run_dir=item.run_dir, shard=item.shard
            )
            configure(generate, "generate", **sched)
            if retry:
                generate.set_retry(num_retries=cfg.cluster.generate_retries, backoff_duration="60s", backoff_factor=2)

        collect = comps.collect(
            config_json=config_json, run_dir=run_dir, shard_manifests=dsl.Collected(generate.outputs["Output"])
        )
        configure(collect, "collect", **sched)
        images = collect.outputs["Output"]

        filter_task = configure(
            comps.filter_images(config_json=config_json, images=images, run_dir=run_dir), "filter", **sched
        )
        # After the filter: it has already encoded the synthetic images into the feature cache.
        features = configure(
            comps.features(config_json=config_json, images=images, run_dir=run_dir), "features", **sched
        )
        features.after(filter_task)
        tune = configure(
            comps.tune(
                config_json=config_json,
                features=features.outputs["Output"],
                selection=filter_task.outputs["Output"],
                run_dir=run_dir,
            ),
            "tune",
            **sched,
        )
        evaluate = comps.evaluate(
            config_json=config_json,
            features=features.outputs["Output"],
            head=tune.outputs["Output"],
            images=images,
            selection=filter_task.outputs["Output"],
            run_dir=run_dir,
        )
        configure(evaluate, "evaluate", **sched)
        return evaluate.outputs["Output"]

    return zeroshot
