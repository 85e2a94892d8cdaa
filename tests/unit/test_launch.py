"""Where training runs: in a pipeline pod on a cluster a TrainJob is created, followed and deleted."""

import pytest
import yaml

from synk8s import config, launch, storage
from synk8s.config import ExperimentConfig
from synk8s.errors import Synk8sError, UsageError
from synk8s.stages.pretraining import pretrain

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pipeline_pod(kube_api, tmp_path, monkeypatch):
    """A KFP task pod whose kubeconfig points at the local API server; yields the server's :class:`KubeApi`."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": kube_api.url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("KFP_POD_NAME", "synk8s-pretrain-pod")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    return kube_api


def test_a_pipeline_pod_trains_as_a_trainjob_and_cleans_it_up(pipeline_pod, s3_env):
    cfg = config.load("tiny", [f"store.root={s3_env}"])
    out, images = f"{s3_env}/runs/r/pretrain", f"{s3_env}/runs/r/images"
    pipeline_pod.statuses = [{"jobsStatus": [{"name": "node", "active": 1}]}, {"conditions": [
        {"type": "Complete", "status": "True"}]}]  # fmt: skip
    launch.train(cfg, stage="pretrain", target=pretrain.TARGET, out=out, images=images)

    (method, path, body), *reads, (last, deleted, _) = pipeline_pod.calls
    assert (method, last) == ("POST", "DELETE") and [r[0] for r in reads] == ["GET", "GET"]
    assert path.endswith("/namespaces/kubeflow/trainjobs") and deleted.startswith(f"{path}/synk8s-pretrain-")
    command = body["spec"]["trainer"]["command"]
    assert command[command.index("-m", 3) + 1 :][:4] == [
        "synk8s.distributed",
        pretrain.TARGET,
        "--config",
        f"{out}/config.json",
    ]
    assert f"images={images}" in command and f"out={out}" in command
    # The nodes read the run config the task wrote beside the output.
    assert ExperimentConfig.model_validate_json(storage.get_bytes(f"{out}/config.json")) == cfg


def test_a_failed_trainjob_fails_the_task_with_its_reason_and_is_deleted(pipeline_pod, s3_env):
    cfg = config.load("tiny", [f"store.root={s3_env}"])
    pipeline_pod.statuses = [{"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailed"}]}]
    with pytest.raises(Synk8sError, match="failed: PodFailed"):
        launch.train(cfg, stage="detect", target="synk8s.stages.pretraining.detect:train", out=f"{s3_env}/d", backbone="")
    assert pipeline_pod.calls[-1][0] == "DELETE"


def test_a_pipeline_pod_with_a_local_store_is_refused_in_one_line(pipeline_pod, tmp_path):
    cfg = config.load("tiny", [f"store.root={tmp_path}"])
    with pytest.raises(UsageError, match="use an s3:// store.root"):
        launch.train(cfg, stage="pretrain", target=pretrain.TARGET, out=str(tmp_path / "p"), images="x")
    assert pipeline_pod.calls == []
