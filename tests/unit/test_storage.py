"""The artifact store against a local folder and a real local S3 server."""

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from urllib3.exceptions import InsecureRequestWarning

from synk8s import storage
from synk8s.errors import StoreError, UsageError

pytestmark = pytest.mark.timeout(60)

SECRET = "do-not-show-this-secret"


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A fresh empty store root: a local folder, or a prefix in the test bucket."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_env") + "/run"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_join_and_is_remote():
    assert storage.join("s3://b/run/", "a/", "/x.json") == "s3://b/run/a/x.json"
    assert storage.join("/tmp/x", "y", "", "z") == "/tmp/x/y/z"
    assert storage.join("file:///data", "a") == "file:///data/a"
    assert storage.is_remote("s3://b/k")
    assert not storage.is_remote("./out") and not storage.is_remote("file:///x")


def test_join_onto_an_empty_base_stays_relative():
    assert storage.join("", "runs", "x") == "runs/x"
    assert storage.join("", "/runs/", "x/") == "runs/x"
    assert storage.join("") == ""
    assert storage.join("/", "runs") == "/runs"


EMPTY_URI_CALLS = {
    "put_bytes": lambda u: storage.put_bytes(u, b"x"),
    "put_json": lambda u: storage.put_json(u, {}),
    "put_file": lambda u: storage.put_file(u, __file__),
    "get_bytes": storage.get_bytes,
    "get_json": storage.get_json,
    "get_file": lambda u: storage.get_file(u, "out.bin"),
    "open_read": lambda u: storage.open_read(u).__enter__(),
    "writer": lambda u: storage.writer(u).__enter__(),
    "list": storage.list,
    "list_prefixes": storage.list_prefixes,
    "exists": storage.exists,
    "stat": storage.stat,
    "delete": storage.delete,
    "local_path": lambda u: storage.local_path(u).__enter__(),
    "copy_from": lambda u: storage.copy(u, "out.bin"),
    "copy_to": lambda u: storage.copy(__file__, u),
    "ensure_bucket": storage.ensure_bucket,
    "is_remote": storage.is_remote,
}


@pytest.mark.parametrize("name", sorted(EMPTY_URI_CALLS))
@pytest.mark.parametrize("uri", ["", "  "])
def test_empty_uri_is_a_usage_error(name, uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        EMPTY_URI_CALLS[name](uri)
    assert str(err.value) == "empty store URI; pass a folder or s3://bucket/prefix"
    assert list(tmp_path.iterdir()) == []


def test_unsupported_scheme_is_a_usage_error():
    with pytest.raises(UsageError, match="unsupported URI scheme 'gs'"):
        storage.get_bytes("gs://bucket/key")


def test_round_trip_bytes_json_file(root, tmp_path):
    data = b"\x00binary\xffcontent"
    info = storage.put_bytes(storage.join(root, "a.bin"), data)
    assert info == storage.ObjectInfo(uri=storage.join(root, "a.bin"), size=len(data), sha256=sha(data))
    assert storage.get_bytes(info.uri) == data
    assert storage.stat(info.uri) == info

    obj = {"b": [1, 2.5, None], "a": {"z": "é", "y": True}}
    json_info = storage.put_json(storage.join(root, "m.json"), obj)
    assert storage.get_json(json_info.uri) == obj
    raw = storage.get_bytes(json_info.uri)
    assert raw == (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    same = storage.put_json(storage.join(root, "m2.json"), {"a": {"y": True, "z": "é"}, "b": [1, 2.5, None]})
    assert same.sha256 == json_info.sha256

    src = tmp_path / "src.txt"
    src.write_bytes(b"file body\n" * 100)
    file_info = storage.put_file(storage.join(root, "deep/dir/f.txt"), src)
    assert file_info.sha256 == sha(src.read_bytes())
    dest = tmp_path / "down" / "f.txt"
    storage.get_file(file_info.uri, dest)
    assert dest.read_bytes() == src.read_bytes()
    with storage.local_path(file_info.uri) as path:
        assert Path(path).read_bytes() == src.read_bytes()


def test_open_read_streams_in_chunks(root):
    data = random.Random(1).randbytes(300_000)
    uri = storage.put_bytes(storage.join(root, "s.bin"), data).uri
    with storage.open_read(uri) as f:
        chunks = list(iter(lambda: f.read(65536), b""))
    assert len(chunks) >= 5 and b"".join(chunks) == data


def test_multipart_upload_keeps_size_and_hash(root, s3_server):
    data = random.Random(0).randbytes(6 * 1024 * 1024 + 123)  # > 5 MiB: two parts on S3
    uri = storage.join(root, "big.bin")
    with storage.writer(uri) as f:
        f.write(data)
    info = storage.stat(uri)
    assert (info.size, info.sha256) == (len(data), sha(data))
    assert storage.get_bytes(uri) == data
    if storage.is_remote(uri):
        # A multipart upload's ETag ends in "-<parts>"; the test server answers unsigned requests.
        http_url = s3_server + "/" + uri[len("s3://") :]
        with urllib.request.urlopen(urllib.request.Request(http_url, method="HEAD"), timeout=10) as response:
            assert response.headers["ETag"].strip('"').endswith("-2")


def test_list_prefixes_and_recursion(root):
    keys = ["a/1.txt", "a/b/2.txt", "a/b/c/3.txt", "ab/4.txt", "top.txt"]
    for key in keys:
        storage.put_bytes(storage.join(root, key), key.encode())

    def listed(prefix, recursive=True):
        return [o.uri for o in storage.list(storage.join(root, prefix), recursive=recursive)]

    assert listed("a") == [storage.join(root, k) for k in ["a/1.txt", "a/b/2.txt", "a/b/c/3.txt"]]
    assert listed("a/") == listed("a")
    assert listed("a/b") == [storage.join(root, k) for k in ["a/b/2.txt", "a/b/c/3.txt"]]
    assert listed("a", recursive=False) == [storage.join(root, "a/1.txt")]
    assert storage.list_prefixes(storage.join(root, "a")) == [storage.join(root, "a/b") + "/"]
    everything = storage.list(root)
    assert [o.uri for o in everything] == [storage.join(root, k) for k in sorted(keys)]
    assert all(o.sha256 == sha(k.encode()) and o.size == len(k) for o, k in zip(everything, sorted(keys), strict=True))
    assert storage.list(storage.join(root, "nothing-here")) == []


def test_missing_object_is_a_clear_error(root):
    uri = storage.join(root, "missing.bin")
    for call in (storage.get_bytes, storage.stat, storage.get_json):
        with pytest.raises(storage.ObjectNotFoundError) as err:
            call(uri)
        assert str(err.value) == f"no object at {uri}"
        assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, StoreError)
    with pytest.raises(storage.ObjectNotFoundError), storage.open_read(uri):
        pass


def test_exists_and_delete(root):
    uri = storage.join(root, "x/y.bin")
    assert not storage.exists(uri)
    storage.put_bytes(uri, b"y")
    assert storage.exists(uri)
    assert not storage.exists(storage.join(root, "x"))  # a folder is not an object
    storage.delete(uri)
    assert not storage.exists(uri)
    assert storage.list(root) == []
    storage.delete(uri)  # deleting a missing object is fine


def test_writer_replaces_atomically(root):
    uri = storage.join(root, "obj.bin")
    storage.put_bytes(uri, b"old")
    with storage.writer(uri) as f:
        f.write(b"new content")
        assert storage.get_bytes(uri) == b"old"  # nothing visible until the block exits
    assert storage.get_bytes(uri) == b"new content"
    assert storage.stat(uri).sha256 == sha(b"new content")


def test_writer_exception_leaves_nothing(root):
    uri = storage.join(root, "never.bin")
    with pytest.raises(RuntimeError, match="boom"), storage.writer(uri) as f:
        f.write(b"partial" * 1000)
        raise RuntimeError("boom")
    assert not storage.exists(uri)
    assert storage.list(root) == []
    if not storage.is_remote(root):
        assert [p.name for p in Path(root).iterdir()] == []  # the temp file is gone too


KILLED_WRITER = """
import sys, time
from synk8s import storage
with storage.writer(sys.argv[1]) as f:
    f.write(b"x" * 1_000_000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_writer_killed_mid_write_leaves_nothing_visible(root, tmp_path):
    uri = storage.join(root, "killed.bin")
    temp_dir = tmp_path / "tmp"  # where an S3 writer keeps its temp file
    temp_dir.mkdir()
    env = {**os.environ, "TMPDIR": str(temp_dir)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, uri], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stdout.close()
    assert not storage.exists(uri)
    assert storage.list(root) == []
    # The half-written temp file is still on disk (so the kill came mid-write), hidden from the store.
    leftovers = list((temp_dir if storage.is_remote(root) else Path(root)).iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".synk8s-tmp-")
    assert leftovers[0].stat().st_size == 1_000_000


def test_starting_a_writer_removes_stale_temp_files(root, tmp_path, monkeypatch):
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))  # where S3 writers stage their uploads
    folder = temp_dir if storage.is_remote(root) else Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    dead_file, dead_dir = folder / ".synk8s-tmp-dead", folder / ".synk8s-tmp-deaddir"
    live, other = folder / ".synk8s-tmp-live", folder / "not-a-temp-file"
    for path in (dead_file, live, other):
        path.write_bytes(b"x" * 100)
    dead_dir.mkdir()
    (dead_dir / "download.bin").write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    for path in (dead_file, dead_dir, other):
        os.utime(path, (two_hours_ago, two_hours_ago))
    os.utime(live, (time.time() - 1800,) * 2)  # half an hour: its writer may still be running

    with storage.writer(storage.join(root, "new.bin")) as f:
        f.write(b"new")
    names = {p.name for p in folder.iterdir()}
    assert not {dead_file.name, dead_dir.name} & names
    assert {live.name, other.name} <= names
    assert storage.get_bytes(storage.join(root, "new.bin")) == b"new"


def test_local_hash_follows_outside_changes(tmp_path):
    uri = str(tmp_path / "f.txt")
    storage.put_bytes(uri, b"first")
    Path(uri).write_bytes(b"changed by another program")
    assert storage.stat(uri).sha256 == sha(b"changed by another program")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"never stored")
    assert storage.stat(str(plain)).sha256 == sha(b"never stored")
    assert storage.stat("file://" + str(plain)).size == len(b"never stored")


def test_s3_object_without_hash_metadata(s3_env, s3_server):
    request = urllib.request.Request(f"{s3_server}/synk8s-test/foreign.bin", data=b"abc", method="PUT")
    request.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(request, timeout=10).close()
    assert storage.stat(s3_env + "/foreign.bin") == storage.ObjectInfo(s3_env + "/foreign.bin", 3, None)


@pytest.mark.parametrize("direction", ["local->s3", "s3->local", "s3->s3", "local->local"])
def test_copy_any_direction(direction, s3_env, tmp_path):
    roots = {"local": str(tmp_path / "l"), "s3": s3_env + "/c"}
    src_kind, dst_kind = direction.split("->")
    src = storage.join(roots[src_kind], "src.bin")
    dst = storage.join(roots[dst_kind], "out/dst.bin")
    data = random.Random(2).randbytes(70_000)
    storage.put_bytes(src, data)
    info = storage.copy(src, dst)
    assert info == storage.ObjectInfo(uri=dst, size=len(data), sha256=sha(data))
    assert storage.get_bytes(dst) == data


def test_missing_bucket_says_how_to_create_it(s3_env):
    with pytest.raises(
        StoreError, match=r"bucket 'no-such-bucket' does not exist .*synk8s store mb s3://no-such-bucket"
    ):
        storage.get_bytes("s3://no-such-bucket/k")


def test_missing_credentials(monkeypatch, s3_env):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StoreError) as err:
        storage.put_bytes(s3_env + "/k", b"x")
    assert str(err.value) == (
        "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or MINIO_ACCESS_KEY/MINIO_SECRET_KEY)"
    )
    monkeypatch.setenv("MINIO_ACCESS_KEY", "synk8s-test-key")
    monkeypatch.setenv("MINIO_SECRET_KEY", "synk8s-test-secret")
    assert storage.put_bytes(s3_env + "/k", b"x").size == 1


@pytest.mark.timeout(30)
def test_unreachable_endpoint_fails_with_one_line(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    storage.clear_cache()
    with pytest.raises(StoreError) as err:
        storage.get_bytes("s3://bucket/key")
    message = str(err.value)
    assert f"http://127.0.0.1:{port}" in message and "SYNK8S_S3_ENDPOINT" in message
    assert SECRET not in message and "\n" not in message
    storage.clear_cache()


@pytest.mark.parametrize("endpoint", ["127.0.0.1:9000", "ftp://host", "http://host:9000/path"])
def test_bad_endpoint_setting(monkeypatch, endpoint):
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(StoreError, match="SYNK8S_S3_ENDPOINT must look like"):
        storage.exists("s3://bucket/key")


def test_missing_ca_bundle_file(monkeypatch, s3_env, tmp_path):
    monkeypatch.setenv("SYNK8S_S3_CA_BUNDLE", str(tmp_path / "missing-ca.pem"))
    with pytest.raises(StoreError, match="SYNK8S_S3_CA_BUNDLE points to .*missing-ca.pem"):
        storage.exists(s3_env + "/k")


def test_s3_uri_must_name_an_object(s3_env):
    with pytest.raises(UsageError, match="must name an object"):
        storage.put_bytes(s3_env + "/folder/", b"x")
    with pytest.raises(UsageError, match="needs a bucket"):
        storage.get_bytes("s3:///key")


@pytest.fixture(scope="module")
def tls_s3(tmp_path_factory):
    """An HTTPS S3 server on 127.0.0.1 with a self-signed certificate; yield (URL, CA file)."""
    import datetime
    import ipaddress
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "synk8s test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "ca.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}", str(cert_file)
    server.shutdown()
    thread.join()


def test_tls_endpoint_needs_its_ca(monkeypatch, tls_s3):
    endpoint, ca_file = tls_s3
    for name in ("SYNK8S_S3_CA_BUNDLE", "SYNK8S_S3_INSECURE_SKIP_VERIFY", "SYNK8S_S3_REGION", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    storage.clear_cache()
    with pytest.raises(StoreError, match=f"TLS handshake with the S3 endpoint {endpoint} failed") as err:
        storage.ensure_bucket("s3://synk8s-tls")
    assert SECRET not in str(err.value)

    monkeypatch.setenv("SYNK8S_S3_CA_BUNDLE", ca_file)
    storage.ensure_bucket("s3://synk8s-tls")
    assert storage.get_bytes(storage.put_bytes("s3://synk8s-tls/k", b"over tls").uri) == b"over tls"

    monkeypatch.delenv("SYNK8S_S3_CA_BUNDLE")
    monkeypatch.setenv("SYNK8S_S3_INSECURE_SKIP_VERIFY", "1")
    with pytest.warns(InsecureRequestWarning):
        assert storage.get_bytes("s3://synk8s-tls/k") == b"over tls"
    storage.clear_cache()


def test_https_endpoint_on_a_plain_http_server(monkeypatch, s3_env, s3_server):
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", s3_server.replace("http://", "https://"))
    with pytest.raises(StoreError, match="TLS handshake"):
        storage.exists(s3_env + "/k")


def test_local_os_errors_become_store_errors(tmp_path):
    uri = str(tmp_path / ("n" * 300))  # longer than a file system allows for one name
    with pytest.raises(StoreError, match=f"cannot access {uri}: File name too long"):
        storage.put_bytes(uri, b"x")
    assert list(tmp_path.iterdir()) == []  # the temp file is gone
    with pytest.raises(StoreError, match="is a folder"):
        storage.put_bytes(str(tmp_path), b"x")


@pytest.mark.parametrize("below", ["x.bin", "sub/x.bin"])
def test_a_file_in_the_way_of_a_folder_is_named(tmp_path, below):
    blocker = tmp_path / "file.txt"
    blocker.write_bytes(b"a file, not a folder")
    expected = f"{blocker} is a file, not a folder; choose a destination outside it"
    for call in (
        lambda: storage.put_bytes(storage.join(str(blocker), below), b"x"),
        lambda: storage.ensure_bucket(storage.join(str(blocker), below)),
        lambda: storage.get_file(storage.put_bytes(str(tmp_path / "o.bin"), b"o").uri, blocker / below),
    ):
        with pytest.raises(StoreError) as err:
            call()
        assert str(err.value) == expected
    assert blocker.read_bytes() == b"a file, not a folder"
