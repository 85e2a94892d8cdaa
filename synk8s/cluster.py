"""Is this Kubernetes cluster ready for synk8s? The checks behind ``synk8s cluster check``.

The checks are a pure function, :func:`run_checks`, over a :class:`ClusterSnapshot`: lists of
``kubernetes.client`` model objects (``V1Node``, ``V1Service``, ...). :func:`read_snapshot` (from
:mod:`synk8s.cluster_read`, re-exported here with the names of :mod:`synk8s.cluster_model`) fills
one from a live cluster, reading only the named objects synk8s needs.

The cluster layout checked here is the one ``manifests/`` installs (see docs/cluster.md): MinIO, its
root Secret ``synk8s-minio-root`` and the pipelines' Secret ``synk8s-s3-credentials`` (another MinIO
user) in the synk8s namespace; the ``kfp-launcher`` ConfigMap and a copy of the pipelines' Secret in
the namespace where runs execute; when runs execute next to MinIO, the NetworkPolicy that lets them
reach the Kubernetes API, set to a real address; the KFP API Service ``ml-pipeline`` in the KFP
namespace; GPU nodes labelled ``synk8s.io/pool=gpu`` and tainted ``nvidia.com/gpu``; the Kubeflow
Trainer CRDs and the ``torch-distributed`` ClusterTrainingRuntime that the training stages' TrainJobs use.
"""

from __future__ import annotations

import base64
from typing import Any

from synk8s.cluster_model import (
    GPU_POOL_LABEL,
    GPU_RESOURCE,
    GPU_TAINT_EFFECT,
    GPU_TAINT_KEY,
    KFP_API_NAME,
    KUBE_API_PLACEHOLDER,
    KUBE_API_POLICY,
    LAUNCHER_CONFIG_MAP,
    MINIO_PORT,
    MINIO_ROOT_KEYS,
    MINIO_ROOT_SECRET,
    MINIO_SERVICE,
    NO_CLUSTER_MESSAGE,
    PLACEHOLDER,
    S3_SECRET,
    S3_SECRET_KEYS,
    CheckResult,
    ClusterSnapshot,
    find,
)
from synk8s.cluster_read import api_client, read_snapshot

__all__ = [
    "GPU_POOL_LABEL",
    "GPU_RESOURCE",
    "GPU_TAINT_EFFECT",
    "GPU_TAINT_KEY",
    "KFP_API_NAME",
    "KUBE_API_PLACEHOLDER",
    "KUBE_API_POLICY",
    "LAUNCHER_CONFIG_MAP",
    "MINIO_PORT",
    "MINIO_ROOT_KEYS",
    "MINIO_ROOT_SECRET",
    "MINIO_SERVICE",
    "NO_CLUSTER_MESSAGE",
    "PLACEHOLDER",
    "S3_SECRET",
    "S3_SECRET_KEYS",
    "CheckResult",
    "ClusterSnapshot",
    "api_client",
    "read_snapshot",
    "run_checks",
]

_NAMES_SHOWN = 3  # node names listed in a detail before "..."


def _names(nodes: list[Any]) -> str:
    names = sorted(node.metadata.name for node in nodes)
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown + (", ..." if len(names) > _NAMES_SHOWN else "")


def _gpu_count(node: Any) -> int:
    allocatable = (node.status.allocatable if node.status else None) or {}
    try:
        return int(allocatable.get(GPU_RESOURCE, "0"))
    except ValueError:
        return 0


def _in_gpu_pool(node: Any) -> bool:
    key, value = GPU_POOL_LABEL
    return (node.metadata.labels or {}).get(key) == value


def _has_gpu_taint(node: Any) -> bool:
    taints = (node.spec.taints if node.spec else None) or []
    return any(t.key == GPU_TAINT_KEY and t.effect == GPU_TAINT_EFFECT for t in taints)


def _check_gpu_nodes(nodes: list[Any]) -> list[CheckResult]:
    gpu_nodes = [n for n in nodes if _gpu_count(n) > 0]
    pool = [n for n in gpu_nodes if _in_gpu_pool(n)]
    untainted = [n for n in pool if not _has_gpu_taint(n)]
    label = "=".join(GPU_POOL_LABEL)
    results = [
        CheckResult(
            "GPU nodes",
            bool(gpu_nodes),
            f"{len(gpu_nodes)} of {len(nodes)} nodes report allocatable {GPU_RESOURCE}"
            + (f" ({sum(map(_gpu_count, gpu_nodes))} GPUs)" if gpu_nodes else ""),
            "" if gpu_nodes else "install the NVIDIA GPU operator or device plugin so GPU nodes report nvidia.com/gpu",
        ),
        CheckResult(
            "GPU pool label",
            bool(pool),
            f"{len(pool)} of {len(gpu_nodes)} GPU nodes labelled {label}" + (f": {_names(pool)}" if pool else ""),
            "" if pool else f"kubectl label node NODE {label}",
        ),
    ]
    if not pool:
        taint_ok, taint_detail = False, "no GPU pool nodes to check"
    elif untainted:
        taint_ok, taint_detail = False, f"untainted GPU pool nodes: {_names(untainted)}"
    else:
        taint_ok, taint_detail = (
            True,
            f"all {len(pool)} GPU pool nodes tainted {GPU_TAINT_KEY}:{GPU_TAINT_EFFECT}",
        )
    results.append(
        CheckResult(
            "GPU taint",
            taint_ok,
            taint_detail,
            "" if taint_ok else f"kubectl taint node NODE {GPU_TAINT_KEY}=present:{GPU_TAINT_EFFECT}",
        )
    )
    return results


def _check_namespace(snapshot: ClusterSnapshot, namespace: str) -> CheckResult:
    found = any(ns.metadata.name == namespace for ns in snapshot.namespaces)
    return CheckResult(
        f"namespace {namespace}",
        found,
        "exists" if found else "not found",
        "" if found else "kubectl apply -k manifests/overlays/dev (or prod)",
    )


def _check_minio(snapshot: ClusterSnapshot, namespace: str) -> list[CheckResult]:
    service = find(snapshot.services, MINIO_SERVICE, namespace)
    ports = {p.port for p in (service.spec.ports or [])} if service is not None and service.spec else set()
    service_ok = MINIO_PORT in ports
    if service is None:
        service_detail = f"no Service {MINIO_SERVICE} in {namespace}"
    else:
        service_detail = f"Service {namespace}/{MINIO_SERVICE} ports {sorted(ports)}"
    endpoints = find(snapshot.endpoints, MINIO_SERVICE, namespace)
    ready = sum(len(s.addresses or []) for s in (endpoints.subsets or [])) if endpoints is not None else 0
    return [
        CheckResult(
            "MinIO service",
            service_ok,
            service_detail,
            ""
            if service_ok
            else f"kubectl apply -k manifests/overlays/dev (Service {MINIO_SERVICE}, port {MINIO_PORT})",
        ),
        CheckResult(
            "MinIO endpoints",
            ready > 0,
            f"{ready} ready address(es)",
            ""
            if ready
            else f"kubectl -n {namespace} describe pod -l app.kubernetes.io/name=minio (Secret {S3_SECRET}?)",
        ),
    ]


def _check_kfp_api(snapshot: ClusterSnapshot, kfp_namespace: str) -> CheckResult:
    service = find(snapshot.services, KFP_API_NAME, kfp_namespace)
    deployment = find(snapshot.deployments, KFP_API_NAME, kfp_namespace)
    if service is not None:
        ok, detail = True, f"Service {kfp_namespace}/{KFP_API_NAME}"
    elif deployment is not None:
        ok, detail = (
            True,
            f"Deployment {kfp_namespace}/{KFP_API_NAME} (no Service of that name)",
        )
    else:
        ok, detail = (
            False,
            f"no Service or Deployment {KFP_API_NAME} in {kfp_namespace}",
        )
    return CheckResult(
        "KFP API",
        ok,
        detail,
        "" if ok else "install Kubeflow Pipelines 2.x, or pass --kfp-namespace where it runs",
    )


def _decoded(secret: Any, key: str) -> str:
    """A Secret value as text: ``data`` is base64 (as the API returns it), ``string_data`` plain."""
    if secret.string_data and key in secret.string_data:
        return secret.string_data[key] or ""
    raw = (secret.data or {}).get(key)
    if not raw:
        return ""
    try:
        return base64.b64decode(raw).decode("utf-8", errors="replace")
    except ValueError:
        return raw


def _check_secret(
    snapshot: ClusterSnapshot,
    namespace: str,
    secret_name: str = S3_SECRET,
    keys: tuple[str, ...] = S3_SECRET_KEYS,
) -> CheckResult:
    name = f"Secret {secret_name} in {namespace}"
    create = f"kubectl -n {namespace} create secret generic {secret_name} " + " ".join(
        f"--from-literal={key}=..." for key in keys
    )
    secret = find(snapshot.secrets, secret_name, namespace)
    if secret is None:
        return CheckResult(name, False, "not found", create)
    values = {key: _decoded(secret, key) for key in keys}
    missing = [key for key, value in values.items() if not value]
    placeholders = [key for key, value in values.items() if value == PLACEHOLDER]
    if missing:
        return CheckResult(name, False, f"missing or empty keys: {', '.join(missing)}", create)
    if placeholders:
        return CheckResult(
            name,
            False,
            f"still holds the template placeholder in: {', '.join(placeholders)}",
            f"kubectl -n {namespace} delete secret {secret_name}; then {create}",
        )
    return CheckResult(name, True, f"keys {', '.join(keys)} set")


def _check_separate_users(snapshot: ClusterSnapshot, namespace: str) -> CheckResult | None:
    """The pipelines' access key must not be MinIO's root user; None when either Secret is missing."""
    root = find(snapshot.secrets, MINIO_ROOT_SECRET, namespace)
    pipelines = find(snapshot.secrets, S3_SECRET, namespace)
    if root is None or pipelines is None:
        return None
    same = _decoded(root, MINIO_ROOT_KEYS[0]) == _decoded(pipelines, S3_SECRET_KEYS[0])
    return CheckResult(
        "pipeline MinIO user",
        not same,
        f"{S3_SECRET} holds MinIO's root user" if same else f"{S3_SECRET} holds a user other than MinIO's root",
        f"put new pipeline keys in {S3_SECRET} and rerun the bucket Job (docs/cluster.md)" if same else "",
    )


def _check_api_egress(snapshot: ClusterSnapshot, namespace: str) -> CheckResult:
    """Pods of runs next to MinIO reach the Kubernetes API only through this policy's address."""
    name = f"NetworkPolicy {KUBE_API_POLICY}"
    policy = find(snapshot.network_policies, KUBE_API_POLICY, namespace)
    if policy is None:
        return CheckResult(name, False, "not found", "kubectl apply -k manifests/overlays/prod")
    cidrs = [
        peer.ip_block.cidr for rule in policy.spec.egress or [] for peer in rule.to or [] if peer.ip_block is not None
    ]
    ok = bool(cidrs) and KUBE_API_PLACEHOLDER not in cidrs
    return CheckResult(
        name,
        ok,
        f"allows {', '.join(cidrs) or 'no address'}"
        + ("" if ok else f" (placeholder {KUBE_API_PLACEHOLDER}: runs cannot reach the API)"),
        ""
        if ok
        else "set the API server's endpoint addresses "
        "(kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes) in an overlay patch",
    )


def _check_launcher(snapshot: ClusterSnapshot, run_namespace: str) -> CheckResult:
    name = f"ConfigMap {LAUNCHER_CONFIG_MAP} in {run_namespace}"
    config_map = find(snapshot.config_maps, LAUNCHER_CONFIG_MAP, run_namespace)
    data = (config_map.data or {}) if config_map is not None else {}
    root = data.get("defaultPipelineRoot", "")
    ok = bool(root) and "providers" in data
    if config_map is None:
        detail = "not found"
    elif ok:
        detail = f"defaultPipelineRoot {root}"
    else:
        detail = "lacks defaultPipelineRoot or providers"
    return CheckResult(
        name,
        ok,
        detail,
        "" if ok else "kubectl apply -k manifests/overlays/dev (it sets the run namespace's kfp-launcher)",
    )


def run_checks(
    snapshot: ClusterSnapshot,
    namespace: str = "synk8s",
    run_namespace: str | None = None,
    kfp_namespace: str = "kubeflow",
) -> list[CheckResult]:
    """Check a cluster snapshot for everything synk8s needs.

    Args:
        snapshot: the cluster's objects, as :func:`read_snapshot` returns them.
        namespace: where MinIO and the S3 credentials live (default ``synk8s``).
        run_namespace: where pipeline runs execute (the KFP user namespace); it needs the
            ``kfp-launcher`` ConfigMap and its own copy of the Secret. Default: ``namespace``;
            then the Kubernetes API egress policy there is checked too.
        kfp_namespace: where the KFP API server runs (default ``kubeflow``).

    Returns:
        One :class:`CheckResult` per line of the report, in a fixed order.
    """
    run_namespace = run_namespace or namespace
    results = _check_gpu_nodes(snapshot.nodes)
    results.append(_check_namespace(snapshot, namespace))
    results.extend(_check_minio(snapshot, namespace))
    results.append(_check_kfp_api(snapshot, kfp_namespace))
    results.append(_check_secret(snapshot, namespace, MINIO_ROOT_SECRET, MINIO_ROOT_KEYS))
    results.append(_check_secret(snapshot, namespace))
    separate = _check_separate_users(snapshot, namespace)
    if separate is not None:
        results.append(separate)
    if run_namespace != namespace:
        results.append(_check_secret(snapshot, run_namespace))
    results.append(_check_launcher(snapshot, run_namespace))
    if run_namespace == namespace:
        results.append(_check_api_egress(snapshot, namespace))
    if snapshot.trainer_crds is not None:
        from synk8s.trainjob import trainer_checks

        results.extend(trainer_checks(snapshot.trainer_crds, snapshot.training_runtimes))
    return results
