"""The shot-count sweep (Figure 1's curve): every M's few-shot report of a run, gathered into one ``sweep.json``.

It reads the folders the stage table names for each shot count, so it sits beside the table, not in a row.
"""

from __future__ import annotations

from synk8s.config import ExperimentConfig
from synk8s.reports.fewshot import write_sweep_report
from synk8s.runs import stage_folder
from synk8s.stages.table import TABLE


def write_sweep(cfg: ExperimentConfig, run: str) -> str:
    """Gather the reports of every M of ``fewshot.shots`` in ``run`` into ``fewshot-sweep-<digest>/sweep.json``.

    Each M's report is read from the folder the stage table names for ``cfg`` with
    ``fewshot.shots_per_class`` = M. The sweep folder's digest covers the fields of this stage
    and the list of shot counts. Returns the URI of ``sweep.json``.

    Raises:
        MissingDataError: the run of some M has not finished.
    """
    folders = {}
    for shots in cfg.fewshot.shots:
        one = cfg.model_copy(update={"fewshot": cfg.fewshot.model_copy(update={"shots_per_class": shots})})
        folders[shots] = TABLE.stage_dir(run, "fewshot_evaluate", one)
    fields = (*TABLE.fields("fewshot_evaluate"), "fewshot.shots")
    out = stage_folder(run, "fewshot-sweep", cfg, fields, TABLE.fields(TABLE.run_key))
    return write_sweep_report(cfg, run, folders, out)
