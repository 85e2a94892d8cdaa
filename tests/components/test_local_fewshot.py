"""The README's few-shot command, run in-process through kfp.local: ``synk8s submit fewshot ... --local``.

The command line is read from the README, so the documented command is the one tested.
"""

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.stages.fewshot.split import load_split
from synk8s.stages.table import run_dir, stage_dir

pytestmark = pytest.mark.timeout(600)

README = Path(__file__).resolve().parents[2] / "README.md"
COMMAND = "synk8s submit fewshot --dataset eurosat --shots 4 --local --profile tiny"


def test_the_readme_fewshot_command_writes_its_report(tmp_path, monkeypatch):
    assert COMMAND in README.read_text().splitlines(), "the README's few-shot command changed"
    monkeypatch.chdir(tmp_path)  # the tiny profile's store and stand-in data are relative folders
    result = CliRunner().invoke(app, shlex.split(COMMAND)[1:])
    assert result.exit_code == 0, result.output[-3000:]

    cfg = config.load("tiny", ["dataset.name=eurosat", "fewshot.shots_per_class=4"])
    run = run_dir(cfg)
    report_path = (tmp_path / result.stdout.strip().splitlines()[-1]).resolve()
    assert report_path == (tmp_path / stage_dir(run, "fewshot_evaluate", cfg) / "report.json").resolve()
    report = json.loads(report_path.read_text())
    assert (report["dataset"], report["shots"], report["strategy"]) == ("eurosat", 4, cfg.fewshot.strategy)
    assert (report["schedule"], report["freeze_bn"]) == (cfg.fewshot.schedule, cfg.fewshot.freeze_bn)
    assert report["split_digest"] == load_split(str(tmp_path / stage_dir(run, "split", cfg))).digest
    assert all(0.0 <= report["top1"][name] <= 1.0 for name in ("ct_init", "ct_syn", "zeroshot"))
    assert report["counts"]["real"] == 10 * 4
    assert report["notice"].startswith("stand-in data:")
    # RG (the profile's strategy): the real-guided images of this M were made and read.
    assert cfg.fewshot.strategy == "RG"
    guided = tmp_path / stage_dir(run, "guided", cfg)
    assert len(list(guided.glob("shard-*/*.tar"))) >= 1
    assert set(report["seconds"]) >= {"split", "guided", "filter_guided", "features_guided", "fewshot_tune"}

    # The same command again replays the finished run: no task process starts, no log is added.
    logs = sorted((tmp_path / "synk8s-store" / "kfp-local").glob("*.log"))
    again = CliRunner().invoke(app, shlex.split(COMMAND)[1:])
    assert again.exit_code == 0, again.output[-3000:]
    assert "nothing to run" in again.output
    assert (tmp_path / again.stdout.strip().splitlines()[-1]).resolve() == report_path
    assert sorted((tmp_path / "synk8s-store" / "kfp-local").glob("*.log")) == logs
    assert json.loads(report_path.read_text())["top1"] == report["top1"]
