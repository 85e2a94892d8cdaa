"""The ParallelFor items of a sharded stage: a reference to the config stored once, checked by the shard task."""

import json
from pathlib import Path

import pytest
from synk8s.components.stages import make_components

from synk8s import config
from synk8s.errors import IntegrityError
from synk8s.runs import config_uri
from synk8s.stages.table import TABLE, run_dir, stage_dir

pytestmark = pytest.mark.timeout(60)

ETCD_OBJECT_BYTES = 1_572_864  # 1.5 MiB: etcd's default request limit, which caps an Argo Workflow object
# 200 node labels: the config more than doubles (3.7 KB -> 8.5 KB)
LARGE_SELECTOR = "cluster.gpu_node_selector={" + ", ".join(f"label-{i:03d}: value-{i:03d}" for i in range(200)) + "}"


def _items(root, shards: int, *overrides: str) -> tuple[config.ExperimentConfig, list[dict]]:
    cfg = config.load("paper", [f"store.root={root}", f"generate.num_shards={shards}", *overrides])
    run = run_dir(cfg)
    shard_list = make_components(cfg).shard_lists["generate"].python_func
    return cfg, shard_list(config_json=cfg.model_dump_json(), run_dir=run, prompts=stage_dir(run, "prompts", cfg))


def _sizes(items: list[dict]) -> set[int]:
    """Each item's JSON bytes less the digits of its shard index."""
    return {len(json.dumps(item)) - len(str(item["shard"])) for item in items}


def test_an_item_is_small_and_the_same_size_whatever_the_config_and_the_shard_count(tmp_path):
    small_cfg, small = _items(tmp_path, 100)
    large_cfg, large = _items(tmp_path, 1000, LARGE_SELECTOR)
    assert len(large_cfg.model_dump_json()) > 2 * len(small_cfg.model_dump_json())  # the config grew, the items did not
    assert [item["shard"] for item in large] == list(range(1000))
    # Only the shard index differs between items; the reference is a fixed-width digest.
    assert len(_sizes(small) | _sizes(large)) == 1
    assert max(len(json.dumps(item)) for item in large) < 600 < len(small_cfg.model_dump_json())
    assert len(json.dumps(large)) < ETCD_OBJECT_BYTES // 2
    for cfg, items in ((small_cfg, small), (large_cfg, large)):
        (digest,) = {item["config_sha256"] for item in items}  # one object, not one per shard
        assert Path(config_uri(run_dir(cfg), digest)).read_text() == cfg.model_dump_json()


def test_a_shard_task_refuses_a_config_changed_after_the_list_was_made(tmp_path, artifact):
    cfg, items = _items(tmp_path, 2)
    stored = Path(config_uri(run_dir(cfg), items[0]["config_sha256"]))
    stored.write_text(cfg.model_copy(update={"seed": 1}).model_dump_json())  # another program's write
    generate = make_components(cfg).stages["generate"].python_func
    with pytest.raises(IntegrityError, match="is damaged"):
        generate(**items[0], metrics=artifact("generate-0"))
    assert not Path(TABLE.stage_dir(run_dir(cfg), "generate", cfg)).exists()  # nothing ran
