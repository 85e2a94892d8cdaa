"""The ``plan`` component: pipeline parameters -> the run's config and its run folder.

Each pipeline has its own typed parameters (see :data:`synk8s.flags.PARAMETERS`), and KFP reads a
component's inputs from its function's signature, so the ``plan`` function is rendered for the
pipeline's parameter names, in the manner of the stage components (:mod:`synk8s.components.stages`);
its body calls :func:`plan_run`::

    def plan(profile: str, dataset: str, seed: int, ..., overrides: str) -> NamedTuple(...):
        from synk8s.components.plan import plan_run

        return plan_run(profile=profile, overrides=overrides, dataset=dataset, seed=seed, ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PLAN_RETURNS = 'NamedTuple("PlanOutputs", [("config_json", str), ("run_dir", str)])'


def plan_run(*, profile: str, overrides: str, store_root: str | None = None, **named: Any) -> Any:
    """Resolve the pipeline parameters into the run's config (JSON) and its run folder URI.

    The parameters may have been edited in the Kubeflow UI, so they are checked here, at the edge
    (:func:`synk8s.resolve.config_from_arguments`); the tasks after ``plan`` trust its ``config_json``.
    In a pod a local ``store_root`` (the profile default) becomes ``$SYNK8S_STORE_ROOT`` from the
    ConfigMap; without it the task fails with a one-line error asking for ``store_root=s3://...``.

    Returns:
        ``PlanOutputs(config_json, run_dir)``.
    """
    from collections import namedtuple

    from synk8s.components.params import pod_store_root

    from synk8s.resolve import config_from_arguments
    from synk8s.stages.table import run_dir as table_run_dir

    if store_root is not None:
        named["store_root"] = pod_store_root(store_root)
    cfg = config_from_arguments(profile=profile, overrides=overrides, **named)
    outputs = namedtuple("PlanOutputs", ["config_json", "run_dir"])
    return outputs(cfg.model_dump_json(), table_run_dir(cfg))


def plan_source(names: Sequence[str]) -> str:
    """The source of the ``plan`` function of a pipeline whose typed parameters are ``names``."""
    from synk8s.flags import PARAMETERS

    params = ["profile: str", *(f"{name}: {PARAMETERS[name].type.__name__}" for name in names), "overrides: str"]
    arguments = ["profile=profile", "overrides=overrides", *(f"{name}={name}" for name in names)]
    body = "".join(f"        {argument},\n" for argument in arguments)
    return (
        "def plan(\n" + "".join(f"    {param},\n" for param in params) + f") -> {PLAN_RETURNS}:\n"
        '    """Resolve the pipeline parameters into the run\'s config (JSON) and its run folder URI."""\n'
        "    from synk8s.components.plan import plan_run\n\n"
        f"    return plan_run(\n{body}    )\n"
    )
