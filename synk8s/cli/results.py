"""``synk8s results``: one table over many runs, seeds folded into mean and spread, beside the paper's numbers.

    synk8s results ./synk8s-store                       # every finished zero-shot run of a store
    synk8s results s3://synk8s/store --format csv -o results.csv
    synk8s results ./synk8s-store --table 2             # the paper's Table 2 layout
    synk8s results ./synk8s-store --check               # gate: runs of all studies against the paper's cells
    synk8s results ./synk8s-store --check --expect tiny --require-all

``--check`` prints one line per expected cell and a summary, and exits 1 when a cell drifted beyond
its tolerance or bound, or a required cell has no run (:mod:`synk8s.reports.results_check`).
"""

from __future__ import annotations

from typing import Optional

import typer

from synk8s import storage
from synk8s.errors import UsageError

FORMATS = ("md", "csv", "json")


def results_cmd(
    sources: list[str] = typer.Argument(..., help="Store roots (folder or s3://) or report.json URIs."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="md (default) | csv | json."),
    table: Optional[int] = typer.Option(None, "--table", help="2: lay the rows out as the paper's Table 2."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write here (a path or s3:// URI)."),
    check: bool = typer.Option(
        False, "--check", help="Compare the runs of every study with expected cells; exit 1 on drift."
    ),
    expect: Optional[str] = typer.Option(
        None, "--expect", help="With --check: paper (default), tiny, or an expectations JSON file (path or s3://)."
    ),
    require_all: bool = typer.Option(
        False, "--require-all", help="With --check: a cell without runs fails, required or not."
    ),
) -> None:
    """Tabulate finished runs: seeds, mean and std of top-1, the paper's cell; --check gates them on expected cells."""
    if check:
        if fmt is not None or table is not None:
            raise UsageError("--check prints its own lines; drop --format and --table")
        text, failed = _check(sources, expect or "paper", require_all)
        _emit(text, output)
        if failed:
            raise typer.Exit(1)
        return
    if expect is not None or require_all:
        raise UsageError("--expect and --require-all go with --check")
    from synk8s.reports import results

    fmt = fmt or "md"
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if table not in (None, 2):
        raise UsageError(f"--table lays out Table 2 only, got {table}")
    rows = results.aggregate(results.find_reports(sources))
    if table == 2:
        text = results.table2_markdown(rows)
    else:
        text = {"md": results.to_markdown, "csv": results.to_csv, "json": results.to_json}[fmt](rows)
    _emit(text, output)


def _check(sources: list[str], expect: str, require_all: bool) -> tuple[str, bool]:
    """The check's lines and whether it failed."""
    from synk8s.reports import results_check

    cells = results_check.load_expectations(expect)
    outcomes = results_check.check(cells, results_check.find_study_reports(sources), require_all=require_all)
    return results_check.render(outcomes, expect), results_check.failed(outcomes)


def _emit(text: str, output: Optional[str]) -> None:
    if output:
        storage.put_bytes(output, text.encode("utf-8"))
        typer.echo(output)
    else:
        typer.echo(text, nl=False)
