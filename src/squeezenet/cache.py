"""The package's cache folder: unpacked dataset archives, the decoded images kept beside them, and exports.

Everything here is a shortcut that can be thrown away: a damaged or unwritable entry is rebuilt or skipped,
never trusted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import torch

from .errors import DataError, one_line
from .files import locked


def cache_dir() -> Path:
    """Where unpacked archives and downloads live: $SQUEEZENET_CACHE, else ~/.cache/squeezenet."""
    return Path(os.environ.get("SQUEEZENET_CACHE") or Path.home() / ".cache" / "squeezenet")


def unpack(archive: Path) -> Path:
    """Unpack an archive once into cache_dir(); concurrent processes (DDP ranks) race safely."""
    stat = archive.stat()
    stem = archive.name.split(".")[0]
    target = cache_dir() / "datasets" / f"{stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(temporary, filter="data")
        os.replace(temporary, target)
    except (tarfile.TarError, OSError, EOFError) as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if target.is_dir():  # another process finished first
            return target
        raise DataError(f"{archive}: cannot unpack ({one_line(error)})") from None
    return target


def memo_lock(path: Path | None) -> contextlib.AbstractContextManager[None]:
    """Held while a memo is looked up and, when missing, made: the first process decodes, the others wait for
    its file instead of decoding the same images at the same time."""
    if path is None or not os.access(path.parent, os.W_OK):  # no memo can be written there either
        return contextlib.nullcontext()
    return locked(path.with_name(f"{path.name}.lock"))


def read_memo(path: Path | None, strict: bool) -> dict | None:
    """A memo of decoded images, mapped from its file (copy-on-write): processes that read the same memo share
    its pages instead of holding a copy each."""
    if path is None or not path.is_file():
        return None
    try:
        decoded = torch.load(path, weights_only=True, mmap=True)
    except Exception:  # a damaged memo is only a lost shortcut: decode again
        return None
    if strict and decoded.get("skipped"):
        raise DataError(f"{decoded['skipped'][0]}: unreadable image (--strict makes unreadable images an error)")
    return decoded


def write_memo(path: Path | None, decoded: dict) -> bool:
    """Whether the memo was written (a cache we cannot write is no error)."""
    if path is None:
        return False
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(decoded, temporary)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        return False
    return True
