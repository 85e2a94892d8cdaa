"""The whole zero-shot pipeline through kfp.local on the tiny profile: ``synk8s submit --local``.

Each task is a subprocess on this machine's Python (no containers); ParallelFor runs the two
generate shards, Collected gathers them, and evaluate leaves ``report.json`` in the run folder.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.stages.table import run_dir, stage_dir

pytestmark = pytest.mark.timeout(600)

OVERRIDES = ["generate.images_per_class=2", "generate.num_shards=2", "tune.epochs=2"]


def test_local_run_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    sets = [arg for o in OVERRIDES for arg in ("--set", o)]
    result = CliRunner().invoke(
        app,
        ["submit", "zeroshot", "--profile", "tiny", "--dataset", "cifar10", "--store", str(store), *sets, "--local"],
    )
    assert result.exit_code == 0, result.output[-3000:]

    cfg = config.load("tiny", [*OVERRIDES, "dataset.name=cifar10", f"store.root={store}"])
    run = Path(run_dir(cfg))
    report_path = result.stdout.strip().splitlines()[-1]
    assert report_path == str(Path(stage_dir(str(run), "evaluate", cfg)) / "report.json")
    report = json.loads(Path(report_path).read_text())
    assert report["config_digest"] == cfg.digest()
    assert report["store_root"] == str(store)
    assert report["counts"]["generated"] == 10 * 2
    assert 0 <= report["counts"]["kept"] <= report["counts"]["generated"]
    assert report["counts"]["prompts"] >= 10
    assert 0.0 <= report["zeroshot_top1"] <= 1.0 and 0.0 <= report["tuned_top1"] <= 1.0
    assert set(report["seconds"]) == {"prompts", "generate", "filter", "test_features", "features", "tune", "evaluate"}
    assert report["notice"].startswith("stand-in data:")
    assert sorted(p.name for p in (run / "images").glob("shard-*.json")) == [
        "shard-0000-of-0002.json",
        "shard-0001-of-0002.json",
    ]

    # What the components reported to KFP: their Metrics and the Markdown report.
    (local_run,) = [p for p in (store / "kfp-local").iterdir() if p.is_dir()]

    def outputs(task: str) -> dict:
        return json.loads((local_run / task / "executor_output.json").read_text())

    def metrics(task: str) -> dict:
        return outputs(task)["artifacts"]["metrics"]["artifacts"][0]["metadata"]

    evaluated = metrics("evaluate")
    assert (evaluated["zeroshot_top1"], evaluated["tuned_top1"]) == (report["zeroshot_top1"], report["tuned_top1"])
    assert evaluated["test"] == report["counts"]["test"]
    assert outputs("evaluate")["parameterValues"]["Output"] == report_path
    assert metrics("filter")["kept"] == report["counts"]["kept"]
    assert metrics("prompts")["prompts"] == report["counts"]["prompts"]
    shard_images = [metrics(f"for-loop-1-iteration-{i}/generate")["images"] for i in (0, 1)]
    assert shard_images == [10, 10]
    ui_report = (local_run / "evaluate" / "report").read_text()
    assert ui_report.startswith("# synk8s evaluation: cifar10")
    assert "the task's `grid` artifact" in ui_report and "base64" not in ui_report and len(ui_report) < 200_000
    assert (local_run / "evaluate" / "grid").read_bytes().startswith(b"\x89PNG")

    # Quiet: one line per finished task and the summary on stderr; everything else in the log file.
    assert "executor_input" not in result.stderr and "prompts done in" in result.stderr
    assert "tuned_top1" in result.stderr and "%" in result.stderr
    assert "executor_input" in (store / "kfp-local" / "last-run.log").read_text()

    # The same command again: every stage is complete, so no task process starts (kfp.local's log stays
    # the first run's) and the same report comes back.
    prompts_file = run / "prompts" / "prompts.jsonl"
    before = prompts_file.stat().st_mtime_ns
    log_file = store / "kfp-local" / "last-run.log"
    log_before = log_file.stat().st_mtime_ns
    again = CliRunner().invoke(
        app,
        ["submit", "zeroshot", "--profile", "tiny", "--dataset", "cifar10", "--store", str(store), *sets, "--local"],
    )
    assert again.exit_code == 0, again.output[-3000:]
    assert again.stdout.strip().splitlines()[-1] == report_path
    assert prompts_file.stat().st_mtime_ns == before
    assert "nothing to run" in again.stderr and "tuned_top1" in again.stderr
    assert log_file.stat().st_mtime_ns == log_before


def test_local_run_failure_is_one_line_naming_the_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    cfg = config.load("tiny", ["prompts.mode=B", f"store.root={store}"])
    blocker = Path(run_dir(cfg)) / "prompts"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the prompts folder should be")
    result = CliRunner().invoke(
        app, ["submit", "zeroshot", "--profile", "tiny", "--store", str(store), "--set", "prompts.mode=B", "--local"]
    )
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: local run failed")
    assert "'prompts'" in last
