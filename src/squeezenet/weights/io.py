"""One loader for every weights format, and our own format (safetensors + spec + preprocessing).

``load(path)`` tells the format from the file's first bytes (then its
extension) and returns a SqueezeNet in eval mode whose ``preprocess``
attribute turns a PIL image into the tensor these weights expect:

=====================  ===============================  ==========================
format                 recognised by                    preprocessing attached
=====================  ===============================  ==========================
safetensors (ours)     8-byte header length + ``{``     the one stored in the file
torch (.pth/.pt)       zip or pickle magic bytes        ``torchvision`` preset
Caffe (.caffemodel)    extension, else protobuf parse   ``caffe`` preset
Deep Compression       extension ``.net``               ``caffe`` preset
=====================  ===============================  ==========================

Files other than ours hold no spec: with ``arch=None`` every preset is tried
(num_classes taken from the file) and the first whose shapes all fit wins; a
named ``arch`` tries that preset only, and a ``Spec`` is used exactly as given.
Caffe-made v1.0 weights get conv10's pad of 1 back (see layers.caffe_release_spec).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from ..errors import SqueezeNetError, WeightsError
from ..model import SqueezeNet
from ..preprocess import CAFFE, TORCHVISION, Preprocessing, get_preprocessing
from ..spec import PRESETS, Spec, get_spec
from . import deep_compression
from .caffe import read_caffemodel
from .layers import CAFFE_NAMES, DEEP_COMPRESSION_NAMES, caffe_release_spec, conv_layers
from .torchvision import from_torchvision

FORMAT_NAME = "squeezenet"
FORMAT_VERSION = "1"
RESERVED_KEYS = ("format", "format_version", "spec", "preprocessing")
FORMATS = ("safetensors", "torch", "caffe", "deep_compression")
_EXTENSIONS = {".safetensors": "safetensors", ".pth": "torch", ".pt": "torch", ".caffemodel": "caffe",
               ".net": "deep_compression"}
Reader = Callable[[Path, str | Spec | None], tuple[SqueezeNet, Preprocessing | None]]
# Formats defined above this package (squeezenet.compress registers "sqz"): name -> (magic bytes, reader).
_REGISTERED: dict[str, tuple[bytes, Reader]] = {}


def register_format(name: str, magic: bytes, extension: str, reader: Reader) -> None:
    """Teach ``load`` a format that a higher layer defines, so imports stay one-way."""
    _REGISTERED[name] = (magic, reader)
    _EXTENSIONS[extension.lower()] = name

PathLike = str | os.PathLike[str]


class StoredWeights(NamedTuple):
    """What one of our safetensors files holds, without a model built from it."""

    state_dict: dict[str, torch.Tensor]
    spec: Spec | None
    preprocessing: Preprocessing | None
    metadata: dict[str, str]


# -- writing -------------------------------------------------------------------


def write_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` so that ``path`` holds either its old content or all of the new, never a part.

    A temporary file in the same folder is written, flushed to disk, then renamed over ``path``.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise WeightsError(f"{path}: cannot write here ({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise WeightsError(f"{path}: cannot write ({error.strerror or error})") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        try:
            directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return path
        try:
            os.fsync(directory)
        except OSError:
            pass
        finally:
            os.close(directory)
    return path


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


# -- reading our format --------------------------------------------------------


def read_safetensors(path: PathLike) -> StoredWeights:
    """State dict, spec, preprocessing and the remaining metadata of a safetensors file; builds no model."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = dict(file.metadata() or {})
            state_dict = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(error)})") from None
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


# -- format detection ----------------------------------------------------------


def detect_format(path: PathLike) -> str:
    """One of FORMATS, from the first bytes where formats have magic numbers, else the extension."""
    path = _existing(path)
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError as error:
        raise WeightsError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(head) >= 9:
        header_length = int.from_bytes(head[:8], "little")
        if 0 < header_length <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # torch zip archive, or legacy pickle
        return "torch"
    for name, (magic, _) in _REGISTERED.items():
        if head.startswith(magic):
            return name
    by_extension = _EXTENSIONS.get(path.suffix.lower())
    if by_extension is not None:
        return by_extension
    if head[:1] in (b"\x0a", b"\x12") or head[:2] == b"\xa2\x06":  # NetParameter fields 1, 2 or 100
        return "caffe"
    raise WeightsError(f"{path}: unknown weights format (expected .safetensors, .pth/.pt, .caffemodel or .net)")


# -- the loader ----------------------------------------------------------------


def load(path: PathLike, arch: str | Spec | None = None, *, preprocess: str | Preprocessing | None = None,
         file_format: str | None = None) -> SqueezeNet:
    """Any supported weights file -> a SqueezeNet in eval mode with ``.preprocess`` set.

    ``preprocess`` overrides the recipe the format implies; ``file_format`` skips detection.
    """
    path = _existing(path)
    kind = file_format or detect_format(path)
    if kind not in FORMATS and kind not in _REGISTERED:
        raise WeightsError(f"{path}: unknown format {kind!r}; known: {', '.join([*FORMATS, *_REGISTERED])}")
    readers: dict[str, Reader] = {
        "safetensors": _load_safetensors, "torch": _load_torch, "caffe": _load_caffe,
        "deep_compression": _load_deep_compression, **{name: read for name, (_, read) in _REGISTERED.items()},
    }
    model, default_preprocessing = readers[kind](path, arch)
    chosen = get_preprocessing(preprocess) if preprocess is not None else default_preprocessing
    model.meta = model.meta.replace(preprocessing=chosen)
    return model.eval()


def _load_safetensors(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    stored = read_safetensors(path)
    if stored.spec is not None and isinstance(arch, str) and arch != stored.spec.name:
        raise WeightsError(f"{path}: holds weights for architecture {stored.spec.name!r}, not {arch!r}")
    if stored.spec is not None and not isinstance(arch, Spec):
        arch = stored.spec
    state = stored.state_dict
    classes = _classes_of(state.get("classifier.conv10.weight"))
    model = _build_first_fit(path, arch, lambda spec: spec, lambda m: _fit(state, m, str(path)), classes)
    if "class_names" in stored.metadata:  # a JSON list, written by training for datasets other than ImageNet
        try:
            names = json.loads(stored.metadata["class_names"])
        except (json.JSONDecodeError, RecursionError):
            names = None
        if not isinstance(names, list) or len(names) != model.spec.num_classes:
            raise WeightsError(f"{path}: metadata class_names is not a list of {model.spec.num_classes} names")
        model.meta = model.meta.replace(class_names=tuple(str(name) for name in names))
    return model, stored.preprocessing


def _load_torch(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types (UnpicklingError, RuntimeError, EOFError...) on bad files
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({_first_line(error)})") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in loaded.items()):
        raise WeightsError(f"{path}: holds a {type(loaded).__name__}, not a state dict of named tensors")
    state = dict(loaded)
    for key, tensor in state.items():  # weights_only still admits sparse, meta, complex and quantized tensors
        if tensor.layout != torch.strided or tensor.is_meta or tensor.is_complex() or tensor.is_quantized:
            raise WeightsError(f"{path}: tensor {key!r} is not a dense real tensor ({tensor.layout}, {tensor.dtype}, "
                               f"on {tensor.device})")
    if any(key.startswith("features.conv1.") for key in state):  # already our names
        classes = _classes_of(state.get("classifier.conv10.weight"))
        model = _build_first_fit(path, arch, lambda spec: spec, lambda m: _fit(state, m, str(path)), classes)
    else:
        classes = _classes_of(state.get("classifier.1.weight"))
        model = _build_first_fit(path, arch, lambda spec: spec,
                                 lambda m: from_torchvision(state, m, str(path)), classes)
    return model, TORCHVISION


def _load_caffe(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    layers = {layer.name: layer for layer in read_caffemodel(_read_bytes(path), str(path))}
    final = layers.get(CAFFE_NAMES["conv10"])
    classes = _classes_of(final.blobs[0] if final is not None and final.blobs else None)

    def as_released(spec: Spec) -> Spec:
        if final is not None and final.pad is not None:
            return spec.replace(conv10_padding=final.pad)
        return caffe_release_spec(spec)

    def convert(model: SqueezeNet) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        targets = model.state_dict()
        expected = conv_layers(model.spec, CAFFE_NAMES)
        known = {name for name, _ in expected}
        for name in layers:
            if name not in known:
                raise WeightsError(f"{path}: layer {name!r} has no place in architecture {model.spec.name!r}")
        for name, module in expected:
            if name not in layers:
                raise WeightsError(f"{path}: no weights for layer {name!r} of architecture {model.spec.name!r}")
            layer = layers[name]
            if layer.type != "Convolution" or len(layer.blobs) != 2:
                raise WeightsError(f"{path}: layer {name!r} is a {layer.type} with {len(layer.blobs)} blobs, "
                                   "expected a Convolution with weight and bias")
            for suffix, blob in zip(("weight", "bias"), layer.blobs, strict=True):
                state[f"{module}.{suffix}"] = torch.from_numpy(_drop_legacy_axes(blob, targets[f"{module}.{suffix}"]))
        return _fit(state, model, str(path), foreign_names=_foreign_names(expected))

    return _build_first_fit(path, arch, as_released, convert, classes), CAFFE


def _load_deep_compression(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    data = _read_bytes(path)

    def convert(model: SqueezeNet) -> dict[str, torch.Tensor]:
        expected = conv_layers(model.spec, DEEP_COMPRESSION_NAMES)
        shapes = dict(model.state_dict())
        try:
            decoded = deep_compression.decode(data, [tuple(shapes[f"{m}.weight"].shape) for _, m in expected],
                                              [name for name, _ in expected],
                                              f"{path} (read as architecture {model.spec.name!r})")
        except KeyError as error:  # a spec with batch norm or bypass convs has other tensors
            raise WeightsError(f"{path}: architecture {model.spec.name!r} has no plain convolution {error}") from None
        state = {}
        for (_, module), (weight, bias) in zip(expected, decoded, strict=True):
            state[f"{module}.weight"], state[f"{module}.bias"] = torch.from_numpy(weight), torch.from_numpy(bias)
        return _fit(state, model, str(path), foreign_names=_foreign_names(expected))

    return _build_first_fit(path, arch, caffe_release_spec, convert, None), CAFFE


# -- shared helpers ------------------------------------------------------------


def _build_first_fit(path: Path, arch: str | Spec | None, adjust: Callable[[Spec], Spec],
                     convert: Callable[[SqueezeNet], dict[str, torch.Tensor]], num_classes: int | None) -> SqueezeNet:
    """Build each candidate spec and keep the first whose tensors all fit; else the first candidate's error.

    Shapes are checked against a skeleton on the meta device, so the real network (and its memory) only
    exists once the file's own tensors fill it: a forged spec cannot make the loader allocate more than the file holds.
    """
    if isinstance(arch, Spec):
        candidates = [arch]
    else:
        names = [arch] if arch is not None else list(PRESETS)
        try:
            candidates = [adjust(get_spec(name)) for name in names]
            if num_classes is not None:
                candidates = [spec.replace(num_classes=num_classes) for spec in candidates]
        except SqueezeNetError as error:  # e.g. a padding read from the file that no valid spec has
            raise WeightsError(f"{path}: {error}") from None
    errors = []
    for spec in candidates:
        try:  # shapes only, on the meta device: nothing is allocated until every tensor of the file fits
            with torch.device("meta"):
                skeleton = SqueezeNet(spec)
        except (SqueezeNetError, RuntimeError, TypeError, OverflowError) as error:  # sizes torch cannot hold
            errors.append(f"{path}: architecture {spec.name!r} cannot be built ({_first_line(error)})")
            continue
        try:
            state = convert(skeleton)
        except WeightsError as error:
            errors.append(str(error))
            continue
        model = SqueezeNet(spec)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:  # a dtype torch cannot copy into float parameters
            raise WeightsError(f"{path}: tensors do not load ({_first_line(error)})") from None
        return model
    if len(candidates) == 1:
        raise WeightsError(errors[0])
    tried = ", ".join(spec.name for spec in candidates)
    raise WeightsError(f"{errors[0]} [fits none of the architectures {tried}; pass arch= for another]")


def _fit(state: Mapping[str, torch.Tensor], model: SqueezeNet, source: str,
         foreign_names: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Check names and shapes against ``model`` in network order; the first mismatch is the error."""
    foreign_names = foreign_names or {}
    ours = model.state_dict()
    arch = model.spec.name
    for key, target in ours.items():
        label = foreign_names.get(key, key)
        if key not in state:
            raise WeightsError(f"{source}: no tensor {label!r} for architecture {arch!r}")
        if tuple(state[key].shape) != tuple(target.shape):
            raise WeightsError(f"{source}: {label!r} has shape {tuple(state[key].shape)} but architecture {arch!r} "
                               f"needs {tuple(target.shape)} (weights for another architecture?)")
    extra = [key for key in state if key not in ours]
    if extra:
        raise WeightsError(f"{source}: tensor {extra[0]!r} has no place in architecture {arch!r}")
    return {key: state[key] for key in ours}


def _drop_legacy_axes(blob: np.ndarray, target: torch.Tensor) -> np.ndarray:
    """Legacy 4-D blobs pad shapes with 1s (a bias is 1x1x1xN); reshape when only those 1s differ."""
    if blob.shape != tuple(target.shape) and [d for d in blob.shape if d != 1] == [d for d in target.shape if d != 1]:
        return blob.reshape(tuple(target.shape))
    return blob


def _foreign_names(expected: list[tuple[str, str]]) -> dict[str, str]:
    """Our parameter names -> 'layer/blob' names as the source file calls them, for error messages."""
    names = {}
    for foreign, module in expected:
        names[f"{module}.weight"] = f"{foreign} weight"
        names[f"{module}.bias"] = f"{foreign} bias"
    return names


def _classes_of(final_weight: torch.Tensor | np.ndarray | None) -> int | None:
    return int(final_weight.shape[0]) if final_weight is not None and len(final_weight.shape) == 4 else None


def _existing(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a weights file")
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise WeightsError(f"{path}: cannot read ({error.strerror or error})") from None


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."

