"""The fuzz suite's judge: run one reader on one malformed input and classify what happened.

Acceptable outcomes are a clean refusal (a SqueezeNetError whose message is one line and names the
file) or a result (the input was merely unusual). Anything else fails the test: another exception
type (a crash, which would reach the user as a traceback), a hang (past a per-case time limit), or
a peak memory growth larger than the input can justify (a forged count or size trusted blindly).

Every judged input is also counted, by its content hash, in ``TALLY``; the suite prints the totals
at the end (and writes them as JSON to $SQUEEZENET_FUZZ_REPORT when set), which is where the
figures of docs/reliability.md come from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

from squeezenet.errors import SqueezeNetError

LONG = os.environ.get("SQUEEZENET_FUZZ", "").lower() == "long"
CASE_SECONDS = 20.0  # per input: a loaded CI core reads the largest real file in about a second
MEMORY_SLACK = 192 << 20  # bytes of peak growth any input may cause (interpreter, protobuf, a model's tensors)
MEMORY_PER_INPUT_BYTE = 16  # ... plus this much per byte of input (decoded floats, protobuf objects, copies)


def examples(short: int, long: int) -> int:
    """How many generated inputs a test tries: few inside `make test`, many under `make fuzz`."""
    return long if LONG else short


def fuzz_settings(short: int, long: int) -> settings:
    """Hypothesis settings: the same inputs on every `make test` run; fresh random ones under `make fuzz`."""
    return settings(max_examples=examples(short, long), deadline=None, derandomize=not LONG, database=None,
                    suppress_health_check=list(HealthCheck))


class CaseTimeout(BaseException):
    """Raised into the reader when one input takes longer than CASE_SECONDS (a hang)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM; main thread, POSIX), or run it unbounded elsewhere."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"no answer within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # pytest-timeout may have armed its own
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # give the outer timer back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def _status_kib(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: /proc/self/clear_refs, value 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def peak_growth() -> Iterator[dict[str, int | None]]:
    """Measure the block's peak resident-memory growth in bytes (None where the platform cannot tell)."""
    measured: dict[str, int | None] = {"bytes": None}
    before = _status_kib("VmRSS") if _reset_peak() else None
    try:
        yield measured
    finally:
        peak = _status_kib("VmHWM")
        if before is not None and peak is not None:
            measured["bytes"] = max(0, peak - before) * 1024


@dataclass
class Outcome:
    """What one input did: "refused" (clean error), "read" (a result), or a failure kind."""

    kind: str
    detail: str
    seconds: float
    peak_bytes: int | None = None


@dataclass
class Tally:
    """Distinct inputs per reader and outcome kind, across the whole session."""

    seen: dict[str, set[str]] = field(default_factory=dict)
    outcomes: dict[str, Counter] = field(default_factory=dict)
    slowest: float = 0.0
    largest_peak: int = 0
    kills: list[dict[str, Any]] = field(default_factory=list)  # SIGKILLed training runs and how their resume went

    def add(self, reader: str, data: bytes, outcome: Outcome) -> None:
        digest = hashlib.sha256(data).hexdigest()
        if digest in self.seen.setdefault(reader, set()):
            return
        self.seen[reader].add(digest)
        self.outcomes.setdefault(reader, Counter())[outcome.kind] += 1
        self.slowest = max(self.slowest, outcome.seconds)
        self.largest_peak = max(self.largest_peak, outcome.peak_bytes or 0)

    def totals(self) -> dict[str, Any]:
        overall: Counter = Counter()
        for counts in self.outcomes.values():
            overall.update(counts)
        return {"inputs": sum(len(s) for s in self.seen.values()), "outcomes": dict(overall),
                "by_reader": {reader: dict(counts) for reader, counts in sorted(self.outcomes.items())},
                "slowest_seconds": round(self.slowest, 3), "largest_peak_mib": round(self.largest_peak / 2**20, 1),
                "kills": self.kills, "mode": "long" if LONG else "short"}

    def write(self) -> None:
        target = os.environ.get("SQUEEZENET_FUZZ_REPORT")
        if target and (self.seen or self.kills):
            Path(target).write_text(json.dumps(self.totals(), indent=2) + "\n")


TALLY = Tally()


def judge(reader: str, data: bytes, path: Path, call: Callable[[], object],
          accept: Callable[[object], str | None] | None = None, *, memory_limit: int | None = None,
          seconds: float = CASE_SECONDS, record: bool = True) -> Outcome:
    """Run ``call`` (which reads ``path``, holding ``data``) and classify it; failures carry the reason.

    ``accept`` checks a result: it returns None when the result is right for the input, else why not.
    ``memory_limit``: the peak growth allowed in bytes (default: slack plus a multiple of the input's size).
    ``record``: count the input in TALLY (the suite's figures).
    """
    limit = memory_limit if memory_limit is not None else MEMORY_SLACK + MEMORY_PER_INPUT_BYTE * len(data)
    started = time.perf_counter()
    result: object = None
    error: BaseException | None = None
    with peak_growth() as memory:
        try:
            with time_limit(seconds):
                result = call()
        except CaseTimeout as timeout:
            error = timeout
        except Exception as raised:  # judged below: only SqueezeNetError is a clean refusal
            error = raised
    seconds = time.perf_counter() - started
    peak = memory["bytes"]
    if isinstance(error, CaseTimeout):
        outcome = Outcome("hang", str(error), seconds, peak)
    elif error is not None and not isinstance(error, SqueezeNetError):
        outcome = Outcome("crash", f"{type(error).__name__}: {error}", seconds, peak)
    elif error is not None:
        message = str(error)
        if "\n" in message or not message.strip():
            outcome = Outcome("unclear", f"message is not one line: {message!r}", seconds, peak)
        elif str(path) not in message:
            outcome = Outcome("unclear", f"message does not name {path}: {message!r}", seconds, peak)
        else:
            outcome = Outcome("refused", message, seconds, peak)
    else:
        problem = accept(result) if accept is not None else None
        outcome = Outcome("wrong", problem, seconds, peak) if problem else Outcome("read", "", seconds, peak)
    if outcome.kind in ("refused", "read") and peak is not None and peak > limit:
        outcome = Outcome("memory", f"peak memory grew {peak / 2**20:.0f} MiB for a {len(data):,}-byte input "
                                    f"(limit {limit / 2**20:.0f} MiB); {outcome.detail}", seconds, peak)
    if record:
        TALLY.add(reader, data, outcome)
    return outcome


def check(reader: str, data: bytes, path: Path, call: Callable[[], object],
          accept: Callable[[object], str | None] | None = None, refuse: bool = False,
          memory_limit: int | None = None) -> Outcome:
    """``judge`` then fail the test (naming the input) unless the outcome is a clean refusal or a good result.

    ``refuse``: the input is broken beyond use, so only a clean refusal will do.
    """
    outcome = judge(reader, data, path, call, accept, memory_limit=memory_limit)
    allowed = ("refused",) if refuse else ("refused", "read")
    assert outcome.kind in allowed, (
        f"{reader}: {outcome.kind} on {path.name} ({len(data):,} bytes): {outcome.detail or 'read, not refused'}")
    return outcome


def check_all(reader: str, cases: Iterable[tuple[str, bytes]], folder: Path, suffix: str,
              call: Callable[[Path], object], accept: Callable[[str, object], str | None] | None = None,
              refuse: bool = False, memory_limit: Callable[[str, bytes], int] | None = None) -> list[Outcome]:
    """Judge every (name, bytes) case as a file ``folder/name+suffix``; fail once, listing every bad outcome."""
    outcomes, bad = [], []
    for name, data in cases:
        path = folder / f"{name}{suffix}"
        path.write_bytes(data)
        outcome = judge(reader, data, path, lambda path=path: call(path),
                        (lambda result, name=name: accept(name, result)) if accept is not None else None,
                        memory_limit=memory_limit(name, data) if memory_limit is not None else None)
        outcomes.append(outcome)
        if outcome.kind not in (("refused",) if refuse else ("refused", "read")):
            bad.append(f"{name}: {outcome.kind}: {outcome.detail or 'read, not refused'}")
    assert not bad, f"{reader}: {len(bad)} of {len(outcomes)} inputs failed:\n" + "\n".join(bad)
    return outcomes
