"""``synk8s submit`` and ``synk8s runs`` against a local KFP API server (see conftest.kfp_api)."""

import json

import pytest
from synk8s.pipelines import arguments
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.cli.runs import task_pods
from synk8s.resolve import config_from_arguments

pytestmark = pytest.mark.timeout(120)

STORE = "s3://synk8s-test/store"


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def _submit(kfp_api, *args: str):
    """``synk8s submit zeroshot --profile tiny --store STORE --host <test server>`` plus ``args``."""
    return _invoke("submit", "zeroshot", "--profile", "tiny", "--store", STORE, "--host", kfp_api.url, *args)


def test_submit_sends_the_compiled_spec_and_the_run_parameters(kfp_api):
    result = _submit(
        kfp_api, "--dataset", "cifar10", "--images-per-class", "3", "--set", "tune.epochs=2", "--experiment", "ci"
    )
    assert result.exit_code == 0, result.output
    assert "run run-1" in result.stdout

    assert [r.body["display_name"] for r in kfp_api.sent("POST", "/experiments")] == ["ci"]
    (created,) = kfp_api.sent("POST", "/runs")
    body = created.body
    assert body["experiment_id"] == "exp-1"
    cfg = config.load(
        "tiny", ["dataset.name=cifar10", f"store.root={STORE}", "generate.images_per_class=3", "tune.epochs=2"]
    )
    assert body["display_name"] == f"zeroshot-cifar10-{cfg.digest()}"
    params = body["runtime_config"]["parameters"]
    assert params == arguments("zeroshot", cfg)
    assert params["tune_epochs"] == 2 and json.loads(params["overrides"]) == []  # --set of a typed field: typed
    assert config_from_arguments(**params) == cfg

    spec, platform = body["pipeline_spec"]["pipeline_spec"], body["pipeline_spec"]["platform_spec"]
    assert spec["pipelineInfo"]["name"] == "synk8s-zeroshot"
    assert spec["root"]["dag"]["tasks"]["plan"]["cachingOptions"] == {"enableCache": True}
    assert spec["root"]["inputDefinitions"]["parameters"]["images_per_class"]["defaultValue"] == 3
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors["exec-generate"]["secretAsEnv"][0]["secretName"] == cfg.cluster.s3_secret


def test_submit_runs_as_the_configured_service_account(kfp_api):
    assert _submit(kfp_api).exit_code == 0
    assert _submit(kfp_api, "--service-account", "team-a-runner").exit_code == 0
    first, second = kfp_api.sent("POST", "/runs")
    assert first.body["service_account"] == config.load("tiny").cluster.service_account == "synk8s-pipeline-runner"
    assert second.body["service_account"] == "team-a-runner"


def test_submit_recurring_runs_as_the_service_account(kfp_api):
    result = _submit(kfp_api, "--recurring", "@daily", "--set", "cluster.service_account=nightly-runner")
    assert result.exit_code == 0, result.output
    (created,) = kfp_api.sent("POST", "/recurringruns")
    assert created.body["service_account"] == "nightly-runner"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--local", "--service-account", "x"), "drop --recurring, --host and --service-account"),
        (("--host", "http://127.0.0.1:9", "--threads", "1"), "--threads sets the threads of a --local run"),
        (("--local", "--threads", "0"), "--threads"),
    ],
)
def test_local_only_and_cluster_only_options_are_refused(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("submit", "zeroshot", "--profile", "tiny", "--store", STORE, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_submit_no_cache_turns_caching_off_in_the_sent_spec(kfp_api):
    result = _submit(kfp_api, "--no-cache")
    assert result.exit_code == 0, result.output
    (created,) = kfp_api.sent("POST", "/runs")
    dag = created.body["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]
    assert dag["plan"]["cachingOptions"] == {}


def test_submit_wait_follows_the_run_to_success(kfp_api):
    kfp_api.run_states = ["PENDING", "RUNNING", "SUCCEEDED"]
    result = _submit(kfp_api, "--wait", "--poll-seconds", "0.01")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("run run-1 SUCCEEDED")
    assert len(kfp_api.sent("GET", "/runs/run-1")) == 3


def test_submit_wait_exits_nonzero_when_the_run_fails(kfp_api):
    kfp_api.run_states = ["RUNNING", "FAILED"]
    kfp_api.run_error = "task generate failed"
    result = _submit(kfp_api, "--wait", "--poll-seconds", "0.01")
    assert result.exit_code == 1
    assert "run run-1 ended FAILED: task generate failed" in result.output
    assert "synk8s runs logs run-1" in result.output


def test_submit_takes_the_host_from_the_environment(kfp_api, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", kfp_api.url)
    result = _invoke("submit", "zeroshot", "--profile", "tiny", "--store", STORE)
    assert result.exit_code == 0, result.output
    assert len(kfp_api.sent("POST", "/runs")) == 1


def test_submit_sends_the_kfp_token_as_a_bearer_token(kfp_api, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "token-for-test")
    result = _submit(kfp_api)
    assert result.exit_code == 0, result.output
    (created,) = kfp_api.sent("POST", "/runs")
    assert created.authorization == "Bearer token-for-test"
    assert "token-for-test" not in result.output


def test_submit_without_host_or_local_names_both(monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    result = _invoke("submit", "zeroshot", "--profile", "tiny", "--store", STORE)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "--host" in lines[0] and "--local" in lines[0]


def test_submit_to_a_cluster_needs_a_shared_store(kfp_api):
    result = _invoke("submit", "zeroshot", "--profile", "tiny", "--store", "/tmp/store", "--host", kfp_api.url)
    assert result.exit_code == 2
    assert "s3://" in result.output
    assert kfp_api.requests == []


def test_submit_recurring_sends_the_schedule(kfp_api):
    result = _submit(kfp_api, "--recurring", "0 0 3 * * MON-FRI")
    assert result.exit_code == 0, result.output
    (created,) = kfp_api.sent("POST", "/recurringruns")
    assert created.body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * MON-FRI"
    assert created.body["mode"] == "ENABLE"
    assert kfp_api.sent("POST", "/runs") == []
    assert "recurring run rr-1" in result.stdout


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 3 * * *", "write '0 0 3 * * *'"),
        ("0 0 25 * * *", "hour field '25'"),
        ("0 0 3 * 13 *", "month field '13'"),
        ("0 0 3 ? * ?x", "day of week field '?x'"),
        ("*/0 * * * * *", "second field '*/0'"),
        ("@every soon", "@every"),
        ("daily", "six cron fields"),
    ],
)
def test_submit_recurring_rejects_bad_cron_before_calling_the_server(kfp_api, cron, message):
    result = _submit(kfp_api, "--recurring", cron)
    assert result.exit_code == 2
    assert message in result.output
    assert kfp_api.requests == []


@pytest.mark.parametrize("cron", ["0 30 2 * * *", "0 0 */6 ? * SUN,SAT", "0 0 0 1 JAN-MAR *", "@daily", "@every 1h30m"])
def test_good_cron_schedules_pass(cron):
    from synk8s.pipelines.schedule import check_cron

    assert check_cron(f" {cron} ") == cron


def test_submit_rejects_unknown_pipeline_and_bad_values():
    assert _invoke("submit", "fewshot-x", "--local").exit_code == 2
    result = _invoke("submit", "zeroshot", "--profile", "tiny", "--images-per-class", "0", "--local")
    assert result.exit_code == 2
    assert "images_per_class" in result.output


def test_runs_list_and_get(kfp_api):
    listed = _invoke("runs", "list", "--host", kfp_api.url)
    assert listed.exit_code == 0, listed.output
    assert "run-1" in listed.stdout
    (listing,) = kfp_api.sent("GET", "/runs")
    assert listing.query["sort_by"] == ["created_at desc"]

    got = _invoke("runs", "get", "run-1", "--host", kfp_api.url)
    assert got.exit_code == 0, got.output
    assert "state:      RUNNING" in got.stdout
    assert 'dataset = "cifar10"' in got.stdout


def test_task_pods_come_from_the_tasks_and_their_children():
    from kfp_server_api import PipelineTaskDetailChildTask as child
    from kfp_server_api import V2beta1PipelineTaskDetail, V2beta1Run, V2beta1RunDetails

    tasks = [
        V2beta1PipelineTaskDetail(display_name="plan", task_id="t1", pod_name="p-plan"),
        V2beta1PipelineTaskDetail(
            display_name="for-loop", task_id="t2", child_tasks=[child(pod_name="p-gen-1"), child(pod_name="p-gen-0")]
        ),
        V2beta1PipelineTaskDetail(task_id="t3", pod_name="p-eval"),  # no display name yet
        V2beta1PipelineTaskDetail(display_name="tune", task_id="t4"),  # not scheduled: no pod
        V2beta1PipelineTaskDetail(display_name="plan", task_id="t1", pod_name="p-plan"),  # listed twice
    ]
    run = V2beta1Run(run_id="r", run_details=V2beta1RunDetails(task_details=tasks))
    assert task_pods(run) == [("for-loop", "p-gen-0"), ("for-loop", "p-gen-1"), ("plan", "p-plan"), ("t3", "p-eval")]
    assert task_pods(V2beta1Run(run_id="r")) == []


KUBECTL = [
    "kubectl logs -n team-a zs-abc-generate-222 -c main  # generate",
    "kubectl logs -n team-a zs-abc-generate-333 -c main  # generate",
    "kubectl logs -n team-a zs-abc-plan-111 -c main  # plan",
]


def test_runs_logs_prints_each_task_pods_log(kfp_api, kubeconfig):
    kfp_api.pod_logs = {"zs-abc-plan-111": "planned\n", "zs-abc-generate-222": "shard 0 done\nmore\n"}
    logs = _invoke("runs", "logs", "run-1", "--host", kfp_api.url, "--namespace", "team-a")
    assert logs.exit_code == 0, logs.output
    assert logs.stdout.splitlines() == [
        "===== generate: pod zs-abc-generate-222 =====",
        "shard 0 done",
        "more",
        "===== generate: pod zs-abc-generate-333 =====",
        '(no log: pods "zs-abc-generate-333" not found)',
        "===== plan: pod zs-abc-plan-111 =====",
        "planned",
    ]
    reads = [r for r in kfp_api.requests if r.path.endswith("/log")]
    assert [r.path for r in reads][-1] == "/api/v1/namespaces/team-a/pods/zs-abc-plan-111/log"
    assert all(r.query["container"] == ["main"] for r in reads)
    assert {r.authorization for r in reads} == {"Bearer kube-token-for-test"}


def test_runs_logs_without_kubeconfig_prints_kubectl_commands(kfp_api, tmp_path, monkeypatch):
    monkeypatch.delenv("KFP_POD_NAME", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    logs = _invoke("runs", "logs", "run-1", "--host", kfp_api.url, "--namespace", "team-a")
    assert logs.exit_code == 0, logs.output
    assert [line for line in logs.stdout.splitlines() if line] == KUBECTL
    assert "cannot read pod logs: no Kubernetes credentials" in logs.output
    assert not [r for r in kfp_api.requests if r.path.endswith("/log")]


def test_runs_logs_refused_by_kubernetes_prints_kubectl_commands(kfp_api, kubeconfig):
    kfp_api.kube_status = 403
    logs = _invoke("runs", "logs", "run-1", "--host", kfp_api.url, "--namespace", "team-a")
    assert logs.exit_code == 0, logs.output
    assert [line for line in logs.stdout.splitlines() if line] == KUBECTL
    assert "refused to read pod logs (403" in logs.output


def test_unreachable_host_is_one_line():
    result = _invoke("runs", "list", "--host", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "cannot reach Kubeflow Pipelines at http://127.0.0.1:9" in result.output


def test_submit_local_with_an_unusable_s3_store_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = _invoke("submit", "zeroshot", "--profile", "tiny", "--store", "s3://synk8s-test/store", "--local")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: S3 credentials missing") and "AWS_ACCESS_KEY_ID" in line
    assert not (tmp_path / "kfp-local").exists()  # the pipeline never started


def test_submit_local_with_a_missing_bucket_is_one_line(tmp_path, monkeypatch, s3_env):
    monkeypatch.chdir(tmp_path)
    result = _invoke("submit", "zeroshot", "--profile", "tiny", "--store", "s3://no-such-bucket/store", "--local")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "bucket 'no-such-bucket' does not exist" in line
    assert not (tmp_path / "kfp-local").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "zeroshot", "--profile", "tiny", "--dataset", "voc2007", "--local"),
        ("submit", "zeroshot", "--profile", "tiny", "--set", "dataset.name=voc2012", "--store", STORE, "--host", "x"),
        ("compile", "zeroshot", "--set", "dataset.name=voc2007", "-o", "z.yaml"),
    ],
)
def test_detection_datasets_are_refused_before_anything_runs(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke(*args)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "is a detection dataset" in line and "cifar100" in line
    assert list(tmp_path.iterdir()) == []


def test_compile_writes_yaml(tmp_path):
    out = tmp_path / "z.yaml"
    result = _invoke("compile", "zeroshot", "-o", str(out), "--profile", "tiny", "--set", "generate.num_shards=3")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "parallelismLimit: 3" in text
    assert result.stdout.strip() == str(out)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing-dir/z.yaml", "No such file or directory"),
        (".", "must be a file name ending in .yaml or .yml"),
        ("z.json", "must be a file name ending in .yaml or .yml"),
        ("folder.yaml", "Is a directory"),
    ],
)
def test_compile_to_a_bad_path_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, target, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.yaml").mkdir()
    result = _invoke("compile", "zeroshot", "--profile", "tiny", "-o", target)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert message in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["folder.yaml"]


def test_compile_replaces_an_earlier_file_whole(tmp_path):
    out = tmp_path / "z.yml"
    out.write_text("old")
    assert _invoke("compile", "zeroshot", "--profile", "tiny", "-o", str(out)).exit_code == 0
    assert out.read_text().startswith("# PIPELINE DEFINITION\n# Name: synk8s-zeroshot\n")
    assert [p.name for p in tmp_path.iterdir()] == ["z.yml"]


def test_submit_pretrain_sets_label_space_method_and_transfer(kfp_api):
    result = _invoke(
        "submit", "pretrain", "--profile", "tiny", "--store", STORE, "--host", kfp_api.url,
        "--label-space", "imagenet-1k", "--method", "moco", "--transfer", "voc",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (created,) = kfp_api.sent("POST", "/runs")
    cfg = config_from_arguments(**created.body["runtime_config"]["parameters"])
    assert (cfg.pretrain.label_space, cfg.pretrain.method, cfg.pretrain.transfer) == ("imagenet-1k", "moco", "voc")
    assert cfg.dataset.name == "imagenet"  # the run folder is named by the label space's source dataset
    spec = created.body["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "synk8s-pretrain"
    names = {t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values()}
    assert names >= {"detect_pretrained", "detect_scratch"}
