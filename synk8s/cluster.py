"""Is this Kubernetes cluster ready for synk8s? The checks behind ``synk8s cluster check``.

The checks are a pure function, :func:`run_checks`, over a :class:`ClusterSnapshot`: lists of
``kubernetes.client`` model objects (``V1Node``, ``V1Service``, ...). :func:`read_snapshot` fills
one from a live cluster, reading only the named objects synk8s needs. The ``kubernetes`` package is
imported inside the functions that talk to the API, so importing this module stays cheap.

The cluster layout checked here is the one ``manifests/`` installs (see docs/cluster.md): MinIO and
the Secret ``synk8s-s3-credentials`` in the synk8s namespace; the ``kfp-launcher`` ConfigMap and a
copy of the Secret in the namespace where runs execute; the KFP API Service ``ml-pipeline`` in the
KFP namespace; GPU nodes labelled ``synk8s.io/pool=gpu`` and tainted ``nvidia.com/gpu``.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synk8s.errors import Synk8sError, UsageError

logger = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_POOL_LABEL = ("synk8s.io/pool", "gpu")
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_EFFECT = "NoSchedule"
MINIO_SERVICE = "minio"
MINIO_PORT = 9000
KFP_API_NAME = "ml-pipeline"
S3_SECRET = "synk8s-s3-credentials"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
LAUNCHER_CONFIG_MAP = "kfp-launcher"
PLACEHOLDER = "CHANGE_ME"
_NAMES_SHOWN = 3  # node names listed in a detail before "..."

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
        secrets: ``V1Secret`` objects (the S3 credentials); values are never shown.
        config_maps: ``V1ConfigMap`` objects (``kfp-launcher``).
    """

    nodes: list[Any] = field(default_factory=list)
    namespaces: list[Any] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)
    endpoints: list[Any] = field(default_factory=list)
    deployments: list[Any] = field(default_factory=list)
    secrets: list[Any] = field(default_factory=list)
    config_maps: list[Any] = field(default_factory=list)


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


def _find(objects: list[Any], name: str, namespace: str | None = None) -> Any | None:
    for obj in objects:
        meta = obj.metadata
        if meta.name == name and (namespace is None or meta.namespace == namespace):
            return obj
    return None


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
        taint_ok, taint_detail = True, f"all {len(pool)} GPU pool nodes tainted {GPU_TAINT_KEY}:{GPU_TAINT_EFFECT}"
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
    service = _find(snapshot.services, MINIO_SERVICE, namespace)
    ports = {p.port for p in (service.spec.ports or [])} if service is not None and service.spec else set()
    service_ok = MINIO_PORT in ports
    if service is None:
        service_detail = f"no Service {MINIO_SERVICE} in {namespace}"
    else:
        service_detail = f"Service {namespace}/{MINIO_SERVICE} ports {sorted(ports)}"
    endpoints = _find(snapshot.endpoints, MINIO_SERVICE, namespace)
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
    service = _find(snapshot.services, KFP_API_NAME, kfp_namespace)
    deployment = _find(snapshot.deployments, KFP_API_NAME, kfp_namespace)
    if service is not None:
        ok, detail = True, f"Service {kfp_namespace}/{KFP_API_NAME}"
    elif deployment is not None:
        ok, detail = True, f"Deployment {kfp_namespace}/{KFP_API_NAME} (no Service of that name)"
    else:
        ok, detail = False, f"no Service or Deployment {KFP_API_NAME} in {kfp_namespace}"
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


def _check_secret(snapshot: ClusterSnapshot, namespace: str) -> CheckResult:
    name = f"Secret {S3_SECRET} in {namespace}"
    create = f"kubectl -n {namespace} create secret generic {S3_SECRET} " + " ".join(
        f"--from-literal={key}=..." for key in S3_SECRET_KEYS
    )
    secret = _find(snapshot.secrets, S3_SECRET, namespace)
    if secret is None:
        return CheckResult(name, False, "not found", create)
    values = {key: _decoded(secret, key) for key in S3_SECRET_KEYS}
    missing = [key for key, value in values.items() if not value]
    placeholders = [key for key, value in values.items() if value == PLACEHOLDER]
    if missing:
        return CheckResult(name, False, f"missing or empty keys: {', '.join(missing)}", create)
    if placeholders:
        return CheckResult(
            name,
            False,
            f"still holds the template placeholder in: {', '.join(placeholders)}",
            f"kubectl -n {namespace} delete secret {S3_SECRET}; then {create}",
        )
    return CheckResult(name, True, f"keys {', '.join(S3_SECRET_KEYS)} set")


def _check_launcher(snapshot: ClusterSnapshot, run_namespace: str) -> CheckResult:
    name = f"ConfigMap {LAUNCHER_CONFIG_MAP} in {run_namespace}"
    config_map = _find(snapshot.config_maps, LAUNCHER_CONFIG_MAP, run_namespace)
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
            ``kfp-launcher`` ConfigMap and its own copy of the Secret. Default: ``namespace``.
        kfp_namespace: where the KFP API server runs (default ``kubeflow``).

    Returns:
        One :class:`CheckResult` per line of the report, in a fixed order.
    """
    run_namespace = run_namespace or namespace
    results = _check_gpu_nodes(snapshot.nodes)
    results.append(_check_namespace(snapshot, namespace))
    results.extend(_check_minio(snapshot, namespace))
    results.append(_check_kfp_api(snapshot, kfp_namespace))
    results.append(_check_secret(snapshot, namespace))
    if run_namespace != namespace:
        results.append(_check_secret(snapshot, run_namespace))
    results.append(_check_launcher(snapshot, run_namespace))
    return results


def _kubeconfig_path(kubeconfig: Path | None) -> Path | None:
    """The kubeconfig file to use, following kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config."""
    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise UsageError(f"kubeconfig {kubeconfig} does not exist; pass an existing file to --kubeconfig")
        return kubeconfig
    env = os.environ.get("KUBECONFIG")
    candidates = [Path(p) for p in env.split(os.pathsep) if p] if env else [Path.home() / ".kube" / "config"]
    return next((p for p in candidates if p.is_file()), None)


def api_client(kubeconfig: Path | None = None, context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` for the chosen kubeconfig and context, or in-cluster.

    Args:
        kubeconfig: kubeconfig file; default ``$KUBECONFIG`` or ``~/.kube/config``.
        context: kubeconfig context; default the file's current context.

    Raises:
        Synk8sError: no kubeconfig exists and this is not a pod, or the kubeconfig is unusable.
        UsageError: ``kubeconfig`` was given but does not exist.
    """
    import yaml
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = _kubeconfig_path(kubeconfig)
    if path is not None:
        try:
            return config.new_client_from_config(config_file=str(path), context=context, persist_config=False)
        except ConfigException as error:
            reason = " ".join(str(error).split())
            raise Synk8sError(f"cannot use kubeconfig {path}: {reason}") from None
        except (yaml.YAMLError, TypeError, ValueError, AttributeError, OSError) as error:
            # The kubernetes loader indexes the parsed YAML without checking its shape, so a file that
            # is not YAML or has the wrong structure fails with one of these instead of ConfigException.
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            raise Synk8sError(
                f"cannot use kubeconfig {path}: it is not a valid kubeconfig ({reason}); "
                "fix the file or pass another one to --kubeconfig"
            ) from error
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    raise Synk8sError(NO_CLUSTER_MESSAGE)


def _refused(error: Any, what: str) -> Synk8sError:
    return Synk8sError(
        f"the Kubernetes API refused to read {what} ({error.status} {error.reason}); "
        "check your credentials and RBAC permissions"
    )


def _read(read, name: str, namespace: str | None = None) -> Any | None:
    """Call a ``read_*`` API method; None when the object does not exist."""
    from kubernetes.client.exceptions import ApiException

    args = (name,) if namespace is None else (name, namespace)
    try:
        return read(*args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _refused(error, f"{namespace}/{name}" if namespace else name) from None


def _list_nodes(core: Any) -> list[Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        return core.list_node().items
    except ApiException as error:
        raise _refused(error, "the node list") from None


def read_snapshot(
    api: Any,
    namespace: str = "synk8s",
    run_namespace: str | None = None,
    kfp_namespace: str = "kubeflow",
) -> ClusterSnapshot:
    """Read the objects :func:`run_checks` needs from a live cluster.

    Only named objects are read (plus the node list), so the caller needs ``get`` on them and
    ``list`` on nodes. Arguments are as in :func:`run_checks`; ``api`` is an ``ApiClient``.

    Raises:
        Synk8sError: the API server cannot be reached or refuses a read.
    """
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    run_namespace = run_namespace or namespace
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    host = api.configuration.host
    try:
        nodes = _list_nodes(core)
        namespaces = [_read(core.read_namespace, ns) for ns in sorted({namespace, run_namespace})]
        services = [
            _read(core.read_namespaced_service, MINIO_SERVICE, namespace),
            _read(core.read_namespaced_service, KFP_API_NAME, kfp_namespace),
        ]
        endpoints = [_read(core.read_namespaced_endpoints, MINIO_SERVICE, namespace)]
        deployments = [_read(apps.read_namespaced_deployment, KFP_API_NAME, kfp_namespace)]
        secrets = [_read(core.read_namespaced_secret, S3_SECRET, ns) for ns in sorted({namespace, run_namespace})]
        config_maps = [_read(core.read_namespaced_config_map, LAUNCHER_CONFIG_MAP, run_namespace)]
    except HTTPError as error:
        reason = " ".join(str(error).split())
        raise Synk8sError(f"cannot reach the Kubernetes API at {host}: {reason}") from None

    def present(objects: list[Any]) -> list[Any]:
        return [obj for obj in objects if obj is not None]

    logger.debug("read %d nodes from %s", len(nodes), host)
    return ClusterSnapshot(
        nodes=nodes,
        namespaces=present(namespaces),
        services=present(services),
        endpoints=present(endpoints),
        deployments=present(deployments),
        secrets=present(secrets),
        config_maps=present(config_maps),
    )
