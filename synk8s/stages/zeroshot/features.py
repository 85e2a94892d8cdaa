"""Features stage: CLIP image features of the synthetic images, cached, listed with the test set's and the text head.

The real test set's features and the zero-shot text head do not depend on the seed: the
test_features stage (:mod:`synk8s.stages.zeroshot.eval_features`) makes them once for every seed, and this
stage lists them beside the run's synthetic features, so the stages downstream read one folder.

Every image set is encoded once per CLIP model, preprocessing and data, and kept in the feature
cache ``<store.root>/cache/features/<key>.safetensors`` (tensors ``features`` (N, D) float32,
L2-normalised, and ``labels`` (N,) int64) with ``<key>.json`` beside it (what went into the key,
and the sample keys). The key is the SHA-256 of the CLIP identity, the preprocessing, the compute
precision and the data identity (the tar SHA-256s of a generation output, or the dataset's own
identity), so a changed model or changed images never read stale features. The tars are checked
against their recorded SHA-256 while they stream, and an entry is written only once every expected
image was encoded, so a damaged tar never leaves a short feature set in the cache.

    cfg = config.load("tiny")
    result = features.run(cfg, images="runs/x/images", test="shared/cifar10/test-features-...", out="runs/x/features")

Outputs under ``out``: ``features.json`` (``{"synthetic": <cache URI>, "test": <cache URI>}``; no ``test``
for a custom label space without real images),
``text_head.safetensors`` (``weight`` (K, D) = logit_scale x text head, ``bias`` (K,) zeros) and
``manifest.json``.

The cache lives in :mod:`synk8s.stages.zeroshot.feature_cache`, its keys in :mod:`synk8s.stages.zeroshot.feature_keys`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from synk8s import storage
from synk8s.config import ExperimentConfig
from synk8s.runs import read_manifest
from synk8s.stages.zeroshot.feature_cache import FeatureSet, cached_or_encode
from synk8s.stages.zeroshot.feature_sets import check_feature_sets, feature_set_uri, load_clip_for, load_text_head
from synk8s.stagetable.spec import Resources, StageSpec

if TYPE_CHECKING:
    from PIL import Image

    from synk8s.models.clip import ClipBundle

logger = logging.getLogger(__name__)


class FeaturesResult(BaseModel):
    """What :func:`run` wrote.

    Attributes:
        features: URI of ``features.json`` (feature set name -> cache URI).
        text_head: URI of ``text_head.safetensors``.
        manifest: URI of ``manifest.json``.
        synthetic: synthetic images encoded (or read from the cache).
        test: real test images encoded (or read from the cache).
        dim: feature dimension D.
        cache_hits: feature sets read from the cache instead of encoded.
        seconds: wall-clock time of the stage.
    """

    model_config = ConfigDict(frozen=True)

    features: str
    text_head: str
    manifest: str
    synthetic: int
    test: int
    dim: int
    cache_hits: int
    seconds: float


def synthetic_features(
    cfg: ExperimentConfig, images: str, *, bundle: ClipBundle | None = None, progress: bool = True
) -> FeatureSet:
    """CLIP features of every generated image, in manifest order, from the cache or freshly encoded.

    Args:
        cfg: the run's config (CLIP model, device, ``features`` settings, store root for the cache).
        images: the generate stage's output folder (with its collected ``manifest.json``).
        bundle: an already loaded CLIP model to reuse; loaded from ``cfg`` when None.
        progress: show a progress bar while encoding.

    Raises:
        MissingDataError: ``images`` has no collected generation output.
        IntegrityError: a tar differs from the manifest; nothing is cached then.
    """
    from synk8s.shards import iter_samples, manifest_tars

    tars = manifest_tars(images)
    data = {"kind": "synthetic", "tars": [t.sha256 for t in tars]}

    def samples() -> Iterable[tuple[str, Callable[[], Image.Image], int]]:
        for key, image, meta in iter_samples(images, lazy=True):  # decoded where the batch is preprocessed
            yield key, image, int(meta["class_index"])

    clip = bundle or load_clip_for(cfg)
    total = sum(t.count for t in tars)
    return cached_or_encode(cfg, clip, data, samples, total=total, desc="synthetic features", progress=progress)


# ----------------------------------------------------------------------------- stage


def run(
    cfg: ExperimentConfig, *, images: str, out: str, test: str | None = None, progress: bool = True
) -> FeaturesResult:
    """Encode the synthetic images (through the cache) and list them with the real test features and text head.

    Args:
        cfg: the run's config.
        images: the generate stage's output folder.
        out: this stage's output folder URI.
        test: the test_features stage's output folder (:mod:`synk8s.stages.zeroshot.eval_features`), whose
            test features and text head this run shares with every seed; None encodes the test set
            and makes the text head here (a direct call outside the stage table).
        progress: show progress bars.

    Raises:
        MissingDataError: no generation output in ``images``, no test_features output in ``test``,
            or (``test`` None) no real data and no stand-in.
    """
    from synk8s.runs import write_manifest

    start = time.monotonic()
    bundle = load_clip_for(cfg)
    synthetic = synthetic_features(cfg, images, bundle=bundle, progress=progress)
    if test is None:
        from synk8s.stages.zeroshot import eval_features as test_features

        test = storage.join(out, "test")
        test_features.run(cfg, out=test, progress=progress)
    shared = read_manifest(test, "test_features")

    # 1. Feature sets: this run's synthetic set, and the test set of the test_features stage (none without real images).
    shared_sets = shared["feature_sets"]
    sets = {"synthetic": synthetic.uri, **({"test": feature_set_uri(test, "test")} if "test" in shared_sets else {})}
    listing_uri = storage.join(out, "features.json")
    storage.put_json(listing_uri, sets)

    # 2. The zero-shot head of the test_features stage, beside the features for the stages reading them.
    head_uri = storage.join(out, "text_head.safetensors")
    storage.put_bytes(head_uri, storage.get_bytes(storage.join(test, "text_head.safetensors")))

    dim = int(synthetic.features.shape[1])
    hits = int(synthetic.from_cache) + int(shared["counts"]["cache_hits"])
    seconds = time.monotonic() - start
    manifest = write_manifest(
        out,
        "features",
        cfg,
        counts={"synthetic": len(synthetic.labels), "test": shared["counts"]["test"], "cache_hits": hits},
        inputs={"images": images, "test": test},
        clip=bundle.identity,
        templates=shared["templates"],
        feature_sets={"synthetic": {"uri": synthetic.uri, "key": synthetic.key}, **shared_sets},
        standin=shared["standin"],
        seconds=seconds,
    )
    return FeaturesResult(
        features=listing_uri,
        text_head=head_uri,
        manifest=manifest,
        synthetic=len(synthetic.labels),
        test=shared["counts"]["test"],
        dim=dim,
        cache_hits=hits,
        seconds=seconds,
    )


# The CLIP image encoder runs over every generated image.
STAGE = StageSpec(
    name="features",
    run=run,
    help="CLIP image features of the synthetic images (cached), listed with the shared test features.",
    inputs={"images": "generate", "test": "test_features"},
    after=("filter",),  # the filter has already encoded the synthetic images into the cache
    depends=("dataset", "models.clip", "features"),
    gpu=True,
    shm=True,  # features.workers decode on DataLoader workers
    resources=Resources("4", "8", "16Gi", "32Gi"),
    outputs={"features.json": check_feature_sets, "text_head.safetensors": load_text_head},
)
