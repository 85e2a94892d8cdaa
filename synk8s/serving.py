"""A KServe predictor of an exported classifier, speaking the Open Inference Protocol (v2) over HTTP.

``synk8s serve DIR`` loads the classifier folder and runs :class:`ClassifierModel` under
``kserve.ModelServer`` (REST only: ``/v2/health/ready``, ``/v2/models/<name>``,
``/v2/models/<name>/infer``). An inference request carries one input, ``images``, either of:

* ``BYTES``, shape ``[N]``: N encoded image files (JPEG, PNG, ... anything Pillow reads), each
  element base64 in JSON, or raw bytes with the binary tensor extension;
* ``FP32``, shape ``[N, 3, S, S]``: images already preprocessed as the manifest says (``model.onnx``'s input).

The response has ``logits`` (``FP32``, ``[N, K]``) and ``labels`` (``BYTES``, ``[N]``: the top-1 class
name of each image). The request format, with a curl example, is in docs/serving.md.

This module imports kserve, the ``serve`` extra (``pip install 'synk8s[serve]'``); nothing else imports it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput

log = logging.getLogger(__name__)

INPUT = "images"


class ClassifierModel(Model):
    """The KServe model of a classifier folder (see the module docstring for its inputs and outputs).

    Args:
        name: the model name in the v2 paths.
        folder: the classifier folder (local or ``s3://``).
    """

    def __init__(self, name: str, folder: str) -> None:
        super().__init__(name)
        self.folder = folder
        self.classifier: Any = None

    def load(self) -> bool:
        """Load and verify the classifier folder (every file against its SHA-256)."""
        from synk8s.models.classifier import load_classifier

        self.classifier = load_classifier(self.folder)
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:
        size = self.classifier.manifest.preprocess.image_size
        return [
            {"name": INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": INPUT, "datatype": "FP32", "shape": [-1, 3, size, size]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": "logits", "datatype": "FP32", "shape": [-1, len(self.classifier.classes)]},
            {"name": "labels", "datatype": "BYTES", "shape": [-1]},
        ]

    def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> InferResponse:
        """Logits and top-1 labels of the images of a v2 request.

        Raises:
            InvalidInput: not a v2 request, or its ``images`` input is missing, of another datatype or
                shape, or holds an image that does not decode (HTTP 400).
        """
        if not isinstance(payload, InferRequest):
            raise InvalidInput("send an Open Inference Protocol (v2) request to /v2/models/<name>/infer")
        inputs = {tensor.name: tensor for tensor in payload.inputs}
        if INPUT not in inputs:
            raise InvalidInput(f"the request needs an input named {INPUT!r}; got {sorted(inputs)}")
        logits = self._logits(inputs[INPUT])  # (N, K)
        labels = [self.classifier.classes[i] for i in logits.argmax(dim=-1).tolist()]
        outputs = [
            InferOutput("logits", list(logits.shape), "FP32", logits.numpy()),
            InferOutput("labels", [len(labels)], "BYTES", labels),
        ]
        return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=outputs)

    def _logits(self, tensor: Any) -> Any:
        """(N, K) logits of the ``images`` input: N encoded images (BYTES) or (N, 3, S, S) pixels (FP32)."""
        import torch

        from synk8s.errors import UsageError

        if tensor.datatype not in ("BYTES", "FP32"):
            raise InvalidInput(f"{INPUT} must be BYTES (encoded images) or FP32 (preprocessed), got {tensor.datatype}")
        try:
            array = tensor.as_numpy()
        except ValueError as error:  # data that does not fill the declared shape
            raise InvalidInput(f"{INPUT}: {error}") from None
        if tensor.datatype == "BYTES":
            return self.classifier([_decode(item, i) for i, item in enumerate(array.reshape(-1))])
        try:
            return self.classifier(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
        except UsageError as error:  # another image shape
            raise InvalidInput(str(error)) from None


def _decode(item: Any, index: int) -> Any:
    """One ``BYTES`` element (base64 text in JSON, raw bytes in binary form) as a decoded PIL image."""
    from synk8s.shards import decode_checked

    try:
        data = base64.b64decode(item, validate=True) if isinstance(item, str) else bytes(item)
    except binascii.Error as error:
        raise InvalidInput(f"{INPUT}[{index}] is not base64 ({error})") from None
    try:
        return decode_checked(data)
    except ValueError as error:
        raise InvalidInput(f"{INPUT}[{index}]: {error}") from None


class _BoundModelServer(ModelServer):
    """kserve's ModelServer listening on ``host`` (its REST server binds every address otherwise)."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    def setup_event_loop(self) -> None:
        # start() has built the REST server; uvicorn reads the host from its config once serving starts.
        self._rest_server.config.host = self.host
        super().setup_event_loop()


def serve(folder: str, *, host: str = "127.0.0.1", port: int = 8080, name: str = "classifier") -> None:
    """Load the classifier folder, then serve it over HTTP until the process is stopped.

    Args:
        folder: the classifier folder (local or ``s3://``).
        host: the address to listen on (``0.0.0.0`` in a pod).
        port: the HTTP port.
        name: the model name in the v2 paths.

    Raises:
        MissingDataError, IntegrityError, UsageError: the folder is not a complete classifier (before
            anything listens).
    """
    model = ClassifierModel(name, folder)
    model.load()
    log.info("serving %s as %r on http://%s:%d/v2/models/%s/infer", folder, name, host, port, name)
    _BoundModelServer(host, http_port=port, enable_grpc=False, workers=1).start([model])
