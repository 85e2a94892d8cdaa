"""The summary a finished run prints: its report's accuracies, counts, seconds per stage and files.

Any pipeline's report JSON works. Top-level numbers whose name says accuracy are shown with two
decimals (``top1``, ``acc`` as percentages; ``ap``/``map``, already in points, as they are), other
top-level numbers as they are; accuracies one level down get a row each (a few-shot run's ``top1``
of each head, a transfer report's ``pretrained`` and ``scratch``); ``counts``, ``seconds`` (per
stage) and a few-shot run's ``selection`` (the rule and each head's epoch) have rows of their own.
After the table comes one line per file (the Markdown and PNG files beside the report, and the
report) with its full path::

    print_summary(console, "synk8s-store/runs/cifar100-.../evaluate-.../report.json")
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table

from synk8s import storage

_ACCURACY = re.compile(r"(top\d|acc|(^|_)m?ap(\d+)?($|_))")
_AP = re.compile(r"(^|_)m?ap(\d+)?($|_)")  # detection AP, reported in points (0-100), not as a fraction
_OWN_ROWS = ("counts", "seconds", "selection")  # sections with rows of their own


def _accuracy(key: str, value: float) -> str:
    """An accuracy as it reads: AP in points, top-k and accuracy fractions as percentages."""
    return f"{value:.2f}" if _AP.search(key) else f"{100 * value:.2f} %"


def _accuracies(key: str, values: dict[str, Any]) -> str:
    """``name <accuracy>`` of each accuracy in ``values`` (all its numbers when ``key`` says accuracy); "" when none."""
    parts = [
        f"{name} {_accuracy(name if _ACCURACY.search(name) else key, v)}"
        for name, v in values.items()
        if isinstance(v, float) and (_ACCURACY.search(key) or _ACCURACY.search(name))
    ]
    return ", ".join(parts)


def summary_table(report: dict[str, Any], report_uri: str) -> Table:
    """The rows of a run report: accuracies in %, other numbers, counts, seconds per stage, its notice."""
    title = " ".join(str(report[key]) for key in ("dataset", "profile") if key in report)
    table = Table(title=f"run summary: {title}" if title else "run summary", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in report.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        shown = _accuracy(key, value) if _ACCURACY.search(key) and isinstance(value, float) else f"{value}"
        table.add_row(key, shown)
    for key, value in report.items():
        if isinstance(value, dict) and key not in _OWN_ROWS and (shown := _accuracies(key, value)):
            table.add_row(key, shown)
    for section, unit in (("counts", ""), ("seconds", " s")):
        values = report.get(section)
        if isinstance(values, dict) and values:
            parts = [f"{name} {float(v):.1f}{unit}" if unit else f"{name} {v}" for name, v in values.items()]
            if unit:
                parts.append(f"total {sum(float(v) for v in values.values()):.1f}{unit}")
            table.add_row(section, ", ".join(parts))
    selection = report.get("selection")
    if isinstance(selection, dict) and selection:  # a few-shot run: the rule and the epoch of each head
        table.add_row("selection", ", ".join(f"{name} {v}" for name, v in selection.items() if v is not None))
    if report.get("notice"):
        table.add_row("note", str(report["notice"]))
    return table


def report_files(report_uri: str) -> list[tuple[str, str]]:
    """``(name, URI)`` of the Markdown and PNG files beside the report, and of the report itself."""
    folder = report_uri.rsplit("/", 1)[0]
    found = [(i.uri.rsplit("/", 1)[-1], i.uri) for i in storage.list(folder, recursive=False)]
    return [(name, uri) for name, uri in found if name.endswith((".md", ".png"))] + [("report", report_uri)]


def print_summary(console: Console, report_uri: str) -> None:
    """Print :func:`summary_table` of the JSON report at ``report_uri``; other outputs print nothing."""
    if not report_uri.endswith(".json") or not storage.exists(report_uri):
        return
    report = storage.get_json(report_uri)
    if isinstance(report, dict):
        console.print(summary_table(report, report_uri))
        for name, uri in report_files(report_uri):  # whole lines: a path is never wrapped or cut
            console.print(f"{name}: {uri}", soft_wrap=True, highlight=False)
