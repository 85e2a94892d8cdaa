"""Detection results of several runs laid out as the paper's Tables 9 (supervised) and 10 (MoCo v2).

Each table has one row per (pre-training data, started from IN-1k weights) and one column per
number of synthetic pre-training images (0 for no synthetic data). The "(None)" rows, from
scratch and from IN-1k weights, belong to both tables. Every run is the ``pretraining`` block and
an AP of its ``metrics.json`` (see :mod:`synk8s.stages.pretraining.detect`); runs that land in the same cell
(e.g. several seeds) are averaged and counted. The paper's own AP50 values sit beside ours.

    tables = detection_tables([load_metrics(out) for out in outs])
    tables["tables"][0]["rows"][0]   # {"data": "(None)", "in1k_init": False, "cells": {"0": 66.3}, ...}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

METHODS = ("supervised", "mocov2")
CAPTIONS = {
    "supervised": "Table 9: object detection on PASCAL VOC with supervised pre-training",
    "mocov2": "Table 10: object detection on PASCAL VOC when pre-trained with MoCo v2",
}
#: The paper's AP50 (Tables 9-10): method -> (data, IN-1k init) -> synthetic images -> AP50.
PAPER_AP50: dict[str, dict[tuple[str, bool], dict[int, float]]] = {
    "supervised": {
        ("(None)", False): {0: 66.08},
        ("IN-1K Syn", False): {1_200_000: 79.00, 2_400_000: 80.00},
        ("IN-2K Syn", False): {2_400_000: 80.54, 4_000_000: 80.72},
        ("(None)", True): {0: 81.30},
        ("IN-1K Syn", True): {2_400_000: 81.78},
        ("IN-2K Syn", True): {2_400_000: 81.87, 4_000_000: 81.91},
    },
    "mocov2": {
        ("(None)", False): {0: 66.08},
        ("IN-1K Syn", False): {1_200_000: 81.55, 2_400_000: 82.13},
        ("IN-2K Syn", False): {2_400_000: 82.22, 4_000_000: 82.29},
        ("(None)", True): {0: 82.44},
        ("IN-1K Syn", True): {2_400_000: 82.47},
    },
}


def detection_tables(runs: Iterable[dict[str, Any]], metric: str = "ap50") -> dict[str, Any]:
    """Lay out the ``metrics.json`` contents of several detect runs as Tables 9 and 10.

    Args:
        runs: parsed ``metrics.json`` of each run (``pretraining`` block and the metric).
        metric: ``ap50``, ``ap`` or ``ap75`` (percent). The paper reports AP50 only, so its
            values are attached for ``ap50`` alone.

    Returns:
        ``{"metric", "tables": [{"method", "caption", "columns", "rows": [{"data", "in1k_init",
        "cells", "runs", "paper"}]}]}``. ``columns`` are image counts as strings, ascending;
        ``cells`` map a column to the mean over its runs, ``runs`` to their number, ``paper`` to
        the paper's value. Rows: from scratch first, then by data name, IN-1k-initialised after.
        A row or column appears when a run or the paper fills it.

    Raises:
        ValueError: ``metric`` is not one of the three, or a run lacks it or its ``pretraining`` block.
    """
    if metric not in ("ap50", "ap", "ap75"):
        raise ValueError(f"metric must be ap50, ap or ap75, got {metric!r}")
    sums: dict[str, dict[tuple[str, bool], dict[int, list[float]]]] = {m: {} for m in METHODS}
    for run in runs:
        if "pretraining" not in run or metric not in run:
            raise ValueError(f"a run's metrics lack 'pretraining' or {metric!r}: keys {sorted(run)}")
        row = run["pretraining"]
        key = (row["data"], bool(row["in1k_init"]))
        for method in METHODS if row["method"] is None else (row["method"],):
            sums.setdefault(method, {}).setdefault(key, {}).setdefault(int(row["images"]), []).append(
                float(run[metric])
            )
    tables = []
    for method, by_row in sums.items():
        paper = PAPER_AP50.get(method, {}) if metric == "ap50" else {}
        keys = sorted(set(by_row) | set(paper), key=lambda k: (k[1], k[0] != "(None)", k[0]))
        columns = sorted({n for k in keys for n in (*by_row.get(k, {}), *paper.get(k, {}))})
        rows = []
        for key in keys:
            values = by_row.get(key, {})
            rows.append(
                {
                    "data": key[0],
                    "in1k_init": key[1],
                    "cells": {str(n): sum(v) / len(v) for n, v in sorted(values.items())},
                    "runs": {str(n): len(v) for n, v in sorted(values.items())},
                    "paper": {str(n): v for n, v in sorted(paper.get(key, {}).items())},
                }
            )
        tables.append(
            {
                "method": method,
                "caption": CAPTIONS.get(method, method),
                "columns": [str(c) for c in columns],
                "rows": rows,
            }
        )
    return {"metric": metric, "tables": tables}
