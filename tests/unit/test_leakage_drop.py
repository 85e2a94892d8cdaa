"""With ``leakage.drop`` on, tune reads the leakage stage through the table and trains without the flagged images."""

import pickle

import numpy as np
import pytest

from synk8s import config, storage
from synk8s.realdata import ensure_dataset
from synk8s.shards import iter_samples
from synk8s.stages.table import TABLE
from synk8s.stages.zeroshot.leakage import load_flagged

pytestmark = pytest.mark.timeout(120)

PLANTED_TEST_ROW = 7


def _plant(data_root: str, image) -> None:
    """Replace test image PLANTED_TEST_ROW of the drawn CIFAR-10 stand-in with ``image`` (32 x 32)."""
    from pathlib import Path

    (path,) = Path(data_root).rglob("test_batch")
    batch = pickle.loads(path.read_bytes())
    pixels = np.asarray(image.convert("RGB").resize((32, 32)))  # (32, 32, 3)
    batch["data"][PLANTED_TEST_ROW] = pixels.transpose(2, 0, 1).reshape(-1)
    path.write_bytes(pickle.dumps(batch, protocol=2))


def _trained_rows(tune_out: str) -> set[int]:
    split = storage.get_json(f"{tune_out}/split.json")  # tune's own record of its samples
    return set(split["train"]) | set(split["val"])


def test_a_planted_duplicate_is_flagged_and_left_out_of_tuning(tmp_path):
    cfg = config.load(
        "tiny",
        [
            "dataset.name=cifar10",
            "prompts.mode=B",
            "generate.images_per_class=2",
            "generate.num_shards=1",
            "filter.enabled=false",  # every synthetic image reaches tune
            "leakage.clip_threshold=1.0",  # random-weight CLIP: only the hash test can tell a copy
            "tune.epochs=1",
            f"store.root={tmp_path}/store",
            f"dataset.root={tmp_path}/data",
            "leakage.drop=true",
        ],
    )
    run = TABLE.run_dir(cfg)
    TABLE.execute("prompts", cfg, run)
    TABLE.execute("generate", cfg, run, shard=0)
    images = TABLE.execute("generate", cfg, run, collect=True).out
    planted_row = 3
    planted = next(image for row, (_, image, _) in enumerate(iter_samples(images)) if row == planted_row)
    _plant(ensure_dataset(cfg), planted)
    for stage in ("filter", "test_features", "features", "leakage"):
        TABLE.execute(stage, cfg, run)

    flagged = load_flagged(TABLE.stage_dir(run, "leakage", cfg))
    assert planted_row in flagged

    on = TABLE.execute("tune", cfg, run)
    manifest = storage.get_json(f"{on.out}/manifest.json")
    assert manifest["inputs"]["leakage"] == TABLE.stage_dir(run, "leakage", cfg)
    assert manifest["leaked_dropped"] == len(flagged)
    assert planted_row not in _trained_rows(on.out)

    off_cfg = config.with_overrides(cfg, ["leakage.drop=false"])
    off = TABLE.execute("tune", off_cfg, run)
    assert off.out != on.out
    assert "leakage" not in storage.get_json(f"{off.out}/manifest.json")["inputs"]
    assert _trained_rows(off.out) == set(range(20))
    assert _trained_rows(on.out) == set(range(20)) - set(flagged)
