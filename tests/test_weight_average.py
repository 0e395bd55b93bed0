"""The weights' moving average (``--ema-decay``): what the run saves and scores, and an exact resume of it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import squeezenet as sq
from squeezenet import TrainingError
from squeezenet.train import TrainConfig, read_metrics, train
from squeezenet.weights.io import read_safetensors

from .conftest import digits_test_scores

TINY = dict(data="digits", arch="1_1", subset=96, batch_size=32, micro_batch=16, epochs=2, progress=False,
            warmup_epochs=0.5, lr=0.02, seed=3)  # 3 steps an epoch


def _checkpoint(run, step: int) -> tuple[dict[str, torch.Tensor], dict]:
    name = run / "checkpoints" / f"step-{step:08d}"
    return (read_safetensors(name.with_suffix(".safetensors")).state_dict,
            torch.load(name.with_suffix(".state.pt"), weights_only=True))


def test_the_saved_weights_are_the_moving_average_of_the_trained_ones(tmp_path):
    run, decay = tmp_path / "run", 0.6
    train(TrainConfig(**TINY, out=str(run), ema_decay=decay, checkpoint_every=1, keep=10))
    saved, states = zip(*(_checkpoint(run, step) for step in range(1, 7)), strict=True)
    assert [state["average_updates"] for state in states] == [1, 2, 3, 4, 5, 6]
    first = states[0]["trained_weights"]
    assert all(torch.equal(saved[0][key], first[key]) for key in first)  # the first update takes the weights
    for step in range(1, 6):
        trained = states[step]["trained_weights"]
        for key, value in trained.items():
            torch.testing.assert_close(saved[step][key], decay * saved[step - 1][key] + (1 - decay) * value)
    last = states[-1]["trained_weights"]
    assert any(not torch.equal(saved[-1][key], last[key]) for key in last)  # the average, not the weights
    loss, top1 = digits_test_scores(sq.load(run / "last.safetensors"))
    logged = read_metrics(run)[-1]
    assert logged["test_loss"] == pytest.approx(loss, rel=1e-5) and logged["test_top1"] == pytest.approx(top1)
    assert read_safetensors(run / "best.safetensors").metadata["epoch"] in ("1", "2")


def test_without_a_decay_nothing_is_averaged(tmp_path):
    run = tmp_path / "plain"
    train(TrainConfig(**{**TINY, "epochs": 1}, out=str(run)))
    state = torch.load(run / "state.pt", weights_only=True)
    assert "trained_weights" not in state and "average_updates" not in state


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


CLI = [sys.executable, "-m", "squeezenet", "train"]
SETTINGS = ["--data", "digits", "--arch", "1_1", "--subset", "96", "--batch-size", "32", "--micro-batch", "16",
            "--epochs", "2", "--warmup-epochs", "0.5", "--lr", "0.02", "--ema-decay", "0.7", "--no-progress"]


def test_a_run_with_a_moving_average_resumes_exactly_in_a_fresh_process(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for command in ([*CLI, *SETTINGS, "--out", str(whole)],
                    [*CLI, *SETTINGS, "--out", str(broken), "--time-limit", "0"],
                    [*CLI, "--resume", str(broken), "--no-progress", "--time-limit", "600"]):
        done = subprocess.run(command, env=_environment(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert "scoring the weights' moving average (decay 0.7)" in done.stdout
    for name in ("last.safetensors", "best.safetensors"):
        expected, got = (read_safetensors(run / name).state_dict for run in (whole, broken))
        assert all(torch.equal(expected[key], got[key]) for key in expected), name
    expected, got = (torch.load(run / "state.pt", weights_only=True)["trained_weights"] for run in (whole, broken))
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert [r["test_loss"] for r in read_metrics(broken)] == [r["test_loss"] for r in read_metrics(whole)]


def test_a_damaged_average_state_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(**TINY, out=str(run), ema_decay=0.5, time_limit=0))
    state = torch.load(run / "state.pt", weights_only=True)
    without = {key: value for key, value in state.items() if key != "trained_weights"}
    for damaged, message in (({**state, "trained_weights": "weights"}, "field 'trained_weights' must map parameter"),
                             ({**state, "average_updates": -1}, "field 'average_updates' must be an integer >= 0"),
                             (without, "field 'trained_weights' is missing")):
        torch.save(damaged, run / "state.pt")
        with pytest.raises(TrainingError, match=message) as caught:
            train(TrainConfig(resume=str(run)))
        assert "\n" not in str(caught.value)


def test_a_decay_outside_zero_to_one_is_refused():
    with pytest.raises(TrainingError, match=r"--ema-decay must be a number in \[0, 1\), got 1\.0"):
        TrainConfig(ema_decay=1.0).validate()
