"""The one layer-name table (short, module, Caffe and Deep Compression names) and the weights/compress layering."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from torch import nn

import squeezenet as sq
from squeezenet.weights.caffe import read_caffemodel
from squeezenet.weights.names import convolutions, layer_names, module_paths

from .conftest import shared_path

WEIGHTS = Path(sq.__file__).parent / "weights"


def test_v10_rows_match_the_papers_table_and_both_releases() -> None:
    rows = layer_names(sq.get_spec("1_0"))
    assert len(rows) == 26
    first, squeeze, expand1x1, expand3x3 = rows[:4]
    assert (first.short, first.module, first.caffe, first.deep_compression) == (
        "conv1", "features.conv1", "conv1", "conv1")
    assert (squeeze.short, squeeze.module, squeeze.caffe, squeeze.deep_compression) == (
        "fire2.squeeze", "features.fire2.squeeze", "fire2/squeeze1x1", "fire2/conv1x1_1")
    assert (expand1x1.caffe, expand1x1.deep_compression) == ("fire2/expand1x1", "fire2/conv1x1_2")
    assert (expand3x3.caffe, expand3x3.deep_compression) == ("fire2/expand3x3", "fire2/conv3x3_2")
    assert (rows[-1].short, rows[-1].module, rows[-1].caffe, rows[-1].deep_compression) == (
        "conv10", "classifier.conv10", "conv10", "conv_final")


def test_caffe_names_are_the_real_files_layers() -> None:
    layers = read_caffemodel(shared_path("weights/caffe_v1.1/squeezenet_v1.1.caffemodel").read_bytes())
    assert [layer.name for layer in layers] == [row.caffe for row in layer_names(sq.get_spec("1_1"))]


@pytest.mark.parametrize("overrides", [{}, {"batch_norm": True}, {"bypass": "simple"}, {"bypass": "complex"},
                                       {"bypass": "complex", "batch_norm": True}])
def test_rows_are_every_convolution_of_the_built_model_in_order(overrides: dict) -> None:
    model = sq.build("1_0", **overrides)
    built = [path for path, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    assert [row.module for row in layer_names(model.spec)] == built
    assert list(convolutions(model)) == [row.short for row in layer_names(model.spec)]
    by_short = convolutions(model)
    assert all(by_short[short] is model.get_submodule(path) for short, path in module_paths(model.spec).items())
    if overrides.get("batch_norm"):
        assert module_paths(model.spec)["fire2.squeeze"] == "features.fire2.squeeze.conv"
    if overrides.get("bypass") == "complex":
        bypass = [row for row in layer_names(model.spec) if row.short.endswith(".bypass")]
        assert bypass and all(row.caffe is None and row.deep_compression is None for row in bypass)


def test_nothing_in_weights_imports_compress() -> None:
    """compress is built on weights (it writes what weights reads), never the other way round."""
    for source in sorted(WEIGHTS.glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert "compress" not in module.split("."), f"{source.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert all("compress" not in alias.name.split(".") for alias in node.names), source.name
