"""Experiment config -> pipeline parameters: one mapping for the cluster and the local runner.

A pipeline run is described by typed parameters (what the Kubeflow UI shows, each with its type
and description, and what ``synk8s submit`` passes; each pipeline has the knobs its study changes
most, see :data:`synk8s.flags.PARAMETERS`) plus ``overrides``, a JSON list of ``key.path=value``
strings for every other field. The ``plan`` task turns them back into the config inside the cluster
with :func:`synk8s.resolve.config_from_arguments`; ``synk8s submit --local`` uses the same functions
on the laptop, so both paths resolve a run identically::

    args = pipeline_arguments(cfg, ("dataset", "seed", "tune_epochs"))   # {"profile": "tiny", "dataset": ...}
    config_from_arguments(**args) == cfg           # True for every resolved cfg and every choice of names

The pipeline runs classification datasets only. Inside a cluster pod a local ``store_root`` (the
profile's ``./synk8s-store``) would be that pod's own folder, so :func:`pod_store_root` replaces it
with ``$SYNK8S_STORE_ROOT`` from the ConfigMap ``synk8s-config``.

Only the standard library is imported at module level; synk8s is imported when needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

# The typed parameters of :func:`pipeline_arguments` when no pipeline names its own.
BASE_PARAMETERS = ("dataset", "images_per_class", "num_shards", "generator", "seed", "store_root")

# What the Kubeflow UI says of each pipeline parameter that is no run flag (see :func:`describe_parameters`).
PARAMETER_HELP: dict[str, str] = {
    "profile": "Shipped profile the run starts from: paper (the paper's settings) or tiny (random-weight demo).",
    "overrides": "Every config field without a parameter of its own, as a JSON list of \"key.path=value\" "
    'strings, e.g. ["tune.lr=0.001", "filter.threshold=0.2"]; a typed parameter wins over the same key here; '
    "see `synk8s config show`.",
    "gpu_node_selector": "Node labels of the GPU node pool; GPU tasks (marked GPU) run there.",
    "gpu_tolerations": "Tolerations of the GPU node pool's taints, for the GPU tasks.",
}


def _leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config to ``{"section.field": json_value}``, nested sections (``pretrain.moco``) too;
    mapping-valued fields stay whole."""
    from pydantic import BaseModel

    flat: dict[str, Any] = {}
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            flat.update(_leaves(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = cfg.model_dump(mode="json", include={name})[name]
    return flat


def describe_parameters(pipeline_func: Any) -> Any:
    """Give every input parameter of a ``@dsl.pipeline`` function its description; returns the function.

    A typed parameter gets its flag's help (:data:`synk8s.flags.PARAMETERS`), the others the text
    of :data:`PARAMETER_HELP`, else a plain note. A description already set stays.
    """
    from synk8s.flags import PARAMETERS

    parameters = pipeline_func.pipeline_spec.root.input_definitions.parameters
    for name, parameter in parameters.items():
        if not parameter.description:
            flag = PARAMETERS.get(name)
            parameter.description = flag.help if flag else PARAMETER_HELP.get(
                name, f"Pipeline parameter {name}; see the pipeline's docs."
            )
    return pipeline_func


def config_diff(cfg: ExperimentConfig) -> list[str]:
    """Overrides that turn ``cfg.profile`` into ``cfg``, as ``key.path=<JSON value>`` strings.

    JSON is valid YAML, so :func:`synk8s.config.load` reads every value back with its type.
    """
    from synk8s import config

    base = _leaves(config.load(cfg.profile))
    return [
        f"{key}={json.dumps(value, sort_keys=True)}"
        for key, value in _leaves(cfg).items()
        if key != "profile" and base[key] != value
    ]


def pipeline_arguments(cfg: ExperimentConfig, names: Sequence[str] = BASE_PARAMETERS) -> dict[str, Any]:
    """The pipeline parameters that describe ``cfg``: profile, the typed ``names`` and the rest as overrides.

    Args:
        cfg: the run's config.
        names: typed parameters of :data:`synk8s.flags.PARAMETERS` the pipeline has (its module's ``PARAMETERS``).
    """
    from synk8s.flags import PARAMETERS

    leaves = _leaves(cfg)
    named_keys = {PARAMETERS[name].key for name in names}
    extra = [text for text in config_diff(cfg) if text.partition("=")[0] not in named_keys]
    return {
        "profile": cfg.profile,
        **{name: leaves[PARAMETERS[name].key] for name in names},
        "overrides": json.dumps(extra),
    }


def pod_store_root(store_root: str) -> str:
    """The store root a task uses: ``store_root``, or ``$SYNK8S_STORE_ROOT`` for a local one in a pod.

    Outside a KFP task pod (no ``KFP_POD_NAME``, which the KFP backend sets in every task pod; a
    notebook pod running ``--local`` has none) and for an ``s3://`` root, ``store_root`` is returned
    as is. In a task pod a local folder is private to that pod, so the ConfigMap's
    ``SYNK8S_STORE_ROOT`` takes its place.

    Raises:
        UsageError: in a pod with a local ``store_root`` and no ``s3://`` ``SYNK8S_STORE_ROOT``.
    """
    from synk8s import storage
    from synk8s.errors import UsageError
    from synk8s.flags import STORE_ROOT_ENV

    if not os.environ.get("KFP_POD_NAME") or storage.is_remote(store_root):
        return store_root
    shared = os.environ.get(STORE_ROOT_ENV, "").strip()
    if not shared or not storage.is_remote(shared):
        raise UsageError(
            f"store_root {store_root!r} is a folder inside this pod, which other tasks cannot read, and "
            f"{STORE_ROOT_ENV} is not an s3:// URI; pass store_root=s3://bucket/prefix"
        )
    return shared
