"""The resource guard of the hostile-input suite: run the real command line in a child process and measure it.

Each refusal must come within GUARD_SECONDS and under GUARD_BYTES of peak resident memory, measured from the
child's own rusage (``os.wait4``), so a reader that hangs on a FIFO or allocates gigabytes before refusing fails
the test even when it ends in the right message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .harness import TALLY, Outcome

GUARD_SECONDS = 10.0
GUARD_BYTES = 1536 << 20  # 1.5 GiB


@dataclass
class Child:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_bytes: int
    timed_out: bool

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_cli(*arguments: str | Path, cwd: Path | None = None, seconds: float = GUARD_SECONDS,
            warnings: bool = False) -> Child:
    """``squeezenet ARGUMENTS`` in a child process, killed after ``seconds``; its exit status, output, wall time
    and peak resident memory (Linux: ru_maxrss of that child alone). Python's warnings are off unless
    ``warnings`` (third-party libraries print some that are not the command's)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default" if warnings else "ignore"}
    output, errors = (Path(os.environ.get("TMPDIR", "/tmp")) / f"guard-{os.getpid()}-{name}"
                      for name in ("out", "err"))
    started = time.perf_counter()
    with open(output, "wb") as out, open(errors, "wb") as err:
        child = subprocess.Popen([sys.executable, "-m", "squeezenet", *map(str, arguments)], cwd=cwd,
                                 stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=environment,
                                 start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > seconds:
                timed_out = True
                os.killpg(child.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.02)
        child.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    seconds_taken = time.perf_counter() - started
    result = Child(child.returncode, output.read_bytes().decode("utf-8", "replace"),
                   errors.read_bytes().decode("utf-8", "replace"), seconds_taken, usage.ru_maxrss * 1024, timed_out)
    output.unlink(missing_ok=True)
    errors.unlink(missing_ok=True)
    return result


def refused(kind: str, case: str, child: Child, names: str | Path | None = None) -> None:
    """Assert the one-line refusal (exit 2, one line on stderr naming ``names``) within the guard's time and
    memory, and count the case in the suite's tally under ``hostile:KIND``."""
    lines = child.lines()
    problems = []
    if child.timed_out:
        problems.append(f"no answer within {GUARD_SECONDS:.0f} s")
    elif child.returncode != 2:
        problems.append(f"exit status {child.returncode}, not 2")
    if not child.timed_out and len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, not one")
    if names is not None and not any(str(names) in line for line in lines):
        problems.append(f"the message does not name {names}")
    if child.peak_bytes > GUARD_BYTES:
        problems.append(f"peak memory {child.peak_bytes / 2**20:.0f} MiB, over {GUARD_BYTES / 2**20:.0f} MiB")
    verdict = Outcome("refused" if not problems else "crash", "; ".join(problems), child.seconds, child.peak_bytes)
    TALLY.add(f"hostile:{kind}", f"{kind}:{case}".encode(), verdict)
    assert not problems, f"{kind} / {case}: {'; '.join(problems)}\nstderr: {child.stderr[-2000:]}"


def read_fine(kind: str, case: str, child: Child) -> None:
    """Assert an unusual but valid input was handled (exit 0) within the guard; count it as read."""
    ok = child.returncode == 0 and not child.timed_out and child.peak_bytes <= GUARD_BYTES
    TALLY.add(f"hostile:{kind}", f"{kind}:{case}".encode(),
              Outcome("read" if ok else "crash", child.stderr[-200:], child.seconds, child.peak_bytes))
    assert ok, f"{kind} / {case}: exit {child.returncode}, {child.seconds:.1f} s, " \
               f"{child.peak_bytes / 2**20:.0f} MiB\nstderr: {child.stderr[-2000:]}"
