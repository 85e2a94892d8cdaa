"""Real guidance (RG): strengths by shot count, per-image seeds and sources, resume after a kill."""

import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest

from synk8s import config, datasets, shards, storage
from synk8s.errors import MissingDataError, UsageError
from synk8s.seeds import derive_seed
from synk8s.stages.fewshot import guided, split
from synk8s.stages.synth import prompts


def _tar_samples(path: Path):
    """The samples of a tar read back whole, checked against its own hash and the count it holds."""
    info = storage.stat(str(path))
    count = sum(1 for name in tarfile.open(path).getnames() if name.endswith(".json"))
    return shards.iter_tar(shards.TarRecord(str(path), count, info.sha256))

pytestmark = pytest.mark.timeout(180)

PER_CLASS = 4  # RG images per class (one shot: four from it)
PER_TAR = 4


def _cfg(root, *extra):
    return config.load(
        "tiny",
        [
            "models.generator=tiny-sd",  # diffusers img2img; 2 steps need a strength of 0.5 or more
            "fewshot.guidance_strength={1: 0.5, 2: 0.5, 4: 0.5, 8: 0.5, 16: 0.5}",
            "dataset.name=cifar10",
            "prompts.mode=B",
            "generate.num_shards=1",
            f"generate.samples_per_tar={PER_TAR}",
            "generate.batch_size=2",
            f"fewshot.images_per_class={PER_CLASS}",
            f"dataset.root={root}/data/{{name}}",
            f"store.root={root}/store",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """Prompts and a 1-shot split of the cifar10 stand-in, and one uninterrupted RG run."""
    root = tmp_path_factory.mktemp("rg")
    cfg = _cfg(root)
    prompts.run(cfg, out=str(root / "prompts"))
    split.run(cfg, out=str(root / "split"), progress=False)
    result = guided.run(cfg, split=str(root / "split"), prompts=str(root / "prompts"), out=str(root / "reference"))
    assert (result.generated, result.tars) == (10 * PER_CLASS, 10 * PER_CLASS // PER_TAR)
    guided.collect(cfg, out=str(root / "reference"))
    return root


def test_strength_follows_the_shot_count():
    cfg = config.load("paper")
    assert [guided.strength_for(cfg, m) for m in (1, 2, 4, 8, 16)] == [0.50, 0.40, 0.35, 0.20, 0.15]
    assert [guided.per_shot(cfg, m) for m in (1, 2, 4, 8, 16)] == [800, 400, 200, 100, 50]
    assert guided.per_shot(config.with_overrides(cfg, ["fewshot.images_per_class=5"]), 2) == 3
    with pytest.raises(UsageError, match="no entry for 3 shots"):
        guided.strength_for(cfg, 3)
    tiny = config.load("tiny", ["models.generator=tiny-sd"])  # tiny-sd: 2 steps x 0.15 -> none
    with pytest.raises(UsageError, match="set generate.steps to at least 7"):
        guided.strength_for(tiny, 16)
    assert guided.strength_for(config.load("tiny"), 16) == 0.15  # the painter blends; it has no steps


def test_items_seed_each_image_by_class_real_image_and_sample(upstream):
    cfg = _cfg(upstream, "fewshot.images_per_class=5", "seed=3")
    shots = split.load_split(str(upstream / "split"))
    records = prompts.read_prompts(str(upstream / "prompts"))
    items = guided.work_items(cfg, shots, records, datasets.get("cifar10").classes)
    assert len(items) == 10 * 5 and Counter(it.class_index for it in items) == {c: 5 for c in range(10)}
    for it in items:
        assert it.seed == derive_seed(3, "guided", it.class_index, it.source.sample_id, it.sample_index)
        assert it.source.label == it.class_index
    assert len({it.seed for it in items}) == len(items)


def test_images_name_their_real_source_and_strength(upstream):
    shots = {s.index: s for s in split.load_split(str(upstream / "split")).entries}
    seen = []
    for key, image, meta in shards.iter_samples(str(upstream / "reference")):
        source = shots[meta["source"]["index"]]
        assert meta["source"] == {
            "index": source.index,
            "sample_id": source.sample_id,
            "pixel_sha256": source.pixel_sha256,
        }
        assert meta["class_index"] == source.label and meta["strength"] == 0.5 and image.size == (32, 32)
        assert key == f"c{source.label:04d}-r{source.index:07d}-s{meta['sample_index']:04d}"
        seen.append(key)
    assert len(seen) == len(set(seen)) == 10 * PER_CLASS
    assert storage.get_json(str(upstream / "reference" / "manifest.json"))["stage"] == "guided"


def test_rerun_with_another_strength_into_the_same_folder_is_refused(upstream):
    cfg = _cfg(upstream, "fewshot.guidance_strength={1: 0.9}")
    with pytest.raises(UsageError, match="made with other settings"):
        guided.run(
            cfg, split=str(upstream / "split"), prompts=str(upstream / "prompts"), out=str(upstream / "reference")
        )


_CHILD = """
import sys
from synk8s.config import ExperimentConfig
from synk8s.stages.fewshot import guided
cfg = ExperimentConfig.model_validate_json(sys.argv[1])
guided.run(cfg, split=sys.argv[2], prompts=sys.argv[3], out=sys.argv[4])
"""


def _tar_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("shard-*/*.tar"))}


def test_killed_run_resumes_without_losing_or_doubling_images(upstream, tmp_path):
    cfg, out = _cfg(upstream), tmp_path / "killed"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            cfg.model_dump_json(),
            str(upstream / "split"),
            str(upstream / "prompts"),
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    shard_dir = out / "shard-0000-of-0001"
    deadline = time.monotonic() + 150
    while not list(shard_dir.glob("*.tar")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    written = sorted(shard_dir.glob("*.tar"))
    assert 1 <= len(written) < 10, "the child was not killed part-way"
    assert all(len(list(_tar_samples(p))) == PER_TAR for p in written)  # every visible tar is complete

    result = guided.run(cfg, split=str(upstream / "split"), prompts=str(upstream / "prompts"), out=str(out))
    assert result.skipped_tars == len(written) and result.generated == 10 * PER_CLASS - PER_TAR * len(written)
    guided.collect(cfg, out=str(out))
    keys = [key for tar in sorted(shard_dir.glob("*.tar")) for key, _members in _tar_samples(tar)]
    assert len(keys) == len(set(keys)) == 10 * PER_CLASS
    assert _tar_bytes(out) == _tar_bytes(upstream / "reference")


def test_rg_prompts_default_to_the_class_name_in_the_first_template(tmp_path):
    cfg = config.load("tiny", ["dataset.name=eurosat"])
    classes = datasets.get("eurosat").classes
    assert cfg.fewshot.rg_prompts == "template"
    records = guided.rg_prompts(cfg, str(tmp_path / "never-read"), classes)
    assert [r["prompt"] for r in records][:2] == [
        "a centered satellite photo of annual crop land.",
        "a centered satellite photo of forest.",
    ]
    assert [r["class_index"] for r in records] == list(range(len(classes)))
    le = config.with_overrides(cfg, ["fewshot.rg_prompts=le"])
    with pytest.raises(MissingDataError):  # le reads the prompts stage's output
        guided.rg_prompts(le, str(tmp_path / "never-read"), classes)


def test_rg_filter_off_keeps_every_rg_image_with_its_teacher_logits(upstream, tmp_path):
    from synk8s.stages.zeroshot.tune import load_selection

    kept = {}
    for switch in (False, True):
        cfg = _cfg(upstream, f"fewshot.rg_filter={str(switch).lower()}", "filter.keep_per_class=1")
        result = guided.filter_guided(cfg, images=str(upstream / "reference"), out=str(tmp_path / str(switch)), progress=False)
        selection = load_selection(str(tmp_path / str(switch)))
        assert len(selection["teacher_logits"]) == len(selection["kept"]) == result.kept
        kept[switch] = result.kept
    assert kept == {False: 10 * PER_CLASS, True: 10}
