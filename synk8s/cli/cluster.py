"""``synk8s cluster``: check that a Kubernetes cluster is ready for synk8s.

Examples::

    synk8s cluster check                                  # current kubeconfig context
    synk8s cluster check --context gpu-prod --namespace synk8s
    synk8s cluster check --run-namespace kubeflow         # standalone KFP (manifests/overlays/dev)

Prints one line per check (OK or MISSING, what was found, how to fix it) and exits 1 when
anything is missing. Secret values are never printed. See docs/cluster.md.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from synk8s import cluster

app = typer.Typer(help="Check that a Kubernetes cluster is ready for synk8s.", no_args_is_help=True)


def report_table(results: list[cluster.CheckResult]) -> Table:
    """A rich table with one row per check: name, OK/MISSING, detail, fix hint."""
    table = Table(title="synk8s cluster check", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("found")
    table.add_column("fix")
    for result in results:
        status = "[green]OK[/]" if result.ok else "[bold red]MISSING[/]"
        table.add_row(result.name, status, result.detail, result.hint)
    return table


@app.command("check")
def check(
    namespace: str = typer.Option("synk8s", help="Namespace holding MinIO and the S3 credentials."),
    run_namespace: str | None = typer.Option(
        None, help="Namespace where runs execute (KFP user namespace). Default: --namespace."
    ),
    kfp_namespace: str = typer.Option("kubeflow", help="Namespace of the KFP API server."),
    kubeconfig: Path | None = typer.Option(None, help="kubeconfig file. Default: $KUBECONFIG or ~/.kube/config."),
    context: str | None = typer.Option(None, help="kubeconfig context. Default: the current context."),
) -> None:
    """Check GPU nodes, MinIO, the KFP API, the S3 Secret, the kfp-launcher ConfigMap and Kubeflow Trainer."""
    api = cluster.api_client(kubeconfig, context)
    snapshot = cluster.read_snapshot(api, namespace, run_namespace, kfp_namespace)
    results = cluster.run_checks(snapshot, namespace, run_namespace, kfp_namespace)
    Console(soft_wrap=False).print(report_table(results))
    missing = [r.name for r in results if not r.ok]
    if missing:
        typer.echo(f"{len(missing)} of {len(results)} checks failed: {', '.join(missing)}", err=True)
        raise typer.Exit(1)
    typer.echo(f"all {len(results)} checks passed")
