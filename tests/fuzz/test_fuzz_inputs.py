"""The other readers a user feeds files to: images (and the preprocessing after them), labels CSVs, YAML configs.

Images are the real ImageNet samples from ../shared, re-encoded, truncated, flipped and forged; the
labels CSV is the real one beside them, damaged line by line; the configs are hand-made and generated.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
import types
import typing
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from squeezenet.images import labelled_images, open_image
from squeezenet.preprocess import CAFFE, TORCHVISION
from squeezenet.train import TrainConfig, load_config

from ..conftest import shared_path
from . import mutate
from .harness import LONG, MEMORY_SLACK, check, check_all, fuzz_settings

SAMPLES = "data/imagenet-samples"

# -- images, then both preprocessing recipes --------------------------------------------------------


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png(width: int, height: int, bit_depth: int = 8, colour_type: int = 0, row: bytes | None = None,
         rows: int | None = None) -> bytes:
    """A PNG written by hand, so its header can claim any size: ``rows`` scanlines of ``row`` (zeros by default)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = row if row is not None else bytes(1 + math.ceil(width * channels * bit_depth / 8))
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _declared_pixels(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size[0] * image.size[1]
    except Exception:  # unreadable or refused as a bomb: nothing gets decoded
        return 0


def image_memory(name: str, data: bytes) -> int:
    """Images are bounded by their pixel count (Pillow's limit), not their file size: a 30 KB PNG may hold
    80 megapixels. Allow the decoded image a few times over (RGB copy, 16-bit values as float32)."""
    return MEMORY_SLACK + 24 * _declared_pixels(data)


def through_preprocessing(path: Path) -> tuple[str, tuple[int, int], list[tuple[int, ...]], bool]:
    image = open_image(path)
    tensors = [CAFFE(image), TORCHVISION(image)]
    return image.mode, image.size, [tuple(t.shape) for t in tensors], all(bool(t.isfinite().all()) for t in tensors)


def usable_image(name: str, result: object) -> str | None:
    mode, _, shapes, finite = result  # type: ignore[misc]
    if mode != "RGB" or shapes != [(3, 227, 227), (3, 224, 224)] or not finite:
        return f"gave mode {mode}, tensors {shapes}, finite {finite}"
    return None


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, Image.Image]:
    path = sorted(shared_path(SAMPLES).glob("*.JPEG"))[0]
    data = path.read_bytes()
    return data, Image.open(io.BytesIO(data)).convert("RGB")


def test_unusual_and_broken_images(tmp_path: Path, photo: tuple[bytes, Image.Image]) -> None:
    jpeg, rgb = photo
    small = rgb.resize((96, 72))
    gray16 = Image.fromarray(np.arange(96 * 72, dtype=np.uint16).reshape(72, 96) * 9)
    png = _encoded(small, "PNG")
    ihdr = png.index(b"IHDR")

    def forged_size(width: int, height: int, fix_crc: bool = True) -> bytes:
        header = bytearray(png[ihdr:ihdr + 17])
        header[4:12] = struct.pack(">II", width, height)
        crc = struct.pack(">I", zlib.crc32(bytes(header))) if fix_crc else png[ihdr + 17:ihdr + 21]
        return png[:ihdr] + bytes(header) + crc + png[ihdr + 21:]

    cases = {
        "zero_bytes.jpg": b"", "ten_bytes.jpg": jpeg[:10], "half.jpg": jpeg[: len(jpeg) // 2],
        "no_end_marker.jpg": jpeg[:-2], "header_only.jpg": jpeg[:600], "text.jpg": b"not an image at all\n",
        "png_signature_only.png": png[:8], "png_no_iend.png": png[:-12],
        "png_forged_60000x60000.png": forged_size(60000, 60000), "png_forged_9000x9000.png": forged_size(9000, 9000),
        "png_forged_0x0.png": forged_size(0, 0), "png_forged_1x1.png": forged_size(1, 1),
        "png_forged_size_bad_crc.png": forged_size(9000, 9000, fix_crc=False),
        "bomb_20000x20000.png": _png(20000, 20000, bit_depth=1),  # 400 megapixels of 1-bit zeros in 49 KB
        "bomb_12000x12000.png": _png(12000, 12000, bit_depth=1),  # over Pillow's warning limit: refused too
        "rows_missing.png": _png(640, 480, rows=10), "size_20000x20000.jpg": _png(20000, 20000, rows=1),
        "cmyk.jpg": _encoded(small.convert("CMYK"), "JPEG"), "ycbcr.jpg": _encoded(small.convert("YCbCr"), "JPEG"),
        "gray.jpg": _encoded(small.convert("L"), "JPEG"), "gray16.png": _encoded(gray16, "PNG"),
        "rgb16.png": _png(40, 30, bit_depth=16, colour_type=2), "palette.png": _encoded(small.convert("P"), "PNG"),
        "palette_transparent.png": _encoded(small.convert("P"), "PNG", transparency=0),
        "rgba.png": _encoded(small.convert("RGBA"), "PNG"), "gray_alpha.png": _encoded(small.convert("LA"), "PNG"),
        "one_bit.png": _encoded(small.convert("1"), "PNG"),
        "1x1.png": _encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
        "1x20000.png": _png(1, 20000), "20000x1.png": _png(20000, 1),
        "float.tif": _encoded(Image.fromarray(np.linspace(0, 1, 900, dtype=np.float32).reshape(30, 30)), "TIFF"),
        "int32.tif": _encoded(Image.fromarray(np.arange(900, dtype=np.int32).reshape(30, 30) * 1000), "TIFF"),
        "lab.tif": _encoded(small.convert("LAB"), "TIFF"), "gif.gif": _encoded(small, "GIF"),
        "webp.webp": _encoded(small, "WEBP"), "bmp.bmp": _encoded(small, "BMP"), "jpeg_named.png": jpeg,
    }
    if LONG:  # just under Pillow's limit: decoded in full (64 megapixels from 62 KB), a second or two
        cases["limit_8000x8000.png"] = _png(8000, 8000)
    outcomes = check_all("image", list(cases.items()), tmp_path, "", through_preprocessing, usable_image,
                         memory_limit=image_memory)
    kinds = {name: outcome.kind for name, outcome in zip(cases, outcomes, strict=True)}
    must_refuse = {"zero_bytes.jpg", "ten_bytes.jpg", "text.jpg", "png_signature_only.png", "bomb_20000x20000.png",
                   "bomb_12000x12000.png", "png_forged_60000x60000.png", "size_20000x20000.jpg"}
    assert sorted(name for name in must_refuse if kinds[name] != "refused") == []
    must_read = {"cmyk.jpg", "gray16.png", "rgb16.png", "palette.png", "palette_transparent.png", "rgba.png",
                 "1x1.png", "1x20000.png", "20000x1.png", "float.tif", "int32.tif", "lab.tif", "jpeg_named.png"}
    assert sorted(name for name in must_read if kinds[name] != "read") == []
    folder = tmp_path / "a_folder.jpg"
    folder.mkdir()
    check("image", b"", folder, lambda: open_image(folder), refuse=True)


@fuzz_settings(short=12, long=300)
@given(data_=st.data())
def test_jpeg_truncations_and_bit_flips(tmp_path: Path, photo: tuple[bytes, Image.Image], data_: st.DataObject) -> None:
    jpeg, _ = photo
    if data_.draw(st.booleans(), "truncate"):
        mutated = jpeg[: data_.draw(st.integers(0, len(jpeg) - 1), "length")]
    else:
        mutated = mutate.flip_bits(jpeg, data_.draw(st.one_of(mutate.bit_flips(0, 700), mutate.bit_flips(0, len(jpeg))),
                                                    "flips"))
    path = mutate.write_case(tmp_path, "mutated.jpg", mutated)
    check("image", mutated, path, lambda: through_preprocessing(path), lambda result: usable_image("", result),
          memory_limit=image_memory("", mutated))


# -- labels CSV --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labels() -> tuple[Path, bytes]:
    root = shared_path(SAMPLES)
    return root, (root / "labels.csv").read_bytes()


def labelled_correctly(root: Path) -> typing.Callable[[str, object], str | None]:
    def accept(name: str, result: object) -> str | None:
        items, class_names = result  # type: ignore[misc]
        if len(class_names) != 1000 or not items:
            return f"{len(items)} items, {len(class_names)} class names"
        bad = [(path, index) for path, index in items if not path.is_file() or not 0 <= index < 1000]
        return f"bad items {bad[:2]}" if bad else None
    return accept


def test_damaged_labels_csv(tmp_path: Path, labels: tuple[Path, bytes]) -> None:
    root, real = labels
    lines = real.splitlines(keepends=True)
    header, first = lines[0], lines[1]
    cases = {
        "empty": b"", "header_only": header, "no_header": b"".join(lines[1:]), "bom": b"\xef\xbb\xbf" + real,
        "utf16": real.decode().encode("utf-16"), "bad_utf8": real[:200] + b"\xff\xfe" + real[200:],
        "nul_byte": real[:200] + b"\x00" + real[200:], "lf_only": real.replace(b"\r\n", b"\n"),
        "cr_only": real.replace(b"\r\n", b"\r"), "negative_index": header + first.replace(b",0,", b",-1,"),
        "huge_index": header + first.replace(b",0,", b",99999999999999999999,"),
        "index_1000": header + first.replace(b",0,", b",1000,"),
        "float_index": header + first.replace(b",0,", b",1.0,"),
        "text_index": header + first.replace(b",0,", b",zero,"), "digit_string_index": header + first.replace(
            b",0,", b"," + b"9" * 5000 + b","), "extra_field": header + first.rstrip() + b",x\r\n",
        "missing_field": header + b"a.JPEG\r\n", "listed_twice": header + first + first,
        "missing_file": header + b"nope.JPEG,0,n01440764\r\n",
        "escaping_root": header + b"../../../etc/passwd,0,n0\r\n",
        "a_folder": header + b".,0,n0\r\n", "unterminated_quote": header + b'"unterminated,0,n\r\n',
        "huge_field": header + b"a" * 200_000 + b",0,n\r\n", "empty_filename": header + b",0,n\r\n",
        "blank_cells": header + b"  ,  ,  \r\n", "blank_lines": header + b"\r\n\r\n" + first,
        "columns_swapped": b"class_index,filename,wnid\r\n" + b"".join(
            b",".join([line.split(b",")[1], line.split(b",")[0], line.split(b",")[2]]) for line in lines[1:6]),
        "header_renamed": header.replace(b"class_index", b"label") + first,
        "one_column": b"filename\r\n" + b"a.JPEG\r\n", "many_columns": header.rstrip() + b"," * 5000 + b"\r\n",
    }
    check_all("labels_csv", list(cases.items()), tmp_path, ".csv", lambda path: labelled_images(root, path, 1000),
              labelled_correctly(root))


@fuzz_settings(short=12, long=300)
@given(line=st.integers(1, 500), column=st.integers(0, 2), cell=st.text(max_size=30))
def test_labels_csv_cells_replaced_by_any_text(tmp_path: Path, labels: tuple[Path, bytes], line: int, column: int,
                                               cell: str) -> None:
    root, real = labels
    lines = real.decode().splitlines()
    fields = lines[line].split(",")
    fields[column] = cell
    lines[line] = ",".join(fields)
    mutated = "\r\n".join(lines).encode("utf-8", "surrogatepass")
    path = mutate.write_case(tmp_path, "labels.csv", mutated)
    check("labels_csv", mutated, path, lambda: labelled_images(root, path, 1000),
          lambda result: labelled_correctly(root)("", result))


# -- YAML training configs ----------------------------------------------------------------------------


def _types_match(config: TrainConfig) -> str | None:
    """A config read from YAML must hold values of the declared types (as the CLI's flags would)."""
    hints = typing.get_type_hints(TrainConfig)
    for item in dataclasses.fields(TrainConfig):
        value = getattr(config, item.name)
        hint = hints[item.name]
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        ok = any(value is None if kind is type(None) else
                 (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
                 if kind is float else (isinstance(value, kind) and (kind is bool or not isinstance(value, bool)))
                 for kind in allowed)
        if not ok:
            return f"{item.name} = {value!r} is not a {hint}"
    return None


def read_and_validate(path: Path) -> TrainConfig:
    """What `squeezenet train --config FILE` does before anything else."""
    config = load_config(path)
    config.validate()
    return config


YAML_CASES = {
    "empty": b"", "a_list": b"- 1\n- 2\n", "a_scalar": b"42\n", "tab_indent": b"a:\n\t- b", "unknown_key": b"foo: 1\n",
    "python_tag": b"epochs: !!python/object/apply:os.system ['echo pwned']\n", "bad_utf8": b"epochs: \xff\xfe\n",
    "nul_byte": b"epochs: 1\x00\n", "int_key": b"1: 2\n", "null_key": b"~: 2\n", "list_key": b"? [1]\n: 2\n",
    "utf16": "epochs: 3\n".encode("utf-16"), "bom": b"\xef\xbb\xbfepochs: 3\n",
    "dashes": b"--epochs: 3\nbatch_size: 8\n", "lr_text": b"lr: abc\n", "warmup_text": b"warmup-epochs: x\n",
    "anchor_bomb": b"a: &a [x,x,x,x,x,x,x,x,x]\n" + b"".join(  # a billion-laughs expansion, 9**9 leaves
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n".encode() for p, k in zip("abcdefgh", "bcdefghi", strict=True)),
    "good": b"epochs: 3\nbatch-size: 64\nlr: 2e-4\narch: cifar\nschedule: cosine\n",
    "epochs_text": b"epochs: ten\n", "epochs_negative": b"epochs: -1\n", "batch_float": b"batch-size: 1.5\n",
    "schedule_unknown": b"schedule: foo\n", "lr_nan": b"lr: .nan\n", "epochs_mapping": b"epochs: {a: 1}\n",
    "keep_zero": b"keep: 0\n", "micro_zero": b"micro-batch: 0\n", "classes_text": b"num-classes: x\n",
    "deep_nesting": b"data: " + b"[" * 600 + b"]" * 600 + b"\n", "lr_bool": b"lr: true\n", "lr_inf": b"lr: .inf\n",
    "seed_text": b"seed: x\n", "device_int": b"device: 5\n", "workers_text": b"workers: x\n",
    "momentum_list": b"momentum: [1]\n", "time_limit_text": b"time-limit: x\n", "arch_list": b"arch: [1]\n",
    "out_int": b"out: 5\n", "bf16_text": b"bf16: yes-please\n", "image_size_bool": b"image-size: true\n",
    "batch_huge": b"batch-size: 99999999999999999999999\n", "lr_null": b"lr: ~\n", "keep_null": b"keep: ~\n",
    "checkpoint_null": b"checkpoint-every: ~\n", "momentum_nan": b"momentum: .nan\n",
    "warmup_inf": b"warmup-epochs: .inf\n",
}

@pytest.mark.parametrize("name", list(YAML_CASES))
def test_yaml_configs(tmp_path: Path, name: str) -> None:
    data = YAML_CASES[name]
    path = mutate.write_case(tmp_path, f"{name}.yaml", data)
    check("yaml_config", data, path, lambda: read_and_validate(path), _types_match)


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


@fuzz_settings(short=10, long=300)
@given(key=st.sampled_from([f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig)] + ["colour"]),
       value=YAML_VALUES)
def test_yaml_config_keys_given_any_value(tmp_path: Path, key: str, value: object) -> None:
    data = yaml.safe_dump({key: value}).encode()
    path = mutate.write_case(tmp_path, "generated.yaml", data)
    check("yaml_config", data, path, lambda: read_and_validate(path), _types_match)
