"""What goes over the wire: TorchServe's image-classifier answers and the Open Inference Protocol (KServe v2).

Plain functions from parsed bodies to tensors and from logits to JSON, with
no web framework in them, so each rule is tested on its own. Every refusal
is a ClientError: an HTTP status and one line naming the problem.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import DataError, SqueezeNetError
from ..evaluate import Prediction, softmax, top_classes
from ..images import decode_image
from ..model import ModelMeta
from ..preprocess import Preprocessing

VERSION = "1"  # one model, one version: the URLs' {version} and the metadata's "versions"
OUTPUTS = ("logits", "probabilities")  # the v2 outputs; "classification" is a parameter of either
MAX_CLASSIFICATION = 1000


class ClientError(SqueezeNetError):
    """A request the server refuses: ``status`` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_pixels(uploads: Sequence[tuple[str, bytes]], recipe: Preprocessing) -> list[torch.Tensor]:
    """(name, bytes) uploads -> each image resized and cropped, as uint8 pixels (the model thread normalises
    them); an unreadable image is a 400 naming it."""
    try:
        return [recipe.pixels(decode_image(data, name)) for name, data in uploads]
    except DataError as error:
        raise ClientError(400, str(error)) from None


def torchserve_answer(predictions: list[Prediction]) -> dict[str, float]:
    """TorchServe's image classifier answer: {label: probability}, most probable first. Two classes of one
    name (ImageNet has two "crane"s) keep both, the second with its index."""
    answer: dict[str, float] = {}
    for prediction in predictions:
        label = prediction.name if prediction.name not in answer else f"{prediction.name} ({prediction.class_index})"
        answer[label] = prediction.probability
    return answer


def topk_query(text: str | None, default: int = 5) -> int:
    if text is None:
        return default
    try:
        topk = int(text)
    except ValueError:
        raise ClientError(400, f"topk must be an integer, got {text[:40]!r}") from None
    if topk < 1:
        raise ClientError(400, f"topk must be at least 1, got {topk}")
    return topk


def model_metadata(name: str, meta: ModelMeta, platform: str) -> dict[str, Any]:
    """GET /v2/models/{model}: the v2 metadata, with the preprocessing and class names a client needs."""
    channels, height, width = input_shape(meta)
    classes = meta.spec.num_classes
    return {
        "name": name, "versions": [VERSION], "platform": platform,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, channels, height, width]}],
        "outputs": [{"name": output, "datatype": "FP32", "shape": [-1, classes]} for output in OUTPUTS],
        "parameters": {
            "spec": meta.spec.name,
            "preprocessing": meta.preprocessing.to_dict() if meta.preprocessing is not None else None,
            "class_names": list(meta.labels),
            "image_input": "instead of 'input', one BYTES input of shape [N] whose elements are base64-encoded "
                           "image files; the server applies the preprocessing",
        },
    }


def input_shape(meta: ModelMeta) -> tuple[int, int, int]:
    recipe = meta.preprocessing
    if recipe is None or recipe.output_size is None:
        raise SqueezeNetError("the model's preprocessing has no fixed crop size; serve needs one")
    height, width = recipe.output_size
    return recipe.channels, height, width


@dataclass(frozen=True)
class InferRequest:
    """A parsed v2 infer request: a preprocessed tensor, or image files to preprocess, and what to answer."""

    id: str | None
    tensor: torch.Tensor | None
    images: list[tuple[str, bytes]]
    outputs: list[tuple[str, int | None]]  # (output name, classification count or None)


def parse_infer(body: Any, meta: ModelMeta) -> InferRequest:
    """POST /v2/models/{model}/infer's JSON -> InferRequest, or a ClientError naming the field at fault."""
    if not isinstance(body, dict):
        raise ClientError(400, "the infer request must be a JSON object with an 'inputs' list")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ClientError(400, "'id' must be a string")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ClientError(400, "'inputs' must be a list of exactly one input (FP32 'input' or BYTES images)")
    given = inputs[0]
    datatype, shape, data = given.get("datatype"), given.get("shape"), given.get("data")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                           for d in shape):
        raise ClientError(400, f"input 'shape' must be a list of non-negative integers, got {shape!r:.80}")
    if datatype == "FP32":
        tensor, images = _tensor(shape, data, input_shape(meta)), []
    elif datatype == "BYTES":
        tensor, images = None, _images(shape, data)
    else:
        raise ClientError(400, f"input datatype must be FP32 (a preprocessed tensor) or BYTES (image files), "
                               f"got {datatype!r:.40}")
    return InferRequest(request_id, tensor, images, _outputs(body.get("outputs"), meta.spec.num_classes))


def _tensor(shape: list[int], data: Any, expected: tuple[int, int, int]) -> torch.Tensor:
    if len(shape) != 4 or tuple(shape[1:]) != expected or shape[0] < 1:
        raise ClientError(400, f"input shape must be [N, {', '.join(map(str, expected))}] with N >= 1 "
                               f"(the model's preprocessed input), got {shape}")
    if not isinstance(data, list):
        raise ClientError(400, "input 'data' must be a list of numbers")
    try:
        values = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError):
        raise ClientError(400, "input 'data' must hold only numbers (flat, or nested as the shape)") from None
    if values.size != math.prod(shape):
        raise ClientError(400, f"input 'data' holds {values.size} numbers; shape {shape} needs {math.prod(shape)}")
    if not np.isfinite(values).all():
        raise ClientError(400, "input 'data' holds NaN or infinite values")
    return torch.from_numpy(values.reshape(shape))


def _images(shape: list[int], data: Any) -> list[tuple[str, bytes]]:
    if len(shape) != 1 or shape[0] < 1:
        raise ClientError(400, f"a BYTES input has shape [N] (N >= 1 image files), got {shape}")
    if not isinstance(data, list) or len(data) != shape[0] or not all(isinstance(item, str) for item in data):
        raise ClientError(400, f"BYTES input 'data' must be a list of {shape[0]} base64 strings")
    images = []
    for index, item in enumerate(data):
        try:
            images.append((f"input image {index}", base64.b64decode(item, validate=True)))
        except (binascii.Error, ValueError):
            raise ClientError(400, f"input image {index}: not valid base64") from None
    return images


def _outputs(requested: Any, classes: int) -> list[tuple[str, int | None]]:
    if requested is None:
        return [(name, None) for name in OUTPUTS]
    if not isinstance(requested, list) or not requested:
        raise ClientError(400, "'outputs' must be a non-empty list of {\"name\": ...} objects")
    chosen = []
    for output in requested:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise ClientError(400, f"unknown output {name!r:.40}; the outputs are {', '.join(OUTPUTS)}")
        parameters = output.get("parameters") or {}
        count = parameters.get("classification") if isinstance(parameters, dict) else None
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ClientError(400, f"output {name}: 'classification' must be a positive integer, got {count!r:.40}")
        chosen.append((name, min(count, classes) if count is not None else None))
    return chosen


def infer_answer(name: str, request: InferRequest, scores: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """The v2 infer response. An output asked with ``classification: K`` is BYTES [N, K] of
    "value:index:label" strings, highest first, as Triton's classification extension answers."""
    logits = np.asarray(scores, dtype=np.float32)
    values_of = {"logits": logits, "probabilities": softmax(logits)}
    outputs = []
    for output, count in request.outputs:
        values = values_of[output]
        if count is None:
            outputs.append({"name": output, "datatype": "FP32", "shape": list(values.shape),
                            "data": values.flatten().tolist()})
            continue
        best = np.argsort(-values, axis=1, kind="stable")[:, :count]
        cells = [f"{row[index]:.6f}:{index}:{labels[index]}" for row, indices in zip(values, best, strict=True)
                 for index in indices]
        outputs.append({"name": output, "datatype": "BYTES", "shape": [len(values), count], "data": cells})
    answer: dict[str, Any] = {"model_name": name, "model_version": VERSION, "outputs": outputs}
    if request.id is not None:
        answer["id"] = request.id
    return answer


def topk_answers(scores: np.ndarray, labels: Sequence[str], topk: int) -> list[dict[str, float]]:
    return [torchserve_answer(best) for best in top_classes(scores, labels, topk)]
