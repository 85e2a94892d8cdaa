"""A local rerun whose stages are all complete starts no kfp.local task; a damaged stage sends it to kfp.local."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.pipelines import arguments, build
from synk8s.pipelines.local import LOG_FILE
from synk8s.pipelines.replay import complete_output
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(120)

@pytest.fixture
def complete_run(zeroshot_run):
    """A finished zero-shot run (its stages run in this process), its config and its ``--set`` options."""
    return zeroshot_run.root, zeroshot_run.cfg, [a for s in zeroshot_run.sets for a in ("--set", s)]


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_a_complete_rerun_starts_no_task_and_prints_the_summary(complete_run):
    root, cfg, flags = complete_run
    before = _mtimes(root)
    result = CliRunner().invoke(
        app, ["submit", "zeroshot", "--dataset", "cifar10", "--local", "--profile", "tiny", "--store", str(root), *flags]
    )
    assert result.exit_code == 0, result.output[-2000:]
    report = result.stdout.strip().splitlines()[-1]
    run = TABLE.run_dir(cfg)
    assert report == f"{TABLE.stage_dir(run, 'evaluate', cfg)}/report.json"
    assert "run summary" in result.output and "tuned_top1" in result.output and "nothing to run" in result.output
    assert "preflight: " in result.output and "cifar10 stand-in data (drawn)" in result.output
    assert not (root / "kfp-local").exists()  # kfp.local never started: no task outputs, no log
    after = _mtimes(root)
    rewritten = {name for name in after if after[name] != before.get(name) and ".synk8s-meta" not in name}
    assert rewritten <= {str(Path(report).relative_to(root))}  # only evaluate's finish hook wrote its report again
    assert json.loads(Path(report).read_text())["dataset"] == "cifar10"


def test_a_damaged_run_report_is_written_again_to_the_same_bytes(complete_run):
    root, cfg, flags = complete_run
    report = Path(TABLE.stage_dir(TABLE.run_dir(cfg), "evaluate", cfg)) / "report.json"
    command = ["submit", "zeroshot", "--dataset", "cifar10", "--local", "--profile", "tiny", "--store", str(root)]
    assert CliRunner().invoke(app, [*command, *flags]).exit_code == 0
    good = report.read_bytes()
    report.write_bytes(good[: len(good) // 2])  # truncated: the report is derived, never an input
    result = CliRunner().invoke(app, [*command, *flags])
    assert result.exit_code == 0, result.output[-2000:]
    assert report.read_bytes() == good


def test_a_damaged_stage_output_sends_the_run_to_kfp_local_and_writes_nothing(complete_run, caplog):
    root, cfg, _ = complete_run
    func = build("zeroshot", cfg)
    assert complete_output(func, arguments("zeroshot", cfg)) is not None
    head = Path(TABLE.stage_dir(TABLE.run_dir(cfg), "tune", cfg)) / "head.safetensors"
    original = head.read_bytes()
    head.write_bytes(original[:-8] + bytes(8))  # same size, other bytes: its recorded hash no longer matches
    try:
        before = _mtimes(root)
        with caplog.at_level("DEBUG", logger="synk8s.pipelines.replay"):
            assert complete_output(func, arguments("zeroshot", cfg)) is None
        assert "tune is not complete" in caplog.text
        assert _mtimes(root) == before  # checked only: no report written, nothing started
        assert not (root / "kfp-local" / LOG_FILE).exists()
    finally:
        head.write_bytes(original)


@pytest.mark.parametrize(("pipeline", "sets"), [("fewshot_sweep", ["fewshot.shots=[1, 2]"]), ("pretrain", [])])
def test_every_task_of_a_pipeline_is_recorded_and_an_empty_store_is_only_read(tmp_path, pipeline, sets):
    from synk8s.pipelines import prepare

    cfg = prepare(pipeline, config.load("tiny", [*sets, f"store.root={tmp_path}/store"]))
    func = build(pipeline, cfg)
    steps = func.recording.steps
    spec_tasks = _task_names(func.pipeline_spec)
    assert {s.task.name for s in steps} <= spec_tasks
    stages = {s.stage for s in steps if s.stage}
    if pipeline == "pretrain":
        assert stages == {"prompts", "generate", "pretrain", "finetune"}
        assert [s.task.name for s in steps if s.func and s.store] == ["transfer-report"]
    else:
        assert [s.store for s in steps if s.func and "shots-config" in s.task.name] == [False, False]
        assert {"split", "fewshot_tune", "fewshot_evaluate"} <= stages
    assert complete_output(func, arguments(pipeline, cfg)) is None
    assert not (tmp_path / "store").exists()


def _task_names(spec) -> set[str]:
    """The names of every task of a compiled spec: its root's and those inside its loops."""
    names = set(spec.root.dag.tasks)
    for component in spec.components.values():
        if component.HasField("dag"):
            names |= set(component.dag.tasks)
    return names
