"""The local run's display: kfp.local's lines sorted into a log file, a live table and a one-line failure."""

import io
import json

import pytest
from rich.console import Console

from synk8s.cli.summary import print_summary
from synk8s.pipelines.console import TaskLog

pytestmark = pytest.mark.timeout(30)

KFP_LINES = [
    "05:11:27.551 - INFO - Executing task \x1b[96m'prompts'\x1b[0m",
    "    [KFP Executor 2026-11-30 05:11:27,625 INFO]: Got executor_input:",
    '    {"inputs": {"parameterValues": {"profile": "tiny"}}}',
    "    LE prompts:   0%|          | 0/100 [00:00<?, ?class/s]\r    LE prompts:  45%|####      | 45/100 "
    "[00:02<00:03, 12.14class/s]",
    "05:11:52.685 - INFO - Task \x1b[96m'prompts'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m",
    "05:11:53.283 - INFO - Executing task \x1b[96m'generate'\x1b[0m",
    "    generate shard-0000-of-0002:  50%|#####     | 100/200 [00:01<00:01, 80.50img/s]",
    "    Traceback (most recent call last):",
    "    synk8s.errors.MissingDataError: no tiny-sd in the model cache /m; run synk8s models pull tiny-sd",
    "05:11:58.000 - ERROR - Task \x1b[96m'generate'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m",
]


def _feed(task_log: TaskLog) -> None:
    with task_log:
        for line in KFP_LINES:
            task_log.write(line + "\n")


def test_quiet_run_shows_tasks_and_bars_and_keeps_everything_in_the_log(tmp_path):
    screen = io.StringIO()
    task_log = TaskLog(tmp_path / "run.log", console=Console(file=screen, width=120))
    _feed(task_log)
    shown = screen.getvalue()
    assert "executor_input" not in shown and "\x1b[" not in shown  # not a terminal: no colour codes
    assert [line.split(" in ")[0] for line in shown.splitlines()] == ["prompts done", "generate failed"]
    assert task_log.rows["prompts"].bar[1:4] == ("45", "100", "12.14class/s")
    assert task_log.rows["generate"].bar[3] == "80.50img/s"
    logged = (tmp_path / "run.log").read_text()
    assert "executor_input" in logged and "\x1b[" not in logged and logged.count("LE prompts") == 2
    failure = task_log.failure()
    assert failure.startswith("task 'generate' failed: no tiny-sd in the model cache")
    assert str(tmp_path / "run.log") in failure


def test_a_terminal_gets_the_live_table(tmp_path):
    screen = io.StringIO()
    _feed(TaskLog(tmp_path / "run.log", console=Console(file=screen, width=120, force_terminal=True)))
    shown = screen.getvalue()
    assert "executor_input" not in shown and "ETA" in shown and "\x1b[" in shown  # a table, coloured
    assert "generate" in shown and "failed" in shown


def test_verbose_run_streams_every_line(tmp_path):
    screen = io.StringIO()
    _feed(TaskLog(tmp_path / "run.log", verbose=True, console=Console(file=screen, width=300)))
    assert screen.getvalue().count("\n") == len(KFP_LINES) + 1  # the \r splits one bar line into two
    assert "executor_input" in screen.getvalue() and "\x1b[" not in screen.getvalue()


def test_summary_shows_accuracy_in_percent_and_the_files(tmp_path):
    (tmp_path / "report.md").write_text("# r\n")
    (tmp_path / "grid.png").write_bytes(b"png")
    report = {"dataset": "cifar100", "zeroshot_top1": 0.009999999776482582, "tuned_top1": 0.0125,
              "counts": {"prompts": 400, "kept": 144}, "seconds": {"prompts": 5.8, "tune": 0.9}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    screen = io.StringIO()
    print_summary(Console(file=screen, width=60), str(tmp_path / "report.json"))
    text = screen.getvalue()
    assert "1.00 %" in text and "1.25 %" in text and "0.0099999" not in text
    assert "prompts 400" in text and "total 6.7 s" in text
    lines = text.splitlines()  # each path whole on its own line, however narrow the console
    assert f"grid.png: {tmp_path / 'grid.png'}" in lines and f"report.md: {tmp_path / 'report.md'}" in lines
