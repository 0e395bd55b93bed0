"""Typed errors: every bad input the package can meet ends in one of these.

Each carries a one-line message that names the file (or field) and the problem,
so the CLI can print it as is and exit with code 2. ``one_line`` turns a foreign
library's exception into the short reason such a message quotes.
"""

from __future__ import annotations

import re


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line: whitespace folded, terminal colour codes dropped, at most ``limit``
    characters (torch.onnx and OpenVINO put pages of advice and colour in theirs)."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


class SqueezeNetError(ValueError):
    """Base of every error raised on bad input; the CLI turns it into one line and exit 2."""


class SpecError(SqueezeNetError):
    """A spec that does not describe a valid network (names the offending field)."""


class InputSizeError(SqueezeNetError):
    """An input image too small for the network's pools."""


class WeightsError(SqueezeNetError):
    """A weights file that is missing, malformed, or made for another architecture."""


class DataError(SqueezeNetError):
    """A dataset, image or labels file that cannot be used."""


class TrainingError(SqueezeNetError):
    """Training cannot go on (diverged, stalled, unwritable run folder)."""


class ExportError(SqueezeNetError):
    """An export that failed, or whose outputs do not match PyTorch's."""


class CompressionError(SqueezeNetError):
    """Compression settings that cannot apply (unknown layer, bits out of range, bad density)."""


class ExploreError(SqueezeNetError):
    """A sweep that cannot run as asked: bad --sweep syntax, or a sweep folder made with other settings."""


class MissingExtraError(SqueezeNetError):
    """An optional toolkit is not installed; the message names the extra that brings it."""
