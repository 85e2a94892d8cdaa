"""Reading a live cluster for ``synk8s cluster check``: the kubeconfig, the API client, the snapshot.

Only the objects the checks need are read, by name (plus the node list). The ``kubernetes``
package is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from synk8s.cluster_model import (
    KFP_API_NAME,
    KUBE_API_POLICY,
    LAUNCHER_CONFIG_MAP,
    MINIO_ROOT_SECRET,
    MINIO_SERVICE,
    NO_CLUSTER_MESSAGE,
    S3_SECRET,
    ClusterSnapshot,
)
from synk8s.errors import Synk8sError, UsageError

logger = logging.getLogger(__name__)


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
        except (
            yaml.YAMLError,
            TypeError,
            ValueError,
            AttributeError,
            OSError,
        ) as error:
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

    Only named objects are read (plus the node list), so the caller needs ``get`` on them (Secrets,
    ConfigMap, Services, Endpoints, Deployment, NetworkPolicy, the Trainer CRDs) and ``list`` on nodes and
    ClusterTrainingRuntimes. Arguments are as in :func:`run_checks`; ``api`` is an ``ApiClient``.

    Raises:
        Synk8sError: the API server cannot be reached or refuses a read.
    """
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    from synk8s import trainjob

    run_namespace = run_namespace or namespace
    core, apps, networking = (
        client.CoreV1Api(api),
        client.AppsV1Api(api),
        client.NetworkingV1Api(api),
    )
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
        secrets.append(_read(core.read_namespaced_secret, MINIO_ROOT_SECRET, namespace))
        config_maps = [_read(core.read_namespaced_config_map, LAUNCHER_CONFIG_MAP, run_namespace)]
        network_policies = [_read(networking.read_namespaced_network_policy, KUBE_API_POLICY, namespace)]
        trainer_crds, runtimes = trainjob.read_trainer(api)
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
        network_policies=present(network_policies),
        trainer_crds=trainer_crds,
        training_runtimes=runtimes,
    )
