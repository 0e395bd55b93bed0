"""The small pieces every module shares: one_line, text_table, ModelMeta and the lazy public names."""

from __future__ import annotations

import pytest

import squeezenet as sq
from squeezenet.errors import one_line
from squeezenet.model import ModelMeta
from squeezenet.text import text_table


def test_one_line_folds_whitespace_drops_colour_and_shortens():
    error = RuntimeError("\x1b[31mfailed\x1b[0m   to\n\n  load\tit")
    assert one_line(error) == "failed to load it"
    assert one_line(ValueError()) == "ValueError"
    long = one_line(RuntimeError("x" * 500), limit=50)
    assert len(long) == 50 and long.endswith("...")


def test_text_table_aligns_names_left_numbers_right_and_rules_the_total():
    lines = text_table(["layer", "params"], [["conv1", "1,792"], ["fire2", "11,920"], ["total", "13,712"]],
                       total=True)
    assert lines == ["layer  params", "-----  ------", "conv1   1,792", "fire2  11,920", "-----  ------",
                     "total  13,712"]
    noted = text_table(["backend", "b1", "b32"], [["onnx", "42.1", "61.3"], ["openvino", "skipped: not installed"]])
    assert noted[0] == "backend    b1   b32" and noted[2] == "onnx     42.1  61.3"
    assert noted[-1] == "openvino  skipped: not installed"  # a note, outside the columns


def test_model_meta_is_frozen_checks_its_names_and_labels_every_output():
    spec = sq.get_spec("cifar")
    meta = ModelMeta(spec, class_names=[str(i) for i in range(10)])
    assert meta.class_names == tuple(str(i) for i in range(10))
    with pytest.raises(AttributeError):
        meta.class_names = None  # type: ignore[misc]
    with pytest.raises(ValueError, match="3 class names for 10 outputs"):
        ModelMeta(spec, class_names=["a", "b", "c"])
    assert ModelMeta(spec).labels[3] == "class 3"
    assert ModelMeta(sq.get_spec("1_0")).labels[0].startswith("tench")
    model = sq.build("cifar")
    model.meta = model.meta.replace(preprocessing=sq.get_preprocessing("caffe"))
    assert model.preprocess.name == "caffe" and model.spec is model.meta.spec
    with pytest.raises(AttributeError):
        model.preprocess = None  # type: ignore[misc]


def test_every_public_name_resolves():
    for name in sq.__all__:
        assert getattr(sq, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        sq.nonsense  # noqa: B018
