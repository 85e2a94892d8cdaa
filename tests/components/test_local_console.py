"""The local run's display: kfp.local's lines sorted into a log file, a live table and a one-line failure."""

import io
import json

import pytest
from rich.console import Console

from synk8s.cli.summary import print_summary
from synk8s.pipelines.console import TaskLog, failure_reason

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


# A training task's log under kfp.local (pretrain with pretrain.nproc=1): torch.distributed's excepthook
# puts "[rank0]: " before every line of the traceback (the executor input above it is left out).
TRAINING_LINES = """\
    [KFP Executor 2026-12-07 08:14:31,644 INFO]: Looking for component `pretrain` in --component_module_path `/tmp/e.py`
    [rank0]: Traceback (most recent call last):
    [rank0]:   File "<frozen runpy>", line 198, in _run_module_as_main
    [rank0]:   File "/venv/lib/python3.11/site-packages/kfp/dsl/executor.py", line 453, in execute
    [rank0]:     result = self.func(**func_kwargs)
    [rank0]:              ^^^^^^^^^^^^^^^^^^^^^^^^
    [rank0]:   File "/work/synk8s/stages/pretrain.py", line 194, in _train
    [rank0]:     raise UsageError(
    [rank0]: synk8s.errors.UsageError: pretrain.moco.bn_splits 5 must divide pretrain.batch_size 32 (split-batch BN \
on one process); choose a divisor, or 1 for plain BN
    """.splitlines()

# The same stage on two processes: torchrun's workers mark their error, torchrun reports the failed
# children with its own traceback, and the task's launcher raises the worker's error again.
TORCHRUN_LINES = """\
[rank 0] INFO epoch 1/2: {'epoch': 1, 'loss': 4.57}
synk8s-error: MissingDataError no images under /s/runs/r/images; run the generate stage first
synk8s-error: MissingDataError no images under /s/runs/r/images; run the generate stage first
E1207 08:15:28.575000 26438 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1) local_rank: 0
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/torch/distributed/launcher/api.py", line 386, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
  exitcode  : 1 (pid: 26471)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
Traceback (most recent call last):
  File "/work/synk8s/distributed.py", line 197, in launch
    raise launch_error(target, code, [*marked, *tail])
synk8s.errors.MissingDataError: no images under /s/runs/r/images; run the generate stage first""".splitlines()


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (TRAINING_LINES, "pretrain.moco.bn_splits 5 must divide pretrain.batch_size 32 (split-batch BN on one "
                         "process); choose a divisor, or 1 for plain BN"),
        ([line.replace("[rank0]: ", "[rank0]: [rank0]: ") for line in TRAINING_LINES], "pretrain.moco.bn_splits 5 "
         "must divide pretrain.batch_size 32 (split-batch BN on one process); choose a divisor, or 1 for plain BN"),
        (TORCHRUN_LINES, "no images under /s/runs/r/images; run the generate stage first"),
        (TORCHRUN_LINES[:4], "no images under /s/runs/r/images; run the generate stage first"),  # marked lines only
        (["[rank1]: Traceback (most recent call last):", "[rank1]: RuntimeError: CUDA out of memory", "[rank1]: "],
         "RuntimeError: CUDA out of memory"),
        (["MissingDataError: a synk8s error", "Traceback (most recent call last):", "KeyError: 'x'"],
         "a synk8s error"),  # a synk8s error wins over a later exception it caused
        (["all fine", "ChildFailedError:"], None),
    ],
)
def test_the_failure_reason_is_the_error_line_without_rank_prefixes(lines, reason):
    assert failure_reason(lines) == reason


def test_a_failed_training_task_names_its_error(tmp_path):
    task_log = TaskLog(tmp_path / "run.log", console=Console(file=io.StringIO(), width=120))
    with task_log:
        task_log.write("05:11:53.283 - INFO - Executing task 'pretrain'\n")
        for line in TRAINING_LINES:
            task_log.write(line + "\n")
        task_log.write("05:11:58.000 - ERROR - Task 'pretrain' finished with status FAILURE\n")
    assert task_log.failure() == (
        "task 'pretrain' failed: pretrain.moco.bn_splits 5 must divide pretrain.batch_size 32 (split-batch BN on "
        f"one process); choose a divisor, or 1 for plain BN (full log: {tmp_path / 'run.log'})"
    )


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
