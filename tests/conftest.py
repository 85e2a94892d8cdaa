"""Shared fixtures: one torch thread, a real local S3 server (moto's standalone server), tiny generated images."""

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from synk8s import storage

TEST_BUCKET = "synk8s-test"


def pytest_configure(config):
    """Under ``pytest -n N`` (N <= cores), pin each worker to its own core.

    Local pipeline runs size their tasks' threads from the cores this process may use, so a worker
    and the task processes it starts stay on one core instead of contending for all of them.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0))
    if worker and workers <= len(cores):
        os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})

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


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run many small ops: one thread avoids stalls when other processes share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_config(root, per_class: int, *overrides: str):
    """The tiny profile for cifar10, B prompts, ``per_class`` images per class, one shard, store under ``root``."""
    from synk8s import config

    return config.load(
        "tiny",
        [
            "dataset.name=cifar10",
            "prompts.mode=B",
            f"generate.images_per_class={per_class}",
            "generate.num_shards=1",
            f"store.root={root}/store",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(root, per_class, *overrides)``: the config :func:`tiny_images` generates with."""
    return _tiny_config


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory):
    """Generate tiny images once per setting: ``tiny_images(per_class)`` -> root with ``images/``.

    Made with ``tiny_config(root, per_class)`` (tiny-sd); the prompts are under ``<root>/prompts``.
    """
    from synk8s.stages.synth import generate, prompts

    made = {}

    def make(per_class: int):
        if per_class not in made:
            root = tmp_path_factory.mktemp(f"tiny-images-{per_class}")
            cfg = _tiny_config(root, per_class)
            prompts.run(cfg, out=str(root / "prompts"))
            generate.run(cfg, prompts=str(root / "prompts"), out=str(root / "images"))
            generate.collect(cfg, out=str(root / "images"))
            made[per_class] = root
        return made[per_class]

    return make


@dataclass(frozen=True)
class ZeroshotRun:
    """A finished tiny zero-shot run: its store root, config, ``--set`` overrides and run folder."""

    root: Path
    cfg: Any
    sets: tuple[str, ...]
    run: str

    def folder(self, stage: str) -> Path:
        """The output folder of ``stage`` in this run."""
        from synk8s.stages.table import TABLE

        return Path(TABLE.stage_dir(self.run, stage, self.cfg))


ZEROSHOT_SETS = (
    "dataset.name=cifar10",
    "prompts.mode=B",
    "generate.images_per_class=2",
    "generate.num_shards=1",
    "filter.threshold=0.0",  # keep every image: tune needs two per class to validate on
    "tune.epochs=1",
)


@pytest.fixture(scope="session")
def zeroshot_run(tmp_path_factory) -> ZeroshotRun:
    """Every stage of the zero-shot pipeline (export included) on tiny cifar10, run in this process once.

    The stages write into the folders the pipeline uses, so ``submit --local`` with the same
    ``--set`` options finds the run complete. Tests read it; one that damages a file restores it.
    """
    from synk8s import config
    from synk8s.stages.table import TABLE

    root = tmp_path_factory.mktemp("zeroshot-store")
    cfg = config.load("tiny", [*ZEROSHOT_SETS, f"store.root={root}"])
    run = TABLE.run_dir(cfg)
    TABLE.execute("prompts", cfg, run)
    TABLE.execute("generate", cfg, run, shard=0)
    TABLE.execute("generate", cfg, run, collect=True)
    for stage in ("filter", "test_features", "features", "leakage", "tune", "evaluate", "export"):
        TABLE.execute(stage, cfg, run)
    return ZeroshotRun(root, cfg, tuple(s for s in ZEROSHOT_SETS if not s.startswith("dataset.")), run)


@pytest.fixture(scope="session")
def exported_classifier(zeroshot_run, tmp_path_factory) -> Path:
    """The classifier of :func:`zeroshot_run`, copied out of its export folder as ``synk8s export`` does."""
    from synk8s.stages.export import export_folder

    out = tmp_path_factory.mktemp("exported") / "classifier"
    assert export_folder(zeroshot_run.run, str(out)) == "classifier"
    return out


@pytest.fixture(scope="session")
def real_test_images(zeroshot_run) -> list:
    """(PIL image, label) of every image of the run's real test split, the images its evaluate stage scored."""
    from synk8s import datasets
    from synk8s.realdata import ensure_dataset

    cfg = zeroshot_run.cfg
    data_set = datasets.load(cfg.dataset.name, datasets.get(cfg.dataset.name).test_split, ensure_dataset(cfg))
    return [data_set[i] for i in range(len(data_set))]


@pytest.fixture(scope="session")
def image_folder(real_test_images, tmp_path_factory) -> Path:
    """Six of :func:`real_test_images` as files: PNGs, one JPEG in a sub-folder."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "sub").mkdir()
    for i, (image, _) in enumerate(real_test_images[:5]):
        image.save(folder / f"{i}.png")
    real_test_images[5][0].save(folder / "sub" / "5.jpg", quality=95)
    return folder


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
