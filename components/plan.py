"""The ``plan`` component: pipeline parameters -> the run's config and its run folder."""

from typing import NamedTuple


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
    from synk8s.stages.table import run_dir as table_run_dir

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
    return outputs(cfg.model_dump_json(), table_run_dir(cfg))
