"""Test features stage: CLIP features of the real test set and the zero-shot text head, once for every seed.

Neither depends on the run's seed: they are a function of the dataset, the CLIP model and the
``features`` settings (the stage table row says so, and has no input). The table therefore gives
this stage one folder shared by every run of the store that agrees on those fields,
``<store.root>/shared/<dataset>/test-features-<digest>`` (see :func:`synk8s.runs.shared_folder`):
the several runs of ``--seeds 0,1,2`` encode the test set once, and the later seeds find the
output complete and do not run the stage again. The features stage of each run reads it.

    result = test_features.run(cfg, out="store/shared/cifar10/test-features-...")

Outputs under ``out``: ``features.json`` (``{"test": <feature cache URI>}``),
``text_head.safetensors`` (``weight`` (K, D) = logit_scale x text head, ``bias`` (K,) zeros) and
``manifest.json`` (counts, the CLIP identity, the template set, whether the data was the drawn stand-in).
A custom label space without real images (:func:`synk8s.datasets.has_test_set`) lists no feature set
(``features.json`` is ``{}``, ``counts.test`` 0) and writes the text head only.
"""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel, ConfigDict

from synk8s import datasets, storage
from synk8s.config import ExperimentConfig
from synk8s.runs import write_manifest
from synk8s.stages.zeroshot.feature_sets import check_feature_sets, load_clip_for, load_text_head, real_features
from synk8s.stages.zeroshot.head_templates import head_templates
from synk8s.stagetable.spec import Resources, StageSpec

logger = logging.getLogger(__name__)

HEAD_FILE = "text_head.safetensors"
LISTING_FILE = "features.json"


class TestFeaturesResult(BaseModel):
    """What :func:`run` wrote.

    Attributes:
        features: URI of ``features.json`` (``test`` -> feature cache URI).
        text_head: URI of ``text_head.safetensors``.
        manifest: URI of ``manifest.json``.
        test: real test images encoded (or read from the feature cache).
        dim: feature dimension D.
        cache_hits: 1 when the test features came from the feature cache, else 0.
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)
    __test__ = False  # not a pytest test class

    features: str
    text_head: str
    manifest: str
    test: int
    dim: int
    cache_hits: int
    seconds: float


def run(cfg: ExperimentConfig, *, out: str, progress: bool = True) -> TestFeaturesResult:
    """Encode the real test set (through the feature cache) and write the zero-shot text head.

    Args:
        cfg: the run's config (dataset, CLIP model, ``features`` settings, store root).
        out: this stage's output folder URI.
        progress: show a progress bar while encoding.

    Raises:
        MissingDataError: no real data and no stand-in configured.
    """
    from safetensors.torch import save

    from synk8s.realdata import ensure_dataset
    from synk8s.zeroshot import text_head

    start = time.monotonic()
    info = datasets.info(cfg.dataset)
    bundle = load_clip_for(cfg)
    if datasets.has_test_set(cfg.dataset):
        data_root = ensure_dataset(cfg)
        test = real_features(cfg, info.test_split, bundle=bundle, root=data_root, progress=progress)
        sets, labels, from_cache = {"test": {"uri": test.uri, "key": test.key}}, len(test.labels), test.from_cache
    else:  # your own label space without images: an empty listing, the text head only
        logger.warning(datasets.NO_TEST_NOTICE)
        data_root, sets, labels, from_cache = "", {}, 0, False
    listing = storage.join(out, LISTING_FILE)
    storage.put_json(listing, {name: entry["uri"] for name, entry in sets.items()})

    templates, template_source = head_templates(cfg)
    weight = bundle.logit_scale * text_head(bundle, info.classes, templates)  # (K, D)
    head_uri = storage.join(out, HEAD_FILE)
    head = {"weight": weight.contiguous(), "bias": weight.new_zeros(weight.shape[0])}
    storage.put_bytes(head_uri, save(head, metadata={"clip": bundle.identity}))

    seconds = time.monotonic() - start
    manifest = write_manifest(
        out,
        "test_features",
        cfg,
        counts={"test": labels, "cache_hits": int(from_cache)},
        clip=bundle.identity,
        templates={"source": template_source, "count": len(templates)},
        feature_sets=sets,
        standin=bool(data_root) and datasets.is_standin(data_root),
        seconds=seconds,
    )
    logger.info("test features: %d images (%s), text head from %d templates", labels,
                "cached" if from_cache else "encoded", len(templates))
    return TestFeaturesResult(
        features=listing,
        text_head=head_uri,
        manifest=manifest,
        test=labels,
        dim=int(weight.shape[1]),
        cache_hits=int(from_cache),
        seconds=seconds,
    )


# The CLIP image encoder runs over every real test image (once per store, not per seed).
STAGE = StageSpec(
    name="test_features",
    run=run,
    help="CLIP features of the real test set and the zero-shot text head (one folder for every seed).",
    depends=("dataset", "models.clip", "features"),
    gpu=True,
    shm=True,  # features.workers decode on DataLoader workers
    resources=Resources("4", "8", "16Gi", "32Gi"),
    outputs={LISTING_FILE: check_feature_sets, HEAD_FILE: load_text_head},
    folder="test-features",
)
