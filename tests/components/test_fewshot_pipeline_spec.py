"""The compiled few-shot pipelines: each strategy's tasks, GPU scheduling, the Secret, retries, caching, the sweep."""

import pytest
import yaml
from synk8s.pipelines import compile_pipeline

from synk8s import config
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(90)

SHARED = {"plan", "prompts", "test-features"}
BRANCH = {
    "B": {"generate-shards", "generate", "collect", "filter", "features", "split", "fewshot-tune", "fewshot-evaluate",
          "fewshot-export"},
    "RF": {"generate-shards", "generate", "collect", "filter", "features", "split", "realfilter", "fewshot-tune",
           "fewshot-evaluate", "fewshot-export"},
    "RG": {"split", "guided-shards", "guided", "collect-guided", "filter-guided", "features-guided", "fewshot-tune",
           "fewshot-evaluate", "fewshot-export"},
}
NO_STORE = {"plan", "shots-config"}  # turn parameters into small strings (a shard list stores the config)


def _compile(tmp_path, name="fewshot", overrides=()):
    cfg = config.load("paper", list(overrides))
    path = compile_pipeline(name, cfg, tmp_path / f"{name}.yaml")
    spec, platform = yaml.safe_load_all(path.read_text())
    return cfg, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _containers(spec):
    return {name.removeprefix("exec-"): ex["container"] for name, ex in spec["deploymentSpec"]["executors"].items()}


def _tasks(spec):
    found = {}
    for comp in [spec["root"], *spec["components"].values()]:
        for name, task in comp.get("dag", {}).get("tasks", {}).items():
            found[name] = task
    return found


def _stage(task: str) -> str:
    """The table stage behind a component name (``fewshot-tune-3`` -> ``fewshot_tune``)."""
    base = task.rstrip("0123456789").rstrip("-") if task[-1].isdigit() else task
    return base.replace("-", "_")


@pytest.fixture(scope="module", params=sorted(BRANCH))
def compiled(request, tmp_path_factory):
    return request.param, *_compile(tmp_path_factory.mktemp("fewshot"), overrides=[f"fewshot.strategy={request.param}"])


def test_each_strategy_runs_its_own_stages(compiled):
    strategy, _, spec, _ = compiled
    assert set(_containers(spec)) == SHARED | BRANCH[strategy]


def test_gpu_tasks_go_to_the_gpu_pool_and_the_rest_do_not(compiled):
    _, cfg, spec, executors = compiled
    for name, container in _containers(spec).items():
        stage = _stage(name)
        gpu = stage in TABLE.names and TABLE.get(stage).needs_gpu(cfg)
        accelerator = container["resources"].get("accelerator")
        if gpu:
            assert (accelerator["resourceCount"], accelerator["resourceType"]) == ("1", cfg.cluster.accelerator), name
            assert container["image"] == cfg.cluster.image, name
            assert executors[f"exec-{name}"]["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith(
                "gpu_node_selector"
            )
            assert len(executors[f"exec-{name}"]["tolerations"]) == 1, name
        else:
            assert accelerator is None, name
            assert container["image"] == cfg.cluster.cpu_image, name
            assert "nodeSelector" not in executors.get(f"exec-{name}", {}), name
    gpu_stages = {_stage(n) for n, c in _containers(spec).items() if c["resources"].get("accelerator")}
    assert {"fewshot_tune"} <= gpu_stages and "split" not in gpu_stages and "fewshot_evaluate" not in gpu_stages


def test_store_credentials_come_only_from_the_secret(compiled):
    _, cfg, spec, executors = compiled
    for name in _containers(spec):
        ex = executors[f"exec-{name}"]
        assert ex["configMapAsEnv"][0]["configMapName"] == cfg.cluster.s3_config_map, name
        if name in NO_STORE:
            assert "secretAsEnv" not in ex, name
            continue
        (secret,) = ex["secretAsEnv"]
        assert secret["secretName"] == cfg.cluster.s3_secret, name
        assert {m["envVar"] for m in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_the_sharded_stage_retries_in_a_parallel_for_and_every_task_caches(compiled):
    strategy, cfg, spec, _ = compiled
    sharded = "guided" if strategy == "RG" else "generate"
    tasks = _tasks(spec)
    retry = tasks[sharded]["retryPolicy"]
    assert (retry["maxRetryCount"], retry["backoffDuration"], retry["backoffFactor"]) == (
        cfg.cluster.generate_retries, "60s", 2.0,
    )  # fmt: skip
    loop = next(t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t)
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith(f"{sharded}-shards-Output")
    assert all(task["cachingOptions"] == {"enableCache": True} for task in tasks.values() if "componentRef" in task
               and not task["componentRef"]["name"].startswith("comp-for-loop"))


def test_the_sweep_runs_every_shot_count_once_and_shares_the_m_independent_stages(tmp_path):
    cfg, spec, executors = _compile(tmp_path, "fewshot_sweep", ["fewshot.strategy=B"])
    names = list(_containers(spec))
    shots = cfg.fewshot.shots
    for stage in ("split", "fewshot-tune", "fewshot-evaluate", "shots-config"):
        assert sum(_stage(n) == stage.replace("-", "_") for n in names) == len(shots), stage
    for stage in ("prompts", "generate", "filter", "test-features", "features", "sweep-report"):
        assert sum(_stage(n) == stage.replace("-", "_") for n in names) == 1, stage
    root = spec["root"]["dag"]["tasks"]
    evaluations = {n for n in root if _stage(n) == "fewshot_evaluate"}
    assert set(root["sweep-report"]["dependentTasks"]) >= evaluations
    labels = sorted(t["taskInfo"]["name"] for n, t in root.items() if _stage(n) == "fewshot_evaluate")
    assert labels == sorted(f"fewshot_evaluate M={m}" for m in shots)
    assert "secretAsEnv" in executors["exec-sweep-report"]


def test_submit_shots_sets_the_shot_count_and_compiles_the_strategy_asked_for(kfp_api):
    from typer.testing import CliRunner

    from synk8s.cli.main import app
    from synk8s.resolve import config_from_arguments

    store = "s3://synk8s-test/store"
    args = ["submit", "fewshot", "--profile", "tiny", "--dataset", "eurosat", "--shots", "4", "--set",
            "fewshot.strategy=B", "--store", store, "--host", kfp_api.url]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (created,) = kfp_api.sent("POST", "/runs")
    cfg = config_from_arguments(**created.body["runtime_config"]["parameters"])
    assert (cfg.fewshot.shots_per_class, cfg.fewshot.strategy, cfg.dataset.name) == (4, "B", "eurosat")
    spec = created.body["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "synk8s-fewshot"
    assert set(spec["root"]["dag"]["tasks"]) >= {"split", "generate-shards", "filter", "fewshot-tune"}
    assert not {"guided-shards", "realfilter"} & set(spec["root"]["dag"]["tasks"])


def test_a_sweep_branch_config_differs_from_the_planned_one_only_in_the_shot_count():
    from synk8s.components.sweep import shots_config

    from synk8s.config import ExperimentConfig

    cfg = config.load("tiny", ["dataset.name=eurosat"])
    branch = ExperimentConfig.model_validate_json(shots_config(cfg.model_dump_json(), 2))
    assert branch == config.with_overrides(cfg, ["fewshot.shots_per_class=2"])
    assert branch.digest() != cfg.digest()
