"""manifests/serving/: the KServe InferenceService of an exported classifier, its ServiceAccount and policies.

InferenceService is a CRD that kubernetes-validate does not know, so its predictor (KServe inlines a
PodSpec there) is validated as the spec of a Pod, and checked against the `restricted` profile the
base's pods meet. The NetworkPolicies are evaluated with the base's: the classifier reaches MinIO,
and only namespaces labelled as its clients reach the classifier.
"""

import kubernetes_validate
import pytest
from manifest_render import MANIFESTS, containers, one, render, render_all
from test_manifests import DIGEST_PINNED, K8S_VERSIONS, restricted_violations
from test_manifests_policy import _can_connect
from typer.testing import CliRunner

from synk8s import cluster
from synk8s.cli.main import app

pytestmark = pytest.mark.timeout(60)

KSERVE_ONLY = ("minReplicas", "maxReplicas")  # predictor fields beside the inlined PodSpec
NAME = "synk8s-classifier"


@pytest.fixture(scope="module")
def docs():
    return render(MANIFESTS / "serving")


def _predictor_pod(docs):
    isvc = one(docs, "InferenceService", NAME)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    return {k: v for k, v in isvc["spec"]["predictor"].items() if k not in KSERVE_ONLY}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_predictor_is_a_valid_restricted_pod_and_the_rest_validates(docs, version):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": NAME, "namespace": "synk8s"},
           "spec": _predictor_pod(docs)}  # fmt: skip
    kubernetes_validate.validate(pod, version, strict=True)
    for doc in docs:
        if doc["kind"] != "InferenceService":
            kubernetes_validate.validate(doc, version, strict=True)
    assert restricted_violations(pod["spec"]) == []


def test_the_container_is_pinned_limited_read_only_and_reads_the_bucket_without_keys(docs):
    pod = _predictor_pod(docs)
    (container,) = containers(pod)
    assert container["name"] == "kserve-container"  # KServe injects the storage initializer for this name
    assert DIGEST_PINNED.fullmatch(container["image"])
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsUser"] >= 10000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    env = {e["name"]: e for e in container["env"]}
    storage_uri = env["STORAGE_URI"]["value"]
    assert storage_uri.startswith("s3://synk8s/") and storage_uri.endswith("/classifier")
    assert not [e for e in container["env"] if "valueFrom" in e or "KEY" in e["name"]] and "envFrom" not in container
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"

    account = one(docs, "ServiceAccount", pod["serviceAccountName"])
    assert account["secrets"] == [{"name": cluster.S3_SECRET}]
    minio = one(render_all()["base"], "Service", cluster.MINIO_SERVICE)
    endpoint = f"{minio['metadata']['name']}.{minio['metadata']['namespace']}.svc.cluster.local:{cluster.MINIO_PORT}"
    assert account["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] == endpoint


def test_the_container_command_is_one_synk8s_serve_accepts(docs, tmp_path):
    (container,) = containers(_predictor_pod(docs))
    program, *args = container["command"]
    assert program == "synk8s" and args[:2] == ["serve", "/mnt/models"]
    assert args[args.index("--port") + 1] == str(container["ports"][0]["containerPort"])
    # The options parse; the folder does not exist here, so the command stops before listening.
    result = CliRunner().invoke(app, [*args[:1], str(tmp_path), *args[2:]])
    assert result.exit_code == 1 and result.output.startswith(f"error: no exported model at {tmp_path}")


def test_only_the_classifier_reaches_minio_and_only_labelled_namespaces_reach_it(docs):
    policies = [d for d in [*render_all()["base"], *docs] if d["kind"] == "NetworkPolicy"]
    minio = {"namespace": "synk8s", "labels": {"app.kubernetes.io/name": "minio"}}
    classifier = {"namespace": "synk8s", "labels": {"serving.kserve.io/inferenceservice": NAME}}
    client = {"namespace": "team-a", "labels": {"app": "web"}}
    assert _can_connect(policies, classifier, minio, 9000)
    assert not _can_connect(policies, classifier, minio, 9001)
    assert not _can_connect(policies, client, classifier, 8080)  # an unlabelled namespace
    assert _admits_namespace(policies, classifier, {"synk8s.io/classifier-clients": "true"})
    assert not _admits_namespace(policies, classifier, {"kubernetes.io/metadata.name": "team-a"})


def _admits_namespace(policies, target, namespace_labels) -> bool:
    """Whether some ingress rule selecting ``target`` admits port 8080 from a namespace with these labels.

    The base's evaluator knows a namespace by its name label only; the classifier's clients are picked by
    a label of their own.
    """
    from test_manifests_policy import _selects

    for policy in policies:
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"] or not _selects(spec["podSelector"], target["labels"]):
            continue
        for rule in spec.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            peers = [p for p in rule.get("from", []) if "namespaceSelector" in p and "podSelector" not in p]
            if 8080 in ports and any(_selects(p["namespaceSelector"], namespace_labels) for p in peers):
                return True
    return False
