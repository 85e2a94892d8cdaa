"""S3 faults against real local servers: a connection cut mid-upload, a server that checks signatures.

Everything listens on 127.0.0.1 only. Errors reach the user through the CLI as exactly one line on
stderr, with no traceback and no secret in it.
"""

import json
import os
import random
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest
from typer.testing import CliRunner

from synk8s import storage
from synk8s.cli.main import app
from synk8s.errors import StoreError

pytestmark = pytest.mark.timeout(60)

runner = CliRunner()
SECRET = "do-not-show-this-secret"


def one_line_error(result) -> str:
    """The single stderr line of a failed CLI call (asserts there is exactly one and no traceback)."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 that dies once ``cut_after`` bytes went from clients to the server.

    Dying means every open connection is reset and the listening socket is closed, so retries are
    refused: what a client sees when an S3 endpoint's pod or node goes away mid-transfer.
    """

    def __init__(self, target_port: int, cut_after: int):
        self.target_port = target_port
        self.cut_after = cut_after
        self.forwarded = 0
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if upstream:
                    with self._lock:
                        self.forwarded += len(data)
                        over = self.forwarded >= self.cut_after
                    if over:
                        self.kill()
                        return
                dst.sendall(data)
        except OSError:
            pass

    def kill(self) -> None:
        """Reset every connection and stop listening."""
        self.dead.set()
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.close()
                except OSError:
                    pass


def test_upload_cut_mid_transfer_keeps_the_old_object(s3_env, s3_server, monkeypatch, tmp_path):
    uri = s3_env + "/run/shard.tar"
    old = random.Random(0).randbytes(300_000)
    old_info = storage.put_bytes(uri, old)
    new_file = tmp_path / "new.tar"
    new_file.write_bytes(random.Random(1).randbytes(3 * 1024 * 1024))

    proxy = CuttingProxy(int(s3_server.rsplit(":", 1)[1]), cut_after=512 * 1024)
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", f"http://127.0.0.1:{proxy.port}")
    storage.clear_cache()
    result = runner.invoke(app, ["store", "cp", str(new_file), uri])
    line = one_line_error(result)
    assert proxy.dead.is_set() and proxy.forwarded >= 512 * 1024  # the cut happened mid-body
    assert f"cannot reach the S3 endpoint http://127.0.0.1:{proxy.port}" in line

    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", s3_server)
    storage.clear_cache()
    assert storage.get_bytes(uri) == old
    assert storage.stat(uri) == old_info
    assert [o.uri for o in storage.list(s3_env + "/run")] == [uri]


_AUTH_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@pytest.fixture(scope="module")
def signing_s3():
    """An S3 server (moto, own process) that verifies signatures; yield (URL, access key, secret).

    It starts with ``INITIAL_NO_AUTH_ACTION_COUNT=0``; moto's reset-auth call then lets exactly the
    three IAM calls through that make a user with an S3 policy and its access key.
    """
    import boto3

    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    child = subprocess.Popen(
        [sys.executable, "-c", _AUTH_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{int(child.stdout.readline())}"
        request = urllib.request.Request(
            f"{url}/moto-api/reset-auth", data=b"3", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()
        iam = boto3.client(
            "iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup"
        )
        iam.create_user(UserName="synk8s")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="synk8s", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="synk8s")["AccessKey"]
        yield url, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        child.stdin.close()
        child.wait(timeout=10)


def _point_at(monkeypatch, url: str, access_key: str, secret: str) -> None:
    for name in ("SYNK8S_S3_REGION", "SYNK8S_S3_CA_BUNDLE", "AWS_SESSION_TOKEN", "MINIO_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    storage.clear_cache()


def test_a_wrong_secret_is_refused_with_one_line(signing_s3, monkeypatch, tmp_path):
    url, access_key, secret = signing_s3
    _point_at(monkeypatch, url, access_key, secret)
    storage.ensure_bucket("s3://signed")
    storage.put_bytes("s3://signed/a.txt", b"signed")  # the right secret works

    _point_at(monkeypatch, url, access_key, SECRET)
    with pytest.raises(StoreError) as err:
        storage.get_bytes("s3://signed/a.txt")
    assert "refused access to s3://signed/a.txt (SignatureDoesNotMatch)" in str(err.value)
    (tmp_path / "b.txt").write_bytes(b"b")
    for args in (["store", "ls", "s3://signed"], ["store", "cp", str(tmp_path / "b.txt"), "s3://signed/b.txt"]):
        line = one_line_error(runner.invoke(app, args))
        assert f"S3 at {url} refused access" in line and "AWS_SECRET_ACCESS_KEY" in line
        assert SECRET not in line and secret not in line

    _point_at(monkeypatch, url, access_key, secret)
    assert [o.uri for o in storage.list("s3://signed")] == ["s3://signed/a.txt"]  # the refused upload left nothing
    storage.clear_cache()
