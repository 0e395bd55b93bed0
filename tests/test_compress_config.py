"""CompressConfig: every setting checked in one place, init="auto" resolved by what is supplied, and the CLI
as a mapping of flags onto it (one load of the weights, the same bytes as the API)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import squeezenet as sq
from squeezenet.compress import CompressionError
from squeezenet.compress.config import CompressConfig

from .conftest import run_cli, tiny_model


def _images(folder: Path, count: int = 6) -> Path:
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (count, 40, 40, 3), dtype=np.uint8)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{index}.png")
    return folder


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("bits", 9), ("bits", True), ("bits", {"conv1": 0}), ("bits_per_layer", "conv1"), ("bits_per_layer", {"x": 12}),
    ("prune", 1.5), ("prune", "half"), ("prune", {"fire*": 0}), ("init", "forgy"), ("calib", 3),
    ("calib_images", 0), ("fisher", "yes"), ("bias_correction", torch.zeros(4, 3, 8, 8)), ("rate_cost", -1.0),
    ("layout", "diagonal"), ("gap_bits", 9), ("gap_bits", "4"), ("codebook_dtype", "float64"),
    ("raw_dtype", "int8"), ("epochs", 0), ("lr", 0.0), ("finetune_data", 1), ("eval_data", ["a"]),
    ("metadata", {"a": 1}), ("arch", 10), ("huffman", 1),
])
def test_a_bad_setting_is_one_line_that_names_its_field(field: str, value: object) -> None:
    with pytest.raises(CompressionError) as caught:
        CompressConfig(**{field: value})
    message = str(caught.value)
    assert message.startswith(field) and "\n" not in message and len(message) < 200, message


def test_settings_change_by_name_and_an_unknown_name_is_refused() -> None:
    config = CompressConfig().replace(bits=5, huffman=True)
    assert (config.bits, config.huffman, config.init) == (5, True, "auto")
    with pytest.raises(CompressionError, match="unknown compression setting 'bitz'"):
        config.replace(bitz=4)
    with pytest.raises(CompressionError, match="unknown compression setting"):
        sq.compress(tiny_model(), bitz=4)
    assert CompressConfig(bits=4, bits_per_layer="conv10=3").layer_bits() == {"*": 4, "conv10": 3}
    assert CompressConfig(bits={"*": 4, "conv1": 8}, bits_per_layer={"conv10": 3}).layer_bits() == {
        "*": 4, "conv1": 8, "conv10": 3}


def test_layer_patterns_are_checked_against_the_model_before_any_slow_step() -> None:
    calls: list[str] = []
    with pytest.raises(CompressionError, match="matches no layer"):
        sq.compress(tiny_model(), bits_per_layer={"fire42.*": 3}, evaluate=lambda model: calls.append("scored"))
    assert calls == []  # refused before the accuracy "before" was measured


def test_ready_made_inputs_and_config_names_for_them_do_not_mix(tmp_path: Path) -> None:
    images = torch.randn(2, 3, 32, 32)
    with pytest.raises(CompressionError, match="calib and calibration= both given"):
        sq.compress(tiny_model(), calib=tmp_path, calibration=images)
    with pytest.raises(CompressionError, match="eval_data and evaluate= both given"):
        sq.compress(tiny_model(), eval_data="digits", evaluate=lambda model: {})


# -- init="auto" ---------------------------------------------------------------------------


def test_auto_init_is_the_measured_best_for_what_is_supplied() -> None:
    assert CompressConfig().resolved_init(finetuning=False) == "kmeans++"  # closest fit, no fine-tuning
    assert CompressConfig(calib="images").resolved_init(finetuning=False) == "kmeans++"
    assert CompressConfig().resolved_init(finetuning=True) == "linear"  # the paper's, before fine-tuning
    assert CompressConfig(init="density").resolved_init(finetuning=True) == "density"  # as given


def test_the_report_says_which_start_ran_and_why(tmp_path: Path) -> None:
    model = tiny_model()
    plain = sq.compress(model, bits=3)
    assert plain.report.settings["init"] == "kmeans++" and plain.report.settings["init_auto"] is True
    assert "k-means start kmeans++ (auto: the closest fit without fine-tuning)" in str(plain.report)
    tuned = sq.compress(model, bits=3, finetune=lambda net, stage: None)
    assert tuned.report.settings["init"] == "linear" and tuned.report.settings["finetuned"] is True
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    calibrated = sq.compress(model, bits=3, calibration=images)
    settings = calibrated.report.settings
    assert settings["init"] == "kmeans++" and settings["importance"] is True and settings["bias_correction"] == 4
    assert "Fisher-weighted, bias-corrected on 4 images" in str(calibrated.report)
    given = sq.compress(model, bits=3, init="linear", calibration=images, bias_correction=False)
    assert given.report.settings["init_auto"] is False and given.report.settings["bias_correction"] == 0


# -- the command -------------------------------------------------------------------------


def test_cli_loads_the_weights_once_and_says_what_ran(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    weights, images = tmp_path / "tiny.safetensors", _images(tmp_path / "images")
    sq.save(tiny_model(), weights)
    original = sq.weights.io.load
    loaded: list[Path] = []

    def counting(path: object, *args: object, **kwargs: object) -> sq.SqueezeNet:
        loaded.append(Path(str(path)))
        return original(path, *args, **kwargs)

    for name, module in list(sys.modules.items()):  # every name the loader is bound to in the package
        if name.startswith("squeezenet") and getattr(module, "load", None) is original:
            monkeypatch.setattr(module, "load", counting)
    code, stdout, err = run_cli(capsys, "compress", "--weights", str(weights), "--out", str(tmp_path / "c.sqz"),
                             "--bits", "3", "--calib", str(images), "--calib-images", "4", "--json")
    assert code == 0, err
    assert loaded.count(weights) == 1  # Fisher information and bias correction ran on the one model
    settings = json.loads(stdout)["settings"]
    assert settings["init"] == "kmeans++" and settings["init_auto"] is True
    assert settings["importance"] is True and settings["bias_correction"] == 4 and "hint" not in err
    code, stdout, err = run_cli(capsys, "compress", "--weights", str(weights), "--out", str(tmp_path / "d.sqz"),
                             "--bits", "3")
    assert code == 0 and "k-means start kmeans++ (auto" in stdout
    assert err.count("\n") == 1 and "hint" in err and "--calib DIR" in err  # a hint, not an error


def test_cli_and_api_write_the_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights, images = tmp_path / "tiny.safetensors", _images(tmp_path / "images")
    sq.save(tiny_model(), weights)
    code, _, err = run_cli(capsys, "compress", "--weights", str(weights), "--out", str(tmp_path / "cli.sqz"),
                        "--prune", "0.5", "--bits", "4", "--bits-per-layer", "conv10=3", "--huffman",
                        "--gap-bits", "auto", "--codebook", "float16", "--calib", str(images), "--calib-images", "4",
                        "--rate-cost", "1e-3")
    assert code == 0, err
    config = CompressConfig(prune=0.5, bits=4, bits_per_layer={"conv10": 3}, huffman=True, gap_bits="auto",
                            codebook_dtype="float16", calib=str(images), calib_images=4, rate_cost=1e-3)
    result = sq.compress(str(weights), tmp_path / "api.sqz", config)
    assert (tmp_path / "cli.sqz").read_bytes() == (tmp_path / "api.sqz").read_bytes() == result.data
