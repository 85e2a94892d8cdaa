"""A local store write that fills the disk: one-line StoreError, the old object intact, no temp file left.

A real full filesystem is not at hand, so the write's temp file is pointed at ``/dev/full``, where
every write that reaches the kernel fails with ``ENOSPC`` (the first 8 KiB of a stream still land in
Python's buffer, so a stream fails midway). A quota is simulated by raising ``EDQUOT`` in a writer.
"""

import errno
from pathlib import Path

import pytest

from synk8s import storage
from synk8s.errors import StoreError
from synk8s.storage.files import TMP_PREFIX
from synk8s.storage.local import LocalStore

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to fill a write"),
]

OLD = b"the old object\n"


def fill_disk(monkeypatch) -> None:
    """Make every local store write land in ``/dev/full`` (through its temp file, a symlink to it)."""
    real = LocalStore.temp_path

    def full_temp(self, uri):
        tmp = real(self, uri)
        tmp.unlink()
        tmp.symlink_to("/dev/full")
        return tmp

    monkeypatch.setattr(LocalStore, "temp_path", full_temp)


def leftovers(folder: Path) -> list[Path]:
    """Temp files (or links) under ``folder``, the sidecar folder included."""
    return list(folder.rglob(f"{TMP_PREFIX}*"))


@pytest.fixture
def old(tmp_path) -> str:
    """An object written before the disk filled; its URI."""
    uri = str(tmp_path / "run" / "x.bin")
    storage.put_bytes(uri, OLD)
    return uri


def _assert_untouched(uri: str) -> None:
    assert storage.get_bytes(uri) == OLD
    assert storage.stat(uri).size == len(OLD)
    assert leftovers(Path(uri).parent) == []


def test_put_bytes_on_a_full_disk(old, monkeypatch):
    fill_disk(monkeypatch)
    with pytest.raises(StoreError) as err:
        storage.put_bytes(old, b"y" * 100_000)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"cannot write {old}: no space left on the device of {Path(old).parent} (it needs 100000 bytes); "
        "free space there and rerun"
    )
    _assert_untouched(old)


def test_put_file_on_a_full_disk(old, tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(b"z" * 20_000)
    fill_disk(monkeypatch)
    with pytest.raises(StoreError, match=r"no space left on the device .*\(it needs 20000 bytes\)"):
        storage.put_file(old, src)
    _assert_untouched(old)


def test_a_writer_stream_that_fills_the_disk_midway(old, monkeypatch):
    fill_disk(monkeypatch)
    with pytest.raises(StoreError) as err:
        with storage.writer(old) as f:
            f.write(b"a" * 1000)  # buffered: still fine
            f.write(b"b" * 100_000)  # reaches the disk: ENOSPC
    assert str(err.value).startswith(f"cannot write {old}: no space left on the device of {Path(old).parent} (after ")
    _assert_untouched(old)


def test_a_writer_over_quota(old):
    with pytest.raises(StoreError) as err:
        with storage.writer(old) as f:
            f.write(b"c" * 5000)
            f.flush()
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert str(err.value) == (
        f"cannot write {old}: the disk quota is used up in {Path(old).parent} (after 5000 bytes); "
        "free space there and rerun"
    )
    _assert_untouched(old)


def test_other_write_errors_pass_through(old):
    with pytest.raises(OSError) as err:
        with storage.writer(old) as f:
            f.write(b"d")
            raise OSError(errno.EIO, "I/O error")
    assert err.value.errno == errno.EIO and not isinstance(err.value, StoreError)
    _assert_untouched(old)
