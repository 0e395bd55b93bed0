"""Our own format: a safetensors file whose metadata carries the spec, the preprocessing and free-form strings.

Self-describing, so ``load`` needs no ``arch``: the spec in the file builds
the network and its tensors fill it by name. Recognised by its first bytes
(an 8-byte header length, then the JSON header's ``{``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from ..errors import SqueezeNetError, WeightsError, one_line
from ..model import SqueezeNet
from ..preprocess import Preprocessing
from ..spec import Spec
from .files import PathLike, existing, write_atomic
from .fit import build_first_fit, classes_of, fit

FORMAT_NAME = "squeezenet"
FORMAT_VERSION = "1"
RESERVED_KEYS = ("format", "format_version", "spec", "preprocessing")
MAX_HEADER_BYTES = 100_000_000  # a header length past this is not one of ours


class StoredWeights(NamedTuple):
    """What one of our safetensors files holds, without a model built from it."""

    state_dict: dict[str, torch.Tensor]
    spec: Spec | None
    preprocessing: Preprocessing | None
    metadata: dict[str, str]


def recognises(head: bytes) -> bool:
    """True when the first bytes are a safetensors header: its little-endian length, then ``{``."""
    if len(head) < 9:
        return False
    header_length = int.from_bytes(head[:8], "little")
    return 0 < header_length <= MAX_HEADER_BYTES and head[8:9] == b"{"


def save(model: SqueezeNet, path: PathLike, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model``'s weights, spec and preprocessing as one safetensors file (atomically).

    ``metadata`` adds string entries (epoch, accuracy, provenance...); the keys
    format, format_version, spec and preprocessing are reserved.
    """
    if not isinstance(model, SqueezeNet):
        raise TypeError(f"save() needs a SqueezeNet, got {type(model).__name__}")
    extra = dict(metadata or {})
    clashes = sorted(set(extra) & set(RESERVED_KEYS))
    if clashes:
        raise WeightsError(f"{path}: metadata keys {', '.join(clashes)} are reserved")
    not_text = sorted(k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str))
    if not_text:
        raise WeightsError(f"{path}: metadata must map strings to strings (check {', '.join(map(str, not_text))})")
    if model.meta.class_names is not None:
        extra.setdefault("class_names", json.dumps(list(model.meta.class_names)))
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "spec": model.spec.to_json()}
    if isinstance(model.preprocess, Preprocessing):
        header["preprocessing"] = model.preprocess.to_json()
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    return write_atomic(path, safetensors_bytes(tensors, metadata={**extra, **header}))


# Far above any SqueezeNet's (52 tensors; 256 Fire modules with batch norm and bypasses: about 7,200) and its
# header (a few KB; 21,841 class names: under 1 MB), so a forged header is refused before the library parses it.
MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 16_384


def _check_header(path: Path) -> None:
    """The safetensors header bounded in bytes and in tensors (600,000 empty tensors took the library minutes)."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
                raise WeightsError(f"{path}: not a readable safetensors file (its header length {length:,} does not "
                                   f"fit the file's {size:,} bytes or the limit of {MAX_HEADER_BYTES:,})")
            header = json.loads(file.read(length))
    except OSError as error:
        raise WeightsError(f"{path}: cannot read ({error.strerror or error})") from None
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or a number of more digits than Python reads
        raise WeightsError(f"{path}: not a readable safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a readable safetensors file (its header is not a JSON object)")
    if len(header) - ("__metadata__" in header) > MAX_TENSORS:
        raise WeightsError(f"{path}: holds {len(header):,} tensors; a SqueezeNet has at most {MAX_TENSORS:,}")


def read_safetensors(path: PathLike) -> StoredWeights:
    """State dict, spec, preprocessing and the remaining metadata of a safetensors file; builds no model."""
    path = existing(path)
    _check_header(path)
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = dict(file.metadata() or {})
            state_dict = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({one_line(error, 160)})") from None
    spec = preprocessing = None
    try:
        if "spec" in metadata:
            spec = Spec.from_json(metadata.pop("spec"))
        if "preprocessing" in metadata:
            preprocessing = Preprocessing.from_json(metadata.pop("preprocessing"))
    except SqueezeNetError as error:
        raise WeightsError(f"{path}: bad metadata: {error}") from None
    version = metadata.pop("format_version", None)
    if metadata.pop("format", None) == FORMAT_NAME and version != FORMAT_VERSION:
        raise WeightsError(f"{path}: written by a newer squeezenet (format version {version}); upgrade to read it")
    return StoredWeights(state_dict, spec, preprocessing, metadata)


def read(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    """The model the file describes (its own spec unless ``arch`` is a Spec), with its stored preprocessing."""
    stored = read_safetensors(path)
    if stored.spec is not None and isinstance(arch, str) and arch != stored.spec.name:
        raise WeightsError(f"{path}: holds weights for architecture {stored.spec.name!r}, not {arch!r}")
    if stored.spec is not None and not isinstance(arch, Spec):
        arch = stored.spec
    state = stored.state_dict
    classes = classes_of(state.get("classifier.conv10.weight"))
    model = build_first_fit(path, arch, lambda spec: spec, lambda m: fit(state, m, str(path)), classes)
    if "class_names" in stored.metadata:  # a JSON list, written by training for datasets other than ImageNet
        try:
            names = json.loads(stored.metadata["class_names"])
        except (json.JSONDecodeError, RecursionError):
            names = None
        if not isinstance(names, list) or len(names) != model.spec.num_classes:
            raise WeightsError(f"{path}: metadata class_names is not a list of {model.spec.num_classes} names")
        model.meta = model.meta.replace(class_names=tuple(str(name) for name in names))
    return model, stored.preprocessing
