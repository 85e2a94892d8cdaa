"""Every bad input gets one clear line and a non-zero exit, through the CLI in-process.

Malformed store roots and S3 endpoints, a zero shard count, infinite or NaN floats and integers over
their ceiling in a config, profile files that are not UTF-8, YAML or a mapping, values that
``submit --dry-run`` and ``compile`` refuse as ``submit`` does, damaged dataset files (truncated or
foreign CIFAR pickles, labels out of range, a missing class folder, a corrupt JPEG), a damaged shard
in a run folder, which a rerun of ``generate`` repairs, and a disk that fills while ``generate``
streams a tar.
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


# ----------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    ("override", "got"),
    [("tune.lr=inf", "'inf'"), ("filter.threshold=nan", "'nan'"), ("fewshot.w_syn=-.inf", "-inf"),
     ("detect.anchor_ratios=[0.5, .nan]", "nan")],
)
def test_an_infinite_or_nan_float_is_refused_at_load(override, got):
    line = one_line_error(["config", "show", "--set", override], exit_code=2)
    key = override.partition("=")[0] + (".1" if override.startswith("detect.") else "")
    assert line == f"error: {key} must be a finite number, got {got}"


def test_a_nan_float_in_a_profile_file_is_refused_at_load(tmp_path):
    profile = tmp_path / "nan.yaml"
    profile.write_text("extends: tiny\nfewshot:\n  guidance_strength: {1: .nan}\n")
    line = one_line_error(["config", "show", "--profile", str(profile)], exit_code=2)
    assert line == "error: fewshot.guidance_strength.1 must be a finite number, got nan"


@pytest.mark.parametrize(
    ("override", "line"),
    [
        (f"seed={10**30}", f"seed must be at most {2**63 - 1}, got {10**30}"),
        (f"fewshot.split_seed={2**63}", f"fewshot.split_seed must be at most {2**63 - 1}, got {2**63}"),
        (f"generate.images_per_class={10**12}", f"generate.images_per_class must be at most 100000, got {10**12}"),
        (f"fewshot.shots=[1, {10**9}]", f"fewshot.shots.1 must be at most 100000, got {10**9}"),
        (f"tune.epochs={10**12}", f"tune.epochs must be at most 10000000, got {10**12}"),
        (f"tune.batch_size={10**9}", f"tune.batch_size must be at most 65536, got {10**9}"),
        (f"pretrain.images={10**12}", f"pretrain.images must be at most 10000000, got {10**12}"),
        (f"detect.train_sizes=[64, {10**6}]", f"detect.train_sizes.1 must be at most 16384, got {10**6}"),
        (f"generate.num_shards={10**6}", f"generate.num_shards must be at most 1024, got {10**6}"),
    ],
)
def test_an_integer_over_its_ceiling_is_refused_at_load(override, line):
    assert one_line_error(["config", "show", "--set", override], exit_code=2) == f"error: {line}"


def test_the_seeds_of_a_local_run_are_bounded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["submit", "zeroshot", "--local", "--dry-run", "--seeds", str(10**12)], exit_code=2)
    assert line == f"error: --seeds count must be in [1, 1000], got '{10**12}'"
    line = one_line_error(["submit", "zeroshot", "--local", "--dry-run", "--seeds", f"0,{2**64}"], exit_code=2)
    assert line == f"error: --seeds: a seed must be at most {2**63 - 1}, got {2**64}"


# ----------------------------------------------------------------------------- profile files


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"extends: tiny\ntune:\n  epochs: 3 # caf\xe9\n", "is not UTF-8 text: byte 0xe9 at offset 37; save it as UTF-8"),
        (b"\xff\xfee\x00x\x00", "is not UTF-8 text: byte 0xff at offset 0; save it as UTF-8"),
        (b"extends: tiny\ntune: [1,\n", "is not valid YAML: "),
        (b"- extends: tiny\n", "must be a mapping of config keys (e.g. 'extends: tiny'), got a YAML list"),
        (b"just words\n", "must be a mapping of config keys (e.g. 'extends: tiny'), got a YAML str"),
    ],
)
def test_a_bad_profile_file_names_the_file_and_the_problem(content, problem, tmp_path):
    profile = tmp_path / "mine.yaml"
    profile.write_bytes(content)
    line = one_line_error(["config", "show", "--profile", str(profile)], exit_code=2)
    assert line.startswith(f"error: profile file {profile} {problem}")


def test_a_bad_profile_file_two_levels_down_is_named(tmp_path):
    (tmp_path / "base.yaml").write_bytes(b"extends: tiny\nseed: \xff\n")
    (tmp_path / "top.yaml").write_text("extends: base.yaml\n")
    line = one_line_error(["config", "show", "--profile", str(tmp_path / "top.yaml")], exit_code=2)
    assert line.startswith(f"error: profile file {tmp_path / 'base.yaml'} is not UTF-8 text")


# ----------------------------------------------------------------------------- dry run and compile


@pytest.mark.parametrize(
    "args",
    [
        ["--local", "--set", "tune.lr=inf"],
        ["--local", "--seed", str(10**30)],
        ["--local", "--seeds", "0,0"],
        ["--local", "--recurring", "0 0 3 * * *"],
        ["--threads", "2", "--host", "http://127.0.0.1:9", "--store", "s3://bucket/x"],
        ["--host", "http://127.0.0.1:9"],  # the profile's store is a local folder
        ["--host", "http://127.0.0.1:9", "--store", "s3://bucket/x", "--recurring", "0 0 25 * * *"],
    ],
)
def test_dry_run_refuses_what_submit_refuses(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    submitted = one_line_error(["submit", "zeroshot", *args], exit_code=2)
    assert one_line_error(["submit", "zeroshot", "--dry-run", *args], exit_code=2) == submitted
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override", ["tune.lr=nan", f"seed={2**63}", "dataset.name=voc2007", "fewshot.shots=[]"])
def test_compile_refuses_what_submit_refuses(override, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    submitted = one_line_error(["submit", "fewshot", "--local", "--dry-run", "--set", override], exit_code=2)
    compiled = one_line_error(["compile", "fewshot", "-o", "f.yaml", "--set", override], exit_code=2)
    assert compiled == submitted
    assert list(tmp_path.iterdir()) == []


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


def test_a_disk_that_fills_while_generate_streams_a_tar(tmp_path, monkeypatch):
    from synk8s.storage.local import LocalStore

    common = ["--store", str(tmp_path / "store"), "--dataset", "cifar10", "--set", "generate.images_per_class=1",
              "--set", "generate.num_shards=1", "--set", f"dataset.root={tmp_path}/data/{{name}}"]  # fmt: skip
    assert runner.invoke(app, ["stage", "prompts", *common]).exit_code == 0
    real = LocalStore.temp_path

    def full_for_tars(self, uri):  # the tar's temp file is /dev/full: its writes fail with ENOSPC
        tmp = real(self, uri)
        if uri.endswith(".tar"):
            tmp.unlink()
            tmp.symlink_to("/dev/full")
        return tmp

    monkeypatch.setattr(LocalStore, "temp_path", full_for_tars)
    line = one_line_error(["stage", "generate", *common], exit_code=1)
    assert re.fullmatch(r"error: cannot write \S+/00000\.tar: no space left on the device of \S+ \(after \d+ bytes\); "
                        r"free space there and rerun", line), line
    assert not list((tmp_path / "store").rglob("*.tar")) and not list((tmp_path / "store").rglob(".synk8s-tmp-*"))
