"""Fine-tuning and test accuracy for compression, on our training loop and datasets.

``train_finetuner`` returns the ``finetune(model, stage)`` callable that
``compress`` calls after pruning and after weight sharing. It runs
``train.train`` on the model it is given: that model's weights are
parametrized (``quantize.attach``), so the loop's optimizer updates the kept
weights or the shared centroids and the compression holds at every step.
Each stage gets its own run folder (checkpoints, metrics, exact resume).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data import Datasets, batches, load_datasets
from ..evaluate import evaluate, score
from ..images import labelled_images
from ..model import SqueezeNet
from ..train import TrainConfig, train
from .layers import CompressionError
from .pipeline import Evaluator, Finetuner

# Deep Compression retrains at about a tenth of the original learning rate, without warmup.
FINETUNE_DEFAULTS: dict[str, Any] = {"lr": 0.004, "warmup_epochs": 0.0, "schedule": "cosine", "batch_size": 256,
                                     "stall_patience": 0, "progress": False}


def train_finetuner(data: str | Path, epochs: int, out: str | Path, **config: Any) -> Finetuner:
    """Fine-tune on ``data`` (any source ``train`` takes) for ``epochs`` per stage; runs go to ``out/<stage>``.

    ``config`` overrides TrainConfig fields (lr, batch_size, device, ...); see FINETUNE_DEFAULTS.
    """
    settings = {**FINETUNE_DEFAULTS, **config, "data": str(data), "epochs": epochs}

    def finetune(model: SqueezeNet, stage: str) -> None:
        run = Path(out) / stage
        base = TrainConfig(**settings, out=str(run))
        # The loop's micro-batch probe copies the model by its state dict, which a parametrized model
        # does not have in plain form; a fixed micro-batch skips the probe.
        if base.micro_batch is None:
            base = dataclasses.replace(base, micro_batch=min(base.batch_size, 256))
        train(base, model=model)

    return finetune


def distill_finetuner(teacher: nn.Module, images: torch.Tensor, epochs: int = 4, lr: float = 1e-4,
                      batch_size: int = 20, progress: bool = True) -> Finetuner:
    """Fine-tune toward ``teacher``'s outputs on unlabelled, preprocessed ``images`` (and their mirror images).

    For a model whose training set is not at hand (the paper's ImageNet): no labels are needed, and only
    the parameters the compression leaves free move (shared centroids, kept weights, biases), so a hundred
    images already recover part of the loss. Too many epochs overfit so few images (see docs/compression.md). The
    loss is the KL divergence from the teacher's softmax; dropout is off, as the teacher's outputs are
    deterministic.
    """
    if images.ndim != 4 or len(images) == 0:
        raise CompressionError(f"distillation needs preprocessed images shaped (N, C, H, W), got {tuple(images.shape)}")
    inputs = torch.cat([images, images.flip(-1)])
    teacher.eval()
    with torch.inference_mode():
        targets = torch.cat([F.log_softmax(teacher(batch).float(), 1) for batch in inputs.split(batch_size)])

    def finetune(model: SqueezeNet, stage: str) -> None:
        free = [parameter for parameter in model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.Adam(free, lr=lr)
        order = torch.Generator().manual_seed(0)
        model.eval()
        steps = epochs * -(-len(inputs) // batch_size)
        with tqdm(total=steps, desc=f"distil ({stage})", unit="step", leave=False,
                  disable=None if progress else True) as bar:  # None: shown on a terminal only
            for _ in range(epochs):
                for chosen in torch.randperm(len(inputs), generator=order).split(batch_size):
                    loss = F.kl_div(F.log_softmax(model(inputs[chosen]).float(), 1), targets[chosen],
                                    log_target=True, reduction="batchmean")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    bar.set_postfix(kl=f"{loss.item():.4f}", refresh=False)
                    bar.update(1)

    return finetune


def dataset_evaluator(data: Datasets) -> Evaluator:
    """Top-1/top-5 on a dataset's test split (as the training loop scores it), for ``compress(evaluate=...)``."""
    if data.test is None:
        raise CompressionError(f"{data.name}: no test split to measure accuracy on")
    test = data.test

    def evaluate(model: nn.Module) -> dict[str, float]:
        keys = [[(i, 0) for i in range(start, min(start + 256, len(test)))] for start in range(0, len(test), 256)]
        model.eval()
        inputs = ((data.normalize(images), labels) for images, labels in batches(test, keys))
        return score(model, inputs, model.spec.num_classes).to_dict()

    return evaluate


def evaluator_for(source: str | Path, batch_size: int = 32) -> Evaluator:
    """An evaluator for labelled images (a flat folder with labels.csv, or class subfolders) through the
    model's own preprocessing, or for the test split of a training dataset (digits, a .tar.gz, or a folder
    with train/ and test/ subfolders) as the training loop scores it."""
    path = Path(source)
    if path.is_dir() and not (path / "train").is_dir():
        def evaluate_images(model: nn.Module) -> dict[str, float]:
            items, _ = labelled_images(path, num_classes=model.spec.num_classes)
            return evaluate(model, items, batch_size=batch_size).to_dict()

        return evaluate_images
    return dataset_evaluator(load_datasets(source))
