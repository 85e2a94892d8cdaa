"""The ``synk8s`` command line.

Every command is a thin shell over library functions. Errors the user can fix
(:class:`synk8s.errors.Synk8sError`) print one line and exit with the error's code;
command-line usage errors exit 2.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from typer.core import TyperGroup

from synk8s import __version__
from synk8s.errors import Synk8sError

err_console = Console(stderr=True, soft_wrap=True)


class _StderrHandler(logging.StreamHandler):
    """Writes each record to the ``sys.stderr`` of that moment (test runners swap the stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging(verbose: bool) -> None:
    """Log synk8s's own messages to stderr; other libraries' loggers are left alone."""
    logger = logging.getLogger("synk8s")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)


class _Group(TyperGroup):
    """Root group: turns a Synk8sError raised anywhere below into one line and an exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Synk8sError as error:
            err_console.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
            raise typer.Exit(error.exit_code) from None


app = typer.Typer(
    cls=_Group,
    help="synk8s: synthetic training data from text-to-image models, as Kubeflow pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"synk8s {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages; a local run streams every task's log (executor input, progress lines)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    _setup_logging(verbose)


def _register() -> None:
    from synk8s.cli import cluster, config_cmd, datasets, models, runs, stage, store
    from synk8s.cli.compile import compile_cmd
    from synk8s.cli.export import export_cmd
    from synk8s.cli.plan import plan_cmd
    from synk8s.cli.predict import predict_cmd
    from synk8s.cli.results import results_cmd
    from synk8s.cli.serve import serve_cmd
    from synk8s.cli.submit import submit

    app.command("compile")(compile_cmd)
    app.command("submit")(submit)
    app.command("plan")(plan_cmd)
    app.command("results")(results_cmd)
    app.command("export")(export_cmd)
    app.command("predict")(predict_cmd)
    app.command("serve")(serve_cmd)
    app.add_typer(runs.app, name="runs", help="List and inspect Kubeflow Pipelines runs.")
    app.add_typer(config_cmd.app, name="config", help="Show resolved experiment configs.")
    app.add_typer(store.app, name="store", help="List and copy artifacts in a folder or S3 store.")
    app.add_typer(cluster.app, name="cluster", help="Check that a Kubernetes cluster is ready for synk8s.")
    app.add_typer(datasets.app, name="datasets", help="List, show and download the supported datasets.")
    app.add_typer(models.app, name="models", help="Fill a model cache for clusters without internet; list it.")
    app.add_typer(stage.app, name="stage", help="Run one stage alone (one command per stage of the stage table).")


_register()


def main() -> None:
    """Console-script entry point."""
    app()
