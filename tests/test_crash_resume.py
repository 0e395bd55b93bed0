"""Crashes and interrupts during training never lose the run: SIGKILL anywhere (inside checkpoint writes too),
Ctrl-C, and a disk that fills up or a run folder that turns read-only in the middle of a checkpoint.

The killed runs are real processes running `squeezenet train` (``tests.fuzz.train_entry``: the CLI with a tiny
registered spec), forked from a server that has already imported torch so that each starts in about a second.
Every resumed run must end with weights bit-identical to a run never interrupted. `make test` kills 2 runs;
`make fuzz` (SQUEEZENET_FUZZ=long) kills 10.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from squeezenet.errors import SqueezeNetError
from squeezenet.spec import PRESETS
from squeezenet.train import TrainConfig, train
from squeezenet.weights.io import read_safetensors

from .fuzz.harness import LONG, TALLY
from .fuzz.train_entry import TINY, run_child

if sys.platform == "win32":
    pytest.skip("needs POSIX signals and a forkserver", allow_module_level=True)

STEPS = 44  # digits: 1,437 training images // batch 64 = 22 steps, x 2 epochs
ARGS = ["train", "--data", "digits", "--arch", TINY.name, "--epochs", "2", "--batch-size", "64", "--micro-batch", "64",
        "--image-size", "16", "--lr", "0.05", "--warmup-epochs", "0.5", "--checkpoint-every", "1", "--keep", "2",
        "--device", "cpu", "--workers", "0", "--no-progress", "--stall-patience", "0", "--seed", "3"]
RUN_SECONDS = 300  # one run takes a few seconds; this only stops a hung test
_CONTEXT = multiprocessing.get_context("forkserver")
# Everything a run imports, imported once in the server (a module missing here is simply imported by the child).
_CONTEXT.set_forkserver_preload(["tests.fuzz.train_entry", "squeezenet.train", "squeezenet.deploy",
                                 "squeezenet.explore", "squeezenet.benchmark", "sklearn.datasets",
                                 "sklearn.model_selection"])


@dataclass
class Launched:
    process: multiprocessing.process.BaseProcess
    out: Path
    stderr: Path

    def wait(self) -> int:
        self.process.join(RUN_SECONDS)
        code = self.process.exitcode
        if code is None:
            self.process.kill()
            self.process.join()
        self.process.close()
        if code is None:
            pytest.fail(f"training in {self.out} did not finish within {RUN_SECONDS} s")
        return code

    def errors(self) -> str:
        return self.stderr.read_text()

    def steps_taken(self) -> int:
        """Optimizer steps this process took (printed by train_entry.run_child as it exits)."""
        last = self.stderr.with_suffix(".out").read_text().strip().splitlines()[-1]
        return int(last.rsplit(":", 1)[1])


def launch(out: Path, argv: list[str], name: str) -> Launched:
    logs = out.parent / f"{out.name}.{name}"
    process = _CONTEXT.Process(target=run_child, args=(argv, f"{logs}.out", f"{logs}.err"), daemon=True)
    process.start()
    return Launched(process, out, Path(f"{logs}.err"))


def fresh(out: Path, kill_at: str | None = None) -> Launched:
    return launch(out, (["--kill-at", kill_at] if kill_at else []) + [*ARGS, "--out", str(out)], "first")


def resume(out: Path) -> Launched:
    """Continue the run; where no checkpoint was written yet, the original command simply starts over."""
    if (out / "state.pt").exists():
        return launch(out, ["train", "--resume", str(out)], "resume")
    return launch(out, [*ARGS, "--out", str(out)], "restart")


def final_weights(out: Path) -> dict[str, bytes]:
    state = read_safetensors(out / "last.safetensors").state_dict
    return {name: tensor.numpy().tobytes() for name, tensor in state.items()}


def newest_step(out: Path) -> int:
    steps = [int(p.name[5:13]) for p in (out / "checkpoints").glob("step-*.safetensors")] if out.is_dir() else []
    return max(steps, default=0)


def wait_for_step(run: Launched, step: int) -> None:
    while newest_step(run.out) < step:
        if not run.process.is_alive():
            pytest.fail(f"training in {run.out} ended (exit {run.process.exitcode}) before step {step}: {run.errors()}")
        time.sleep(0.002)


class Reference:
    """The weights of a run never interrupted, trained alongside the first test's runs (asked for when needed)."""

    def __init__(self, out: Path) -> None:
        self.run, self._weights = fresh(out), None

    def weights(self) -> dict[str, bytes]:
        if self._weights is None:
            assert self.run.wait() == 0, self.run.errors()
            self._weights = final_weights(self.run.out)
            start = read_safetensors(self.run.out / "checkpoints" / f"step-{STEPS:08d}.safetensors").state_dict
            assert all(tensor.abs().sum() > 0 for tensor in start.values() if tensor.dim() > 1)
        return self._weights


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return Reference(tmp_path_factory.mktemp("reference") / "run")


def kill_moments(count: int, seed: int) -> list[str]:
    """Seeded moments, half inside file writes (``KIND:N``), half at a random time after step k (``step:k:ms``)."""
    rng = random.Random(seed)
    per_checkpoint = {"torn": 3, "fsync": 3, "replace": 4, "link": 1}  # lower bounds: the kill always happens
    moments = []
    for index in range(count):
        if index % 2 == 0:
            kind = rng.choice(sorted(per_checkpoint))
            moments.append(f"{kind}:{rng.randint(1, per_checkpoint[kind] * (STEPS - 2))}")
        else:
            moments.append(f"step:{rng.randint(1, STEPS - 4)}:{rng.randint(0, 60)}")
    return moments


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_ends_bit_identical(reference: Reference, tmp_path: Path) -> None:
    moments = kill_moments(10 if LONG else 2, seed=2016)
    for batch_start in range(0, len(moments), 2):  # two runs at a time: one per core
        batch = moments[batch_start:batch_start + 2]
        runs = []
        for number, moment in enumerate(batch, start=batch_start):
            out = tmp_path / f"run{number}"
            kind, _, rest = moment.partition(":")
            run = fresh(out, None if kind == "step" else moment)
            runs.append((moment, run))
            if kind == "step":
                step, delay = map(int, rest.split(":"))
                wait_for_step(run, step)
                time.sleep(delay / 1000)
                os.kill(run.process.pid, signal.SIGKILL)
        records = []
        for moment, run in runs:
            assert run.wait() == -signal.SIGKILL, f"{moment}: the run was not killed ({run.errors()})"
            state_file = run.out / "state.pt"
            records.append({"moment": moment, "newest_checkpoint": newest_step(run.out),
                            "resumes_from_step": torch.load(state_file, weights_only=True)["step"]
                            if state_file.exists() else 0,
                            "temp_files_left": sorted(p.name for p in run.out.rglob("*.tmp"))})
        resumed_runs = [resume(run.out) for _, run in runs]
        for record, (moment, run), resumed in zip(records, runs, resumed_runs, strict=True):
            record["resume_exit"] = resumed.wait()
            record["identical"] = record["resume_exit"] == 0 and final_weights(run.out) == reference.weights()
            TALLY.kills.append(record)
            assert record["resume_exit"] == 0, f"{moment}: resume failed: {resumed.errors()}"
            assert record["identical"], f"{moment}: the resumed run ended with other weights"
            assert resumed.steps_taken() == STEPS - record["resumes_from_step"], f"{moment}: did not continue"


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_says_how_to_resume_and_resumes_exactly(reference: Reference,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = fresh(out)
    wait_for_step(run, 5)
    os.kill(run.process.pid, signal.SIGINT)
    assert run.wait() == 130
    message = run.errors().strip()
    assert "\n" not in message and "Traceback" not in message
    assert "interrupted" in message and f"--resume {out}" in message
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] >= 5 and (out / state["weights"]).is_file()
    assert f"stopped at step {state['step']}" in message  # the checkpoint holds the very last step taken
    resumed = resume(out)
    assert resumed.wait() == 0, resumed.errors()
    assert resumed.steps_taken() == STEPS - state["step"]
    assert final_weights(out) == reference.weights()


# -- a full disk or a read-only run folder in the middle of a checkpoint --------------------------------------


def _config(out: Path, **changes: object) -> TrainConfig:
    """One epoch of 11 steps, a checkpoint after each."""
    return TrainConfig(**{"data": "digits", "arch": TINY.name, "epochs": 1, "batch_size": 128, "micro_batch": 128,
                          "image_size": 16, "lr": 0.05, "warmup_epochs": 0.5, "checkpoint_every": 1, "keep": 2,
                          "device": "cpu", "workers": 0, "progress": False, "stall_patience": 0, "seed": 3,
                          "out": str(out), **changes})


@pytest.fixture
def tiny_spec(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tiny spec registered, and one torch thread: two threads fighting over a busy CI machine's two cores
    make these few-thousand-weight steps many times slower (restored afterwards)."""
    monkeypatch.setitem(PRESETS, TINY.name, TINY)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fail_writes_of(monkeypatch: pytest.MonkeyPatch, name: str, error: OSError, at: str,
                    when: Callable[[], bool] = lambda: True) -> None:
    """Make the atomic write of ``name`` fail while ``when()`` holds: at "mkstemp" (the folder is unwritable)
    or at "fsync" (the disk filled up while the bytes went out)."""
    doomed: set[int] = set()
    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if kwargs.get("prefix") == f".{name}." and when():
            if at == "mkstemp":
                raise error
            handle, path = real_mkstemp(*args, **kwargs)
            doomed.add(handle)
            return handle, path
        return real_mkstemp(*args, **kwargs)

    def fsync(handle: int) -> None:
        if handle in doomed:
            raise error
        real_fsync(handle)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fsync", fsync)


NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


LONG_ONLY = pytest.mark.skipif(not LONG, reason="one more variant for `make fuzz`")


@pytest.mark.parametrize(("failing", "error", "at"), [
    ("step-00000004.safetensors", NO_SPACE, "fsync"),
    ("state.pt", NO_SPACE, "fsync"),
    ("step-00000004.safetensors", PermissionError(errno.EACCES, "Permission denied"), "mkstemp"),
    pytest.param("step-00000004.state.pt", NO_SPACE, "fsync", marks=LONG_ONLY),
    pytest.param("state.pt", OSError(errno.EROFS, "Read-only file system"), "mkstemp", marks=LONG_ONLY),
])
def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(tmp_path: Path, tiny_spec: None,
                                                                    monkeypatch: pytest.MonkeyPatch, failing: str,
                                                                    error: OSError, at: str) -> None:
    out = tmp_path / "run"
    fourth = out / "checkpoints" / "step-00000004.state.pt"  # written just before the fourth state.pt
    with monkeypatch.context() as patch:
        _fail_writes_of(patch, failing, error, at, when=fourth.exists if failing == "state.pt" else lambda: True)
        with pytest.raises(SqueezeNetError) as caught:
            train(_config(out))
    message = str(caught.value)
    assert "\n" not in message and str(out) in message and error.strerror in message
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] == 3  # the last complete checkpoint
    kept = read_safetensors(out / state["weights"]).state_dict
    assert read_safetensors(out / "last.safetensors").state_dict.keys() == kept.keys()
    assert not list(out.rglob("*.tmp"))
    result = train(TrainConfig(resume=str(out), progress=False))  # the disk has room again: carry on
    assert result.steps == 11


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_run_folder_turned_read_only_stops_with_a_clear_message(tmp_path: Path, tiny_spec: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    real_replace = os.replace

    def replace(source: Any, target: Any) -> None:  # after the third complete checkpoint, the folder turns read-only
        real_replace(source, target)
        if Path(target) == out / "state.pt" and (out / "checkpoints" / "step-00000003.state.pt").exists():
            for folder in (out, out / "checkpoints"):
                folder.chmod(0o500)

    monkeypatch.setattr(os, "replace", replace)
    try:
        with pytest.raises(SqueezeNetError) as caught:
            train(_config(out))
    finally:
        for folder in (out, out / "checkpoints"):
            folder.chmod(0o700)
    assert "\n" not in str(caught.value) and str(out) in str(caught.value)
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 3
