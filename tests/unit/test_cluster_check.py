"""``synk8s cluster check``: the pure checks over real kubernetes client model objects, and the CLI."""

import base64
import dataclasses

import pytest
from kubernetes import client as k8s
from rich.console import Console
from typer.testing import CliRunner

from synk8s import cluster
from synk8s.cli.cluster import report_table
from synk8s.cli.main import app as root_app
from synk8s.errors import Synk8sError

pytestmark = pytest.mark.timeout(60)

SECRET_VALUE = "s3cr3t-value-never-shown"


def _meta(name, namespace=None, labels=None):
    return k8s.V1ObjectMeta(name=name, namespace=namespace, labels=labels)


def _gpu_node(name, labelled=True, tainted=True, gpus="2"):
    taints = [k8s.V1Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")] if tainted else None
    return k8s.V1Node(
        metadata=_meta(name, labels={"synk8s.io/pool": "gpu"} if labelled else {}),
        spec=k8s.V1NodeSpec(taints=taints),
        status=k8s.V1NodeStatus(allocatable={"cpu": "32", "nvidia.com/gpu": gpus}),
    )


def _cpu_node(name):
    return k8s.V1Node(
        metadata=_meta(name, labels={}),
        spec=k8s.V1NodeSpec(),
        status=k8s.V1NodeStatus(allocatable={"cpu": "8", "memory": "32Gi"}),
    )


def _secret(namespace, **values):
    return _secret_named("synk8s-s3-credentials", namespace, **values)


def _good_secret(namespace="synk8s"):
    return _secret(namespace, AWS_ACCESS_KEY_ID="synk8s-access", AWS_SECRET_ACCESS_KEY=SECRET_VALUE)


def _root_secret(namespace="synk8s", user="minio-root"):
    return _secret_named(
        "synk8s-minio-root", namespace, MINIO_ROOT_USER=user, MINIO_ROOT_PASSWORD=SECRET_VALUE + "-root"
    )


def _secret_named(name, namespace, **values):
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    return k8s.V1Secret(metadata=_meta(name, namespace), data=data)


def _api_policy(cidr="10.0.0.1/32"):
    rule = k8s.V1NetworkPolicyEgressRule(to=[k8s.V1NetworkPolicyPeer(ip_block=k8s.V1IPBlock(cidr=cidr))])
    return k8s.V1NetworkPolicy(
        metadata=_meta("synk8s-egress-kube-api", "synk8s"),
        spec=k8s.V1NetworkPolicySpec(pod_selector=k8s.V1LabelSelector(), egress=[rule]),
    )


def _launcher(namespace="synk8s"):
    return k8s.V1ConfigMap(
        metadata=_meta("kfp-launcher", namespace),
        data={"defaultPipelineRoot": "minio://synk8s/pipeline-root", "providers": "minio: {}\n"},
    )


def _complete():
    return cluster.ClusterSnapshot(
        nodes=[_gpu_node("gpu-a"), _gpu_node("gpu-b"), _cpu_node("cpu-a")],
        namespaces=[k8s.V1Namespace(metadata=_meta("synk8s"))],
        services=[
            k8s.V1Service(
                metadata=_meta("minio", "synk8s"),
                spec=k8s.V1ServiceSpec(ports=[k8s.V1ServicePort(port=9000), k8s.V1ServicePort(port=9001)]),
            ),
            k8s.V1Service(metadata=_meta("ml-pipeline", "kubeflow"), spec=k8s.V1ServiceSpec()),
        ],
        endpoints=[
            k8s.V1Endpoints(
                metadata=_meta("minio", "synk8s"),
                subsets=[k8s.V1EndpointSubset(addresses=[k8s.V1EndpointAddress(ip="10.0.0.7")])],
            )
        ],
        secrets=[_root_secret(), _good_secret()],
        config_maps=[_launcher()],
        network_policies=[_api_policy()],
    )


def _failed(results):
    return [r.name for r in results if not r.ok]


def test_complete_cluster_passes_every_check():
    results = cluster.run_checks(_complete())
    assert _failed(results) == []
    assert [r.name for r in results] == [
        "GPU nodes",
        "GPU pool label",
        "GPU taint",
        "namespace synk8s",
        "MinIO service",
        "MinIO endpoints",
        "KFP API",
        "Secret synk8s-minio-root in synk8s",
        "Secret synk8s-s3-credentials in synk8s",
        "pipeline MinIO user",
        "ConfigMap kfp-launcher in synk8s",
        "NetworkPolicy synk8s-egress-kube-api",
    ]
    assert "4 GPUs" in results[0].detail
    assert all(r.hint == "" for r in results)


def _without(**changes):
    return dataclasses.replace(_complete(), **changes)


@pytest.mark.parametrize(
    ("snapshot", "failing", "hint_part"),
    [
        pytest.param(
            _without(nodes=[_cpu_node("cpu-a")]),
            ["GPU nodes", "GPU pool label", "GPU taint"],
            "device plugin",
            id="no-gpu-nodes",
        ),
        pytest.param(
            _without(nodes=[_gpu_node("gpu-a", labelled=False)]),
            ["GPU pool label", "GPU taint"],
            "kubectl label node NODE synk8s.io/pool=gpu",
            id="gpu-node-unlabelled",
        ),
        pytest.param(
            _without(nodes=[_gpu_node("gpu-a"), _gpu_node("gpu-b", tainted=False)]),
            ["GPU taint"],
            "nvidia.com/gpu=present:NoSchedule",
            id="gpu-node-untainted",
        ),
        pytest.param(
            _without(nodes=[_gpu_node("gpu-a", gpus="0")]),
            ["GPU nodes", "GPU pool label", "GPU taint"],
            "nvidia.com/gpu",
            id="gpu-node-without-allocatable-gpus",
        ),
        pytest.param(_without(namespaces=[]), ["namespace synk8s"], "kubectl apply -k", id="no-namespace"),
        pytest.param(
            _without(services=_complete().services[1:]), ["MinIO service"], "port 9000", id="no-minio-service"
        ),
        pytest.param(_without(endpoints=[]), ["MinIO endpoints"], "describe pod", id="minio-not-ready"),
        pytest.param(
            _without(endpoints=[k8s.V1Endpoints(metadata=_meta("minio", "synk8s"), subsets=None)]),
            ["MinIO endpoints"],
            "describe pod",
            id="minio-endpoints-empty",
        ),
        pytest.param(_without(services=_complete().services[:1]), ["KFP API"], "Kubeflow Pipelines", id="no-kfp-api"),
        pytest.param(
            _without(secrets=[]),
            ["Secret synk8s-minio-root in synk8s", "Secret synk8s-s3-credentials in synk8s"],
            "create secret generic synk8s-s3-credentials",
            id="no-secrets",
        ),
        pytest.param(
            _without(secrets=[_good_secret()]),
            ["Secret synk8s-minio-root in synk8s"],
            "--from-literal=MINIO_ROOT_PASSWORD",
            id="no-root-secret",
        ),
        pytest.param(
            _without(secrets=[_root_secret(user="CHANGE_ME"), _good_secret()]),
            ["Secret synk8s-minio-root in synk8s"],
            "delete secret synk8s-minio-root",
            id="root-secret-holds-placeholder",
        ),
        pytest.param(
            _without(secrets=[_root_secret(user="synk8s-access"), _good_secret()]),
            ["pipeline MinIO user"],
            "rerun the bucket Job",
            id="pipelines-use-the-root-user",
        ),
        pytest.param(
            _without(network_policies=[_api_policy("192.0.2.1/32")]),
            ["NetworkPolicy synk8s-egress-kube-api"],
            "kubernetes.io/service-name=kubernetes",
            id="api-egress-placeholder",
        ),
        pytest.param(
            _without(network_policies=[]),
            ["NetworkPolicy synk8s-egress-kube-api"],
            "kubectl apply -k",
            id="no-api-egress-policy",
        ),
        pytest.param(
            _without(secrets=[_root_secret(), _secret("synk8s", AWS_ACCESS_KEY_ID="synk8s-access")]),
            ["Secret synk8s-s3-credentials in synk8s"],
            "--from-literal=AWS_SECRET_ACCESS_KEY",
            id="secret-lacks-key",
        ),
        pytest.param(
            _without(
                secrets=[
                    _root_secret(),
                    _secret("synk8s", AWS_ACCESS_KEY_ID="CHANGE_ME", AWS_SECRET_ACCESS_KEY="CHANGE_ME"),
                ]
            ),
            ["Secret synk8s-s3-credentials in synk8s"],
            "delete secret",
            id="secret-holds-placeholders",
        ),
        pytest.param(
            _without(secrets=[_root_secret(), _good_secret("other")]),
            ["Secret synk8s-s3-credentials in synk8s"],
            "-n synk8s create secret",
            id="secret-in-wrong-namespace",
        ),
        pytest.param(
            _without(config_maps=[]), ["ConfigMap kfp-launcher in synk8s"], "kfp-launcher", id="no-kfp-launcher"
        ),
        pytest.param(
            _without(config_maps=[k8s.V1ConfigMap(metadata=_meta("kfp-launcher", "synk8s"), data={})]),
            ["ConfigMap kfp-launcher in synk8s"],
            "kfp-launcher",
            id="kfp-launcher-empty",
        ),
    ],
)
def test_each_missing_item_fails_its_own_check_with_a_hint(snapshot, failing, hint_part):
    results = cluster.run_checks(snapshot)
    assert _failed(results) == failing
    hints = " ".join(r.hint for r in results if not r.ok)
    assert hint_part in hints


def test_kfp_api_deployment_without_service_counts_as_present():
    deployment = k8s.V1Deployment(metadata=_meta("ml-pipeline", "kubeflow"))
    results = cluster.run_checks(_without(services=_complete().services[:1], deployments=[deployment]))
    assert _failed(results) == []


def test_separate_run_namespace_needs_its_own_secret_and_launcher():
    complete = _complete()
    results = cluster.run_checks(complete, run_namespace="kubeflow")
    assert _failed(results) == ["Secret synk8s-s3-credentials in kubeflow", "ConfigMap kfp-launcher in kubeflow"]

    ready = dataclasses.replace(
        complete,
        secrets=[*complete.secrets, _good_secret("kubeflow")],
        config_maps=[_launcher("kubeflow")],
    )
    assert _failed(cluster.run_checks(ready, run_namespace="kubeflow")) == []


def test_report_never_shows_secret_values():
    snapshot = _without(
        secrets=[
            _root_secret(user="synk8s-access"),
            _good_secret(),
            _secret("kubeflow", AWS_ACCESS_KEY_ID=SECRET_VALUE),
        ]
    )
    results = cluster.run_checks(snapshot, run_namespace="kubeflow")
    console = Console(record=True, width=300)
    console.print(report_table(results))
    text = console.export_text()
    assert "MISSING" in text and "OK" in text
    assert SECRET_VALUE not in text and "synk8s-access" not in text
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text


def test_cli_without_a_cluster_prints_one_line_and_exits_1(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(root_app, ["cluster", "check"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {cluster.NO_CLUSTER_MESSAGE}"]


def test_cli_with_missing_kubeconfig_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(root_app, ["cluster", "check", "--kubeconfig", str(tmp_path / "absent")])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output


def test_unreachable_api_server_is_one_line_error(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        "clusters: [{name: dead, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "contexts: [{name: dead, context: {cluster: dead, user: u}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    api = cluster.api_client(kubeconfig)
    with pytest.raises(Synk8sError, match=r"cannot reach the Kubernetes API at http://127.0.0.1:9") as info:
        cluster.read_snapshot(api)
    assert "\n" not in str(info.value)


def test_unknown_context_is_one_line_error(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
        "clusters: [{name: a, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "contexts: [{name: a, context: {cluster: a, user: u}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    with pytest.raises(Synk8sError, match=r"cannot use kubeconfig .*nope") as info:
        cluster.api_client(kubeconfig, context="nope")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "just a string\n",  # parses to a str: the loader fails with TypeError
        "- a\n- b\n",  # a list, not a mapping
        "apiVersion: v1\nclusters: 5\ncontexts: 7\ncurrent-context: x\n",
        "current-context: a\ncontexts: [{name: a, context: 5}]\n",  # AttributeError inside the loader
        "clusters: {a: [\n",  # not YAML
    ],
)
def test_malformed_kubeconfig_is_one_line_error_naming_the_file(tmp_path, text):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(text)
    with pytest.raises(Synk8sError, match=r"not a valid kubeconfig") as info:
        cluster.api_client(kubeconfig)
    assert str(kubeconfig) in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_with_malformed_kubeconfig_prints_one_line(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("just a string\n")
    result = CliRunner().invoke(root_app, ["cluster", "check", "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot use kubeconfig {kubeconfig}"), result.output
    assert "Traceback" not in result.output


def test_a_snapshot_with_the_trainer_read_adds_its_crds_and_torch_runtime():
    torch_runtime = {"metadata": {"name": "torch-distributed", "labels": {"trainer.kubeflow.org/framework": "torch"}}}
    crds = {"trainjobs.trainer.kubeflow.org", "clustertrainingruntimes.trainer.kubeflow.org"}
    ready = dataclasses.replace(_complete(), trainer_crds=crds, training_runtimes=[torch_runtime])
    results = cluster.run_checks(ready)
    assert _failed(results) == []
    assert [r.name for r in results[-2:]] == ["Kubeflow Trainer CRDs", "ClusterTrainingRuntime torch-distributed"]
    missing = cluster.run_checks(dataclasses.replace(_complete(), trainer_crds=set()))
    assert _failed(missing) == ["Kubeflow Trainer CRDs", "ClusterTrainingRuntime torch-distributed"]
    assert "install Kubeflow Trainer" in missing[-2].hint
    # Not read (a snapshot built without it): no Trainer lines.
    assert len(cluster.run_checks(_complete())) == len(results) - 2
