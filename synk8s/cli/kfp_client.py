"""What the Kubeflow Pipelines commands share: the run's config, the endpoint, the client, one-line errors.

The endpoint comes from ``--host``, else ``KF_PIPELINES_ENDPOINT``, else ``cluster.host`` in the
profile. A run's parameters come from :func:`synk8s.components.params.pipeline_arguments`, the same
mapping the pipeline's ``plan`` task inverts, for cluster and local runs alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

import typer

from synk8s.errors import Synk8sError, UsageError

if TYPE_CHECKING:
    import kfp

    from synk8s.config import ExperimentConfig

ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"

PIPELINE = typer.Argument(..., help="Pipeline name: zeroshot.")
PROFILE_ENV = "SYNK8S_PROFILE"
STORE_ENV = "SYNK8S_STORE_ROOT"
DEFAULT_PROFILE = "tiny"
PROFILE_HELP = (
    "Profile: a shipped one (paper, tiny) or a YAML file that extends one ('extends: paper'). Every command "
    f"takes --profile, else ${PROFILE_ENV}, else {DEFAULT_PROFILE} (the offline demo); real runs want paper."
)
PROFILE = typer.Option(DEFAULT_PROFILE, "--profile", "-p", envvar=PROFILE_ENV, help=PROFILE_HELP)
SET = typer.Option([], "--set", "-s", help="Override a config field: key.path=value (repeatable).")
# The run options that `submit` and `plan` share (each maps onto one config field).
DATASET = typer.Option(None, "--dataset", "-d", help="Dataset name (dataset.name).")
IMAGES_PER_CLASS = typer.Option(None, "--images-per-class", help="generate.images_per_class")
NUM_SHARDS = typer.Option(None, "--num-shards", help="generate.num_shards (GPU tasks).")
GENERATOR = typer.Option(None, "--generator", help="models.generator: registry name or hub id.")
SHOTS = typer.Option(
    None, "--shots", min=1, help="fewshot.shots_per_class: real images per class (few-shot pipelines)."
)
LABEL_SPACE = typer.Option(
    None, "--label-space", help="pretrain.label_space: cifar100, imagenet-1k or imagenet-2k (pretrain pipeline)."
)
METHOD = typer.Option(None, "--method", help="pretrain.method: supervised or moco.")
TRANSFER = typer.Option(None, "--transfer", help="pretrain.transfer: cifar100 or voc.")
CLASSES = typer.Option(
    None, "--classes", help="Your own label space: a classes file, one name per line or YAML (docs/custom-data.md)."
)
IMAGES = typer.Option(
    None, "--images", help="Your own images (dataset.images): ImageFolder root or CSV/JSONL manifest, path or s3://."
)
HOST = typer.Option(None, "--host", help=f"KFP API endpoint URL; default ${ENDPOINT_ENV}, then cluster.host.")


def resolve_config(
    profile: str,
    overrides: list[str],
    *,
    dataset: Optional[str] = None,
    images_per_class: Optional[int] = None,
    num_shards: Optional[int] = None,
    generator: Optional[str] = None,
    seed: Optional[int] = None,
    store: Optional[str] = None,
    classes: Optional[str] = None,
    images: Optional[str] = None,
    upload_classes: bool = True,
    **typed: Any,
) -> ExperimentConfig:
    """The config of a submission: profile, then ``--set`` overrides, then the named flags.

    ``typed`` holds more typed pipeline parameters by name (``shots``, ``label_space``, ...; see
    :data:`synk8s.components.params.PARAMETERS`). ``classes`` and ``images`` (``--classes``,
    ``--images``) copy the label space into the store and name it (:func:`synk8s.datasets.custom.overrides`).

    Resolved by :func:`synk8s.components.params.config_from_arguments`, the function the pipeline's
    ``plan`` task runs, so a classification dataset is required here as there.
    """
    from synk8s.components.params import config_from_arguments

    flags = {
        "dataset": dataset,
        "images_per_class": images_per_class,
        "num_shards": num_shards,
        "generator": generator,
        "seed": seed,
        "store_root": store,
        **typed,
    }
    named = {k: v for k, v in flags.items() if v is not None}
    cfg = config_from_arguments(profile=profile, overrides=json.dumps(list(overrides)), **named)
    if classes is None and images is None:
        return cfg
    from synk8s.datasets.custom import overrides as custom_overrides

    named.pop("dataset", None)  # --classes / --images name the dataset
    extra = custom_overrides(classes, images, cfg.store.root, upload=upload_classes)
    return config_from_arguments(profile=profile, overrides=json.dumps([*overrides, *extra]), **named)


def resolve_pipeline_config(pipeline: str, profile: str, overrides: list[str], **flags: Any) -> ExperimentConfig:
    """The config a run of ``pipeline`` uses: :func:`resolve_config`, then the pipeline's own fields.

    ``synk8s submit`` (with or without ``--dry-run``) and ``synk8s compile`` resolve through this one
    function, so a value one of them refuses, all of them refuse.

    Args:
        pipeline: a pipeline name (:data:`synk8s.pipelines.PIPELINES`).
        profile: a shipped profile or a profile file.
        overrides: ``key.path=value`` strings.
        **flags: the named flags and typed parameters of :func:`resolve_config`.

    Raises:
        UsageError: unknown pipeline, or a bad profile, override or value.
    """
    from synk8s.pipelines import PIPELINES, prepare

    if pipeline not in PIPELINES:
        raise UsageError(f"unknown pipeline {pipeline!r}; choose one of: {', '.join(PIPELINES)}")
    return prepare(pipeline, resolve_config(profile, overrides, **flags))


def resolve_host(host: Optional[str], cfg: ExperimentConfig) -> Optional[str]:
    """``--host``, else ``$KF_PIPELINES_ENDPOINT``, else ``cluster.host``; None when none is set."""
    return host or os.environ.get(ENDPOINT_ENV) or cfg.cluster.host


def require_host(host: Optional[str], cfg: ExperimentConfig) -> str:
    """:func:`resolve_host`, or a one-line UsageError when no endpoint is set."""
    found = resolve_host(host, cfg)
    if not found:
        raise UsageError(f"no Kubeflow Pipelines endpoint: pass --host URL (or set {ENDPOINT_ENV} or cluster.host)")
    return found


@contextlib.contextmanager
def talking_to(host: str) -> Iterator[None]:
    """Turn the KFP client's transport and API errors into one-line errors."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as error:
        body = (error.body or "").strip().splitlines()
        detail = f": {body[0][:300]}" if body else ""
        raise Synk8sError(f"Kubeflow Pipelines at {host} answered {error.status} {error.reason}{detail}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise Synk8sError(
            f"cannot reach Kubeflow Pipelines at {host} ({type(error).__name__}); check --host, "
            f"e.g. kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80 and --host http://127.0.0.1:8080"
        ) from None


def client(host: str, cfg: ExperimentConfig) -> kfp.Client:
    """A KFP client of ``host`` in ``cluster.namespace``; ``$KFP_TOKEN`` is sent as a bearer token."""
    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2 and later"
        with talking_to(host):
            # KFP_TOKEN: a bearer token for endpoints behind an auth proxy (never logged or stored).
            return kfp.Client(host=host, namespace=cfg.cluster.namespace, existing_token=os.environ.get("KFP_TOKEN"))


def task_states(run: Any) -> list[tuple[str, str]]:
    """``(task name, state)`` of each task in a run's details."""
    tasks = (run.run_details.task_details if run.run_details else None) or []
    return [(t.display_name or t.task_id or "?", str(t.state or "PENDING")) for t in tasks]
