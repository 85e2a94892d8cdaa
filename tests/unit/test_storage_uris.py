"""Local paths written as file: URIs, and schemes that are refused rather than taken for folders."""

import pytest

from synk8s import storage
from synk8s.errors import UsageError


@pytest.mark.parametrize("form", ["file://{}", "file:{}"])
def test_a_file_uri_is_its_local_path(tmp_path, monkeypatch, form):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "store"
    uri = form.format(folder)
    assert storage.check_root(uri) == str(folder)  # a root is kept as the plain path
    info = storage.put_bytes(storage.join(uri, "a.bin"), b"x")
    assert (folder / "a.bin").read_bytes() == b"x" and storage.get_bytes(info.uri) == b"x"
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no relative folder named "file:"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file://host/tmp/x", "malformed file URI 'file://host/tmp/x"),
        ("file:relative/x", "malformed file URI 'file:relative/x"),
        ("foo://bucket/x", "unsupported URI scheme 'foo'"),
        ("http:/host/x", "unsupported URI scheme 'http'"),
    ],
)
def test_other_schemes_and_file_uris_with_a_host_are_refused(tmp_path, monkeypatch, uri, message):
    monkeypatch.chdir(tmp_path)
    for call in (storage.check_root, lambda u: storage.put_bytes(storage.join(u, "a.bin"), b"x")):
        with pytest.raises(UsageError) as err:
            call(uri)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []

