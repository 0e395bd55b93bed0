"""The machine a timing belongs to, and whether it was quiet enough for the timing to mean anything.

Timings on a shared 2-core machine swing by 2x when another job runs, and the rows of a table slow down unequally,
so a ratio measured under load is not a result. ``MachineCheck`` measures the machine at the start and the end of
a benchmark (the 1-minute load average and a short float32 matmul throughput) and says in one line when it was
busy: a load above the core count at the start (above it by more than one at the end, where the benchmark's own
threads still count), or the two matmul figures apart by more than ``MARGIN``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

MARGIN = 0.15  # matmul throughput at the end within 15% of the start
MATMUL_SIDE = 512
MATMUL_SECONDS = 0.5


def machine_info() -> dict[str, Any]:
    """The CPU and library versions a result belongs to (bf16 and int8 speed hinge on the CPU's flags)."""
    info: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "logical_cpus": None,
                            "torch_threads": torch.get_num_threads()}
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
        flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
        info["cpu"] = names[0] if names else info["cpu"]
        info["logical_cpus"] = len(names) or None
        wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
        info["cpu_flags"] = [flag for flag in wanted if flag in flags]
    for package in ("torch", "onnxruntime", "openvino", "nncf"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    return info


def matmul_gflops(seconds: float = MATMUL_SECONDS, side: int = MATMUL_SIDE) -> float:
    """float32 matmul throughput of this process's torch threads, in GFLOP/s, measured for about ``seconds``."""
    left, right = torch.randn(side, side), torch.randn(side, side)
    torch.mm(left, right)  # the first call sets up the kernel
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or calls < 3:
        torch.mm(left, right)
        calls += 1
    return 2 * side**3 * calls / elapsed / 1e9


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


@dataclass
class MachineCheck:
    """The machine measured before and after a benchmark; ``busy`` is why its figures are unreliable, or None."""

    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    load_before: float | None = None
    load_after: float | None = None
    gflops_before: float | None = None
    gflops_after: float | None = None

    @classmethod
    def start(cls) -> MachineCheck:
        return cls(load_before=load_average(), gflops_before=matmul_gflops())

    def finish(self) -> MachineCheck:
        self.load_after, self.gflops_after = load_average(), matmul_gflops()
        return self

    @property
    def busy(self) -> str | None:
        # The load at the end still holds the benchmark's own threads (up to one per core): one more is another job.
        for when, load, limit in (("at the start", self.load_before, self.cores),
                                  ("at the end", self.load_after, self.cores + 1)):
            if load is not None and load > limit:
                return (f"the machine was busy {when} (load average {load:.1f} on {self.cores} cores): these "
                        "figures are not comparable with a quiet run")
        if self.gflops_before and self.gflops_after:
            change = self.gflops_after / self.gflops_before - 1
            if abs(change) > MARGIN:
                return (f"the machine's speed changed during the run (float32 matmul {self.gflops_before:.0f} -> "
                        f"{self.gflops_after:.0f} GFLOP/s, {change:+.0%}): something else was running; rerun on a "
                        "quiet machine")
        return None

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 2)
        return {"cores": self.cores, "load_average_before": rounded(self.load_before),
                "load_average_after": rounded(self.load_after), "matmul_gflops_before": rounded(self.gflops_before),
                "matmul_gflops_after": rounded(self.gflops_after), "busy": self.busy}


@contextlib.contextmanager
def watched(say: Callable[[str], None] = print) -> Iterator[MachineCheck]:
    """Measure the machine around a benchmark script's work: a line at the start, then at the end a warning when
    it was busy and the check as one JSON line (what the benchmark scripts print)."""
    check = MachineCheck.start()
    say(f"machine: load average {check.load_before}, float32 matmul {check.gflops_before:.0f} GFLOP/s")
    yield check
    check.finish()
    if check.busy:
        say(f"warning: {check.busy}")
    say(json.dumps({"machine_check": check.to_dict()}))
