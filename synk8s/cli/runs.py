"""``synk8s runs``: list and inspect Kubeflow Pipelines runs, and print their task pods' logs.

    synk8s runs list --host http://127.0.0.1:8080
    synk8s runs get RUN_ID --host ...
    synk8s runs logs RUN_ID --host ... -n synk8s
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from synk8s.cli.kfp_client import HOST, PROFILE, client, require_host, talking_to, task_states
from synk8s.cli.output import OUTPUT, Format, emit_json
from synk8s.resolve import resolve

console = Console(stderr=True, soft_wrap=True)

app = typer.Typer(no_args_is_help=True)


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
    for task, state in task_states(run):
        typer.echo(f"  task {task}: {state}")


@app.command("list")
def runs_list(
    host: Optional[str] = HOST,
    profile: str = PROFILE,
    experiment: Optional[str] = typer.Option(None, "--experiment", help="Only runs of this experiment."),
    limit: int = typer.Option(20, "--limit", min=1, help="Most recent runs to show."),
    output: Format = OUTPUT,
) -> None:
    """List the most recent runs."""
    cfg = resolve(profile)
    endpoint = require_host(host, cfg)
    kfp_client = client(endpoint, cfg)
    with talking_to(endpoint):
        experiment_id = kfp_client.get_experiment(experiment_name=experiment).experiment_id if experiment else None
        response = kfp_client.list_runs(page_size=limit, sort_by="created_at desc", experiment_id=experiment_id)
    if output is Format.json:
        emit_json([_run_json(run, details=False) for run in response.runs or []])
        return
    table = Table("run id", "name", "state", "created")
    for run in response.runs or []:
        table.add_row(run.run_id, run.display_name, str(run.state), str(run.created_at))
    Console(soft_wrap=True).print(table)


@app.command("get")
def runs_get(
    run_id: str = typer.Argument(..., help="Run id."),
    host: Optional[str] = HOST,
    profile: str = PROFILE,
    output: Format = OUTPUT,
) -> None:
    """Show a run: state, parameters and task states."""
    cfg = resolve(profile)
    endpoint = require_host(host, cfg)
    kfp_client = client(endpoint, cfg)
    with talking_to(endpoint):
        run = kfp_client.get_run(run_id)
    if output is Format.json:
        emit_json(_run_json(run, details=True))
        return
    _print_run(run)


def _run_json(run: Any, *, details: bool) -> dict[str, Any]:
    """A run as JSON: id, name, state, experiment, times; with ``details`` its parameters, error and tasks."""
    body: dict[str, Any] = {
        "run_id": run.run_id,
        "name": run.display_name,
        "state": str(run.state) if run.state else None,
        "experiment_id": run.experiment_id,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }
    if details:
        params = run.runtime_config.parameters if run.runtime_config else None
        body["parameters"] = dict(params or {})
        body["error"] = run.error.message if run.error and run.error.message else None
        body["tasks"] = [{"task": task, "state": state} for task, state in task_states(run)]
    return body


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
    from kubernetes import client as kube_client
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
    return kube_client.CoreV1Api()


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


@app.command("logs")
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
    cfg = resolve(profile)
    endpoint = require_host(host, cfg)
    kfp_client = client(endpoint, cfg)
    with talking_to(endpoint):
        run = kfp_client.get_run(run_id)
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
