"""Bias correction after weight sharing: each layer's channel means on the calibration images are put back."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import squeezenet as sq
from squeezenet.compress import CompressionError
from squeezenet.compress.calibrate import channel_means, correct_biases
from squeezenet.compress.quantize import share_weights
from squeezenet.weights.names import convolutions, module_paths

from .conftest import tiny_model


def _teacher(batch_norm: bool) -> sq.SqueezeNet:
    torch.manual_seed(5)
    model = sq.build(tiny_model().spec.replace(final_relu=False, batch_norm=batch_norm)).eval()
    if batch_norm:  # running statistics that are not the identity, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _outputs(model: sq.SqueezeNet) -> dict[str, torch.nn.Module]:
    """Each layer's conv, or its conv + batch norm: where the correction must show."""
    return {name: model.get_submodule(path.removesuffix(".conv")) for name, path in module_paths(model.spec).items()}


def _shift_of(layer: torch.nn.Module) -> torch.Tensor:
    """What a correction changes: the bias, or the batch norm's running mean."""
    return layer.bias if isinstance(layer, torch.nn.Conv2d) else layer.norm.running_mean


@pytest.mark.parametrize("batch_norm", [False, True])
def test_corrected_layers_have_the_reference_channel_means(batch_norm: bool) -> None:
    reference = _teacher(batch_norm)
    model = copy.deepcopy(reference)
    share_weights(model, 2)  # 3 shared values per layer: large errors with a non-zero mean
    weights = {name: conv.weight.clone() for name, conv in convolutions(model).items()}
    images = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    wanted = channel_means(reference, _outputs(reference), images)
    before = channel_means(model, _outputs(model), images)
    corrections = correct_biases(reference, model, images, batch=10, progress=False)
    after = channel_means(model, _outputs(model), images)
    *corrected, classifier = wanted
    assert list(corrections) == corrected and all(value > 0 for value in corrections.values())
    assert torch.equal(_shift_of(_outputs(model)[classifier]), _shift_of(_outputs(reference)[classifier]))
    for name in corrected:
        assert (before[name] - wanted[name]).abs().max() > 1e-3, name
        torch.testing.assert_close(after[name], wanted[name], atol=1e-4, rtol=1e-4)
    assert all(torch.equal(conv.weight, weights[name]) for name, conv in convolutions(model).items())
    with pytest.raises(CompressionError, match="shaped"):
        correct_biases(reference, model, torch.randn(3, 32, 32))


def test_compress_corrects_biases_and_records_it(tmp_path: Path) -> None:
    teacher = _teacher(False)
    images = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    plain = sq.compress(teacher, tmp_path / "plain.sqz", bits=2, init="kmeans++")
    corrected = sq.compress(teacher, tmp_path / "corrected.sqz", bits=2, init="kmeans++", calibration=images,
                            fisher=False)  # the images for the correction only: the same shared weights
    assert corrected.report.settings["bias_correction"] == 16 and plain.report.settings["bias_correction"] == 0
    # biases are stored dense either way: only the header's record of the settings differs
    assert abs(corrected.report.total_bytes - plain.report.total_bytes) < 8
    loaded = sq.load(tmp_path / "corrected.sqz")
    plain_convs, corrected_convs = convolutions(plain.model), convolutions(loaded)
    assert all(torch.equal(plain_convs[name].weight, conv.weight) for name, conv in corrected_convs.items())
    assert not torch.equal(plain_convs["fire3.expand3x3"].bias, corrected_convs["fire3.expand3x3"].bias)
    assert torch.equal(plain_convs["conv10"].bias, corrected_convs["conv10"].bias)
    with torch.inference_mode():  # closer to the teacher on the images it was corrected on
        gap = {name: (result.model(images) - teacher(images)).abs().mean()
               for name, result in (("plain", plain), ("corrected", corrected))}
    assert gap["corrected"] < gap["plain"]
    with pytest.raises(CompressionError, match="calibration needs"):
        sq.compress(teacher, bits=2, calibration=torch.randn(0, 3, 32, 32))
