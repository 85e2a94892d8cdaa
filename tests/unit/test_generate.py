import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synk8s import config, datasets, shards, storage
from synk8s.errors import MissingDataError, UsageError
from synk8s.seeds import derive_seed
from synk8s.stages.synth import generate, prompts, shard_writer

pytestmark = pytest.mark.timeout(180)

IMAGES_PER_CLASS = 8
PER_TAR = 4
GEN_OVERRIDES = [
    "models.generator=tiny-sd",  # the diffusers code path (the tiny profile paints with standin-drawn)
    "dataset.name=cifar10",
    "prompts.mode=LE",
    "prompts.sentences_per_class=3",
    f"generate.images_per_class={IMAGES_PER_CLASS}",
    f"generate.samples_per_tar={PER_TAR}",
    "generate.batch_size=3",
    "generate.num_shards=1",
]
META_FIELDS = {
    "class_index", "class_name", "prompt", "prompt_index", "sample_index", "seed",
    "generator", "revision", "steps", "guidance", "resolution", "scheduler", "dtype",
}  # fmt: skip


def _cfg(*extra: str) -> config.ExperimentConfig:
    return config.load("tiny", [*GEN_OVERRIDES, *extra])


def _tar_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("shard-*/*.tar"))}


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(shards.decode_image(png), dtype=np.int16)


def _images_by_key(out: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for record in shards.manifest_tars(str(out)):
        for key, members in shards.iter_tar(record):
            assert key not in found, f"{key} appears twice"
            found[key] = dict(members)["png"]
    return found


@pytest.fixture(scope="module")
def prompts_out(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("prompts"))
    prompts.run(_cfg(), out=out)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, prompts_out) -> Path:
    """One uninterrupted single-shard run, collected."""
    out = tmp_path_factory.mktemp("images")
    cfg = _cfg()
    result = generate.run(cfg, prompts=prompts_out, out=str(out))
    assert result.generated == result.images == 10 * IMAGES_PER_CLASS and result.skipped_tars == 0
    generate.collect(cfg, out=str(out))
    return out


# ----------------------------------------------------------------------------- work items and shards


def _records(prompt_counts: list[int]) -> list[dict]:
    return [
        {"class_index": c, "class_name": f"k{c}", "prompt_index": p, "prompt": f"k{c} #{p}", "source": "B"}
        for c, n in enumerate(prompt_counts)
        for p in range(n)
    ]


def test_items_cycle_prompts_and_seed_by_class_prompt_and_sample():
    cfg = config.load("tiny", ["generate.images_per_class=5", "seed=7"])
    items = generate.work_items(cfg, _records([2, 3]), ["k0", "k1"])
    assert [(it.class_index, it.prompt_index, it.sample_index) for it in items] == [
        (0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (0, 0, 2),
        (1, 0, 0), (1, 1, 0), (1, 2, 0), (1, 0, 1), (1, 1, 1),
    ]  # fmt: skip
    assert items[3].seed == derive_seed(7, 0, 1, 1) and items[3].prompt == "k0 #1"
    assert items[3].key == "c0000-p00001-s0001"
    assert len({it.seed for it in items}) == len(items)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7, 13])
def test_shards_are_balanced_disjoint_and_cover_every_item(num_shards):
    cfg = config.load("tiny", ["generate.images_per_class=4"])
    items = generate.work_items(cfg, _records([1, 2, 3]), ["k0", "k1", "k2"])
    parts = [generate.shard_items(items, i, num_shards) for i in range(num_shards)]
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    keys = [it.key for p in parts for it in p]
    assert len(keys) == len(set(keys)) and sorted(keys) == sorted(it.key for it in items)


def test_bad_inputs_are_refused_with_a_fix():
    cfg = config.load("tiny", ["generate.images_per_class=2"])
    with pytest.raises(MissingDataError, match="has no prompts"):
        generate.work_items(cfg, _records([1, 0]), ["k0", "k1"])
    with pytest.raises(UsageError, match="does not match dataset"):
        generate.work_items(cfg, _records([1, 1]), ["k0", "other"])
    with pytest.raises(UsageError, match=r"shard must be in \[0, 1\]"):
        generate.shard_items([], 2, 2)


def test_missing_prompts_name_the_stage_to_run(tmp_path):
    with pytest.raises(MissingDataError, match="synk8s stage prompts"):
        generate.run(_cfg(), prompts=str(tmp_path / "none"), out=str(tmp_path / "images"))


# ----------------------------------------------------------------------------- tars


def test_tars_have_fixed_headers_and_group_members_by_key(tmp_path):
    samples = [("k1", [("png", b"\x89PNG-a"), ("json", b"{}")]), ("k2", [("png", b"b"), ("json", b"[]")])]
    buffers = []
    for _ in range(2):
        buf = io.BytesIO()
        assert shards.write_tar(buf, samples) == 2
        buffers.append(buf.getvalue())
    assert buffers[0] == buffers[1]
    with tarfile.open(fileobj=io.BytesIO(buffers[0])) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["k1.png", "k1.json", "k2.png", "k2.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    info = storage.put_bytes(str(tmp_path / "x.tar"), buffers[0])
    assert list(shards.iter_tar(shards.TarRecord(info.uri, 2, info.sha256))) == samples


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_image_encoding_is_deterministic(fmt):
    image = Image.radial_gradient("L").convert("RGB").resize((48, 48))
    data = shards.encode_image(image, fmt)
    assert data == shards.encode_image(image.copy(), fmt)
    assert b"tIME" not in data and b"Exif" not in data
    decoded = shards.decode_image(data)
    assert decoded.size == (48, 48) and decoded.mode == "RGB"


# ----------------------------------------------------------------------------- generation


def test_generation_is_byte_reproducible(reference, prompts_out, tmp_path):
    again = tmp_path / "again"
    first = generate.run(_cfg(), prompts=prompts_out, out=str(again))
    expected = _tar_bytes(reference)
    assert len(expected) == 10 * IMAGES_PER_CLASS // PER_TAR
    assert _tar_bytes(again) == expected
    # A rerun of a finished shard (e.g. a retried task) changes nothing.
    shard_manifest = storage.get_bytes(first.manifest_uri)
    rerun = generate.run(_cfg(), prompts=prompts_out, out=str(again))
    assert (rerun.generated, rerun.skipped_tars) == (0, rerun.tars)
    assert storage.get_bytes(first.manifest_uri) == shard_manifest


def test_collected_samples_carry_their_provenance(reference, prompts_out):
    cfg = _cfg()
    records = {(r["class_index"], r["prompt_index"]): r["prompt"] for r in prompts.read_prompts(prompts_out)}
    classes = datasets.get("cifar10").classes
    seen = []
    for key, image, meta in shards.iter_samples(str(reference)):
        seen.append(key)
        assert set(meta) == META_FIELDS
        c, p, s = meta["class_index"], meta["prompt_index"], meta["sample_index"]
        assert key == shards.sample_key(c, p, s)
        assert meta["class_name"] == classes[c] and meta["prompt"] == records[(c, p)]
        assert meta["seed"] == derive_seed(cfg.seed, c, p, s)
        assert (meta["generator"], meta["revision"]) == ("synk8s/tiny-sd", "random-seed-0")
        assert (meta["steps"], meta["guidance"], meta["resolution"]) == (2, 3.0, 32)
        assert (meta["scheduler"], meta["dtype"]) == ("DDIMScheduler", "float32")
        assert image.size == (32, 32)
    assert len(seen) == len(set(seen)) == 10 * IMAGES_PER_CLASS
    assert any(k.endswith("-s0002") for k in seen)  # 8 images over 3 prompts reach sample index 2

    manifest = storage.get_json(str(reference / "manifest.json"))
    assert manifest["stage"] == "generate"
    assert manifest["counts"] == {"images": 80, "tars": 20, "classes": 10, "shards": 1}
    assert manifest["per_class"] == [IMAGES_PER_CLASS] * 10
    assert manifest["generator"] == {"model_id": "synk8s/tiny-sd", "revision": "random-seed-0"}
    assert manifest["sampler"]["scheduler"] == "DDIMScheduler" and manifest["sampler"]["steps"] == 2
    assert manifest["devices"] == ["cpu"] and manifest["seconds_per_image"] > 0
    for tar in manifest["tars"]:
        assert storage.stat(tar["uri"]).sha256 == tar["sha256"] and tar["count"] == PER_TAR


def test_shard_count_does_not_change_any_image(reference, prompts_out, tmp_path):
    cfg = _cfg("generate.num_shards=3", "generate.batch_size=2")
    out = tmp_path / "three"
    results = [generate.run(cfg, prompts=prompts_out, out=str(out), shard=i) for i in range(3)]
    assert [r.images for r in results] == [27, 27, 26]
    total = generate.collect(cfg, out=str(out))
    assert total.images == 80 and total.tars == 21
    mine, theirs = _images_by_key(out), _images_by_key(reference)
    assert mine.keys() == theirs.keys()
    # Same seeds give the same images; other batch shapes may move a pixel by a rounding step.
    diffs = [np.abs(_pixels(mine[k]) - _pixels(theirs[k])) for k in sorted(mine)]
    assert max(int(d.max()) for d in diffs) <= 2
    assert float(np.mean([d.mean() for d in diffs])) < 1e-3


def test_rerun_with_other_settings_into_the_same_folder_is_refused(reference, prompts_out):
    with pytest.raises(UsageError, match="made with other settings"):
        generate.run(_cfg("generate.steps=3"), prompts=prompts_out, out=str(reference))


def test_collect_names_the_unfinished_shards(reference):
    with pytest.raises(MissingDataError, match="shards 0, 1 of 2"):
        generate.collect(_cfg(), out=str(reference), num_shards=2)


_CHILD = """
import sys
from synk8s.config import ExperimentConfig
from synk8s.stages.synth import generate
cfg = ExperimentConfig.model_validate_json(sys.argv[1])
generate.run(cfg, prompts=sys.argv[2], out=sys.argv[3])
"""


def test_killed_run_resumes_without_losing_or_doubling_images(reference, prompts_out, tmp_path):
    out = tmp_path / "killed"
    cfg = _cfg()  # the reference's batch size too: tar bytes depend on it through float rounding
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, cfg.model_dump_json(), prompts_out, str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    shard_dir = out / shard_writer.shard_name(0, 1)
    deadline = time.monotonic() + 120
    while not list(shard_dir.glob("*.tar")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    written = [Path(o.uri) for o in storage.list(str(shard_dir)) if o.uri.endswith(".tar")]
    assert 1 <= len(written) < 20, "the child was not killed part-way"
    for path in written:  # every visible tar is complete
        assert shards.tar_problem(str(path), PER_TAR, None) is None

    result = generate.run(cfg, prompts=prompts_out, out=str(out))
    assert result.skipped_tars == len(written) and result.generated == 80 - PER_TAR * len(written)
    generate.collect(cfg, out=str(out))
    assert _tar_bytes(out) == _tar_bytes(reference)
    keys = [key for key, _image, _meta in shards.iter_samples(str(out))]
    assert len(keys) == len(set(keys)) == 80


def test_stages_write_and_stream_shards_on_s3(s3_env):
    cfg = config.load("tiny", ["dataset.name=cifar10", "prompts.mode=B", "generate.images_per_class=1"])
    prompts_out, images_out = f"{s3_env}/run/prompts", f"{s3_env}/run/images"
    prompts.run(cfg, out=prompts_out)
    for shard in range(2):
        generate.run(cfg, prompts=prompts_out, out=images_out, shard=shard)
    generate.collect(cfg, out=images_out)
    samples = list(shards.iter_samples(images_out))
    assert [meta["class_index"] for _key, _image, meta in samples] == [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]
    assert all(image.size == (32, 32) for _key, image, _meta in samples)
    tars = [o.uri for o in storage.list(images_out) if o.uri.endswith(".tar")]
    assert tars == [t.uri for t in shards.manifest_tars(images_out)]
