"""Exporters, runtimes and plotting are pip extras: a missing one is one line naming it, and no import pulls them in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import squeezenet as sq
from squeezenet.extras import MissingExtraError, require

from .test_cli import run as run_cli

HEAVY = ("onnx", "onnxruntime", "onnxscript", "openvino", "nncf", "matplotlib", "sklearn", "scipy")


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import name`` fail as if the package were not installed (None in sys.modules halts the import)."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = sq.build("1_1", num_classes=4)
    model.meta = model.meta.replace(preprocessing=sq.get_preprocessing("caffe"))
    return sq.save(model, tmp_path_factory.mktemp("weights") / "small.safetensors")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def test_require_returns_the_module_or_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require("json", "anything") is json
    pytest.importorskip("onnxruntime.quantization")  # imported already: the package must still be looked at
    _hide(monkeypatch, "onnxruntime")
    with pytest.raises(MissingExtraError, match=r"^ONNX int8 quantization needs the onnx extra \(.+\): "
                                                r"pip install 'squeezenet\[onnx\]'$"):
        require("onnxruntime.quantization", "ONNX int8 quantization")


@pytest.mark.parametrize(("hidden", "command", "expected"), [
    ("onnx", "export", "squeezenet export: error: ONNX export needs the onnx extra"),
    ("openvino", "export-openvino", "squeezenet export: error: OpenVINO export needs the openvino extra"),
    ("onnxruntime", "predict", "squeezenet predict: error: the onnxruntime backend needs the onnx extra"),
    ("openvino", "evaluate", "squeezenet evaluate: error: the openvino backend needs the openvino extra"),
    ("matplotlib", "plot", "squeezenet plot: error: plotting training curves needs the plot extra"),
])
def test_a_missing_extra_is_one_line_through_the_cli(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      weights: Path, image: Path, hidden: str, command: str,
                                                      expected: str) -> None:
    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / image.name).symlink_to(image)
    argv = {
        "export": ["export", "--weights", str(weights), "--out", str(tmp_path / "x.onnx")],
        "export-openvino": ["export", "--weights", str(weights), "--format", "openvino",
                            "--out", str(tmp_path / "x.xml")],
        "predict": ["predict", str(image), "--weights", str(weights), "--backend", "onnxruntime"],
        "evaluate": ["evaluate", "--data", str(tmp_path / "data"), "--weights", str(weights),
                     "--backend", "openvino"],
        "plot": ["plot", str(tmp_path)],
    }[command]
    _hide(monkeypatch, hidden)
    code, out, err = run_cli(capsys, *argv)
    extra = expected.split(" needs the ")[1].split()[0]
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith(expected), err
    assert err.rstrip().endswith(f"pip install 'squeezenet[{extra}]'"), err
    assert not list(tmp_path.glob("x.*")) and not (tmp_path / "cache" / "exports").exists()


def test_importing_the_package_and_building_the_cli_loads_no_optional_toolkit() -> None:
    code = ("import sys, squeezenet, squeezenet.deploy, squeezenet.evaluate, squeezenet.plots\n"
            "from squeezenet.cli import make_parser\n"
            "make_parser()\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
