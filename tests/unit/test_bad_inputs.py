"""Every bad input gets one clear line and a non-zero exit, through the CLI in-process.

Malformed store roots and S3 endpoints, a zero shard count, damaged dataset files (truncated or
foreign CIFAR pickles, labels out of range, a missing class folder, a corrupt JPEG) and a damaged
shard in a run folder, which a rerun of ``generate`` repairs.
"""

import pickle
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s import datasets, storage
from synk8s.cli.main import app
from synk8s.datasets.standin import MARKER
from synk8s.errors import MissingDataError

pytestmark = pytest.mark.timeout(120)

runner = CliRunner()
SECRET = "do-not-show-this-secret"


# What a stage prints to stderr besides errors: INFO log records and progress bars.
_PROGRESS = re.compile(r"^\d\d:\d\d:\d\d INFO synk8s\.|\d+%\|")


def one_line_error(args: list[str], exit_code: int | None = None) -> str:
    """Run the CLI; assert it failed with one stderr line besides progress, and no traceback; return it."""
    result = runner.invoke(app, args)
    assert result.exit_code != 0, result.output
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not _PROGRESS.search(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


# ----------------------------------------------------------------------------- store roots and endpoints


@pytest.mark.parametrize("root", ["s3:/bkt/x", "s3://", "s3:bkt", "S3:bkt/x", "s3://Bad_Bucket/x", "s3://ab/x"])
def test_a_malformed_s3_store_root_is_refused_before_anything_is_written(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["stage", "prompts", "--store", root], exit_code=2)
    assert "store.root" in line and root in line and "s3://" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://minio:port", "Port could not be cast"),
        ("http://minio:0", "port must be in 1-65535"),
        ("minio:9000", "must look like http://host:port"),
    ],
)
def test_a_malformed_endpoint_is_one_line(endpoint, expected, monkeypatch):
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    storage.clear_cache()
    line = one_line_error(["store", "ls", "s3://bucket/run"])
    assert "SYNK8S_S3_ENDPOINT" in line and expected in line and SECRET not in line


@pytest.mark.parametrize("endpoint", [f"http://admin:{SECRET}@127.0.0.1:9000", f"http://admin:{SECRET}@[::1"])
def test_user_info_in_the_endpoint_is_refused_and_never_printed(endpoint, monkeypatch):
    monkeypatch.setenv("SYNK8S_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    storage.clear_cache()
    line = one_line_error(["store", "ls", "s3://bucket/run"])
    assert "user name or password" in line and SECRET not in line and "admin" not in line


def test_collect_with_zero_shards_names_the_option(tmp_path):
    line = one_line_error(["stage", "collect", "--store", str(tmp_path), "--num-shards", "0"], exit_code=2)
    assert "--num-shards" in line and "got 0" in line


# ----------------------------------------------------------------------------- dataset files


def _standin(name: str, root: Path) -> Path:
    """A stand-in of ``name`` under ``root`` without its marker, so it is taken for real files; its folder."""
    datasets.write_standin(name, root, per_class=1)
    (root / MARKER).unlink()
    return root / datasets.get(name).base_dir


def _check(name: str, root: Path) -> str:
    return one_line_error(["datasets", "download", name, "--root", str(root)])


def test_a_truncated_cifar_batch_names_the_file(tmp_path):
    batch = _standin("cifar10", tmp_path) / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-100])
    line = _check("cifar10", tmp_path)
    assert f"{batch} does not hold" in line and "not a readable CIFAR pickle" in line and "re-extract" in line


def test_a_foreign_pickle_is_refused_without_running_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    batch = _standin("cifar10", tmp_path) / "test_batch"
    batch.write_bytes(pickle.dumps(Payload()))
    line = _check("cifar10", tmp_path)
    assert not (tmp_path / "ran").exists()
    assert f"{batch} does not hold" in line and "pathlib" in line and "never does" in line


def test_a_cifar_label_out_of_range_names_the_file(tmp_path):
    batch = _standin("cifar10", tmp_path) / "test_batch"
    entry = pickle.loads(batch.read_bytes(), encoding="latin1")
    entry["labels"][3] = 10
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    assert f"{batch} does not hold" in (line := _check("cifar10", tmp_path)) and "label 10 outside 0..9" in line


def test_a_wrong_class_set_names_the_file(tmp_path):
    meta = _standin("cifar10", tmp_path) / "batches.meta"
    names = pickle.loads(meta.read_bytes(), encoding="latin1")
    names["label_names"][2] = "wolf"
    meta.write_bytes(pickle.dumps(names, protocol=2))
    assert f"{meta} does not hold" in (line := _check("cifar10", tmp_path)) and "'wolf'" in line


def test_labels_out_of_range_in_a_list_file_name_the_image(tmp_path):
    base = _standin("cub200", tmp_path)
    labels = base / "image_class_labels.txt"
    rows = labels.read_text().splitlines()
    image_id = rows[0].split()[0]
    labels.write_text("\n".join([f"{image_id} 201", *rows[1:]]) + "\n")
    line = _check("cub200", tmp_path)
    assert "has label 200, outside 0..199" in line and "re-extract" in line


def test_a_missing_class_folder_is_an_error_not_a_warning(tmp_path):
    base = _standin("eurosat", tmp_path)
    shutil.rmtree(base / "Forest")
    line = _check("eurosat", tmp_path)
    assert "1 of 10 classes missing, e.g. 'Forest'" in line and str(base) in line


def test_a_corrupt_jpeg_names_the_file(tmp_path):
    _standin("eurosat", tmp_path)
    data = datasets.load("eurosat", "test", tmp_path)
    path = data._images.paths[4]
    path.write_bytes(path.read_bytes()[:200])
    assert data[3][0].mode == "RGB"  # the others still load
    with pytest.raises(MissingDataError) as err:
        data[4]
    assert str(err.value).startswith(f"{path} is not a readable image") and "replace it" in str(err.value)
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(MissingDataError, match="is not a readable image"):
        data[4]


# ----------------------------------------------------------------------------- a damaged shard in a run


def test_a_damaged_shard_stops_the_filter_and_a_rerun_of_generate_repairs_it(tmp_path):
    common = ["--store", str(tmp_path / "store"), "--dataset", "cifar10", "--set", "generate.images_per_class=1",
              "--set", "generate.num_shards=1", "--set", f"dataset.root={tmp_path}/data/{{name}}"]  # fmt: skip
    for stage in ("prompts", "generate", "collect"):
        assert runner.invoke(app, ["stage", stage, *common]).exit_code == 0
    (tar,) = (tmp_path / "store").rglob("*.tar")
    good = tar.read_bytes()
    tar.write_bytes(good[:2000])  # cut inside the second member

    line = one_line_error(["stage", "filter", *common])
    assert f"{tar} " in line and "synk8s stage generate" in line
    assert not list((tmp_path / "store").rglob("selection.safetensors"))

    assert runner.invoke(app, ["stage", "generate", *common]).exit_code == 0
    assert tar.read_bytes() == good
    assert runner.invoke(app, ["stage", "collect", *common]).exit_code == 0
    result = runner.invoke(app, ["stage", "filter", *common])
    assert result.exit_code == 0, result.output
    assert '"generated": 10' in result.stdout
