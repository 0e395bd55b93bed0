"""`squeezenet train` with a tiny registered spec, optionally killing itself at a chosen point of a file write.

    python -m tests.fuzz.train_entry [--kill-at KIND:N] train ARGS...

or ``run_child`` as the target of a process forked from a server that has already imported torch
(multiprocessing's forkserver): the run is still its own process, killed and interrupted by real
signals, but starts in a second instead of the many an interpreter takes to import torch on a busy CI machine.

The spec ``tiny-crash`` (about 1.5k weights) makes a real run take seconds. ``--kill-at KIND:N`` sends this
process SIGKILL at the N-th such moment, which lands inside a checkpoint write as no timer could:

* ``torn``: halfway through writing a file's bytes (the temporary file holds half of them);
* ``fsync``: the bytes written, not yet flushed to disk nor renamed into place;
* ``replace``: just before a temporary file is renamed over its target;
* ``link``: just before ``last``/``best`` are hard-linked to a new checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from squeezenet import cli
from squeezenet.spec import Metaparameters, Spec, register

TINY = Spec(name="tiny-crash", conv1_filters=8, conv1_kernel=3, conv1_stride=1, conv1_padding=1,
            pool_after=("conv1",), fires=Metaparameters(base_e=16, incr_e=16, num_fires=2, freq=1), num_classes=10)
KINDS = ("torn", "fsync", "replace", "link")


def _counter(limit: int) -> Callable[[], None]:
    seen = {"calls": 0}

    def tick() -> None:
        seen["calls"] += 1
        if seen["calls"] == limit:
            os.kill(os.getpid(), signal.SIGKILL)
    return tick


class _TornFile:
    """A file whose write() stops halfway at the chosen call (the process dies there)."""

    def __init__(self, file: Any, tick: Callable[[], None]) -> None:
        self._file, self._tick = file, tick

    def write(self, data: bytes) -> int:
        half = len(data) // 2
        self._file.write(data[:half])
        self._file.flush()
        self._tick()
        return half + self._file.write(data[half:])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _TornFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def install_kill(kind: str, limit: int) -> None:
    tick = _counter(limit)
    if kind == "torn":
        fdopen = os.fdopen
        os.fdopen = lambda fd, *args, **kwargs: _TornFile(fdopen(fd, *args, **kwargs), tick)  # type: ignore[assignment]
        return
    original = {"fsync": os.fsync, "replace": os.replace, "link": os.link}[kind]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        tick()
        return original(*args, **kwargs)
    setattr(os, kind, wrapped)


def main(argv: list[str]) -> int:
    register(TINY)
    if argv[:1] == ["--kill-at"]:
        kind, _, count = argv[1].partition(":")
        if kind not in KINDS or not count.isdigit():
            raise SystemExit(f"--kill-at KIND:N with KIND in {', '.join(KINDS)}")
        install_kill(kind, int(count))
        argv = argv[2:]
    return cli.main(argv)


def run_child(argv: list[str], stdout: str, stderr: str) -> None:
    """Process target: output to the given files, one torch thread (the same arithmetic in every run), exit code."""
    import torch

    for fd, name in ((1, stdout), (2, stderr)):
        handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the process's own stdout, kept open)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (multiprocessing may ignore it)
    torch.set_num_threads(1)
    taken = {"steps": 0}
    step = torch.optim.SGD.step

    def counted_step(self: torch.optim.SGD, *args: Any, **kwargs: Any) -> Any:
        taken["steps"] += 1
        return step(self, *args, **kwargs)

    torch.optim.SGD.step = counted_step  # shows where a resumed run started
    code = main(argv)
    print(f"optimizer steps taken in this process: {taken['steps']}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
