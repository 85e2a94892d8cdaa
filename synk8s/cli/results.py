"""``synk8s results``: one table over many runs, seeds folded into mean and spread, beside the paper's numbers.

    synk8s results ./synk8s-store                       # every finished zero-shot run of a store
    synk8s results s3://synk8s/store --format csv -o results.csv
    synk8s results ./synk8s-store --table 2             # the paper's Table 2 layout
"""

from __future__ import annotations

from typing import Optional

import typer

from synk8s import storage
from synk8s.errors import UsageError

FORMATS = ("md", "csv", "json")


def results_cmd(
    sources: list[str] = typer.Argument(..., help="Store roots (folder or s3://) or report.json URIs."),
    fmt: str = typer.Option("md", "--format", "-f", help="md | csv | json."),
    table: Optional[int] = typer.Option(None, "--table", help="2: lay the rows out as the paper's Table 2."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write here (a path or s3:// URI)."),
) -> None:
    """Tabulate finished runs: seeds, mean and std of top-1, and the paper's cell each run reproduces."""
    from synk8s import results

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if table not in (None, 2):
        raise UsageError(f"--table lays out Table 2 only, got {table}")
    rows = results.aggregate(results.find_reports(sources))
    if table == 2:
        text = results.table2_markdown(rows)
    else:
        text = {"md": results.to_markdown, "csv": results.to_csv, "json": results.to_json}[fmt](rows)
    if output:
        storage.put_bytes(output, text.encode("utf-8"))
        typer.echo(output)
    else:
        typer.echo(text, nl=False)
