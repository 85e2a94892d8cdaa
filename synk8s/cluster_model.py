"""The objects ``synk8s cluster check`` works on: names from ``manifests/``, the snapshot, a result.

:mod:`synk8s.cluster` runs the checks over a :class:`ClusterSnapshot` and reads one from a live
cluster; the names here are the ones ``manifests/`` installs (see docs/cluster.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
GPU_POOL_LABEL = ("synk8s.io/pool", "gpu")
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_EFFECT = "NoSchedule"
MINIO_SERVICE = "minio"
MINIO_PORT = 9000
KFP_API_NAME = "ml-pipeline"
S3_SECRET = "synk8s-s3-credentials"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MINIO_ROOT_SECRET = "synk8s-minio-root"
MINIO_ROOT_KEYS = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
KUBE_API_POLICY = "synk8s-egress-kube-api"
KUBE_API_PLACEHOLDER = "192.0.2.1/32"  # RFC 5737 documentation address: matches no API server
LAUNCHER_CONFIG_MAP = "kfp-launcher"
PLACEHOLDER = "CHANGE_ME"

NO_CLUSTER_MESSAGE = "no Kubernetes cluster configured: set KUBECONFIG or run inside a cluster"


@dataclass(frozen=True)
class ClusterSnapshot:
    """The objects the checks look at; each carries its own ``metadata.namespace``.

    Attributes:
        nodes: every node (``V1Node``).
        namespaces: the namespaces that exist among those asked for (``V1Namespace``).
        services: ``V1Service`` objects (MinIO, the KFP API).
        endpoints: ``V1Endpoints`` of those services.
        deployments: ``V1Deployment`` objects (the KFP API server).
        secrets: ``V1Secret`` objects (the S3 and MinIO root credentials); values are never shown.
        config_maps: ``V1ConfigMap`` objects (``kfp-launcher``).
        network_policies: ``V1NetworkPolicy`` objects (the Kubernetes API egress policy).
        trainer_crds: the Kubeflow Trainer CRD names installed; None when not read (no Trainer checks).
        training_runtimes: the ClusterTrainingRuntime objects, as dicts.
    """

    nodes: list[Any] = field(default_factory=list)
    namespaces: list[Any] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)
    endpoints: list[Any] = field(default_factory=list)
    deployments: list[Any] = field(default_factory=list)
    secrets: list[Any] = field(default_factory=list)
    config_maps: list[Any] = field(default_factory=list)
    network_policies: list[Any] = field(default_factory=list)
    trainer_crds: set[str] | None = None
    training_runtimes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CheckResult:
    """One line of the report.

    Attributes:
        name: what was checked, e.g. ``"MinIO service"``.
        ok: whether the cluster passes.
        detail: what was found (never a secret value).
        hint: how to fix it when ``ok`` is false; empty when ok.
    """

    name: str
    ok: bool
    detail: str
    hint: str = ""


def find(objects: list[Any], name: str, namespace: str | None = None) -> Any | None:
    """The object of that name (and namespace, when given) among ``objects``, or None."""
    for obj in objects:
        meta = obj.metadata
        if meta.name == name and (namespace is None or meta.namespace == namespace):
            return obj
    return None
