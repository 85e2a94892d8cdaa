"""Results over many runs: seeds grouped into mean and spread, each set beside the paper's cell it reproduces.

    reports = find_reports("./synk8s-store")            # every runs/*/evaluate*/report.json
    rows = aggregate(reports)                           # one row per setting; seeds folded together
    print(to_markdown(rows))                            # or to_csv(rows), to_json(rows)
    print(table2_markdown(rows))                        # the paper's Table 2 layout, ours beside the paper's

Runs of one setting differ only in ``seed`` (a report's ``setting_digest`` is the digest of every
config field but the seed, store and cluster), so a row's numbers carry the seed count, the mean
and the sample standard deviation (n - 1 in the denominator; none for a single seed). The paper's
values are ``datasets/data/paper_tables.json`` (Tables 1-10, percent). A run on the drawn stand-in
data is marked ``stand-in``: its accuracies say nothing about the method. Every table names the
generator substitution (the paper used GLIDE). A run without a real test set (your own label space
and no images) has no test accuracy: :func:`aggregate` leaves it out and logs how many it left out.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

from synk8s import storage
from synk8s.errors import MissingDataError
from synk8s.runs import RUNS_DIR

logger = logging.getLogger(__name__)

PAPER_FILE = "paper_tables.json"
REPORT_FILE = "report.json"
CSV_COLUMNS = (
    "dataset", "data", "profile", "setting", "seeds", "zeroshot_mean", "zeroshot_std", "tuned_mean", "tuned_std",
    "paper", "paper_cell", "generator", "devices", "device_hours_per_1000_images", "points_per_device_hour",
)
TABLE2_COLUMNS = ("CLIP", "B/CE", "B/SCE", "LE/CE", "LE/SCE", "LE+CF/CE", "LE+CF/SCE")


@functools.cache
def paper_tables() -> dict[str, Any]:
    """The paper's Tables 1-10 (``tables``), its generator (``generator``) and source, from the package data."""
    text = resources.files("synk8s.datasets").joinpath("data", PAPER_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one number over seeds, in percent.

    Attributes:
        n: number of runs.
        mean: their mean.
        std: sample standard deviation; None for one run.
    """

    n: int
    mean: float
    std: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        """The statistics of ``values`` (fractions in [0, 1]; stored in percent)."""
        pct = [100.0 * v for v in values]
        mean = sum(pct) / len(pct)
        std = math.sqrt(sum((v - mean) ** 2 for v in pct) / (len(pct) - 1)) if len(pct) > 1 else None
        return cls(len(pct), round(mean, 4), None if std is None else round(std, 4))

    def text(self) -> str:
        """``45.12 ± 0.31`` (``45.12`` for one run)."""
        return f"{self.mean:.2f}" if self.std is None else f"{self.mean:.2f} ± {self.std:.2f}"


@dataclass(frozen=True)
class Row:
    """One setting of one dataset, over its seeds.

    Attributes:
        dataset: registry name.
        profile: config profile.
        setting: prompt mode, filter on/off, loss.
        column: its Table 2 column (``LE+CF/SCE``), or None where the paper has none (B with CF).
        seeds: the seeds of its runs, sorted.
        zeroshot: CLIP zero-shot top-1 over the runs (percent).
        tuned: top-1 after classifier tuning on synthetic data (percent).
        standin: any run evaluated on the drawn stand-in data.
        generator: the generator the runs used.
        paper: ``{"table", "column", "value"}`` of the paper's cell this row reproduces, or None.
        run_dirs: the run folders.
        cost: mean over the runs of ``device_hours_per_1000_images`` and ``points_per_device_hour``
            (see :func:`synk8s.cost.run_cost`) and the ``devices`` seen; empty when no run recorded cost.
    """

    dataset: str
    profile: str
    setting: dict[str, Any]
    column: str | None
    seeds: tuple[int, ...]
    zeroshot: Stat
    tuned: Stat
    standin: bool
    generator: str
    paper: dict[str, Any] | None
    run_dirs: tuple[str, ...] = field(default=())
    cost: dict[str, Any] = field(default_factory=dict)


def find_reports(sources: Iterable[str]) -> list[dict[str, Any]]:
    """Read run reports: each source is a ``report.json`` URI, or a store root whose runs are searched.

    A store root's reports are ``<root>/runs/<run>/evaluate*/report.json``.

    Raises:
        MissingDataError: a source holds no report.
    """
    found: list[dict[str, Any]] = []
    for source in sources:
        if source.endswith(".json"):
            uris = [source]
        else:
            uris = [
                storage.join(stage.rstrip("/"), REPORT_FILE)
                for run in storage.list_prefixes(storage.join(source, RUNS_DIR))
                for stage in storage.list_prefixes(run.rstrip("/"))
                if stage.rstrip("/").rsplit("/", 1)[-1].startswith("evaluate")
            ]
            uris = [uri for uri in uris if storage.exists(uri)]
        if not uris or not storage.exists(uris[0]):
            raise MissingDataError(
                f"no run report at {source}: pass a store root holding finished zero-shot runs or a report.json URI"
            )
        found.extend(storage.get_json(uri) for uri in uris)
    return found


def table2_column(setting: dict[str, Any]) -> str | None:
    """The Table 2 column of a setting: ``B/CE`` ... ``LE+CF/SCE``; None for B with the filter (not in the paper)."""
    mode, filtered, loss = setting["prompts"], setting["filter"], setting["loss"].upper()
    if mode == "B" and filtered:
        return None
    return f"{mode}{'+CF' if filtered else ''}/{loss}"


def paper_cell(dataset: str, column: str | None) -> dict[str, Any] | None:
    """The paper's cell a (dataset, Table 2 column) run reproduces: Table 2 where it has the dataset, else
    Table 1's CLIP+SYN for the best setting (LE+CF/SCE); None where the paper reports nothing."""
    tables = paper_tables()["tables"]
    if column is None:
        return None
    if dataset in tables["2"]["rows"]:
        return {"table": "2", "column": column, "value": tables["2"]["rows"][dataset][column]}
    if column == "LE+CF/SCE" and dataset in tables["1"]["rows"]:
        return {"table": "1", "column": "CLIP+SYN", "value": tables["1"]["rows"][dataset]["CLIP+SYN"]}
    return None


def aggregate(reports: Iterable[dict[str, Any]]) -> list[Row]:
    """Fold the reports of one setting (same dataset and ``setting_digest``, any seed) into one row each.

    Rows are sorted by dataset, then Table 2 column order. A seed reported twice counts once (the
    first report read). A report without test accuracies (no real test set) is left out.
    """
    reports = list(reports)
    measured = [report for report in reports if report.get("tuned_top1") is not None]
    if len(measured) < len(reports):
        logger.warning("left out %d run(s) without a real test set: they measured no test accuracy",
                       len(reports) - len(measured))
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for report in measured:
        key = (report["dataset"], report.get("setting_digest", report["config_digest"]))
        groups.setdefault(key, {}).setdefault(int(report.get("seed", 0)), report)
    rows = []
    for (dataset, _), by_seed in groups.items():
        runs = [by_seed[s] for s in sorted(by_seed)]
        first = runs[0]
        setting = first.get("setting", {"prompts": "?", "filter": True, "loss": "?"})
        column = table2_column(setting) if "setting" in first else None
        rows.append(
            Row(
                dataset=dataset,
                profile=first.get("profile", "?"),
                setting=setting,
                column=column,
                seeds=tuple(sorted(by_seed)),
                zeroshot=Stat.of([r["zeroshot_top1"] for r in runs]),
                tuned=Stat.of([r["tuned_top1"] for r in runs]),
                standin=any("notice" in r for r in runs),
                generator=first.get("generator", "?"),
                paper=paper_cell(dataset, column),
                run_dirs=tuple(r.get("run_dir", "") for r in runs),
                cost=_mean_cost([r["cost"] for r in runs if "cost" in r]),
            )
        )
    order = {c: i for i, c in enumerate(TABLE2_COLUMNS)}
    return sorted(rows, key=lambda r: (r.dataset, order.get(r.column or "", len(order)), r.profile))


def _mean_cost(costs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if not costs:
        return {}
    out: dict[str, Any] = {"devices": sorted({d for c in costs for d in c["devices"]})}
    for key in ("device_hours_per_1000_images", "points_per_device_hour"):
        values = [c[key] for c in costs if c.get(key) is not None]
        out[key] = round(sum(values) / len(values), 6) if values else None
    return out


def _paper_text(row: Row) -> str:
    if row.paper is None:
        return "-"
    return f"{row.paper['value']:.2f} (Table {row.paper['table']}, {row.paper['column']})"


def _flat(row: Row) -> dict[str, Any]:
    return {
        "dataset": row.dataset,
        "data": "stand-in" if row.standin else "real",
        "profile": row.profile,
        "setting": row.column or f"{row.setting['prompts']}+CF/{str(row.setting['loss']).upper()}",
        "seeds": row.zeroshot.n,
        "zeroshot_mean": row.zeroshot.mean,
        "zeroshot_std": row.zeroshot.std,
        "tuned_mean": row.tuned.mean,
        "tuned_std": row.tuned.std,
        "paper": None if row.paper is None else row.paper["value"],
        "paper_cell": None if row.paper is None else f"Table {row.paper['table']} {row.paper['column']}",
        "generator": row.generator,
        "devices": "+".join(row.cost.get("devices", [])),
        "device_hours_per_1000_images": row.cost.get("device_hours_per_1000_images"),
        "points_per_device_hour": row.cost.get("points_per_device_hour"),
    }


def substitution_note(rows: Sequence[Row]) -> str:
    """One line naming the paper's generator and the ones these runs used instead."""
    used = ", ".join(sorted({r.generator for r in rows})) or "none"
    return f"Generator: the paper used {paper_tables()['generator']}; these runs used {used}."


def standin_note(rows: Sequence[Row]) -> str:
    """One line warning that stand-in rows measure nothing, or ``""`` when no row is a stand-in."""
    if not any(r.standin for r in rows):
        return ""
    return "Rows marked stand-in ran on the drawn stand-in data: their accuracies say nothing about the method."


def to_markdown(rows: Sequence[Row]) -> str:
    """One Markdown table, a row per setting: seeds, zero-shot and tuned top-1 (mean ± std), the paper's cell."""
    lines = [
        "| dataset | data | setting | seeds | CLIP zero-shot | tuned on synthetic | paper "
        "| device-h / 1000 images | points / device-h | devices |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        flat = _flat(row)
        per_k, per_h = flat["device_hours_per_1000_images"], flat["points_per_device_hour"]
        lines.append(
            f"| {row.dataset} | {flat['data']} | {flat['setting']} | {row.zeroshot.n} | {row.zeroshot.text()} | "
            f"{row.tuned.text()} | {_paper_text(row)} | {'-' if per_k is None else f'{per_k:.4g}'} "
            f"| {'-' if per_h is None else f'{per_h:.4g}'} | {flat['devices'] or '-'} |"
        )
    notes = [substitution_note(rows), standin_note(rows)]
    return "\n".join(lines) + "\n\n" + "\n".join(n for n in notes if n) + "\n"


def to_csv(rows: Sequence[Row]) -> str:
    """The rows as CSV, one line per setting (numbers in percent, empty std for one seed)."""
    buffer = io.StringIO()
    flats = [_flat(r) for r in rows]
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flats)
    return buffer.getvalue()


def to_json(rows: Sequence[Row]) -> str:
    """The rows as JSON: ``{"rows": [...], "generator_note": ..., "standin_note": ...}``."""
    body = {
        "rows": [{**asdict(r), "seeds": list(r.seeds), "run_dirs": list(r.run_dirs)} for r in rows],
        "generator_note": substitution_note(rows),
        "standin_note": standin_note(rows),
    }
    return json.dumps(body, indent=1) + "\n"


def table2_markdown(rows: Sequence[Row]) -> str:
    """The paper's Table 2 layout: per dataset an "ours" line (mean ± std, seed count) and the paper's line.

    Columns are CLIP, then B, LE and LE+CF each with CE and SCE. Ours takes CLIP's cell from the
    zero-shot accuracy of the dataset's runs; a setting not run shows ``-``. Datasets are the
    paper's Table 2 ones first, then any other dataset run.
    """
    paper = paper_tables()["tables"]["2"]["rows"]
    datasets = list(paper) + sorted({r.dataset for r in rows} - set(paper))
    head = "| dataset | source | " + " | ".join(TABLE2_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(TABLE2_COLUMNS) + 2)]
    for dataset in datasets:
        mine = {r.column: r for r in rows if r.dataset == dataset and r.column}
        if not mine and dataset not in paper:
            continue
        if mine:
            seeds = sorted({r.zeroshot.n for r in mine.values()})
            label = f"ours ({'stand-in, ' if any(r.standin for r in mine.values()) else ''}"
            label += f"{'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''})"
            cells = [next(iter(mine.values())).zeroshot.text()]  # CLIP zero-shot: the same in every setting
            cells += [mine[c].tuned.text() if c in mine else "-" for c in TABLE2_COLUMNS[1:]]
            lines.append(f"| {dataset} | {label} | " + " | ".join(cells) + " |")
        if dataset in paper:
            base = paper[dataset]["CLIP"]
            cells = [f"{base:.2f}"]
            cells += [f"{paper[dataset][c]:.2f} (+{paper[dataset][c] - base:.2f})" for c in TABLE2_COLUMNS[1:]]
            lines.append(f"| {dataset if not mine else ''} | paper | " + " | ".join(cells) + " |")
    notes = "\n".join(n for n in (substitution_note(rows), standin_note(rows)) if n)
    return "Table 2 layout (top-1 %, ours: mean ± std over seeds)\n\n" + "\n".join(lines) + "\n\n" + notes + "\n"


RESULTS_DIR = "results"


MAX_SEED_RUNS = 1000  # runs of one setting that --seeds may ask for


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; a single number is a count: ``"3"`` -> ``[0, 1, 2]``.

    A count is at most :data:`MAX_SEED_RUNS`; a listed seed at most ``SEED_MAX`` (2**63 - 1, see
    :mod:`synk8s.config_checks`).

    Raises:
        UsageError: not a count or a comma-separated list of distinct non-negative integers, or out of bounds.
    """
    from synk8s.config_checks import SEED_MAX
    from synk8s.errors import UsageError

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise UsageError(f"--seeds takes a count (3) or distinct seeds (0,1,2), got {text!r}")
    seeds = [int(p) for p in parts]
    if len(seeds) == 1 and "," not in text:
        if not 1 <= seeds[0] <= MAX_SEED_RUNS:
            raise UsageError(f"--seeds count must be in [1, {MAX_SEED_RUNS}], got {text!r}")
        return list(range(seeds[0]))
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds lists a seed twice: {text!r}")
    if max(seeds) > SEED_MAX:
        raise UsageError(f"--seeds: a seed must be at most {SEED_MAX}, got {max(seeds)}")
    if len(seeds) > MAX_SEED_RUNS:
        raise UsageError(f"--seeds lists {len(seeds)} seeds; at most {MAX_SEED_RUNS} runs per setting")
    return seeds


def write_aggregate(report_uris: Sequence[str], root: str) -> str:
    """Aggregate the runs of one setting over seeds into ``<root>/results/<dataset>-<setting digest>.md``.

    A ``.json`` of the same rows is written beside it. Returns the Markdown URI.

    Raises:
        MissingDataError: a report is missing.
    """
    reports = find_reports(report_uris)
    rows = aggregate(reports)
    first = reports[0]
    name = f"{first['dataset']}-{first.get('setting_digest', first['config_digest'])}"
    base = storage.join(root, RESULTS_DIR, name)
    storage.put_bytes(base + ".json", to_json(rows).encode("utf-8"))
    uri = base + ".md"
    storage.put_bytes(uri, (to_markdown(rows) + "\n" + table2_markdown(rows)).encode("utf-8"))
    return uri
