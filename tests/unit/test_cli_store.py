"""``synk8s store ls|cp|mb`` in-process against a local folder and the local S3 server."""

import hashlib

import pytest
from typer.testing import CliRunner

from synk8s import storage
from synk8s.cli.store import app
from synk8s.errors import StoreError, UsageError

pytestmark = pytest.mark.timeout(60)

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_ls_shows_size_hash_and_folders(s3_env):
    storage.put_bytes(s3_env + "/run/a.txt", b"hello")
    storage.put_bytes(s3_env + "/run/sub/b.txt", b"world!")
    result = run("ls", s3_env + "/run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["DIR", s3_env + "/run/sub/"]
    assert lines[1].split() == ["5", sha(b"hello")[:12], s3_env + "/run/a.txt"]
    assert len(lines) == 2

    recursive = run("ls", "-r", s3_env + "/run")
    assert [line.split()[-1] for line in recursive.output.splitlines()] == [
        s3_env + "/run/a.txt",
        s3_env + "/run/sub/b.txt",
    ]
    single = run("ls", s3_env + "/run/sub/b.txt")
    assert single.output.split() == ["6", sha(b"world!")[:12], s3_env + "/run/sub/b.txt"]


def test_ls_missing_is_an_error(tmp_path):
    result = run("ls", str(tmp_path / "nothing"))
    assert result.exit_code != 0
    assert isinstance(result.exception, storage.ObjectNotFoundError)
    assert str(result.exception) == f"no object or folder at {tmp_path / 'nothing'}"


def test_cp_single_object_both_ways(s3_env, tmp_path):
    src = tmp_path / "prompts.jsonl"
    src.write_bytes(b'{"p": 1}\n')
    up = run("cp", str(src), s3_env + "/in/")  # trailing slash: keep the name
    assert up.exit_code == 0, up.output
    assert storage.stat(s3_env + "/in/prompts.jsonl").sha256 == sha(src.read_bytes())

    (tmp_path / "back").mkdir()
    down = run("cp", s3_env + "/in/prompts.jsonl", str(tmp_path / "back"))  # existing folder
    assert down.exit_code == 0, down.output
    assert (tmp_path / "back" / "prompts.jsonl").read_bytes() == src.read_bytes()


def test_cp_prefix_recursively(s3_env, tmp_path):
    files = {"shards/s-0.tar": b"0" * 1000, "shards/s-1.tar": b"1" * 2000, "shards/meta/m.json": b"{}"}
    for key, data in files.items():
        storage.put_bytes(f"{s3_env}/run/{key}", data)
    result = run("cp", s3_env + "/run/shards", str(tmp_path / "local"))
    assert result.exit_code == 0, result.output
    assert "copied 3 objects (3002 bytes)" in result.output
    for key, data in files.items():
        assert (tmp_path / "local" / key.removeprefix("shards/")).read_bytes() == data

    back = run("cp", str(tmp_path / "local"), s3_env + "/copy")
    assert back.exit_code == 0, back.output
    copied = storage.list(s3_env + "/copy")
    assert [(o.uri, o.sha256) for o in copied] == [
        (f"{s3_env}/copy/{key.removeprefix('shards/')}", sha(data)) for key, data in sorted(files.items())
    ]


def test_cp_missing_source(tmp_path):
    result = run("cp", str(tmp_path / "absent"), str(tmp_path / "dst"))
    assert isinstance(result.exception, storage.ObjectNotFoundError)
    assert not (tmp_path / "dst").exists()


def test_cp_below_a_file_names_the_file(tmp_path):
    src = tmp_path / "afile.txt"
    src.write_bytes(b"data")
    result = run("cp", str(src), str(src / "x"))
    assert isinstance(result.exception, StoreError)
    assert str(result.exception) == f"{src} is a file, not a folder; choose a destination outside it"
    assert src.read_bytes() == b"data"


@pytest.mark.parametrize("args", [("ls", ""), ("cp", "", "dst"), ("cp", __file__, ""), ("mb", "")])
def test_empty_uri_is_a_usage_error(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert isinstance(result.exception, UsageError)
    assert str(result.exception) == "empty store URI; pass a folder or s3://bucket/prefix"
    assert list(tmp_path.iterdir()) == []


def test_mb_creates_bucket(s3_env):
    result = run("mb", "s3://fresh-bucket")
    assert result.exit_code == 0, result.output
    storage.put_bytes("s3://fresh-bucket/k", b"x")
    assert storage.exists("s3://fresh-bucket/k")
