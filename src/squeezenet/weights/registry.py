"""Public pretrained SqueezeNet weights by name, fetched once into torch.hub's cache with the sha256 checked.

``pretrained("1_1-torchvision")`` downloads (first time only) and loads.
Every entry pins a URL and the file's sha256: the full digest where one is
published, else the hash prefix torchvision puts in its file names. Offline,
the error says to pass a local file to ``load`` (or ``--weights PATH``).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.hub

from ..errors import WeightsError
from ..model import SqueezeNet, imagenet_classes
from ..preprocess import Preprocessing, get_preprocessing
from ..spec import Spec, get_spec
from . import hub
from .io import FORMATS, load

CACHE_SUBFOLDER = "squeezenet"


@dataclass(frozen=True)
class SampleAccuracy:
    """Top-1 and top-5 (fractions) measured by this project on ../shared's 500 ImageNet sample images
    (docs/results.md): easier images than ImageNet's validation set, so compare entries, not papers."""

    top1: float
    top5: float
    images: int = 500
    preprocessing: str = "caffe"
    note: str = ""  # how the measured file relates to the download, where they differ

    def to_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "top5": self.top5, "images": self.images, "data": "imagenet-samples",
                "preprocessing": self.preprocessing, **({"note": self.note} if self.note else {})}


@dataclass(frozen=True)
class PretrainedWeights:
    """One public weights file: where it lives, what its bytes hash to, what it is, and (as torchvision's weights
    enums do) what it needs and how well it does. A figure this project has not measured is None."""

    name: str
    url: str
    sha256: str  # the full hex digest, or a prefix of it (at least 8 characters)
    description: str
    arch: str | None = None  # the preset it loads into
    preprocessing: str | None = None  # the preprocessing preset that loading attaches
    file_size: int | None = None  # bytes, where the exact file was at hand to measure
    accuracy: SampleAccuracy | None = None
    spec_changes: tuple[tuple[str, Any], ...] = ()  # fields the file sets on the preset (v1.0 Caffe's conv10 pad)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def spec(self) -> Spec | None:
        return get_spec(self.arch).replace(**dict(self.spec_changes)) if self.arch else None

    @property
    def transforms(self) -> Preprocessing | None:
        """The preprocessing object (PIL image -> input tensor) these weights expect."""
        return get_preprocessing(self.preprocessing) if self.preprocessing else None

    @property
    def num_params(self) -> int | None:
        """Parameters of the network the file fills (dense: Deep Compression's zeros count too)."""
        spec = self.spec
        if spec is None:
            return None
        with torch.device("meta"):  # counted on a skeleton: nothing is allocated
            return sum(parameter.numel() for parameter in SqueezeNet(spec).parameters())

    @property
    def min_input_size(self) -> int | None:
        return self.spec.min_input_size() if self.spec is not None else None

    @property
    def categories(self) -> tuple[str, ...] | None:
        """The class names, in output order: ImageNet's for the 1000-class files."""
        spec = self.spec
        return tuple(name for _, name in imagenet_classes()) if spec is not None and spec.num_classes == 1000 else None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the 1000 category names (``num_classes`` says how many), as JSON-ready values."""
        spec = self.spec
        return {"name": self.name, "arch": self.arch, "description": self.description, "url": self.url,
                "sha256": self.sha256, "preprocessing": self.preprocessing,
                "num_classes": spec.num_classes if spec is not None else None, "num_params": self.num_params,
                "min_input_size": self.min_input_size, "file_size": self.file_size,
                "accuracy": self.accuracy.to_dict() if self.accuracy is not None else None}


REGISTRY: dict[str, PretrainedWeights] = {}


def register_pretrained(entry: PretrainedWeights) -> PretrainedWeights:
    if len(entry.sha256) < 8:
        raise ValueError(f"{entry.name}: a sha256 (or a prefix of at least 8 hex digits) is required")
    REGISTRY[entry.name] = entry
    return entry


# Hashes: torchvision 1_1 and the forresti caffemodels as published by OpenVINO's Open Model Zoo
# (model.yml) and several other projects; torchvision 1_0: only the prefix in its file name; the Deep
# Compression file: measured on the released file (../shared/weights/deep_compression_v1.0/FORMAT.md).
# Sizes and accuracies only where this project had the file and measured it (docs/results.md); else None.
_FORRESTI = "https://github.com/forresti/SqueezeNet/raw/a47b6f13d30985279789d08053d37013d67d131b"
register_pretrained(PretrainedWeights(
    "1_0-torchvision", "https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth", "b66bff10",
    "torchvision's SqueezeNet 1.0 (IMAGENET1K_V1), retrained in PyTorch; torchvision preprocessing",
    arch="1_0", preprocessing="torchvision"))
register_pretrained(PretrainedWeights(
    "1_1-torchvision", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    "b8a52dc049b60e4b6ab68ad0df457362afab8b6304b2febdc1650a5dab4d7e7b",
    "torchvision's SqueezeNet 1.1 (IMAGENET1K_V1), retrained in PyTorch; torchvision preprocessing",
    arch="1_1", preprocessing="torchvision"))
register_pretrained(PretrainedWeights(
    "1_0-caffe", f"{_FORRESTI}/SqueezeNet_v1.0/squeezenet_v1.0.caffemodel",
    "9ff8035aada1f9ffa880b35252680d971434b141ec9fbacbe88309f0f9a675ce",
    "the original Caffe SqueezeNet v1.0 (DeepScale, BSD-2); conv10 pad 1; Caffe preprocessing",
    arch="1_0", preprocessing="caffe", spec_changes=(("conv10_padding", 1),)))
register_pretrained(PretrainedWeights(
    "1_1-caffe", f"{_FORRESTI}/SqueezeNet_v1.1/squeezenet_v1.1.caffemodel",
    "72b912ace512e8621f8ff168a7d72af55910d3c7c9445af8dfbff4c2ee960142",
    "the original Caffe SqueezeNet v1.1 (DeepScale, BSD-2); Caffe preprocessing",
    arch="1_1", preprocessing="caffe",
    accuracy=SampleAccuracy(0.660, 0.858, note="measured on ../shared's fp16-rounded copy of this file "
                                                "(sha256 f6564bd5...), not on the download itself")))
register_pretrained(PretrainedWeights(
    "1_0-deep-compression",
    "https://github.com/songhan/SqueezeNet-Deep-Compression/raw/5623e3cdbe1fcd83328c61ce2ee42c34ed319aa3/"
    "compressed_SqueezeNet.net",
    "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261",
    "the paper's 660 KB Deep Compression SqueezeNet v1.0 (8-bit shared, pruned); Caffe preprocessing",
    arch="1_0", preprocessing="caffe", file_size=675_763, spec_changes=(("conv10_padding", 1),),
    accuracy=SampleAccuracy(0.642, 0.842)))

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def get_pretrained(name: str) -> PretrainedWeights:
    try:
        return REGISTRY[name]
    except KeyError:
        raise _unknown_name(name, "") from None


def _unknown_name(name: str, alternative: str) -> WeightsError:
    """The error for a name not in the registry: the closest entry if any, then every entry."""
    close = difflib.get_close_matches(name, REGISTRY, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return WeightsError(f"unknown pretrained weights {name!r}{hint}; known: {', '.join(REGISTRY)}{alternative}")


def _looks_like_a_name(text: str) -> bool:
    """Meant as a registry name: no folder, no weights extension, and no extension at all unless close to a name.

    So ``1_1-cafe`` and ``1_1-caffe.v2`` read as names, ``model.bin``, ``w.pth`` and ``runs/best`` as paths.
    """
    separators = {"/", os.sep, os.altsep} - {None}
    if any(separator in text for separator in separators):
        return False
    suffix = Path(text).suffix.lower()
    if any(suffix in entry.extensions for entry in FORMATS.values()):
        return False
    return not suffix or bool(difflib.get_close_matches(text, REGISTRY, n=1))


def download(entry: str | PretrainedWeights, cache_dir: str | os.PathLike[str] | None = None,
             progress: bool = True) -> Path:
    """The local path of a registry file, downloaded into the cache first if absent or damaged."""
    entry = get_pretrained(entry) if isinstance(entry, str) else entry
    folder = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints" / CACHE_SUBFOLDER
    path = folder / entry.filename
    if path.is_file() and _sha256(path).startswith(entry.sha256):
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(entry.url, str(path), hash_prefix=entry.sha256, progress=progress)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(
            f"cannot download {entry.name!r} from {entry.url} ({reason}); offline? fetch it elsewhere and pass the "
            "local file instead (squeezenet.load(PATH), or --weights PATH)"
        ) from None
    except RuntimeError as error:  # torch.hub's hash check
        raise WeightsError(f"{entry.url}: downloaded file failed its sha256 check ({error}); not kept") from None
    except OSError as error:
        raise WeightsError(f"{path}: cannot store the download ({error.strerror or error})") from None
    return path


def pretrained(name: str | PretrainedWeights, *, preprocess: str | Preprocessing | None = None,
               cache_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> SqueezeNet:
    """A registry entry (e.g. "1_1-torchvision") as a model in eval mode, with its preprocessing attached."""
    return load(download(name, cache_dir, progress), preprocess=preprocess)


def resolve(path_or_name: str | os.PathLike[str]) -> Path:
    """A local weights file or folder as given, a registry name's cached download, or an ``hf-hub:ORG/NAME``
    repository's snapshot in Hugging Face's cache (so --weights takes any of them).

    A string that is no file and reads as a name (see ``_looks_like_a_name``) but is not in the registry
    is refused with the known names, rather than reported later as a missing file.
    """
    if hub.is_hub_reference(path_or_name):
        return hub.download(str(path_or_name))
    if isinstance(path_or_name, str) and not Path(path_or_name).exists():
        if path_or_name in REGISTRY:
            return download(path_or_name)
        if _looks_like_a_name(path_or_name):
            raise _unknown_name(path_or_name, "; or give a file path")
    return Path(path_or_name)
