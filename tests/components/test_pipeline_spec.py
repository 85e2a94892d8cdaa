"""The compiled zero-shot pipeline: GPU scheduling, credentials, parallelism, retries, resources."""

import os
from pathlib import Path

import pytest
import yaml
from synk8s.pipelines import compile_pipeline

from synk8s import config

pytestmark = pytest.mark.timeout(60)

GPU_TASKS = {"prompts", "generate", "filter", "test-features", "features"}
STORE_TASKS = {
    "prompts", "generate-shards", "generate", "collect", "filter", "test-features", "features", "leakage", "tune",
    "evaluate", "export",
}  # fmt: skip
ALL_TASKS = STORE_TASKS | {"plan"}
CREDENTIAL_LITERALS = ("AKIA", "secret_key", "minioadmin", "synk8s-test-key", "synk8s-test-secret")


def _compile(tmp_path, profile="paper", overrides=()):
    path = compile_pipeline("zeroshot", config.load(profile, list(overrides)), tmp_path / "zeroshot.yaml")
    text = path.read_text()
    spec, platform = yaml.safe_load_all(text)
    return text, spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return _compile(tmp_path_factory.mktemp("spec"))


def _containers(spec):
    return {name.removeprefix("exec-"): ex["container"] for name, ex in spec["deploymentSpec"]["executors"].items()}


def _tasks(spec):
    """Every task spec by component name, including those inside the ParallelFor."""
    found = {}
    for comp in [spec["root"], *spec["components"].values()]:
        for task in comp.get("dag", {}).get("tasks", {}).values():
            found[task["componentRef"]["name"].removeprefix("comp-")] = task
    return found


def test_every_task_has_cpu_and_memory_requests_and_limits(compiled):
    _, spec, _ = compiled
    containers = _containers(spec)
    assert set(containers) == ALL_TASKS
    for name, container in containers.items():
        resources = container["resources"]
        for key in ("cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"):
            assert resources[key] > 0, (name, key)
        assert resources["cpuRequest"] <= resources["cpuLimit"], name
        assert resources["memoryRequest"] <= resources["memoryLimit"], name


def test_gpu_tasks_ask_for_one_accelerator_and_cpu_tasks_for_none(compiled):
    _, spec, _ = compiled
    cfg = config.load("paper")
    for name, container in _containers(spec).items():
        accelerator = container["resources"].get("accelerator")
        if name in GPU_TASKS:
            assert accelerator["resourceType"] == cfg.cluster.accelerator, name
            assert accelerator["resourceCount"] == "1", name
            assert container["image"] == cfg.cluster.image
        else:
            assert accelerator is None, name
            assert container["image"] == cfg.cluster.cpu_image


def test_tune_reads_the_leakage_task_only_with_leakage_drop(compiled, tmp_path):
    _, spec, _ = compiled
    tasks = _tasks(spec)
    assert "leakage" in tasks
    assert "leakage" not in tasks["tune"]["inputs"]["parameters"]
    _, dropping, _ = _compile(tmp_path, overrides=["leakage.drop=true"])
    source = _tasks(dropping)["tune"]["inputs"]["parameters"]["leakage"]["taskOutputParameter"]
    assert source["producerTask"] == "leakage"


def test_prompts_runs_without_gpu_in_b_mode(tmp_path):
    _, spec, executors = _compile(tmp_path, overrides=["prompts.mode=B"])
    assert "accelerator" not in _containers(spec)["prompts"]["resources"]
    assert "nodeSelector" not in executors["exec-prompts"]


def test_gpu_node_pool_comes_from_pipeline_parameters(compiled):
    _, spec, executors = compiled
    cfg = config.load("paper")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["gpu_node_selector"]["parameterType"] == "STRUCT"
    assert params["gpu_node_selector"]["defaultValue"] == dict(cfg.cluster.gpu_node_selector)
    assert params["gpu_tolerations"]["defaultValue"] == [dict(t) for t in cfg.cluster.gpu_tolerations]
    for name in GPU_TASKS:
        ex = executors[f"exec-{name}"]
        selector = ex["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"]
        (toleration,) = ex["tolerations"]
        assert selector.endswith("gpu_node_selector"), name
        assert toleration["tolerationJson"]["componentInputParameter"].endswith("gpu_tolerations"), name
    for name in ALL_TASKS - GPU_TASKS:
        assert "nodeSelector" not in executors.get(f"exec-{name}", {}), name
        assert "tolerations" not in executors.get(f"exec-{name}", {}), name


def test_store_credentials_come_from_the_secret_and_settings_from_the_config_map(compiled):
    _, _, executors = compiled
    cfg = config.load("paper")
    for name in ALL_TASKS:
        ex = executors[f"exec-{name}"]
        (config_map,) = ex["configMapAsEnv"]
        assert config_map["configMapName"] == cfg.cluster.s3_config_map
        assert config_map["keyToEnv"] == [
            {"configMapKey": "SYNK8S_S3_ENDPOINT", "envVar": "SYNK8S_S3_ENDPOINT"},
            {"configMapKey": "SYNK8S_STORE_ROOT", "envVar": "SYNK8S_STORE_ROOT"},
        ], name
        if name not in STORE_TASKS:
            assert "secretAsEnv" not in ex, name  # plan never touches the store
            continue
        (secret,) = ex["secretAsEnv"]
        assert secret["secretName"] == cfg.cluster.s3_secret
        assert {(m["secretKey"], m["envVar"]) for m in secret["keyToEnv"]} == {
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        }


def test_the_config_map_sets_the_store_root_the_pods_read():
    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifests/base/config.yaml").read_text())
    assert manifest["metadata"]["name"] == config.load("paper").cluster.s3_config_map
    assert manifest["data"]["SYNK8S_STORE_ROOT"].startswith("s3://")
    assert set(manifest["data"]) >= {"SYNK8S_S3_ENDPOINT", "SYNK8S_STORE_ROOT"}


def test_no_credential_values_in_the_yaml(compiled, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "synk8s-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "synk8s-test-secret")
    text, _, _ = _compile(tmp_path)  # compiled with credentials in the environment
    for literal in CREDENTIAL_LITERALS:
        assert literal.lower() not in text.lower(), literal
    assert text == compiled[0]


def test_generate_runs_in_a_parallel_for_with_retries(compiled):
    _, spec, _ = compiled
    cfg = config.load("paper")
    loop_name, loop = next((n, t) for n, t in spec["root"]["dag"]["tasks"].items() if "parameterIterator" in t)
    assert loop["iteratorPolicy"]["parallelismLimit"] == cfg.generate.num_shards
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("generate-shards-Output")
    retry = _tasks(spec)["generate"]["retryPolicy"]
    assert retry["maxRetryCount"] == cfg.cluster.generate_retries
    assert retry["backoffDuration"] == "60s"
    assert retry["backoffFactor"] == 2.0
    collect = _tasks(spec)["collect"]
    assert collect["inputs"]["parameters"]["shards"]["taskOutputParameter"]["producerTask"] == loop_name


def test_every_task_caches_and_nothing_is_pip_installed(compiled):
    _, spec, _ = compiled
    tasks = _tasks(spec)
    for name in ALL_TASKS:
        assert tasks[name]["cachingOptions"] == {"enableCache": True}, name
    for name, container in _containers(spec).items():
        assert "pip install" not in " ".join(container["command"] + container.get("args", [])), name


def test_parameters_default_to_the_profile(compiled):
    _, spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    defaults = {name: p.get("defaultValue") for name, p in params.items()}
    assert defaults["dataset"] == "cifar100"
    assert defaults["profile"] == "paper"
    assert defaults["images_per_class"] == 2000
    assert defaults["overrides"] == "[]"
    assert defaults["tune_loss"] == "sce" and defaults["filter_enabled"] is True
    assert set(defaults) == {
        "dataset", "profile", "images_per_class", "num_shards", "generator", "seed", "store_root", "overrides",
        "prompts_mode", "filter_enabled", "tune_loss", "tune_epochs", "gpu_node_selector", "gpu_tolerations",
    }  # fmt: skip


def test_a_pipeline_built_for_a_local_run_does_not_retry(tmp_path):
    from kfp import compiler
    from synk8s.pipelines import build

    path = tmp_path / "local.yaml"
    compiler.Compiler().compile(build("zeroshot", config.load("paper"), retry=False), str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    assert "retryPolicy" not in _tasks(spec)["generate"]


def test_a_local_run_sets_every_tasks_threads_and_a_cluster_run_none(tmp_path, compiled):
    from kfp import compiler
    from synk8s.pipelines import build
    from synk8s.pipelines.local import default_threads

    path = tmp_path / "local.yaml"
    compiler.Compiler().compile(build("zeroshot", config.load("paper"), retry=False, threads=3), str(path))
    containers = _containers(next(yaml.safe_load_all(path.read_text())))
    assert set(containers) == ALL_TASKS
    for name, container in containers.items():
        assert container["env"] == [{"name": "OMP_NUM_THREADS", "value": "3"}], name
    assert all("env" not in container for container in _containers(compiled[1]).values())
    assert default_threads(1) == len(os.sched_getaffinity(0)) >= default_threads(2) >= default_threads(64) == 1


# ----------------------------------------------------------------------------- the pretrain pipeline

PRETRAIN_LIGHT = {"pretrain", "finetune", "finetune-2"}  # they launch a TrainJob; the TrainJob's nodes train


def _compile_pretrain(tmp_path, *overrides):
    cfg = config.load("paper", list(overrides))
    spec, platform = yaml.safe_load_all(compile_pipeline("pretrain", cfg, tmp_path / "pretrain.yaml").read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_pretrain_pipeline_generates_on_gpus_and_launches_training_from_light_cpu_tasks(tmp_path):
    spec, executors = _compile_pretrain(tmp_path)
    cfg = config.load("paper")
    containers = _containers(spec)
    assert set(containers) == {
        "plan", "prompts", "generate-shards", "generate", "collect", "pretrain",
        "variant", "variant-2", "finetune", "finetune-2", "transfer-report",
    }  # fmt: skip
    assert containers["generate"]["resources"]["accelerator"]["resourceCount"] == "1"
    for name in PRETRAIN_LIGHT:
        resources = containers[name]["resources"]
        assert "accelerator" not in resources and resources["cpuLimit"] <= 1, name
        assert containers[name]["image"] == cfg.cluster.cpu_image
        (secret,) = executors[f"exec-{name}"]["secretAsEnv"]  # it writes the config the TrainJob reads
        assert secret["secretName"] == cfg.cluster.s3_secret
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["pretrain"]["inputs"]["parameters"]["images"]["taskOutputParameter"]["producerTask"] == "collect"
    sides = {}
    for name in ("finetune", "finetune-2"):
        params = tasks[name]["inputs"]["parameters"]
        assert params["backbone"]["taskOutputParameter"]["producerTask"] == "pretrain"
        variant = params["config_json"]["taskOutputParameter"]["producerTask"]
        sides[tasks[name]["taskInfo"]["name"]] = tasks[variant]["inputs"]["parameters"]["overrides"]
    assert sides == {
        "finetune_pretrained": {"runtimeValue": {"constant": '["pretrain.finetune.init=pretrained"]'}},
        "finetune_scratch": {"runtimeValue": {"constant": '["pretrain.finetune.init=scratch"]'}},
    }
    report = tasks["transfer-report"]["inputs"]["parameters"]
    assert report["transfer"] == {"runtimeValue": {"constant": "cifar100"}}
    assert {report[s]["taskOutputParameter"]["producerTask"] for s in ("pretrained", "scratch")} == {
        "finetune",
        "finetune-2",
    }


def test_the_voc_transfer_runs_detect_from_the_trunk_and_from_scratch(tmp_path):
    spec, _ = _compile_pretrain(tmp_path, "pretrain.transfer=voc")
    tasks = spec["root"]["dag"]["tasks"]
    assert {t["taskInfo"]["name"] for t in tasks.values()} >= {"detect_pretrained", "detect_scratch", "transfer_report"}
    assert not any(t["taskInfo"]["name"].startswith("finetune") for t in tasks.values())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["label_space"]["defaultValue"] == "cifar100" and "dataset" not in params
