"""Reading images: any image file as RGB, image listing, and labelled collections (class folders or a CSV).

Every bad file ends in a DataError with one line naming it; decoding happens at once, so a corrupt file
fails where it is opened, not in the middle of a batch.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from .errors import DataError, one_line
from .files import is_regular, printable, regular_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
# Pillow's decoders for those formats (its JPEG one also opens a phone's MPO files). Only these are tried, so a
# file named .jpg that is really EPS never reaches Pillow's Ghostscript path, nor any other exotic decoder.
DECODERS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
EXIF_ORIENTATION = 0x0112

def set_max_image_pixels(pixels: int | None) -> None:
    """Raise (or lower) the decompression-bomb limit for files the user trusts; None keeps Pillow's default
    (about 89 megapixels). Pillow's limit is one setting for the whole process."""
    if pixels is not None:
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
            raise DataError(f"--max-image-pixels must be a positive integer, got {pixels!r}")
        Image.MAX_IMAGE_PIXELS = pixels


def open_image(path: str | Path, exif_transpose: bool = True) -> Image.Image:
    """Any image file -> an RGB PIL image, decoded now (so a corrupt file fails here, not later).

    Handles CMYK, 16-bit and float grayscale (scaled to 8 bits, not clipped), palette images,
    transparency (composited over white, so transparent areas do not turn black) and grayscale.
    Unreadable files and decompression bombs raise DataError naming the file. A photo's EXIF
    orientation is applied (a phone's sideways picture comes out upright, as it is shown); the
    ImageNet samples carry no orientation, so their scores do not change. Pictures larger than
    ``set_max_image_pixels`` allows are refused.
    """
    path = regular_file(path, DataError, "image file")
    return _decode(path, printable(path), exif_transpose)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header alone: cheap even for ImageNet; DataError when the file is not an image
    we read."""
    path = regular_file(path, DataError, "image file")
    try:
        with _open(path) as image:
            return image.size
    except UnidentifiedImageError:
        raise DataError(f"{printable(path)}: not an image in a format we read ({', '.join(DECODERS)})") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as error:
        raise DataError(f"{printable(path)}: corrupt or unreadable image ({one_line(error)})") from None


def decode_image(data: bytes, name: str, exif_transpose: bool = True) -> Image.Image:
    """``open_image`` for bytes already in memory (an upload); errors name the image as ``name``."""
    if not data:
        raise DataError(f"{name}: empty image")
    return _decode(io.BytesIO(data), name, exif_transpose)


def _decode(source: Path | BinaryIO, name: str, exif_transpose: bool) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(source) as opened:  # leaving it closes the file; the decoded picture stays
                _check_decoded_size(opened, name)
                opened.load()
                turned = exif_transpose and opened.getexif().get(EXIF_ORIENTATION, 1) not in (1, None)
                image = ImageOps.exif_transpose(opened) if turned else opened  # no copy of an upright picture
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own limit (Image.MAX_IMAGE_PIXELS, about 89 megapixels); its warning is an error here.
        raise DataError(
            f"{name}: image too large (over {Image.MAX_IMAGE_PIXELS or 0:,} pixels); refused as a possible "
            "decompression bomb (--max-image-pixels N raises the limit if you trust the file)"
        ) from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image in a format we read ({', '.join(DECODERS)})") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as error:
        raise DataError(f"{name}: corrupt or unreadable image ({one_line(error)})") from None
    try:
        return _to_rgb(image)
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"{name}: cannot convert image mode {image.mode!r} to RGB ({one_line(error)})") from None


def _open(source: Path | BinaryIO) -> Image.Image:
    """Pillow's lazy open (the header only), trying only DECODERS."""
    Image.init()  # registers every plugin once (formats= names only registered ones); cheap after the first
    return Image.open(source, formats=DECODERS)


def _check_decoded_size(image: Image.Image, name: str) -> None:
    """Bound the decoded bytes, not only the pixels: an RGBA, 16-bit or float picture holds up to 4 times the
    bytes of a gray one of the same size, and a few hundred KB of PNG can describe it. The bound is the RGB size
    of the largest picture the pixel limit admits."""
    limit = 3 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
    mode = ImageMode.getmode(image.mode)
    decoded = image.width * image.height * len(mode.bands) * np.dtype(mode.typestr).itemsize
    if decoded > limit:
        raise DataError(f"{name}: image of {image.width}x{image.height} {image.mode} pixels would decode to "
                        f"{decoded:,} bytes, over the limit of {limit:,}; refused as a possible decompression bomb "
                        "(--max-image-pixels N raises the limit if you trust the file)")


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's convert() clips these to 0..255, which turns most 16-bit images white. Scaled a block of rows
        # at a time: float temporaries of the whole picture would take several times its size.
        highest = image.getextrema()[1] if image.width and image.height else 0
        top = (1.0 if highest <= 1.0 else 255.0) if mode == "F" else (65535.0 if highest > 255 else 255.0)
        gray = np.empty((image.height, image.width), dtype=np.uint8)
        for start in range(0, image.height, 256):
            rows = np.asarray(image.crop((0, start, image.width, min(start + 256, image.height))), dtype=np.float64)
            gray[start:start + 256] = np.clip(np.rint(rows * (255.0 / top)), 0, 255)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))  # over white, in place: no full-size RGBA copies
        return background
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def labelled_images(
    root: str | Path, labels_csv: str | Path | None = None, num_classes: int | None = None,
    allow_outside: bool = False,
) -> tuple[list[tuple[Path, int]], list[str]]:
    """A labelled image collection -> ([(path, class_index)], class_names).

    Two layouts: an ImageFolder tree (one subfolder per class, classes in sorted name order), or a
    flat folder with a CSV whose header has ``filename`` and ``class_index`` columns (extra columns
    are allowed; a ``class_name``, ``name`` or ``wnid`` column names the classes). Without
    ``labels_csv``, a ``labels.csv`` beside the images is used when there are no class subfolders.
    ``num_classes`` fixes the number of classes for a CSV (indices must be below it). A CSV's file names are
    inside ``root``: ``../`` or an absolute path is refused unless ``allow_outside`` (a CSV from elsewhere must
    not make us read any file on the machine).
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder of images (or an ImageFolder tree), got a file")
    if labels_csv is not None:
        return _from_csv(root, Path(labels_csv), num_classes, allow_outside)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_dirs:
        return _from_tree(root, class_dirs, num_classes)
    if (root / "labels.csv").is_file():
        return _from_csv(root, root / "labels.csv", num_classes, allow_outside)
    raise DataError(f"{root}: no class subfolders and no labels.csv; cannot tell the labels of the images")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_images(folder: str | Path, *, recursive: bool = True, allow_empty: bool = False) -> list[Path]:
    """The image files in ``folder`` (and its subfolders when ``recursive``), sorted by path, hidden files skipped.

    The one listing that class folders, ``predict DIR`` and int8 calibration share. DataError when the folder
    is missing or, unless ``allow_empty``, holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(path for path in candidates if _is_image(path))
    if not files and not allow_empty:
        raise DataError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def _from_tree(root: Path, class_dirs: Sequence[Path],
               num_classes: int | None) -> tuple[list[tuple[Path, int]], list[str]]:
    class_names = [d.name for d in class_dirs]
    if num_classes is not None and len(class_names) > num_classes:
        raise DataError(f"{root}: {len(class_names)} class folders but the model has {num_classes} classes")
    items: list[tuple[Path, int]] = []
    empty: list[str] = []
    for index, class_dir in enumerate(class_dirs):
        files = list_images(class_dir, allow_empty=True)
        if not files:
            empty.append(class_dir.name)
        items.extend((p, index) for p in files)
    if not items:
        raise DataError(f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} in class subfolders)")
    if empty:
        warnings.warn(f"{root}: {len(empty)} class folder(s) hold no images: {', '.join(empty[:5])}", stacklevel=3)
    return items, class_names


_NAME_COLUMNS = ("class_name", "name", "wnid")


def _from_csv(root: Path, labels_csv: Path, num_classes: int | None,
              allow_outside: bool) -> tuple[list[tuple[Path, int]], list[str]]:
    labels_csv = regular_file(labels_csv, DataError, "labels file")
    try:
        with open(labels_csv, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{labels_csv}: cannot read labels file ({one_line(error)})") from None
    if not rows:
        raise DataError(f"{labels_csv}: labels file is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    if "filename" not in header or "class_index" not in header:
        raise DataError(f"{labels_csv}: the first line must be a header naming 'filename' and 'class_index' columns")
    file_col, index_col = header.index("filename"), header.index("class_index")
    name_col = next((header.index(c) for c in _NAME_COLUMNS if c in header), None)
    items: list[tuple[Path, int]] = []
    names: dict[int, str] = {}
    seen: set[str] = set()
    missing: list[str] = []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        where = f"{labels_csv} line {line_number}"
        if len(row) != len(header):
            raise DataError(f"{where}: expected {len(header)} fields like the header, got {len(row)}")
        filename = row[file_col].strip()
        if not filename:
            raise DataError(f"{where}: empty filename")
        filename = os.path.normpath(filename)  # ./x.JPEG and x.JPEG are one image
        leaves = os.path.isabs(filename) or filename == os.pardir or filename.startswith(os.pardir + os.sep)
        if leaves and not allow_outside:  # by the name: a symbolic link inside the folder may point anywhere
            raise DataError(f"{where}: {printable(filename)} is outside the data folder {printable(root)} "
                            "(--allow-outside-data reads it anyway)")
        try:
            index = int(row[index_col])
        except ValueError:
            raise DataError(f"{where}: class_index {row[index_col]!r} is not an integer") from None
        if index < 0 or (num_classes is not None and index >= num_classes):
            bound = f" (the model has {num_classes} classes)" if num_classes is not None else ""
            raise DataError(f"{where}: class_index {index} is out of range{bound}")
        if filename in seen:
            raise DataError(f"{where}: {printable(filename)} is listed twice")
        seen.add(filename)
        path = root / filename
        if not is_regular(path):
            missing.append(filename)
            continue
        items.append((path, index))
        if name_col is not None:
            names.setdefault(index, row[name_col].strip())
    if missing:
        raise DataError(
            f"{labels_csv}: {len(missing)} listed file(s) missing from {root}: "
            f"{', '.join(printable(name) for name in missing[:3])}"
            + (" ..." if len(missing) > 3 else "")
        )
    if not items:
        raise DataError(f"{labels_csv}: lists no images")
    count = num_classes if num_classes is not None else max(index for _, index in items) + 1
    class_names = [names.get(i, str(i)) for i in range(count)]
    return items, class_names


# -- training datasets -----------------------------------------------------------------------------------------------
