"""What the Kubeflow Pipelines commands share: the run's config, the endpoint, the client, one-line errors.

The endpoint comes from ``--host``, else ``KF_PIPELINES_ENDPOINT``, else ``cluster.host`` in the
profile. A command's run flags (``--dataset``, ``--shots``, ...) are options made from
:data:`synk8s.flags.FLAGS` by :func:`with_run_flags`; its config comes from :func:`synk8s.resolve.resolve`.
A run's parameters come from :func:`synk8s.components.params.pipeline_arguments`, the mapping the
pipeline's ``plan`` task inverts (:func:`synk8s.resolve.config_from_arguments`), for cluster and local
runs alike.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Optional

import typer

from synk8s.errors import Synk8sError, UsageError
from synk8s.flags import BY_NAME, Flag

if TYPE_CHECKING:
    import kfp

    from synk8s.config import ExperimentConfig

ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"

PIPELINE = typer.Argument(..., help="Pipeline name: zeroshot.")
PROFILE_ENV = "SYNK8S_PROFILE"
DEFAULT_PROFILE = "tiny"
PROFILE_HELP = (
    "Profile: a shipped one (paper, tiny) or a YAML file that extends one ('extends: paper'). Every command "
    f"takes --profile, else ${PROFILE_ENV}, else {DEFAULT_PROFILE} (the offline demo); real runs want paper."
)
PROFILE = typer.Option(DEFAULT_PROFILE, "--profile", "-p", envvar=PROFILE_ENV, help=PROFILE_HELP)
SET = typer.Option([], "--set", "-s", help="Override a config field: key.path=value (repeatable).")
HOST = typer.Option(None, "--host", help=f"KFP API endpoint URL; default ${ENDPOINT_ENV}, then cluster.host.")


def flag_option(flag: Flag) -> Any:
    """The typer option of a run flag: its spelling, help, bound and environment variable from the flag."""
    names = [flag.option, *([flag.short] if flag.short else [])]
    return typer.Option(None, *names, help=flag.help, min=flag.minimum, envvar=flag.envvar)


def with_run_flags(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the run flags ``names`` (of :data:`synk8s.flags.FLAGS`) become options of a command.

    The command declares a parameter ``flags``; in its place typer sees one option per flag, and the
    command gets their values as ``flags``, a dict by flag name (None: not given), for
    :func:`synk8s.resolve.resolve`.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = []
        for param in inspect.signature(func, eval_str=True).parameters.values():
            if param.name != "flags":
                params.append(param.replace(kind=keyword))
                continue
            for flag in (BY_NAME[name] for name in names):
                params.append(inspect.Parameter(
                    flag.name, keyword, default=flag_option(flag), annotation=Optional[flag.type]
                ))

        @functools.wraps(func)
        def command(**values: Any) -> Any:
            flags = {name: values.pop(name) for name in names}
            return func(**values, flags=flags)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return command

    return decorate


def resolve_pipeline_config(
    pipeline: str, profile: str, overrides: list[str], *, upload: bool = True, **flags: Any
) -> ExperimentConfig:
    """The config a run of ``pipeline`` uses: :func:`synk8s.resolve.resolve`, then the pipeline's own fields.

    ``synk8s submit`` (with or without ``--dry-run``), ``synk8s plan`` and ``synk8s compile`` resolve
    through this one function, so a value one of them refuses, all of them refuse.

    Args:
        pipeline: a pipeline name (:data:`synk8s.pipelines.PIPELINES`).
        profile: a shipped profile or a profile file.
        overrides: ``key.path=value`` strings.
        upload: copy a ``--classes`` file into the store (False: ``plan``, which writes nothing).
        **flags: run flags by name (:data:`synk8s.flags.FLAGS`); None: not given.

    Raises:
        UsageError: unknown pipeline, or a bad profile, override or value.
    """
    from synk8s.pipelines import PIPELINES, prepare
    from synk8s.resolve import resolve

    if pipeline not in PIPELINES:
        raise UsageError(f"unknown pipeline {pipeline!r}; choose one of: {', '.join(PIPELINES)}")
    return prepare(pipeline, resolve(profile, overrides, upload=upload, **flags))


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
