"""What every reader of a user's file shares: only regular files are opened, and never read past their real size.

A named pipe blocks ``open()`` until someone writes to it, and ``/dev/zero`` reads forever, so a path given as
weights, an image, a labels CSV or a config is checked with ``stat`` before it is opened: a folder, FIFO, socket
or device is refused in one line. ``printable`` makes a file name safe to put in that line (a name that is not
UTF-8, or holds a newline, would otherwise break the output or forge a second line).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from .errors import SqueezeNetError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def printable(path: str | os.PathLike[str]) -> str:
    """``path`` as text that prints on any terminal as one line: bytes that are not UTF-8 and control characters
    (a newline in a name) are shown as escapes, everything else as it is."""
    text = os.fspath(path)
    if not any(not character.isprintable() or "\udc80" <= character <= "\udcff" for character in text):
        return text
    escaped = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in escaped)


def is_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder; False, not an OSError, for a name over the system's length limit."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        return False


def is_regular(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (or a link to one); False for anything else or a name that cannot be."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def regular_file(path: str | os.PathLike[str], error: type[SqueezeNetError], what: str) -> Path:
    """``path`` as a Path when it names a regular file (a symbolic link to one is fine); otherwise ``error`` with
    one line saying what it is instead. ``what`` names the role, e.g. "weights file"."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{printable(path)}: {what} not found") from None
    except OSError as reason:  # a name over the system's limit, a loop of links, no permission on a folder
        raise error(f"{printable(path)}: cannot open ({reason.strerror or reason})") from None
    except ValueError:
        raise error(f"{printable(path)}: not a valid file name (it holds a NUL byte)") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise error(f"{printable(path)}: is {kind}, not {'an' if what[0] in 'aeiou' else 'a'} {what}")
    return path


def read_file(path: str | os.PathLike[str], error: type[SqueezeNetError], what: str,
              limit: int | None = None) -> bytes:
    """The bytes of a regular file, at most its size as ``stat`` gives it (and at most ``limit``, when given:
    larger files are refused before anything is read)."""
    path = regular_file(path, error, what)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if limit is not None and size > limit:
                raise error(f"{printable(path)}: {what} of {size:,} bytes is over the limit of {limit:,} bytes")
            return handle.read(size)
    except OSError as reason:
        raise error(f"{printable(path)}: cannot read ({reason.strerror or reason})") from None


class FileLocked(Exception):
    """Another process holds the lock; ``holder`` is what it wrote into the lock file (its pid and command)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], wait: bool = True) -> Iterator[None]:
    """Hold an OS lock on ``path`` (created when missing) while the block runs: ``flock``, which the system
    releases when the process dies, so a killed run never leaves a stale lock. ``wait=False``: raise FileLocked
    at once when another process holds it. Where the system has no ``flock`` (Windows), nothing is locked."""
    if fcntl is None:
        yield
        return
    with open(path, "a+", encoding="utf-8") as handle:  # closing the file releases the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            raise FileLocked(handle.read(200).strip() or "another process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
