"""``synk8s compile``, ``synk8s submit`` and ``synk8s runs``: Kubeflow Pipelines from the command line.

    synk8s compile zeroshot -o zeroshot.yaml --profile paper
    synk8s submit zeroshot --dataset cifar100 --store s3://synk8s/store --host http://127.0.0.1:8080 --wait
    synk8s submit zeroshot --profile tiny --dataset cifar10 --local     # no cluster: kfp.local
    synk8s runs list --host http://127.0.0.1:8080

The endpoint comes from ``--host``, else ``KF_PIPELINES_ENDPOINT``, else ``cluster.host`` in the
profile. A run's parameters come from :func:`synk8s.components.params.pipeline_arguments`, the same
mapping the pipeline's ``plan`` task inverts, for cluster and local runs alike.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from synk8s import config, storage
from synk8s.errors import Synk8sError, UsageError

if TYPE_CHECKING:
    import kfp

    from synk8s.config import ExperimentConfig

log = logging.getLogger(__name__)

ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"
TERMINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")

console = Console(stderr=True, soft_wrap=True)

PIPELINE = typer.Argument(..., help="Pipeline name: zeroshot.")
PROFILE = typer.Option("paper", "--profile", "-p", help="Profile name: paper or tiny.")
SET = typer.Option([], "--set", "-s", help="Override a config field: key.path=value (repeatable).")
HOST = typer.Option(None, "--host", help=f"KFP API endpoint URL; default ${ENDPOINT_ENV}, then cluster.host.")

runs_app = typer.Typer(no_args_is_help=True)


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
) -> ExperimentConfig:
    """The config of a submission: profile, then ``--set`` overrides, then the named flags.

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
    }
    named = {k: v for k, v in flags.items() if v is not None}
    return config_from_arguments(profile=profile, overrides=json.dumps(list(overrides)), **named)


def resolve_host(host: Optional[str], cfg: ExperimentConfig) -> Optional[str]:
    """``--host``, else ``$KF_PIPELINES_ENDPOINT``, else ``cluster.host``; None when none is set."""
    return host or os.environ.get(ENDPOINT_ENV) or cfg.cluster.host


def _require_host(host: Optional[str], cfg: ExperimentConfig) -> str:
    found = resolve_host(host, cfg)
    if not found:
        raise UsageError(f"no Kubeflow Pipelines endpoint: pass --host URL (or set {ENDPOINT_ENV} or cluster.host)")
    return found


@contextlib.contextmanager
def _talking_to(host: str) -> Iterator[None]:
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


def _client(host: str, cfg: ExperimentConfig) -> kfp.Client:
    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2.0.0-beta.2 and later"
        with _talking_to(host):
            # KFP_TOKEN: a bearer token for endpoints behind an auth proxy (never logged or stored).
            return kfp.Client(host=host, namespace=cfg.cluster.namespace, existing_token=os.environ.get("KFP_TOKEN"))


def compile_cmd(
    pipeline: str = PIPELINE,
    output: Path = typer.Option(..., "--output", "-o", help="YAML file to write."),
    profile: str = PROFILE,
    overrides: list[str] = SET,
) -> None:
    """Compile a pipeline to the YAML that Kubeflow Pipelines runs (defaults from the profile)."""
    from synk8s.pipelines import compile_pipeline

    path = compile_pipeline(pipeline, resolve_config(profile, overrides), output)
    typer.echo(str(path))


def submit(
    pipeline: str = PIPELINE,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset name (dataset.name)."),
    profile: str = PROFILE,
    overrides: list[str] = SET,
    images_per_class: Optional[int] = typer.Option(None, "--images-per-class", help="generate.images_per_class"),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", help="generate.num_shards (GPU tasks)."),
    generator: Optional[str] = typer.Option(None, "--generator", help="models.generator: registry name or hub id."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Run seed (seed)."),
    store: Optional[str] = typer.Option(
        None, "--store", help="Store root (store.root): s3://bucket/prefix or a folder."
    ),
    host: Optional[str] = HOST,
    experiment: Optional[str] = typer.Option(None, "--experiment", help="KFP experiment; default cluster.experiment."),
    run_name: Optional[str] = typer.Option(None, "--run-name", help="Run name; default <pipeline>-<dataset>-<digest>."),
    wait: bool = typer.Option(False, "--wait", help="Follow the run until it ends; exit 1 unless it succeeds."),
    recurring: Optional[str] = typer.Option(
        None, "--recurring", help="Cron schedule, six fields with seconds first ('0 0 3 * * *': daily 03:00)."
    ),
    local: bool = typer.Option(False, "--local", help="Run here with kfp.local instead of on a cluster."),
    cache: bool = typer.Option(
        True, "--cache/--no-cache", help="Reuse finished tasks of an earlier run with the same inputs (cluster)."
    ),
    poll_seconds: float = typer.Option(10.0, "--poll-seconds", hidden=True, help="Status poll interval of --wait."),
) -> None:
    """Run a pipeline on Kubeflow Pipelines (or here, with --local)."""
    from synk8s.components.params import pipeline_arguments
    from synk8s.pipelines import PIPELINES

    if pipeline not in PIPELINES:
        raise UsageError(f"unknown pipeline {pipeline!r}; choose one of: {', '.join(PIPELINES)}")
    cfg = resolve_config(
        profile,
        overrides,
        dataset=dataset,
        images_per_class=images_per_class,
        num_shards=num_shards,
        generator=generator,
        seed=seed,
        store=store,
    )
    if local:
        if recurring or host:
            raise UsageError("--local runs here once; drop --recurring and --host, or drop --local")
        check_store(cfg.store.root)
        typer.echo(run_local(pipeline, cfg))
        return
    endpoint = resolve_host(host, cfg)
    if not endpoint:
        raise UsageError(
            f"no Kubeflow Pipelines endpoint: pass --host URL (or set {ENDPOINT_ENV} or cluster.host), "
            "or run here with --local"
        )
    if not storage.is_remote(cfg.store.root):
        raise UsageError(
            f"store.root {cfg.store.root!r} is a local folder, which pods do not share; pass --store s3://bucket/prefix"
        )
    if recurring and wait:
        raise UsageError("--wait follows one run; a --recurring schedule starts many: drop one of them")
    schedule = None
    if recurring:
        from synk8s.pipelines.schedule import check_cron

        schedule = check_cron(recurring)
    name = run_name or f"{pipeline}-{cfg.dataset.name}-{cfg.digest()}"
    arguments = pipeline_arguments(cfg)
    with tempfile.TemporaryDirectory(prefix="synk8s-") as tmp:
        from synk8s.pipelines import compile_pipeline

        package = str(compile_pipeline(pipeline, cfg, Path(tmp) / f"{pipeline}.yaml"))
        client = _client(endpoint, cfg)
        with _talking_to(endpoint), contextlib.redirect_stdout(sys.stderr):
            exp = client.create_experiment(name=experiment or cfg.cluster.experiment)
            if schedule:
                job = client.create_recurring_run(
                    experiment_id=exp.experiment_id,
                    job_name=name,
                    cron_expression=schedule,
                    params=arguments,
                    pipeline_package_path=package,
                    enable_caching=cache,
                )
            else:
                run = client.create_run_from_pipeline_package(
                    package, arguments=arguments, run_name=name, experiment_id=exp.experiment_id, enable_caching=cache
                )
    if schedule:
        typer.echo(f"recurring run {job.recurring_run_id} ({schedule}) in experiment {exp.display_name}")
        return
    typer.echo(f"run {run.run_id} ({name}) in experiment {exp.display_name}")
    if wait:
        follow(client, endpoint, run.run_id, poll_seconds)


def _states(run: Any) -> list[tuple[str, str]]:
    tasks = (run.run_details.task_details if run.run_details else None) or []
    return [(t.display_name or t.task_id or "?", str(t.state or "PENDING")) for t in tasks]


def _status_table(run: Any, elapsed: float) -> Table:
    table = Table(title=f"run {run.run_id}: {run.state or 'PENDING'}  ({elapsed:.0f} s)", title_justify="left")
    table.add_column("task")
    table.add_column("state")
    for task, state in _states(run):
        table.add_row(task, state)
    return table


def follow(client: kfp.Client, host: str, run_id: str, poll_seconds: float) -> None:
    """Show a live status table of ``run_id`` until it ends; raise unless it succeeded."""
    start = time.monotonic()
    with _talking_to(host), Live(console=console, refresh_per_second=2, transient=False) as live:
        while True:
            run = client.get_run(run_id)
            live.update(_status_table(run, time.monotonic() - start))
            state = str(run.state or "")
            if state in TERMINAL_STATES:
                break
            time.sleep(poll_seconds)
    if state not in ("SUCCEEDED", "SKIPPED"):
        reason = f": {run.error.message}" if run.error and run.error.message else ""
        raise Synk8sError(f"run {run_id} ended {state}{reason}; see `synk8s runs logs {run_id}`")
    typer.echo(f"run {run_id} {state}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def check_store(root: str) -> None:
    """Read the S3 store root once, so missing credentials or a wrong endpoint or bucket is one line.

    A local folder needs no check (the stages create it).

    Raises:
        StoreError: the store cannot be reached or refuses access.
    """
    if storage.is_remote(root):
        storage.list_prefixes(root)


def local_pipeline_root(cfg: ExperimentConfig) -> str:
    """Where kfp.local keeps its own small outputs: ``<store>/kfp-local``, or ``./kfp-local`` for an S3 store."""
    if storage.is_remote(cfg.store.root):
        return str(Path.cwd() / "kfp-local")
    return storage.join(cfg.store.root, "kfp-local")


class _ShortRecords(logging.Filter):
    """Keeps kfp.local's log readable: drops its per-input expression traces, shortens long lines."""

    LIMIT = 240

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "expression selector" in message:
            return False
        lines = [line if len(line) <= self.LIMIT else line[: self.LIMIT] + " ..." for line in message.splitlines()]
        record.msg, record.args = "\n".join(lines), None
        return True


def run_local(pipeline: str, cfg: ExperimentConfig) -> str:
    """Run ``pipeline`` here through kfp.local (one subprocess per task, no containers).

    The task logs go to stderr. Returns the URI of the run's ``report.json``.

    Raises:
        Synk8sError: a task failed (its traceback is in the log above).
    """
    from kfp import local

    from synk8s.components.params import pipeline_arguments
    from synk8s.pipelines import build

    func = build(pipeline, cfg, retry=False, parallelism=1)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=local_pipeline_root(cfg))
    log.info("kfp.local runs each task on this machine's Python; GPU, resource and Kubernetes settings do not apply")
    short = _ShortRecords()
    logging.getLogger().addFilter(short)  # kfp.local logs through the root logger
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        # One warning per task that its cluster settings and image are ignored: said once above.
        warnings.filterwarnings("ignore", message=r"Task '.*': settings \[.*\] have no effect")
        warnings.filterwarnings("ignore", message=r"You may be attemping to run a task that uses custom")
        try:
            task = func(**pipeline_arguments(cfg))
        except RuntimeError as error:
            raise Synk8sError(f"local run failed: {_ANSI.sub('', str(error))} Its log is above.") from None
        finally:
            logging.getLogger().removeFilter(short)
    return task.output


def _print_run(run: Any) -> None:
    typer.echo(f"run id:     {run.run_id}")
    typer.echo(f"name:       {run.display_name}")
    typer.echo(f"state:      {run.state}")
    typer.echo(f"experiment: {run.experiment_id}")
    typer.echo(f"created:    {run.created_at}")
    typer.echo(f"finished:   {run.finished_at}")
    if run.error and run.error.message:
        typer.echo(f"error:      {run.error.message}")
    params = run.runtime_config.parameters if run.runtime_config else None
    for key, value in sorted((params or {}).items()):
        typer.echo(f"  {key} = {json.dumps(value)}")
    for task, state in _states(run):
        typer.echo(f"  task {task}: {state}")


@runs_app.command("list")
def runs_list(
    host: Optional[str] = HOST,
    profile: str = PROFILE,
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Only runs of this experiment."),
    limit: int = typer.Option(20, "--limit", min=1, help="Most recent runs to show."),
) -> None:
    """List the most recent runs."""
    cfg = config.load(profile)
    endpoint = _require_host(host, cfg)
    client = _client(endpoint, cfg)
    with _talking_to(endpoint):
        experiment_id = client.get_experiment(experiment_name=experiment).experiment_id if experiment else None
        response = client.list_runs(page_size=limit, sort_by="created_at desc", experiment_id=experiment_id)
    table = Table("run id", "name", "state", "created")
    for run in response.runs or []:
        table.add_row(run.run_id, run.display_name, str(run.state), str(run.created_at))
    Console(soft_wrap=True).print(table)


@runs_app.command("get")
def runs_get(
    run_id: str = typer.Argument(..., help="Run id."), host: Optional[str] = HOST, profile: str = PROFILE
) -> None:
    """Show a run: state, parameters and task states."""
    cfg = config.load(profile)
    endpoint = _require_host(host, cfg)
    client = _client(endpoint, cfg)
    with _talking_to(endpoint):
        run = client.get_run(run_id)
    _print_run(run)


def task_pods(run: Any) -> list[tuple[str, str]]:
    """The ``(task name, pod name)`` pairs of a run's task details, sorted, without duplicates.

    A task's own pod and its children's (the iterations of a ParallelFor) all count; tasks with
    no pod yet are left out.
    """
    tasks = (run.run_details.task_details if run.run_details else None) or []
    pods = []
    for task in tasks:
        names = [task.pod_name] + [child.pod_name for child in task.child_tasks or []]
        pods += [(task.display_name or task.task_id, name) for name in names if name]
    return sorted(set(pods))


class _NoKubernetesAccess(Exception):
    """The Kubernetes API cannot be used from here; the message says why."""


def _core_api() -> Any:
    """A ``CoreV1Api`` from the pod's service account, else from ``$KUBECONFIG`` or ``~/.kube/config``."""
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        try:
            # Read $KUBECONFIG now: the client reads it once, when it is first imported.
            kube_config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
        except (kube_config.ConfigException, OSError) as error:
            first = (str(error).splitlines() or [type(error).__name__])[0][:200]
            raise _NoKubernetesAccess(f"no Kubernetes credentials ({first})") from None
    return client.CoreV1Api()


def _pod_log(api: Any, namespace: str, pod: str) -> str:
    """The log of a pod's ``main`` container, or a one-line note in parentheses when there is none.

    Raises:
        _NoKubernetesAccess: the API refuses these credentials or cannot be reached.
    """
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        return api.read_namespaced_pod_log(pod, namespace, container="main")
    except ApiException as error:
        if error.status in (401, 403):
            refused = f"the Kubernetes API refused to read pod logs ({error.status} {error.reason})"
            raise _NoKubernetesAccess(refused) from None
        try:
            detail = json.loads(error.body)["message"]
        except (TypeError, ValueError, KeyError):
            detail = f"{error.status} {error.reason}"
        return f"(no log: {detail})"
    except urllib3.exceptions.HTTPError as error:
        raise _NoKubernetesAccess(f"cannot reach the Kubernetes API ({type(error).__name__})") from None


@runs_app.command("logs")
def runs_logs(
    run_id: str = typer.Argument(..., help="Run id."),
    host: Optional[str] = HOST,
    profile: str = PROFILE,
    namespace: Optional[str] = typer.Option(
        None, "--namespace", "-n", help="Pods' namespace; default cluster.namespace."
    ),
) -> None:
    """Print the log of every task pod of a run, each after a header line naming the task.

    The KFP API serves run and task state but no pod logs (the UI reads them from Kubernetes), so
    the pods' names come from the run's task details and their logs from the Kubernetes API, with
    the pod's service account or the kubeconfig. Without access, the ``kubectl logs`` commands are
    printed instead, after a note saying why.
    """
    cfg = config.load(profile)
    endpoint = _require_host(host, cfg)
    client = _client(endpoint, cfg)
    with _talking_to(endpoint):
        run = client.get_run(run_id)
    pods = task_pods(run)
    ns = namespace or cfg.cluster.namespace
    if not pods:
        console.print(f"run {run_id} ({run.state}) has no pods yet", highlight=False)
        return
    try:
        api = _core_api()
        for task, pod in pods:
            text = _pod_log(api, ns, pod)
            typer.echo(f"===== {task}: pod {pod} =====")
            typer.echo(text.rstrip("\n"))
    except _NoKubernetesAccess as reason:
        console.print(f"cannot read pod logs: {reason}; read them with kubectl:", highlight=False)
        for task, pod in pods:
            typer.echo(f"kubectl logs -n {ns} {pod} -c main  # {task}")


def register(app: typer.Typer) -> None:
    """Add ``compile``, ``submit`` and ``runs`` to the root command."""
    app.command("compile")(compile_cmd)
    app.command("submit")(submit)
    app.add_typer(runs_app, name="runs", help="List and inspect Kubeflow Pipelines runs.")
