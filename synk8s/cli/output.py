"""``--output text|json`` of the list and get commands: a table for people, JSON for scripts."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import typer


class Format(str, Enum):
    """What a list or get command prints."""

    text = "text"
    json = "json"


OUTPUT = typer.Option(Format.text, "--output", "-o", help="text (a table) or json (one JSON document on stdout).")


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (anything JSON cannot hold becomes its text)."""
    typer.echo(json.dumps(value, indent=2, default=str))
