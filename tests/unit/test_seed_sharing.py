"""Several seeds over the tiny stages: the seed-free test features are made once and shared, the rest per seed."""

from pathlib import Path

import pytest

from synk8s import config, storage
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(120)


def _run_seed(tmp_path: Path, seed: int) -> str:
    """prompts -> generate -> filter -> test_features -> features for one seed, as one pipeline run does."""
    cfg = config.load(
        "tiny",
        [
            "dataset.name=cifar10",
            "prompts.mode=B",
            "generate.images_per_class=1",
            "generate.num_shards=1",
            f"store.root={tmp_path}/store",
            f"dataset.root={tmp_path}/data",
            f"seed={seed}",
        ],
    )
    run = TABLE.run_dir(cfg)
    TABLE.execute("prompts", cfg, run)
    TABLE.execute("generate", cfg, run, shard=0)
    TABLE.execute("generate", cfg, run, collect=True)
    for stage in ("filter", "test_features", "features"):
        TABLE.execute(stage, cfg, run, progress=False)
    return run


def test_three_seeds_encode_the_test_set_once(tmp_path):
    runs = [_run_seed(tmp_path, seed) for seed in (0, 1, 2)]
    store = tmp_path / "store"
    assert len({Path(r).name for r in runs}) == 3

    # One folder of the seed-free stage in the store, none inside the runs; one features folder per seed.
    shared = list((store / "shared" / "cifar10").glob("test-features-*"))
    assert len(shared) == 1
    assert not list((store / "runs").glob("*/test-features*"))
    assert len(list((store / "runs").glob("*/features-*/manifest.json"))) == 3

    # It ran once: its manifest still carries the first seed, and only that run recorded its cost.
    assert storage.get_json(str(shared[0] / "manifest.json"))["seed"] == 0
    costs = sorted(p.parent.parent.name for p in (store / "runs").glob("*/cost/test-features-*.json"))
    assert costs == [Path(runs[0]).name]
    assert len(list((store / "runs").glob("*/cost/features-*.json"))) == 3

    # Every seed's features list the same test features and the same text head bytes.
    listings = [storage.get_json(str(p)) for p in sorted((store / "runs").glob("*/features-*/features.json"))]
    assert len({listing["test"] for listing in listings}) == 1
    assert len({listing["synthetic"] for listing in listings}) == 3
    heads = {p.read_bytes() for p in (store / "runs").glob("*/features-*/text_head.safetensors")}
    assert heads == {(shared[0] / "text_head.safetensors").read_bytes()}
