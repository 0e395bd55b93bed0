"""The model zoo (issue 17): build with pretrained weights and a new head, the timm-style head API, the
listings with their metadata, `squeezenet models`, and model folders in the Hugging Face Hub layout."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import squeezenet as sq
from squeezenet.evaluate import Accuracy
from squeezenet.weights import hub

from .conftest import run_cli, shared_path, tiny_model

V11_FILE = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
DC_FILE = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _backbone(model: sq.SqueezeNet) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in model.state_dict().items() if not name.startswith("classifier.")}


def _assert_fresh_head(model: sq.SqueezeNet, num_classes: int) -> None:
    conv10 = model.classifier.conv10
    assert conv10.weight.shape == (num_classes, model.num_features, 1, 1)
    assert torch.count_nonzero(conv10.bias) == 0
    assert 0.007 < conv10.weight.std().item() < 0.013  # N(0, 0.01), as a fresh network's conv10


# -- the head API ----------------------------------------------------------------


@pytest.mark.parametrize("arch", ["1_0", "1_1"])
def test_forward_is_the_head_on_the_features(arch: str) -> None:
    torch.manual_seed(0)
    model = sq.build(arch, num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    features = model.forward_features(x)
    assert features.shape[:2] == (2, 512) and model.num_features == 512
    assert torch.equal(model(x), model.forward_head(features))
    assert model.forward_head(features).shape == (2, 7)
    pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, 512)
    torch.testing.assert_close(pooled, features.mean((2, 3)))


def test_pre_logits_are_what_a_linear_conv10_reads_without_relu_or_padding() -> None:
    """The documented meaning: with final_relu=False and no conv10 pad, logits = W @ pooled + b."""
    torch.manual_seed(0)
    model = sq.build("1_1", num_classes=4, final_relu=False).eval()
    features = model.forward_features(torch.randn(3, 3, 64, 64))
    conv10 = model.classifier.conv10
    linear = model.forward_head(features, pre_logits=True) @ conv10.weight.flatten(1).T + conv10.bias
    torch.testing.assert_close(model.forward_head(features), linear)


def test_forward_features_checks_the_input_size() -> None:
    with pytest.raises(sq.InputSizeError, match="minimum input size is 25x25"):
        sq.build("1_1").forward_features(torch.zeros(1, 3, 20, 20))


def test_reset_classifier_makes_a_fresh_conv10_and_updates_meta() -> None:
    torch.manual_seed(0)
    model = sq.build("1_0", conv10_padding=1)
    model.meta = model.meta.replace(preprocessing=sq.get_preprocessing("caffe"))
    model = model.to(torch.float64)
    backbone = {name: tensor.clone() for name, tensor in _backbone(model).items()}
    model.reset_classifier(5)
    _assert_fresh_head(model, 5)
    conv10 = model.classifier.conv10
    assert conv10.padding == (1, 1) and conv10.weight.dtype == torch.float64
    assert model.spec == sq.get_spec("1_0").replace(conv10_padding=1, num_classes=5)
    assert model.meta.class_names is None and model.preprocess == sq.get_preprocessing("caffe")
    assert all(torch.equal(backbone[name], tensor) for name, tensor in _backbone(model).items())
    assert model(torch.zeros(1, 3, 64, 64, dtype=torch.float64)).shape == (1, 5)

    model.meta = model.meta.replace(class_names=tuple("abcde"))
    model.reset_classifier(3, class_names=["cat", "dog", "fox"])
    assert model.meta.class_names == ("cat", "dog", "fox") and model.meta.labels == ["cat", "dog", "fox"]
    model.reset_classifier(5)
    assert model.meta.class_names is None  # names belong to the old head
    with pytest.raises(sq.SpecError, match="num_classes"):
        model.reset_classifier(0)
    with pytest.raises(ValueError, match="2 class names for 3 outputs"):
        model.reset_classifier(3, class_names=["a", "b"])
    assert model.spec.num_classes == 5  # a refused reset changes nothing


def test_build_without_weights_is_as_before() -> None:
    assert sq.build().spec == sq.get_spec("1_0")
    assert sq.build("1_0", num_classes=10).spec.num_classes == 10
    named = sq.build("cifar", class_names=["a", "b", "c"])  # names alone set the count
    assert named.spec.num_classes == 3 and named.meta.class_names == ("a", "b", "c")


# -- build with pretrained weights -------------------------------------------------


def test_build_with_the_real_caffemodel_keeps_the_backbone_and_makes_a_new_head() -> None:
    path = shared_path(V11_FILE)
    loaded = sq.load(path)
    torch.manual_seed(0)
    model = sq.build("1_1", weights=path, num_classes=5, class_names=["a", "b", "c", "d", "e"])
    assert model.training  # like timm's and torchvision's builders: ready to fine-tune
    assert model.spec == loaded.spec.replace(num_classes=5) and model.meta.class_names == tuple("abcde")
    assert model.preprocess == loaded.preprocess == sq.get_preprocessing("caffe")
    ours, theirs = _backbone(model), _backbone(loaded)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[name], theirs[name]) for name in theirs)
    _assert_fresh_head(model, 5)
    model.eval()
    x = torch.randn(1, 3, 227, 227)
    torch.testing.assert_close(model.forward_features(x), loaded.forward_features(x))

    same_head = sq.build(weights=path)  # the arch comes from the weights; 1000 classes keep the pretrained conv10
    assert same_head.spec == loaded.spec
    assert torch.equal(same_head.classifier.conv10.weight, loaded.classifier.conv10.weight)
    strided = sq.build(weights=path, num_classes=5, conv1_stride=1, final_relu=False).eval()  # no tensor changes
    assert (strided.spec.conv1_stride, strided.spec.final_relu) == (1, False)
    assert all(torch.equal(_backbone(strided)[name], theirs[name]) for name in theirs)
    assert strided.forward_features(torch.randn(1, 3, 64, 64)).shape == loaded.forward_features(
        torch.randn(1, 3, 128, 128)).shape


def test_build_refuses_another_arch_or_a_backbone_change() -> None:
    path = shared_path(V11_FILE)
    with pytest.raises(sq.WeightsError, match=r"architecture '1_0' needs") as caught:
        sq.build("1_0", weights=path, num_classes=5)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    with pytest.raises(sq.WeightsError, match="bypass would change the pretrained network") as caught:
        sq.build("1_1", weights=path, bypass="simple")
    assert "\n" not in str(caught.value)


def test_build_with_a_registry_name_from_a_filled_download_cache(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The download is skipped when torch.hub's cache holds the file with the pinned sha256 (no network here)."""
    cached = tmp_path / "hub" / "checkpoints" / "squeezenet" / "compressed_SqueezeNet.net"
    cached.parent.mkdir(parents=True)
    shutil.copy(shared_path(DC_FILE), cached)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = sq.build("1_0", weights="1_0-deep-compression", num_classes=3, final_relu=False, dropout=0.2)
    loaded = sq.load(cached)
    assert model.spec == loaded.spec.replace(num_classes=3, final_relu=False, dropout=0.2)
    assert model.spec.conv10_padding == 1 and model.classifier.conv10.padding == (1, 1)
    assert isinstance(model.classifier.relu10, torch.nn.Identity) and model.classifier.dropout.p == 0.2
    assert all(torch.equal(tensor, _backbone(loaded)[name]) for name, tensor in _backbone(model).items())
    _assert_fresh_head(model, 3)


# -- the listings -------------------------------------------------------------------


def test_list_models_and_list_pretrained() -> None:
    assert sq.list_models() == list(sq.PRESETS) and sq.list_models("cifar*") == ["cifar", "cifar_fast"]
    pretrained = sq.list_pretrained()
    assert list(pretrained) == ["1_0-torchvision", "1_1-torchvision", "1_0-caffe", "1_1-caffe",
                                "1_0-deep-compression"]
    assert list(sq.list_pretrained("1_1-*")) == ["1_1-torchvision", "1_1-caffe"]
    for entry in pretrained.values():
        assert entry.spec is not None and entry.arch == entry.spec.name
        assert entry.num_params == sum(parameter.numel() for parameter in sq.build(entry.spec).parameters())
        assert entry.min_input_size == entry.spec.min_input_size()
        assert entry.categories is not None and len(entry.categories) == 1000
        assert entry.categories[0] == "tench, Tinca tinca"
        assert entry.transforms == sq.get_preprocessing(entry.preprocessing)
        assert json.loads(json.dumps(entry.to_dict()))["num_params"] == entry.num_params
    # only what was measured on this project's data: the two files in ../shared (docs/results.md)
    assert {name for name, entry in pretrained.items() if entry.accuracy} == {"1_1-caffe", "1_0-deep-compression"}
    assert {name for name, entry in pretrained.items() if entry.file_size} == {"1_0-deep-compression"}
    assert (pretrained["1_1-caffe"].accuracy.top1, pretrained["1_1-caffe"].accuracy.top5) == (0.660, 0.858)
    dc = pretrained["1_0-deep-compression"]
    assert (dc.accuracy.top1, dc.accuracy.top5, dc.accuracy.images) == (0.642, 0.842, 500)


@pytest.mark.parametrize(("name", "relative"), [("1_0-deep-compression", DC_FILE), ("1_1-caffe", V11_FILE)])
def test_pretrained_metadata_agrees_with_the_real_file(name: str, relative: str) -> None:
    path = shared_path(relative)
    entry = sq.list_pretrained()[name]
    model = sq.load(path)
    assert model.spec == entry.spec and model.preprocess == entry.transforms
    assert entry.num_params == sum(parameter.numel() for parameter in model.parameters())
    assert tuple(model.meta.labels) == entry.categories
    if entry.file_size is not None:  # the same bytes as the download (sha256), so the same size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
        assert path.stat().st_size == entry.file_size


def test_models_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "models")
    assert code == 0, err
    assert "1_0, 1_1, cifar, cifar_fast" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("1_")}
    assert set(lines) == set(sq.list_pretrained())
    assert "1,235,496" in lines["1_1-caffe"] and "66.0%" in lines["1_1-caffe"] and "85.8%" in lines["1_1-caffe"]
    assert "675,763" in lines["1_0-deep-compression"] and "64.2%" in lines["1_0-deep-compression"]
    assert lines["1_0-torchvision"].split()[-4:-1] == ["-", "-", "-"]  # size, top-1, top-5 never measured here
    code, out, _ = run_cli(capsys, "models", "--json")
    listing = json.loads(out)
    assert code == 0 and listing["presets"] == sq.list_models()
    assert listing["pretrained"] == [entry.to_dict() for entry in sq.list_pretrained().values()]


# -- model folders in the Hub layout --------------------------------------------------


@pytest.fixture
def named_model() -> sq.SqueezeNet:
    model = tiny_model(seed=3)
    model.meta = model.meta.replace(class_names=tuple(f"digit {i}" for i in range(10)))
    return model


def test_save_pretrained_round_trip(tmp_path: Path, named_model: sq.SqueezeNet) -> None:
    accuracy = Accuracy(top1=0.975, top5=1.0, n=360, loss=0.1, dead_classes=0)
    folder = sq.save_pretrained(named_model, tmp_path / "digits", training="30 epochs on digits, the paper's recipe",
                                accuracy=accuracy)
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    back = sq.load(folder)
    assert not back.training
    assert back.spec == named_model.spec and back.preprocess == named_model.preprocess
    assert back.meta.class_names == named_model.meta.class_names
    ours, theirs = named_model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[name], theirs[name]) for name in ours)
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "tiny" and config["num_classes"] == 10 and config["accuracy"]["top1"] == 0.975
    card = (folder / "README.md").read_text()
    parameters = sum(parameter.numel() for parameter in named_model.parameters())
    assert card.startswith("---\nlibrary_name: squeezenet\n")
    assert "SqueezeNet `tiny`" in card and f"{parameters:,}" in card and "digit 0, digit 1" in card
    assert "30 epochs on digits" in card and "| top1 | 97.50% |" in card and "| n | 360 |" in card
    assert sq.load(folder / "model.safetensors").meta == back.meta  # the weights file alone is self-describing too
    with pytest.raises(sq.WeightsError, match="architecture 'tiny', not '1_0'"):
        sq.load(folder, arch="1_0")


def test_model_card_says_what_was_not_recorded(tmp_path: Path) -> None:
    model = sq.build("1_1")
    folder = sq.save_pretrained(model, tmp_path / "plain")
    card = (folder / "README.md").read_text()
    assert "1,235,496" in card and "ImageNet's 1000" in card
    assert "Training\n\nNot recorded" in card and "Not measured" in card and "preprocessing | not recorded" in card
    assert sq.load(folder).preprocess is None


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_a_folder_missing_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             named_model: sq.SqueezeNet, missing: str) -> None:
    folder = sq.save_pretrained(named_model, tmp_path / "model")
    (folder / missing).unlink()
    expected = re.escape(f"{folder}: is a folder but not a model folder: no {missing} ")
    with pytest.raises(sq.WeightsError, match=expected):
        sq.load(folder)
    code, out, err = run_cli(capsys, "summary", "--weights", str(folder))
    assert code == 2 and out == "" and err.count("\n") == 1 and f"no {missing}" in err, err


def test_a_bad_config_is_one_line(tmp_path: Path, named_model: sq.SqueezeNet) -> None:
    folder = sq.save_pretrained(named_model, tmp_path / "model")
    config = folder / "config.json"
    config.write_text("{not json")
    with pytest.raises(sq.WeightsError, match=r"config\.json: not a readable JSON file"):
        sq.load(folder)
    config.write_text(json.dumps({"spec": {"name": "x", "num_classes": -1}}))
    with pytest.raises(sq.WeightsError, match=r"config\.json: num_classes"):
        sq.load(folder)


# -- hf-hub: through huggingface_hub's cache, offline ----------------------------------


def _fill_hub_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay ``folder`` out as huggingface_hub's cache does: blobs named by sha256, a snapshot of symlinks, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copy(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def _offline(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter (huggingface_hub reads its settings at import) with no network and a private cache."""
    pytest.importorskip("huggingface_hub")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)


def test_hf_hub_name_loads_from_a_filled_cache_offline(tmp_path: Path, named_model: sq.SqueezeNet) -> None:
    _fill_hub_cache(tmp_path / "hf" / "hub", "squeezenet-org/tiny-digits",
                    sq.save_pretrained(named_model, tmp_path / "upload"))
    script = ("import sys, squeezenet as sq, squeezenet.weights.io\n"
              "assert 'huggingface_hub' not in sys.modules  # imported only for an hf-hub: name\n"
              "model = sq.load('hf-hub:squeezenet-org/tiny-digits')\n"
              "sq.save(model, 'copy.safetensors')\n")
    result = _offline(tmp_path, "-c", script)
    assert result.returncode == 0, result.stderr
    copy = sq.load(tmp_path / "copy.safetensors")
    assert copy.meta == named_model.meta
    assert all(torch.equal(tensor, named_model.state_dict()[name]) for name, tensor in copy.state_dict().items())
    result = _offline(tmp_path, "-m", "squeezenet", "summary", "--weights", "hf-hub:squeezenet-org/tiny-digits@main")
    assert result.returncode == 0 and "SqueezeNet 'tiny': 10 classes" in result.stdout, result.stderr


def test_hf_hub_name_without_a_cache_offline_is_one_line(tmp_path: Path) -> None:
    result = _offline(tmp_path, "-m", "squeezenet", "summary", "--weights", "hf-hub:squeezenet-org/absent")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("squeezenet summary: error: hf-hub:squeezenet-org/absent: cannot get it from "
                                    "the Hugging Face Hub")
    assert result.stderr.rstrip().endswith("pass a local model folder instead (squeezenet.load(DIR), or --weights DIR)")


def test_hf_hub_needs_the_hub_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(sq.MissingExtraError, match=r"Hugging Face Hub needs the hub extra .*squeezenet\[hub\]'$"):
        sq.load("hf-hub:org/name")
    with pytest.raises(sq.WeightsError, match="name a repository"):
        hub.download("hf-hub:")
