"""Images as RGB from any file, labelled folders and CSVs, and the training datasets (digits, CIFAR, folders)."""

from __future__ import annotations

import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from squeezenet import DataError
from squeezenet.data import CachedImages, epoch_order, load_datasets
from squeezenet.images import labelled_images, open_image

from .conftest import shared_path

TENCH = "data/imagenet-samples/n01440764_tench.JPEG"


# -- open_image ----------------------------------------------------------------------------------------------------


def test_open_image_real_jpeg_grayscale_becomes_rgb():
    gray = shared_path("data/imagenet-samples/n02676566_acoustic_guitar.JPEG")
    with Image.open(gray) as raw:
        assert raw.mode == "L"
        pixel = raw.getpixel((10, 10))
    image = open_image(gray)
    assert image.mode == "RGB" and image.getpixel((10, 10)) == (pixel,) * 3


def test_open_image_modes(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 16-bit values up to 65,520
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    image = open_image(tmp_path / "g16.png")
    assert image.getpixel((63, 63)) == (255, 255, 255)  # scaled, not clipped: the middle stays gray
    assert image.getpixel((0, 32))[0] == round(32 * 64 * 16 * 255 / 65535)

    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(tmp_path / "cmyk.jpg")
    red, green, blue = open_image(tmp_path / "cmyk.jpg").getpixel((0, 0))
    assert red > 200 and green < 60 and blue > 200  # magenta

    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert open_image(tmp_path / "clear.png").getpixel((0, 0)) == (255, 255, 255)  # over white, not black
    Image.new("LA", (8, 8), (10, 255)).save(tmp_path / "la.png")
    assert open_image(tmp_path / "la.png").getpixel((0, 0)) == (10, 10, 10)
    palette = Image.new("P", (8, 8), 3)
    palette.putpalette([0, 0, 0] * 3 + [200, 100, 50] + [0, 0, 0] * 252)
    palette.save(tmp_path / "p.png")
    assert open_image(tmp_path / "p.png").getpixel((0, 0)) == (200, 100, 50)


def test_open_image_bad_files_name_the_file(tmp_path):
    (tmp_path / "text.jpg").write_bytes(b"not an image")
    data = shared_path(TENCH).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    for name, words in (("text.jpg", "not an image"), ("cut.jpg", "corrupt"), ("absent.jpg", "not found")):
        with pytest.raises(DataError, match=words) as caught:
            open_image(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(DataError, match="is a folder"):
        open_image(tmp_path)


def test_open_image_refuses_decompression_bombs(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # 10,000 pixels: over the limit (Pillow's warning)
    with pytest.raises(DataError, match="decompression bomb"):
        open_image(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # over twice the limit (Pillow's error)
    with pytest.raises(DataError, match="too large"):
        open_image(tmp_path / "big.png")


# -- labelled_images -----------------------------------------------------------------------------------------------


def test_labelled_images_from_the_real_csv():
    folder = shared_path("data/imagenet-samples")
    items, names = labelled_images(folder, num_classes=1000)
    assert len(items) == 500 and len(names) == 1000
    assert items[0] == (folder / "n01440764_tench.JPEG", 0)
    assert names[0] == "n01440764" and names[1] == "1"  # odd classes have no sample here
    assert all(index % 2 == 0 for _, index in items)


def _tree(root: Path, layout: dict[str, int]) -> Path:
    source = Image.open(shared_path(TENCH)).convert("RGB").resize((40, 30))
    for name, count in layout.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            source.rotate(10 * i).save(root / name / f"{i}.jpg")
    return root


def test_labelled_images_from_a_tree(tmp_path):
    root = _tree(tmp_path / "d", {"zebra": 2, "ant": 3})
    (root / "ant" / "notes.txt").write_text("ignored")
    (root / "ant" / "deeper").mkdir()
    Image.new("RGB", (4, 4)).save(root / "ant" / "deeper" / "x.png")
    items, names = labelled_images(root)
    assert names == ["ant", "zebra"]
    assert [label for _, label in items] == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize(("text", "words"), [
    ("name,label\na.jpg,0\n", "header"),
    ("filename,class_index\na.jpg,x\n", "line 2: class_index 'x' is not an integer"),
    ("filename,class_index\na.jpg,-1\n", "line 2: class_index -1 is out of range"),
    ("filename,class_index\na.jpg,12\n", "out of range \\(the model has 10 classes\\)"),
    ("filename,class_index\na.jpg,0\na.jpg,1\n", "line 3: a.jpg is listed twice"),
    ("filename,class_index\na.jpg,0,extra\n", "line 2: expected 2 fields"),
    ("filename,class_index\nmissing.jpg,0\n", "1 listed file\\(s\\) missing .*missing.jpg"),
    ("", "empty"),
    ("filename,class_index\n", "lists no images"),
])
def test_labels_csv_errors(tmp_path, text, words):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.jpg")
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DataError, match=words) as caught:
        labelled_images(tmp_path, tmp_path / "labels.csv", num_classes=10)
    assert "labels.csv" in str(caught.value)


def test_labelled_images_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        labelled_images(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no class subfolders and no labels\.csv"):
        labelled_images(tmp_path)
    (tmp_path / "cats").mkdir()
    with pytest.raises(DataError, match="no images found"):
        labelled_images(tmp_path)


# -- the data order and augmentation --------------------------------------------------------------------------------


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    order, seeds = epoch_order(1000, seed=7, epoch=3)
    again, seeds_again = epoch_order(1000, seed=7, epoch=3)
    assert np.array_equal(order, again) and np.array_equal(seeds, seeds_again)
    assert sorted(order) == list(range(1000))
    assert not np.array_equal(order, epoch_order(1000, seed=7, epoch=4)[0])
    assert not np.array_equal(order, epoch_order(1000, seed=8, epoch=3)[0])


def test_cached_augmentation_depends_on_the_sample_seed_only():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=generator)
    data = CachedImages(images, torch.arange(16), augment=True)
    keys = [(i, 1000 + i) for i in range(16)]
    whole, labels = data.batch(keys)
    parts = torch.cat([data.batch(keys[:5])[0], data.batch(keys[5:])[0]])
    assert torch.equal(whole, parts) and labels.tolist() == list(range(16))
    assert not torch.equal(whole, images)  # something was shifted or flipped
    shifted = data.batch([(0, 99)])[0][0]
    # Every output is a 32x32 window of the zero-padded image, possibly mirrored.
    padded = torch.nn.functional.pad(images[0], [4, 4, 4, 4])
    windows = [padded[:, y:y + 32, x:x + 32] for y in range(9) for x in range(9)]
    assert any(torch.equal(shifted, w) or torch.equal(shifted, w.flip(-1)) for w in windows)
    plain = CachedImages(images, torch.arange(16), augment=False)
    assert torch.equal(plain.batch(keys)[0], images)


# -- datasets ------------------------------------------------------------------------------------------------------


def test_digits_dataset():
    data = load_datasets("digits")
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.image_size == 32 and data.class_names == [str(d) for d in range(10)]
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(data.test.labels).min() >= 35  # stratified: every digit is in the test split
    assert data.train.flip is False  # a mirrored digit is another shape
    assert data.preprocessing.resize == 32 and data.preprocessing.crop is None
    batch = data.normalize(data.train.images[:64])
    assert abs(float(data.normalize(data.train.images).mean())) < 0.05 and batch.dtype == torch.float32
    assert torch.equal(load_datasets("digits").test.images, data.test.images)  # a fixed split
    assert load_datasets("digits", 48, subset=100).train.images.shape == (100, 3, 48, 48)


def test_image_folder_with_corrupt_files(tmp_path):
    root = _tree(tmp_path / "set", {"a": 3, "b": 3})
    (root / "b" / "9.jpg").write_bytes(b"junk")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): 9.jpg"):
        data = load_datasets(root, 32)
    assert isinstance(data.train, CachedImages) and len(data.train) == 6 and data.skipped == [str(root / "b/9.jpg")]
    with pytest.raises(DataError, match=r"9\.jpg.*--strict"):
        load_datasets(root, 32, strict=True)


def test_image_folder_streamed_from_disk(tmp_path):
    root = _tree(tmp_path / "set", {"a": 2, "b": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_datasets(root)  # 40x30 images: small, but cache off below
    assert isinstance(data.train, CachedImages)
    files = load_datasets(root, 64, cache="off")
    assert files.preprocessing.resize == 64 and files.test is None
    image, label = files.train[(1, 5)]
    again, _ = files.train[(1, 5)]
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8 and torch.equal(image, again) and label == 0
    large = load_datasets(root, 96, cache="off")
    assert large.preprocessing.crop == 96 and large.preprocessing.resize_mode == "short_side"


def test_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="dataset not found"):
        load_datasets(tmp_path / "nothing")
    one = _tree(tmp_path / "one", {"only": 2})
    with pytest.raises(DataError, match="only one class"):
        load_datasets(one)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_datasets(tmp_path / "empty")


def test_cifar_style_archive_unpacks_once(tmp_path, monkeypatch):
    """A small tar.gz in the CIFAR-10 JPEG layout, made of real CIFAR images from the shared archive."""
    source = shared_path("data/cifar10-jpeg.tar.gz")
    archive = tmp_path / "mini.tar.gz"
    wanted = {("train", "bird"): 4, ("train", "cat"): 4}
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(source) as full, tarfile.open(archive, "w:gz") as mini:
        for member in full:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and counts.get((parts[0], parts[1]), 0) < wanted.get(
                    (parts[0], parts[1]), 0):
                counts[parts[0], parts[1]] = counts.get((parts[0], parts[1]), 0) + 1
                for split in ("train", "test"):  # the same images serve as a test split here
                    copy = tarfile.TarInfo(f"{split}/{parts[1]}/{parts[2]}")
                    copy.size = member.size
                    mini.addfile(copy, full.extractfile(member))
            if counts == wanted:
                break
    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path / "cache"))
    data = load_datasets(archive)
    assert data.name == "mini" and data.class_names == ["bird", "cat"] and data.image_size == 32
    assert len(data.train) == 8 and len(data.test) == 8 and data.train.flip
    unpacked = list((tmp_path / "cache" / "datasets").iterdir())
    assert len(unpacked) == 1 and (unpacked[0] / ".decoded-32.pt").is_file()
    again = load_datasets(archive)  # from the decoded memo, not the JPEGs
    assert torch.equal(again.train.images, data.train.images)


def _moves(original: torch.Tensor, augmented: torch.Tensor, reach: int = 8) -> set[tuple[int, int]]:
    """How far each augmented image was moved from its original (no pixel of the originals is 0, so the zero
    padding that pad-and-crop brings in shows where the crop was taken)."""
    padded = torch.nn.functional.pad(original, [reach] * 4)
    size = original.shape[-1]
    moves = set()
    for image, source in zip(augmented, padded, strict=True):
        found = [(dy - reach, dx - reach) for dy in range(2 * reach + 1) for dx in range(2 * reach + 1)
                 if torch.equal(source[:, dy:dy + size, dx:dx + size], image)]
        assert len(found) == 1, "not a crop of the padded original"
        moves.add(found[0])
    return moves


def test_crop_padding_sets_how_far_pad_and_crop_moves_small_images():
    torch.manual_seed(0)
    images = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    keys = [(i, 1000 + i) for i in range(64)]
    default = CachedImages(images, labels, augment=True, flip=False)  # 1/8 of 32: up to 4 pixels
    assert max(max(map(abs, move)) for move in _moves(images, default.batch(keys)[0])) == 4
    near = default.with_crop_padding(2).batch(keys)[0]
    moves = _moves(images, near)
    assert max(max(map(abs, move)) for move in moves) == 2 and len(moves) > 5
    assert torch.equal(default.with_crop_padding(0).batch(keys)[0], images)  # no padding: no move
    assert load_datasets("digits", 32, crop_padding=2).train.padding == 2
    with pytest.raises(DataError, match="crop padding must be an integer >= 0"):
        load_datasets("digits", 32, crop_padding=-1)
