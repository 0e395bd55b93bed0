"""The by-hand benchmark scripts still run: a small smoke run of each part that CI can afford.

The full runs take minutes to hours and are not part of the suite, so a change elsewhere (a stricter data check, a
line printed on stdout) can break them unnoticed; these runs catch that. They assert what the scripts report, not
how fast anything was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import shared_path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(*arguments: str, timeout: float = 240) -> list[str]:
    finished = subprocess.run([sys.executable, *arguments], cwd=BENCHMARKS, capture_output=True, text=True,
                              timeout=timeout)
    assert finished.returncode == 0, finished.stderr[-2000:]
    return finished.stdout.splitlines()


def test_training_throughput_smoke_run_reports_ratios_and_the_machine_check() -> None:
    shared_path("data/imagenet-samples")  # one image a class: no validation split can be made of it
    lines = run_script("train_bench.py", "throughput", "--batch", "16", "--epochs", "2", "--subset", "32",
                       "--baseline-steps", "1", "--baseline-batches", "8", "--variants", "channels_last")
    report = json.loads(next(line for line in lines if line.startswith('{"baseline_img_s"')))
    assert report["best"] == "channels_last"
    assert report["ours_img_s"]["channels_last"] > 0 and report["ratio_to_fastest_baseline"] > 0
    assert report["baseline_freed_memory_kept_img_s"] > 0  # the child run's JSON was read
    check = json.loads(lines[-1])["machine_check"]
    assert check["cores"] >= 1 and check["matmul_gflops_before"] > 0 and check["matmul_gflops_after"] > 0


def test_int8_profile_smoke_run_lists_the_convolutions_of_each_runtime() -> None:
    shared_path("weights/caffe_v1.1/squeezenet_v1.1.caffemodel")
    shared_path("data/imagenet-samples")
    text = "\n".join(run_script("int8_profile.py", "--calls", "3", "--input-size", "96"))
    for title in ("onnxruntime fp32", "onnxruntime int8 (QDQ)", "openvino default", "openvino int8 (NNCF)"):
        assert f"\n{title}: " in text
    assert "QLinearConv" in text and "Convolution [" in text


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """finetune_bench.py's cache, shared so the CIFAR-10 archive is unpacked once for the smoke runs."""
    shared_path("data/cifar10-jpeg.tar.gz")
    shared_path("weights/caffe_v1.1/squeezenet_v1.1.caffemodel")
    return tmp_path_factory.mktemp("finetune-bench")


def test_stem_probe_smoke_run_reports_one_probe_per_size_and_stride(bench_cache: Path) -> None:
    lines = run_script("finetune_bench.py", "stem", "--per-class", "4", "--test-per-class", "3", "--stems",
                       "64:1,32:2", "--cache", str(bench_cache))
    rows = json.loads(next(line for line in lines if line.startswith('{"stem"')))["stem"]
    assert [(row["size"], row["conv1_stride"]) for row in rows] == [(64, 1), (32, 2)]
    assert all(abs(row["probe_top1"] * 30 - round(row["probe_top1"] * 30)) < 0.01 for row in rows)  # k of 30 images


def test_step_speed_smoke_run_times_the_frozen_layers_against_none() -> None:
    lines = run_script("bf16_step.py", "--sizes", "32", "--batch", "4", "--steps", "1", "--freeze", "conv1,fire3")
    frozen = [line for line in lines if "frozen through" in line]
    assert [line.split("frozen through ")[1].split(":")[0] for line in frozen] == ["conv1", "fire3"]
    assert all(line.endswith("x none frozen)") for line in frozen)
    refused = subprocess.run([sys.executable, "bf16_step.py", "--freeze", "fire12"], cwd=BENCHMARKS,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--freeze fire12: 1_1 has no such layer" in refused.stderr


def test_loop_speed_smoke_run_reports_each_size_and_frozen_layers(bench_cache: Path, tmp_path: Path) -> None:
    lines = run_script("finetune_bench.py", "speed", "--speeds", "32:none,32:fire3", "--processes", "1",
                       "--batch-size", "8", "--per-class", "4", "--test-per-class", "3", "--cache", str(bench_cache),
                       "--out", str(tmp_path / "runs"))
    rows = json.loads(next(line for line in lines if line.startswith('{"speed"')))["speed"]
    assert [(row["size"], row["frozen"]) for row in rows] == [(32, "none"), (32, "fire3")]
    assert all(row["images_per_s"] > 0 and row["epochs"] == 2 for row in rows)
    assert any(line.startswith("32px, fire3 frozen: ") and "x the first row)" in line for line in lines)
