"""``synk8s submit``: run a pipeline on Kubeflow Pipelines, or here with ``--local``.

    synk8s submit zeroshot --dataset cifar100 --store s3://synk8s/store --host http://127.0.0.1:8080 --wait
    synk8s submit zeroshot --profile tiny --dataset cifar10 --local     # no cluster: kfp.local
    synk8s submit fewshot --dataset eurosat --shots 4 --local --profile tiny
    synk8s submit pretrain --label-space cifar100 --method moco --transfer cifar100 --local --profile tiny

Cluster runs run as ``--service-account`` (default ``cluster.service_account``). A local run is
:func:`synk8s.pipelines.local.run_local`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from synk8s import storage
from synk8s.cli.kfp_client import (
    ENDPOINT_ENV,
    HOST,
    PIPELINE,
    PROFILE,
    SET,
    client,
    resolve_host,
    resolve_pipeline_config,
    talking_to,
    task_states,
    with_run_flags,
)
from synk8s.cli.output import OUTPUT, Format
from synk8s.cli.plan import GPU_COUNT, GPU_TYPE, print_estimate
from synk8s.errors import Synk8sError, UsageError

if TYPE_CHECKING:
    import kfp

    from synk8s.config import ExperimentConfig

TERMINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")

console = Console(stderr=True, soft_wrap=True)


SEEDS = typer.Option(
    None, "--seeds", help="With --local: one run per seed ('0,1,2', or a count: '3') and an aggregate report."
)
EXPERIMENT = typer.Option(None, "--experiment", help="KFP experiment; default cluster.experiment.")
RUN_NAME = typer.Option(None, "--run-name", help="Run name; default <pipeline>-<dataset>-<digest>.")
SERVICE_ACCOUNT = typer.Option(
    None, "--service-account", help="Kubernetes service account of the run's pods; default cluster.service_account."
)
WAIT = typer.Option(False, "--wait", help="Follow the run until it ends; exit 1 unless it succeeds.")
RECURRING = typer.Option(
    None, "--recurring", help="Cron schedule, six fields with seconds first ('0 0 3 * * *': daily 03:00)."
)
LOCAL = typer.Option(False, "--local", help="Run here with kfp.local instead of on a cluster.")
THREADS = typer.Option(
    None, "--threads", min=1, help="With --local: torch threads per task; default cores // concurrent tasks."
)
CACHE = typer.Option(
    True, "--cache/--no-cache", help="Reuse finished tasks of an earlier run with the same inputs (cluster)."
)
POLL_SECONDS = typer.Option(10.0, "--poll-seconds", hidden=True, help="Status poll interval of --wait.")
DRY_RUN = typer.Option(
    False,
    "--dry-run",
    help="Check the values as a submission does, print the resolved parameters, the tasks (GPU or not) and "
    "the run's estimated cost (`synk8s plan`; --output json: the estimate alone), and start nothing.",
)
PREFLIGHT = typer.Option(
    True, "--preflight/--no-preflight", help="Check first that the weights and the data are reachable."
)


# The run flags of a submission: each sets one config field (synk8s.flags.FLAGS).
RUN_FLAGS = (
    "dataset", "images_per_class", "num_shards", "generator", "seed", "shots", "store_root",
    "label_space", "method", "transfer", "classes", "images",
)


@with_run_flags(*RUN_FLAGS)
def submit(
    pipeline: str = PIPELINE,
    profile: str = PROFILE,
    overrides: list[str] = SET,
    *,
    flags: dict[str, Any],  # the run flags' options (with_run_flags)
    seeds: Optional[str] = SEEDS,
    host: Optional[str] = HOST,
    experiment: Optional[str] = EXPERIMENT,
    run_name: Optional[str] = RUN_NAME,
    service_account: Optional[str] = SERVICE_ACCOUNT,
    wait: bool = WAIT,
    recurring: Optional[str] = RECURRING,
    local: bool = LOCAL,
    threads: Optional[int] = THREADS,
    cache: bool = CACHE,
    poll_seconds: float = POLL_SECONDS,
    dry_run: bool = DRY_RUN,
    preflight: bool = PREFLIGHT,
    gpu_type: str = GPU_TYPE,
    gpus: Optional[int] = GPU_COUNT,
    output: Format = OUTPUT,
) -> None:
    """Run a pipeline on Kubeflow Pipelines (or here, with --local).

    Before anything starts, the models and the data the pipeline's stages need are checked (model
    cache, hub, store); a missing one stops the command with the command that fixes it. The config
    and the options are checked first, with --dry-run too (see :func:`check_options`).
    """
    cfg = resolve_pipeline_config(pipeline, profile, overrides, **flags)
    endpoint, schedule = check_options(
        cfg, local=local, host=host, service_account=service_account, recurring=recurring, wait=wait,
        seeds=seeds, threads=threads,
    )
    if dry_run:
        _print_dry_run(pipeline, cfg, local=local, gpu_type=gpu_type, gpus=gpus, output=output)
        return
    checked = _preflight(pipeline, cfg, local=local) if preflight else []
    if local:
        _run_here(pipeline, cfg, checked, seeds=seeds, threads=threads)
        return
    name = run_name or f"{pipeline}-{cfg.dataset.name}-{cfg.digest()}"
    account = service_account or cfg.cluster.service_account
    kfp_client, exp, started = _start_on_cluster(
        pipeline, cfg, endpoint, schedule, name=name, experiment=experiment, cache=cache, account=account
    )
    _say_checked(checked)
    if schedule:
        typer.echo(f"recurring run {started.recurring_run_id} ({schedule}) in experiment {exp.display_name}")
        return
    typer.echo(f"run {started.run_id} ({name}) in experiment {exp.display_name}")
    if wait:
        follow(kfp_client, endpoint, started.run_id, poll_seconds)


def _print_dry_run(
    pipeline: str, cfg: ExperimentConfig, *, local: bool, gpu_type: str, gpus: Optional[int], output: Format
) -> None:
    """Print what a submission would run (text output) and its estimated cost, starting nothing."""
    from synk8s.cli.dry_run import print_plan

    if output is Format.text:
        print_plan(pipeline, cfg, local=local)
    print_estimate(pipeline, cfg, gpu_type=gpu_type, gpus=gpus, output=output)


def _preflight(pipeline: str, cfg: ExperimentConfig, *, local: bool) -> list[str]:
    """Check that the weights and data the pipeline's stages need are reachable; what was found where."""
    from synk8s import preflight as checks
    from synk8s.pipelines import arguments as pipeline_arguments
    from synk8s.pipelines import build
    from synk8s.pipelines.replay import stage_configs
    from synk8s.stages.table import TABLE

    stages = stage_configs(build(pipeline, cfg), pipeline_arguments(pipeline, cfg))
    fields = sorted({field for stage, _ in stages for field in TABLE.fields(stage)})
    starts = [(stage, task_cfg, TABLE.get(stage).imagenet) for stage, task_cfg in stages]
    return checks.check(cfg, fields, local=local, stages=starts)


def _run_here(
    pipeline: str, cfg: ExperimentConfig, checked: list[str], *, seeds: Optional[str], threads: Optional[int]
) -> None:
    """Run the pipeline here with kfp.local (once, or once per seed) and print its report."""
    from synk8s.cli.summary import print_summary
    from synk8s.pipelines.local import check_store, run_local

    check_store(cfg.store.root)
    _say_checked(checked)
    verbose = logging.getLogger("synk8s").isEnabledFor(logging.DEBUG)
    if seeds is not None:
        from synk8s.pipelines.seeded import run_local_seeds

        typer.echo(run_local_seeds(pipeline, cfg, seeds, threads=threads, verbose=verbose))
        return
    report = run_local(pipeline, cfg, threads=threads, verbose=verbose)
    print_summary(console, report)
    typer.echo(report)


def _start_on_cluster(
    pipeline: str,
    cfg: ExperimentConfig,
    endpoint: str,
    schedule: Optional[str],
    *,
    name: str,
    experiment: Optional[str],
    cache: bool,
    account: str,
) -> tuple[kfp.Client, Any, Any]:
    """Compile the pipeline and start it on the cluster, as a run or a recurring run: client, experiment, run."""
    from synk8s.pipelines import arguments as pipeline_arguments
    from synk8s.pipelines import compile_pipeline

    arguments = pipeline_arguments(pipeline, cfg)
    with tempfile.TemporaryDirectory(prefix="synk8s-") as tmp:
        package = str(compile_pipeline(pipeline, cfg, Path(tmp) / f"{pipeline}.yaml"))
        kfp_client = client(endpoint, cfg)
        with talking_to(endpoint), contextlib.redirect_stdout(sys.stderr):
            exp = kfp_client.create_experiment(name=experiment or cfg.cluster.experiment)
            if schedule:
                started = kfp_client.create_recurring_run(
                    experiment_id=exp.experiment_id,
                    job_name=name,
                    cron_expression=schedule,
                    params=arguments,
                    pipeline_package_path=package,
                    enable_caching=cache,
                    service_account=account,
                )
            else:
                started = kfp_client.create_run_from_pipeline_package(
                    package,
                    arguments=arguments,
                    run_name=name,
                    experiment_id=exp.experiment_id,
                    enable_caching=cache,
                    service_account=account,
                )
    return kfp_client, exp, started


def check_options(
    cfg: ExperimentConfig,
    *,
    local: bool,
    host: Optional[str],
    service_account: Optional[str],
    recurring: Optional[str],
    wait: bool,
    seeds: Optional[str],
    threads: Optional[int],
) -> tuple[Optional[str], Optional[str]]:
    """Check the options of a submission against each other and ``cfg``, contacting nothing.

    ``submit`` runs these checks with and without ``--dry-run``, so a dry run refuses what the
    submission would refuse (reachability, of the weights, data and cluster, is left to the run).

    Returns:
        The Kubeflow Pipelines endpoint and the checked cron schedule; both None for a local run.

    Raises:
        UsageError: options that do not go together, a malformed ``--seeds`` or ``--recurring``, no
            endpoint for a cluster run, or a local store for a cluster run.
    """
    if local:
        if recurring or host or service_account:
            raise UsageError("--local runs here once; drop --recurring, --host and --service-account, or drop --local")
        if seeds is not None:
            from synk8s.reports.results import parse_seeds

            parse_seeds(seeds)
        return None, None
    if seeds is not None:
        raise UsageError("--seeds runs here with --local; on a cluster submit one run per seed with --seed")
    if threads is not None:
        raise UsageError("--threads sets the threads of a --local run; a cluster task's CPU comes from its limits")
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
    if cfg.dataset.images is not None and not storage.is_remote(cfg.dataset.images):
        raise UsageError(
            f"dataset.images {cfg.dataset.images} is on this machine, which pods cannot read; upload it with "
            "`synk8s store cp DIR s3://bucket/prefix` and pass --images s3://bucket/prefix"
        )
    if recurring and wait:
        raise UsageError("--wait follows one run; a --recurring schedule starts many: drop one of them")
    if not recurring:
        return endpoint, None
    from synk8s.pipelines.schedule import check_cron

    return endpoint, check_cron(recurring)


def _say_checked(checked: list[str]) -> None:
    """One stderr line with what preflight found where, once the run has started (a failure stays one line)."""
    if checked:
        console.print(f"preflight: {'; '.join(checked)}", soft_wrap=True, highlight=False)


def _status_table(run: Any, elapsed: float) -> Table:
    table = Table(title=f"run {run.run_id}: {run.state or 'PENDING'}  ({elapsed:.0f} s)", title_justify="left")
    table.add_column("task")
    table.add_column("state")
    for task, state in task_states(run):
        table.add_row(task, state)
    return table


def follow(kfp_client: kfp.Client, host: str, run_id: str, poll_seconds: float) -> None:
    """Show a live status table of ``run_id`` until it ends; raise unless it succeeded."""
    start = time.monotonic()
    with talking_to(host), Live(console=console, refresh_per_second=2, transient=False) as live:
        while True:
            run = kfp_client.get_run(run_id)
            live.update(_status_table(run, time.monotonic() - start))
            state = str(run.state or "")
            if state in TERMINAL_STATES:
                break
            time.sleep(poll_seconds)
    if state not in ("SUCCEEDED", "SKIPPED"):
        reason = f": {run.error.message}" if run.error and run.error.message else ""
        raise Synk8sError(f"run {run_id} ended {state}{reason}; see `synk8s runs logs {run_id}`")
    typer.echo(f"run {run_id} {state}")
