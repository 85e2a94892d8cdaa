"""The kustomize base and overlays under manifests/: rendered offline and checked.

A small renderer below follows a kustomization's ``resources`` and applies its JSON6902
``patches`` (the only kustomize features the manifests use; anything else fails the test), so
no kubectl is needed. Where kubectl is installed, one test compares the renderer with
``kubectl kustomize``. Every rendered document is validated against the Kubernetes OpenAPI
schemas that ``kubernetes-validate`` ships.
"""

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from synk8s import cluster
from synk8s import config as synk8s_config

pytestmark = pytest.mark.timeout(120)

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
KUSTOMIZATIONS = ["base", "overlays/dev", "overlays/prod"]
SECRET_TEMPLATE = MANIFESTS / "base" / "secret.template.yaml"
# The kubernetes client synk8s uses (<31) speaks the 1.30 API; also check the newest schemas shipped.
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
_SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches"}


def _matches(doc, target):
    unknown = set(target) - {"kind", "name", "labelSelector"}
    assert not unknown, f"patch target keys the test renderer does not support: {unknown}"
    labels = doc["metadata"].get("labels", {})
    selector = dict(pair.split("=", 1) for pair in target.get("labelSelector", "").split(",") if pair)
    return (
        target.get("kind", doc["kind"]) == doc["kind"]
        and target.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]
        and all(labels.get(k) == v for k, v in selector.items())
    )


def _replace(doc, pointer, value):
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer.lstrip("/").split("/")]
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key = int(last) if isinstance(node, list) else last
    assert (key < len(node)) if isinstance(node, list) else (key in node), f"replace of missing {pointer}"
    node[key] = value


def render(directory):
    """Render one kustomization directory into a list of documents (dicts)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= _SUPPORTED_KEYS, (
        f"{directory}: unsupported keys {set(kustomization) - _SUPPORTED_KEYS}"
    )
    docs = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in kustomization.get("patches", []):
        ops = yaml.safe_load((directory / patch["path"]).read_text())
        targets = [doc for doc in docs if _matches(doc, patch["target"])]
        assert targets, f"{directory}: patch {patch['path']} matches nothing"
        for op in ops:
            assert op["op"] == "replace", f"{patch['path']}: only 'replace' is supported, got {op['op']}"
            for doc in targets:
                _replace(doc, op["path"], op["value"])
    return docs


@pytest.fixture(scope="module")
def rendered():
    return {name: render(MANIFESTS / name) for name in KUSTOMIZATIONS}


def _one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"]["labels"]


def _pod_specs(docs):
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            spec = doc["spec"]
            if doc["kind"] == "CronJob":
                spec = spec["jobTemplate"]["spec"]
            yield doc, spec["template"]["spec"] if "template" in spec else spec


def _canonical(docs):
    return sorted(json.dumps(d, sort_keys=True) for d in docs)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renderer_agrees_with_kubectl_kustomize(rendered, name):
    out = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS / name)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert _canonical(rendered[name]) == _canonical([d for d in yaml.safe_load_all(out) if d])


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_document_validates_against_kubernetes_schemas(rendered, name, version):
    assert len(rendered[name]) >= 12
    for doc in rendered[name]:
        kubernetes_validate.validate(doc, version, strict=True)


def test_secret_template_is_valid_holds_placeholders_and_is_never_applied(rendered):
    (template,) = [d for d in yaml.safe_load_all(SECRET_TEMPLATE.read_text()) if d]
    kubernetes_validate.validate(template, K8S_VERSIONS[0], strict=True)
    assert template["metadata"]["name"] == cluster.S3_SECRET
    assert "data" not in template
    assert template["stringData"] == {key: cluster.PLACEHOLDER for key in cluster.S3_SECRET_KEYS}
    # Applying a Secret would overwrite the real credentials created with kubectl.
    for docs in rendered.values():
        assert not [d for d in docs if d["kind"] == "Secret"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_is_limited_and_non_root(rendered, name):
    pods = list(_pod_specs(rendered[name]))
    assert {doc["kind"] for doc, _ in pods} == {"StatefulSet", "Job"}
    for doc, pod in pods:
        pod_ctx = pod.get("securityContext", {})
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            limits = container.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= set(limits), f"{where} lacks cpu/memory limits"
            ctx = {**pod_ctx, **container.get("securityContext", {})}
            assert ctx.get("runAsNonRoot") is True, where
            assert ctx.get("runAsUser", 0) != 0, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: unpinned {image}"


def test_minio_is_probed_and_reads_credentials_from_the_secret(rendered):
    minio = _one(rendered["base"], "StatefulSet", "minio")
    pod = minio["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == 1000
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert {r["name"] for r in refs.values()} == {cluster.S3_SECRET}
    assert sorted(r["key"] for r in refs.values()) == sorted(cluster.S3_SECRET_KEYS)
    service = _one(rendered["base"], "Service", cluster.MINIO_SERVICE)
    assert {p["port"] for p in service["spec"]["ports"]} == {cluster.MINIO_PORT, 9001}
    assert service["spec"]["selector"].items() <= pod_labels(minio).items()


def test_bucket_job_creates_the_store_bucket(rendered):
    job = _one(rendered["base"], "Job", "synk8s-create-bucket")
    script = " ".join(job["spec"]["template"]["spec"]["containers"][0]["args"])
    store_root = _one(rendered["base"], "ConfigMap", "synk8s-config")["data"]["SYNK8S_STORE_ROOT"]
    bucket = store_root.removeprefix("s3://").strip("/")
    assert f"mb --ignore-existing store/{bucket}" in script
    assert pod_labels(job)["app.kubernetes.io/part-of"] == "synk8s"


def test_network_policy_guards_minio_and_admits_pipeline_pods(rendered):
    docs = rendered["base"]
    policy = _one(docs, "NetworkPolicy", "minio-ingress")
    minio = _one(docs, "StatefulSet", "minio")
    assert policy["metadata"]["namespace"] == minio["metadata"]["namespace"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels(minio).items()
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": cluster.MINIO_PORT}]
    selectors = [peer.get("podSelector", {}).get("matchLabels") for peer in rule["from"]]
    assert {"pipelines.kubeflow.org/v2_component": "true"} in selectors
    assert {"app.kubernetes.io/part-of": "synk8s"} in selectors
    namespaces = [peer.get("namespaceSelector", {}).get("matchLabels") for peer in rule["from"]]
    assert {"kubernetes.io/metadata.name": "kubeflow"} in namespaces


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kfp_launcher_points_at_minio_with_the_secret(rendered, name):
    docs = rendered[name]
    launcher = _one(docs, "ConfigMap", cluster.LAUNCHER_CONFIG_MAP)["data"]
    assert launcher["defaultPipelineRoot"] == "minio://synk8s/pipeline-root"
    default = yaml.safe_load(launcher["providers"])["minio"]["default"]
    assert default["credentials"]["fromEnv"] is False
    assert default["credentials"]["secretRef"] == {
        "secretName": cluster.S3_SECRET,
        "accessKeyKey": "AWS_ACCESS_KEY_ID",
        "secretKeyKey": "AWS_SECRET_ACCESS_KEY",
    }
    settings = _one(docs, "ConfigMap", "synk8s-config")["data"]
    service = _one(docs, "Service", cluster.MINIO_SERVICE)
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{cluster.MINIO_PORT}"
    assert default["endpoint"] == host
    assert default["disableSSL"] is True
    assert settings["SYNK8S_S3_ENDPOINT"] == f"http://{host}"
    assert settings["SYNK8S_STORE_ROOT"] == "s3://synk8s/"


def test_run_namespace_objects_move_together_in_dev(rendered):
    expected = {"base": "synk8s", "overlays/dev": "kubeflow", "overlays/prod": "synk8s"}
    for name, namespace in expected.items():
        docs = rendered[name]
        scoped = [d for d in docs if d["metadata"].get("labels", {}).get("synk8s.io/scope") == "run-namespace"]
        assert {d["kind"] for d in scoped} == {"ConfigMap", "ServiceAccount", "Role", "RoleBinding"}
        assert {d["metadata"]["namespace"] for d in scoped} == {namespace}, name
        binding = _one(docs, "RoleBinding", "synk8s-pipeline-runner")
        assert [s["namespace"] for s in binding["subjects"]] == [namespace]
        assert _one(docs, "StatefulSet", "minio")["metadata"]["namespace"] == "synk8s"


def test_runner_role_is_least_privilege(rendered):
    role = _one(rendered["base"], "Role", "synk8s-pipeline-runner")
    granted = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        for resource in rule["resources"]:
            granted[resource] = (set(rule["verbs"]), set(rule.get("resourceNames", [])))
    assert granted["secrets"] == ({"get"}, {cluster.S3_SECRET})
    assert granted["configmaps"] == ({"get"}, {"synk8s-config", cluster.LAUNCHER_CONFIG_MAP})
    assert granted["pods/log"][0] == {"get"}
    write_verbs = {"create", "update", "patch", "delete", "deletecollection"}
    assert [r for r, (verbs, _) in granted.items() if verbs & write_verbs] == ["workflowtaskresults"]


def _quota(docs):
    return _one(docs, "ResourceQuota", "synk8s-compute")["spec"]["hard"]


def _storage(docs):
    return _one(docs, "StatefulSet", "minio")["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]


def test_overlays_size_the_quota_and_volume(rendered):
    for name in KUSTOMIZATIONS:
        assert {"requests.nvidia.com/gpu", "requests.cpu", "requests.memory"} <= set(_quota(rendered[name]))
    assert _quota(rendered["overlays/dev"])["requests.nvidia.com/gpu"] == "1"
    assert int(_quota(rendered["overlays/prod"])["requests.nvidia.com/gpu"]) > 1
    assert _storage(rendered["overlays/dev"])["storage"] == "10Gi"
    assert _storage(rendered["overlays/prod"])["storage"] == "1Ti"


def test_gpu_priority_class_never_preempts(rendered):
    priority = _one(rendered["base"], "PriorityClass", "synk8s-gpu-batch")
    assert priority["preemptionPolicy"] == "Never"
    assert priority["globalDefault"] is False
    assert 0 < priority["value"] < 1_000_000_000  # below the system-critical range


def test_gpu_pool_convention_matches_profile_defaults_and_checks():
    cfg = synk8s_config.load("paper").cluster
    key, value = cluster.GPU_POOL_LABEL
    assert cfg.gpu_node_selector == {key: value}
    assert list(cfg.gpu_tolerations) == [
        {"key": cluster.GPU_TAINT_KEY, "operator": "Exists", "effect": cluster.GPU_TAINT_EFFECT}
    ]
    assert cfg.accelerator == cluster.GPU_RESOURCE
    assert cfg.s3_secret == cluster.S3_SECRET
    assert cfg.s3_config_map == "synk8s-config"
