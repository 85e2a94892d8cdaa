"""``submit --dry-run``, preflight before a run, one default profile, ``--output json``."""

import json

import pytest
from typer.testing import CliRunner

from synk8s import preflight
from synk8s.cli.main import app

pytestmark = pytest.mark.timeout(60)


def _invoke(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), env=env or None)


def test_dry_run_prints_parameters_and_gpu_tasks_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("submit", "zeroshot", "--dataset", "cifar10", "--local", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "profile tiny" in out  # the default profile of every command
    assert 'dataset = "cifar10"' in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and "=" not in line}
    assert "GPU (one per shard)" in lines["generate"] and "CPU" in lines["tune"]
    assert "after generate" in lines["collect"]
    assert not (tmp_path / "synk8s-store").exists()


def test_profile_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("submit", "zeroshot", "--local", "--dry-run", SYNK8S_PROFILE="paper")
    assert result.exit_code == 0 and "profile paper" in result.stdout


def test_paper_run_without_weights_stops_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preflight.online.cache_clear()
    result = _invoke("submit", "zeroshot", "--dataset", "cifar100", "--local", "--profile", "paper",
                     HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    preflight.online.cache_clear()
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "synk8s models pull" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "synk8s-store").exists()


def test_datasets_list_as_json():
    result = _invoke("datasets", "list", "--output", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {"name": "cifar100", "classes": 100}.items() <= next(r for r in rows if r["name"] == "cifar100").items()


def test_submit_shortcuts_are_typed_parameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("submit", "pretrain", "--label-space", "imagenet-1k", "--method", "moco", "--local", "--dry-run")
    assert result.exit_code == 0, result.output
    assert '  label_space = "imagenet-1k"' in result.stdout and '  method = "moco"' in result.stdout
    (overrides,) = [line for line in result.stdout.splitlines() if line.startswith("  overrides = ")]
    assert "pretrain.method" not in overrides and "pretrain.label_space" not in overrides
    few = _invoke("submit", "fewshot", "--dataset", "eurosat", "--shots", "4", "--local", "--dry-run")
    assert few.exit_code == 0, few.output
    assert "  shots = 4" in few.stdout and "shots_per_class" not in few.stdout


def test_imagenet_pretraining_without_backbone_weights_stops_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("submit", "pretrain", "--local", "--set", "models.backbone=resnet50", "--set",
                     "pretrain.init=imagenet")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "pretrain.init=imagenet" in line and "`synk8s models pull resnet50 --cache DIR_OR_S3_PREFIX`" in line
    assert not (tmp_path / "synk8s-store").exists()


def test_a_cluster_submission_says_what_it_checked_and_leaves_the_hub_to_the_pods(kfp_api):
    preflight.online.cache_clear()
    result = _invoke("submit", "zeroshot", "--store", "s3://synk8s-test/store", "--host", kfp_api.url,
                     "--set", "models.clip=rn50")
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("preflight: ")]
    assert "models.clip=rn50 from the hub by the cluster's pods (not tested from this machine)" in line
    assert "models.generator=standin-drawn built from config" in line
    assert preflight.online.cache_info().currsize == 0  # no connection to the hub was tried from here
