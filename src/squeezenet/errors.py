"""Typed errors: every bad input the package can meet ends in one of these.

Each carries a one-line message that names the file (or field) and the problem,
so the CLI can print it as is and exit with code 2.
"""

from __future__ import annotations


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
