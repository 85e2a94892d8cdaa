"""A tuned CLIP classifier as a self-contained folder: image encoder, head, preprocessing, class names.

A classifier folder (a local folder or an ``s3://`` prefix) holds::

    manifest.json        what the folder is (:class:`ClassifierManifest`): class names, preprocessing, the
                         image encoder's registry name and weights digest, the head's origin, the run's
                         provenance, and the SHA-256 of every other file
    encoder.safetensors  the CLIP image tower's state dict (open_clip's names)
    head.safetensors     ``weight`` (K, D) and ``bias`` (K,) of the linear head on L2-normalised features
    model.onnx           the whole classifier: ``images`` (B, 3, H, W) float32, preprocessed, in;
                         ``logits`` (B, K) out

The logits are ``normalize(tower(images)) @ weight.T + bias``, the tuned head on the features the run's
evaluate stage scores (the head already carries CLIP's logit scale). Loading needs no network and no
run folder: the tower is rebuilt from its registry name (:func:`synk8s.models.clip.image_tower`) and
its saved weights. Every file is checked against its recorded SHA-256 first, so a missing or damaged
file stops the load in one line::

    clf = load_classifier("exports/cifar10")
    logits = clf([Image.open("cat.jpg")])          # (1, K)
    clf.top_k(logits, 5)                           # [[("cat", 0.91), ("dog", 0.04), ...]]
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from synk8s import storage
from synk8s.errors import IntegrityError, UsageError
from synk8s.models.export_folder import EXPORT_HINT, MANIFEST, read_export_manifest, read_verified

FORMAT = "synk8s-classifier/1"
ENCODER = "encoder.safetensors"
HEAD = "head.safetensors"
ONNX = "model.onnx"
ONNX_OPSET = 17


class Preprocess(BaseModel):
    """The eval preprocessing of the image tower (arguments of :func:`synk8s.models.clip.eval_transform`).

    Attributes:
        image_size: side of the square input, pixels.
        mean: per-channel mean subtracted from RGB pixels scaled to [0, 1].
        std: per-channel divisor after the mean.
        interpolation: resize filter, ``bicubic`` or ``bilinear``.
        resize_mode: ``shortest`` (short side to ``image_size``, then a centre crop), ``longest`` or ``squash``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int
    mean: list[float]
    std: list[float]
    interpolation: str
    resize_mode: str


class Encoder(BaseModel):
    """The CLIP model the image tower comes from.

    Attributes:
        clip: its registry name (``rn50``, ``tiny-clip``, ...): what builds the tower's architecture.
        identity: ``<arch>/<pretrained>`` as the run's features recorded it.
        weights_digest: :func:`synk8s.models.clip.weights_digest` of the whole CLIP model the run
            encoded its features with (the feature cache key's ``weights``).
        open_clip: the open_clip version that built it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    clip: str
    identity: str
    weights_digest: str
    open_clip: str


class ClassifierManifest(BaseModel):
    """``manifest.json`` of a classifier folder.

    Attributes:
        format: :data:`FORMAT`.
        classes: the K class names, in logit order.
        preprocess: how an image becomes the tower's input.
        encoder: where the tower comes from.
        head: facts about the head (the stage that tuned it, its epoch, loss, ...).
        provenance: the run it came from (run id, folders, config digest, synk8s versions).
        files: file name -> SHA-256 of every other file in the folder.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["synk8s-classifier/1"] = FORMAT
    classes: list[str]
    preprocess: Preprocess
    encoder: Encoder
    head: dict[str, Any]
    provenance: dict[str, Any]
    files: dict[str, str]


class ClassifierModule(nn.Module):
    """Image tower, L2 normalisation and a linear head: ``(B, 3, H, W)`` preprocessed images to ``(B, K)`` logits.

    Args:
        tower: the CLIP image tower (``(B, 3, H, W)`` to ``(B, D)``).
        weight: (K, D) head weight.
        bias: (K,) head bias.
    """

    def __init__(self, tower: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.tower = tower
        self.weight = nn.Parameter(weight.detach().float().clone(), requires_grad=False)  # (K, D)
        self.bias = nn.Parameter(bias.detach().float().clone(), requires_grad=False)  # (K,)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = F.normalize(self.tower(images), dim=-1)  # (B, D)
        return F.linear(features, self.weight, self.bias)  # (B, K)


class Classifier:
    """A loaded classifier: call it on PIL images or preprocessed tensors to get logits.

    Attributes:
        module: the :class:`ClassifierModule`, in eval mode on ``device``.
        manifest: what the folder recorded.
        device: where the module runs.
    """

    def __init__(self, module: ClassifierModule, manifest: ClassifierManifest, device: str = "cpu") -> None:
        from synk8s.models.clip import eval_transform

        self.module = module.to(device).eval().requires_grad_(False)
        self.manifest = manifest
        self.device = device
        self._preprocess = eval_transform(manifest.preprocess.model_dump())

    @property
    def classes(self) -> list[str]:
        """The class names, in logit order."""
        return self.manifest.classes

    def pixels(self, images: Sequence[Any]) -> torch.Tensor:
        """Preprocess PIL images into the ``(B, 3, H, W)`` float32 batch the module (and ``model.onnx``) takes."""
        return torch.stack([self._preprocess(image) for image in images])

    def __call__(self, images: Any) -> torch.Tensor:
        """Logits ``(B, K)`` float32 on the CPU of a PIL image, a list of them, or a ``(B, 3, H, W)`` tensor.

        Raises:
            UsageError: a tensor of another shape than ``(B, 3, image_size, image_size)``.
        """
        if isinstance(images, torch.Tensor):
            pixels = images
        else:
            pixels = self.pixels(images if isinstance(images, Sequence) else [images])
        size = self.manifest.preprocess.image_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise UsageError(f"the classifier takes images of shape (B, 3, {size}, {size}), got {tuple(pixels.shape)}")
        with torch.inference_mode():
            return self.module(pixels.to(self.device, torch.float32)).float().cpu()

    def top_k(self, logits: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable classes of each row of ``logits`` (B, K): (name, softmax probability), best first.

        Raises:
            UsageError: ``k`` is not in [1, K].
        """
        check_top_k(k, len(self.classes))
        probabilities, indices = logits.softmax(dim=-1).topk(k, dim=-1)  # (B, k), (B, k)
        return [
            [(self.classes[i], float(p)) for p, i in zip(row_p.tolist(), row_i.tolist(), strict=True)]
            for row_p, row_i in zip(probabilities, indices, strict=True)
        ]


def check_top_k(k: int, num_classes: int) -> None:
    """Refuse a top-k outside [1, K] in one line (UsageError)."""
    if not 1 <= k <= num_classes:
        raise UsageError(f"--top-k must be between 1 and {num_classes} (the classifier's classes), got {k}")


# ----------------------------------------------------------------------------- writing


def write_classifier(
    out: str,
    *,
    tower: nn.Module,
    weight: torch.Tensor,
    bias: torch.Tensor,
    classes: Sequence[str],
    preprocess: dict[str, Any],
    encoder: dict[str, Any],
    head: dict[str, Any],
    provenance: dict[str, Any],
) -> ClassifierManifest:
    """Write a classifier folder at ``out``: the weights, ``model.onnx``, then the manifest naming their SHA-256.

    Each file is written atomically and ``manifest.json`` last (an older one is removed first), so an
    interrupted export leaves a folder that :func:`load_classifier` refuses rather than a mixed one.

    Args:
        out: the folder URI.
        tower: the CLIP image tower; its state dict is saved.
        weight: (K, D) head weight.
        bias: (K,) head bias.
        classes: the K class names in logit order.
        preprocess: :func:`synk8s.models.clip.preprocess_settings` of the tower's CLIP.
        encoder: the fields of :class:`Encoder`.
        head: facts about the head for the manifest.
        provenance: the run it came from.

    Raises:
        UsageError: the head does not fit the classes or the tower's feature size.
    """
    from safetensors.torch import save

    if tuple(weight.shape) != (len(classes), weight.shape[1]) or tuple(bias.shape) != (len(classes),):
        raise UsageError(
            f"the head {tuple(weight.shape)} does not fit {len(classes)} classes; export the head tuned for them"
        )
    storage.delete(storage.join(out, MANIFEST))
    module = ClassifierModule(tower, weight.float(), bias.float()).eval()
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in tower.state_dict().items()}
    files = {
        ENCODER: save(state),
        HEAD: save({"weight": weight.float().contiguous(), "bias": bias.float().contiguous()}),
        ONNX: onnx_bytes(module, preprocess["image_size"]),
    }
    hashes = {name: storage.put_bytes(storage.join(out, name), data).sha256 for name, data in files.items()}
    manifest = ClassifierManifest(
        classes=list(classes),
        preprocess=Preprocess(**preprocess),
        encoder=Encoder(**encoder),
        head=head,
        provenance=provenance,
        files=hashes,
    )
    storage.put_json(storage.join(out, MANIFEST), manifest.model_dump(mode="json"))
    return manifest


def onnx_bytes(module: nn.Module, image_size: int) -> bytes:
    """``module`` as ONNX (opset :data:`ONNX_OPSET`): ``images`` (B, 3, S, S) float32 in, ``logits`` (B, K) out."""
    example = torch.zeros(1, 3, image_size, image_size)
    buffer = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's fused inference path has no ONNX form; its plain path computes the same.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=ONNX_OPSET,
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- reading


def load_classifier(folder: str, device: str = "cpu") -> Classifier:
    """Load a classifier folder written by :func:`write_classifier`, every file checked against its SHA-256.

    Args:
        folder: a local folder or ``s3://`` prefix.
        device: where the model runs (``cpu``, ``cuda``). Default ``cpu``.

    Raises:
        MissingDataError: the folder, its manifest or one of its files is missing.
        IntegrityError: a file differs from its recorded SHA-256, or the manifest is damaged.
        UsageError: the folder holds an exported backbone, not a classifier.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    from synk8s.models.clip import image_tower

    body = read_export_manifest(folder)
    if body["format"] != FORMAT:
        raise UsageError(
            f"{folder} holds a {body['format']} export, not a classifier; "
            "a backbone loads with torchvision (docs/serving.md)"
        )
    try:
        manifest = ClassifierManifest.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise IntegrityError(
            f"{storage.join(folder, MANIFEST)} is damaged: {where}: {first['msg']}; {EXPORT_HINT}"
        ) from None
    data = {name: read_verified(folder, name, sha) for name, sha in manifest.files.items()}
    for name in (ENCODER, HEAD):
        if name not in data:
            raise IntegrityError(f"{storage.join(folder, MANIFEST)} lists no {name}; {EXPORT_HINT}")
    try:
        state, head = load(data[ENCODER]), load(data[HEAD])
        tower = image_tower(manifest.encoder.clip)
        tower.load_state_dict(state, strict=True)
        module = ClassifierModule(tower, head["weight"], head["bias"])
    except (SafetensorError, RuntimeError, KeyError) as error:
        first = str(error).strip().splitlines()[0]
        raise IntegrityError(
            f"the weights in {folder} do not fit {manifest.encoder.clip} ({first}); {EXPORT_HINT}"
        ) from None
    return Classifier(module, manifest, device)
