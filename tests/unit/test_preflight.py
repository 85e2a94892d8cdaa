"""Preflight: missing weights or data stop a run at once, in one line naming the command that fixes it."""

import json

import pytest

from synk8s import config, preflight
from synk8s.errors import MissingDataError, UsageError

pytestmark = pytest.mark.timeout(30)

FIELDS = ("dataset", "models.clip", "models.generator", "models.le")


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache
    preflight.online.cache_clear()
    yield
    preflight.online.cache_clear()


def test_tiny_models_and_stand_in_data_need_nothing():
    preflight.check(config.load("tiny"), FIELDS, local=True)


def test_paper_weights_without_cache_or_hub_name_models_pull():
    with pytest.raises(MissingDataError) as error:
        preflight.check(config.load("paper"), FIELDS, local=True)
    message = str(error.value)
    assert "\n" not in message and "synk8s models pull sd15" in message and "models.cache" in message


def test_a_filled_cache_passes_and_then_the_data_is_checked(tmp_path):
    cache = tmp_path / "cache"
    cfg = config.load("paper", [f"models.cache={cache}", f"dataset.root={tmp_path}/data/{{name}}"])
    for need in preflight.model_needs(cfg, FIELDS):
        (cache / need.entry).parent.mkdir(parents=True, exist_ok=True)
        if need.entry.endswith(".pt"):
            (cache / need.entry).write_bytes(b"weights")
        else:
            (cache / need.entry).mkdir()
            (cache / need.entry / "model_index.json").write_text("{}")
    preflight.check_models(cfg, FIELDS)  # every model found in the cache
    with pytest.raises(MissingDataError, match="synk8s datasets download cifar100"):
        preflight.check(cfg, FIELDS, local=True)
    preflight.check(cfg, FIELDS, local=False)  # a cluster's pods fetch a local root themselves


def test_only_the_models_a_pipeline_reads_are_checked():
    cfg = config.load("paper")
    assert [n.field for n in preflight.model_needs(cfg, ("models.clip",))] == ["models.clip"]
    assert {n.field for n in preflight.model_needs(cfg, ("models",))} == {"models.clip", "models.generator", "models.le"}


# ------------------------------------------------------------------ ImageNet backbone weights, cluster runs

PAPER_MODELS = ("models.clip", "models.generator", "models.le")


def _pretrain_stages(overrides):
    """Each stage of the pretrain pipeline with its task's config (the finetune variants included)."""
    from synk8s.pipelines import arguments, build, prepare
    from synk8s.pipelines.replay import stage_configs

    cfg = prepare("pretrain", config.load("tiny", overrides))
    return cfg, [_start(stage, task) for stage, task in stage_configs(build("pretrain", cfg), arguments("pretrain", cfg))]


def _start(stage, cfg):
    """A stage with its task's config and its row's ImageNet start, as submit hands them to preflight."""
    from synk8s.stages.table import TABLE

    return stage, cfg, TABLE.get(stage).imagenet


def test_imagenet_pretraining_needs_the_backbone_in_the_model_cache(tmp_path):
    cfg, stages = _pretrain_stages(["models.backbone=resnet50", "pretrain.init=imagenet"])
    with pytest.raises(MissingDataError) as error:
        preflight.check(cfg, (), local=True, stages=stages)
    message = str(error.value)
    assert "\n" not in message and "pretrain.init=imagenet" in message
    assert "`synk8s models pull resnet50 --cache DIR_OR_S3_PREFIX`" in message
    cache = tmp_path / "cache"
    (cache / "backbones").mkdir(parents=True)
    (cache / "backbones" / "resnet50-imagenet1k.pth").write_bytes(b"weights")
    cached = cfg.model_copy(update={"models": cfg.models.model_copy(update={"cache": str(cache)})})
    checked = preflight.check(cached, (), local=False, stages=stages)
    assert checked == ["resnet50 ImageNet-1K weights for pretrain (pretrain.init=imagenet) in the model cache"]


def test_the_pipeline_variants_decide_which_stage_needs_imagenet_weights():
    # finetune.init=imagenet in the config: the pipeline's finetune tasks set pretrained and scratch, so no need.
    cfg, stages = _pretrain_stages(["models.backbone=resnet50", "pretrain.finetune.init=imagenet"])
    assert sorted(cfg.pretrain.finetune.init for stage, cfg, _ in stages if stage == "finetune") == ["pretrained", "scratch"]
    assert preflight.backbone_needs(stages) == []
    assert [n.field for n in preflight.backbone_needs([_start("finetune", cfg)])] == ["pretrain.finetune.init"]


def test_a_tiny_backbone_with_imagenet_weights_is_refused():
    cfg, stages = _pretrain_stages(["pretrain.init=imagenet"])
    with pytest.raises(UsageError, match="models.backbone=tiny-resnet has no ImageNet weights; set pretrain.init="):
        preflight.check(cfg, (), local=True, stages=stages)


def test_detection_from_imagenet_without_a_cache_uses_torchvision_here_and_the_pods_there(tmp_path, monkeypatch):
    cfg = config.load("tiny", ["models.backbone=resnet50", "detect.init=imagenet"])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingDataError, match=r"expected torchvision/resnet50-0676ba61.pth .*models pull resnet50"):
        preflight.check_backbones(cfg, [_start("detect", cfg)], local=True)
    preflight.online.cache_clear()
    (checked,) = preflight.check_backbones(cfg, [_start("detect", cfg)], local=False)
    assert "cluster's pods (not tested from this machine)" in checked
    assert preflight.online.cache_info().currsize == 0  # no host was tried from here
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth").write_bytes(b"weights")
    assert "torch cache" in preflight.check_backbones(cfg, [_start("detect", cfg)], local=True)[0]


def test_a_cluster_run_leaves_the_hub_to_its_pods_and_says_so():
    preflight.online.cache_clear()
    checked = preflight.check(config.load("paper"), PAPER_MODELS, local=False)
    assert len(checked) == 3 and all("cluster's pods (not tested from this machine)" in c for c in checked)
    assert preflight.online.cache_info().currsize == 0
    assert sorted(preflight.check(config.load("tiny"), FIELDS, local=True)) == [
        "cifar100 stand-in data (drawn)",
        "models.clip=tiny-clip built from config",
        "models.generator=standin-drawn built from config",
        "models.le=tiny-t5 built from config",
    ]


def test_a_set_cache_without_the_model_fails_even_for_a_cluster(tmp_path):
    cfg = config.load("paper", [f"models.cache={tmp_path}/cache"])
    with pytest.raises(MissingDataError, match=r"not in the model cache .*synk8s models pull rn50 --cache"):
        preflight.check(cfg, ("models.clip",), local=False)


def test_the_detection_file_is_the_one_torchvision_downloads():
    from torchvision.models import ResNet50_Weights

    from synk8s.models.cache import DETECTION_RESNET50_FILE

    assert ResNet50_Weights.IMAGENET1K_V1.url.endswith("/" + DETECTION_RESNET50_FILE)


def test_models_pull_knows_backbones_and_refuses_a_tiny_one(tmp_path):
    from typer.testing import CliRunner

    from synk8s.cli.main import app

    result = CliRunner().invoke(app, ["models", "pull", "tiny-resnet", "--cache", str(tmp_path / "m")])
    assert result.exit_code == 2 and "no ImageNet weights" in result.output and not (tmp_path / "m").exists()
    (tmp_path / "m" / "backbones").mkdir(parents=True)
    (tmp_path / "m" / "backbones" / "resnet50-imagenet1k.pth").write_bytes(b"weights")
    listed = CliRunner().invoke(app, ["models", "list", "--cache", str(tmp_path / "m"), "--output", "json"])
    rows = {row["name"]: row for row in json.loads(listed.stdout)["models"]}
    assert rows["resnet50"]["kind"] == "backbone" and rows["resnet50"]["cached"] and "tiny-resnet" not in rows
