"""The two small tasks of a shot-count sweep (the few-shot pipeline's Figure 1 curve).

``shots_config`` turns the planned config into that of one shot count M; ``sweep_report`` runs
after every M's evaluation and gathers their reports into one ``sweep.json``. Both are plain
functions, made into components by :mod:`synk8s.pipelines.fewshot`; their bodies import synk8s.
"""


def shots_config(config_json: str, shots: int) -> str:
    """The run's config (JSON) with ``fewshot.shots_per_class`` set to ``shots``."""
    from synk8s.resolve import read_resolved

    cfg = read_resolved(config_json)
    fewshot = cfg.fewshot.model_copy(update={"shots_per_class": int(shots)})
    return cfg.model_copy(update={"fewshot": fewshot}).model_dump_json()


def sweep_report(config_json: str, run_dir: str) -> str:
    """Gather every shot count's few-shot report of the run into ``sweep.json``; returns its URI."""
    from synk8s.resolve import read_resolved
    from synk8s.runs import check_run_dir
    from synk8s.stages.fewshot.sweep import write_sweep

    cfg = read_resolved(config_json)
    return write_sweep(cfg, check_run_dir(cfg.store.root, run_dir))
