"""Fisher-weighted and entropy-constrained weight sharing: the calibrated path for models without training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import squeezenet as sq
from squeezenet.compress import CompressionError
from squeezenet.compress.importance import fisher_information
from squeezenet.compress.quantize import allocate_bits, kmeans_1d
from squeezenet.weights.names import convolutions

from .conftest import tiny_model


def _teacher() -> sq.SqueezeNet:
    torch.manual_seed(3)  # no ReLU after conv10: an untrained network's logits are then not all 0
    return sq.build(tiny_model().spec.replace(final_relu=False)).eval()


def _images(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_fisher_information_has_one_non_negative_value_per_weight_and_leaves_the_model_alone() -> None:
    model = _teacher()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    fisher = fisher_information(model, _images(8, 0), progress=False)
    convs = convolutions(model)
    assert set(fisher) == set(convs)
    for name, conv in convs.items():
        assert fisher[name].shape == conv.weight.shape and (fisher[name] >= 0).all() and fisher[name].sum() > 0
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert torch.equal(fisher["conv10"], fisher_information(model, _images(8, 0), progress=False)["conv10"])
    with pytest.raises(CompressionError, match="shaped"):
        fisher_information(model, torch.randn(3, 32, 32))


def test_an_important_value_gets_a_centre_of_its_own() -> None:
    values = np.random.default_rng(0).normal(0, 1, 2000)
    values[7] = 0.123456  # in the crowd: plain k-means merges it with its neighbours
    importance = np.ones_like(values)
    importance[7] = 1e6
    plain, labels = kmeans_1d(values, 7)
    weighted, weighted_labels = kmeans_1d(values, 7, importance=importance)
    assert abs(plain[labels[7]] - values[7]) > 1e-3
    assert weighted[weighted_labels[7]] == pytest.approx(values[7], abs=1e-4)
    with pytest.raises(CompressionError, match="importance must be finite"):
        kmeans_1d(values, 7, importance=-importance)


def test_a_rate_cost_lowers_the_entropy_of_the_codes() -> None:
    values = np.random.default_rng(1).standard_t(4, 20_000)

    def entropy_and_error(rate_cost: float) -> tuple[float, float]:
        centres, labels = kmeans_1d(values, 31, "kmeans++", rate_cost=rate_cost)
        share = np.bincount(labels) / len(labels)
        share = share[share > 0]
        return float(-(share * np.log2(share)).sum()), float(((centres[labels] - values) ** 2).mean())

    free, cheap, dear = entropy_and_error(0.0), entropy_and_error(0.01), entropy_and_error(0.1)
    assert free[0] > cheap[0] > dear[0] and free[1] < cheap[1] < dear[1]
    with pytest.raises(CompressionError, match="rate_cost"):
        kmeans_1d(values, 31, rate_cost=-1.0)


def test_fisher_weighted_sharing_moves_the_sensitive_weights_least(tmp_path: Path) -> None:
    teacher = _teacher()
    fisher = fisher_information(teacher, _images(32, 1), progress=False)
    plain = sq.compress(teacher, tmp_path / "plain.sqz", bits=2, init="kmeans++")
    weighted = sq.compress(teacher, tmp_path / "weighted.sqz", bits=2, init="kmeans++", importance=fisher)

    def loss_increase(model: sq.SqueezeNet) -> float:  # the second-order estimate the weighting minimises
        layers, original = convolutions(model), convolutions(teacher)
        return sum(float((fisher[name] * (layers[name].weight - original[name].weight).detach() ** 2).sum())
                   for name in layers)

    assert loss_increase(weighted.model) < 0.8 * loss_increase(plain.model)
    assert weighted.report.settings["importance"] is True and plain.report.settings["importance"] is False
    smaller = sq.compress(teacher, tmp_path / "rate.sqz", bits=4, init="kmeans++", importance=fisher, huffman=True,
                          rate_cost=1e-2)
    larger = sq.compress(teacher, tmp_path / "free.sqz", bits=4, init="kmeans++", importance=fisher, huffman=True)
    assert smaller.report.total_bytes < larger.report.total_bytes
    assert sq.load(tmp_path / "rate.sqz").spec == teacher.spec


def test_allocated_bits_spare_the_sensitive_layer_and_meet_the_saving() -> None:
    teacher = _teacher()
    fisher = fisher_information(teacher, _images(16, 3), progress=False)
    names = list(convolutions(teacher))
    assert set(allocate_bits(teacher, fisher, 0, widths=(3, 4)).values()) == {4}
    assert set(allocate_bits(teacher, fisher, 1e12, widths=(3, 4)).values()) == {3}  # stops at the narrowest
    fisher = {**fisher, "conv10": fisher["conv10"] * 1e6}  # make one layer matter far more than the rest
    chosen = allocate_bits(teacher, fisher, 50, widths=(3, 4))
    assert chosen["conv10"] == 4 and sorted(chosen) == sorted(names) and 3 in chosen.values()
    with pytest.raises(CompressionError, match=r"no .* entry for layer conv10"):
        allocate_bits(teacher, {name: value for name, value in fisher.items() if name != "conv10"}, 50)
