"""Shared fixtures: a real local S3 server (moto's standalone server) for storage tests."""

import urllib.request

import pytest
from moto.server import ThreadedMotoServer

from synk8s import storage

TEST_BUCKET = "synk8s-test"

_S3_ENV_VARS = (
    "SYNK8S_S3_ENDPOINT",
    "SYNK8S_S3_REGION",
    "SYNK8S_S3_CA_BUNDLE",
    "SYNK8S_S3_INSECURE_SKIP_VERIFY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
)


@pytest.fixture(scope="session")
def s3_server():
    """Start one S3 server on a free 127.0.0.1 port for the whole session; yield its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(monkeypatch, s3_server):
    """Point the store at the test server with an empty bucket; return ``"s3://synk8s-test"``."""
    for name in _S3_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "synk8s-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "synk8s-test-secret")
    urllib.request.urlopen(urllib.request.Request(f"{s3_server}/moto-api/reset", method="POST"), timeout=10).close()
    storage.clear_cache()
    storage.ensure_bucket(f"s3://{TEST_BUCKET}")
    yield f"s3://{TEST_BUCKET}"
    storage.clear_cache()
