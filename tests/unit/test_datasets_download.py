"""`synk8s datasets download` against a local HTTP server standing in for the dataset hosts.

No test reaches the internet: the torchvision classes' download URLs (and, where a served archive
is a stand-in, their checksums) are pointed at a server on 127.0.0.1 that serves what each test
puts in it, and answers 404 for anything else.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import pytest
from torchvision.datasets import CIFAR10, DTD
from typer.testing import CliRunner

from synk8s import datasets
from synk8s.cli.main import app
from synk8s.datasets.download import _FETCHERS, MANUAL, _urls
from synk8s.errors import MissingDataError, UsageError

pytestmark = pytest.mark.timeout(60)

runner = CliRunner()


class _Host:
    """A local HTTP server: ``files`` maps a path (``/x.tar.gz``) to bytes; ``requests`` lists the paths asked."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # the name http.server calls
                host.requests.append(self.path)
                body = host.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def host():
    server = _Host()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def dtd_archive(tmp_path_factory) -> bytes:
    """A DTD stand-in packed like dtd-r1.0.1.tar.gz: a top-level ``dtd/`` with ``images/`` and ``labels/``."""
    src = tmp_path_factory.mktemp("dtd-src")
    datasets.write_standin("dtd", src, per_class=1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(src / "dtd" / "dtd", arcname="dtd")
    return buffer.getvalue()


def _serve_dtd(host: _Host, monkeypatch, body: bytes) -> str:
    """Serve ``body`` as DTD's archive and point torchvision's DTD at it (URL and md5 of ``body``)."""
    host.files["/dtd-r1.0.1.tar.gz"] = body
    url = host.url("/dtd-r1.0.1.tar.gz")
    monkeypatch.setattr(DTD, "_URL", url)
    monkeypatch.setattr(DTD, "_MD5", hashlib.md5(body).hexdigest())
    return url


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", sorted(MANUAL))
def test_manual_only_datasets_say_where_to_get_and_put_the_files(name, tmp_path):
    root = tmp_path / "data"
    info = datasets.get(name)
    with pytest.raises(MissingDataError) as caught:
        datasets.download(name, root)
    text = _one_line(caught.value)
    assert text.startswith(f"{name} cannot be downloaded automatically")
    assert info.homepage in text
    assert f"{root / info.base_dir}/" in text  # the layout, with the real root filled in
    assert not root.exists()


def test_every_dataset_is_either_downloadable_or_manual():
    assert set(MANUAL) == {"imagenet", "imagenet_sketch", "birdsnap", "stanford_cars"}
    for info in datasets.all():
        if info.name not in MANUAL:
            assert info.name in _FETCHERS or info.torchvision_class not in (None, "ImageFolder"), info.name
            assert all(url.startswith(("http://", "https://")) for url in _urls(info)), info.name


def test_download_moves_a_verified_dataset_into_place(host, monkeypatch, tmp_path, dtd_archive):
    _serve_dtd(host, monkeypatch, dtd_archive)
    root = tmp_path / "data"
    assert datasets.download("dtd", root) == str(root)
    asked = len(host.requests)
    assert asked and set(host.requests) == {"/dtd-r1.0.1.tar.gz"}
    # only the dataset folder: no archive, no temporary folder, no stand-in marker
    assert sorted(p.name for p in root.iterdir()) == ["dtd"]
    assert sorted(p.name for p in (root / "dtd").iterdir()) == ["dtd"]
    for split in ("train", "val", "test"):
        assert len(datasets.load("dtd", split, root)) == 47

    host.files.clear()  # a second run must not need the host
    assert datasets.download("dtd", root) == str(root)
    assert len(host.requests) == asked


def test_http_404_is_one_line_and_leaves_nothing(host, monkeypatch, tmp_path):
    url = host.url("/cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "url", url)
    root = tmp_path / "data"
    with pytest.raises(MissingDataError) as caught:
        datasets.download("cifar10", root)
    text = _one_line(caught.value)
    assert text.startswith("cifar10 download failed: HTTP 404")
    assert url in text
    assert f"put the files at {root / 'cifar-10-batches-py'}/" in text
    assert host.requests  # the server was really asked
    assert not root.exists()


def test_checksum_mismatch_is_one_line_and_leaves_nothing(host, monkeypatch, tmp_path):
    host.files["/cifar-10-python.tar.gz"] = b"not the CIFAR-10 archive"
    monkeypatch.setattr(CIFAR10, "url", host.url("/cifar-10-python.tar.gz"))
    root = tmp_path / "data"
    root.mkdir()
    (root / "notes.txt").write_text("kept")  # a root that already holds other things keeps them
    with pytest.raises(MissingDataError) as caught:
        datasets.download("cifar10", root)
    assert "checksum does not match" in _one_line(caught.value)
    assert _files(root) == ["notes.txt"]


def test_truncated_archive_leaves_no_half_extracted_dataset(host, monkeypatch, tmp_path, dtd_archive):
    # the checksum matches the truncated bytes, so torchvision extracts until the archive ends
    truncated = dtd_archive[: len(dtd_archive) * 2 // 3]
    url = _serve_dtd(host, monkeypatch, truncated)
    root = tmp_path / "data"
    with pytest.raises(MissingDataError) as caught:
        datasets.download("dtd", root)
    text = _one_line(caught.value)
    assert text.startswith("dtd download failed: EOFError")
    assert url in text
    assert not root.exists()


def test_unreachable_host_is_one_line(monkeypatch, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    monkeypatch.setattr(CIFAR10, "url", url)
    with pytest.raises(MissingDataError) as caught:
        datasets.download("cifar10", tmp_path / "data")
    text = _one_line(caught.value)
    assert "cannot reach the server" in text
    assert url in text
    assert not (tmp_path / "data").exists()


def test_refuses_to_download_over_a_standin(host, monkeypatch, tmp_path, dtd_archive):
    _serve_dtd(host, monkeypatch, dtd_archive)
    datasets.write_standin("cifar10", tmp_path, per_class=1)
    before = _files(tmp_path)
    with pytest.raises(UsageError) as caught:
        datasets.download("dtd", tmp_path)
    text = _one_line(caught.value)
    assert "stand-in" in text and "--root" in text
    assert _files(tmp_path) == before
    assert host.requests == []


def test_present_but_broken_dataset_is_not_downloaded_again(host, monkeypatch, tmp_path, dtd_archive):
    _serve_dtd(host, monkeypatch, dtd_archive)
    (tmp_path / "dtd" / "dtd" / "images").mkdir(parents=True)
    with pytest.raises(MissingDataError) as caught:
        datasets.download("dtd", tmp_path)
    text = _one_line(caught.value)
    assert "labels/train1.txt" in text
    assert f"delete {tmp_path / 'dtd' / 'dtd'}" in text
    assert host.requests == []


def test_cli_prints_the_root(host, monkeypatch, tmp_path, dtd_archive):
    _serve_dtd(host, monkeypatch, dtd_archive)
    result = runner.invoke(app, ["datasets", "download", "dtd", "--root", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'd'}\n"


def test_cli_default_root_is_data_name(host, monkeypatch, tmp_path, dtd_archive):
    _serve_dtd(host, monkeypatch, dtd_archive)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["datasets", "download", "dtd"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'data' / 'dtd'}\n"
    assert len(datasets.load("dtd", "test", tmp_path / "data" / "dtd")) == 47


@pytest.mark.parametrize(
    ("args", "code", "start"),
    [
        (["imagenet_r_typo"], 2, "error: unknown dataset 'imagenet_r_typo'"),
        (["imagenet"], 1, "error: imagenet cannot be downloaded automatically"),
    ],
)
def test_cli_errors_are_one_line(args, code, start, tmp_path):
    result = runner.invoke(app, ["datasets", "download", *args, "--root", str(tmp_path / "d")])
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith(start)
    assert result.stderr.count("\n") == 1
