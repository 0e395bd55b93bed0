"""Design-space exploration (the paper's Section 5) and the bypass variants (Section 6).

Sweeps train on the real embedded digits data with a tiny base network, one or two epochs: the tests check
the plumbing (CSV, plots, resume, a SIGKILLed sweep), not the accuracy. The bypass variants go through
safetensors, ONNX and Deep Compression with the package's public functions.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import squeezenet as sq
from squeezenet.cli import main
from squeezenet.explore import (
    COLUMNS,
    ExploreError,
    explore,
    parse_sweep,
    plan_points,
    train_seconds,
)
from squeezenet.flags import explore_from_arguments
from squeezenet.train import TrainConfig, TrainResult, read_metrics

explore_module = importlib.import_module("squeezenet.explore")  # the module, even if sq.explore is the function

# A base small enough to train an epoch of digits in a few seconds: 4 Fire modules of 16-32 filters, 8x8 input.
TINY = ["--data", "digits", "--arch", "cifar", "--base", "base_e=16", "--base", "incr_e=16", "--base", "num_fires=4",
        "--batch-size", "256", "--image-size", "8", "--warmup-epochs", "0", "--no-progress"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Two shared cores: OpenMP threads that wait on each other make tiny steps ~10x slower under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_sweep(out: Path, *flags: str, epochs: int = 1) -> explore_module.ExploreResult:
    """The CLI's path (flags -> explore) in this process, so tests can count the points it trains."""
    from squeezenet.cli import make_parser

    parser, _ = make_parser()
    args = parser.parse_args(["explore", *TINY, "--epochs", str(epochs), "--out", str(out), *flags])
    folder, sweeps, config, base = explore_from_arguments(args)
    return explore(folder, sweeps, config, base, log=lambda _line: None)


class CountingTrain:
    """Wraps train.train inside explore to count the training sessions a sweep starts."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, config: TrainConfig, **options: Any) -> TrainResult:
        self.calls.append(config.arch)
        return self.real(config, **options)

    real = staticmethod(explore_module.train)


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


SR_AND_BYPASS = ("--sweep", "squeeze_ratio=0.125,0.5", "--bypass", "none,complex")


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, explore_module.ExploreResult]:
    """Three points trained once: SR 0.125 (the base, shared by both sweeps), SR 0.5, and complex bypass."""
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    before = torch.get_num_threads()  # set up before the per-test one_thread fixture: same setting, same reason
    torch.set_num_threads(1)
    try:
        return out, run_sweep(out, *SR_AND_BYPASS)
    finally:
        torch.set_num_threads(before)


# -- sweep syntax and planning ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["squeeze_ratio", "squeeze_ratio=", "=0.5", "ratio=0.5", "squeeze_ratio=0.5,,1",
                                  "squeeze_ratio=abc", "squeeze_ratio=nan", "num_fires=2.5", "bypass=sideways",
                                  "squeeze_ratio=0.5,0.5", "pct_3x3=0.5,1.5", "squeeze_ratio=0"])
def test_bad_sweep_gives_one_line_error(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explore", "--data", "digits", "--arch", "cifar", "--sweep", text, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("squeezenet explore: error: ") and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_a_sweep_named_twice_or_no_sweep_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twice = ["--sweep", "squeeze_ratio=0.25", "--sweep", "squeeze_ratio=0.5"]
    assert main(["explore", "--arch", "cifar", *twice, "--out", str(tmp_path)]) == 2
    assert "more than once" in capsys.readouterr().err
    assert main(["explore", "--arch", "cifar", "--out", str(tmp_path)]) == 2
    assert "nothing to explore" in capsys.readouterr().err


def test_the_paper_sweeps_share_their_base_point() -> None:
    """Figure 3a (5 squeeze ratios) + 3b (6 pct_3x3) + Section 6 (3 bypass modes) = 12 networks, not 14."""
    sweeps = [parse_sweep("squeeze_ratio=0.125,0.25,0.5,0.75,1.0"),
              parse_sweep("pct_3x3=0.01,0.125,0.25,0.5,0.75,0.99"), parse_sweep("bypass=none,simple,complex")]
    base = sq.get_spec("cifar")
    points = plan_points(base, sweeps)
    assert len(points) == 12
    shared = [p for p in points if len(p.sweeps) > 1]
    assert [(p.slug, p.sweeps) for p in shared] == [("sr0.125-pct0.5-none", ("squeeze_ratio", "pct_3x3", "bypass"))]
    assert shared[0].spec.replace(name=base.name) == base  # the base point is the base spec itself
    by_slug = {p.slug: p.spec for p in points}
    # One factor at a time: each point differs from the base in the swept field only.
    assert by_slug["sr0.5-pct0.5-none"].fires == sq.Metaparameters(squeeze_ratio=0.5)
    assert by_slug["sr0.125-pct0.01-none"].fire_modules()[0].expand3x3 == 1  # 1% of 128 rounds to 1 filter
    assert by_slug["sr0.125-pct0.5-complex"].bypass == "complex"
    # A squeeze as wide as the expand layers (SR 1.0) needs the opt-out from Strategy 2; nothing else gets it.
    assert [p.slug for p in points if p.spec.allow_wide_squeeze] == ["sr1-pct0.5-none"]
    sizes = [sq.summary(by_slug[f"sr{r}-pct0.5-none"], 32).total_params for r in ("0.125", "0.25", "0.5", "0.75", "1")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 5
    assert all(p.spec.name == f"explore/cifar/{p.slug}" for p in points)


def test_a_base_without_metaparameters_cannot_be_swept() -> None:
    explicit = sq.get_spec("cifar").replace(name="listed", fires=sq.get_spec("cifar").fire_modules())
    with pytest.raises(ExploreError, match="lists its Fire modules explicitly"):
        plan_points(explicit, [parse_sweep("squeeze_ratio=0.25")])


def test_train_seconds_adds_up_the_sessions_of_a_resumed_run() -> None:
    """Session 1 finished epochs 1-2 (elapsed 10, 20) and was killed; session 2 did epoch 3 (elapsed 11)."""
    records = [{"elapsed_seconds": 10.0, "epoch_seconds": 9.0}, {"elapsed_seconds": 20.0, "epoch_seconds": 9.5},
               {"elapsed_seconds": 11.0, "epoch_seconds": 10.0}]
    assert train_seconds(records) == pytest.approx(31.0)
    assert train_seconds(records[:2]) == pytest.approx(20.0)
    assert train_seconds([]) == 0.0


# -- a finished sweep ------------------------------------------------------------------------------------------------


def test_csv_has_one_row_per_point_with_measured_values(finished_sweep: tuple[Path, object]) -> None:
    out, result = finished_sweep
    with open(out / "results.csv", encoding="utf-8") as handle:
        assert handle.readline().strip() == ",".join(COLUMNS)
    rows = rows_of(out / "results.csv")
    assert [(r["point"], r["sweeps"]) for r in rows] == [
        ("sr0.125-pct0.5-none", "squeeze_ratio;bypass"), ("sr0.5-pct0.5-none", "squeeze_ratio"),
        ("sr0.125-pct0.5-complex", "bypass")]
    for row in rows:
        run = out / row["run"]
        model = sq.load(run / "last.safetensors")
        table = sq.summary(model, 8)
        metrics = read_metrics(run)
        assert row["status"] == "done" and row["epochs"] == row["epochs_done"] == "1"
        assert int(row["params"]) == table.total_params == sum(p.numel() for p in model.parameters())
        assert float(row["size_mb"]) == pytest.approx(table.total_params * 4 / 1e6, abs=1e-4)
        assert int(row["macs"]) == table.total_macs(8) and row["image_size"] == "8"
        assert float(row["top1"]) == pytest.approx(metrics[-1]["test_top1"], abs=1e-4)
        assert float(row["top5"]) == pytest.approx(metrics[-1]["test_top5"], abs=1e-4)  # 10 classes: top-5 kept
        assert float(row["train_seconds"]) == pytest.approx(metrics[-1]["elapsed_seconds"], abs=0.1)
        assert model.spec.num_classes == 10 and model.spec.bypass == row["bypass"]
        assert float(row["squeeze_ratio"]) == model.spec.fires.squeeze_ratio
    by_point = {r["point"]: r for r in rows}
    # The complex bypass adds 1x1 convs around fire2 and fire4 (in != out channels): 64*16+16 and 16*32+32.
    extra = int(by_point["sr0.125-pct0.5-complex"]["params"]) - int(by_point["sr0.125-pct0.5-none"]["params"])
    assert extra == (64 * 16 + 16) + (16 * 32 + 32)
    assert int(by_point["sr0.5-pct0.5-none"]["params"]) > int(by_point["sr0.125-pct0.5-none"]["params"])
    assert [r["point"] for r in result.rows] == [r["point"] for r in rows] and result.trained == 3


def test_plots_are_written_for_each_sweep(finished_sweep: tuple[Path, object]) -> None:
    out, result = finished_sweep
    assert sorted(p.name for p in result.plots) == ["bypass.png", "squeeze_ratio.png"]
    for plot in result.plots:
        data = plot.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert not (out / "pct_3x3.png").exists()  # no pct_3x3 sweep was asked for


def test_rerun_trains_nothing_and_keeps_every_file(finished_sweep: tuple[Path, object], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "copy"
    shutil.copytree(finished_sweep[0], out, copy_function=shutil.copy2)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "points").rglob("*") if p.is_file()}
    counter = CountingTrain()
    monkeypatch.setattr(explore_module, "train", counter)
    result = run_sweep(out, *SR_AND_BYPASS)
    assert counter.calls == [] and result.trained == 0 and result.pending == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert rows_of(out / "results.csv") == rows_of(finished_sweep[0] / "results.csv")


def test_a_new_sweep_reuses_the_shared_point(finished_sweep: tuple[Path, object], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "copy"
    shutil.copytree(finished_sweep[0], out)
    counter = CountingTrain()
    monkeypatch.setattr(explore_module, "train", counter)
    result = run_sweep(out, *SR_AND_BYPASS, "--sweep", "pct_3x3=0.25,0.5")
    assert counter.calls == ["explore/cifar/sr0.125-pct0.25-none"]  # pct 0.5 is the base, already trained
    rows = {r["point"]: r for r in rows_of(out / "results.csv")}
    assert rows["sr0.125-pct0.5-none"]["sweeps"] == "squeeze_ratio;pct_3x3;bypass"
    assert len(rows) == 4 and (out / "pct_3x3.png").read_bytes().startswith(PNG_MAGIC)
    assert result.trained == 1


def test_rerun_with_other_settings_is_refused(finished_sweep: tuple[Path, object], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "copy"
    shutil.copytree(finished_sweep[0], out)
    code = main(["explore", *TINY, "--epochs", "1", "--lr", "0.01", "--out", str(out), *SR_AND_BYPASS])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--lr" in err and "sweep.json" in err
    assert rows_of(out / "results.csv") == rows_of(finished_sweep[0] / "results.csv")


def test_a_diverging_point_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sweep"
    flags = ("--sweep", "squeeze_ratio=0.125,0.25", "--lr", "10000")  # the loss is not finite by the second step
    result = run_sweep(out, *flags)
    rows = rows_of(out / "results.csv")
    assert [(r["point"], r["status"], r["epochs_done"]) for r in rows] == [
        ("sr0.125-pct0.5-none", "failed", "0"), ("sr0.25-pct0.5-none", "failed", "0")]
    for row in rows:
        status = json.loads((out / row["run"] / "point.json").read_text())
        assert "loss became" in status["error"]
    assert result.plots == [] and not list(out.glob("*.png"))
    counter = CountingTrain()
    monkeypatch.setattr(explore_module, "train", counter)
    run_sweep(out, *flags)
    assert counter.calls == []  # a failure is a result: rerunning does not retry it


def test_settings_are_locked_only_once_training_started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    wrong = ["explore", *TINY, "--epochs", "1", "--sweep", "squeeze_ratio=0.25", "--out", str(out)]
    wrong[wrong.index("digits")] = str(tmp_path / "missing")
    assert main(wrong) == 2
    assert "missing" in capsys.readouterr().err and (out / "sweep.json").is_file()
    run_sweep(out, "--sweep", "squeeze_ratio=0.25")  # the corrected command is accepted, not refused
    assert json.loads((out / "sweep.json").read_text())["train"]["data"] == "digits"


# -- a killed sweep --------------------------------------------------------------------------------------------------


def test_a_sigkilled_sweep_continues_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill -9 after point 2's first epoch: the rerun skips point 1 and continues point 2 from its checkpoint."""
    out = tmp_path / "sweep"
    flags = ["--sweep", "squeeze_ratio=0.125,0.25", "--epochs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    second = out / "points" / "sr0.25-pct0.5-none"
    process = subprocess.Popen([sys.executable, "-m", "squeezenet", "explore", *TINY, *flags, "--out", str(out)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (second / "state.pt").is_file():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the sweep did not reach point 2 in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert json.loads((second / "point.json").read_text())["status"] == "training"
    first_weights = out / "points" / "sr0.125-pct0.5-none" / "last.safetensors"
    first_stamp = first_weights.stat().st_mtime_ns
    first_epoch_of_second = (second / "metrics.jsonl").read_text().splitlines()[0]

    counter = CountingTrain()
    monkeypatch.setattr(explore_module, "train", counter)
    result = run_sweep(out, *flags, epochs=2)
    assert counter.calls == ["explore/cifar/sr0.25-pct0.5-none"]
    assert first_weights.stat().st_mtime_ns == first_stamp
    lines = (second / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] == first_epoch_of_second  # epoch 1 was kept, not trained again
    assert json.loads((second / "point.json").read_text())["sessions"] == 2
    rows = rows_of(out / "results.csv")
    assert [(r["point"], r["status"], r["epochs_done"]) for r in rows] == [
        ("sr0.125-pct0.5-none", "done", "2"), ("sr0.25-pct0.5-none", "done", "2")]
    assert result.pending == 0


# -- bypass variants through weights files, ONNX and compression -----------------------------------------------------


@pytest.fixture(scope="module")
def digits_batch() -> torch.Tensor:
    """Real images: eight of scikit-learn's digit scans as a normalised 32x32 RGB batch."""
    from squeezenet.data import load_datasets

    data = load_datasets("digits", 32)
    images, _ = data.test.batch([(i, 0) for i in range(8)])
    return data.normalize(images)


def trained_looking(bypass: str) -> sq.SqueezeNet:
    """A cifar-preset model whose shortcuts matter: random weights with non-zero biases everywhere."""
    torch.manual_seed(0)
    model = sq.build("cifar", bypass=bypass)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                module.bias.normal_(0.0, 0.05)
    return model.eval()


@pytest.mark.parametrize("bypass", ["none", "simple", "complex"])
def test_bypass_models_round_trip_through_safetensors(bypass: str, tmp_path: Path,
                                                      digits_batch: torch.Tensor) -> None:
    model = trained_looking(bypass)
    loaded = sq.load(sq.save(model, tmp_path / f"{bypass}.safetensors"))
    assert loaded.spec == model.spec and loaded.spec.bypass == bypass
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    with torch.inference_mode():
        assert torch.equal(loaded(digits_batch), model(digits_batch))
    shortcut_weights = {k for k in model.state_dict() if ".bypass." in k}
    assert len(shortcut_weights) == (8 if bypass == "complex" else 0)  # weight + bias of fire2, 4, 6, 8


def test_complex_bypass_models_export_to_onnx(tmp_path: Path, digits_batch: torch.Tensor) -> None:
    """Complex covers both shortcut kinds (identity adds and 1x1 convs); each export takes seconds."""
    import onnx

    from squeezenet.deploy import export_onnx, onnxruntime_backend

    bypass = "complex"
    model = trained_looking(bypass)
    path = export_onnx(model, tmp_path / f"{bypass}.onnx", input_size=32)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("Conv") == 2 + 3 * 8 + 4  # conv1, conv10, three per Fire module, 1x1 shortcuts at 2,4,6,8
    assert ops.count("Add") == 8  # one per shortcut: identities at fire3,5,7,9, convs at fire2,4,6,8
    with torch.inference_mode():
        expected = model(digits_batch).numpy()
    got = onnxruntime_backend(path)(digits_batch.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bypass", ["simple", "complex"])
def test_bypass_models_deep_compress(bypass: str, tmp_path: Path, digits_batch: torch.Tensor) -> None:
    """The complex bypass's 1x1 convs are layers like any other: pruned, shared, stored, decoded."""
    from squeezenet.compress import compress

    model = trained_looking(bypass)
    result = compress(model, tmp_path / f"{bypass}.sqz", prune=0.5, bits=6)
    loaded = sq.load(tmp_path / f"{bypass}.sqz")
    assert loaded.spec == model.spec
    shortcuts = [name for name in loaded.state_dict() if name.endswith(".bypass.weight")]
    assert len(shortcuts) == (4 if bypass == "complex" else 0)
    for name, weight in loaded.state_dict().items():
        if name.endswith(".weight") and weight.dim() == 4:  # every conv: half pruned, 6-bit shared values
            assert (weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01), name
            assert weight.unique().numel() <= 2**6 + 1, name
    with torch.inference_mode():
        assert torch.equal(loaded(digits_batch), result.model(digits_batch))


def test_an_explore_point_resumes_in_a_fresh_process_and_presets_stay_as_they_were(tmp_path: Path) -> None:
    presets = dict(sq.PRESETS)
    result = run_sweep(tmp_path / "sweep", "--sweep", "squeeze_ratio=0.25")
    assert presets == sq.PRESETS  # explore hands the spec to train; it registers nothing
    point = tmp_path / "sweep" / result.rows[0]["run"]
    resumed = subprocess.run([sys.executable, "-m", "squeezenet", "train", "--resume", str(point), "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "done: 1 epochs" in resumed.stdout
