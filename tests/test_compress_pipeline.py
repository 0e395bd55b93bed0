"""Deep Compression's stages on real behaviour: pruning, k-means sharing, fine-tuning that keeps both, the
whole pipeline (Python and CLI), and the paper's file re-encoded at 6 bits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import squeezenet as sq
from squeezenet.compress import CompressionError
from squeezenet.compress.prune import magnitude_masks, parse_prune, prune, resolve_densities
from squeezenet.compress.quantize import MaskedWeight, attach, detach, kmeans_1d, share_weights
from squeezenet.weights.names import convolutions

from .conftest import run_cli, shared_path
from .test_compress_sqz import small_model

DC_FILE = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"


# -- pruning -------------------------------------------------------------------------


def test_magnitude_pruning_keeps_exactly_the_largest_weights() -> None:
    model = small_model()
    before = {name: conv.weight.detach().clone() for name, conv in convolutions(model).items()}
    masks = prune(model, 0.25)
    for name, conv in convolutions(model).items():
        weight, original = conv.weight.detach(), before[name].abs().flatten()
        kept = int(masks[name].sum())
        assert kept == int(np.floor(0.25 * original.numel() + 0.5))
        assert torch.equal(weight != 0, masks[name])
        threshold = original.sort(descending=True).values[kept - 1]
        assert (original[masks[name].flatten()] >= threshold).all()
        assert (original[~masks[name].flatten()] <= threshold).all()


def test_zeros_are_never_brought_back() -> None:
    model = small_model()
    conv = model.features.conv1
    with torch.no_grad():
        conv.weight[:, :, 0, 0] = 0
    masks = magnitude_masks(model, resolve_densities(model, "none"))
    assert not masks["conv1"][:, :, 0, 0].any() and int(masks["conv1"].sum()) == int((conv.weight != 0).sum())


def test_paper_preset_gives_table_1_densities_on_v10() -> None:
    densities = resolve_densities(sq.build("1_0"), "paper")
    assert densities["conv1"] == 1.0 and densities["conv10"] == 0.2
    assert densities["fire2.expand3x3"] == 0.33 and densities["fire9.expand3x3"] == 0.3
    assert densities["fire7.squeeze"] == 0.5 and densities["fire6.expand1x1"] == 0.5
    assert len(densities) == 26
    assert sum(density < 1.0 for density in densities.values()) == 13  # 8 expand3x3, 4 half layers, conv10


def test_paper_preset_matches_the_released_files_densities() -> None:
    model = sq.load(shared_path(DC_FILE))
    targets = resolve_densities(model, "paper")
    for name, conv in convolutions(model).items():
        measured = float((conv.weight != 0).float().mean())
        assert abs(measured - targets[name]) < 0.035, name  # the file keeps a few more or fewer


@pytest.mark.parametrize(("setting", "message"), [
    (1.5, "density must be a number in"), ("half", "unknown pruning preset"), ({"fire42.*": 0.5}, "matches no layer"),
])
def test_bad_pruning_settings_are_refused(setting: object, message: str) -> None:
    with pytest.raises(CompressionError, match=message):
        resolve_densities(small_model(), setting)  # type: ignore[arg-type]


def test_prune_argument_parsing() -> None:
    assert parse_prune("paper") == "paper" and parse_prune("0.4") == 0.4
    with pytest.raises(CompressionError, match="--prune must be"):
        parse_prune("most")


# -- weight sharing ------------------------------------------------------------------


def test_linear_kmeans_is_deterministic_sorted_and_exact_when_few_values() -> None:
    values = np.random.default_rng(0).standard_t(3, 5000)
    centres, labels = kmeans_1d(values, 15)
    again, labels_again = kmeans_1d(values, 15)
    assert np.array_equal(centres, again) and np.array_equal(labels, labels_again)
    assert len(centres) == 15 and (np.diff(centres) > 0).all()
    for k in range(15):  # each centre is the mean of its members (a k-means fixed point)
        assert centres[k] == pytest.approx(values[labels == k].mean(), rel=1e-4)
    few = np.array([0.5, -1.0, 0.5, 2.0])
    centres, labels = kmeans_1d(few, 15)
    assert centres.tolist() == [-1.0, 0.5, 2.0] and centres[labels].tolist() == few.tolist()


def test_linear_initialisation_keeps_the_large_weights() -> None:
    values = np.concatenate([np.random.default_rng(1).normal(0, 0.01, 10_000), [0.5, -0.5]])
    centres, _ = kmeans_1d(values, 7)
    assert centres.max() == pytest.approx(0.5) and centres.min() == pytest.approx(-0.5)


def test_kmeans_plus_plus_fits_a_heavy_tailed_layer_more_closely_and_density_crowds_the_middle() -> None:
    values = np.random.default_rng(2).standard_t(3, 20_000) * 0.01
    fits = {init: kmeans_1d(values, 15, init) for init in ("linear", "density", "kmeans++")}
    errors = {init: float(((centres[labels] - values) ** 2).sum()) for init, (centres, labels) in fits.items()}
    assert all(len(centres) <= 15 and (np.diff(centres) > 0).all() for centres, _ in fits.values())
    assert errors["kmeans++"] < min(errors["linear"], errors["density"])  # linear spends centres on rare large weights
    assert np.abs(fits["density"][0]).max() < np.abs(fits["linear"][0]).max()  # density starts where weights are
    with pytest.raises(CompressionError, match="k-means init must be one of"):
        kmeans_1d(values, 15, "forgy")


def test_share_weights_uses_at_most_2_to_the_bits_values_and_keeps_zeros() -> None:
    model = small_model()
    masks = prune(model, 0.5)
    shared = share_weights(model, {"*": 3, "conv10": 2}, masks)
    for name, conv in convolutions(model).items():
        layer = shared[name]
        assert len(layer.codebook) <= 2**layer.bits and layer.codebook[0] == 0
        assert torch.equal(conv.weight.detach(), torch.from_numpy(layer.weights()))
        assert torch.equal(conv.weight.detach() != 0, masks[name])
    assert shared["conv10"].bits == 2 and len(np.unique(model.classifier.conv10.weight.detach())) <= 4


# -- fine-tuning keeps the compression -------------------------------------------------


def sgd_steps(model: nn.Module, steps: int = 3) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    torch.manual_seed(0)
    for _ in range(steps):
        loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_centroid_gradient_is_the_sum_of_its_weights_gradients() -> None:
    model = small_model()
    model.eval()  # no dropout: both passes must see the same network
    shared = share_weights(model, 3, prune(model, 0.5))
    inputs = torch.randn(2, 3, 32, 32)
    model(inputs).sum().backward()
    dense_grad = model.features.fire2.expand3x3.weight.grad.flatten().numpy()
    model.zero_grad()
    attach(model, shared=shared)
    model(inputs).sum().backward()
    conv = model.features.fire2.expand3x3
    centroid_grad = conv.parametrizations.weight.original.grad.numpy()
    codes = shared["fire2.expand3x3"].codes
    expected = np.bincount(codes, weights=dense_grad, minlength=len(centroid_grad) + 1)[1:]
    assert np.allclose(centroid_grad, expected, rtol=1e-4, atol=1e-6)


def test_training_moves_centroids_but_not_codes_or_zeros() -> None:
    model = small_model()
    masks = prune(model, 0.4)
    shared = share_weights(model, 4, masks)
    attach(model, shared=shared)
    sgd_steps(model)
    trained = detach(model, shared)
    for name, conv in convolutions(model).items():
        assert torch.equal(conv.weight.detach(), torch.from_numpy(trained[name].weights()))
        assert torch.equal(conv.weight.detach() != 0, masks[name])
    assert not np.allclose(trained["conv10"].codebook, shared["conv10"].codebook)


def test_masked_training_keeps_pruned_weights_at_zero() -> None:
    model = small_model()
    masks = prune(model, 0.3)
    attach(model, masks=masks)
    assert isinstance(model.features.conv1.parametrizations.weight[0], MaskedWeight)
    sgd_steps(model)
    detach(model)
    for name, conv in convolutions(model).items():
        assert not conv.weight.detach()[~masks[name]].any(), name


# -- the whole pipeline ------------------------------------------------------------------


def test_compress_runs_every_stage_and_reports(tmp_path: Path) -> None:
    model = small_model()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    stages: list[str] = []
    scored: list[nn.Module] = []

    def finetune(net: sq.SqueezeNet, stage: str) -> None:
        stages.append(stage)
        sgd_steps(net, 2)

    def evaluate(net: nn.Module) -> dict[str, float]:
        scored.append(net)
        return {"top1": 0.5, "top5": 0.9, "n": 10}

    out = tmp_path / "tiny.sqz"
    result = sq.compress(model, out, prune=0.5, bits={"*": 4, "conv10": 3}, huffman=True, finetune=finetune,
                         evaluate=evaluate)
    assert stages == ["prune", "share"] and len(scored) == 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in original.items())  # input untouched
    report = result.report
    assert report.total_bytes == out.stat().st_size == len(result.data)
    assert 0.45 < report.kept / report.params < 0.55
    assert report.accuracy_before == report.accuracy_after == {"top1": 0.5, "top5": 0.9, "n": 10}
    loaded = sq.load(out)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in result.model.state_dict().items())
    assert {row.name: row.bits for row in report.layers}["conv10"] == 3
    text = str(report)
    assert "total" in text and f"{report.total_bytes:,}" in text
    assert json.loads(report.to_json())["total_bytes"] == report.total_bytes


def test_paper_file_reencoded_at_6_bits_with_huffman_fits_table_2(tmp_path: Path) -> None:
    out = tmp_path / "six.sqz"
    result = sq.compress(shared_path(DC_FILE), out, bits=6, huffman=True)
    assert out.stat().st_size <= 470_000  # the paper's Table 2 figure for the 6-bit model
    assert result.report.kept == 415_921  # re-encoding keeps the file's pruning exactly
    assert all(row.bits == 6 for row in result.report.layers)
    loaded = sq.load(out)
    assert loaded.spec.conv10_padding == 1 and loaded.preprocess == sq.get_preprocessing("caffe")
    for conv in convolutions(loaded).values():
        assert len(torch.unique(conv.weight)) <= 64


def test_compress_to_the_papers_layout_reads_back(tmp_path: Path) -> None:
    model = small_model()
    out = tmp_path / "tiny.net"
    result = sq.compress(model, out, prune=0.5, bits=8)
    assert result.report.settings["format"] == "net" and result.report.total_bytes == out.stat().st_size
    loaded = sq.load(out, arch=model.spec)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in result.model.state_dict().items())
    fewer = sq.compress(model, tmp_path / "six.net", prune=0.5, bits=6)  # still 8-bit codes in the file
    assert fewer.report.total_bytes == result.report.total_bytes


# -- the command -------------------------------------------------------------------------


def test_cli_compresses_and_the_result_evaluates_like_any_weights(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "tiny.safetensors"
    sq.save(small_model(), weights)
    out = tmp_path / "tiny.sqz"
    code, stdout, err = run_cli(capsys, "compress", "--weights", str(weights), "--out", str(out), "--prune", "0.5",
                                "--bits", "4", "--bits-per-layer", "conv10=3", "--huffman", "--gap-bits", "auto",
                                "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["total_bytes"] == out.stat().st_size
    assert {row["name"]: row["bits"] for row in report["layers"]}["conv10"] == 3
    code, stdout, _ = run_cli(capsys, "summary", "--weights", str(out))
    assert code == 0 and "tiny" in stdout


def test_cli_calibrates_on_unlabelled_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights, images = tmp_path / "tiny.safetensors", tmp_path / "images"
    sq.save(small_model(), weights)
    images.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    for index, image in enumerate(pixels):
        Image.fromarray(image).save(images / f"{index}.png")
    code, stdout, err = run_cli(capsys, "compress", "--weights", str(weights), "--out", str(tmp_path / "c.sqz"),
                                "--bits", "3", "--init", "kmeans++", "--calib", str(images), "--calib-images", "4",
                                "--rate-cost", "1e-3", "--huffman", "--json")
    assert code == 0, err
    settings = json.loads(stdout)["settings"]
    assert settings["importance"] is True and settings["rate_cost"] == 1e-3 and settings["init"] == "kmeans++"
    assert settings["bias_correction"] == 4  # the same images take back each layer's mean shift
    assert sq.load(tmp_path / "c.sqz").spec == small_model().spec
    code, stdout, err = run_cli(capsys, "compress", "--weights", str(weights), "--out", str(tmp_path / "f.sqz"),
                                "--calib", str(images), "--calib-images", "4", "--no-bias-correction", "--json")
    settings = json.loads(stdout)["settings"]
    assert code == 0 and settings["importance"] is True and settings["bias_correction"] == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["--prune", "2"], "density must be a number in"),
    (["--bits", "9"], "--bits: must be an integer from 1 to 8"),
    (["--bits-per-layer", "fire99.squeeze=3"], "matches no layer"),
    (["--bits-per-layer", "conv1"], "expected NAME=VALUE"),
    (["--gap-bits", "many"], "--gap-bits must be an integer or auto"),
    (["--rate-cost", "-1"], "--rate-cost: must be a number from 0 to"),
    (["--calib", "/nonexistent/folder"], "/nonexistent/folder"),
])
def test_cli_bad_settings_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              argv: list[str], message: str) -> None:
    weights = tmp_path / "tiny.safetensors"
    sq.save(small_model(), weights)
    code, _, err = run_cli(capsys, "compress", "--weights", str(weights), "--out", str(tmp_path / "x.sqz"), *argv)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.sqz").exists()
