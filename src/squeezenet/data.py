"""The training datasets: the embedded digits, CIFAR-10, image folders and archives, and the data order.

Every bad file ends in a DataError with one line naming it. Small datasets
(the embedded digits, CIFAR-10) are decoded once and held as uint8 tensors;
augmentation runs on tensors with torchvision.transforms.v2, seeded per
sample so that the data a run sees is a pure function of (seed, epoch).
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .cache import cache_dir, memo_lock, read_memo, unpack, write_memo
from .errors import DataError, one_line
from .images import image_size, labelled_images, open_image
from .preprocess import TORCHVISION, Preprocessing

if TYPE_CHECKING:
    from torchvision.transforms import v2

SMALL_IMAGE_MAX = 64  # at or below this side length: pad-and-crop augmentation and (by default) in-memory caching
CACHE_LIMIT_BYTES = 4 << 30  # cache decoded images in memory up to this size (uint8)
DIGITS_TEST_SIZE = 360  # the fixed held-out split of load_digits (20%, stratified, random_state 0)

Key = tuple[int, int]  # (sample index, augmentation seed); the seed makes a sample's augmentation reproducible


def epoch_order(num_samples: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The order of the samples in an epoch and one augmentation seed per position.

    A pure function of (seed, epoch): a resumed run, any number of DataLoader workers and any
    number of DDP processes see exactly the same samples, augmented the same way.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(num_samples)
    seeds = rng.integers(0, 2**62, size=num_samples, dtype=np.int64)
    return order, seeds


def _mix(seeds: np.ndarray, salt: int) -> torch.Tensor:
    """Independent random bits from each seed (splitmix64's finaliser; uint64 arithmetic wraps by design)."""
    z = seeds.astype(np.uint64) + np.uint64((salt * 0x9E3779B97F4A7C15) % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return torch.from_numpy(((z ^ (z >> np.uint64(31))) >> np.uint64(2)).astype(np.int64))


def default_crop_padding(size: int) -> int:
    """Pad-and-crop's reach for small images: 1/8 of the side (4 pixels at 32x32), as in the CIFAR literature."""
    return max(1, size // 8)


class CachedImages(Dataset):
    """Decoded uint8 images (N, 3, H, W) held in memory; augmentation is pad-and-crop (+ flip), batched.

    Each sample's crop offset and flip come from its own seed, so a batch is augmented the same way
    however it is split into micro-batches or across processes.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: bool, flip: bool = True,
                 padding: int | None = None) -> None:
        self.images = images
        self.labels = labels
        self.augment = augment
        self.flip = flip
        self.padding = default_crop_padding(images.shape[-1]) if padding is None else padding

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> CachedImages:
        return CachedImages(self.images[indices], self.labels[indices], self.augment, self.flip, self.padding)

    def with_crop_padding(self, padding: int) -> CachedImages:
        return CachedImages(self.images, self.labels, self.augment, self.flip, padding)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int]:
        images, labels = self.batch([key])
        return images[0], int(labels[0])

    def batch(self, keys: Sequence[Key]) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.transforms.v2 import functional as F  # torchvision takes seconds to import: when used

        index = torch.tensor([k[0] for k in keys], dtype=torch.long)
        images, labels = self.images[index], self.labels[index]
        if not self.augment:
            return images, labels
        seeds = np.array([k[1] for k in keys], dtype=np.int64)
        pad = self.padding
        count, _, height, width = images.shape
        padded = F.pad(images, [pad])  # torchvision.transforms.v2: zero padding on the whole batch
        dy = _mix(seeds, 1) % (2 * pad + 1)
        dx = _mix(seeds, 2) % (2 * pad + 1)
        rows = (dy[:, None] + torch.arange(height))[:, :, None]  # (N, H, 1)
        cols = (dx[:, None] + torch.arange(width))[:, None, :]  # (N, 1, W)
        batch = torch.arange(count)[:, None, None]
        images = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
        if self.flip:
            flipped = (_mix(seeds, 3) & 1).bool()
            images[flipped] = F.horizontal_flip(images[flipped])
        return images, labels


class ImageFiles(Dataset):
    """Images decoded from disk per sample (ImageNet-size data): random-resized crop + flip, or the
    model's own preprocessing for evaluation. A file that fails to decode is dropped from its batch with a
    warning (``strict``: an error)."""

    def __init__(self, items: Sequence[tuple[Path, int]], image_size: int, augment: bool,
                 preprocessing: Preprocessing, strict: bool = False) -> None:
        self.items = list(items)
        self.labels = torch.tensor([label for _, label in self.items], dtype=torch.long)
        self.augment = augment
        self.preprocessing = preprocessing
        self.strict = strict
        self.image_size = image_size
        self.train_transform = self._augmentation(default_crop_padding(image_size))

    def _augmentation(self, padding: int) -> v2.Compose:
        from torchvision.transforms import v2

        size = self.image_size
        first = [v2.Resize([size, size], antialias=True), v2.RandomCrop(size, padding=padding)] \
            if size <= SMALL_IMAGE_MAX else [v2.RandomResizedCrop(size, antialias=True)]
        return v2.Compose([*first, v2.RandomHorizontalFlip(), v2.PILToTensor()])

    def with_crop_padding(self, padding: int) -> ImageFiles:
        chosen = copy.copy(self)
        chosen.train_transform = self._augmentation(padding)
        return chosen

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: torch.Tensor) -> ImageFiles:
        chosen = copy.copy(self)
        chosen.items = [self.items[i] for i in indices.tolist()]
        chosen.labels = self.labels[indices]
        return chosen

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int] | None:
        index, seed = key
        path, label = self.items[index]
        try:
            image = open_image(path)
        except DataError as error:
            if self.strict:
                raise
            warnings.warn(f"skipping unreadable image: {error}", stacklevel=2)
            return None
        if not self.augment:
            return self.preprocessing(image), label  # exactly what evaluation and inference will see
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.train_transform(image), label


def collate(samples: Sequence[tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a batch, leaving out samples that failed to decode."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long)
    return torch.stack([s[0] for s in kept]), torch.tensor([s[1] for s in kept], dtype=torch.long)


def batches(dataset: Dataset, keys: Sequence[Sequence[Key]],
            workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) for each list of keys, in order. Cached images are indexed directly (no
    worker processes needed); files go through a DataLoader with ``workers`` processes."""
    if isinstance(dataset, CachedImages):
        for batch_keys in keys:
            yield dataset.batch(batch_keys)
        return
    loader = DataLoader(dataset, batch_sampler=[list(k) for k in keys], num_workers=workers, collate_fn=collate,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    yield from loader


@dataclass
class Datasets:
    """A training set, an optional test set, and what a model trained on them needs to know."""

    name: str
    train: CachedImages | ImageFiles
    test: CachedImages | ImageFiles | None
    class_names: list[str]
    image_size: int
    preprocessing: Preprocessing  # how inference turns a PIL image into the model's input
    skipped: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB batch -> the float input the model expects (``Preprocessing.normalize``); already-float
        batches were preprocessed whole and pass through."""
        return self.preprocessing.normalize(images) if images.dtype == torch.uint8 else images


def load_datasets(source: str | Path, image_size: int | None = None, *, min_size: int = 1, strict: bool = False,
                  download: bool = False, cache: str = "auto", subset: int | None = None,
                  crop_padding: int | None = None, preprocessing: Preprocessing | None = None,
                  val_fraction: float | None = None, augment: bool = True) -> Datasets:
    """``source``: "digits" (embedded), "cifar10" (torchvision's), an ImageFolder folder (with train/ and
    val/ or test/ subfolders for a test split), or a .tar/.tar.gz/.tgz archive of one (unpacked once into
    cache_dir()). ``image_size`` defaults to the data's own size for small images (at least ``min_size``,
    the network's smallest input) and 224 otherwise. ``cache``: "auto" | "on" | "off" (decode once into memory).
    ``subset``: train on a fixed random N of the training images (the same N for every seed; for quick runs).
    ``crop_padding``: how far pad-and-crop moves small training images (default: default_crop_padding).
    ``preprocessing``: the recipe of the weights a model starts from, which then wins over the data's own:
    images are normalised as it says, at its crop size unless ``image_size`` is given.
    ``val_fraction``: a folder with no val/ or test/ split gets a fixed, stratified one of this share.
    ``augment``: False trains on the images exactly as they are scored.
    """
    if cache not in ("auto", "on", "off"):
        raise DataError(f"cache must be auto, on or off, got {cache!r}")
    if val_fraction is not None and not 0 <= val_fraction < 1:
        raise DataError(f"the validation fraction must be in [0, 1), got {val_fraction!r}")
    if preprocessing is not None and image_size is None:
        image_size = preprocessing.output_size[0] if preprocessing.output_size else 224
    text = str(source)
    if text == "digits":
        data = _digits(image_size or max(32, min_size))
    elif text == "cifar10":
        data = _torchvision_cifar10(image_size or max(32, min_size), download)
    else:
        path = Path(source).expanduser()
        name, memo = path.name, None
        if path.is_file() and path.name.lower().endswith((".tar", ".tar.gz", ".tgz")):
            name = path.name.split(".")[0]
            path = memo = unpack(path)  # our own cache folder: decoded images may be kept there too
        elif not path.exists():
            raise DataError(f"{path}: dataset not found (expected digits, cifar10, a folder or a .tar.gz archive)")
        data = _folder(path, name, image_size, min_size, strict, cache, memo, val_fraction or 0.0)
    if subset is not None and subset < len(data.train):
        if subset < 1:
            raise DataError(f"subset must be a positive number of images, got {subset}")
        chosen = np.sort(np.random.default_rng(0).permutation(len(data.train))[:subset])
        data.train = data.train.subset(torch.from_numpy(chosen))
    if crop_padding is not None:
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise DataError(f"crop padding must be an integer >= 0, got {crop_padding!r}")
        data.train = data.train.with_crop_padding(crop_padding)
    if preprocessing is not None:
        _use_recipe(data, preprocessing)
    data.train.augment = augment
    _check(data)
    return data


def _use_recipe(data: Datasets, recipe: Preprocessing) -> None:
    """Make ``recipe`` (a pretrained model's) the data's: normalisation as it says, at the data's image size.
    Cached images were squashed to that size already; files are resized and cropped as the recipe does,
    scaled to the size when it differs from the recipe's crop."""
    size = data.image_size
    if isinstance(data.train, CachedImages):
        data.preprocessing = recipe.replace(name=data.name, resize=size, resize_mode="squash", crop=None)
        return
    crop, resize = recipe.crop, recipe.resize
    if crop is not None and crop != size:
        resize = round(size * resize / crop) if resize is not None else None
    elif crop is None:
        resize, crop = size, None
    data.preprocessing = recipe.replace(name=data.name, resize=resize, crop=size if crop is not None else None)
    for split in (data.train, data.test):
        if split is not None:
            split.preprocessing = data.preprocessing


def _check(data: Datasets) -> None:
    if len(data.train.labels) == 0:
        raise DataError(f"{data.name}: the training set is empty")
    present = torch.unique(data.train.labels)
    if len(present) < 2:
        raise DataError(f"{data.name}: the training set holds only one class ({data.class_names[int(present[0])]!r});"
                        " a classifier needs at least two")
    for split in (data.train, data.test):
        labels = split.labels if split is not None else torch.empty(0)
        if len(labels) and (labels.min() < 0 or labels.max() >= data.num_classes):
            raise DataError(f"{data.name}: a label is outside 0..{data.num_classes - 1}")


def _small_preprocessing(name: str, size: int, images: torch.Tensor) -> Preprocessing:
    """Squash any image to size x size, then normalise with the training set's own channel statistics."""
    totals = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    per_image = max(1, images[0].numel()) if len(images) else 1
    for chunk in images.split(max(1, (1 << 22) // per_image)):  # float64 chunks of ~32 MB, at any image size
        values = chunk.to(torch.float64) / 255.0
        totals += values.sum(dim=(0, 2, 3))
        squares += (values * values).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = totals / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
    return Preprocessing(name=name, resize=size, resize_mode="squash", crop=None, channel_order="RGB", scale=1.0,
                         mean=tuple(round(float(v), 4) for v in mean),
                         std=tuple(max(round(float(v), 4), 1 / 256) for v in std))  # a flat channel stays finite


def _imagenet_preprocessing(name: str, size: int) -> Preprocessing:
    return TORCHVISION.replace(name=name, resize=round(size * 256 / 224), crop=size)


def _resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """A uint8 batch squashed to size x size as Preprocessing does it (PIL, bilinear, antialiased)."""
    from torchvision.transforms.v2 import functional as F

    if images.shape[-2:] == (size, size):
        return images
    return torch.stack([F.pil_to_tensor(F.resize(F.to_pil_image(image), [size, size], antialias=True))
                        for image in images])


def _cached(name: str, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor] | None,
            class_names: list[str], size: int, flip: bool, skipped: list[str] | None = None) -> Datasets:
    train_images = _resized(train[0], size)
    test_split = CachedImages(_resized(test[0], size), test[1], augment=False) if test is not None else None
    return Datasets(name, CachedImages(train_images, train[1], augment=True, flip=flip), test_split, class_names,
                    size, _small_preprocessing(name, size, train_images), skipped or [])


@functools.cache
def digits_split() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((train images, labels), (test images, labels)) of the digits at their own 8x8 size, uint8 RGB."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    gray = torch.from_numpy(np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8))
    images = gray[:, None].expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_index, test_index = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_SIZE,
                                               stratify=digits.target, random_state=0)
    train_index, test_index = torch.from_numpy(np.sort(train_index)), torch.from_numpy(np.sort(test_index))
    return (images[train_index], labels[train_index]), (images[test_index], labels[test_index])


def _digits(size: int) -> Datasets:
    """scikit-learn's 1,797 real 8x8 handwritten digit scans (values 0..16), as RGB; a fixed held-out test set.

    No flips: a mirrored digit is another shape.
    """
    train, test = digits_split()
    return _cached("digits", train, test, [str(d) for d in range(10)], size, flip=False)


def _torchvision_cifar10(size: int, download: bool) -> Datasets:
    from torchvision.datasets import CIFAR10

    root = cache_dir() / "torchvision"
    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise DataError(f"CIFAR-10 not found in {root} ({one_line(error)}); pass --download on a machine with "
                        "internet, or --data PATH/cifar10-jpeg.tar.gz") from None
    except OSError as error:
        raise DataError(f"CIFAR-10 download into {root} failed ({one_line(error)})") from None

    def tensors(split: CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(split.targets)

    return _cached("cifar10", tensors(train), tensors(test), list(train.classes), size, flip=True)


def image_folders(root: Path) -> tuple[Path, Path | None]:
    """The folders an ImageFolder tree's images are read from: its train/ and val/ (or test/), else the tree itself
    and no test folder; an archive's one top folder that holds train/ is looked into."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")] if root.is_dir() else []
    if len(entries) == 1 and entries[0].is_dir() and not (root / "train").is_dir():
        nested = entries[0]  # an archive that holds one top folder
        if (nested / "train").is_dir():
            root = nested
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    train_dir = root / "train" if (root / "train").is_dir() and test_dir is not None else root
    return train_dir, test_dir


def _folder(root: Path, name: str, image_size: int | None, min_size: int, strict: bool, cache: str,
            memo: Path | None, val_fraction: float = 0.0) -> Datasets:
    """An ImageFolder tree (train/ + val/ or test/ make a test split; without them, ``val_fraction`` of each
    class is held out). ``memo``: a folder where the decoded images of a cached dataset are also kept on disk,
    so the next run skips decoding."""
    train_dir, test_dir = image_folders(root)
    train_items, class_names = labelled_images(train_dir)
    test_items: list[tuple[Path, int]] = []
    if test_dir is not None:
        test_items, test_classes = labelled_images(test_dir)
        if test_classes != class_names:
            raise DataError(f"{test_dir}: its class folders differ from those of {train_dir}")
    elif val_fraction:
        train_items, test_items = _stratified_split(train_items, class_names, val_fraction, root)
    native = _first_size(train_items, train_dir)
    size = image_size or (max(native, min_size) if native <= SMALL_IMAGE_MAX else 224)
    count = len(train_items) + len(test_items)
    use_cache = cache == "on" or (cache == "auto" and size <= SMALL_IMAGE_MAX
                                  and count * 3 * size * size <= CACHE_LIMIT_BYTES)
    if use_cache:  # decode everything now: a corrupt file is found here, once
        split = f"-val{val_fraction:g}" if test_dir is None and val_fraction else ""
        memo_file = memo / f".decoded-{size}{split}.pt" if memo is not None else None
        # One process decodes while the others (DDP ranks) wait, then all map the same file: the decoded
        # images are in memory once, not once per process (CIFAR-10 at 160x160 is 4.6 GB).
        with memo_lock(memo_file):
            decoded = read_memo(memo_file, strict)
            if decoded is None:
                train = _decode_all(train_items, size, strict)
                test = _decode_all(test_items, size, strict) if test_items else None
                decoded = {"train": train[:2], "test": test[:2] if test else None,
                           "skipped": train[2] + (test[2] if test else [])}
                if write_memo(memo_file, decoded):
                    del train, test
                    decoded = read_memo(memo_file, strict) or decoded
        _warn_skipped(decoded["skipped"])
        if len(decoded["train"][1]) == 0:
            raise DataError(f"{train_dir}: no readable images")
        return _cached(name, decoded["train"], decoded["test"], class_names, size, flip=True,
                       skipped=decoded["skipped"])
    # Streamed from disk: headers are checked now (cheap); a file that fails later is dropped from its batch.
    train_items, skipped = _openable(train_items, strict)
    test_items, skipped_test = _openable(test_items, strict)
    skipped += skipped_test
    _warn_skipped(skipped)
    if not train_items:
        raise DataError(f"{train_dir}: no readable images")
    preprocessing = _imagenet_preprocessing(name, size) if size > SMALL_IMAGE_MAX else \
        TORCHVISION.replace(name=name, resize=size, resize_mode="squash", crop=None)
    train = ImageFiles(train_items, size, augment=True, preprocessing=preprocessing, strict=strict)
    test_split = ImageFiles(test_items, size, augment=False, preprocessing=preprocessing, strict=strict) \
        if test_items else None
    return Datasets(name, train, test_split, class_names, size, preprocessing, skipped)


def _stratified_split(items: list[tuple[Path, int]], class_names: list[str], fraction: float,
                      root: Path) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(train, val): ``fraction`` of each class's images (at least one) held out, chosen by a fixed seed, so
    every run and every training seed scores the same images."""
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for item in items:
        by_class.setdefault(item[1], []).append(item)
    train: list[tuple[Path, int]] = []
    val: list[tuple[Path, int]] = []
    generator = np.random.default_rng(0)
    for label in sorted(by_class):
        members = by_class[label]
        if len(members) < 2:
            raise DataError(f"{root}: class {class_names[label]!r} has {len(members)} image; a validation split "
                            "needs at least 2 per class (add images, or give train/ and val/ folders)")
        held = max(1, round(fraction * len(members)))
        chosen = set(generator.permutation(len(members))[:held].tolist())
        val += [item for index, item in enumerate(members) if index in chosen]
        train += [item for index, item in enumerate(members) if index not in chosen]
    return sorted(train), sorted(val)


def _first_size(items: list[tuple[Path, int]], folder: Path) -> int:
    """The larger side of the first image whose header reads (decides the recipe and the default size)."""
    for path, _ in items[:100]:
        try:
            return max(image_size(path))
        except DataError:
            continue
    raise DataError(f"{folder}: none of the first {min(len(items), 100)} images can be read")


def _decode_all(items: list[tuple[Path, int]], size: int,
                strict: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode a whole (small-image) split into one uint8 tensor, squashed to size x size; skip bad files."""
    from torchvision.transforms.v2 import functional as F

    images = torch.empty((len(items), 3, size, size), dtype=torch.uint8)
    labels, bad = [], []
    for path, label in items:
        try:
            image = open_image(path)
        except DataError as error:
            if strict:
                raise DataError(f"{error} (--strict makes unreadable images an error)") from None
            bad.append(str(path))
            continue
        if image.size != (size, size):
            image = F.resize(image, [size, size], antialias=True)
        images[len(labels)] = F.pil_to_tensor(image)
        labels.append(label)
    kept = images if len(labels) == len(items) else images[: len(labels)].clone()  # no copy unless files were bad
    return kept, torch.tensor(labels, dtype=torch.long), bad


def _openable(items: list[tuple[Path, int]], strict: bool) -> tuple[list[tuple[Path, int]], list[str]]:
    """Keep the files whose image header Pillow reads (no full decode: cheap even for ImageNet)."""
    kept, bad = [], []
    for path, label in items:
        try:
            image_size(path)
        except DataError as error:
            if strict:
                raise DataError(f"{error}; --strict makes unreadable images an error") from None
            bad.append(str(path))
            continue
        kept.append((path, label))
    return kept, bad


def _warn_skipped(bad: list[str]) -> None:
    if bad:
        names = ", ".join(Path(b).name for b in bad[:3]) + (" ..." if len(bad) > 3 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image(s): {names}", stacklevel=4)
