"""The fuzz suite's figures: one summary line at the end of the run (and JSON with $SQUEEZENET_FUZZ_REPORT)."""

from __future__ import annotations

from typing import Any

from .harness import TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line of figures (distinct inputs, outcomes) after the run; JSON too with $SQUEEZENET_FUZZ_REPORT."""
    totals = TALLY.totals()
    if TALLY.seen:
        outcomes = ", ".join(f"{count} {kind}" for kind, count in sorted(totals["outcomes"].items()))
        terminalreporter.write_line(
            f"fuzz ({totals['mode']}): {totals['inputs']} distinct inputs: {outcomes}; "
            f"slowest {totals['slowest_seconds']} s, largest peak memory growth {totals['largest_peak_mib']} MiB")
    if TALLY.kills:
        survived = sum(kill["identical"] for kill in TALLY.kills)
        inside = sum(kill["moment"].split(":")[0] != "step" for kill in TALLY.kills)
        terminalreporter.write_line(f"training runs SIGKILLed: {len(TALLY.kills)} ({inside} inside a file write); "
                                    f"resumed bit-identical: {survived}")
    TALLY.write()

