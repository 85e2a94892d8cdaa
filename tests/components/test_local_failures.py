"""A failed local run: its one stderr line carries the task's error (training tasks too), and each run keeps its log."""

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.pipelines.local import LOG_FILE, latest_log
from synk8s.stages.table import run_dir

BN_SPLITS_ERROR = "pretrain.moco.bn_splits 5 must divide pretrain.batch_size 32"


def test_last_run_log_is_a_symlink_to_the_latest_log_or_a_copy(tmp_path, monkeypatch):
    first, second = tmp_path / "a-1.log", tmp_path / "a-2.log"
    for path in (first, second):
        with latest_log(path):
            path.write_text(f"{path.name}\n")
    last = tmp_path / LOG_FILE
    assert last.is_symlink() and os.readlink(last) == "a-2.log" and last.read_text() == "a-2.log\n"

    def no_symlinks(self, target):
        raise OSError("symlinks are not supported here")

    monkeypatch.setattr(Path, "symlink_to", no_symlinks)
    third = tmp_path / "a-3.log"
    with latest_log(third):
        third.write_text("a-3.log\n")
    assert not last.is_symlink() and last.read_text() == "a-3.log\n"
    assert second.read_text() == "a-2.log\n"  # the copy replaced the symlink, not the log it pointed at
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-1.log", "a-2.log", "a-3.log", LOG_FILE]


@pytest.mark.timeout(300)
def test_each_run_keeps_its_log_and_a_failed_training_task_shows_its_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    logs = store / "kfp-local"
    blocker = Path(run_dir(config.load("tiny", ["prompts.mode=B", f"store.root={store}"]))) / "prompts"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the prompts folder should be")
    first = CliRunner().invoke(
        app, ["submit", "zeroshot", "--profile", "tiny", "--store", str(store), "--set", "prompts.mode=B", "--local"]
    )
    assert first.exit_code == 1
    (first_log,) = logs.glob("zeroshot-*.log")
    assert first.stderr.strip().splitlines()[-1].endswith(f"(full log: {first_log})")

    # A pre-training task fails inside its DDP process: torch.distributed prefixes the traceback with "[rank0]: ".
    second = CliRunner().invoke(
        app,
        ["submit", "pretrain", "--label-space", "cifar100", "--method", "moco", "--transfer", "cifar100", "--local",
         "--profile", "tiny", "--store", str(store), "--set", "pretrain.moco.bn_splits=5"],
    )
    assert second.exit_code == 1
    (second_log,) = logs.glob("pretrain-*.log")
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: local run failed: task 'pretrain' failed: {BN_SPLITS_ERROR}")
    assert line.endswith(f"(full log: {second_log})")
    assert f"[rank0]: synk8s.errors.UsageError: {BN_SPLITS_ERROR}" in second_log.read_text()

    assert sorted(p.name for p in logs.glob("*.log")) == sorted([first_log.name, second_log.name, LOG_FILE])
    assert (logs / LOG_FILE).resolve() == second_log
    assert "'synk8s-zeroshot'" in first_log.read_text() and "'synk8s-zeroshot'" not in second_log.read_text()
