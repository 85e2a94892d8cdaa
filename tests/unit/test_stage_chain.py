"""The zero-shot stages chained from the command line, twice: same config and seed, same results."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.stages.table import run_dir, stage_dir

pytestmark = pytest.mark.timeout(300)

OVERRIDES = ["generate.images_per_class=3", "tune.epochs=3"]
STAGES = [
    ["prompts"],
    ["generate", "--shard", "0", "--num-shards", "2"],
    ["generate", "--shard", "1", "--num-shards", "2"],
    ["collect", "--num-shards", "2"],
    ["filter"],
    ["test_features"],
    ["features"],
    ["tune"],
    ["evaluate"],
]


def _chain(root: Path, monkeypatch) -> Path:
    """Run every stage in ``root`` (data and store in ./data and ./synk8s-store, the defaults)."""
    root.mkdir()
    monkeypatch.chdir(root)
    sets = [arg for o in OVERRIDES for arg in ("--set", o)]
    common = ["--profile", "tiny", "--dataset", "cifar10", *sets]
    for stage in STAGES:
        result = CliRunner().invoke(app, ["stage", *stage, *common])
        assert result.exit_code == 0, f"stage {stage}: {result.output[-2000:]}"
        assert "seconds" in json.loads(result.stdout)
    return (root / run_dir(CFG)).resolve()


CFG = config.load("tiny", [*OVERRIDES, "dataset.name=cifar10"])


def _out(run: Path, stage: str, cfg=CFG) -> Path:
    return Path(stage_dir(str(run), stage, cfg))


def _without_seconds(value):
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    return value


def test_stage_commands_chain_and_repeat_exactly(tmp_path, monkeypatch):
    first, second = _chain(tmp_path / "a", monkeypatch), _chain(tmp_path / "b", monkeypatch)
    assert first.name == second.name  # the run folder is named by the config digest

    for run in (first, second):
        for stage in ("prompts", "generate", "filter", "features", "tune", "evaluate"):
            assert (_out(run, stage) / "manifest.json").is_file(), stage
    metrics = json.loads((_out(first, "evaluate") / "metrics.json").read_text())
    assert metrics["standin"] is True and metrics["generated"] == 30 and metrics["test"] == 80
    assert "stand-in data" in (_out(first, "evaluate") / "report.md").read_text().lower()
    report = json.loads((_out(first, "evaluate") / "report.json").read_text())
    assert report["cost"]["devices"] == ["cpu"] and report["estimate"]["basis"] == "estimate"
    assert any("estimate is for NVIDIA H100" in note for note in report["estimate"]["notes"])

    # Same seed and config: identical prompts, identical image bytes, identical metrics.
    assert (first / "prompts" / "prompts.jsonl").read_bytes() == (second / "prompts" / "prompts.jsonl").read_bytes()
    tars = sorted(p.relative_to(first) for p in (first / "images").rglob("*.tar"))
    assert len(tars) == 2
    assert all((first / t).read_bytes() == (second / t).read_bytes() for t in tars)
    head = "head.safetensors"
    assert (_out(first, "tune") / head).read_bytes() == (_out(second, "tune") / head).read_bytes()
    second_metrics = json.loads((_out(second, "evaluate") / "metrics.json").read_text())
    assert _without_seconds(metrics) == _without_seconds(second_metrics)

    # Table 2's switches downstream of generation reuse the images and keep their own outputs.
    monkeypatch.chdir(tmp_path / "a")
    ce = config.with_overrides(CFG, ["tune.loss=ce", "filter.enabled=false"])
    assert Path(run_dir(ce)).resolve() == first
    sets = [a for o in [*OVERRIDES, "tune.loss=ce", "filter.enabled=false"] for a in ("--set", o)]
    result = CliRunner().invoke(app, ["stage", "tune", "--profile", "tiny", "--dataset", "cifar10", *sets])
    assert result.exit_code == 1 and "no filter output" in result.output  # its own filter folder is still empty
    assert _out(first, "filter", ce) != _out(first, "filter") and _out(first, "features", ce) == _out(first, "features")


def test_a_stage_without_its_input_names_the_stage_to_run(tmp_path):
    result = CliRunner().invoke(app, ["stage", "tune", "--profile", "tiny", "--store", str(tmp_path)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "synk8s stage" in lines[0]


def test_a_detection_dataset_is_refused_by_name(tmp_path):
    result = CliRunner().invoke(app, ["stage", "prompts", "--dataset", "voc2007", "--store", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "'voc2007' is a detection dataset" in lines[0] and "cifar100" in lines[0]
    assert not any(tmp_path.iterdir())
