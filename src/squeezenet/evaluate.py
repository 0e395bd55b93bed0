"""Top-1/top-5 over a labelled image set, and top-k predictions for single images.

The model is a ``Classifier`` (deploy.backends): a SqueezeNet, or a backend
(ONNX Runtime, OpenVINO) that carries the same ``meta``. Images go through
its own preprocessing (``meta.preprocessing``, set by the weights loader or
the exported file) unless another recipe is given, so Caffe weights see
BGR 0-255 minus the mean and torchvision weights their normalised RGB.
Evaluation is batched with a DataLoader; decoding and resizing are the slow
part on CPU, so ``workers`` > 0 overlaps them with the forward passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .errors import DataError, SqueezeNetError
from .images import open_image
from .model import ModelMeta
from .preprocess import Preprocessing, get_preprocessing
from .spec import MAX_BATCH

if TYPE_CHECKING:
    from .deploy.backends import Classifier


def _meta(model: Classifier) -> ModelMeta:
    meta = getattr(model, "meta", None)
    if not isinstance(meta, ModelMeta):
        raise DataError(f"{getattr(model, 'name', type(model).__name__)}: carries no model metadata (spec, "
                        "preprocessing); predict and evaluate need a SqueezeNet or a backend built from one")
    return meta


def _resolve_preprocessing(model: Classifier, preprocess: str | Preprocessing | None) -> Preprocessing:
    if preprocess is not None:
        return get_preprocessing(preprocess)
    recipe = _meta(model).preprocessing
    if recipe is None:
        raise DataError("the model carries no preprocessing (weights without one); pass preprocess= or --preprocess")
    return recipe


class _Images(Dataset):
    """(path, label) pairs -> (preprocessed tensor, label); a bad image fails with its name."""

    def __init__(self, items: Sequence[tuple[Path, int]], preprocess: Preprocessing) -> None:
        self.items = list(items)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        return self.preprocess(open_image(path)), label


MAX_WORKERS = 64


def _image_batches(items: Sequence[tuple[Path, int]], recipe: Preprocessing, batch_size: int,
                   workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if not items:
        raise DataError("no images to run the model on")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise DataError(f"--batch-size must be an integer from 1 to {MAX_BATCH:,}, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= MAX_WORKERS:
        raise DataError(f"--workers must be an integer from 0 to {MAX_WORKERS}, got {workers!r}")
    return _unwrapped(DataLoader(_Images(items, recipe), batch_size=batch_size, num_workers=workers))


def _unwrapped(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, with an error raised in a worker process given back as the one line it had: torch
    re-raises it in this process with the worker's whole traceback as its message."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except SqueezeNetError as error:
            if "\n" not in str(error):  # raised in this process: already one line
                raise
            kind = type(error)
            last = next(line for line in reversed(str(error).splitlines()) if line.strip())
            raise kind(last.removeprefix(f"{kind.__module__}.{kind.__qualname__}: ")) from None
        yield batch


@contextlib.contextmanager
def as_function(model: Classifier) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """``model`` as a function from a CPU batch to CPU float logits.

    A backend is that already. A torch module (a SqueezeNet) runs in eval mode
    on its own device, and its training flag is restored afterwards.
    """
    if not isinstance(model, nn.Module):
        yield lambda batch: model(batch).float()
        return
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        yield lambda batch: model(batch.to(device)).float().cpu()
    finally:
        model.train(was_training)


def logits(model: Classifier, items: Sequence[tuple[Path, int]] | Sequence[Path],
           preprocess: str | Preprocessing | None = None, batch_size: int = 32, workers: int = 0,
           progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, classes), labels (N,)) for images given as paths or (path, label) pairs (label -1 if none)."""
    recipe = _resolve_preprocessing(model, preprocess)
    pairs = [item if isinstance(item, tuple) else (Path(item), -1) for item in items]
    outputs, labels = [], []
    with as_function(model) as run, torch.inference_mode(), \
            tqdm(total=len(pairs), unit="img", disable=not progress, leave=False) as bar:
        for batch, batch_labels in _image_batches(pairs, recipe, batch_size, workers):
            outputs.append(run(batch))
            labels.append(batch_labels)
            bar.update(len(batch_labels))
    return torch.cat(outputs), torch.cat(labels)


@dataclass(frozen=True)
class Accuracy:
    """Top-1 and top-5 as fractions in [0, 1] over ``n`` images, and the mean cross-entropy. ``top5`` is None
    for 5 classes or fewer, where every image would count as a top-5 hit. ``dead_classes``: outputs whose
    logit was 0 on every image (ReLU before the pool), which can never be predicted."""

    top1: float
    top5: float | None
    n: int
    loss: float
    dead_classes: int

    def to_dict(self) -> dict[str, float | int]:
        scores = {"top1": self.top1, "top5": self.top5, "n": self.n}
        return {key: value for key, value in scores.items() if value is not None}


class Tally:
    """Running sums over scored batches. ``sums`` and ``alive`` are plain tensors, so the processes of a
    distributed run can all-reduce them before ``accuracy()``; one process scoring alone just calls it."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1 hits, top-5 hits, images
        self.alive = torch.zeros(num_classes, dtype=torch.float64, device=device)  # images with a logit != 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits, labels = logits.float(), labels.to(logits.device)
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
        self.sums += torch.stack([F.cross_entropy(logits, labels, reduction="sum"), hits[:, 0].sum(),
                                  hits.any(dim=1).sum(), torch.tensor(len(labels), device=logits.device)]).double()
        self.alive += (logits != 0).sum(dim=0).double()

    def accuracy(self) -> Accuracy:
        loss, top1, top5, n = self.sums.tolist()
        if n == 0:
            raise DataError("no images were scored")
        return Accuracy(top1 / n, top5 / n if self.num_classes > 5 else None, int(n), loss / n,
                        int((self.alive == 0).sum()))


def score(model: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
          num_classes: int, *, progress: bool = False, total: int | None = None) -> Accuracy:
    """The one evaluation core: top-1/top-5 (and loss) of ``model`` over (inputs, labels) batches. ``model`` is
    anything that maps a batch to logits: a SqueezeNet in eval mode, or an inference backend."""
    tally = Tally(num_classes)
    with torch.inference_mode(), tqdm(total=total, unit="img", disable=not progress, leave=False) as bar:
        for inputs, labels in batches:
            tally.add(model(inputs).cpu(), labels)
            bar.update(len(labels))
    return tally.accuracy()


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> Accuracy:
    """Top-1/top-5 of scores (N, classes) computed already, against integer labels (N,)."""
    tally = Tally(scores.shape[1])
    tally.add(scores, labels)
    return tally.accuracy()


def evaluate(model: Classifier, items: Sequence[tuple[Path, int]], preprocess: str | Preprocessing | None = None,
             batch_size: int = 32, workers: int = 0, progress: bool = False) -> Accuracy:
    """Top-1/top-5 of ``model`` (a SqueezeNet or a deploy backend) over labelled images (e.g. from
    images.labelled_images); top-5 is None for 5 classes or fewer."""
    num_classes = _meta(model).spec.num_classes
    bad = next(((path, label) for path, label in items if not 0 <= label < num_classes), None)
    if bad is not None:
        raise DataError(f"{bad[0]}: label {bad[1]} is outside the model's {num_classes} classes")
    batches = _image_batches(items, _resolve_preprocessing(model, preprocess), batch_size, workers)
    with as_function(model) as run:
        return score(run, batches, num_classes, progress=progress, total=len(items))


@dataclass(frozen=True)
class Prediction:
    class_index: int
    name: str
    probability: float


def predict(model: Classifier, images: Sequence[str | Path], topk: int = 5,
            preprocess: str | Preprocessing | None = None) -> list[list[Prediction]]:
    """The ``topk`` most probable classes (softmax of the logits) for each image, most probable first (at most
    as many as the model has classes)."""
    if topk < 1:
        raise DataError(f"topk must be at least 1, got {topk}")
    scores, _ = logits(model, [Path(image) for image in images], preprocess)
    return top_classes(scores, _meta(model).labels, topk)


def top_classes(scores: torch.Tensor | np.ndarray, names: Sequence[str], topk: int) -> list[list[Prediction]]:
    """Logits (N, classes) -> the ``topk`` most probable classes of each row (softmax), most probable first.
    In numpy: a server calls it beside the thread that runs torch."""
    probabilities = softmax(np.asarray(scores, dtype=np.float64))
    best = np.argsort(-probabilities, axis=1, kind="stable")[:, :min(topk, probabilities.shape[1])]
    return [[Prediction(int(i), names[int(i)], float(row[i])) for i in indices]
            for row, indices in zip(probabilities, best, strict=True)]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, classes) logits, in numpy (no torch kernel outside the model's thread)."""
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)
