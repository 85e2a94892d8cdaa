"""Every stage resumes through the stage table: a complete, valid output is not made again."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(120)

SETS = ["prompts.mode=B", "generate.images_per_class=2", "generate.num_shards=1"]


def _stage(root: Path, *args: str, sets=SETS) -> dict:
    flags = [a for s in sets for a in ("--set", s)]
    result = CliRunner().invoke(app, ["stage", *args, "--profile", "tiny", "--dataset", "cifar10",
                                      "--store", str(root), *flags])
    assert result.exit_code == 0, result.output[-2000:]
    return json.loads(result.stdout)


def _folder(root: Path, stage: str, sets=SETS) -> Path:
    cfg = config.load("tiny", [*sets, "dataset.name=cifar10", f"store.root={root}"])
    return Path(TABLE.stage_dir(TABLE.run_dir(cfg), stage, cfg))


def test_a_complete_stage_is_skipped_and_a_damaged_one_runs_again(tmp_path):
    first = _stage(tmp_path, "prompts")
    out = _folder(tmp_path, "prompts")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage_digest"] and manifest["result"]["prompts"] == first["prompts"]
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # Same command: nothing is written, the recorded result (its seconds too) comes back.
    assert _stage(tmp_path, "prompts") == first
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == written

    # A field prompts do not depend on changes nothing either.
    assert _stage(tmp_path, "prompts", sets=[*SETS, "tune.epochs=2"]) == first

    # A declared output gone: the stage runs again and writes it.
    (out / "stats.json").unlink()
    _stage(tmp_path, "prompts")
    assert (out / "stats.json").is_file()

    # An output its reader refuses (prompts.jsonl no longer matches its recorded hash): run again.
    (out / "prompts.jsonl").write_text("{}\n")
    _stage(tmp_path, "prompts")
    assert len((out / "prompts.jsonl").read_text().splitlines()) == first["prompts"]

    # A recorded digest of other settings: run again, and the digest is recorded anew.
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "stage_digest": "0" * 16}))
    before = (out / "prompts.jsonl").stat().st_mtime_ns
    _stage(tmp_path, "prompts")
    assert (out / "prompts.jsonl").stat().st_mtime_ns != before
    assert json.loads((out / "manifest.json").read_text())["stage_digest"] == manifest["stage_digest"]


def test_a_collected_sharded_stage_is_complete(tmp_path):
    _stage(tmp_path, "prompts")
    _stage(tmp_path, "generate", "--shard", "0", "--num-shards", "1")
    cfg = config.load("tiny", [*SETS, "dataset.name=cifar10", f"store.root={tmp_path}"])
    run = TABLE.run_dir(cfg)
    assert TABLE.complete("prompts", cfg, run) and not TABLE.complete("generate", cfg, run)
    collected = _stage(tmp_path, "collect", "--num-shards", "1")
    assert TABLE.complete("generate", cfg, run)
    manifest = _folder(tmp_path, "generate") / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    assert _stage(tmp_path, "collect", "--num-shards", "1") == collected
    assert manifest.stat().st_mtime_ns == stamp
