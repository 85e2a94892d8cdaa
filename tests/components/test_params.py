"""Pipeline parameters <-> config: one mapping, exact round trip; the plan and shard components."""

import hashlib
import json

import pytest
from synk8s.components.params import config_diff, pipeline_arguments
from synk8s.components.stages import make_components

from synk8s import config
from synk8s.errors import UsageError
from synk8s.resolve import config_from_arguments
from synk8s.runs import read_config
from synk8s.stages.table import TABLE, run_dir

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("profile", "overrides"),
    [
        ("paper", []),
        ("tiny", []),
        ("tiny", ["dataset.name=cifar10", "generate.images_per_class=3", "store.root=s3://bkt/runs"]),
        ("tiny", ["tune.epochs=2", "filter.threshold=0.2", "filter.keep_per_class=null", "prompts.mode=B"]),
        ("paper", ["cluster.gpu_node_selector={pool: a100, zone: b}", "fewshot.guidance_strength={1: 0.6}"]),
        (
            "paper",
            ["models.generator=stabilityai/sd-turbo", "seed=7", "generate.num_shards=16", "fewshot.shots=[1, 2]"],
        ),
        ("tiny", ["pretrain.finetune.init=imagenet", "pretrain.moco.epochs=3"]),  # fields of nested sections
    ],
)
def test_arguments_round_trip_to_the_same_config(profile, overrides):
    cfg = config.load(profile, overrides)
    args = pipeline_arguments(cfg)
    assert json.loads(json.dumps(args)) == args  # plain JSON: what the KFP API carries
    back = config_from_arguments(**args)
    assert back == cfg
    assert back.digest() == cfg.digest()


def test_named_fields_are_parameters_and_the_rest_goes_to_overrides():
    cfg = config.load("tiny", ["dataset.name=cifar10", "generate.num_shards=3", "tune.epochs=2"])
    args = pipeline_arguments(cfg)
    assert args["dataset"] == "cifar10"
    assert args["num_shards"] == 3
    assert json.loads(args["overrides"]) == ["tune.epochs=2"]
    assert "tune.epochs=2" in config_diff(cfg)
    assert config_diff(config.load("tiny")) == []


def test_a_named_parameter_wins_over_the_same_key_in_overrides():
    args = pipeline_arguments(config.load("tiny"))
    args["overrides"] = json.dumps(["generate.images_per_class=9"])
    args["images_per_class"] = 5
    assert config_from_arguments(**args).generate.images_per_class == 5


@pytest.mark.parametrize("overrides", ["tune.epochs=2", '{"a": 1}', "[1, 2]"])
def test_malformed_overrides_are_usage_errors(overrides):
    args = {**pipeline_arguments(config.load("tiny")), "overrides": overrides}
    with pytest.raises(UsageError, match="JSON list"):
        config_from_arguments(**args)


def test_unknown_parameter_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown pipeline parameter 'epochs'"):
        config_from_arguments(profile="tiny", epochs=3)


def test_plan_component_resolves_config_and_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("KFP_POD_NAME", raising=False)
    cfg = config.load("tiny", ["dataset.name=cifar10", f"store.root={tmp_path}", "generate.num_shards=3"])
    comps = make_components(cfg)
    out = comps.plan.python_func(**pipeline_arguments(cfg))
    assert out.run_dir == run_dir(cfg) == f"{tmp_path}/runs/cifar10-{cfg.digest(*TABLE.fields('generate'))}"
    assert config.ExperimentConfig.model_validate_json(out.config_json) == cfg
    items = comps.shard_lists["generate"].python_func(config_json=out.config_json, run_dir=out.run_dir, prompts="p")
    assert [item["shard"] for item in items] == [0, 1, 2]
    digest = hashlib.sha256(out.config_json.encode()).hexdigest()
    assert {(item["config_sha256"], item["run_dir"], item["prompts"]) for item in items} == {(digest, out.run_dir, "p")}
    assert read_config(out.run_dir, digest) == out.config_json


@pytest.mark.parametrize("dataset", ["voc2007", "voc2012"])
def test_detection_datasets_are_rejected_with_the_classification_list(dataset):
    args = {**pipeline_arguments(config.load("tiny")), "dataset": dataset}
    with pytest.raises(UsageError) as caught:
        config_from_arguments(**args)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{dataset!r} is a detection dataset" in message
    assert "cifar10, cifar100" in message and "voc" not in message.split(":", 1)[1]


def _plan_in_pod(monkeypatch, store_root, shared):
    monkeypatch.setenv("KFP_POD_NAME", "synk8s-zeroshot-abc-plan")
    if shared is None:
        monkeypatch.delenv("SYNK8S_STORE_ROOT", raising=False)
    else:
        monkeypatch.setenv("SYNK8S_STORE_ROOT", shared)
    cfg = config.load("tiny")
    args = {**pipeline_arguments(cfg), "store_root": store_root}
    return make_components(cfg).plan.python_func(**args)


def test_plan_in_a_pod_puts_the_config_map_store_in_place_of_a_local_folder(monkeypatch):
    out = _plan_in_pod(monkeypatch, "./synk8s-store", "s3://synk8s/")
    cfg = config.ExperimentConfig.model_validate_json(out.config_json)
    assert cfg.store.root == "s3://synk8s/"
    assert out.run_dir == f"s3://synk8s/runs/{cfg.dataset.name}-{cfg.digest(*TABLE.fields('generate'))}"


def test_plan_in_a_pod_keeps_an_s3_store_root(monkeypatch):
    out = _plan_in_pod(monkeypatch, "s3://team-bucket/runs", "s3://synk8s/")
    assert config.ExperimentConfig.model_validate_json(out.config_json).store.root == "s3://team-bucket/runs"


@pytest.mark.parametrize("shared", [None, "", "/mnt/store"])
def test_plan_in_a_pod_without_a_shared_store_asks_for_s3(monkeypatch, shared):
    with pytest.raises(UsageError, match=r"pass store_root=s3://bucket/prefix$"):
        _plan_in_pod(monkeypatch, "./synk8s-store", shared)


# ------------------------------------------------------------------ typed parameters

SPEC_TYPES = {str: "STRING", int: "NUMBER_INTEGER", bool: "BOOLEAN", float: "NUMBER_DOUBLE"}


@pytest.mark.parametrize("name", ["zeroshot", "fewshot", "fewshot_sweep", "pretrain"])
def test_compiled_pipelines_have_typed_described_parameters(name):
    import yaml
    from synk8s.pipelines import _module, compiled_path

    from synk8s.flags import PARAMETERS

    spec = next(yaml.safe_load_all(compiled_path(name).read_text(encoding="utf-8")))
    params = spec["root"]["inputDefinitions"]["parameters"]
    typed = _module(name).PARAMETERS
    assert set(params) == {*typed, "profile", "overrides", "gpu_node_selector", "gpu_tolerations"}
    for param in typed:
        assert params[param]["parameterType"] == SPEC_TYPES[PARAMETERS[param].type], param
        assert params[param]["description"] == PARAMETERS[param].help, param
        assert PARAMETERS[param].key in params[param]["description"], param  # names the config field it sets
    assert "without a parameter of its own" in params["overrides"]["description"]
    plan_inputs = spec["components"]["comp-plan"]["inputDefinitions"]["parameters"]
    assert set(plan_inputs) == {*typed, "profile", "overrides"}


def test_each_study_shows_its_own_knobs():
    from synk8s.pipelines import fewshot, fewshot_sweep, pretrain, zeroshot

    assert {"prompts_mode", "filter_enabled", "tune_loss", "tune_epochs"} <= set(zeroshot.PARAMETERS)
    assert "shots" in fewshot.PARAMETERS and "shots" not in fewshot_sweep.PARAMETERS  # a sweep's M are its branches
    assert {"label_space", "method"} <= set(pretrain.PARAMETERS) and "dataset" not in pretrain.PARAMETERS


def test_typed_fields_leave_overrides_and_the_rest_stays_there():
    from synk8s.pipelines import arguments

    cfg = config.load("tiny", ["tune.epochs=3", "filter.enabled=false", "tune.lr=0.01"])
    args = arguments("zeroshot", cfg)
    assert args["tune_epochs"] == 3 and args["filter_enabled"] is False
    assert json.loads(args["overrides"]) == ["tune.lr=0.01"]
    assert config_from_arguments(**args) == cfg
    few = arguments("fewshot", config.load("tiny", ["fewshot.shots_per_class=4", "tune.epochs=3"]))
    assert few["shots"] == 4 and json.loads(few["overrides"]) == ["tune.epochs=3"]  # not a few-shot knob


def test_a_label_space_parameter_sets_the_dataset_it_comes_from():
    from synk8s.pipelines import arguments, prepare

    cfg = prepare("pretrain", config.load("tiny", ["pretrain.label_space=imagenet-1k"]))
    args = arguments("pretrain", cfg)
    assert args["label_space"] == "imagenet-1k" and config_from_arguments(**args) == cfg
    edited = {**arguments("pretrain", prepare("pretrain", config.load("tiny"))), "label_space": "imagenet-2k"}
    resolved = config_from_arguments(**edited)  # a label space edited in the Kubeflow UI
    assert (resolved.pretrain.label_space, resolved.dataset.name) == ("imagenet-2k", "imagenet")


@pytest.mark.timeout(120)
def test_a_typed_parameter_reaches_the_config_of_a_local_plan_task(tmp_path, monkeypatch):
    """The zero-shot pipeline's own plan component, run as a kfp.local task process with tune_epochs=3."""
    from kfp import local
    from synk8s.components.stages import make_plan
    from synk8s.pipelines import arguments, zeroshot

    monkeypatch.delenv("KFP_POD_NAME", raising=False)
    cfg = config.load("tiny", [f"store.root={tmp_path}/store"])
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    task = make_plan(cfg, zeroshot.PARAMETERS)(**{**arguments("zeroshot", cfg), "tune_epochs": 3, "tune_loss": "ce"})
    seen = config.ExperimentConfig.model_validate_json(task.outputs["config_json"])
    assert (seen.tune.epochs, seen.tune.loss) == (3, "ce")
    assert seen == config.load("tiny", [f"store.root={tmp_path}/store", "tune.epochs=3", "tune.loss=ce"])
    assert task.outputs["run_dir"] == run_dir(seen)
