"""The judge itself can fail: a crash, a hang, a memory blow-up, a two-line or anonymous error are all caught."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from squeezenet.errors import WeightsError

from . import harness


def judged(path: Path, call, **options) -> str:
    return harness.judge("self-test", b"tiny input", path, call, record=False, **options).kind


def test_every_failure_kind_is_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "input.bin"

    def refuse() -> None:
        raise WeightsError(f"{path}: broken")

    def crash() -> None:
        raise KeyError("layer")

    def hang() -> None:
        time.sleep(30)

    def blow_up() -> None:
        buffer = np.ones(300 << 20, dtype=np.uint8)  # 300 MiB for a 10-byte input
        raise WeightsError(f"{path}: refused, but only after allocating {buffer.nbytes:,} bytes")

    def two_lines() -> None:
        raise WeightsError(f"{path}: one\nand two")

    def anonymous() -> None:
        raise WeightsError("broken, but which file?")

    assert judged(path, refuse) == "refused"
    assert judged(path, lambda: 42) == "read"
    assert judged(path, lambda: 42, accept=lambda result: "not 41" if result != 41 else None) == "wrong"
    assert judged(path, crash) == "crash"
    assert judged(path, hang, seconds=0.5) == "hang"
    assert judged(path, two_lines) == "unclear"
    assert judged(path, anonymous) == "unclear"
    if harness._reset_peak():
        assert judged(path, blow_up) == "memory"
    else:
        pytest.skip("this platform cannot reset its peak-memory mark (no /proc/self/clear_refs)")
