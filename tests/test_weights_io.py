"""Our safetensors format, the torchvision .pth reader, format detection and the bad-input paths of load()."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
import torchvision

import squeezenet as sq
from squeezenet import WeightsError
from squeezenet.weights import io
from squeezenet.weights import safetensors as safetensors_format
from squeezenet.weights.io import detect_format, load, read_safetensors, save

from .conftest import shared_path, tiny_model


@pytest.fixture(scope="module")
def caffe_v11() -> sq.SqueezeNet:
    return load(shared_path("weights/caffe_v1.1/squeezenet_v1.1.caffemodel"))


def test_save_load_round_trip_needs_no_arch(tmp_path: Path, caffe_v11: sq.SqueezeNet) -> None:
    path = save(caffe_v11, tmp_path / "v11.safetensors", {"source": "forresti v1.1", "epoch": "0"})
    loaded = load(path)
    assert loaded.spec == caffe_v11.spec and loaded.preprocess == sq.get_preprocessing("caffe")
    assert not loaded.training
    for name, tensor in caffe_v11.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    stored = read_safetensors(path)
    assert stored.spec == caffe_v11.spec and stored.preprocessing == caffe_v11.preprocess
    assert stored.metadata == {"source": "forresti v1.1", "epoch": "0"}
    assert set(stored.state_dict) == set(caffe_v11.state_dict())


def test_save_keeps_custom_specs_and_recipes(tmp_path: Path) -> None:
    model = sq.build("cifar", bypass="simple")
    model.meta = model.meta.replace(preprocessing=sq.Preprocessing(
        name="cifar10", resize=None, crop=None, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26)))
    loaded = load(save(model, tmp_path / "cifar.safetensors", {"class_names": json.dumps([str(i) for i in range(10)])}))
    assert loaded.spec == model.spec and loaded.preprocess == model.preprocess
    assert loaded.meta.class_names == tuple(str(i) for i in range(10))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))


def test_save_is_atomic_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.safetensors"
    save(sq.build("1_1"), path)
    before = path.read_bytes()

    def failing_replace(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(WeightsError, match="No space left"):
        save(sq.build("1_1"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]  # no temporary left behind


def test_reserved_or_non_text_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="reserved"):
        save(sq.build("1_1"), tmp_path / "x.safetensors", {"spec": "{}"})
    with pytest.raises(WeightsError, match="strings"):
        save(sq.build("1_1"), tmp_path / "x.safetensors", {"epoch": 3})  # type: ignore[dict-item]
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("version", ["1_0", "1_1"])
def test_torchvision_state_dicts_load_with_arch_and_classes_inferred(tmp_path: Path, version: str) -> None:
    reference = getattr(torchvision.models, f"squeezenet{version}")(num_classes=10).eval()
    path = tmp_path / f"squeezenet{version}.pth"
    torch.save(reference.state_dict(), path)
    model = load(path)
    assert model.spec.name == version and model.spec.num_classes == 10 and model.spec.conv10_padding == 0
    assert model.preprocess == sq.get_preprocessing("torchvision")
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_torch_files_with_our_names_load(tmp_path: Path) -> None:
    model = sq.build("1_1")
    torch.save(model.state_dict(), tmp_path / "ours.pt")
    loaded = load(tmp_path / "ours.pt")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_format_is_detected_from_content_then_extension(tmp_path: Path) -> None:
    save(sq.build("1_1"), tmp_path / "weights.bin")
    torch.save(sq.build("1_1").state_dict(), tmp_path / "weights.dat")
    assert detect_format(tmp_path / "weights.bin") == "safetensors"
    assert detect_format(tmp_path / "weights.dat") == "torch"
    assert detect_format(shared_path("weights/caffe_v1.1/squeezenet_v1.1.caffemodel")) == "caffe"
    assert detect_format(shared_path("weights/deep_compression_v1.0/compressed_SqueezeNet.net")) == "deep_compression"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(WeightsError, match=r"notes\.txt: unknown weights format"):
        load(tmp_path / "notes.txt")


def test_wrong_architecture_names_the_file_and_first_tensor(tmp_path: Path) -> None:
    torch.save(torchvision.models.squeezenet1_1().state_dict(), tmp_path / "v11.pth")
    with pytest.raises(WeightsError, match=r"v11\.pth: 'features\.0\.weight' has shape \(64, 3, 3, 3\) but "
                                           r"architecture '1_0' needs \(96, 3, 7, 7\)"):
        load(tmp_path / "v11.pth", arch="1_0")
    save(sq.build("1_1"), tmp_path / "v11.safetensors")
    with pytest.raises(WeightsError, match=r"v11\.safetensors: holds weights for architecture '1_1', not '1_0'"):
        load(tmp_path / "v11.safetensors", arch="1_0")
    with pytest.raises(WeightsError, match="fits none of the architectures"):
        torch.save({"features.0.weight": torch.zeros(8, 3, 5, 5)}, tmp_path / "odd.pth")
        load(tmp_path / "odd.pth")


def test_damaged_files_give_one_line_errors(tmp_path: Path) -> None:
    good = save(sq.build("1_1"), tmp_path / "good.safetensors").read_bytes()
    torch.save(sq.build("1_1").state_dict(), tmp_path / "good.pth")
    cases = {
        "truncated.safetensors": good[: len(good) // 2],
        "header.safetensors": good[:8] + b"{" + b"\x00" * 40,
        "truncated.pth": (tmp_path / "good.pth").read_bytes()[:5000],
        "garbage.pth": b"PK\x03\x04" + os.urandom(300),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WeightsError) as caught:
            load(tmp_path / name)
        message = str(caught.value)
        assert message.startswith(str(tmp_path / name)) and "\n" not in message, message


def test_pickles_of_code_are_refused(tmp_path: Path) -> None:
    torch.save({"model": sq.build("1_1")}, tmp_path / "module.pth")  # a whole module: needs code to unpickle
    with pytest.raises(WeightsError, match=r"module\.pth: not a readable PyTorch weights file"):
        load(tmp_path / "module.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="not a state dict"):
        load(tmp_path / "list.pth")


def test_missing_file_or_folder(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nothing\.pth: weights file not found"):
        load(tmp_path / "nothing.pth")
    with pytest.raises(WeightsError, match="is a folder"):
        load(tmp_path)


def test_newer_format_versions_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safetensors_format, "FORMAT_VERSION", "99")
    path = save(sq.build("1_1"), tmp_path / "future.safetensors")
    monkeypatch.undo()
    with pytest.raises(WeightsError, match="format version 99"):
        load(path)


# -- the format table ------------------------------------------------------------


def _file_of_each_format(folder: Path) -> dict[str, Path]:
    """A real or freshly written file (or folder) of every format, named so that only the bytes or the extension
    can tell."""
    from squeezenet.compress import share_weights, write_sqz

    model = tiny_model()
    files = {
        "safetensors": save(model, folder / "ours.weights"),
        "caffe": shared_path("weights/caffe_v1.1/squeezenet_v1.1.caffemodel"),
        "deep_compression": shared_path("weights/deep_compression_v1.0/compressed_SqueezeNet.net"),
        "sqz": folder / "compressed.weights",
        "hub_folder": sq.save_pretrained(model, folder / "hub-layout"),
    }
    torch.save(model.state_dict(), folder / "state.weights")
    files["torch"] = folder / "state.weights"
    write_sqz(files["sqz"], model, share_weights(model, 4))
    return files


def test_every_format_in_the_table_is_detected_and_read(tmp_path: Path) -> None:
    files = _file_of_each_format(tmp_path)
    assert set(files) == set(io.FORMATS), "add a file for every format in the table"
    for name, path in files.items():
        assert detect_format(path) == name, path
        model = load(path, arch=None if path.is_relative_to(shared_path("")) else tiny_model().spec)
        assert isinstance(model, sq.SqueezeNet) and not model.training, name
    for name, entry in io.FORMATS.items():  # the extension decides where the bytes do not
        for extension in entry.extensions:
            renamed = tmp_path / f"noise{extension}"
            renamed.write_bytes(b"\x00" * 32)
            assert detect_format(renamed) == name, renamed


def test_unknown_format_error_lists_every_extension_we_read(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(WeightsError) as caught:
        load(tmp_path / "notes.txt")
    message = str(caught.value)
    assert message == f"{tmp_path / 'notes.txt'}: unknown weights format (we read .safetensors, .pth/.pt, " \
                      ".caffemodel, .net, .sqz)"
    assert all(extension in message for entry in io.FORMATS.values() for extension in entry.extensions)
    with pytest.raises(WeightsError, match=r"unknown format 'onnx'; known: safetensors, torch, caffe"):
        load(tmp_path / "notes.txt", file_format="onnx")


def test_module_docs_show_the_table() -> None:
    assert io.__doc__ is not None
    for name, entry in io.FORMATS.items():
        assert any(line.startswith(name) and "/".join(entry.extensions) in line for line in io.__doc__.splitlines())


def test_written_files_get_the_mode_open_gives(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # a common umask, under which mkstemp's 0600 would differ from open()'s 0644
    try:
        path = save(sq.build("1_1"), tmp_path / "model.safetensors")
        with open(tmp_path / "plain.txt", "w") as file:
            file.write("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
