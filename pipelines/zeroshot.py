"""The zero-shot pipeline (paper section 3.1) as a Kubeflow pipeline.

    plan -> prompts -> generate_shards -> generate x num_shards (ParallelFor) -> collect
         -> filter -> features -> leakage -> tune -> evaluate
                                                  tune -> export   (the classifier folder: docs/serving.md)
    plan -> test_features -> features       (the test set's features: one shared folder for every seed)

The leakage task flags synthetic images that nearly duplicate a test image; tune reads its flags
and leaves those images out when the compile-time config has ``leakage.drop`` on (see
:class:`synk8s.stagetable.spec.When`).

Compile it with ``synk8s compile zeroshot -o zeroshot.yaml --profile paper``, or run it with
``synk8s submit zeroshot --dataset cifar100``. The config chosen at compile time gives every
parameter its default, the container images, the GPU type, the Secret and ConfigMap names and the
ParallelFor limit; the parameters can be changed per run (the ``plan`` task resolves them). What
each stage reads, needs and writes comes from the stage table (see :mod:`synk8s.pipelines.wiring`).
"""

from typing import Any

from synk8s.pipelines.wiring import Wiring, planned_pipeline

from synk8s.config import ExperimentConfig

PIPELINE_NAME = "synk8s-zeroshot"
#: typed pipeline parameters (see synk8s.flags.PARAMETERS): Table 2's switches among them
PARAMETERS = (
    "dataset", "images_per_class", "num_shards", "generator", "seed", "store_root",
    "prompts_mode", "filter_enabled", "tune_loss", "tune_epochs",
)


def build_pipeline(
    cfg: ExperimentConfig, *, retry: bool = True, parallelism: int | None = None, threads: int | None = None
):
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
        threads: ``OMP_NUM_THREADS`` of every task (a local run's share of the cores); None: unset.

    Returns:
        A ``@dsl.pipeline`` function: compile it, submit it, or call it under ``kfp.local``.
    """

    @planned_pipeline(
        cfg,
        parameters=PARAMETERS,
        name=PIPELINE_NAME,
        description="Synthetic images from a text-to-image model -> CLIP filter -> tuned CLIP classifier, "
        "evaluated zero-shot on a real test set.",
        retry=retry,
        parallelism=parallelism,
        threads=threads,
    )
    def zeroshot(wire: Wiring) -> Any:
        # leakage's flags are reported whether or not tune reads them (leakage.drop); the rest is what evaluate needs;
        # export writes the tuned classifier as a folder, shown as a Model artifact
        tasks = wire.add_through("leakage", "evaluate", "export")
        return tasks["evaluate"].outputs["Output"]  # the run report's URI

    return zeroshot
