"""Fixtures of the unit tests: a local Kubernetes API server answering the TrainJob calls."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class KubeApi:
    """What the local API server answers and what it was asked.

    Attributes:
        url: the server's base URL (``http://127.0.0.1:<port>``).
        statuses: the TrainJob ``status`` each read returns, first to last; a read with none left
            returns an object without status.
        calls: ``(method, path, body)`` of every request in order (``body`` is None but for a create).
    """

    url: str
    statuses: list = field(default_factory=list)
    calls: list = field(default_factory=list)


def _handler(api: KubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """The TrainJob calls of the Kubernetes API: create (echoed), read (a status per read), delete."""

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            api.calls.append(("POST", self.path, body))
            self._reply(201, body)

        def do_GET(self):  # noqa: N802
            api.calls.append(("GET", self.path, None))
            self._reply(200, {"status": api.statuses.pop(0)} if api.statuses else {})

        def do_DELETE(self):  # noqa: N802
            api.calls.append(("DELETE", self.path, None))
            self._reply(200, {})

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def kube_api():
    """A Kubernetes API server on a free local port for the TrainJob calls; yields its :class:`KubeApi`."""
    api = KubeApi(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield api
    server.shutdown()
