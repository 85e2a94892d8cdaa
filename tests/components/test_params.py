"""Pipeline parameters <-> config: one mapping, exact round trip; the plan and shard components."""

import json

import pytest

from synk8s import config
from synk8s.components.params import config_diff, config_from_arguments, pipeline_arguments
from synk8s.components.stages import make_components
from synk8s.errors import UsageError
from synk8s.stages.layout import run_dir

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("profile", "overrides"),
    [
        ("paper", []),
        ("tiny", []),
        ("tiny", ["dataset.name=cifar10", "generate.images_per_class=3", "store.root=s3://b/runs"]),
        ("tiny", ["tune.epochs=2", "filter.threshold=0.2", "filter.keep_per_class=null", "prompts.mode=B"]),
        ("paper", ["cluster.gpu_node_selector={pool: a100, zone: b}", "fewshot.guidance_strength={1: 0.6}"]),
        (
            "paper",
            ["models.generator=stabilityai/sd-turbo", "seed=7", "generate.num_shards=16", "fewshot.shots=[1, 2]"],
        ),
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


def test_plan_component_resolves_config_and_run_folder(tmp_path):
    cfg = config.load("tiny", ["dataset.name=cifar10", f"store.root={tmp_path}", "generate.num_shards=3"])
    comps = make_components("registry.example/gpu:1", "registry.example/cpu:1")
    out = comps.plan.python_func(**pipeline_arguments(cfg))
    assert out.run_dir == run_dir(cfg) == f"{tmp_path}/runs/cifar10-{cfg.digest()}"
    assert config.ExperimentConfig.model_validate_json(out.config_json) == cfg
    items = comps.shard_list.python_func(config_json=out.config_json, run_dir=out.run_dir, prompts="p")
    assert [item["shard"] for item in items] == [0, 1, 2]
    assert {(item["config_json"], item["run_dir"], item["prompts"]) for item in items} == {
        (out.config_json, out.run_dir, "p")
    }
