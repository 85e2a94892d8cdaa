"""Distributed training on a cluster: a Kubeflow Trainer ``TrainJob`` that runs a stage's DDP function.

The pipeline's training task (pre-training, fine-tuning, detection) does not train in its own pod: it
writes the run config to the store, creates a ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) on the
``torch-distributed`` ClusterTrainingRuntime (JobSet underneath), follows its status, and deletes it when it
ends. Every node runs the synk8s image with :func:`synk8s.distributed.torchrun_command` (torchrun takes
nodes, processes per node and the rendezvous from the runtime's ``PET_*`` variables), the store endpoint
from the ConfigMap and the credentials from the Secret named in ``cluster``. A failed TrainJob fails the
task with the TrainJob's reason; a retried task starts a fresh TrainJob that resumes from the last
checkpoint in the store.

    obj = trainjob_object(cfg, name="synk8s-pretrain-1a2b", target=pretrain.TARGET,
                          config_uri="s3://b/runs/r/pretrain/config.json", kwargs={"images": ..., "out": ...})
    run_trainjob(api_client(), obj)          # create, wait (live status in the log), delete

:func:`read_trainer` and :func:`trainer_checks` tell whether the Trainer CRDs and a torch runtime are
installed (for ``synk8s cluster check``). The ``kubernetes`` package is imported inside the functions that
talk to the API.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from synk8s import storage
from synk8s.cluster_model import CheckResult
from synk8s.config import ExperimentConfig
from synk8s.distributed import torchrun_command
from synk8s.errors import Synk8sError

log = logging.getLogger(__name__)

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
RUNTIMES_PLURAL = "clustertrainingruntimes"
CRD = f"{PLURAL}.{GROUP}"
RUNTIME_CRD = f"{RUNTIMES_PLURAL}.{GROUP}"
TORCH_RUNTIME = "torch-distributed"
RUNTIME_JOB = "node"  # the torch runtime's replicated job, and its trainer container
SHM_VOLUME = "dshm"  # the memory-backed emptyDir each node mounts at /dev/shm (cluster.shm_size)
FRAMEWORK_LABEL = "trainer.kubeflow.org/framework"
PATCH_MANAGER = "synk8s.io/pipeline"
POLL_S = 10.0


def trainjob_name(stage: str, out: str) -> str:
    """A DNS-safe TrainJob name that depends only on the stage and its output folder."""
    return f"synk8s-{stage}-{hashlib.sha256(out.encode()).hexdigest()[:12]}"


def _store_env(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Environment from the store's ConfigMap (endpoint) and Secret (credentials): references, never values."""
    secret = cfg.cluster.s3_secret
    return [
        {
            "name": "SYNK8S_S3_ENDPOINT",
            "valueFrom": {"configMapKeyRef": {"name": cfg.cluster.s3_config_map, "key": "SYNK8S_S3_ENDPOINT"}},
        },
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": secret, "key": "AWS_ACCESS_KEY_ID"}}},
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "AWS_SECRET_ACCESS_KEY"}},
        },
    ]


def trainjob_object(
    cfg: ExperimentConfig, *, name: str, target: str, config_uri: str, kwargs: dict[str, str]
) -> dict[str, Any]:
    """The TrainJob that runs ``target(cfg, **kwargs)`` on ``pretrain.nodes`` nodes.

    Each node runs ``pretrain.gpus_per_node`` processes, one per GPU (one CPU process when it is 0), in
    ``cluster.image``; GPU nodes come from ``cluster.gpu_node_selector`` and ``cluster.gpu_tolerations``.
    Every node mounts a memory-backed ``/dev/shm`` of ``cluster.shm_size`` for its DataLoader workers.

    Args:
        cfg: the run config (``pretrain`` topology, ``cluster`` image, namespace, Secret and ConfigMap).
        name: the TrainJob's name (see :func:`trainjob_name`).
        target: ``module:function`` of the training loop.
        config_uri: where the run config JSON is in the store.
        kwargs: the function's keyword arguments (store URIs).

    Returns:
        The object as a dict, ready for ``CustomObjectsApi.create_namespaced_custom_object``.
    """
    p, c = cfg.pretrain, cfg.cluster
    gpus = p.gpus_per_node
    trainer: dict[str, Any] = {
        "image": c.image,
        "command": torchrun_command(target, config_uri, kwargs),
        "numNodes": p.nodes,
        "numProcPerNode": max(gpus, 1),
        "env": [*_store_env(cfg), {"name": "OMP_NUM_THREADS", "value": "1"}],
    }
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": TORCH_RUNTIME},
        "trainer": trainer,
    }
    # DataLoader workers pass batches through /dev/shm, 64 MiB in a container unless a memory volume backs it.
    # The pod's shared-memory mount point for data-loader workers, not a temporary file path.
    shm_path = "/dev/shm"  # nosec B108
    pod: dict[str, Any] = {
        "volumes": [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": c.shm_size}}],
        "containers": [{"name": RUNTIME_JOB, "volumeMounts": [{"name": SHM_VOLUME, "mountPath": shm_path}]}],
    }
    if gpus:
        trainer["resourcesPerNode"] = {"limits": {c.accelerator: str(gpus)}, "requests": {c.accelerator: str(gpus)}}
        pod |= {"nodeSelector": dict(c.gpu_node_selector), "tolerations": [dict(t) for t in c.gpu_tolerations]}
    job = {"name": RUNTIME_JOB, "template": {"spec": {"template": {"spec": pod}}}}
    spec["runtimePatches"] = [
        {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [job]}}}}
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": c.namespace,
            "labels": {"app.kubernetes.io/part-of": "synk8s", "synk8s.io/target": target.replace(":", ".")},
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class TrainJobState:
    """Where a TrainJob stands.

    Attributes:
        finished: it completed or failed.
        failed: it failed.
        reason: the deciding condition's reason (e.g. ``DeadlineExceeded``), or empty.
        summary: one line for the log: conditions and per-job counts.
    """

    finished: bool
    failed: bool
    reason: str
    summary: str


def trainjob_state(obj: dict[str, Any]) -> TrainJobState:
    """Read a TrainJob's ``status``: ``Complete`` or ``Failed`` conditions set to True end it."""
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    true = {c["type"]: c for c in conditions if c.get("status") == "True"}
    jobs = ", ".join(
        f"{j.get('name')}: {j.get('active', 0)} active, {j.get('succeeded', 0)} succeeded, {j.get('failed', 0)} failed"
        for j in status.get("jobsStatus") or []
    )
    summary = "; ".join(x for x in (", ".join(sorted(true)) or "Pending", jobs) if x)
    if "Failed" in true:
        condition = true["Failed"]
        reason = " ".join(x for x in (condition.get("reason"), condition.get("message")) if x)
        return TrainJobState(True, True, reason or "Failed", summary)
    if "Complete" in true:
        return TrainJobState(True, False, true["Complete"].get("reason", ""), summary)
    return TrainJobState(False, False, "", summary)


def _api_error(error: Any, what: str) -> Synk8sError:
    return Synk8sError(
        f"the Kubernetes API refused to {what} ({error.status} {error.reason}); check RBAC and the Trainer install"
    )


def create(api: Any, obj: dict[str, Any]) -> None:
    """Create the TrainJob; one left by an earlier attempt of the same task is replaced."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api)
    meta = obj["metadata"]
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, obj)
        return
    except ApiException as error:
        if error.status != 409:
            raise _api_error(error, f"create TrainJob {meta['namespace']}/{meta['name']}") from None
    log.info("TrainJob %s exists from an earlier attempt: replacing it", meta["name"])
    delete(api, meta["name"], meta["namespace"], wait_s=120)
    custom.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, obj)


def wait(
    api: Any, name: str, namespace: str, *, poll_s: float = POLL_S, sleep: Callable[[float], None] = time.sleep
) -> TrainJobState:
    """Follow a TrainJob until it ends, logging each change of its status.

    Raises:
        Synk8sError: it failed (with its reason), or vanished.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api)
    last = None
    while True:
        try:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                raise Synk8sError(f"TrainJob {namespace}/{name} was deleted before it finished") from None
            raise _api_error(error, f"read TrainJob {namespace}/{name}") from None
        state = trainjob_state(obj)
        if state.summary != last:
            log.info("TrainJob %s: %s", name, state.summary)
            last = state.summary
        if state.failed:
            logs = f"kubectl logs -n {namespace} -l jobset.sigs.k8s.io/jobset-name={name}"
            raise Synk8sError(f"TrainJob {namespace}/{name} failed: {state.reason}; see `{logs}`")
        if state.finished:
            return state
        sleep(poll_s)


def delete(api: Any, name: str, namespace: str, *, wait_s: float = 0.0) -> None:
    """Delete the TrainJob (its JobSet and pods go with it); a missing one is fine. Waits up to ``wait_s``."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api)
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Foreground")
    except ApiException as error:
        if error.status == 404:
            return
        raise _api_error(error, f"delete TrainJob {namespace}/{name}") from None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException:
            return
        time.sleep(2.0)


def run_trainjob(api: Any, obj: dict[str, Any], *, poll_s: float = POLL_S) -> TrainJobState:
    """Create the TrainJob, wait for it, and delete it however it ends."""
    meta = obj["metadata"]
    create(api, obj)
    try:
        return wait(api, meta["name"], meta["namespace"], poll_s=poll_s)
    finally:
        delete(api, meta["name"], meta["namespace"])


def submit(cfg: ExperimentConfig, api: Any, *, stage: str, target: str, out: str, **kwargs: str) -> TrainJobState:
    """Run a training stage's DDP function as a TrainJob: write the config beside ``out``, then :func:`run_trainjob`.

    Args:
        cfg: the run config.
        api: a ``kubernetes.client.ApiClient`` (see :func:`synk8s.cluster.api_client`).
        stage: the stage's name, for the TrainJob's name.
        target: ``module:function`` of the training loop.
        out: the stage's output folder (a store URI every node can read).
        **kwargs: the function's other keyword arguments (store URIs).
    """
    config_uri = storage.join(out, "config.json")
    storage.put_bytes(config_uri, cfg.model_dump_json().encode())
    name = trainjob_name(stage, out)
    return run_trainjob(
        api, trainjob_object(cfg, name=name, target=target, config_uri=config_uri, kwargs={**kwargs, "out": out})
    )


def read_trainer(api: Any) -> tuple[set[str], list[dict[str, Any]]]:
    """The Trainer CRD names installed and the ClusterTrainingRuntimes (empty when the CRD is missing)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    crds = set()
    extensions = client.ApiextensionsV1Api(api)
    for crd in (CRD, RUNTIME_CRD):
        try:
            extensions.read_custom_resource_definition(crd)
            crds.add(crd)
        except ApiException as error:
            if error.status != 404:
                raise _api_error(error, f"read CustomResourceDefinition {crd}") from None
    if RUNTIME_CRD not in crds:
        return crds, []
    listed = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, RUNTIMES_PLURAL)
    return crds, list(listed.get("items", []))


def trainer_checks(crds: set[str], runtimes: list[dict[str, Any]]) -> list[CheckResult]:
    """Lines for ``synk8s cluster check``: the Trainer CRDs, and the torch runtime the TrainJobs reference."""
    install = "install Kubeflow Trainer v2 (its manifests or Helm chart), which adds the CRDs and runtimes"
    missing = sorted({CRD, RUNTIME_CRD} - crds)
    results = [
        CheckResult(
            "Kubeflow Trainer CRDs",
            not missing,
            f"missing {', '.join(missing)}" if missing else f"{CRD} and {RUNTIME_CRD} installed",
            install if missing else "",
        )
    ]
    names = sorted(r.get("metadata", {}).get("name", "") for r in runtimes)
    torch_runtimes = [
        r["metadata"]["name"] for r in runtimes if (r["metadata"].get("labels") or {}).get(FRAMEWORK_LABEL) == "torch"
    ]
    ok = TORCH_RUNTIME in names
    detail = f"ClusterTrainingRuntimes: {', '.join(names) or 'none'}"
    if not ok and torch_runtimes:
        detail += f" (torch runtimes: {', '.join(torch_runtimes)}, but TrainJobs reference {TORCH_RUNTIME})"
    hint = "" if ok else f"install the Trainer's default runtimes, which include ClusterTrainingRuntime {TORCH_RUNTIME}"
    results.append(CheckResult(f"ClusterTrainingRuntime {TORCH_RUNTIME}", ok, detail, hint))
    return results
