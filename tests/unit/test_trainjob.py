"""The TrainJob object against the Trainer API models (offline), its status, and the client calls."""

import pytest
from kubeflow_trainer_api import models as trainer_models

from synk8s import config, trainjob
from synk8s.errors import Synk8sError
from synk8s.stages.pretraining import pretrain

pytestmark = pytest.mark.timeout(30)

KWARGS = {"images": "s3://b/runs/r/images", "out": "s3://b/runs/r/pretrain"}


def _object(*overrides):
    cfg = config.load("paper", ["pretrain.nodes=2", *overrides])
    name = trainjob.trainjob_name("pretrain", KWARGS["out"])
    return trainjob.trainjob_object(cfg, name=name, target=pretrain.TARGET, config_uri="s3://b/c.json", kwargs=KWARGS)


def test_the_trainjob_validates_against_the_trainer_api_models_and_round_trips():
    obj = _object()
    model = trainer_models.TrainerV1alpha1TrainJob.from_dict(obj)
    assert model.to_dict() == obj  # every field known to the API, nothing dropped or renamed
    trainer = model.spec.trainer
    assert model.api_version == "trainer.kubeflow.org/v1alpha1" and model.kind == "TrainJob"
    assert model.spec.runtime_ref.name == "torch-distributed"
    assert trainer.num_nodes == 2 and trainer.num_proc_per_node == 8 and trainer.image.startswith("ghcr.io/synk8s/")
    assert trainer.resources_per_node.limits["nvidia.com/gpu"].actual_instance == "8"
    assert trainer.command[:5] == ["python", "-m", "torch.distributed.run", "-m", "synk8s.distributed"]
    assert "--standalone" not in trainer.command and "images=s3://b/runs/r/images" in trainer.command
    env = {e.name: e for e in trainer.env}
    assert env["AWS_SECRET_ACCESS_KEY"].value_from.secret_key_ref.name == "synk8s-s3-credentials"
    assert env["SYNK8S_S3_ENDPOINT"].value_from.config_map_key_ref.name == "synk8s-config"
    assert all(e.value is None for n, e in env.items() if n.startswith("AWS_"))  # references, never values
    pod = (
        model.spec.runtime_patches[0].training_runtime_spec.template.spec.replicated_jobs[0].template.spec.template.spec
    )
    assert pod.node_selector == {"synk8s.io/pool": "gpu"} and pod.tolerations[0].key == "nvidia.com/gpu"
    _assert_shm(pod, config.load("paper").cluster.shm_size)


def _assert_shm(pod, size):
    """The node container mounts a memory-backed emptyDir of ``size`` at /dev/shm."""
    (volume,) = pod.volumes
    assert volume.empty_dir.medium == "Memory" and volume.empty_dir.size_limit.actual_instance == size
    (container,) = pod.containers
    assert container.name == "node"
    assert [(m.name, m.mount_path) for m in container.volume_mounts] == [(volume.name, "/dev/shm")]


def test_a_cpu_trainjob_asks_for_no_gpus():
    model = trainer_models.TrainerV1alpha1TrainJob.from_dict(_object("pretrain.gpus_per_node=0", "cluster.shm_size=2Gi"))
    assert model.spec.trainer.num_proc_per_node == 1 and model.spec.trainer.resources_per_node is None
    pod = (
        model.spec.runtime_patches[0].training_runtime_spec.template.spec.replicated_jobs[0].template.spec.template.spec
    )
    assert pod.node_selector is None and pod.tolerations is None  # CPU nodes: no GPU pool
    _assert_shm(pod, "2Gi")
    assert len(trainjob.trainjob_name("pretrain", "s3://b/x")) <= 63


def test_trainjob_state_reads_conditions():
    running = {"status": {"jobsStatus": [{"name": "node", "active": 2, "succeeded": 0, "failed": 0}]}}
    assert trainjob.trainjob_state(running) == trainjob.TrainJobState(
        False, False, "", "Pending; node: 2 active, 0 succeeded, 0 failed"
    )
    failed = {
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}]
        }
    }
    state = trainjob.trainjob_state(failed)
    assert state.finished and state.failed and state.reason == "DeadlineExceeded too slow"
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}, {"type": "Failed", "status": "False"}]}}
    assert trainjob.trainjob_state(done).finished and not trainjob.trainjob_state(done).failed


def _client(kube_api):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = kube_api.url
    return client.ApiClient(configuration)


def test_run_trainjob_creates_waits_and_deletes_through_the_api(kube_api):
    obj = _object()
    name = obj["metadata"]["name"]
    path = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/kubeflow/trainjobs"
    running = {"jobsStatus": [{"name": "node", "active": 2}]}
    kube_api.statuses[:] = [running, running, {"conditions": [{"type": "Complete", "status": "True"}]}]
    state = trainjob.run_trainjob(_client(kube_api), obj, poll_s=0.01)
    assert state.finished and not state.failed
    calls = kube_api.calls
    assert calls[0][:2] == ("POST", path) and calls[0][2]["metadata"]["name"] == name
    assert calls[-1] == ("DELETE", f"{path}/{name}?propagationPolicy=Foreground", None)
    assert [c[0] for c in calls[1:-1]] == ["GET", "GET", "GET"]

    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailed", "message": "exit 1"}]}
    kube_api.statuses[:], kube_api.calls[:] = [failed], []
    with pytest.raises(Synk8sError, match=f"TrainJob kubeflow/{name} failed: PodFailed exit 1"):
        trainjob.run_trainjob(_client(kube_api), obj, poll_s=0.01)
    assert kube_api.calls[-1][0] == "DELETE"  # cleaned up after a failure too


def test_trainer_checks_name_the_missing_pieces():
    missing = trainjob.trainer_checks(set(), [])
    assert [r.ok for r in missing] == [False, False] and "install Kubeflow Trainer" in missing[0].hint
    runtime = {"metadata": {"name": "torch-distributed", "labels": {"trainer.kubeflow.org/framework": "torch"}}}
    ready = trainjob.trainer_checks({trainjob.CRD, trainjob.RUNTIME_CRD}, [runtime])
    assert all(r.ok for r in ready)
    other = {"metadata": {"name": "torch-custom", "labels": {"trainer.kubeflow.org/framework": "torch"}}}
    result = trainjob.trainer_checks({trainjob.CRD, trainjob.RUNTIME_CRD}, [other])[1]
    assert not result.ok and "torch-custom" in result.detail
