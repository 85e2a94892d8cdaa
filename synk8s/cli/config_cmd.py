"""``synk8s config``: show a resolved profile."""

from __future__ import annotations

import typer

from synk8s import config
from synk8s.cli.kfp_client import PROFILE, SET
from synk8s.resolve import resolve

app = typer.Typer(no_args_is_help=True)


@app.command("show")
def show(profile: str = PROFILE, overrides: list[str] = SET) -> None:
    """Print the resolved config (profile + overrides) as YAML, checked as a run's is."""
    typer.echo(config.to_yaml(resolve(profile, overrides)), nl=False)


@app.command("profiles")
def list_profiles() -> None:
    """List the shipped profiles."""
    for name in config.profiles():
        typer.echo(name)
