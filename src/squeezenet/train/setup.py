"""Setting a run up: its folder and config, the data, the model it trains (fresh, given, or from pretrained
weights with a new head), and the optimizer over what ``--train`` trains. Everything is checked against the
data here, before the first step."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..data import CachedImages, Datasets, ImageFiles, Key, batches, image_folders, load_datasets
from ..errors import TrainingError
from ..files import is_folder
from ..images import set_max_image_pixels
from ..model import SqueezeNet
from ..preprocess import Preprocessing
from ..spec import WEIGHT_FREE_FIELDS, Spec, get_spec
from .config import (
    DEFAULT_ARCH,
    RESUME_OVERRIDES,
    TrainConfig,
    adapt_to_data,
    config_to_yaml,
    flag_name,
    load_config,
    spec_overrides,
)
from .distributed import Processes, gather
from .memory import micro_batch
from .run_folder import RunFolder


def run_folder(config: TrainConfig, processes: Processes) -> RunFolder:
    """The folder the run trains in: --resume's, --out, or runs/<date>-<time> (the same in every process)."""
    if config.resume:
        return RunFolder(Path(config.resume))
    path = Path(config.out or gather(f"runs/{time.strftime('%Y%m%d-%H%M%S')}", processes)[0])
    if config.data and is_folder(config.data):  # made before the data is read (for its lock), a run folder where
        # the images are read from would be read back as a class of images
        try:
            read_from = [folder.resolve() for folder in image_folders(Path(config.data)) if folder is not None]
        except OSError:  # an unreadable data folder: reading the data says so, in one line
            read_from = []
        for images in read_from:
            if path.resolve().is_relative_to(images):
                raise TrainingError(f"{path}: the run folder is inside {images}, whose folders are read as classes "
                                    f"of images; give --out a folder outside it")
    return RunFolder(path)


def resolve_run(config: TrainConfig, run: RunFolder) -> TrainConfig:
    """The config to run: a resumed run's own config.yaml with the settings a resume may change, else ``config``
    with its folder."""
    if not config.resume:
        return dataclasses.replace(config, out=str(run.path))
    if not run.config.is_file():
        raise TrainingError(f"{run.path}: no config.yaml here; not a run folder")
    saved = load_config(run.config)
    defaults = TrainConfig()
    overrides = {n: getattr(config, n) for n in RESUME_OVERRIDES if getattr(config, n) != getattr(defaults, n)}
    return dataclasses.replace(saved, **overrides, resume=str(run.path), out=str(run.path))


def resume_state(config: TrainConfig, run: RunFolder) -> dict[str, Any] | None:
    """The checkpoint a resumed run starts from, checked against its config.yaml (None for a new run). Read once
    the folder is locked, so no other process is writing it."""
    if not config.resume:
        return None
    state = run.read_state(fall_back=config.resume_previous)
    check_unchanged(run, config, state)
    return state


@dataclass
class Setup:
    """Everything fixed before the first step: the data, the model and its optimizer, and how a batch is cut."""

    config: TrainConfig
    processes: Processes
    run: RunFolder
    data: Datasets
    model: SqueezeNet
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    per_process: int  # images of each batch this process trains on
    micro: int  # images per forward pass
    accumulation: int  # forward passes per optimizer step
    workers: int
    trained: nn.Module | None = None  # what a training batch goes through: the model, or its Head on features
    scorer: nn.Module | None = None  # what a test batch goes through
    average: AveragedModel | None = None  # the moving average of the weights (--ema-decay), updated every step

    def __post_init__(self) -> None:
        self.trained = self.trained or self.model
        self.scorer = self.scorer or self.result

    @property
    def result(self) -> SqueezeNet:
        """The network the run scores and saves: the weights' moving average with --ema-decay, else the model."""
        return self.average.module if self.average is not None else self.model

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    def describe(self) -> str:
        config, data, spec = self.config, self.data, self.model.spec
        return (f"training {spec.name} ({sum(p.numel() for p in self.model.parameters()):,} parameters) on "
                f"{data.name}: {len(data.train):,} images at {data.image_size}x{data.image_size}, "
                f"{spec.num_classes} classes, {self.steps_per_epoch} steps x {config.epochs} epochs, batch "
                f"{config.batch_size} = {self.processes.world} process(es) x {self.accumulation} x {self.micro}, "
                f"peak lr {config.peak_lr:.4g}"
                + (f", scoring the weights' moving average (decay {config.ema_decay:g})"
                   if self.average is not None else "")
                + f", on {self.processes.device}; run folder {self.run.path}")


def check_unchanged(run: RunFolder, saved: TrainConfig, state: dict[str, Any]) -> None:
    """config.yaml (``saved``, as resolve_run read it) as the checkpoint was written with it (a checkpoint stores
    its config): an edited or emptied file would otherwise resume another run on these weights. The settings a
    resume may change, and the folder's spelling, are left out."""
    if not isinstance(state.get("config"), str):
        return  # a checkpoint from before checkpoints stored their config
    try:
        written = yaml.safe_load(state["config"])
    except yaml.YAMLError:
        written = None
    if not isinstance(written, dict):
        raise TrainingError(f"{run.state}: field 'config' is not the YAML mapping of a run's config")
    now = yaml.safe_load(config_to_yaml(saved))
    free = {name.replace("_", "-") for name in (*RESUME_OVERRIDES, "out")}  # out: the folder, however spelled
    for key in sorted((set(written) | set(now)) - free):
        if written.get(key) != now.get(key):
            raise TrainingError(f"{run.config}: {key} is {now.get(key)!r}, but the checkpoint was trained with "
                                f"{written.get(key)!r}; a run's config cannot change (restore config.yaml, or "
                                "start a new run)")


def set_up(config: TrainConfig, processes: Processes, run: RunFolder, initial: SqueezeNet | None,
            spec: Spec | None, state: dict[str, Any] | None) -> Setup:
    """Data, model and optimizer, every setting checked against the data before the first step."""
    set_max_image_pixels(config.max_image_pixels)
    start, recipe = _starting_point(config, run, state, initial)
    spec = _spec_to_train(config, run, start, spec)
    data = load_datasets(config.data, config.image_size, min_size=spec.min_input_size(), strict=config.strict,
                         download=config.download, cache=config.cache, subset=config.subset,
                         crop_padding=config.crop_padding, preprocessing=recipe, val_fraction=config.val_fraction,
                         augment=config.augments)
    if start is None:
        config, note = adapt_to_data(config, len(data.train), data.num_classes)
        spec = _spec_to_train(config, run, start, spec)  # with the recipe's batch norm and final ReLU
        if note and processes.main:
            print(note, flush=True)
    if config.batch_size % processes.world:
        raise TrainingError(f"--batch-size {config.batch_size} must divide evenly among {processes.world} processes")
    per_process = config.batch_size // processes.world
    model = _model_for(data, config, spec, start, fixed_head=initial is not None)
    spec = model.spec
    spec.spatial_sizes(data.image_size)  # InputSizeError now rather than at the first step
    if data.test is not None and config.test_shift >= data.image_size:
        raise TrainingError(f"--test-shift {config.test_shift} must be smaller than the images "
                            f"({data.image_size}x{data.image_size})")
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"{data.name}: {len(data.train)} training images are fewer than one batch "
                            f"(--batch-size {config.batch_size}); give a smaller --batch-size"
                            + ("" if config.weights or config.recipe != "paper" else " or --recipe small-data"))
    micro = min(config.micro_batch or micro_batch(model, data.image_size, per_process, processes.device), per_process)
    accumulation = math.ceil(per_process / micro)
    micro = math.ceil(per_process / accumulation)  # even passes: 32 images at most 24 a pass go as 16 + 16
    workers = config.workers if config.workers is not None else min(4, max(0, (os.cpu_count() or 1) - 1))
    model.to(processes.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return Setup(config, processes, run, data, model, _optimizer(model, config), steps_per_epoch, per_process,
                 micro, accumulation, workers, average=_moving_average(model, config.ema_decay))


def _moving_average(model: SqueezeNet, decay: float) -> AveragedModel | None:
    """torch's exponential moving average of ``model``'s weights, batch-norm statistics included (a copy of the
    model, which the first update overwrites with the weights as they are then)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class Head(nn.Module):
    """A SqueezeNet's classifier alone, on its backbone's features: what a linear probe trains once the features
    are computed (``cache_features``). The model stays whole: checkpoints save it, with the head it trains."""

    def __init__(self, model: SqueezeNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(features)


FEATURE_CACHE_BYTES = 4 << 30  # the most memory the cached features of a linear probe may take


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """``--bf16``: the forward passes run in bfloat16 where the device has it (CPU and CUDA)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()


def cache_features(setup: Setup) -> Setup:
    """A linear probe (``--train classifier``) without augmentation sees the same backbone features of an image
    every epoch: compute them once and train conv10 on them, so an epoch costs the head alone. The test split's
    are cached too unless test-time views (flip, shift) need the images. Run after a resume has restored the
    weights; every process computes all of them (the frozen backbone is the same in each). With ``--bf16`` they
    are computed and kept in bfloat16, which the head would cast them to anyway: half the memory, so all of
    CIFAR-10 at 128 px (2.4 GiB) fits."""
    config, data, model = setup.config, setup.data, setup.model
    if config.train != "classifier" or config.augments:
        return setup
    device = setup.processes.device
    splits = {"train": data.train}
    if data.test is not None and not config.test_flip and not config.test_shift:
        splits["test"] = data.test
    with torch.inference_mode():
        probe = torch.zeros(1, model.spec.in_channels, data.image_size, data.image_size, device=device)
        shape = model.forward_features(probe).shape
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    per_image = math.prod(shape) * dtype.itemsize
    if per_image * len(data.train) > FEATURE_CACHE_BYTES:
        if setup.processes.main:
            print(f"the backbone's features of {len(data.train):,} images would take "
                  f"{per_image * len(data.train) / 2**30:.1f} GiB: computed every step instead", flush=True)
        return setup
    if per_image * (len(data.train) + len(data.test or [])) > FEATURE_CACHE_BYTES:
        splits.pop("test", None)
    cached = {}
    for name, split in splits.items():
        keys = [[(i, 0) for i in range(s, min(s + setup.micro, len(split)))] for s in range(0, len(split), setup.micro)]
        show = config.progress and setup.processes.main
        with autocast(config, device):
            cached[name] = _features(model, data, split, keys, device, setup.workers, dtype,
                                     f"{name} features" if show else None)
    if setup.processes.main:
        count = sum(len(split) for split in cached.values())
        size = sum(split.images.numel() * split.images.element_size() for split in cached.values())
        print(f"linear probe: the frozen backbone's features of {count:,} images ({', '.join(cached)}) computed "
              f"once, {size / 2**20:,.0f} MiB; each epoch trains conv10 on them", flush=True)
    head = Head(model)
    features = dataclasses.replace(data, train=cached["train"], test=cached.get("test", data.test))
    steps = max(1, len(features.train) // config.batch_size)  # a file that failed to decode is left out
    scorer = Head(setup.result) if "test" in cached else setup.result
    return dataclasses.replace(setup, data=features, trained=head, scorer=scorer,
                               steps_per_epoch=min(steps, setup.steps_per_epoch))


def _features(model: SqueezeNet, data: Datasets, split: CachedImages | ImageFiles, keys: list[list[Key]],
              device: torch.device, workers: int, dtype: torch.dtype, progress: str | None = None) -> CachedImages:
    """The backbone's features of ``split``'s images (all ``keys``), as a dataset of their own on the CPU."""
    parts, labels = [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for images, batch_labels in tqdm(batches(split, keys, workers), total=len(keys), unit="batch", leave=False,
                                         desc=progress, disable=progress is None or not sys.stderr.isatty()):
            if len(batch_labels):  # a file that failed to decode is left out, as in training
                parts.append(model.forward_features(data.normalize(images.to(device))).to(dtype).cpu())
                labels.append(batch_labels)
    model.train(was_training)
    return CachedImages(torch.cat(parts), torch.cat(labels), augment=False)


def _starting_point(config: TrainConfig, run: RunFolder, state: dict[str, Any] | None,
                    initial: SqueezeNet | None) -> tuple[SqueezeNet | None, Preprocessing | None]:
    """The network to train in place (the one given, or the weights of --weights) and the preprocessing that
    wins over the data's own: a model's recipe is what its weights expect. A resumed fine-tuning takes both
    from its run folder (spec.json, the checkpoint), never from --weights again."""
    if initial is not None:
        return initial, initial.preprocess
    if not config.weights:
        return None, None
    if state is not None:
        from ..weights.io import read_safetensors

        return None, read_safetensors(run.path / state["weights"]).preprocessing
    from ..weights.io import load
    from ..weights.registry import resolve

    pretrained = load(resolve(config.weights), arch=config.arch)
    return pretrained, pretrained.preprocess


def _model_for(data: Datasets, config: TrainConfig, spec: Spec, start: SqueezeNet | None,
               fixed_head: bool) -> SqueezeNet:
    """The model the data trains: ``start`` (its conv10 re-made when the data has other classes, unless the
    caller's model must keep its head), else a fresh one; it carries the data's class names and recipe."""
    num_classes = config.num_classes or (start.spec.num_classes if fixed_head and start else data.num_classes)
    if num_classes < data.num_classes:
        raise TrainingError(f"{data.name}: has {data.num_classes} classes but --num-classes is {num_classes}")
    class_names = tuple(data.class_names + [f"class {i}" for i in range(data.num_classes, num_classes)])
    if start is None:
        model = SqueezeNet(spec.replace(num_classes=num_classes))
    elif fixed_head:
        if start.spec.num_classes != num_classes:
            raise TrainingError(f"the model to train has {start.spec.num_classes} outputs, not {num_classes}")
        model = start
    else:
        model = start
        known = start.meta.class_names
        if start.spec.num_classes != num_classes or (known is not None and known != class_names):
            model.reset_classifier(num_classes)  # a new head for the data's classes: the paper's N(0, 0.01)
    if start is not None:
        model.set_weight_free_options(dropout=spec.dropout, final_relu=spec.final_relu,
                                      conv1_stride=spec.conv1_stride)
    model.meta = model.meta.replace(preprocessing=data.preprocessing, class_names=class_names)
    return model


def frozen_layers(model: SqueezeNet, config: TrainConfig) -> list[nn.Module]:
    """The layers training leaves at their starting weights: the whole backbone for --train classifier, conv1
    through the named layer for --freeze, else none."""
    if config.train == "classifier":
        return [model.features]
    if config.freeze is None:
        return []
    children = list(model.features.named_children())
    names = [name for name, layer in children if any(True for _ in layer.parameters())]
    if config.freeze not in names:
        raise TrainingError(f"--freeze {config.freeze}: {model.spec.name} has no such layer; it has "
                            f"{', '.join(names)}")
    last = [name for name, _ in children].index(config.freeze)
    return [layer for _, layer in children[:last + 1]]


def _optimizer(model: SqueezeNet, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over what ``--train`` and ``--freeze`` leave to train: frozen layers get no gradients (which
    also skips their backward pass) and keep their batch-norm statistics; --backbone-lr-scale gives the backbone
    its own share of the lr."""
    for layer in frozen_layers(model, config):
        layer.requires_grad_(False)

    def trained(module: nn.Module) -> list[nn.Parameter]:
        return [parameter for parameter in module.parameters() if parameter.requires_grad]

    if config.train == "classifier":
        groups = [{"params": trained(model.classifier), "lr_scale": 1.0}]
    elif config.backbone_lr_scale != 1.0:
        groups = [{"params": trained(model.features), "lr_scale": config.backbone_lr_scale},
                  {"params": trained(model.classifier), "lr_scale": 1.0}]
    else:  # one group, as every run before backbone scales existed: their checkpoints resume the same
        groups = [{"params": trained(model), "lr_scale": 1.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.peak_lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.peak_lr, weight_decay=config.weight_decay)


def train_mode(setup: Setup, network: nn.Module) -> None:
    """Training mode, except frozen layers, which keep their batch-norm statistics (a linear probe, --freeze)."""
    network.train()
    for layer in frozen_layers(setup.model, setup.config):
        layer.eval()


def _spec_to_train(config: TrainConfig, run: RunFolder, start: SqueezeNet | None, spec: Spec | None) -> Spec:
    """The starting model's spec with the dropout, final ReLU and conv1 stride the config gives; a resumed run's
    stored one; else the given spec or the config's preset, with the config's spec settings (dropout, batch norm,
    final ReLU, bypass, conv1 stride) over it. Batch norm and bypass add or remove weights, so a starting model
    keeps its own."""
    if start is not None:
        changes = spec_overrides(config)
        for name in sorted(set(changes) - set(WEIGHT_FREE_FIELDS)):
            given, own = changes[name], getattr(start.spec, name)
            if given != own:
                flag = flag_name(name) if given is True else f"--no-{name.replace('_', '-')}" if given is False \
                    else f"{flag_name(name)} {given}"
                has = ("" if own else "no ") + "batch norm" if name == "batch_norm" else f"{name} {own}"
                raise TrainingError(f"{flag}: the starting weights have {has}, and a fine-tuning keeps their "
                                    "layers (it can change only --dropout, --final-relu and --conv1-stride)")
        return start.spec.replace(**{name: changes[name] for name in WEIGHT_FREE_FIELDS if name in changes})
    stored = run.read_spec() if config.resume else None
    if stored is not None:
        return stored
    return get_spec(spec if spec is not None else config.arch or DEFAULT_ARCH, **spec_overrides(config))
