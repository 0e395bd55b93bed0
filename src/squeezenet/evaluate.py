"""Top-1/top-5 over a labelled image set, and top-k predictions for single images.

Images go through the model's own preprocessing (``model.preprocess``, set
by the weights loader) unless another recipe is given, so Caffe weights see
BGR 0-255 minus the mean and torchvision weights their normalised RGB.
Evaluation is batched with a DataLoader; decoding and resizing are the slow
part on CPU, so ``workers`` > 0 overlaps them with the forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data import open_image
from .errors import DataError
from .preprocess import Preprocessing, get_preprocessing


def _resolve_preprocessing(model: nn.Module, preprocess: str | Preprocessing | None) -> Preprocessing:
    if preprocess is not None:
        return get_preprocessing(preprocess)
    if isinstance(getattr(model, "preprocess", None), Preprocessing):
        return model.preprocess
    raise DataError("the model carries no preprocessing (weights without one); pass preprocess= or --preprocess")


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


def logits(model: nn.Module, items: Sequence[tuple[Path, int]] | Sequence[Path],
           preprocess: str | Preprocessing | None = None, batch_size: int = 32, workers: int = 0,
           progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, classes), labels (N,)) for images given as paths or (path, label) pairs (label -1 if none)."""
    recipe = _resolve_preprocessing(model, preprocess)
    pairs = [item if isinstance(item, tuple) else (Path(item), -1) for item in items]
    if not pairs:
        raise DataError("no images to run the model on")
    loader = DataLoader(_Images(pairs, recipe), batch_size=batch_size, num_workers=workers)
    outputs, labels = [], []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(pairs), unit="img", disable=not progress, leave=False) as bar:
            for batch, batch_labels in loader:
                outputs.append(model(batch.to(device)).float().cpu())
                labels.append(batch_labels)
                bar.update(len(batch_labels))
    finally:
        model.train(was_training)
    return torch.cat(outputs), torch.cat(labels)


@dataclass(frozen=True)
class Accuracy:
    """Top-1 and top-5 as fractions in [0, 1] over ``n`` images."""

    top1: float
    top5: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"top1": self.top1, "top5": self.top5, "n": self.n}


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> Accuracy:
    """Top-1/top-5 of scores (N, classes) against integer labels (N,)."""
    k = min(5, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    hits = top == labels.view(-1, 1)
    n = len(labels)
    return Accuracy(int(hits[:, 0].sum()) / n, int(hits.any(dim=1).sum()) / n, n)


def evaluate(model: nn.Module, items: Sequence[tuple[Path, int]], preprocess: str | Preprocessing | None = None,
             batch_size: int = 32, workers: int = 0, progress: bool = False) -> Accuracy:
    """Top-1/top-5 of ``model`` over labelled images (e.g. from data.labelled_images)."""
    num_classes = model.spec.num_classes
    bad = next(((path, label) for path, label in items if not 0 <= label < num_classes), None)
    if bad is not None:
        raise DataError(f"{bad[0]}: label {bad[1]} is outside the model's {num_classes} classes")
    scores, labels = logits(model, items, preprocess, batch_size, workers, progress)
    return accuracy(scores, labels)


@dataclass(frozen=True)
class Prediction:
    class_index: int
    name: str
    probability: float


def predict(model: nn.Module, images: Sequence[str | Path], topk: int = 5,
            preprocess: str | Preprocessing | None = None) -> list[list[Prediction]]:
    """The ``topk`` most probable classes (softmax of the logits) for each image, most probable first."""
    if topk < 1:
        raise DataError(f"topk must be at least 1, got {topk}")
    scores, _ = logits(model, [Path(image) for image in images], preprocess)
    probabilities = scores.softmax(dim=1)
    names = model.meta.labels
    best = probabilities.topk(min(topk, probabilities.shape[1]), dim=1)
    return [[Prediction(int(i), names[int(i)], float(p)) for p, i in zip(values, indices, strict=True)]
            for values, indices in zip(best.values, best.indices, strict=True)]
