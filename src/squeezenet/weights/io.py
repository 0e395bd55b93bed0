"""One loader for every weights format, from one static table of the formats we read.

``load(path)`` tells the format from the file's first bytes (then its
extension) and returns a SqueezeNet in eval mode whose ``preprocess``
attribute turns a PIL image into the tensor these weights expect. Each format
is one module with the same ``read(path, arch) -> (model, preprocessing)``;
``FORMATS`` below names them, with what recognises a file and the extensions,
and detection, the unknown-format error and this table come from it. One entry
is a folder, not a file (the Hugging Face layout, ``hub``); ``hf-hub:ORG/NAME``
is fetched into Hugging Face's cache first:

"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..errors import WeightsError
from ..model import SqueezeNet
from ..preprocess import Preprocessing, get_preprocessing
from ..spec import Spec
from . import caffe, deep_compression, hub, safetensors, sqz, torch_file
from .files import PathLike, existing, write_atomic
from .hub import save_pretrained
from .safetensors import StoredWeights, read_safetensors, save

__all__ = ["FORMATS", "StoredWeights", "WeightsFormat", "detect_format", "extensions", "load", "read_safetensors",
           "save", "save_pretrained", "write_atomic"]

Reader = Callable[[Path, str | Spec | None], tuple[SqueezeNet, Preprocessing | None]]
Sniffer = Callable[[bytes], bool]
HEAD_BYTES = 16  # enough for every format's signature


class WeightsFormat(NamedTuple):
    """One format we read: how a file shows it, which extensions it has, and its reader."""

    extensions: tuple[str, ...]
    reader: Reader
    magic: Sniffer | None  # a sure sign in the first bytes, trusted before the extension
    guess: Sniffer | None  # a weak sign, used only when neither a magic nor the extension decides
    preprocessing: str  # what ``load`` attaches, for the docs
    folder: bool = False  # a folder of files (recognised by its file names), not one file


FORMATS: dict[str, WeightsFormat] = {
    "safetensors": WeightsFormat((".safetensors",), safetensors.read, safetensors.recognises, None,
                                 "the one stored in the file"),
    "torch": WeightsFormat((".pth", ".pt"), torch_file.read, torch_file.recognises, None, "``torchvision`` preset"),
    "caffe": WeightsFormat((".caffemodel",), caffe.read, None, caffe.might_be, "``caffe`` preset"),
    "deep_compression": WeightsFormat((".net",), deep_compression.read, None, None, "``caffe`` preset"),
    "sqz": WeightsFormat((".sqz",), sqz.read, sqz.recognises, None, "the one stored in the file"),
    "hub_folder": WeightsFormat((), hub.read, None, None, "the one in config.json", folder=True),
}


def extensions() -> str:
    """Every extension we read, grouped by format: ``.safetensors, .pth/.pt, .caffemodel, .net, .sqz``."""
    return ", ".join("/".join(entry.extensions) for entry in FORMATS.values() if entry.extensions)


def detect_format(path: PathLike) -> str:
    """A key of FORMATS: the folder format for a folder (checked to hold its files); for a file, from the first
    bytes where a format has a magic number, else the extension, else a guess."""
    if Path(path).is_dir():
        hub.check_folder(Path(path))
        return next(name for name, entry in FORMATS.items() if entry.folder)
    path = existing(path)
    try:
        with open(path, "rb") as file:
            head = file.read(HEAD_BYTES)
    except OSError as error:
        raise WeightsError(f"{path}: cannot read ({error.strerror or error})") from None
    for name, entry in FORMATS.items():
        if entry.magic is not None and entry.magic(head):
            return name
    for name, entry in FORMATS.items():
        if path.suffix.lower() in entry.extensions:
            return name
    for name, entry in FORMATS.items():
        if entry.guess is not None and entry.guess(head):
            return name
    raise WeightsError(f"{path}: unknown weights format (we read {extensions()})")


def load(path: PathLike, arch: str | Spec | None = None, *, preprocess: str | Preprocessing | None = None,
         file_format: str | None = None) -> SqueezeNet:
    """Any supported weights file or model folder -> a SqueezeNet in eval mode with ``.preprocess`` set.

    ``arch`` (a preset name or a Spec) says what to fit a file without a spec to; None tries every
    preset (see ``fit``), and for self-describing files a name only checks. ``preprocess`` overrides
    the recipe the format implies; ``file_format`` (a key of FORMATS) skips detection. A string
    ``hf-hub:ORG/NAME[@REVISION]`` is a Hub repository, fetched into Hugging Face's cache once.
    """
    if hub.is_hub_reference(path):
        path = hub.download(str(path))
    kind = file_format or detect_format(path)
    if kind not in FORMATS:
        raise WeightsError(f"{path}: unknown format {kind!r}; known: {', '.join(FORMATS)}")
    entry = FORMATS[kind]
    model, default_preprocessing = entry.reader(Path(path) if entry.folder else existing(path), arch)
    chosen = get_preprocessing(preprocess) if preprocess is not None else default_preprocessing
    model.meta = model.meta.replace(preprocessing=chosen)
    return model.eval()


def _format_table() -> str:
    """The FORMATS table as reStructuredText, for this module's docstring."""
    rows = [(name, "/".join(entry.extensions) or "(a folder)",
             "config.json + model.safetensors" if entry.folder else "magic bytes" if entry.magic
             else "extension, else a guess from the bytes" if entry.guess else "extension",
             entry.preprocessing) for name, entry in FORMATS.items()]
    header = ("format", "extensions", "recognised by", "preprocessing attached")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    rule = "  ".join("=" * width for width in widths)
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join([rule, lines[0], rule, *lines[1:], rule, ""])


if __doc__ is not None:  # absent under python -OO
    __doc__ += _format_table()
