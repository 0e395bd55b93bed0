"""The pretrained registry (download through torch.hub with the hash checked) and hubconf.py."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
import torch

import squeezenet as sq
from squeezenet import WeightsError
from squeezenet.weights import registry
from squeezenet.weights.registry import REGISTRY, PretrainedWeights, download, pretrained, resolve

from .conftest import shared_path

REPO = Path(__file__).resolve().parents[1]
DC_FILE = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"


def test_every_entry_pins_an_https_url_and_a_sha256() -> None:
    assert {"1_0-torchvision", "1_1-torchvision", "1_0-caffe", "1_1-caffe", "1_0-deep-compression"} <= set(REGISTRY)
    for entry in REGISTRY.values():
        assert entry.url.startswith("https://"), entry.name
        assert re.fullmatch(r"[0-9a-f]{8}([0-9a-f]{56})?", entry.sha256), entry.name
    # torchvision names its files after the hash: the pinned digest must agree with the name
    for name in ("1_0-torchvision", "1_1-torchvision"):
        entry = REGISTRY[name]
        assert entry.sha256.startswith(entry.filename.rsplit("-", 1)[1].split(".")[0])


def test_deep_compression_entry_matches_the_real_file() -> None:
    digest = hashlib.sha256(shared_path(DC_FILE).read_bytes()).hexdigest()
    assert REGISTRY["1_0-deep-compression"].sha256 == digest


@pytest.fixture
def served(tmp_path: Path) -> PretrainedWeights:
    """A registry entry whose URL is a file:// copy of the real Deep Compression file."""
    source = tmp_path / "served" / "compressed_SqueezeNet.net"
    source.parent.mkdir()
    shutil.copy(shared_path(DC_FILE), source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return PretrainedWeights("test-dc", source.as_uri(), digest, "test copy")


def test_download_through_the_cache_with_hash_check(tmp_path: Path, served: PretrainedWeights) -> None:
    cache = tmp_path / "cache"
    model = pretrained(served, cache_dir=cache, progress=False)
    assert model.spec.name == "1_0" and model.preprocess == sq.get_preprocessing("caffe")
    cached = cache / "compressed_SqueezeNet.net"
    assert cached.is_file()
    Path(served.url.removeprefix("file://")).unlink()  # the source is gone: the cached copy is used
    assert download(served, cache, progress=False) == cached


def test_default_cache_is_torch_hubs(tmp_path: Path, served: PretrainedWeights,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path = download(served, progress=False)
    assert path == tmp_path / "hub" / "checkpoints" / "squeezenet" / "compressed_SqueezeNet.net"


def test_damaged_cache_is_fetched_again(tmp_path: Path, served: PretrainedWeights) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "compressed_SqueezeNet.net").write_bytes(b"half a file")
    path = download(served, cache, progress=False)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == served.sha256


def test_wrong_hash_keeps_nothing(tmp_path: Path, served: PretrainedWeights) -> None:
    wrong = PretrainedWeights("test-dc", served.url, "0" * 64, "wrong hash")
    with pytest.raises(WeightsError, match="failed its sha256 check"):
        download(wrong, tmp_path / "cache", progress=False)
    assert not any((tmp_path / "cache").iterdir())


def test_offline_says_to_pass_a_local_file(tmp_path: Path) -> None:
    unreachable = PretrainedWeights("test-offline", (tmp_path / "nowhere.net").as_uri(), "0" * 64, "offline")
    with pytest.raises(WeightsError, match=r"cannot download 'test-offline'.*pass the local file") as caught:
        download(unreachable, tmp_path / "cache", progress=False)
    assert "\n" not in str(caught.value)


def test_unknown_name() -> None:
    with pytest.raises(WeightsError, match="unknown pretrained weights 'squeezenet2'"):
        sq.pretrained("squeezenet2")


def test_resolve_prefers_local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve(tmp_path / "x.pth") == tmp_path / "x.pth"
    calls = []
    monkeypatch.setattr(registry, "download", lambda name: calls.append(name) or tmp_path / "cached.pth")
    assert resolve("1_1-caffe") == tmp_path / "cached.pth" and calls == ["1_1-caffe"]


def test_hubconf_loads_weights_like_torchvision() -> None:
    weights = shared_path("weights/caffe_v1.1/squeezenet_v1.1.caffemodel")
    model = torch.hub.load(str(REPO), "squeezenet1_1", source="local", weights=str(weights))
    assert isinstance(model, sq.SqueezeNet) and model.spec.name == "1_1" and not model.training
    assert model.preprocess == sq.get_preprocessing("caffe")
    fresh = torch.hub.load(str(REPO), "squeezenet1_0", source="local", num_classes=10)
    assert fresh.spec.name == "1_0" and fresh.spec.num_classes == 10
    with pytest.raises(WeightsError, match="architecture '1_0'"):
        torch.hub.load(str(REPO), "squeezenet1_0", source="local", weights=str(weights))


def test_a_mistyped_name_lists_the_known_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no file of these names here
    with pytest.raises(WeightsError) as caught:
        resolve("1_1-cafe")
    assert str(caught.value) == (f"unknown pretrained weights '1_1-cafe' (did you mean 1_1-caffe?); "
                                 f"known: {', '.join(REGISTRY)}; or give a file path")
    with pytest.raises(WeightsError, match=r"unknown pretrained weights '1_1-caffe\.v2' \(did you mean 1_1-caffe\?\)"):
        resolve("1_1-caffe.v2")
    with pytest.raises(WeightsError, match=r"unknown pretrained weights 'squeezenet'; known: 1_0-torchvision"):
        resolve("squeezenet")
    # paths stay paths: load then says the file is missing
    for path in ("weights.pth", "runs/1_1-caffe", "model.bin", "1_1-caffe.caffemodel"):
        assert resolve(path) == Path(path)
    (tmp_path / "1_1-cafe").write_bytes(b"")  # an existing file of that name is a file
    assert resolve("1_1-cafe") == Path("1_1-cafe")


def test_cli_reports_a_mistyped_name_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from squeezenet.cli import main

    monkeypatch.chdir(tmp_path)
    image = shared_path("data/imagenet-samples/labels.csv").parent
    assert main(["predict", "--weights", "1_1-cafe", str(next(image.glob("*.JPEG")))]) == 2
    error = capsys.readouterr().err
    assert "unknown pretrained weights '1_1-cafe' (did you mean 1_1-caffe?)" in error and "not found" not in error
