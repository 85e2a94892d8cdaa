"""Generation speed switches: the byte-neutral one leaves tars identical, the others are recorded and named by digests."""

import json
from pathlib import Path

import pytest

from synk8s import config, cost, shards, storage
from synk8s.stages.synth import generate, prompts
from synk8s.stages.table import TABLE, default_run_id, stage_dir

pytestmark = pytest.mark.timeout(60)

BASE = [
    "models.generator=tiny-sd",  # the switches act on a diffusers pipeline
    "dataset.name=cifar10",
    "prompts.mode=B",
    "generate.images_per_class=2",
    "generate.samples_per_tar=8",
    "generate.batch_size=4",
    "generate.num_shards=1",
]


def _cfg(*extra: str) -> config.ExperimentConfig:
    return config.load("tiny", [*BASE, *extra])


def _tars(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("shard-*/*.tar"))}


@pytest.fixture(scope="module")
def prompts_out(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("prompts"))
    prompts.run(_cfg(), out=out)
    return out


def test_encoding_on_threads_writes_the_same_tar_bytes(prompts_out, tmp_path):
    inline, threaded = tmp_path / "inline", tmp_path / "threaded"
    generate.run(_cfg("generate.writer_threads=0"), prompts=prompts_out, out=str(inline))
    result = generate.run(_cfg("generate.writer_threads=3"), prompts=prompts_out, out=str(threaded))
    assert result.generated == 20 and result.batch_size == 4
    assert _tars(inline) == _tars(threaded)
    assert len(_tars(inline)) == 3  # 20 images, 8 per tar
    manifest = json.loads((threaded / "shard-0000-of-0001.json").read_text())
    assert manifest["batch_size"] == 4 and manifest["images_per_second"] > 0
    assert manifest["speed"]["attention"] == "sdpa" and manifest["speed"]["scheduler"] == "DDIMScheduler"
    # The cost record of the call carries the batch size and the rate once the model was set up.
    uri = cost.record(_cfg(), str(tmp_path), str(threaded), "generate", result, result.seconds, shard=0)
    record = storage.get_json(uri)
    assert record["batch_size"] == 4 and record["images_per_second_generating"] >= record["images_per_second"]
    summary = cost.run_cost(cost.read_records(str(tmp_path), {"generate": str(threaded)}), generated=20, gain=0.0)
    assert summary["generate_batch_sizes"] == [4] and summary["generate_images_per_second"] > 0


def test_batch_autotune_records_its_choice_and_a_rerun_reuses_it(prompts_out, tmp_path):
    cfg = _cfg("generate.batch_autotune=[1, 2, 64]", "generate.writer_threads=0")
    result = generate.run(cfg, prompts=prompts_out, out=str(tmp_path))
    tuned = json.loads((tmp_path / "shard-0000-of-0001" / generate.AUTOTUNE_FILE).read_text())
    # 64 exceeds the 8 images of a tar: skipped, never timed.
    assert tuned["images_per_second"]["64"] is None and tuned["batch_size"] in (1, 2)
    assert result.batch_size == tuned["batch_size"]
    manifest = json.loads((tmp_path / "shard-0000-of-0001.json").read_text())
    assert manifest["batch_size"] == tuned["batch_size"] and set(manifest["batch_autotune"]) == {"1", "2", "64"}
    # A damaged tar is made again with the recorded batch size: the bytes match the first run's.
    first = _tars(tmp_path)
    (tmp_path / "shard-0000-of-0001" / "00001.tar").write_bytes(b"broken")
    again = generate.run(cfg, prompts=prompts_out, out=str(tmp_path))
    assert again.generated == 8 and again.batch_size == tuned["batch_size"]
    assert _tars(tmp_path) == first
    collected = generate.collect(cfg, out=str(tmp_path))
    assert storage.get_json(collected.manifest_uri)["batch_sizes"] == [tuned["batch_size"]]


def test_a_scheduler_switch_is_used_planned_and_recorded(prompts_out, tmp_path):
    cfg = _cfg("generate.scheduler=dpm++", "generate.attention=plain", "generate.vae_batched=false")
    generate.run(cfg, prompts=prompts_out, out=str(tmp_path))
    plan = json.loads((tmp_path / "shard-0000-of-0001" / "plan.json").read_text())
    assert plan["switches"] == {"attention": "plain", "vae_batched": False, "scheduler": "dpm++"}
    collected = generate.collect(cfg, out=str(tmp_path))
    manifest = storage.get_json(collected.manifest_uri)
    assert manifest["sampler"]["scheduler"] == "DPMSolverMultistepScheduler"
    metas = [json.loads(dict(m)["json"]) for rec in shards.manifest_tars(str(tmp_path)) for _, m in shards.iter_tar(rec)]
    assert len(metas) == 20 and {m["scheduler"] for m in metas} == {"DPMSolverMultistepScheduler"}


def test_only_switches_that_can_move_pixels_rename_folders_and_only_when_changed():
    base = _cfg()
    # Setting a switch to today's behaviour, or changing the byte-neutral one, renames nothing.
    same = config.with_overrides(base, ["generate.writer_threads=7", "generate.attention=sdpa", "generate.compile=false"])
    assert same.digest() == base.digest() and default_run_id(same) == default_run_id(base)
    assert [stage_dir("r", n, same) for n in TABLE.names] == [stage_dir("r", n, base) for n in TABLE.names]
    for override in ("generate.attention=plain", "generate.channels_last=true", "generate.compile=true",
                     "generate.vae_batched=false", "generate.scheduler=dpm++", "generate.batch_autotune=[8, 16]"):
        moved = config.with_overrides(base, [override])
        assert default_run_id(moved) != default_run_id(base), override
    assert same.digest("generate") == base.digest("generate")


@pytest.mark.parametrize("name, generator", [("sd-turbo", "sd-turbo"), ("sdxl-turbo", "sdxl-turbo")])
def test_few_step_profile_files_pick_a_turbo_generator_without_guidance(name, generator):
    cfg = config.load(str(Path(__file__).resolve().parents[2] / "profiles" / f"{name}.yaml"))
    assert (cfg.profile, cfg.models.generator) == ("paper", generator)
    assert cfg.generate.steps in (1, 2, 3, 4) and cfg.generate.guidance == 0.0
    assert cfg.generate.batch_autotune and cfg.generate.resolution == 512
