"""The compiled pipelines at scale: a memory /dev/shm on DataLoader tasks, a spec that does not grow with shards."""

import re

import pytest
import yaml

from synk8s import config
from synk8s.pipelines import compile_pipeline

pytestmark = pytest.mark.timeout(60)

# Stages that run DataLoader workers (training, detection, CLIP feature extraction); the few-shot
# tuning and evaluation only when they encode images (tune.trainable other than head).
SHM_STAGES = {
    "pretrain", "finetune", "scratch", "scratch_real", "detect",
    "features", "test_features", "features_guided", "filter", "filter_guided",
}  # fmt: skip
IMAGE_STAGES = {"fewshot_tune", "fewshot_evaluate"}


def _compile(tmp_path, name, overrides=()):
    path = compile_pipeline(name, config.load("paper", list(overrides)), tmp_path / f"{name}.yaml")
    text = path.read_text()
    spec, platform = yaml.safe_load_all(text)
    return text, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _stage(executor):
    """``exec-filter-guided-2`` -> ``filter_guided``: the stage of a (possibly repeated) task's executor."""
    return re.sub(r"-[0-9]+$", "", executor.removeprefix("exec-")).replace("-", "_")


@pytest.mark.parametrize(
    ("name", "overrides", "images"),
    [
        ("zeroshot", (), False),
        ("fewshot", (), False),
        ("fewshot", ("tune.trainable=all",), True),
        ("pretrain", (), False),
    ],
)
def test_dataloader_tasks_and_only_they_mount_a_memory_dev_shm(tmp_path, name, overrides, images):
    _, spec, executors = _compile(tmp_path, name, (*overrides, "cluster.shm_size=3Gi"))
    wanted = SHM_STAGES | (IMAGE_STAGES if images else set())
    every = {_stage(ex) for ex in spec["deploymentSpec"]["executors"]}
    assert every & wanted, name  # the pipeline has such tasks
    for executor in spec["deploymentSpec"]["executors"]:
        mounts = executors.get(executor, {}).get("emptyDirMounts")
        if _stage(executor) in wanted:
            assert mounts == [{"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "3Gi", "volumeName": "dshm"}]
        else:
            assert mounts is None, executor


def test_the_spec_does_not_grow_with_the_shard_count(tmp_path):
    # ParallelFor iterates over the shard list task's output: one task template, whatever the count.
    for count in ("10", "1000"):
        (tmp_path / count).mkdir()
    small, small_spec, _ = _compile(tmp_path / "10", "zeroshot", ("generate.num_shards=10",))
    large, large_spec, _ = _compile(tmp_path / "1000", "zeroshot", ("generate.num_shards=1000",))
    assert large_spec["deploymentSpec"] == small_spec["deploymentSpec"]
    assert small_spec["components"].keys() == large_spec["components"].keys()
    # What differs: the num_shards default (header comment and parameter) and the loop's parallelism limit.
    changed = [(a, b) for a, b in zip(small.splitlines(), large.splitlines(), strict=True) if a != b]
    assert len(changed) == 3
    assert all(a.replace("10", "1000", 1) == b for a, b in changed)
