"""Cost records: every stage call through the table leaves device, device-seconds and images/s; a run sums them."""

import pytest

from synk8s import config, cost, storage
from synk8s.stages.synth.shard_writer import GenerateResult
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(30)


def test_a_stage_call_through_the_table_leaves_a_cost_record(tmp_path):
    cfg = config.load("tiny", ["dataset.name=cifar10", "prompts.mode=B", f"store.root={tmp_path}"])
    run = TABLE.run_dir(cfg)
    done = TABLE.execute("prompts", cfg, run)
    body = storage.get_json(f"{run}/cost/prompts.json")
    assert body["stage"] == "prompts" and body["device"] == "cpu" and body["shard"] is None
    assert 0 < body["device_seconds"] < 60 and body["images"] is None
    assert cost.read_records(run, {"prompts": done.out}) == [body]


def test_shard_records_sum_into_device_hours_per_1000_images(tmp_path):
    cfg = config.load("tiny")
    run, out = str(tmp_path / "run"), str(tmp_path / "run" / "images")
    for shard, seconds in ((0, 1800.0), (1, 1800.0)):
        result = GenerateResult(shard=shard, num_shards=2, images=500, generated=500, tars=1, skipped_tars=0,
                                manifest_uri="m", seconds=seconds)
        cost.record(cfg, run, out, "generate", result, seconds, shard=shard)
    cost.record(cfg, run, str(tmp_path / "run" / "tune-x"), "tune", object(), 3600.0)
    first = storage.get_json(f"{run}/cost/images-shard-00000.json")
    assert (first["images"], first["images_per_second"]) == (500, round(500 / 1800, 4))
    records = cost.read_records(run, {"generate": out, "tune": f"{run}/tune-x"})
    assert len(records) == 3
    summary = cost.run_cost(records, generated=1000, gain=0.05)
    assert summary["generate_device_hours"] == 1.0 and summary["device_hours"] == 2.0
    assert summary["device_hours_per_1000_images"] == 1.0
    assert summary["points_per_device_hour"] == 2.5  # 5 points over 2 device-hours
    assert summary["devices"] == ["cpu"]
    assert cost.read_records(run, {"tune": f"{run}/tune-y"}) == []  # another tune setting's record is not ours
