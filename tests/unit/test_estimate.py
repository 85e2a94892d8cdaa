"""The run estimate: hand-computed numbers, how it scales, and the commands that print it."""

import json

import pytest
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.errors import UsageError
from synk8s.estimate import GPUS, estimate, generation_tflop

SMALL = [
    "dataset.name=cifar10", "models.generator=sd15", "generate.steps=10", "generate.guidance=2.0",
    "generate.resolution=256", "generate.image_format=jpg", "generate.images_per_class=100",
    "generate.num_shards=2", "generate.samples_per_tar=200",
]  # fmt: skip


def _small(*more):
    return config.load("tiny", [*SMALL, *more])


def _stage(est, name):
    return next(s for s in est.stages if s.stage == name)


def test_generation_of_a_small_config_by_hand():
    est = estimate(_small(), "zeroshot", gpu_type_name="h100", gpus=2)
    gen = _stage(est, "generate")
    per_image = (0.8 * 10 * 2 + 2.7) * (256 / 512) ** 2  # UNet x steps x CFG + VAE decode, at 256 px
    assert generation_tflop(_small()) == pytest.approx(per_image)
    hours = 1000 * per_image / (989.0 * 0.4) / 3600
    assert gen.images == 1000 and gen.tasks == 2 and gen.gpu
    assert gen.gpu_hours == pytest.approx(hours, abs=1e-6)
    assert gen.wall_hours == pytest.approx(hours / 2, abs=1e-6)  # two shards on two GPUs
    assert gen.bytes == 1000 * int(0.25 * 256 * 256)
    assert gen.objects == 2 * 3 + 1 + 2 * 2  # 3 tars of 200 per shard of 500, the collect manifest, 2 small files each
    assert est.total.images == 1000 and est.to_dict()["basis"] == "estimate"
    assert any("runs on the CPU" in note for note in est.notes)


def test_gpu_hours_scale_with_images_and_steps_and_halve_without_guidance():
    def gen_tflop(*more):
        # Generation TFLOP; the VAE decode (vae below) scales with neither steps nor guidance.
        cfg = _small(*more)
        return _stage(estimate(cfg, "zeroshot"), "generate").tflop

    base = gen_tflop()
    assert gen_tflop("generate.images_per_class=300") == pytest.approx(3 * base, rel=1e-3)
    vae = 1000 * 2.7 / 4
    assert gen_tflop("generate.steps=30") - vae == pytest.approx(3 * (base - vae), rel=1e-3)
    assert gen_tflop("generate.guidance=0.0") - vae == pytest.approx((base - vae) / 2, rel=1e-3)


def test_every_pipeline_and_gpu_type_is_estimated():
    cfg = config.load("paper")
    for pipeline in ("zeroshot", "fewshot", "fewshot_sweep", "pretrain"):
        totals = {name: estimate(cfg, pipeline, gpu_type_name=name).total.gpu_hours for name in GPUS}
        assert totals["a100"] > totals["h100"] > 0
    sweep = estimate(cfg, "fewshot_sweep")
    assert [s.stage for s in sweep.stages if s.stage.startswith("guided")] == [f"guided M={m}" for m in (1, 2, 4, 8, 16)]
    with pytest.raises(UsageError, match="unknown GPU type"):
        estimate(cfg, "zeroshot", gpu_type_name="tpu")


def test_plan_prints_the_table_and_json_and_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plan", "zeroshot", "--profile", "paper", "--gpus", "4", "--gpu-type", "a100"])
    assert result.exit_code == 0, result.output
    assert "estimate: zeroshot on 4 x NVIDIA A100" in result.stdout and "total" in result.stdout
    assert "GPU-hours" in result.stdout and "estimates" in result.stdout
    result = CliRunner().invoke(app, ["plan", "pretrain", "--profile", "paper", "--method", "moco", "-o", "json"])
    body = json.loads(result.stdout)
    assert body["pipeline"] == "pretrain" and body["gpus"] == 8 and body["total"]["gpu_hours"] > 0
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_dry_run_prints_the_estimate_after_the_tasks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["submit", "zeroshot", "--profile", "tiny", "--dataset", "cifar10", "--local", "--dry-run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.index("tasks:") < result.stdout.index("estimate: zeroshot on 2 x NVIDIA H100")
    result = CliRunner().invoke(app, [*args, "--output", "json", "--gpu-type", "l4"])
    assert json.loads(result.stdout)["gpu_type"] == "l4"
    assert list(tmp_path.iterdir()) == []
