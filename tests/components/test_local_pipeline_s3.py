"""kfp.local with the store on an S3 endpoint (the moto server on 127.0.0.1), as a laptop with MinIO runs it."""

import pytest
from typer.testing import CliRunner

from synk8s import config, storage
from synk8s.cli.main import app
from synk8s.stages.table import run_dir, stage_dir

pytestmark = pytest.mark.timeout(300)

OVERRIDES = ["generate.images_per_class=2", "generate.num_shards=2", "tune.epochs=2", "prompts.mode=B"]


def test_local_run_reads_and_writes_the_s3_store(tmp_path, monkeypatch, s3_env):
    monkeypatch.chdir(tmp_path)
    store = f"{s3_env}/synk8s"
    sets = [arg for o in OVERRIDES for arg in ("--set", o)]
    result = CliRunner().invoke(
        app, ["submit", "zeroshot", "--profile", "tiny", "--dataset", "eurosat", "--store", store, *sets, "--local"]
    )
    assert result.exit_code == 0, result.output[-3000:]

    cfg = config.load("tiny", [*OVERRIDES, "dataset.name=eurosat", f"store.root={store}"])
    report_uri = result.stdout.strip().splitlines()[-1]
    evaluate = stage_dir(run_dir(cfg), "evaluate", cfg)
    assert report_uri == storage.join(evaluate, "report.json")
    report = storage.get_json(report_uri)
    assert report["counts"]["generated"] == 10 * 2 and report["store_root"] == store
    tars = [o for o in storage.list(storage.join(run_dir(cfg), "images")) if o.uri.endswith(".tar")]
    assert len(tars) == 2 and all(o.sha256 for o in tars)
    assert storage.exists(storage.join(evaluate, "metrics.json"))
    assert not (tmp_path / "synk8s-store").exists()  # nothing went to the local default store
