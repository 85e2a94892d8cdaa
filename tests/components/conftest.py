"""Fixtures for the KFP layer.

``FakeArtifact`` (fixture ``artifact``) stands in for the ``dsl.Metrics``, ``dsl.Markdown``,
``dsl.Dataset``/``dsl.Model``, ``dsl.Artifact`` and ``dsl.ClassificationMetrics`` outputs when a test
calls a component's ``python_func`` directly: a file path and the metadata logged.

``kfp_api`` is a real HTTP server on 127.0.0.1 that answers the v2beta1 endpoints ``kfp.Client``
calls when it submits and inspects runs (healthz, experiments, runs, recurring runs) and records
every request, so tests can read back what ``synk8s submit`` sent. The same server answers the
Kubernetes API's pod log endpoint; ``kubeconfig`` points the Kubernetes client at it.
"""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

API = "/apis/v2beta1"
CREATED = "2026-01-01T00:00:00Z"


class FakeArtifact:
    """A component output artifact without KFP: ``path`` to write to and ``metadata`` of ``log_metric``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.metadata: dict[str, Any] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value

    def log_confusion_matrix(self, categories: list[str], matrix: list[list[int]]) -> None:
        self.metadata["confusionMatrix"] = {"categories": categories, "matrix": matrix}

    def read(self) -> str:
        with open(self.path, encoding="utf-8") as handle:
            return handle.read()


@pytest.fixture
def artifact(tmp_path):
    """``artifact(name)``: a new :class:`FakeArtifact` whose file is ``<tmp>/artifacts/<name>``."""
    folder = tmp_path / "artifacts"
    folder.mkdir()
    return lambda name: FakeArtifact(str(folder / name))


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None = None


@dataclass
class KfpApi:
    """State of the fake server: what it was sent and how runs progress."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    experiments: dict[str, str] = field(default_factory=dict)  # display name -> id
    run_states: list[str] = field(default_factory=lambda: ["RUNNING", "SUCCEEDED"])
    run_error: str = ""
    pod_logs: dict[str, str] = field(default_factory=dict)  # pod name -> log of its main container
    kube_status: int = 200  # answer every Kubernetes request with this status when not 200

    def sent(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == API + path]


def _run_body(run_id: str, state: str, error: str) -> dict[str, Any]:
    body = {
        "run_id": run_id,
        "display_name": "zeroshot-test",
        "experiment_id": "exp-1",
        "state": state,
        "created_at": CREATED,
        "runtime_config": {"parameters": {"dataset": "cifar10"}},
        "run_details": {
            "task_details": [
                {"task_id": "t-plan", "display_name": "plan", "state": "SUCCEEDED", "pod_name": "zs-abc-plan-111"},
                {
                    "task_id": "t-gen",
                    "display_name": "generate",
                    "state": state,
                    "child_tasks": [{"pod_name": "zs-abc-generate-222"}, {"pod_name": "zs-abc-generate-333"}],
                },
            ]
        },
    }
    if error:
        body["error"] = {"code": 2, "message": error}
    return body


def _handler(api: KfpApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self) -> Recorded:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            rec = Recorded(self.command, url.path, parse_qs(url.query), body, self.headers.get("Authorization"))
            api.requests.append(rec)
            return rec

        def do_GET(self) -> None:
            rec = self._record()
            if rec.path == f"{API}/healthz":
                return self._reply({"multi_user": False})
            if rec.path == f"{API}/experiments":
                wanted = (
                    json.loads(rec.query["filter"][0])["predicates"][0]["stringValue"]
                    if "filter" in rec.query
                    else None
                )
                found = [
                    {"experiment_id": eid, "display_name": name}
                    for name, eid in api.experiments.items()
                    if wanted in (None, name)
                ]
                return self._reply({"experiments": found} if found else {})
            if rec.path.startswith(f"{API}/runs/"):
                state = api.run_states.pop(0) if len(api.run_states) > 1 else api.run_states[0]
                return self._reply(_run_body(rec.path.rsplit("/", 1)[1], state, api.run_error))
            if rec.path == f"{API}/runs":
                return self._reply({"runs": [_run_body("run-1", "SUCCEEDED", "")], "total_size": 1})
            if rec.path.startswith("/api/v1/namespaces/") and rec.path.endswith("/log"):
                return self._pod_log(rec.path.split("/")[6])
            return self._reply({"error": "not found", "code": 5}, status=404)

        def _pod_log(self, pod: str) -> None:
            status = api.kube_status
            if status == 200 and pod not in api.pod_logs:
                status = 404
            if status != 200:
                message = f'pods "{pod}" not found' if status == 404 else "forbidden"
                return self._reply({"kind": "Status", "status": "Failure", "message": message, "code": status}, status)
            data = api.pod_logs[pod].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            rec = self._record()
            if rec.path == f"{API}/experiments":
                eid = f"exp-{len(api.experiments) + 1}"
                api.experiments[rec.body["display_name"]] = eid
                return self._reply({"experiment_id": eid, "display_name": rec.body["display_name"]})
            if rec.path == f"{API}/runs":
                return self._reply({**rec.body, "run_id": "run-1", "state": "PENDING", "created_at": CREATED})
            if rec.path == f"{API}/recurringruns":
                return self._reply({**rec.body, "recurring_run_id": "rr-1", "status": "ENABLED"})
            return self._reply({"error": "not found", "code": 5}, status=404)

    return Handler


@pytest.fixture
def kfp_api(monkeypatch):
    """A fake KFP API server on a free port; yields its :class:`KfpApi` state (``.url``, ``.requests``)."""
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    api = KfpApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(kfp_api, tmp_path, monkeypatch):
    """A kubeconfig whose cluster is the ``kfp_api`` server, in ``$KUBECONFIG``; not in a pod."""
    monkeypatch.delenv("KFP_POD_NAME", raising=False)
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": kfp_api.url}}],
                "users": [{"name": "test", "user": {"token": "kube-token-for-test"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path
