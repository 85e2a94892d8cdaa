"""The results gate: finished runs of the three studies against expected cells, one line per cell.

    cells = load_expectations("paper")                     # or "tiny", or a file path / s3:// URI
    reports = find_study_reports(["./synk8s-store"])       # zero-shot, few-shot and pre-training reports
    outcomes = check(cells, reports)                       # require_all=True: every cell is required
    print(render(outcomes, "paper"))                       # one line per cell and a summary
    failed(outcomes)                                       # True: drift, or a required cell without runs

An expectations file is JSON::

    {"comment": "...",                                     # free text (a string or a list of lines)
     "defaults": {"scale": 100, "tolerance": 1.5},         # taken by every cell that does not set them
     "where": {"profile": "paper"},                        # run selection added to every cell
     "cells": [
       {"study": "zeroshot", "dataset": "cifar100", "metric": "tuned_top1",
        "where": {"setting.prompts": "LE", "setting.filter": true, "setting.loss": "sce"},
        "paper": {"table": "2", "row": "cifar100", "column": "LE+CF/SCE"}, "required": true},
       {"study": "zeroshot", "dataset": "cifar100", "metric": "tuned_top1 - zeroshot_top1", "min": 0.05},
       {"study": "fewshot", "dataset": "eurosat",
        "metric": "top1.ct_init@shots=4 - top1.ct_init@shots=1", "min": 0.0}]}

A cell's ``study`` is ``zeroshot``, ``fewshot`` or ``pretrain``; ``dataset`` is the dataset the
number is measured on (pre-training: its transfer, ``cifar100`` or ``voc``). ``metric`` is a field
path of the report (dots go into objects, a number indexes a list) or the difference of two paths
(``a - b``, spaces around the minus). A path may carry its own run selection after ``@``
(``key=value`` pairs, comma separated, values read as JSON where they parse, else as text), which
is added to the cell's ``where`` (replacing a key it also names). A cell is either an *expected*
cell, ``expected`` (or ``paper``: the cell of ``paper_tables.json`` that gives it) with
``tolerance``, passing when ``|measured - expected| <= tolerance``, or a *bounded* cell with ``min``
and/or ``max`` (inclusive). ``measured`` is ``scale`` (default 1) times the metric, each path
averaged over the runs it selects (seeds fold together). ``label`` names the cell in the output;
``comment`` is free text. A cell with no run is ``missing``; it fails the check only when
``required`` (default false) or under ``--require-all``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from synk8s import storage
from synk8s.errors import MissingDataError, UsageError
from synk8s.reports.results import paper_tables
from synk8s.reports.zeroshot import REPORT_FILE
from synk8s.runs import RUNS_DIR

STUDIES = ("zeroshot", "fewshot", "pretrain")
#: stage folder name (before its ``-<digest>``) -> the study whose report.json it holds
REPORT_FOLDERS = {"evaluate": "zeroshot", "fewshot-evaluate": "fewshot", "finetune": "pretrain", "detect": "pretrain"}
#: ``--expect`` names of the shipped files (``synk8s/datasets/data/``)
SHIPPED = {"paper": "expect_paper.json", "tiny": "expect_tiny.json"}
FILE_KEYS = {"comment", "defaults", "where", "cells"}
DEFAULT_KEYS = {"scale", "tolerance", "required"}
CELL_KEYS = {"study", "dataset", "label", "metric", "where", "expected", "paper", "tolerance", "min", "max",
             "scale", "required", "comment"}  # fmt: skip
_EPS = 1e-9


@dataclass(frozen=True)
class Term:
    """One report field path of a metric and the run selection it adds (``top1.ct_init@shots=4``)."""

    path: tuple[str, ...]
    where: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Cell:
    """One expected cell, defaults applied.

    Attributes:
        study: ``zeroshot``, ``fewshot`` or ``pretrain``.
        dataset: the dataset measured on (pre-training: the transfer).
        label: how the output names the cell (``-`` when the file gives none).
        metric: the metric as written.
        terms: one term, or two whose difference is the metric.
        where: report field path -> the value a run must have (the file's ``where`` merged in).
        expected: the expected value, or None for a bounded cell.
        tolerance: allowed distance from ``expected``.
        low: inclusive lower bound, or None.
        high: inclusive upper bound, or None.
        scale: factor on the measured metric (100: fractions to percent).
        required: a missing run fails the check.
    """

    study: str
    dataset: str
    label: str
    metric: str
    terms: tuple[Term, ...]
    where: tuple[tuple[str, Any], ...]
    expected: float | None
    tolerance: float | None
    low: float | None
    high: float | None
    scale: float
    required: bool

    def bound_text(self) -> tuple[str, str]:
        """The ``expected`` and ``tolerance`` columns: ``45.69``/``±1.5``, or ``>= 0.05``/``-``."""
        if self.expected is not None:
            return _num(self.expected), f"±{_num(self.tolerance)}"
        if self.low is not None and self.high is not None:
            return f"in [{_num(self.low)}, {_num(self.high)}]", "-"
        return (f">= {_num(self.low)}" if self.low is not None else f"<= {_num(self.high)}"), "-"


@dataclass(frozen=True)
class Outcome:
    """A cell checked against the runs: ``ok``, ``DRIFT`` or ``missing``, what was measured, and over how
    many runs (for a difference, the fewer of its two terms')."""

    cell: Cell
    status: str
    measured: float | None
    runs: int

    @property
    def fails(self) -> bool:
        """Drift always fails; a missing run fails when the cell is required."""
        return self.status == "DRIFT" or (self.status == "missing" and self.cell.required)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _read_file(name: str) -> tuple[str, dict[str, Any]]:
    if name in SHIPPED:
        source = f"synk8s/datasets/data/{SHIPPED[name]}"
        text = resources.files("synk8s.datasets").joinpath("data", SHIPPED[name]).read_text(encoding="utf-8")
    else:
        source = name
        if not storage.exists(name):
            raise UsageError(f"--expect {name}: no such file; pass {' or '.join(SHIPPED)} or an expectations JSON file")
        text = storage.get_bytes(name).decode("utf-8")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"expectations file {source} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UsageError(f"expectations file {source} must hold a JSON object with a 'cells' list")
    return source, body


def load_expectations(name: str) -> list[Cell]:
    """Read and check an expectations file: a shipped name (``paper``, ``tiny``), a path or an s3:// URI.

    Raises:
        UsageError: the file is missing, not JSON, or a cell is malformed (the message names the cell).
    """
    source, body = _read_file(name)
    unknown = set(body) - FILE_KEYS
    if unknown:
        raise UsageError(f"expectations file {source}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"allowed: {', '.join(sorted(FILE_KEYS))}")
    defaults = _mapping(body.get("defaults", {}), f"expectations file {source}: defaults")
    if set(defaults) - DEFAULT_KEYS:
        raise UsageError(f"expectations file {source}: defaults takes {', '.join(sorted(DEFAULT_KEYS))} only, "
                         f"got {', '.join(sorted(defaults))}")
    where = _mapping(body.get("where", {}), f"expectations file {source}: where")
    cells = body.get("cells")
    if not isinstance(cells, list) or not cells:
        raise UsageError(f"expectations file {source}: 'cells' must be a non-empty list")
    return [_cell(raw, defaults, where, f"expectations file {source}, cell {i + 1}") for i, raw in enumerate(cells)]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a JSON object, got {value!r}")
    return value


def _number(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _cell(raw: Any, defaults: Mapping[str, Any], where: Mapping[str, Any], name: str) -> Cell:
    raw = _mapping(raw, name)
    if set(raw) - CELL_KEYS:
        raise UsageError(f"{name}: unknown key(s) {', '.join(sorted(set(raw) - CELL_KEYS))}")
    for key in ("study", "dataset", "metric"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise UsageError(f"{name}: {key} must be a non-empty string, got {raw.get(key)!r}")
    if raw["study"] not in STUDIES:
        raise UsageError(f"{name}: study must be one of {', '.join(STUDIES)}, got {raw['study']!r}")
    merged = {**defaults, **raw}
    expected = _paper_value(raw["paper"], name) if "paper" in raw else _number(raw, "expected", name)
    low, high = _number(raw, "min", name), _number(raw, "max", name)
    tolerance = _number(merged, "tolerance", name)
    if "paper" in raw and "expected" in raw:
        raise UsageError(f"{name}: give expected or paper, not both")
    if expected is not None and (low is not None or high is not None):
        raise UsageError(f"{name}: an expected cell takes a tolerance, not min/max")
    if expected is None and low is None and high is None:
        raise UsageError(f"{name}: give expected (or paper) with a tolerance, or min and/or max")
    if expected is None and "tolerance" in raw:
        raise UsageError(f"{name}: tolerance belongs to expected cells; a bounded cell has min/max only")
    if expected is not None and (tolerance is None or tolerance < 0):
        raise UsageError(f"{name}: an expected cell needs a tolerance >= 0 (in the cell or the file's defaults)")
    if low is not None and high is not None and low > high:
        raise UsageError(f"{name}: min {low} is above max {high}")
    if not isinstance(merged.get("required", False), bool):
        raise UsageError(f"{name}: required must be true or false, got {merged['required']!r}")
    scale = _number(merged, "scale", name)
    return Cell(
        study=raw["study"],
        dataset=raw["dataset"],
        label=str(raw.get("label") or _paper_label(raw.get("paper")) or "-"),
        metric=raw["metric"],
        terms=_terms(raw["metric"], name),
        where=tuple({**where, **_mapping(raw.get("where", {}), f"{name}: where")}.items()),
        expected=expected,
        tolerance=tolerance if expected is not None else None,
        low=low,
        high=high,
        scale=1.0 if scale is None else scale,
        required=bool(merged.get("required", False)),
    )


def _paper_value(ref: Any, name: str) -> float:
    ref = _mapping(ref, f"{name}: paper")
    try:
        value = paper_tables()["tables"][str(ref["table"])]["rows"][str(ref["row"])][str(ref["column"])]
    except KeyError:
        raise UsageError(f"{name}: paper {json.dumps(ref)} names no cell of paper_tables.json "
                         "(give table, row and column as the file spells them)") from None
    return float(value)


def _paper_label(ref: Mapping[str, Any] | None) -> str:
    return "" if ref is None else f"Table {ref.get('table')} {ref.get('row')} {ref.get('column')}"


def _terms(metric: str, name: str) -> tuple[Term, ...]:
    parts = metric.split(" - ")
    if len(parts) > 2:
        raise UsageError(f"{name}: metric is a path or the difference of two ('a - b'), got {metric!r}")
    terms = []
    for part in parts:
        path, _, selection = part.strip().partition("@")
        keys = tuple(path.split("."))
        if not path or " " in path or "" in keys:
            raise UsageError(f"{name}: {part.strip()!r} in metric {metric!r} is not a field path (a.b.c)")
        where = []
        for pair in filter(None, selection.split(",")):
            key, eq, value = pair.strip().partition("=")
            if not eq or not key:
                raise UsageError(f"{name}: {pair!r} in metric {metric!r} is not key=value")
            where.append((key, _literal(value)))
        terms.append(Term(keys, tuple(where)))
    return tuple(terms)


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def find_study_reports(sources: Iterable[str]) -> list[dict[str, Any]]:
    """The reports of every finished run under the store roots (or of the report / sweep JSON URIs given).

    A store root's reports are ``runs/<run>/<folder>/report.json`` for the folders of
    :data:`REPORT_FOLDERS`; a sweep's ``sweep.json`` stands for the reports it lists. Each report
    gains ``study`` and, for pre-training, ``dataset`` (its transfer).

    Raises:
        MissingDataError: a source holds no report.
    """
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for source in sources:
        uris = [source] if source.endswith(".json") else _store_reports(source)
        if not uris or not storage.exists(uris[0]):
            raise MissingDataError(f"no run report at {source}: pass a store root holding finished runs, "
                                   "or a report.json / sweep.json URI")
        for uri in uris:
            body = storage.get_json(uri)
            for report in body.get("runs", []) if "ct_init_top1" in body else [body]:
                report = {**report, "study": _study(report, uri)}
                report.setdefault("dataset", report.get("transfer"))
                key = (report["study"], str(report.get("run_dir")), str(report.get("config_digest")))
                found.setdefault(key, report)
    return list(found.values())


def _store_reports(root: str) -> list[str]:
    uris = []
    for run in storage.list_prefixes(storage.join(root, RUNS_DIR)):
        for stage in storage.list_prefixes(run.rstrip("/")):
            folder = stage.rstrip("/").rsplit("/", 1)[-1]
            if any(folder == name or folder.startswith(name + "-") for name in REPORT_FOLDERS):
                uri = storage.join(stage.rstrip("/"), REPORT_FILE)
                if storage.exists(uri):
                    uris.append(uri)
    return uris


def _study(report: Mapping[str, Any], uri: str) -> str:
    if "zeroshot_top1" in report:
        return "zeroshot"
    if "shots" in report and "top1" in report:
        return "fewshot"
    if "transfer" in report:
        return "pretrain"
    raise MissingDataError(f"{uri} is no zero-shot, few-shot or pre-training report")


def field(report: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at a dotted path of a report (a number indexes a list); KeyError when absent."""
    value: Any = report
    for key in path:
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise KeyError(".".join(path))
    return value


def _selects(report: Mapping[str, Any], where: Iterable[tuple[str, Any]]) -> bool:
    for key, want in where:
        try:
            if field(report, key.split(".")) != want:
                return False
        except KeyError:
            return False
    return True


def _term_mean(cell: Cell, term: Term, reports: Sequence[dict[str, Any]]) -> tuple[float | None, int]:
    chosen = [r for r in reports if r["study"] == cell.study and r.get("dataset") == cell.dataset
              and _selects(r, {**dict(cell.where), **dict(term.where)}.items())]  # fmt: skip
    values = []
    for report in chosen:
        try:
            value = field(report, term.path)
        except KeyError:
            raise UsageError(f"expectations cell {cell.study} {cell.dataset} {cell.label}: the {cell.study} report of "
                             f"{report.get('run_dir', '?')} has no field {'.'.join(term.path)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"expectations cell {cell.study} {cell.dataset} {cell.label}: "
                             f"{'.'.join(term.path)} is not a number ({value!r})")
        values.append(float(value))
    return (sum(values) / len(values) if values else None), len(values)


def check(cells: Iterable[Cell], reports: Sequence[dict[str, Any]], *, require_all: bool = False) -> list[Outcome]:
    """Measure every cell on the reports that select it and compare.

    Args:
        cells: the expected cells.
        reports: the runs' reports (:func:`find_study_reports`).
        require_all: treat every cell as required (``--require-all``).

    Raises:
        UsageError: a selected report lacks the metric's field, or it is not a number.
    """
    outcomes = []
    for cell in cells:
        cell = replace(cell, required=True) if require_all else cell
        means = [_term_mean(cell, term, reports) for term in cell.terms]
        runs = min(n for _, n in means)
        if runs == 0:
            outcomes.append(Outcome(cell, "missing", None, 0))
            continue
        value = means[0][0] - (means[1][0] if len(means) == 2 else 0.0)
        measured = cell.scale * value
        if cell.expected is not None:
            ok = abs(measured - cell.expected) <= cell.tolerance + _EPS
        else:
            ok = cell.low is None or measured >= cell.low - _EPS
            ok = ok and (cell.high is None or measured <= cell.high + _EPS)
        outcomes.append(Outcome(cell, "ok" if ok else "DRIFT", measured, runs))
    return outcomes


def failed(outcomes: Iterable[Outcome]) -> bool:
    """Whether the check fails: a cell drifted, or a required cell has no run."""
    return any(o.fails for o in outcomes)


def render(outcomes: Sequence[Outcome], source: str) -> str:
    """One aligned line per cell (study, dataset, cell, metric, expected, tolerance, measured, status) and
    a summary line; ``source`` names the expectations in the summary."""
    head = ("study", "dataset", "cell", "metric", "expected", "tolerance", "measured", "status")
    rows = [head]
    for o in outcomes:
        expected, tolerance = o.cell.bound_text()
        measured = "-" if o.measured is None else f"{_num(o.measured)} ({o.runs} run{'s' if o.runs != 1 else ''})"
        status = o.status + (" (required)" if o.status == "missing" and o.cell.required else "")
        rows.append((o.cell.study, o.cell.dataset, o.cell.label, o.cell.metric, expected, tolerance, measured, status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return "\n".join(lines) + "\n" + summary(outcomes, source) + "\n"


def summary(outcomes: Sequence[Outcome], source: str) -> str:
    """``check against X: 40 cells, 3 ok, 1 DRIFT, 36 missing (2 of them required): FAILED`` (or ``passed``)."""
    count = {s: sum(o.status == s for o in outcomes) for s in ("ok", "DRIFT", "missing")}
    required = sum(o.status == "missing" and o.cell.required for o in outcomes)
    verdict = "FAILED" if failed(outcomes) else "passed"
    return (f"check against {source}: {len(outcomes)} cells, {count['ok']} ok, {count['DRIFT']} DRIFT, "
            f"{count['missing']} missing ({required} of them required): {verdict}")
