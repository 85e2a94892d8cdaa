"""Least privilege in the rendered manifests: Pod Security labels, NetworkPolicies, RBAC, MinIO users.

The NetworkPolicies are evaluated, not just read: a small evaluator below applies the
NetworkPolicy semantics (a pod selected by a policy of a type is isolated for that direction;
traffic passes when some rule of a selecting policy admits peer and port) to sample pods.
The bucket Job's script runs for real under /bin/sh with a stand-in ``mc`` that logs its calls.
"""

import ipaddress
import json
import os
import re
import subprocess

import pytest
from manifest_render import KUSTOMIZATIONS, containers, one, pod_labels, render_all

from synk8s import cluster

pytestmark = pytest.mark.timeout(60)

RUNNER = "synk8s-pipeline-runner"
KFP_TASK = {"pipelines.kubeflow.org/v2_component": "true"}
TRAINJOB_POD = {"jobset.sigs.k8s.io/jobset-name": "pretrain-abc"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


@pytest.fixture(scope="module")
def rendered():
    return render_all()


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_namespace_pod_security_levels(rendered, name):
    labels = one(rendered[name], "Namespace", "synk8s")["metadata"]["labels"]
    psa = {k.removeprefix("pod-security.kubernetes.io/"): v for k, v in labels.items() if "pod-security" in k}
    # Runs execute in `synk8s` except in dev; KFP's executor pods pass only `baseline` on their own.
    enforce = "restricted" if name == "overlays/dev" else "baseline"
    assert psa == {
        "enforce": enforce,
        "enforce-version": "v1.30",
        "warn": "restricted",
        "warn-version": "latest",
        "audit": "restricted",
        "audit-version": "latest",
    }


# NetworkPolicy evaluation --------------------------------------------------------------------


def _selects(selector, labels):
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        ok = (
            ok
            and {
                "Exists": key in labels,
                "DoesNotExist": key not in labels,
                "In": labels.get(key) in expression.get("values", []),
                "NotIn": labels.get(key) not in expression.get("values", []),
            }[operator]
        )
    return ok


def _peer_admits(peer, policy_namespace, other):
    if "ipBlock" in peer:
        if "ip" not in other:
            return False
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other["ip"])
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if "ip" in other:
        return False
    namespace_ok = (
        _selects(
            peer["namespaceSelector"],
            {"kubernetes.io/metadata.name": other["namespace"]},
        )
        if "namespaceSelector" in peer
        else other["namespace"] == policy_namespace
    )
    return namespace_ok and _selects(peer.get("podSelector", {}), other["labels"])


def _allowed(policies, pod, other, port, direction):
    """Whether `pod` may send to (Egress) or receive from (Ingress) `other` on TCP/UDP `port`."""
    field, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod["namespace"]
        and direction in p["spec"]["policyTypes"]
        and _selects(p["spec"]["podSelector"], pod["labels"])
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(field, []):
            peer_ok = peers not in rule or any(
                _peer_admits(peer, policy["metadata"]["namespace"], other) for peer in rule[peers]
            )
            port_ok = "ports" not in rule or any(p["port"] == port for p in rule["ports"])
            if peer_ok and port_ok:
                return True
    return False


def _can_connect(policies, source, target, port):
    """Both ends must allow: the source's egress and, for a pod, the target's ingress."""
    egress = _allowed(policies, source, target, port, "Egress")
    return egress and ("ip" in target or _allowed(policies, target, source, port, "Ingress"))


def _pod(namespace, **labels):
    return {"namespace": namespace, "labels": labels}


@pytest.fixture(scope="module")
def network(rendered):
    docs = rendered["base"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    api = one(docs, "NetworkPolicy", cluster.KUBE_API_POLICY)["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"]
    pods = {
        "minio": _pod("synk8s", **pod_labels(one(docs, "StatefulSet", "minio"))),
        "bucket job": _pod("synk8s", **pod_labels(one(docs, "Job", "synk8s-create-bucket"))),
        "kfp task": _pod("synk8s", **KFP_TASK),
        "trainjob": _pod("synk8s", **TRAINJOB_POD),
        "stranger": _pod("synk8s", app="other"),
        "kfp task elsewhere": _pod("team-a", **KFP_TASK),
        "kfp ui": _pod("kubeflow", app="ml-pipeline-ui"),
        "kfp api": _pod("kubeflow", app="ml-pipeline"),
        "dns": _pod("kube-system", **{"k8s-app": "kube-dns"}),
        "kube api": {"ip": str(ipaddress.ip_network(api)[0])},
        "internet": {"ip": "203.0.113.7"},
    }
    return policies, pods


def test_namespace_denies_everything_by_default(network):
    policies, _ = network
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] and "egress" not in p["spec"]
    ]
    assert len(deny) == 1 and set(deny[0]["spec"]["policyTypes"]) == {
        "Ingress",
        "Egress",
    }


def test_minio_is_reachable_only_from_pipeline_pods_here_and_the_kfp_namespace(network):
    policies, pods = network
    admitted = {
        name
        for name, pod in pods.items()
        if "ip" not in pod and name != "minio" and _can_connect(policies, pod, pods["minio"], 9000)
    }
    assert admitted == {"bucket job", "kfp task", "trainjob", "kfp ui", "kfp api"}
    # Policies in `synk8s` do not limit the egress of pods elsewhere: the ingress rule decides.
    assert not _allowed(policies, pods["minio"], pods["kfp task elsewhere"], 9000, "Ingress")
    assert not any(_can_connect(policies, pod, pods["minio"], 9001) for pod in pods.values() if "ip" not in pod)


@pytest.mark.parametrize("source", ["minio", "bucket job", "kfp task", "trainjob", "stranger"])
def test_egress_is_limited_to_dns_minio_and_for_kfp_tasks_the_apis(network, source):
    policies, pods = network
    pod = pods[source]
    assert _allowed(policies, pod, pods["dns"], 53, "Egress")
    assert _allowed(policies, pod, pods["minio"], 9000, "Egress")
    assert not _allowed(policies, pod, pods["internet"], 443, "Egress")
    assert not _allowed(policies, pod, pods["kfp ui"], 3000, "Egress")
    is_task = source == "kfp task"
    assert _allowed(policies, pod, pods["kube api"], 6443, "Egress") is is_task
    assert _allowed(policies, pod, pods["kube api"], 443, "Egress") is is_task
    assert not _allowed(policies, pod, pods["kube api"], 22, "Egress")
    for port in (8887, 8888, 8080, 8333, 9000):
        assert _allowed(policies, pod, pods["kfp api"], port, "Egress") is is_task
    assert _can_connect(policies, pod, pods["trainjob"], 29500) is (source == "trainjob")


def test_kube_api_egress_ships_the_placeholder_that_cluster_check_reports(rendered):
    for name in KUSTOMIZATIONS:
        policy = one(rendered[name], "NetworkPolicy", cluster.KUBE_API_POLICY)
        (rule,) = policy["spec"]["egress"]
        assert rule["to"] == [{"ipBlock": {"cidr": cluster.KUBE_API_PLACEHOLDER}}]
        assert sorted(p["port"] for p in rule["ports"]) == [443, 6443]
    assert ipaddress.ip_network(cluster.KUBE_API_PLACEHOLDER).subnet_of(ipaddress.ip_network("192.0.2.0/24"))


# RBAC ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_runner_role_grants_exactly_what_run_pods_use(rendered, name):
    docs = rendered[name]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = one(docs, "Role", RUNNER)
    granted = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = f"{group}/{resource}" if group else resource
                assert key not in granted, f"{key} granted twice"
                granted[key] = (set(rule["verbs"]), set(rule.get("resourceNames", [])))
    assert granted == {
        "secrets": ({"get"}, {cluster.S3_SECRET}),
        "configmaps": ({"get"}, {cluster.LAUNCHER_CONFIG_MAP}),
        "pods": ({"get"}, set()),
        "argoproj.io/workflowtaskresults": ({"create", "patch"}, set()),
        "trainer.kubeflow.org/trainjobs": (
            {"create", "get", "list", "watch", "delete"},
            set(),
        ),
        "trainer.kubeflow.org/trainingruntimes": ({"get", "list"}, set()),
    }
    binding = one(docs, "RoleBinding", RUNNER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": RUNNER,
    }
    account = one(docs, "ServiceAccount", RUNNER)
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": RUNNER,
            "namespace": account["metadata"]["namespace"],
        }
    ]
    assert role["metadata"]["namespace"] == account["metadata"]["namespace"]


# MinIO users ---------------------------------------------------------------------------------


def _references(doc, secret):
    return re.search(rf"(?<![\w-]){re.escape(secret)}(?![\w-])", json.dumps(doc)) is not None


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_root_credentials_stay_with_minio_and_the_bucket_job(rendered, name):
    docs = rendered[name]
    readers = {(d["kind"], d["metadata"]["name"]) for d in docs if _references(d, cluster.MINIO_ROOT_SECRET)}
    assert readers == {("StatefulSet", "minio"), ("Job", "synk8s-create-bucket")}
    pipeline_readers = {(d["kind"], d["metadata"]["name"]) for d in docs if _references(d, cluster.S3_SECRET)}
    assert pipeline_readers == {
        ("Job", "synk8s-create-bucket"),
        ("ConfigMap", cluster.LAUNCHER_CONFIG_MAP),
        ("Role", RUNNER),
    }


def test_pipeline_policy_covers_the_store_bucket_only(rendered):
    docs = rendered["base"]
    bucket = one(docs, "ConfigMap", "synk8s-config")["data"]["SYNK8S_STORE_ROOT"].removeprefix("s3://").strip("/")
    policy = json.loads(one(docs, "ConfigMap", "synk8s-bucket-policy")["data"]["synk8s-pipeline.json"])
    actions = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in statement["Resource"]:
            assert resource in (f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*")
            actions.setdefault(resource, set()).update(statement["Action"])
    assert actions[f"arn:aws:s3:::{bucket}"] == {
        "s3:GetBucketLocation",
        "s3:ListBucket",
        "s3:ListBucketMultipartUploads",
    }
    # What synk8s.storage and KFP's launcher do: stat/get, put (multipart), remove objects.
    assert actions[f"arn:aws:s3:::{bucket}/*"] == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }


def _run_bucket_job(rendered, tmp_path, root_user, pipeline_user):
    """Run the Job's script with its volumes as folders under tmp_path and a logging stand-in mc."""
    docs = rendered["base"]
    pod = one(docs, "Job", "synk8s-create-bucket")["spec"]["template"]["spec"]
    (container,) = containers(pod)
    script = container["args"][0]
    values = {
        cluster.MINIO_ROOT_SECRET: {
            "MINIO_ROOT_USER": root_user,
            "MINIO_ROOT_PASSWORD": "root-pass",
        },
        cluster.S3_SECRET: {
            "AWS_ACCESS_KEY_ID": pipeline_user,
            "AWS_SECRET_ACCESS_KEY": "pipe-secret\n",
        },
    }
    config_maps = {"synk8s-bucket-policy": one(docs, "ConfigMap", "synk8s-bucket-policy")["data"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # Mount paths become tokens first, so a folder path (itself under /tmp) is never rewritten.
    for index, mount in enumerate(container["volumeMounts"]):
        script = script.replace(mount["mountPath"] + "/", f"@{index}@/").replace(
            f" {mount['mountPath']} ", f" @{index}@ "
        )
    for index, mount in enumerate(container["volumeMounts"]):
        folder = tmp_path / mount["name"]
        folder.mkdir()
        volume = volumes[mount["name"]]
        if "secret" in volume:
            for item in volume["secret"]["items"]:
                (folder / item["path"]).write_text(values[volume["secret"]["secretName"]][item["key"]])
        elif "configMap" in volume:
            for key, text in config_maps[volume["configMap"]["name"]].items():
                (folder / key).write_text(text)
        script = script.replace(f"@{index}@", str(folder))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "mc.log"
    (bin_dir / "mc").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n')
    (bin_dir / "mc").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(
        container["command"] + [script],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls, tmp_path


def test_bucket_job_creates_bucket_policy_and_pipeline_user(rendered, tmp_path):
    result, calls, root = _run_bucket_job(rendered, tmp_path, "root-admin", "synk8s-pipelines")
    assert result.returncode == 0, result.stderr
    config = f"--config-dir {root / 'tmp'}/mc"
    assert calls == [
        f"{config} alias set store http://minio:9000 root-admin root-pass",
        f"{config} mb --ignore-existing store/synk8s",
        f"{config} admin policy create store synk8s-pipeline {root / 'policy'}/synk8s-pipeline.json",
        f"{config} admin user add store synk8s-pipelines pipe-secret",
        f"{config} admin policy attach store synk8s-pipeline --user synk8s-pipelines",
    ]
    assert "pipe-secret" not in result.stdout + result.stderr and "root-pass" not in result.stdout + result.stderr


def test_bucket_job_refuses_root_as_the_pipeline_user(rendered, tmp_path):
    result, calls, _ = _run_bucket_job(rendered, tmp_path, "same-key", "same-key")
    assert result.returncode == 1
    assert "synk8s-s3-credentials holds MinIO's root user" in result.stdout
    assert calls == []
