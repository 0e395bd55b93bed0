"""Exact resume after a real SIGKILL of a real `squeezenet train` process, and torchrun data parallelism.

Both run the CLI as subprocesses on the real digits, with one thread each so that two runs side by side
neither slow each other down nor differ in how float sums are split across threads.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import squeezenet as sq
from squeezenet.train import read_metrics
from squeezenet.weights.io import read_safetensors

from .conftest import digits_test_scores

TRAIN = [sys.executable, "-m", "squeezenet", "train", "--data", "digits", "--arch", "1_1", "--subset", "192",
         "--batch-size", "32", "--micro-batch", "16", "--epochs", "3", "--warmup-epochs", "0.5", "--lr", "0.01",
         "--seed", "11", "--no-progress"]


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(path).state_dict


@pytest.mark.slow
def test_sigkill_at_an_arbitrary_moment_then_resume_gives_identical_weights(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    environment = _environment()
    uninterrupted = subprocess.Popen([*TRAIN, "--out", str(reference)], env=environment,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen([*TRAIN, "--out", str(killed), "--checkpoint-every", "2"], env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120

    def written(step: int) -> float:
        """When the checkpoint of ``step`` appeared (the run checkpoints every 2 of its 18 steps)."""
        while not (killed / "checkpoints" / f"step-{step:08d}.state.pt").exists():
            assert victim.poll() is None and time.monotonic() < deadline, f"the run ended before step {step}"
            time.sleep(0.01)
        return time.monotonic()

    interval = -written(2) + written(4)  # two steps' time on this machine, quiet or loaded
    time.sleep(random.uniform(0.0, 5 * interval))  # an arbitrary moment before the end (14 steps remain)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    killed_at = torch.load(killed / "state.pt", weights_only=True)["step"]
    assert killed_at < 18, "the run finished before it was killed; nothing was tested"
    # What a kill during a write leaves behind (the temporary file of a write that never got renamed).
    litter = [killed / ".last.safetensors.k1ll3d.tmp", killed / "checkpoints" / ".step-00000099.state.pt.x.tmp"]
    for path in litter:
        path.write_bytes(b"half a file")
    resumed = subprocess.run([*TRAIN[:3], "train", "--resume", str(killed)], env=environment,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert uninterrupted.wait(timeout=180) == 0, uninterrupted.stderr.read()

    expected, got = _weights(reference / "last.safetensors"), _weights(killed / "last.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), f"weights differ after resuming at {killed_at}"
    assert [r["step"] for r in read_metrics(killed)] == [6, 12, 18]
    assert not any(path.exists() for path in litter), "the resume left half-written files behind"
    assert [r["test_loss"] for r in read_metrics(killed)] == [r["test_loss"] for r in read_metrics(reference)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    # Dropout off: each process draws its own masks, so only then can the runs agree to float rounding.
    settings = [*TRAIN[4:], "--dropout", "0", "--epochs", "1", "--checkpoint-every", "3"]
    single = subprocess.Popen([sys.executable, "-m", "squeezenet", "train", *settings, "--out", str(tmp_path / "one")],
                              env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    launched = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                               "--master-port", str(_free_port()), "-m", "squeezenet", "train", *settings,
                               "--out", str(tmp_path / "two")],
                              env=_environment(), capture_output=True, text=True, timeout=240)
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert single.wait(timeout=240) == 0, single.stderr.read()
    assert "batch 32 = 2 process(es) x 1 x 16" in launched.stdout  # each process: one micro-batch of 16
    assert launched.stdout.count("done:") == 1  # only process 0 reports

    one, two = _weights(tmp_path / "one" / "last.safetensors"), _weights(tmp_path / "two" / "last.safetensors")
    start = _weights(tmp_path / "one" / "checkpoints" / "step-00000003.safetensors")
    assert any(not torch.equal(start[k], one[k]) for k in one)  # the weights moved
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    assert read_metrics(tmp_path / "two")[0]["train_loss"] == pytest.approx(
        read_metrics(tmp_path / "one")[0]["train_loss"], rel=1e-5)


@pytest.mark.parametrize("average", [[], ["--ema-decay", "0.5"]], ids=["weights", "moving-average"])
def test_torchrun_scores_the_batch_norm_statistics_it_saves(tmp_path, average):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    # Each process's last batch moves its own running statistics (and its own average of them); the metrics must
    # be those of the saved file.
    launched = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                               "--master-port", str(_free_port()), "-m", "squeezenet", "train", *TRAIN[4:],
                               "--batch-norm", "--epochs", "1", *average, "--out", str(tmp_path / "two")],
                              env=_environment(), capture_output=True, text=True, timeout=240)
    assert launched.returncode == 0, launched.stderr[-2000:]
    loss, top1 = digits_test_scores(sq.load(tmp_path / "two" / "last.safetensors"))
    logged = read_metrics(tmp_path / "two")[0]
    assert logged["test_loss"] == pytest.approx(loss, rel=1e-5) and logged["test_top1"] == pytest.approx(top1)


TINY_SPEC = ["--arch", "cifar", "--squeeze-ratio", "0.25", "--base-e", "16", "--incr-e", "16", "--num-fires", "4",
             "--image-size", "8", "--subset", "128", "--batch-size", "64", "--warmup-epochs", "0", "--no-progress"]


def test_a_custom_spec_trains_from_flags_and_resumes_in_a_fresh_process(tmp_path):
    """The metaparameter flags of `summary` make the network; the run folder's spec.json alone brings it back."""
    run = tmp_path / "run"
    environment = _environment()
    first = subprocess.run([*TRAIN[:6], *TINY_SPEC, "--epochs", "2", "--time-limit", "0", "--out", str(run)],
                           env=environment, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    stored = sq.Spec.from_json((run / "spec.json").read_text())
    assert stored.fires.squeeze_ratio == 0.25 and stored.fires.base_e == 16 and stored.num_classes == 10
    assert "custom" not in sq.PRESETS and stored.name == "cifar"
    second = subprocess.run([sys.executable, "-m", "squeezenet", "train", "--resume", str(run), "--no-progress",
                             "--time-limit", "600"], env=environment, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert sq.load(run / "best.safetensors").spec == stored


def test_resume_refuses_new_metaparameters(tmp_path):
    result = subprocess.run([sys.executable, "-m", "squeezenet", "train", "--resume", str(tmp_path),
                             "--squeeze-ratio", "0.5"], env=_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--squeeze-ratio cannot change" in result.stderr
