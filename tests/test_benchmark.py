"""The inference benchmark: rows, ratios, skips with reasons, table and JSON (tiny repetition counts only)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import squeezenet as sq
from squeezenet import benchmark
from squeezenet.benchmark import BASELINE, REFERENCE, Row, run_benchmark
from squeezenet.cli import main
from squeezenet.errors import SqueezeNetError
from squeezenet.machine import MachineCheck, matmul_gflops

from .conftest import shared_path

SMOKE = {"warmup": 1, "rounds": 2, "calls": (2, 1), "batches": (1, 4), "input_size": 96}


@pytest.fixture(scope="module")
def model() -> sq.SqueezeNet:
    model = sq.build("1_1")
    model.meta = model.meta.replace(preprocessing=sq.get_preprocessing("caffe"))
    return model


def test_rows_ratios_and_spread(model: sq.SqueezeNet) -> None:
    only = [BASELINE, "pytorch", "onnxruntime-fp32", "onnxruntime-int8"]
    report = run_benchmark(model, only=only, **SMOKE)
    data = report.to_dict()
    assert [row["name"] for row in data["rows"]] == only
    assert data["warmup_calls"] == 1 and data["rounds"] == 2 and data["timed_calls_per_round"] == {"1": 2, "4": 1}
    ran = {row["name"]: row for row in data["rows"] if "skipped" not in row}
    assert set(ran) == {BASELINE, "pytorch", "onnxruntime-fp32"}
    skipped = next(row for row in data["rows"] if row["name"] == "onnxruntime-int8")
    assert "--calib" in skipped["skipped"]  # int8 needs real calibration images
    for row in ran.values():
        assert row["b1_timed_calls"] == 4 and row["b4_timed_calls"] == 2
        assert 0 < row["p10_ms"] <= row["p50_ms"] <= row["p90_ms"]
        assert row["b1_img_per_s"] > 0 and row["b4_img_per_s"] > 0
        b4_mean_ms = 4 * 1e3 / row["b4_img_per_s"]  # throughput and per-call times come from the same calls
        low, _, high = row["b4_call_ms_p10_p50_p90"]
        assert low * 0.999 <= b4_mean_ms <= high * 1.001
    assert ran[BASELINE]["b1_vs_torchvision_eager"] == 1.0
    tv, ours = report.rows[0], report.rows[1]
    assert ran["pytorch"]["b1_vs_torchvision_eager"] == pytest.approx(ours.img_per_s(1) / tv.img_per_s(1), rel=1e-2)
    assert ran["pytorch"]["b1_vs_openvino_default"] is None  # OpenVINO's default row was not run
    assert data["machine"]["logical_cpus"] and "torch" in data["machine"]
    table = str(report)
    assert "onnxruntime-int8" in table and "skipped: int8 needs calibration images" in table
    fastest = data["fastest"]
    assert fastest["name"] in ran and fastest["vs_openvino_default"] is None  # no OpenVINO row to compare with
    assert fastest["vs_torchvision_eager"] == ran[fastest["name"]]["b1_vs_torchvision_eager"]
    last = table.splitlines()[-1]
    assert last.startswith(f"fastest at batch 1: {fastest['name']} = ") and last.endswith("x torchvision-eager")
    assert "goal" not in table and "goal" not in data["fastest"]  # measured ratios only, no verdict
    check = data["machine_check"]  # the machine measured at both ends of the run
    assert check["matmul_gflops_before"] > 0 and check["matmul_gflops_after"] > 0 and check["cores"] >= 1
    assert data["busy"] == check["busy"] and ("warning: " in table) == (check["busy"] is not None)


def test_openvino_rows_and_the_fastest_line(model: sq.SqueezeNet) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    calib = shared_path("data/imagenet-samples")
    report = run_benchmark(model, only=[REFERENCE, "openvino-f32", "openvino-int8"], calib_dir=calib,
                           calib_images=4, **SMOKE)
    rows = {row["name"]: row for row in report.to_dict()["rows"]}
    assert all("skipped" not in row for row in rows.values()), rows
    assert rows[REFERENCE]["b1_vs_openvino_default"] == 1.0
    assert rows["openvino-f32"]["details"]["inference_precision_hint"] == "f32"
    default_precision = rows[REFERENCE]["details"]["inference_precision_hint"]
    assert default_precision in ("f32", "bf16")
    fastest = report.to_dict()["fastest"]
    assert fastest["name"] in rows
    assert fastest["vs_openvino_default"] == rows[fastest["name"]]["b1_vs_openvino_default"]
    assert fastest["vs_torchvision_eager"] is None  # the baseline row was not run
    last = str(report).splitlines()[-1]
    assert last.startswith(f"fastest at batch 1: {fastest['name']} = ") and last.endswith("x openvino-default")


def test_missing_openvino_is_a_skip_with_the_reason(model: sq.SqueezeNet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmark, "available", lambda runtime: runtime != "openvino")
    report = run_benchmark(model, only=[REFERENCE, "openvino-int8", "pytorch"], **SMOKE)
    rows = {row.name: row for row in report.rows}
    assert rows[REFERENCE].skipped == "openvino is not installed (pip install 'squeezenet[openvino]')"
    assert rows["openvino-int8"].skipped and not rows["pytorch"].skipped
    assert report.to_dict()["fastest"]["name"] == "pytorch"


def test_bad_arguments(model: sq.SqueezeNet) -> None:
    with pytest.raises(SqueezeNetError, match="unknown backend"):
        run_benchmark(model, only=["tensorflow"])
    with pytest.raises(SqueezeNetError, match="one positive call count per batch size"):
        run_benchmark(model, batches=(1, 32), calls=(5,))
    with pytest.raises(SqueezeNetError, match="rounds >= 1"):
        run_benchmark(model, rounds=0)


def test_rounds_repeat_until_the_medians_are_stable(model: sq.SqueezeNet) -> None:
    started = time.perf_counter()
    report = run_benchmark(model, only=["pytorch"], warmup=1, rounds=1, calls=(3,), batches=(1,), input_size=64,
                           max_seconds=4.0)
    taken = time.perf_counter() - started
    assert report.rounds >= 2  # stability needs two medians to compare
    assert report.stable or taken >= 4.0  # it stopped because the median held, or at the time limit
    assert report.to_dict()["medians_stable"] == report.stable
    assert len(report.rows[0].seconds[1]) == 3 * report.rounds


def test_the_machine_check_says_when_figures_are_unreliable() -> None:
    quiet = MachineCheck(cores=2, load_before=0.1, load_after=2.3, gflops_before=70.0, gflops_after=66.0)
    assert quiet.busy is None  # the run's own two threads at the end, 6% slower: quiet
    loaded = MachineCheck(cores=2, load_before=3.4, load_after=3.1, gflops_before=70.0, gflops_after=69.0)
    assert "busy at the start (load average 3.4 on 2 cores)" in loaded.busy
    another_job = MachineCheck(cores=2, load_before=0.2, load_after=3.5, gflops_before=70.0, gflops_after=70.0)
    assert "busy at the end" in another_job.busy
    slowed = MachineCheck(cores=2, load_before=0.0, load_after=1.0, gflops_before=70.0, gflops_after=40.0)
    assert "70 -> 40 GFLOP/s, -43%" in slowed.busy
    assert slowed.to_dict()["busy"] == slowed.busy
    assert matmul_gflops(seconds=0.05) > 0.5  # a real measurement: any CPU does more than 0.5 GFLOP/s


def test_row_statistics() -> None:
    row = Row("x", "", seconds={1: [0.010, 0.020, 0.030, 0.040], 8: [0.1, 0.1]})
    assert row.img_per_s(1) == pytest.approx(4 / 0.1)
    assert row.img_per_s(8) == pytest.approx(80.0)
    assert row.percentile_ms(1, 50) == pytest.approx(25.0)
    assert row.img_per_s(32) is None


def test_cli_benchmark_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["benchmark", "--arch", "1_0", "--batch", "1,2", "--input-size", "96", "--warmup", "0",
                 "--rounds", "1", "--max-seconds", "0", "--calls", "1,1", "--backends", "pytorch,onnxruntime-int8",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["arch"] == "1_0" and data["batches"] == [1, 2]
    assert [row["name"] for row in data["rows"]] == ["pytorch", "onnxruntime-int8"]
    assert "p50_ms" in data["rows"][0] and "b2_img_per_s" in data["rows"][0]


def test_cli_benchmark_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["benchmark", "--backends", "nope", "--rounds", "1"])
    assert code == 2 and "unknown backend(s) nope" in capsys.readouterr().err
    missing = tmp_path / "missing.caffemodel"
    code = main(["benchmark", "--weights", str(missing), "--backends", "pytorch"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.caffemodel" in err and err.count("\n") == 1
