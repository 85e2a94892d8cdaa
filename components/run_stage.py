"""The bodies the generated stage components share: run a table stage into its folder and report it.

Their ``config_json`` is the ``plan`` task's output, a config resolved and checked there
(:func:`synk8s.resolve.config_from_arguments`); they read it back without looking its names up again
(:func:`synk8s.resolve.read_resolved`), and refuse a ``run_dir`` outside its ``store.root``.
"""

from typing import Any


def _config(config_json: str, run_dir: str) -> Any:
    """The run's config, once ``run_dir`` is known to be a run folder of its ``store.root``."""
    from synk8s.resolve import read_resolved
    from synk8s.runs import check_run_dir

    cfg = read_resolved(config_json)
    check_run_dir(cfg.store.root, run_dir)
    return cfg


def run_stage(
    stage: str,
    config_json: str,
    run_dir: str,
    metrics: Any,
    markdown: Any = None,
    folder: Any = None,
    attachments: Any = None,
    confusion: Any = None,
    **arguments: Any,
) -> str:
    """Run stage ``stage`` of the table into its folder of the run folder and log its result.

    Args:
        stage: the stage's name in :data:`synk8s.stages.table.TABLE`.
        config_json: the resolved config, as ``plan`` returns it.
        run_dir: the run folder URI.
        metrics: a ``dsl.Metrics`` output; gets the numbers of the stage's result.
        markdown: a ``dsl.Markdown`` output, for a stage that declares a Markdown report; its
            images are the stage's attachments (see :func:`synk8s.reports.zeroshot.report_markdown`).
        folder: a ``dsl.Dataset`` or ``dsl.Model`` output for a row with ``artifact``: gets the
            folder's listing (see :func:`synk8s.components.artifacts.describe_folder`).
        attachments: file name -> ``dsl.Artifact`` output, for a row's ``attachments``.
        confusion: a ``dsl.ClassificationMetrics`` output for a row with ``confusion``.
        **arguments: the folder URI of each input of the stage (the upstream tasks' outputs), and
            ``shard`` for one shard of a sharded stage.

    Returns:
        The stage's output folder URI, or its ``finish`` hook's URI (the run report).

    Raises:
        UsageError: ``run_dir`` is not a run folder of the config's ``store.root``.
    """
    from synk8s.components.artifacts import attach, describe_folder
    from synk8s.components.metrics import log_result

    from synk8s.reports.zeroshot import report_markdown
    from synk8s.stages.table import TABLE

    spec = TABLE.get(stage)
    options = {"shard": int(arguments.pop("shard"))} if "shard" in arguments else {}  # a float under kfp.local
    done = TABLE.execute(stage, _config(config_json, run_dir), run_dir, inputs=arguments, **options)
    log_result(metrics, done.result)
    if markdown is not None:
        with open(markdown.path, "w", encoding="utf-8") as handle:
            handle.write(report_markdown(done.out, spec.markdown))
    if folder is not None:
        describe_folder(folder, done.out)
    for name, output in (attachments or {}).items():
        attach(output, done.out, name)
    if confusion is not None:
        classes, matrix = spec.confusion(done.out)
        confusion.log_confusion_matrix(classes, matrix)
    return done.uri


def shard_items(stage: str, config_json: str, run_dir: str, **inputs: str) -> list:
    """The items of a sharded stage's ParallelFor: one per shard, ``[0, count)``.

    The config is stored once in the run folder (:func:`synk8s.runs.put_config`) and each item
    carries its SHA-256, so an item is a few hundred bytes however large the config (KFP hands each
    shard task its item through the Argo Workflow object, which etcd caps at about 1.5 MiB). Each
    item also carries the run folder and input folders rather than the shard task reading upstream
    outputs itself: kfp.local (2.17) hands a task inside a ParallelFor the loop item in place of
    every upstream task output it consumes.
    """
    from synk8s.runs import put_config
    from synk8s.stages.table import TABLE

    count = TABLE.get(stage).shards.count(_config(config_json, run_dir))
    shared = {"config_sha256": put_config(run_dir, config_json), "run_dir": run_dir, **inputs}
    return [{"shard": shard, **shared} for shard in range(count)]


def run_shard(stage: str, config_sha256: str, run_dir: str, metrics: Any, **arguments: Any) -> str:
    """Run one shard of a sharded stage: :func:`run_stage` with the config the shard list stored.

    Args:
        config_sha256: the SHA-256 of the resolved config :func:`shard_items` stored in the run
            folder (:func:`synk8s.runs.put_config`); the config is read and checked against it
            before the shard runs.
        stage, run_dir, metrics, **arguments: as for :func:`run_stage` (``shard`` among the arguments).

    Raises:
        MissingDataError: the stored config is gone.
        IntegrityError: the stored config differs from its SHA-256.
    """
    from synk8s.runs import read_config

    return run_stage(stage, read_config(run_dir, config_sha256), run_dir, metrics, **arguments)


def collect_shards(stage: str, config_json: str, run_dir: str, shards: list, metrics: Any, folder: Any = None) -> str:
    """Run a sharded stage's collect step once all its shard tasks are done; returns the stage's folder.

    Args:
        shards: the outputs of every shard task, gathered by ``dsl.Collected``; one per shard.
        folder: a ``dsl.Dataset`` (or ``dsl.Model``) output for a row with ``artifact``.

    Raises:
        MissingDataError: fewer or more shard tasks ran than the config's shard count.
        UsageError: ``run_dir`` is not a run folder of the config's ``store.root``.
    """
    from synk8s.components.metrics import log_result

    from synk8s.errors import MissingDataError
    from synk8s.stages.table import TABLE

    cfg = _config(config_json, run_dir)
    expected = TABLE.get(stage).shards.count(cfg)
    if len(shards) != expected:
        raise MissingDataError(f"got {len(shards)} finished {stage} shards, expected {expected}")
    done = TABLE.execute(stage, cfg, run_dir, collect=True)
    log_result(metrics, done.result)
    if folder is not None:
        from synk8s.components.artifacts import describe_folder

        describe_folder(folder, done.out)
    return done.out
