"""File plumbing every weights format shares: atomic writes with ordinary permissions, checked reads, short errors.

Kept apart from ``io`` (which imports every format module) so that a format
module can write and read files without importing the loader above it.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from ..errors import WeightsError
from ..files import read_file, regular_file

PathLike = str | os.PathLike[str]
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux's /proc), else set and restored.

    Read at every write, not once at import, so a program that changes its umask later is honoured.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # os.umask is read by setting it: a strict value meanwhile, and one reader at a time
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def write_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` so that ``path`` holds either its old content or all of the new, never a part.

    A temporary file in the same folder is written, flushed to disk, then renamed over ``path``.
    It gets the mode a plain ``open()`` would give (0o666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        raise WeightsError(f"{path}: cannot write here ({error.strerror or error})") from None
    try:
        if hasattr(os, "fchmod"):  # POSIX (and Windows from Python 3.13, where only the read-only bit counts)
            os.fchmod(handle, 0o666 & ~current_umask())
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
    _sync_folder(folder)
    return path


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a folder that cannot be opened is left as it is."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)


def existing(path: PathLike) -> Path:
    """``path`` as a Path, or a one-line WeightsError when it is missing or not a regular file (a folder, a FIFO
    that would block the read, a device such as /dev/zero that never ends)."""
    return regular_file(path, WeightsError, "weights file")


def read_bytes(path: Path) -> bytes:
    """The whole file, never more than its real size."""
    return read_file(path, WeightsError, "weights file")
