"""The kustomize base and overlays under manifests/: rendered offline, validated and checked.

Rendering lives in manifest_render.py; where kubectl is installed, one test compares it with
``kubectl kustomize``. Every rendered document is validated against the Kubernetes OpenAPI schemas
that ``kubernetes-validate`` ships. The policies (Pod Security labels, NetworkPolicies, RBAC,
MinIO users) are checked in test_manifests_policy.py.
"""

import json
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml
from manifest_render import (
    KUSTOMIZATIONS,
    MANIFESTS,
    containers,
    one,
    pod_labels,
    pod_specs,
    render_all,
)

from synk8s import cluster
from synk8s import config as synk8s_config

pytestmark = pytest.mark.timeout(120)

SECRET_TEMPLATE = MANIFESTS / "base" / "secret.template.yaml"
# The kubernetes client synk8s uses (<31) speaks the 1.30 API; also check the newest schemas shipped.
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]
DIGEST_PINNED = re.compile(r"[^@\s]+:[^@:/\s]+@sha256:[0-9a-f]{64}")
# Pod Security Standards, `restricted` profile: the volume types and added capability it allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
RESTRICTED_ADDED_CAPABILITIES = {"NET_BIND_SERVICE"}


@pytest.fixture(scope="module")
def rendered():
    return render_all()


def _canonical(docs):
    return sorted(json.dumps(d, sort_keys=True) for d in docs)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renderer_agrees_with_kubectl_kustomize(rendered, name):
    out = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS / name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert _canonical(rendered[name]) == _canonical([d for d in yaml.safe_load_all(out) if d])


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_document_validates_against_kubernetes_schemas(rendered, name, version):
    assert len(rendered[name]) >= 18
    for doc in rendered[name]:
        kubernetes_validate.validate(doc, version, strict=True)


def test_secret_templates_are_valid_hold_placeholders_and_are_never_applied(rendered):
    templates = {d["metadata"]["name"]: d for d in yaml.safe_load_all(SECRET_TEMPLATE.read_text()) if d}
    expected = {
        cluster.S3_SECRET: cluster.S3_SECRET_KEYS,
        cluster.MINIO_ROOT_SECRET: cluster.MINIO_ROOT_KEYS,
    }
    assert set(templates) == set(expected)
    for name, keys in expected.items():
        kubernetes_validate.validate(templates[name], K8S_VERSIONS[0], strict=True)
        assert "data" not in templates[name]
        assert templates[name]["stringData"] == {key: cluster.PLACEHOLDER for key in keys}
    # Applying a Secret would overwrite the real credentials created with kubectl.
    for docs in rendered.values():
        assert not [d for d in docs if d["kind"] == "Secret"]


def restricted_violations(pod):
    """What keeps a pod spec from the Pod Security Standards' `restricted` profile (empty: none)."""
    found = []
    pod_ctx = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(flag)
    for volume in pod.get("volumes", []):
        kind = (set(volume) - {"name"}).pop()
        if kind not in RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']} of type {kind}")
    if pod_ctx.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    for container in containers(pod):
        where = container["name"]
        ctx = container.get("securityContext", {})
        if ctx.get("privileged"):
            found.append(f"{where}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation not false")
        if not ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")):
            found.append(f"{where}: runAsNonRoot not true")
        if ctx.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile {seccomp}")
        capabilities = ctx.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{where}: capabilities not dropped")
        if set(capabilities.get("add", [])) - RESTRICTED_ADDED_CAPABILITIES:
            found.append(f"{where}: capabilities added")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{where}: hostPort")
    return found


def test_restricted_checker_catches_each_kind_of_violation():
    good = {
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "containers": [
            {
                "name": "c",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    assert restricted_violations(good) == []
    bad = json.loads(json.dumps(good))
    bad["hostNetwork"] = True
    bad["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    bad["securityContext"] = {}
    bad["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}
    assert len(restricted_violations(bad)) == 7


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_pod_passes_restricted_runs_read_only_and_is_limited(rendered, name):
    pods = list(pod_specs(rendered[name]))
    assert {doc["kind"] for doc, _ in pods} == {"StatefulSet", "Job"}
    for doc, pod in pods:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert restricted_violations(pod) == [], where
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsUser"] >= 10000, where  # clear of host users
        scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in containers(pod):
            limits = container.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= set(limits), f"{where} lacks cpu/memory limits"
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert container["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"] if m["name"] in scratch}, where


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_image_is_pinned_by_tag_and_digest(rendered, name):
    images = [c["image"] for _, pod in pod_specs(rendered[name]) for c in containers(pod)]
    assert len(images) == 2
    for image in images:
        assert DIGEST_PINNED.fullmatch(image), f"{name}: {image} is not pinned as name:tag@sha256:<digest>"


def test_minio_reads_root_credentials_from_files_of_its_own_secret(rendered):
    minio = one(rendered["base"], "StatefulSet", "minio")
    pod = minio["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert not [e for e in container["env"] if "valueFrom" in e] and "envFrom" not in container
    env = {e["name"]: e["value"] for e in container["env"]}
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == cluster.MINIO_ROOT_SECRET
    assert "optional" not in volume["secret"]  # no Secret, no MinIO: never MinIO's default keys
    assert volume["secret"]["defaultMode"] == 0o440  # group: the pod's fsGroup
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    paths = {item["key"]: f"{mount['mountPath']}/{item['path']}" for item in volume["secret"]["items"]}
    assert env["MINIO_ROOT_USER_FILE"] == paths["MINIO_ROOT_USER"]
    assert env["MINIO_ROOT_PASSWORD_FILE"] == paths["MINIO_ROOT_PASSWORD"]
    service = one(rendered["base"], "Service", cluster.MINIO_SERVICE)
    assert {p["port"] for p in service["spec"]["ports"]} == {cluster.MINIO_PORT, 9001}
    assert service["spec"]["selector"].items() <= pod_labels(minio).items()


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kfp_launcher_points_at_minio_with_the_secret(rendered, name):
    docs = rendered[name]
    launcher = one(docs, "ConfigMap", cluster.LAUNCHER_CONFIG_MAP)["data"]
    assert launcher["defaultPipelineRoot"] == "minio://synk8s/pipeline-root"
    default = yaml.safe_load(launcher["providers"])["minio"]["default"]
    assert default["credentials"]["fromEnv"] is False
    assert default["credentials"]["secretRef"] == {
        "secretName": cluster.S3_SECRET,
        "accessKeyKey": "AWS_ACCESS_KEY_ID",
        "secretKeyKey": "AWS_SECRET_ACCESS_KEY",
    }
    settings = one(docs, "ConfigMap", "synk8s-config")["data"]
    service = one(docs, "Service", cluster.MINIO_SERVICE)
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
        assert {d["kind"] for d in scoped} == {
            "ConfigMap",
            "ServiceAccount",
            "Role",
            "RoleBinding",
        }
        assert {d["metadata"]["namespace"] for d in scoped} == {namespace}, name
        binding = one(docs, "RoleBinding", "synk8s-pipeline-runner")
        assert [s["namespace"] for s in binding["subjects"]] == [namespace]
        assert one(docs, "StatefulSet", "minio")["metadata"]["namespace"] == "synk8s"


def _quota(docs):
    return one(docs, "ResourceQuota", "synk8s-compute")["spec"]["hard"]


def _storage(docs):
    return one(docs, "StatefulSet", "minio")["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]


def test_overlays_size_the_quota_and_volume(rendered):
    for name in KUSTOMIZATIONS:
        assert {"requests.nvidia.com/gpu", "requests.cpu", "requests.memory"} <= set(_quota(rendered[name]))
    assert _quota(rendered["overlays/dev"])["requests.nvidia.com/gpu"] == "1"
    assert int(_quota(rendered["overlays/prod"])["requests.nvidia.com/gpu"]) > 1
    assert _storage(rendered["overlays/dev"])["storage"] == "10Gi"
    assert _storage(rendered["overlays/prod"])["storage"] == "1Ti"


def test_gpu_priority_class_never_preempts(rendered):
    priority = one(rendered["base"], "PriorityClass", "synk8s-gpu-batch")
    assert priority["preemptionPolicy"] == "Never"
    assert priority["globalDefault"] is False
    assert 0 < priority["value"] < 1_000_000_000  # below the system-critical range


def test_gpu_pool_convention_matches_profile_defaults_and_checks():
    cfg = synk8s_config.load("paper").cluster
    key, value = cluster.GPU_POOL_LABEL
    assert cfg.gpu_node_selector == {key: value}
    assert list(cfg.gpu_tolerations) == [
        {
            "key": cluster.GPU_TAINT_KEY,
            "operator": "Exists",
            "effect": cluster.GPU_TAINT_EFFECT,
        }
    ]
    assert cfg.accelerator == cluster.GPU_RESOURCE
    assert cfg.s3_secret == cluster.S3_SECRET
    assert cfg.s3_config_map == "synk8s-config"
