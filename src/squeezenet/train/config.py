"""The training config: every setting of a run as data, read from YAML and written into the run folder.

Field names are the CLI flags (``batch_size`` -> ``--batch-size``) and the keys of a YAML config file; the
flags themselves are generated in ``squeezenet.flags``. Values from YAML or the command line are checked and
coerced here, with one-line errors that name the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import TrainingError, one_line
from ..files import printable, read_file
from ..spec import BYPASS_MODES, MAX_CHANNELS, MAX_INPUT_SIZE


def _option(default: Any, help: str, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    """Everything a run depends on. Field names are the CLI flags (``batch_size`` -> ``--batch-size``) and the
    keys of a YAML config file (either spelling). Defaults are the paper's recipe (Caffe solver of SqueezeNet)
    plus a short warmup, which keeps the network out of the stall at loss ln(num_classes)."""

    data: str = _option("digits", "digits (embedded), cifar10 (torchvision's), an ImageFolder folder or a .tar.gz")
    arch: str | None = _option(None, "architecture preset (see `squeezenet summary`; default: the one --weights "
                                     "holds, else 1_1)")
    weights: str | None = _option(None, "start from these weights: a file in any format `squeezenet predict` reads, "
                                        "or a pretrained name; conv10 is re-made when the data has other classes, "
                                        "the preprocessing is the weights', and the defaults are the fine-tuning "
                                        "recipe (see docs/training.md)")
    train: str = _option("all", "what to train: all, or classifier (conv10 only: a linear probe on the frozen "
                                "backbone)", choices=("all", "classifier"))
    augment: bool | None = _option(None, "random crops and flips of the training images; --no-augment trains on "
                                         "them as they are scored (default: on, except with --train classifier, "
                                         "where the frozen backbone's features are then computed once per image)")
    freeze: str | None = _option(None, "keep the layers from conv1 through this one (e.g. conv1, fire3) at the "
                                       "starting weights: no gradients, so their backward pass is skipped too and "
                                       "steps are faster; see docs/training.md")
    backbone_lr_scale: float = _option(1.0, "the backbone's learning rate is the peak lr times this (e.g. 0.1); "
                                            "conv10 gets the peak lr")
    val_fraction: float = _option(0.2, "a folder without val/ or test/: the share of each class held out, by a "
                                       "fixed seed, to score on (0: no test split)")
    recipe: str = _option("auto", "the recipe of a run from random weights: paper (batch 1024, SGD, linear decay), "
                                  "small-data (batch 8-64, AdamW with batch norm, no final ReLU, cosine decay: for "
                                  "fewer than 100 classes or 100,000 images, where the paper's stalls), or auto (the "
                                  "default: "
                                  "small-data for such data, else paper); it changes only settings left at the "
                                  "paper's values", choices=("auto", "paper", "small-data"))
    epochs: int = _option(90, "passes over the training set")
    batch_size: int = _option(1024, "effective batch per optimizer step, over all processes")
    micro_batch: int | None = _option(None, "most images per forward pass (gradient accumulation; passes split the "
                                            "batch evenly); default: what fits (on the CPU: what keeps activations "
                                            "under ~1 GiB, where passes ran fastest per image)")
    lr: float | None = _option(None, "peak learning rate (default: the paper's 0.04 per 1024 images, scaled "
                                     "linearly to --batch-size)")
    schedule: str = _option("linear", "decay after warmup: linear (to 0, the paper's), cosine, constant",
                            choices=("linear", "cosine", "constant"))
    warmup_epochs: float = _option(2.0, "linear warmup from 0 (avoids the stall at ln(num_classes))")
    optimizer: str = _option("sgd", "sgd (momentum) or adamw", choices=("sgd", "adamw"))
    momentum: float = _option(0.9, "SGD momentum")
    nesterov: bool = _option(False, "Nesterov momentum")
    weight_decay: float = _option(2e-4, "weight decay (all parameters, as Caffe does)")
    label_smoothing: float = _option(0.0, "label smoothing of the cross-entropy")
    ema_decay: float = _option(0.0, "keep an exponential moving average of the weights, updated after every "
                                    "optimizer step with this decay (0.998 averages about the last 500 steps), "
                                    "and score and save it instead of the weights as trained; 0: off")
    eval_every: int = _option(1, "score the test split every N epochs, and always after the last (scoring costs "
                                 "time a short run on a CPU may rather spend training)")
    test_flip: bool = _option(False, "score each test image and its mirror image, averaging the logits (for "
                                     "photos, where a mirrored scene is the same class; not for digits)")
    test_shift: int = _option(0, "also score each test image moved N pixels down-right and up-left (edges "
                                 "mirrored); the unmoved image weighs 1/2, each moved one 1/4")
    dropout: float | None = _option(None, "dropout before conv10 (default: the preset's 0.5, or with --weights "
                                          "the weights' own; fine-tuning may change it)")
    batch_norm: bool | None = _option(None, "batch norm after every conv (a deviation from the paper; default: "
                                            "the preset's, none, or the weights' own, which a fine-tuning keeps)")
    final_relu: bool | None = _option(None, "keep the ReLU between conv10 and the pool (the paper's); "
                                            "--no-final-relu keeps few-class networks from losing classes (a "
                                            "deviation; default: the preset's, or the weights' own; fine-tuning "
                                            "may change it)")
    conv1_stride: int | None = _option(None, "stride of conv1 (default: the preset's, 2 in v1.0/v1.1, or the "
                                             "weights' own; fine-tuning may change it: at 1, small images upscaled "
                                             "half as much give the later layers maps of the same size at the same "
                                             "cost)")
    bypass: str | None = _option(None, "bypass connections around Fire modules (Section 6): none, simple, complex; "
                                 "default: the preset's", choices=BYPASS_MODES)
    num_classes: int | None = _option(None, "outputs of conv10 (default: the dataset's classes)")
    image_size: int | None = _option(None, "training input size (default: 32 for small images, else 224)")
    subset: int | None = _option(None, "train on a fixed random N of the training images (quick runs)")
    crop_padding: int | None = _option(None, "small images: pad-and-crop moves them up to N pixels (default 1/8 "
                                             "of the side: 4 at 32x32)")
    seed: int = _option(0, "seed of the data order, augmentation, init and dropout")
    device: str = _option("auto", "auto, cpu, cuda or cuda:N")
    bf16: bool = _option(False, "bfloat16 autocast (CPU and CUDA)")
    channels_last: bool = _option(True, "channels-last memory format: oneDNN's fastest CPU convolutions (v1.1 "
                                        "fine-tuning at 128x128 on 2 cores: 1.45x the images a second of contiguous "
                                        "tensors; docs/training.md); --no-channels-last turns it off")
    compile: bool = _option(False, "torch.compile the model")
    keep_freed_memory: bool = _option(True, "Linux/glibc: keep memory freed between steps in the process instead of "
                                            "handing it back to the kernel (faster CPU steps; see docs/training.md)")
    workers: int | None = _option(None, "DataLoader worker processes for image files (default: cores - 1, max 4)")
    cache: str = _option("auto", "decode small datasets once into memory: auto, on, off", choices=("auto", "on", "off"))
    strict: bool = _option(False, "an unreadable image is an error instead of a skipped file")
    download: bool = _option(False, "let torchvision download CIFAR-10 (needs internet)")
    out: str | None = _option(None, "run folder (default runs/<date>-<time>)")
    resume: str | None = _option(None, "continue the run in this folder (nothing else needed)")
    resume_previous: bool = _option(False, "with --resume: when the newest checkpoint is damaged, continue from "
                                           "the newest intact one")
    checkpoint_every: int = _option(0, "also checkpoint every N optimizer steps (0: at epoch ends only)")
    keep: int = _option(2, "step checkpoints to keep besides last and best")
    stall_patience: int = _option(50, "steps at loss ln(num_classes) (or dead outputs) before stopping; 0: off")
    time_limit: float | None = _option(None, "stop cleanly after this many seconds: checkpoint (mid-epoch: "
                                             "without scoring), then exit")
    max_image_pixels: int | None = _option(None, "refuse images above this many pixels as decompression bombs "
                                                 "(default: Pillow's 89 million); raise it for files you trust")
    tensorboard: bool = _option(False, "also log to RUN/tensorboard (needs the tensorboard package)")
    progress: bool = _option(True, "show a progress bar")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else PAPER_LR * self.batch_size / PAPER_BATCH

    @property
    def augments(self) -> bool:
        """Whether training images are augmented: --augment, else on unless only the classifier trains."""
        return self.augment if self.augment is not None else self.train != "classifier"

    @classmethod
    def finetuning(cls, weights: str, **changes: Any) -> TrainConfig:
        """The fine-tuning recipe (FINETUNE_RECIPE) for ``weights``, with ``changes`` over it: what
        `squeezenet train --weights W` starts from."""
        return dataclasses.replace(cls(**FINETUNE_RECIPE), weights=str(weights), **changes)

    def validate(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            choices = item.metadata.get("choices")
            if choices and value not in choices and not (value is None and item.default is None):
                raise TrainingError(f"{flag_name(item.name)} must be one of {', '.join(choices)}, got {value!r}")
            limits = LIMITS.get(item.name)
            if limits is not None and value is not None and not limits.admits(value, field_type(item.name)):
                raise TrainingError(f"{flag_name(item.name)} must be {limits.describe(field_type(item.name))}, "
                                    f"got {value!r}")
        if self.freeze is not None and self.train == "classifier":
            raise TrainingError("--freeze: --train classifier freezes the whole backbone already")
        if self.train == "classifier" and self.weights is None and not self.resume:
            raise TrainingError("--train classifier trains conv10 on a frozen backbone: give --weights to take the "
                                "backbone from")


@dataclass(frozen=True)
class Limits:
    """The range of a numeric setting, checked before any work starts (a seed of 2**70 or an image size of
    100,000 would otherwise end in a traceback or a MemoryError)."""

    low: float
    high: float
    low_open: bool = False  # the lowest value itself is excluded (a learning rate of 0)
    high_open: bool = False

    def admits(self, value: Any, kind: type) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, kind: type) -> str:
        if kind is int:
            return f"an integer from {self.low:,} to {self.high:,}"
        return f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


LIMITS: dict[str, Limits] = {
    "epochs": Limits(1, 100_000), "batch_size": Limits(1, 1_000_000), "micro_batch": Limits(1, 1_000_000),
    "eval_every": Limits(1, 100_000), "image_size": Limits(1, MAX_INPUT_SIZE), "num_classes": Limits(1, MAX_CHANNELS),
    "subset": Limits(1, 10**9), "crop_padding": Limits(0, 512), "seed": Limits(0, 2**32 - 1),
    "workers": Limits(0, 64), "checkpoint_every": Limits(0, 10**9), "keep": Limits(1, 1_000),
    "stall_patience": Limits(0, 10**9), "test_shift": Limits(0, 64), "max_image_pixels": Limits(1, 2**40),
    "val_fraction": Limits(0, 1, high_open=True), "backbone_lr_scale": Limits(0, 1_000),
    "lr": Limits(0, 1e30, low_open=True),  # any finite rate: a diverging run is the loop's to report
    "warmup_epochs": Limits(0, 100_000),
    "momentum": Limits(0, 1, high_open=True),
    "weight_decay": Limits(0, 1), "label_smoothing": Limits(0, 1, high_open=True),
    "ema_decay": Limits(0, 1, high_open=True),
    "dropout": Limits(0, 1, high_open=True), "time_limit": Limits(0, 10**9), "conv1_stride": Limits(1, 16),
}

PAPER_LR, PAPER_BATCH = 0.04, 1024  # the SqueezeNet solver's base_lr (poly decay, power 1) at batch 1024
DEFAULT_ARCH = "1_1"  # trained from scratch when neither --arch nor --weights names one

# The defaults when training starts from pretrained weights (`--weights`): a small batch for the small datasets
# people fine-tune on, one warmup epoch, a short cosine decay. The learning rate was measured on few-shot CIFAR-10
# (50 images per class, v1.1 Caffe weights, 10 epochs; docs/training.md): 0.001 53.4%, 0.003 55.7%, 0.01 46.0%,
# 0.03 10.9% top-1 on 1,000 test images.
FINETUNE_RECIPE: dict[str, Any] = {"epochs": 10, "batch_size": 32, "lr": 0.003, "warmup_epochs": 1.0,
                                   "schedule": "cosine"}

# The defaults of a run from random weights on a small dataset or one of few classes (recipe "small-data"), where
# the paper's recipe refuses to start (fewer images than its batch of 1024) or stalls with dead classes (the ReLU
# before the pool; docs/training.md): batch norm with AdamW, as the demo trains, and no ReLU between conv10 and the
# pool: with it, 500 CIFAR-10 photos at 227x227 left 8 of 10 classes dead (11.1% top-1). The batch is set from the data.
SMALL_DATA_RECIPE: dict[str, Any] = {"optimizer": "adamw", "lr": 0.002, "batch_norm": True, "final_relu": False,
                                     "warmup_epochs": 1.0, "schedule": "cosine", "epochs": 30}
SMALL_DATA_LIMITS = (100, 100_000)  # auto takes the small-data recipe below this many classes or images
# What a user sets to choose a recipe of their own; while all are at the paper's defaults, auto may adapt.
RECIPE_SETTINGS = ("optimizer", "lr", "batch_norm", "final_relu", "schedule", "warmup_epochs", "momentum")


def adapt_to_data(config: TrainConfig, images: int, classes: int) -> tuple[TrainConfig, str | None]:
    """The config a run from random weights trains with on ``images`` training images of ``classes`` classes,
    and a line saying what changed and why (None: nothing). The small-data recipe replaces only settings at the
    paper's defaults; a recipe of the user's own (any of RECIPE_SETTINGS changed) is kept whole."""
    paper = TrainConfig()
    small = images < SMALL_DATA_LIMITS[1] or classes < SMALL_DATA_LIMITS[0]
    own = any(getattr(config, name) != getattr(paper, name) for name in RECIPE_SETTINGS)
    if config.weights or config.recipe == "paper" or (config.recipe == "auto" and (not small or own)):
        return config, None
    batch = min(64, max(8, 2 ** int(math.log2(max(1, images) / 8)))) if config.batch_size == paper.batch_size \
        else config.batch_size
    changes = {name: value for name, value in SMALL_DATA_RECIPE.items()
               if getattr(config, name) == getattr(paper, name)}
    adapted = dataclasses.replace(config, **changes, batch_size=batch, recipe="small-data")
    if config.recipe == "small-data":
        return adapted, None  # asked for by name (or a resumed run's own): nothing to explain
    why = f"{images:,} training images" if images < SMALL_DATA_LIMITS[1] else f"{classes} classes"
    return adapted, (f"{why}: the small-data recipe (batch {batch}, AdamW lr {adapted.lr:g}, batch norm, no final "
                     f"ReLU, {adapted.schedule} decay, {adapted.epochs} epochs) instead of the paper's ImageNet one "
                     f"(batch 1024, SGD), which stalls on so few; --recipe paper keeps it (docs/training.md)")


# Settings a resumed run may change: they alter where and how fast it runs, or which epochs are scored,
# never the weights it computes.
RESUME_OVERRIDES = ("device", "workers", "progress", "tensorboard", "checkpoint_every", "keep", "time_limit",
                    "keep_freed_memory", "eval_every", "resume_previous")


SPEC_SETTINGS = ("dropout", "batch_norm", "final_relu", "bypass", "conv1_stride")  # config fields that are spec fields


def spec_overrides(config: TrainConfig) -> dict[str, Any]:
    """The spec fields a training config sets, those given (so explore and train build the same network)."""
    return {name: getattr(config, name) for name in SPEC_SETTINGS if getattr(config, name) is not None}


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_type(name: str) -> type:
    """The plain type of a config field (int, float, str or bool), None-ability aside."""
    hint = typing.get_type_hints(TrainConfig)[name]
    kinds = [t for t in typing.get_args(hint) if t is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    return kinds[0]


def config_from_dict(values: dict[str, Any], source: str, base: TrainConfig | None = None) -> TrainConfig:
    """A config from a mapping whose keys are flag names (dashes or underscores), over ``base``."""
    if not isinstance(values, dict):
        raise TrainingError(f"{source}: expected a mapping of flag names to values")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    changes = {}
    for key, value in values.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name not in known:
            raise TrainingError(f"{source}: unknown key {key!r} (keys are the flags of `squeezenet train`)")
        kind = field_type(name)
        if value is None and not is_optional(name):
            raise TrainingError(f"{source}: {key} needs a value ({kind.__name__}), got nothing")
        if isinstance(value, float) and not math.isfinite(value):
            raise TrainingError(f"{source}: {key} must be a finite number, got {value!r}")
        if value is None or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
            changes[name] = value
        elif kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:  # YAML reads 1 as an int and 2e-4 as text
                number = float(value)
            except (ValueError, OverflowError):
                raise TrainingError(f"{source}: {key} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise TrainingError(f"{source}: {key} must be a finite number, got {value!r}")
            changes[name] = number
        elif kind is str:
            raise TrainingError(f"{source}: {key} must be text; quote it (YAML read {value!r}, e.g. 1_1 as 11)")
        else:
            raise TrainingError(f"{source}: {key} must be {kind.__name__}, got {value!r}")
    config = dataclasses.replace(base or TrainConfig(), **changes)
    try:
        config.validate()
    except TrainingError as error:
        raise TrainingError(f"{source}: {error}") from None
    return config


def is_optional(name: str) -> bool:
    """Whether a config field may be left empty (None)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def load_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    return config_from_dict(read_config_file(path), str(path), base)


MAX_CONFIG_BYTES = 64 * 1024  # a config of every flag with long paths is about 3 KB


def read_config_file(path: str | Path) -> Any:
    """The mapping a YAML config file holds (not yet checked: ``config_from_dict`` does that). The file's size is
    bounded before it is parsed: a 50 MB scalar or 200,000 keys are refused at once instead of taking minutes."""
    data = read_file(path, TrainingError, "config file", limit=MAX_CONFIG_BYTES)
    try:
        values = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as error:
        # RecursionError: deep nesting; ValueError: an integer of more digits than Python converts (4,300)
        raise TrainingError(f"{printable(path)}: not a readable YAML config ({one_line(error, 160)})") from None
    if isinstance(values, dict) and any(str(key).lstrip("-").replace("-", "_") == "resume" for key in values):
        raise TrainingError(f"{printable(path)}: 'resume' is not a config key; continue a run with the flag "
                            "--resume RUN (which checks that nothing else changed)")
    return values or {}  # an empty file is an empty config


def config_to_yaml(config: TrainConfig) -> str:
    values = {item.name.replace("_", "-"): getattr(config, item.name) for item in dataclasses.fields(config)}
    values.pop("resume")
    return yaml.safe_dump(values, sort_keys=False)
