"""Pipeline parameters <-> experiment config: one mapping for the cluster and the local runner.

A pipeline run is described by a handful of flat parameters (what the Kubeflow UI shows and
``synk8s submit`` passes) plus ``overrides``, a JSON list of ``key.path=value`` strings for every
other field. The ``plan`` task turns them back into the config inside the cluster; ``synk8s submit
--local`` uses the same functions on the laptop, so both paths resolve a run identically::

    args = pipeline_arguments(cfg)                 # {"profile": "tiny", "dataset": "cifar100", ...}
    config_from_arguments(**args) == cfg           # True for every cfg

The pipeline runs classification datasets only. Inside a cluster pod a local ``store_root`` (the
profile's ``./synk8s-store``) would be that pod's own folder, so :func:`pod_store_root` replaces it
with ``$SYNK8S_STORE_ROOT`` from the ConfigMap ``synk8s-config``.

Only the standard library is imported at module level; synk8s.config is imported when needed.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

# Pipeline parameter -> the config key it sets (besides ``profile`` and ``overrides``).
NAMED_PARAMS: dict[str, str] = {
    "dataset": "dataset.name",
    "images_per_class": "generate.images_per_class",
    "num_shards": "generate.num_shards",
    "generator": "models.generator",
    "seed": "seed",
    "store_root": "store.root",
}

STORE_ROOT_ENV = "SYNK8S_STORE_ROOT"

# What the Kubeflow UI says of each pipeline parameter (see :func:`describe_parameters`).
PARAMETER_HELP: dict[str, str] = {
    "profile": "Shipped profile the run starts from: paper (the paper's settings) or tiny (random-weight demo).",
    "dataset": "Dataset name (dataset.name), e.g. cifar100, eurosat; see `synk8s datasets list`.",
    "images_per_class": "Synthetic images generated per class (generate.images_per_class).",
    "num_shards": "Generation shards, one GPU task each (generate.num_shards).",
    "generator": "Text-to-image model (models.generator): sd15, sd21, sd-turbo, sdxl-turbo or a diffusers id.",
    "seed": "Run seed: every prompt's and image's seed derives from it (seed).",
    "store_root": "Artifact store (store.root), s3://bucket/prefix; a local folder means $SYNK8S_STORE_ROOT "
    "of the synk8s-config ConfigMap.",
    "overrides": 'Any other config field, as a JSON list of "key.path=value" strings, e.g. '
    '["tune.loss=ce", "filter.enabled=false"]; see `synk8s config show`.',
    "gpu_node_selector": "Node labels of the GPU node pool; GPU tasks (marked GPU) run there.",
    "gpu_tolerations": "Tolerations of the GPU node pool's taints, for the GPU tasks.",
}


def _leaves(cfg: ExperimentConfig) -> dict[str, Any]:
    """Flatten a config to ``{"section.field": json_value}``; mapping-valued fields stay whole."""
    from pydantic import BaseModel

    dumped = cfg.model_dump(mode="json")
    flat: dict[str, Any] = {}
    for name, field in type(cfg).model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub, value in dumped[name].items():
                flat[f"{name}.{sub}"] = value
        else:
            flat[name] = dumped[name]
    return flat


def describe_parameters(pipeline_func: Any) -> Any:
    """Give every input parameter of a ``@dsl.pipeline`` function its description; returns the function.

    Parameters of :data:`PARAMETER_HELP` get its text; any other one, the config field it sets
    when :data:`NAMED_PARAMS` names it, else a plain note. A description already set stays.
    """
    parameters = pipeline_func.pipeline_spec.root.input_definitions.parameters
    for name, parameter in parameters.items():
        if not parameter.description:
            key = NAMED_PARAMS.get(name)
            parameter.description = PARAMETER_HELP.get(name) or (
                f"Config field {key}." if key else f"Pipeline parameter {name}; see the pipeline's docs."
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


def pipeline_arguments(cfg: ExperimentConfig) -> dict[str, Any]:
    """The pipeline parameters that describe ``cfg``: profile, the named fields and the rest as overrides."""
    leaves = _leaves(cfg)
    named_keys = set(NAMED_PARAMS.values())
    extra = [text for text in config_diff(cfg) if text.partition("=")[0] not in named_keys]
    return {
        "profile": cfg.profile,
        **{param: leaves[key] for param, key in NAMED_PARAMS.items()},
        "overrides": json.dumps(extra),
    }


def config_from_arguments(*, profile: str, overrides: str = "[]", **named: Any) -> ExperimentConfig:
    """Resolve pipeline parameters into a validated config.

    Args:
        profile: profile name (``paper``, ``tiny``).
        overrides: JSON list of ``key.path=value`` strings, applied first.
        **named: the parameters of :data:`NAMED_PARAMS`; applied after ``overrides``, so a value
            edited in the Kubeflow UI wins over the same key inside ``overrides``.

    Raises:
        UsageError: unknown parameter, malformed ``overrides``, or a bad value.
    """
    from synk8s import config, datasets
    from synk8s.errors import UsageError

    unknown = sorted(set(named) - set(NAMED_PARAMS))
    if unknown:
        raise UsageError(f"unknown pipeline parameter {unknown[0]!r}; known: {', '.join(NAMED_PARAMS)}")
    try:
        extra = json.loads(overrides)
    except json.JSONDecodeError:
        extra = None
    if not isinstance(extra, list) or not all(isinstance(item, str) for item in extra):
        raise UsageError(f'overrides must be a JSON list of "key.path=value" strings, got {overrides!r}')
    as_text = [f"{NAMED_PARAMS[param]}={json.dumps(value)}" for param, value in named.items()]
    cfg = config.load(profile, [*extra, *as_text])
    datasets.require_classification(cfg.dataset.name)
    return cfg


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

    if not os.environ.get("KFP_POD_NAME") or storage.is_remote(store_root):
        return store_root
    shared = os.environ.get(STORE_ROOT_ENV, "").strip()
    if not shared or not storage.is_remote(shared):
        raise UsageError(
            f"store_root {store_root!r} is a folder inside this pod, which other tasks cannot read, and "
            f"{STORE_ROOT_ENV} is not an s3:// URI; pass store_root=s3://bucket/prefix"
        )
    return shared
