"""Run a pipeline on this machine with kfp.local: one subprocess per task, no containers, no cluster.

    report = run_local("zeroshot", config.load("tiny"))      # what ``synk8s submit --local`` does

Each task runs on this machine's Python with ``OMP_NUM_THREADS`` (and so torch's intra-op threads)
set to its share of the cores: torch's default of every core stalls a task whose cores another
process also uses (a 2-thread T5 ``generate`` call on 2 shared cores took seconds where 1 thread
took a tenth of one). kfp.local runs one task at a time, and the shards of a local run one after
another, so by default a task gets every core the process may use.

What the tasks print goes to the run's own log, ``<kfp.local root>/<pipeline>-<date-time>.log``
(``<store>/kfp-local/zeroshot-2026-12-07-08-14-22-178408.log``), and ``last-run.log`` beside it is a
symlink to the latest run's log (a copy, made when the run ends, on a filesystem without symlinks);
two runs on one store keep both logs. stderr shows a live display of the tasks (see
:mod:`synk8s.pipelines.console`), or every line with ``verbose``; a failed task's error line and its
run's log path end the run. A rerun whose stages are all complete starts no task at all, and writes
no log (:mod:`synk8s.pipelines.replay`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from synk8s import storage
from synk8s.errors import Synk8sError

if TYPE_CHECKING:
    from synk8s.config import ExperimentConfig

log = logging.getLogger(__name__)

LOCAL_PARALLELISM = 1  # shard tasks at once: concurrent shards on one machine only share its cores


def default_threads(concurrent: int = LOCAL_PARALLELISM) -> int:
    """Each of ``concurrent`` tasks' share of the cores this process may use, at least 1."""
    return max(1, len(os.sched_getaffinity(0)) // concurrent)


def check_store(root: str) -> None:
    """Read the S3 store root once, so missing credentials or a wrong endpoint or bucket is one line.

    A local folder needs no check (the stages create it).

    Raises:
        StoreError: the store cannot be reached or refuses access.
    """
    if storage.is_remote(root):
        storage.list_prefixes(root)


def local_pipeline_root(cfg: ExperimentConfig) -> str:
    """Where kfp.local keeps its own small outputs: ``<store>/kfp-local``, or ``./kfp-local`` for an S3 store."""
    if storage.is_remote(cfg.store.root):
        return str(Path.cwd() / "kfp-local")
    return storage.join(cfg.store.root, "kfp-local")


class _ShortRecords(logging.Filter):
    """Keeps kfp.local's log readable: drops its per-input expression traces, shortens long lines."""

    LIMIT = 240

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "expression selector" in message:
            return False
        lines = [line if len(line) <= self.LIMIT else line[: self.LIMIT] + " ..." for line in message.splitlines()]
        record.msg, record.args = "\n".join(lines), None
        return True


LOG_FILE = "last-run.log"  # the latest run's log: a symlink to it, or a copy


def run_log_path(root: str, pipeline: str) -> Path:
    """This run's own log file: ``<root>/<pipeline>-<date-time to the microsecond>.log``."""
    return Path(storage.to_path(root)) / f"{pipeline}-{datetime.now().strftime('%Y-%m-%d-%H-%M-%S-%f')}.log"


@contextlib.contextmanager
def latest_log(log_path: Path) -> Iterator[None]:
    """Make ``last-run.log`` beside ``log_path`` show it while a run writes it.

    At once a relative symlink replaces ``last-run.log`` (so it follows the run as it goes); where
    the filesystem refuses symlinks, ``last-run.log`` becomes a copy of the log when the block ends.
    """
    last = log_path.with_name(LOG_FILE)
    link = log_path.with_name(f".{log_path.name}.link")
    try:
        link.symlink_to(log_path.name)
        os.replace(link, last)
        linked = True
    except OSError:
        link.unlink(missing_ok=True)
        linked = False
    try:
        yield
    finally:
        if not linked:
            last.unlink(missing_ok=True)  # never copy through an older run's symlink onto its log
            shutil.copyfile(log_path, last)


def run_local(
    pipeline: str, cfg: ExperimentConfig, *, threads: int | None = None, verbose: bool = False, resume: bool = True
) -> str:
    """Run ``pipeline`` here through kfp.local, after checking that an S3 store answers.

    When every stage of the pipeline is already complete (the test each stage's resume uses), no
    task is started: its output is computed in this process (see :mod:`synk8s.pipelines.replay`).

    The task logs go to the run's own log file (:func:`run_log_path`; ``last-run.log`` shows the
    latest, see :func:`latest_log`); stderr shows one live progress display (see
    :mod:`synk8s.pipelines.console`), or with ``verbose`` every log line.

    Args:
        pipeline: a name of :data:`synk8s.pipelines.PIPELINES`.
        cfg: the run's config.
        threads: ``OMP_NUM_THREADS`` of every task; None: :func:`default_threads`.
        verbose: stream every task's log to stderr instead of the live display.
        resume: look for a complete run first; False starts kfp.local anyway (each stage still resumes).

    Returns:
        The pipeline's output: the URI of the run's ``report.json``.

    Raises:
        StoreError: the S3 store cannot be reached.
        Synk8sError: a task failed: one line with its error and the run's log file's path.
    """
    from kfp import local

    from synk8s.pipelines import arguments, build, prepare
    from synk8s.pipelines.console import TaskLog
    from synk8s.pipelines.replay import complete_output

    cfg = prepare(pipeline, cfg)
    check_store(cfg.store.root)
    threads = threads or default_threads()
    func = build(pipeline, cfg, retry=False, parallelism=LOCAL_PARALLELISM, threads=threads)
    parameters = arguments(pipeline, cfg)
    if resume:
        output = complete_output(func, parameters)
        if output is not None:
            print(f"every stage of {pipeline} is complete; nothing to run", file=sys.stderr)
            return output
    root = local_pipeline_root(cfg)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
    log.debug("kfp.local runs each task on this machine's Python with %d thread(s); GPU, resource and "
              "Kubernetes settings do not apply", threads)
    short = _ShortRecords()
    logging.getLogger().addFilter(short)  # kfp.local logs through the root logger
    task_log = TaskLog(run_log_path(root, pipeline), verbose=verbose)
    with latest_log(task_log.log_path), task_log, contextlib.redirect_stdout(task_log), warnings.catch_warnings():
        # One warning per task that its cluster settings and image are ignored: said once (debug log) above.
        warnings.filterwarnings("ignore", message=r"Task '.*': settings \[.*\] have no effect")
        warnings.filterwarnings("ignore", message=r"You may be attemping to run a task that uses custom")
        try:
            task = func(**parameters)
        except RuntimeError:
            raise Synk8sError(f"local run failed: {task_log.failure()}") from None
        finally:
            logging.getLogger().removeFilter(short)
    return task.output
