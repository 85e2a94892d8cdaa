"""A run's resolved config stored once by its SHA-256, and read back only when it still has those bytes."""

import os
from pathlib import Path

import pytest

from synk8s import config, storage
from synk8s.errors import IntegrityError, MissingDataError
from synk8s.runs import config_uri, put_config, read_config
from synk8s.stages.table import run_dir

pytestmark = pytest.mark.timeout(60)


def _run(root):
    cfg = config.load("tiny", [f"store.root={root}"])
    return cfg, run_dir(cfg)


def test_equal_configs_share_one_object_and_others_get_their_own(tmp_path):
    cfg, run = _run(tmp_path)
    sha256 = put_config(run, cfg.model_dump_json())
    again = put_config(run, cfg.model_dump_json())
    other = put_config(run, cfg.model_copy(update={"seed": cfg.seed + 1}).model_dump_json())
    assert again == sha256 != other
    assert config.ExperimentConfig.model_validate_json(read_config(run, sha256)) == cfg
    listed = [info.uri for info in storage.list(f"{run}/configs")]
    assert listed == sorted(f"{run}/configs/{s}.json" for s in (sha256, other))


def test_a_config_flipped_in_place_is_refused(tmp_path):
    cfg, run = _run(tmp_path)
    path = Path(config_uri(run, put_config(run, cfg.model_dump_json())))
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # size, mtime and inode kept
    with pytest.raises(IntegrityError, match="configs/.* is damaged"):
        read_config(run, path.stem)


def test_a_missing_config_names_the_task_that_writes_it(tmp_path):
    cfg, run = _run(tmp_path)
    sha256 = put_config(run, cfg.model_dump_json())
    Path(config_uri(run, sha256)).unlink()
    with pytest.raises(MissingDataError, match="the shard list task writes it; rerun the pipeline with caching off"):
        read_config(run, sha256)


def test_on_s3_a_config_replaced_under_its_name_is_refused(s3_env):
    cfg, run = _run(f"{s3_env}/store")
    sha256 = put_config(run, cfg.model_dump_json())
    uri = config_uri(run, sha256)
    assert uri.startswith(f"{s3_env}/store/runs/") and storage.stat(uri).sha256 == sha256
    assert read_config(run, sha256) == cfg.model_dump_json()
    storage.put_bytes(uri, cfg.model_copy(update={"seed": 99}).model_dump_json().encode())  # metadata matches it
    with pytest.raises(IntegrityError, match="not the .* recorded"):
        read_config(run, sha256)
