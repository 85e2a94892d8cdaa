"""Detection transfer (Tables 9-10): fine-tune Faster R-CNN on VOC07+12, report AP on VOC07 test.

The trunk comes from a pre-training output folder (``backbone``), or, with ``backbone=None``, from
``detect.init``: ``scratch`` (the tables' "(None)" row) or ``imagenet`` (their "pre-trained on
IN-1k" row with no synthetic data). The protocol is MoCo's detectron2 VOC setup (R50-C4, SyncBN,
24k iterations at batch 16, see ``docs/detection.md``); the ``tiny`` profile runs it on the drawn
shapes stand-in. Run it in one process, or under ``torchrun`` with the process group initialised
(every process calls :func:`run`; rank 0 writes).

    cfg = config.load("tiny")
    result = detect.run(cfg, backbone="runs/x/pretrain", out="runs/x/detect")
    result.ap50, load_metrics("runs/x/detect")["per_class"]["car"]

Outputs under ``out``: ``metrics.json`` (AP50, AP, AP75 in percent, per-class AP, the pre-training
row it belongs to in the tables), ``model.safetensors`` (the detector; metadata key ``synk8s`` holds
JSON with the architecture and config), ``curve.json`` (losses and lr), ``checkpoints/`` (the latest
training checkpoint; a rerun resumes from it) and ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, storage
from synk8s.config import DetectConfig, ExperimentConfig
from synk8s.errors import UsageError
from synk8s.preflight import ImageNetStart
from synk8s.runs import read_manifest, write_manifest
from synk8s.seeds import derive_seed
from synk8s.stagetable.spec import Resources, StageSpec

logger = logging.getLogger(__name__)

#: Config fields the stage's outputs depend on (besides the ``backbone`` folder it reads).
CONFIG_FIELDS = ("seed", "models.backbone", "models.cache", "detect")
MODEL_METADATA_KEY = "synk8s"
METRIC_NAME = "VOC2007 11-point AP, percent"
#: Table label of each pre-training label space.
DATA_LABELS = {"cifar100": "CIFAR-100 Syn", "imagenet-1k": "IN-1K Syn", "imagenet-2k": "IN-2K Syn"}
#: Table name of each ``pretrain.method`` (Table 10 is MoCo v2).
METHOD_LABELS = {"supervised": "supervised", "moco": "mocov2"}
TARGET = "synk8s.stages.pretraining.detect:train"


class DetectResult(BaseModel):
    """What :func:`run` wrote and the test-set AP (percent).

    Attributes:
        metrics: URI of ``metrics.json``.
        model: URI of ``model.safetensors``.
        curve: URI of ``curve.json``.
        manifest: URI of ``manifest.json``.
        ap50: VOC2007 11-point AP at IoU 0.5, mean over classes.
        ap: mean of the class-mean APs at IoU 0.50 ... 0.95.
        ap75: AP at IoU 0.75.
        iterations: training iterations of the run.
        resumed_from: checkpoint iteration this call continued from (None: trained from the start).
        train_images: training images (VOC07+12 trainval after dropping images with no object).
        test_images: VOC07 test images evaluated.
        standin: True when the data is the drawn stand-in.
        seconds: wall-clock time of this call.
    """

    model_config = ConfigDict(frozen=True)

    metrics: str
    model: str
    curve: str
    manifest: str
    ap50: float
    ap: float
    ap75: float
    iterations: int
    resumed_from: int | None
    train_images: int
    test_images: int
    standin: bool
    seconds: float


def _fingerprint(cfg: ExperimentConfig, trunk_source: str) -> dict[str, str]:
    """What a checkpoint belongs to, by content: another fingerprint is refused on resume.

    Paths (``detect.root``, ``models.cache``) are left out and a pre-training trunk is named by the
    SHA-256 of its weights, so a copied or moved store resumes from its checkpoints.
    """
    from synk8s.checkpoint_files import object_digest
    from synk8s.models.checkpoints import WEIGHTS_FILE

    fields = [f"detect.{name}" for name in DetectConfig.model_fields if name != "root"]
    trunk = trunk_source
    if trunk_source not in ("scratch", "imagenet"):
        trunk = object_digest(storage.join(trunk_source, WEIGHTS_FILE))
    return {"config": cfg.digest("seed", "models.backbone", *fields), "trunk": trunk}


def check_config(dc: DetectConfig) -> None:
    """Cross-field checks of the ``detect`` section, each failing with one line."""
    if any(step >= dc.iterations for step in dc.lr_steps):
        raise UsageError(f"detect.lr_steps {list(dc.lr_steps)} must lie below detect.iterations={dc.iterations}")
    if dc.warmup_iters >= dc.iterations:
        raise UsageError(f"detect.warmup_iters={dc.warmup_iters} must be below detect.iterations={dc.iterations}")


def pretraining_row(cfg: ExperimentConfig, source: str, info: dict[str, Any]) -> dict[str, Any]:
    """Where a run belongs in Tables 9-10: ``method``, ``data``, ``in1k_init``, ``images``, ``backbone``.

    ``scratch`` and ``imagenet`` starts are the "(None)" rows (0 synthetic images; ``method`` None,
    so they appear in both tables). The pre-training stage's ``backbone.json`` carries ``method``
    (``moco`` is the tables' ``mocov2``), ``label_space``, ``num_images`` (the synthetic images
    generated; ``images``, those trained on, when absent) and ``init`` (``imagenet`` when the
    pre-training itself started from IN-1k weights); ``pretrain.*`` of the config fills what is missing.
    """
    if source in ("scratch", "imagenet"):
        return {"method": None, "data": "(None)", "in1k_init": source == "imagenet", "images": 0, "backbone": None}
    label_space = info.get("label_space", cfg.pretrain.label_space)
    method = info.get("method", cfg.pretrain.method)
    return {
        "method": METHOD_LABELS.get(method, method),
        "data": DATA_LABELS.get(label_space, label_space),
        "in1k_init": info.get("init") == "imagenet",
        "images": int(info.get("num_images", info.get("images", cfg.pretrain.images))),
        "backbone": source,
    }


def run(cfg: ExperimentConfig, *, backbone: str | None, out: str, progress: bool = True) -> DetectResult:
    """Fine-tune Faster R-CNN on VOC07+12 trainval and evaluate it on VOC07 test.

    Args:
        cfg: experiment config; ``detect.*``, ``models.backbone``, ``models.cache``, ``pretrain.*``
            (table labels), ``seed`` and ``device`` are used.
        backbone: output folder URI of a pre-training run (``backbone.safetensors`` + ``backbone.json``),
            or None to start from ``detect.init``.
        out: output folder URI of this stage; a checkpoint there is resumed.
        progress: show progress bars (rank 0).

    Raises:
        UsageError: inconsistent ``detect`` settings, a trunk of another architecture, or a checkpoint
            of another run under ``out``.
        MissingDataError: VOC (or the stand-in) cannot be found or written, or the trunk weights are missing.
    """
    from synk8s.detection import voc_data

    started = time.perf_counter()
    dc = cfg.detect
    process = _start_process(cfg)
    # 1. Detector around the trunk: the same initial weights on every process.
    trunk, model = _build_model(cfg, backbone, process)
    # 2. Data: rank 0 fetches or draws it first, the others then find it in place.
    root, train_set, test_set = _load_data(dc, process)
    # 3. Training, resumed from the latest checkpoint under out.
    images = voc_data.TrainImages(train_set)
    data_seed = derive_seed(cfg.seed, "detect", "data")
    trained = _train(cfg, model, images, trunk, process, out, seed=data_seed, tested=len(test_set), progress=progress)
    # 4. Precise BN, then the test set.
    result = _evaluate(model, images, test_set, dc, process, seed=data_seed, progress=progress)
    standin = datasets.is_standin(root)
    # 5. Outputs, written by rank 0.
    uris = _output_uris(out)
    seconds = time.perf_counter() - started
    if process.is_main:
        counts = {"train_images": len(train_set), "test_images": len(test_set), "iterations": dc.iterations}
        _write_outputs(cfg, out, uris, backbone, trunk, model, process, trained, result, root, counts, standin, seconds)
    return DetectResult(
        metrics=uris["metrics"],
        model=uris["model"],
        curve=uris["curve"],
        manifest=storage.join(out, "manifest.json"),
        ap50=result.ap50,
        ap=result.ap,
        ap75=result.ap75,
        iterations=dc.iterations,
        resumed_from=trained.resumed_from,
        train_images=len(train_set),
        test_images=len(test_set),
        standin=standin,
        seconds=seconds,
    )


def _start_process(cfg: ExperimentConfig) -> Any:
    """Check the ``detect`` settings against each other and the process count; this process's place."""
    from synk8s import distributed
    from synk8s.models.device import resolve_device

    dc = cfg.detect
    check_config(dc)
    process = distributed.current(resolve_device(cfg.device))
    if dc.batch_size % process.world_size:
        raise UsageError(f"detect.batch_size={dc.batch_size} must be a multiple of the {process.world_size} processes")
    return process


def _build_model(cfg: ExperimentConfig, backbone: str | None, process: Any) -> tuple[Any, Any]:
    """Resolve the trunk and build the detector around it, seeding its initial weights and then training."""
    import torch

    from synk8s.detection import voc_data
    from synk8s.detection.model import build_detector
    from synk8s.detection.trunk import build_trunk, resolve_trunk

    dc = cfg.detect
    trunk = resolve_trunk(backbone, init=dc.init, backbone=cfg.models.backbone, cache=cfg.models.cache)
    torch.manual_seed(derive_seed(cfg.seed, "detect", "init"))
    model = build_detector(dc, build_trunk(trunk), num_classes=len(voc_data.class_names())).to(process.device)
    torch.manual_seed(derive_seed(cfg.seed, "detect", "train", process.rank))
    return trunk, model


def _load_data(dc: DetectConfig, process: Any) -> tuple[Any, list[Any], list[Any]]:
    """Ensure the data (rank 0 first) and read its train and test records: ``(root, train, test)``."""
    import torch

    from synk8s.detection import voc_data

    if process.is_main:
        root = voc_data.ensure_voc(dc)
    if process.in_group:
        torch.distributed.barrier()
    if not process.is_main:
        root = voc_data.ensure_voc(dc)
    train_set = voc_data.train_records(root, train_difficult=dc.train_difficult)
    test_set = voc_data.evaluation_records(root)
    if len(train_set) < dc.batch_size:
        raise UsageError(f"{len(train_set)} training images under {root} cannot fill detect.batch_size={dc.batch_size}")
    return root, train_set, test_set


def _train(
    cfg: ExperimentConfig, model: Any, images: Any, trunk: Any, process: Any, out: str, *, seed: int, tested: int,
    progress: bool,
) -> Any:
    """Train the detector, resuming from the latest checkpoint under ``out``."""
    from synk8s.detection.train import train_detector

    fingerprint = _fingerprint(cfg, trunk.source)
    logger.info(
        "training on %d images (%s), testing on %d, device %s",
        len(images),
        trunk.source,
        tested,
        process.device,
    )
    return train_detector(
        model,
        images,
        cfg.detect,
        process,
        seed=seed,
        checkpoints=storage.join(out, "checkpoints"),
        plan=fingerprint,
        progress=progress,
    )


def _evaluate(
    model: Any, images: Any, test_set: list[Any], dc: DetectConfig, process: Any, *, seed: int, progress: bool
) -> Any:
    """Recompute the BN statistics precisely, then predict on the test set and score it."""
    from synk8s.detection import voc_data
    from synk8s.detection.train import precise_bn, predict
    from synk8s.detection.voc_eval import GroundTruth, evaluate

    precise_bn(model, images, dc, process, seed=seed)
    found = predict(model, test_set, dc, process, progress=progress)
    truth = [GroundTruth(r.boxes, r.labels, r.difficult) for r in test_set]
    return evaluate(truth, found, voc_data.class_names())


def _output_uris(out: str) -> dict[str, str]:
    """URIs of ``metrics.json``, ``model.safetensors`` and ``curve.json`` under ``out``."""
    return {
        name: storage.join(out, file)
        for name, file in (("metrics", "metrics.json"), ("model", "model.safetensors"), ("curve", "curve.json"))
    }


def _write_outputs(
    cfg: ExperimentConfig, out: str, uris: dict[str, str], backbone: str | None, trunk: Any, model: Any, process: Any,
    trained: Any, result: Any, root: Any, counts: dict[str, int], standin: bool, seconds: float,
) -> None:
    """Write the metrics, the detector's weights, the curve and the manifest (rank 0's job)."""
    from safetensors.torch import save

    from synk8s.detection import voc_data

    dc = cfg.detect
    row = pretraining_row(cfg, trunk.source, trunk.info)
    metrics = {
        **result.to_json(),
        "metric": METRIC_NAME,
        "standin": standin,
        "arch": dc.arch,
        "backbone": trunk.backbone,
        "iterations": dc.iterations,
        "train_images": counts["train_images"],
        "pretraining": row,
    }
    storage.put_json(uris["metrics"], metrics)
    about = {
        "arch": dc.arch,
        "backbone": trunk.backbone,
        "classes": list(voc_data.class_names()),
        "config_digest": cfg.digest(),
        "detect": dc.model_dump(mode="json"),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    storage.put_bytes(uris["model"], save(state, {MODEL_METADATA_KEY: json.dumps(about, sort_keys=True)}))
    storage.put_json(uris["curve"], {"iterations": dc.iterations, "entries": trained.curve})
    write_manifest(
        out,
        "detect",
        cfg,
        counts=counts,
        inputs={"backbone": backbone, "data_root": str(root)},
        outputs=uris,
        trunk=trunk.source,
        processes=process.world_size,
        world_size=process.world_size,
        device=process.device,
        resumed_from=trained.resumed_from,
        standin=standin,
        seconds=seconds,
    )


def train(cfg: ExperimentConfig, *, out: str, backbone: str = "") -> None:
    """One DDP process of :func:`run` (the target :func:`synk8s.launch.train` starts under torchrun or a TrainJob).

    Args:
        cfg: the run config.
        out: the stage's output folder.
        backbone: a pre-training output folder; empty: the trunk from ``detect.init``.
    """
    from synk8s import distributed
    from synk8s.models.device import resolve_device

    with distributed.session(resolve_device(cfg.device)):
        run(cfg, backbone=backbone or None, out=out, progress=False)


def transfer(cfg: ExperimentConfig, *, backbone: str, out: str, progress: bool = True) -> DetectResult:
    """The stage table's detect: :func:`run` from the pre-training output when ``detect.init=pretrained``.

    With ``detect.init`` ``scratch`` or ``imagenet`` the pre-training output is not read (the tables'
    "(None)" rows). Training runs on ``pretrain.nproc`` local processes (torchrun when more than one)
    or, in a pipeline task on a cluster, as a Kubeflow Trainer TrainJob (:func:`synk8s.launch.train`).

    Args:
        cfg: the run config.
        backbone: the pretrain stage's output folder.
        out: this stage's output folder.
        progress: unused (the training processes log their own progress); kept for the stage signature.
    """
    from synk8s import launch

    start = time.monotonic()
    check_config(cfg.detect)
    trunk = backbone if cfg.detect.init == "pretrained" else ""
    launch.train(cfg, stage="detect", target=TARGET, out=out, backbone=trunk)
    return load_result(out, seconds=time.monotonic() - start)


def load_result(out: str, seconds: float = 0.0) -> DetectResult:
    """The :class:`DetectResult` of a finished detect stage at ``out``.

    Raises:
        MissingDataError: no detect output at ``out``.
    """
    manifest = read_manifest(out, "detect")
    metrics = storage.get_json(storage.join(out, "metrics.json"))
    return DetectResult(
        metrics=storage.join(out, "metrics.json"),
        model=storage.join(out, "model.safetensors"),
        curve=storage.join(out, "curve.json"),
        manifest=storage.join(out, "manifest.json"),
        ap50=metrics["ap50"],
        ap=metrics["ap"],
        ap75=metrics["ap75"],
        iterations=metrics["iterations"],
        resumed_from=manifest.get("resumed_from"),
        train_images=metrics["train_images"],
        test_images=manifest["counts"]["test_images"],
        standin=metrics["standin"],
        seconds=seconds,
    )


def load_detector(out: str) -> Any:
    """The trained detector of a finished detect stage at ``out`` (a torchvision ``FasterRCNN``, eval mode, CPU).

    It is rebuilt from the architecture and ``detect`` config stored with the weights, so no flags are needed.

    Raises:
        MissingDataError: no detect output at ``out``.
    """
    from safetensors.torch import load

    from synk8s.detection.model import build_detector, set_image_sizes
    from synk8s.detection.trunk import Trunk, build_trunk

    read_manifest(out, "detect")
    data = storage.get_bytes(storage.join(out, "model.safetensors"))
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])  # u64 length, then the JSON header
    about = json.loads(header["__metadata__"][MODEL_METADATA_KEY])
    dc = DetectConfig.model_validate(about["detect"])
    model = build_detector(dc, build_trunk(Trunk(about["backbone"], {}, "scratch")), num_classes=len(about["classes"]))
    model.load_state_dict(load(data))
    set_image_sizes(model, (dc.test_size,))
    return model.eval()


def load_metrics(out: str) -> dict[str, Any]:
    """The ``metrics.json`` of a finished detect stage at ``out``.

    Raises:
        MissingDataError: no detect output at ``out``.
    """
    read_manifest(out, "detect")
    return storage.get_json(storage.join(out, "metrics.json"))


STAGE = StageSpec(
    name="detect",
    imagenet=ImageNetStart("detect.init", detection=True),
    run=transfer,
    help="Faster R-CNN on VOC07+12 from the pre-trained trunk (detect.init=pretrained) or not; AP on VOC07 test.",
    inputs={"backbone": "pretrain"},
    depends=CONFIG_FIELDS,
    shm=True,  # torchrun in the task (no TrainJob) loads on DataLoader workers
    resources=Resources("500m", "1", "1Gi", "2Gi"),  # the task launches the TrainJob; the nodes train
    outputs={"metrics.json": load_metrics, "model.safetensors": load_detector, "curve.json": None},
)
