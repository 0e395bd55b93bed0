"""Training: the paper's recipe, exact resume after a crash, and data parallelism across processes.

Read top to bottom: the config (every field is a CLI flag and a YAML key), the learning-rate schedule,
the run folder (checkpoints written atomically, resume state), then ``train``, the loop itself.

Exactness: the data order and every sample's augmentation are pure functions of (seed, epoch)
(``data.epoch_order``); checkpoints hold the weights, the optimizer, every process's RNG states and the
position in the epoch. A run killed at any moment and resumed from its folder therefore ends with the
same weights, bit for bit on the CPU, as a run never interrupted.

Multi-process: launched by torchrun (WORLD_SIZE > 1), each process trains on its slice of every batch
with DistributedDataParallel (gloo on CPU, NCCL on CUDA); process 0 logs and writes the run folder.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import io
import json
import math
import os
import random
import signal
import sys
import threading
import time
import types
import typing
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from .data import Datasets, Key, batches, epoch_order, load_datasets
from .errors import TrainingError
from .model import SqueezeNet, summary
from .spec import BYPASS_MODES, get_spec
from .weights.io import save as save_weights
from .weights.io import write_atomic

# -- the config ------------------------------------------------------------------------------------------------------


def _option(default: Any, help: str, **metadata: Any) -> Any:
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    """Everything a run depends on. Field names are the CLI flags (``batch_size`` -> ``--batch-size``) and the
    keys of a YAML config file (either spelling). Defaults are the paper's recipe (Caffe solver of SqueezeNet)
    plus a short warmup, which keeps the network out of the stall at loss ln(num_classes)."""

    data: str = _option("digits", "digits (embedded), cifar10 (torchvision's), an ImageFolder folder or a .tar.gz")
    arch: str = _option("1_1", "architecture preset (see `squeezenet summary`)")
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
    eval_every: int = _option(1, "score the test split every N epochs, and always after the last (scoring costs "
                                 "time a short run on a CPU may rather spend training)")
    test_flip: bool = _option(False, "score each test image and its mirror image, averaging the logits (for "
                                     "photos, where a mirrored scene is the same class; not for digits)")
    test_shift: int = _option(0, "also score each test image moved N pixels down-right and up-left (edges "
                                 "mirrored); the unmoved image weighs 1/2, each moved one 1/4")
    dropout: float = _option(0.5, "dropout before conv10")
    batch_norm: bool = _option(False, "batch norm after every conv (a deviation from the paper)")
    final_relu: bool = _option(True, "keep the ReLU between conv10 and the pool (the paper's); --no-final-relu "
                                     "keeps few-class networks from losing classes (a deviation)")
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
    channels_last: bool = _option(False, "channels-last memory format")
    compile: bool = _option(False, "torch.compile the model")
    keep_freed_memory: bool = _option(True, "Linux/glibc: keep memory freed between steps in the process instead of "
                                            "handing it back to the kernel (faster CPU steps; see README)")
    workers: int | None = _option(None, "DataLoader worker processes for image files (default: cores - 1, max 4)")
    cache: str = _option("auto", "decode small datasets once into memory: auto, on, off", choices=("auto", "on", "off"))
    strict: bool = _option(False, "an unreadable image is an error instead of a skipped file")
    download: bool = _option(False, "let torchvision download CIFAR-10 (needs internet)")
    out: str | None = _option(None, "run folder (default runs/<date>-<time>)")
    resume: str | None = _option(None, "continue the run in this folder (nothing else needed)")
    checkpoint_every: int = _option(0, "also checkpoint every N optimizer steps (0: at epoch ends only)")
    keep: int = _option(2, "step checkpoints to keep besides last and best")
    stall_patience: int = _option(50, "steps at loss ln(num_classes) (or dead outputs) before stopping; 0: off")
    time_limit: float | None = _option(None, "stop cleanly after this many seconds: checkpoint (mid-epoch: "
                                             "without scoring), then exit")
    tensorboard: bool = _option(False, "also log to RUN/tensorboard (needs the tensorboard package)")
    progress: bool = _option(True, "show a progress bar")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else PAPER_LR * self.batch_size / PAPER_BATCH

    def validate(self) -> None:
        positive = ("epochs", "batch_size", "eval_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrainingError(f"{_flag(name)} must be a positive integer, got {value!r}")
        for name in ("micro_batch", "image_size", "num_classes", "subset"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise TrainingError(f"{_flag(name)} must be a positive integer, got {value!r}")
        for item in dataclasses.fields(self):
            choices = item.metadata.get("choices")
            value = getattr(self, item.name)
            if choices and value not in choices and not (value is None and item.default is None):
                raise TrainingError(f"{_flag(item.name)} must be one of {', '.join(choices)}, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise TrainingError(f"--lr must be positive, got {self.lr!r}")
        if self.warmup_epochs < 0 or self.weight_decay < 0 or not 0 <= self.label_smoothing < 1:
            raise TrainingError("--warmup-epochs and --weight-decay must be >= 0, --label-smoothing in [0, 1)")
        if not isinstance(self.test_shift, int) or isinstance(self.test_shift, bool) or self.test_shift < 0:
            raise TrainingError(f"--test-shift must be an integer >= 0, got {self.test_shift!r}")
        if self.checkpoint_every < 0 or self.keep < 1 or self.stall_patience < 0:
            raise TrainingError("--checkpoint-every and --stall-patience must be >= 0, --keep >= 1")


PAPER_LR, PAPER_BATCH = 0.04, 1024  # the SqueezeNet solver's base_lr (poly decay, power 1) at batch 1024

# Settings a resumed run may change: they alter where and how fast it runs, or which epochs are scored,
# never the weights it computes.
RESUME_OVERRIDES = ("device", "workers", "progress", "tensorboard", "checkpoint_every", "keep", "time_limit",
                    "keep_freed_memory", "eval_every")


def spec_overrides(config: TrainConfig) -> dict[str, Any]:
    """The spec fields a training config sets (so explore and train build the same network)."""
    overrides = {"dropout": config.dropout, "batch_norm": config.batch_norm, "final_relu": config.final_relu}
    return overrides if config.bypass is None else {**overrides, "bypass": config.bypass}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kind(name: str) -> type:
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
        kind = _kind(name)
        if value is None and not _optional(name):
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


def _optional(name: str) -> bool:
    """Whether a config field may be left empty (None)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def load_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:  # RecursionError: deep nesting
        raise TrainingError(f"{path}: not a readable YAML config ({' '.join(str(error).split())[:160]})") from None
    return config_from_dict(values or {}, str(path), base)


def config_to_yaml(config: TrainConfig) -> str:
    values = {item.name.replace("_", "-"): getattr(config, item.name) for item in dataclasses.fields(config)}
    values.pop("resume")
    return yaml.safe_dump(values, sort_keys=False)


# -- the learning rate -----------------------------------------------------------------------------------------------


def learning_rate(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): linear warmup, then the chosen decay.

    A pure function of the step, so a resumed run needs no scheduler object to be exact.
    """
    peak = config.peak_lr
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total_steps)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    if config.schedule == "linear":
        return peak * (1.0 - progress)
    if config.schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak


# -- processes and devices -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Processes:
    """This process's place among the torchrun-launched ones (rank 0 of 1 when run alone)."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_processes(device_name: str) -> Processes:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda: no CUDA device is available")
        device = torch.device("cuda", local_rank if world > 1 else torch.device(device_name).index or 0)
        torch.cuda.set_device(device)
    elif device_name == "cpu":
        device = torch.device("cpu")
    else:
        raise TrainingError(f"--device must be auto, cpu, cuda or cuda:N, got {device_name!r}")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world, device)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process. By default each large block (an activation, a gradient)
    is its own mapping, returned to the kernel when freed, so every training step faults all of them in again
    as fresh zeroed pages: kernel time that grows with the batch. Kept, the next step reuses them. Affects the
    whole process and only allocations made after the call; returns whether the C library took the setting
    (False off glibc, e.g. macOS or musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from glibc's malloc.h
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def _all_sum(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    if processes.world > 1:
        dist.all_reduce(values)
    return values


def _barrier(processes: Processes) -> None:
    if processes.world > 1:
        dist.barrier()


def _share_buffers(model: nn.Module, processes: Processes) -> None:
    """Give every process process 0's batch-norm statistics. DDP copies them out at the start of each forward
    pass, but each process's own last batch then moved its copy; process 0's are the ones saved, so they are
    the ones to score."""
    if processes.world > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def _gather(value: Any, processes: Processes) -> list[Any]:
    if processes.world == 1:
        return [value]
    gathered: list[Any] = [None] * processes.world
    dist.all_gather_object(gathered, value)
    return gathered


# On the CPU a forward pass whose activations reach far beyond the caches runs slower per image: 1_1 at 224x224
# in two single-threaded processes trained at 27-30 img/s with 16-24 images per pass and 22-24 img/s with 64.
CPU_ACTIVATION_BUDGET = 1 << 30  # bytes of estimated activations per forward pass (1_1 at 224: 24 images)


def _micro_batch(model: SqueezeNet, image_size: int, per_process: int, device: torch.device) -> int:
    """On CUDA the largest micro-batch that fits, measured; on the CPU the largest whose estimated activations
    stay within CPU_ACTIVATION_BUDGET (or an eighth of the RAM), where the per-image speed is best."""
    if device.type == "cuda":
        size = per_process
        probe = copy.deepcopy(model).to(device)  # its batch-norm statistics must not move
        while size > 1:
            try:
                with torch.random.fork_rng(devices=[device]):
                    probe(torch.zeros(size, 3, image_size, image_size, device=device)).sum().backward()
                break
            except torch.cuda.OutOfMemoryError:
                size //= 2
                torch.cuda.empty_cache()
        del probe
        torch.cuda.empty_cache()
        return max(1, size)
    table = summary(model, image_size)
    per_image = 16 * sum(math.prod(layer.output[image_size]) for layer in table.layers)  # 4 bytes x ~4 copies
    budget = min(CPU_ACTIVATION_BUDGET, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 8) \
        if hasattr(os, "sysconf") else CPU_ACTIVATION_BUDGET
    return max(1, min(per_process, budget // per_image))


# -- the run folder --------------------------------------------------------------------------------------------------


class RunFolder:
    """The files of one run. ``state.pt`` names the checkpoint a resume starts from; it is written last,
    so a crash at any moment leaves it pointing at a complete checkpoint.

    RUN/config.yaml, metrics.jsonl, last.safetensors, best.safetensors, state.pt,
    checkpoints/step-NNNNNNNN.{safetensors,state.pt} (the newest ``keep``), tensorboard/ (optional).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = path / "config.yaml"
        self.metrics = path / "metrics.jsonl"
        self.last = path / "last.safetensors"
        self.best = path / "best.safetensors"
        self.state = path / "state.pt"
        self.checkpoints = path / "checkpoints"

    def create(self, config: TrainConfig) -> None:
        if self.state.exists():
            raise TrainingError(f"{self.path}: already holds a run; continue it with --resume {self.path} "
                                "or choose another --out")
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrainingError(f"{self.path}: cannot create the run folder ({error.strerror or error})") from None
        self.metrics.unlink(missing_ok=True)
        write_atomic(self.config, config_to_yaml(config).encode())

    def read_state(self) -> dict[str, Any]:
        if not self.state.is_file():
            raise TrainingError(f"{self.path}: no state.pt here; not a run folder, or no checkpoint was written yet")
        try:
            return torch.load(self.state, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types on damaged files
            raise TrainingError(f"{self.state}: unreadable resume state ({' '.join(str(error).split())[:120]})") \
                from None

    def save(self, model: SqueezeNet, state: dict[str, Any], metadata: dict[str, str], best: bool) -> None:
        """Write one checkpoint: weights, then state, then last/best, then state.pt; each file atomically."""
        name = f"step-{state['step']:08d}"
        weights = save_weights(model, self.checkpoints / f"{name}.safetensors", metadata)
        state = {**state, "weights": f"checkpoints/{name}.safetensors"}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(self.checkpoints / f"{name}.state.pt", buffer.getvalue())
        _link_atomic(weights, self.last)
        if best:
            _link_atomic(weights, self.best)
        write_atomic(self.state, buffer.getvalue())
        self._prune(keep=int(state["keep"]))

    def _prune(self, keep: int) -> None:
        steps = sorted(self.checkpoints.glob("step-*.safetensors"))
        for old in steps[:-keep]:
            old.unlink(missing_ok=True)
            old.with_name(old.name.replace(".safetensors", ".state.pt")).unlink(missing_ok=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def rewind_metrics(self, step: int) -> None:
        """Forget metrics written after the checkpoint a resume starts from (they will be written again)."""
        if not self.metrics.is_file():
            return
        lines = self.metrics.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and _step_of(line) <= step]
        write_atomic(self.metrics, "".join(line + "\n" for line in kept).encode())

    def remove_partial_writes(self) -> None:
        """Delete the temporary files of writes a kill interrupted (never renamed, so never read)."""
        for folder in (self.path, self.checkpoints):
            for temporary in folder.glob(".*.tmp"):
                temporary.unlink(missing_ok=True)


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line from a crash: dropped


def _link_atomic(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to ``source`` (a copy where links are not allowed), atomically."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)
        write_atomic(target, source.read_bytes())


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's metrics.jsonl."""
    path = Path(run) / "metrics.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TrainingError(f"{path}: no metrics here (not a run folder, or no epoch finished yet)") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise TrainingError(f"{path} line {number}: not JSON") from None
    return records


# -- random state ----------------------------------------------------------------------------------------------------


def _rng_state(device: torch.device) -> dict[str, Any]:
    _, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)],
        "python": list(random.getstate()[1]),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate((3, tuple(state["python"]), None))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# -- evaluation ------------------------------------------------------------------------------------------------------


def _evaluate(model: nn.Module, data: Datasets, processes: Processes, batch_size: int, config: TrainConfig,
              workers: int) -> dict[str, float]:
    """Loss, top-1 and top-5 on the test split, each process scoring its share; and how many classes are
    dead: their logit is 0 (the ReLU before the pool) for every test image, so none can be predicted."""
    assert data.test is not None
    indices = range(processes.rank, len(data.test), processes.world)
    keys: list[list[Key]] = [[(i, 0) for i in indices[s:s + batch_size]] for s in range(0, len(indices), batch_size)]
    totals = torch.zeros(4, dtype=torch.float64, device=processes.device)
    alive = torch.zeros(model.spec.num_classes, dtype=torch.float64, device=processes.device)
    model.eval()
    with torch.inference_mode(), _autocast(config, processes.device):
        for images, labels in batches(data.test, keys, workers):
            if not len(labels):
                continue
            images, labels = _to_device(images, labels, data, processes.device, config.channels_last)
            logits = _test_logits(model, images, config)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
            totals += torch.stack([F.cross_entropy(logits, labels, reduction="sum"), top[:, 0].sum(),
                                   top.any(dim=1).sum(), torch.tensor(len(labels), device=logits.device)]).double()
            alive += (logits != 0).any(dim=0).double()
    model.train()
    loss, top1, top5, count = _all_sum(totals, processes).tolist()
    dead = int((_all_sum(alive, processes) == 0).sum())
    return {"test_loss": loss / count, "test_top1": top1 / count, "test_top5": top5 / count, "dead_classes": dead}


def _test_logits(model: nn.Module, images: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The logits a test batch is scored by: its own, or a weighted mean over test-time views of it."""
    def unmoved(batch: torch.Tensor) -> torch.Tensor:
        logits = model(batch).float()
        return (logits + model(batch.flip(3)).float()) / 2 if config.test_flip else logits

    logits = unmoved(images)
    if config.test_shift:
        shift, (height, width) = config.test_shift, images.shape[-2:]
        padded = F.pad(images, (shift,) * 4, mode="reflect")
        layout = torch.channels_last if config.channels_last else torch.contiguous_format
        moved = (padded[..., :height, :width], padded[..., 2 * shift:, 2 * shift:])
        logits = logits / 2 + sum(unmoved(view.contiguous(memory_format=layout)) for view in moved) / 4
    return logits


def _autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()


def _to_device(images: torch.Tensor, labels: torch.Tensor, data: Datasets, device: torch.device,
               channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images = data.normalize(images.to(device, non_blocking=True))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


# -- stopping requests -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[dict[str, bool]]:
    """Ctrl-C / SIGTERM ask for a clean stop at the next step (checkpoint, then exit); a second one is immediate."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield flag
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def request(signum: int, frame: Any) -> None:
        flag["stop"] = True
        signal.signal(signum, previous[signum])

    for sig in previous:
        signal.signal(sig, request)
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the loop --------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    run: Path
    epochs_done: int
    steps: int
    best: dict[str, Any]
    last_metrics: dict[str, Any]
    stopped_early: bool
    main: bool = True  # False in the other processes of a torchrun launch


def train(config: TrainConfig, model: SqueezeNet | None = None) -> TrainResult:
    """Train as ``config`` says (``config.resume``: continue that run folder) and return where it went.

    ``model``: train this network in place instead of a fresh one from ``config.arch`` (fine-tuning; e.g.
    squeezenet.compress passes one whose weights are parametrized, so pruning and weight sharing hold at every
    step). Its spec must fit the data; resuming such a run needs the same kind of ``model`` again.
    """
    processes = _start_processes(config.device)
    try:
        return _train(config, processes, model)
    finally:
        if processes.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _resolve_config(config: TrainConfig, processes: Processes) -> tuple[TrainConfig, RunFolder, dict | None]:
    if config.resume:
        run = RunFolder(Path(config.resume))
        if not run.config.is_file():
            raise TrainingError(f"{run.path}: no config.yaml here; not a run folder")
        saved = load_config(run.config)
        defaults = TrainConfig()
        overrides = {n: getattr(config, n) for n in RESUME_OVERRIDES if getattr(config, n) != getattr(defaults, n)}
        return dataclasses.replace(saved, **overrides, resume=str(run.path), out=str(run.path)), run, run.read_state()
    out = config.out
    if out is None:  # every process must agree on the folder
        out = _gather(f"runs/{time.strftime('%Y%m%d-%H%M%S')}", processes)[0]
    config = dataclasses.replace(config, out=out)
    return config, RunFolder(Path(out)), None


def _train(config: TrainConfig, processes: Processes, initial: SqueezeNet | None = None) -> TrainResult:
    config.validate()
    config, run, state = _resolve_config(config, processes)
    config.validate()
    if config.batch_size % processes.world:
        raise TrainingError(f"--batch-size {config.batch_size} must divide evenly among {processes.world} processes")
    per_process = config.batch_size // processes.world
    if config.keep_freed_memory and processes.device.type == "cpu":
        keep_freed_memory()
    _seed_everything(config.seed + processes.rank)  # dropout differs across processes; the data order does not

    # Data and model: everything checked before the first step.
    spec = initial.spec if initial is not None else get_spec(config.arch, **spec_overrides(config))
    data = load_datasets(config.data, config.image_size, min_size=spec.min_input_size(), strict=config.strict,
                         download=config.download, cache=config.cache, subset=config.subset,
                         crop_padding=config.crop_padding)
    num_classes = config.num_classes or (initial.spec.num_classes if initial is not None else data.num_classes)
    if num_classes < data.num_classes:
        raise TrainingError(f"{data.name}: has {data.num_classes} classes but --num-classes is {num_classes}")
    spec = spec.replace(num_classes=num_classes)
    if initial is not None and spec != initial.spec:
        raise TrainingError(f"the model to train has {initial.spec.num_classes} outputs, not {num_classes}")
    spec.spatial_sizes(data.image_size)  # InputSizeError now rather than at the first step
    if data.test is not None and config.test_shift >= data.image_size:
        raise TrainingError(f"--test-shift {config.test_shift} must be smaller than the images "
                            f"({data.image_size}x{data.image_size})")
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"{data.name}: {len(data.train)} training images are fewer than one batch "
                            f"(--batch-size {config.batch_size})")
    total_steps = steps_per_epoch * config.epochs
    model = initial if initial is not None else SqueezeNet(spec)
    model.meta = model.meta.replace(preprocessing=data.preprocessing)
    class_names = data.class_names + [f"class {i}" for i in range(data.num_classes, num_classes)]
    micro = min(config.micro_batch or _micro_batch(model, data.image_size, per_process, processes.device),
                per_process)
    accumulation = math.ceil(per_process / micro)
    micro = math.ceil(per_process / accumulation)  # even passes: 32 images at most 24 a pass go as 16 + 16
    workers = config.workers if config.workers is not None else min(4, max(0, (os.cpu_count() or 1) - 1))

    model.to(processes.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    decay = config.weight_decay
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=config.peak_lr,
                                                           momentum=config.momentum, nesterov=config.nesterov,
                                                           weight_decay=decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.peak_lr, weight_decay=decay)

    # Where to start: a fresh run folder, or exactly where the checkpoint left off.
    epoch, batch_in_epoch, step, best = 0, 0, 0, {}
    epoch_totals = torch.zeros(3, dtype=torch.float64)  # this epoch's loss sum, correct, count
    if state is not None:
        from .weights.io import read_safetensors

        stored = read_safetensors(run.path / state["weights"])
        model.load_state_dict({k: v.to(processes.device) for k, v in stored.state_dict.items()})
        optimizer.load_state_dict(state["optimizer"])
        epoch, batch_in_epoch, step, best = state["epoch"], state["batch_in_epoch"], state["step"], state["best"]
        epoch_totals = torch.tensor(state["epoch_totals"], dtype=torch.float64)
        rng = state["rng"]
        if len(rng) != processes.world:
            raise TrainingError(f"{run.path}: was run by {len(rng)} processes, not {processes.world}; "
                                "resume with the same number for an exact continuation")
        _set_rng_state(rng[processes.rank], processes.device)
        if processes.main:
            run.rewind_metrics(step)
            run.remove_partial_writes()
    elif processes.main:
        run.create(config)
    _barrier(processes)

    network: nn.Module = model
    if processes.world > 1:
        network = nn.parallel.DistributedDataParallel(model, device_ids=[processes.device.index]
                                                      if processes.device.type == "cuda" else None)
    if config.compile:
        network = torch.compile(network)
    writer = _tensorboard(run) if config.tensorboard and processes.main else None
    if processes.main:
        print(f"training {spec.name} ({sum(p.numel() for p in model.parameters()):,} parameters) on {data.name}: "
              f"{len(data.train):,} images at {data.image_size}x{data.image_size}, {num_classes} classes, "
              f"{steps_per_epoch} steps x {config.epochs} epochs, batch {config.batch_size} = {processes.world} "
              f"process(es) x {accumulation} x {micro}, peak lr {config.peak_lr:.4g}, on {processes.device}; "
              f"run folder {run.path}", flush=True)

    def checkpoint(next_epoch: int, next_batch: int, is_best: bool, metrics: dict[str, Any]) -> None:
        rng = _gather(_rng_state(processes.device), processes)
        if processes.main:
            state = {"epoch": next_epoch, "batch_in_epoch": next_batch, "step": step, "best": best,
                     "epoch_totals": epoch_totals.tolist() if next_batch else [0.0, 0.0, 0.0],
                     "optimizer": optimizer.state_dict(), "rng": rng, "keep": config.keep,
                     "config": config_to_yaml(config)}
            metadata = {"class_names": json.dumps(class_names), "epoch": str(next_epoch), "step": str(step),
                        **{k: f"{v:.6g}" for k, v in metrics.items() if isinstance(v, float)}}
            run.save(model, state, metadata, is_best)
        _barrier(processes)

    log_c = math.log(num_classes)
    recent_losses: deque[float] = deque(maxlen=max(1, config.stall_patience))
    dead_steps = 0
    started = time.perf_counter()
    stopped_early = False
    last_metrics: dict[str, Any] = {}
    lr = learning_rate(config, step, total_steps, steps_per_epoch)
    network.train()
    with _stop_on_signal() as stop:
        while epoch < config.epochs and not stopped_early:
            order, seeds = epoch_order(len(data.train), config.seed, epoch)
            keys = [(int(i), int(s)) for i, s in zip(order, seeds, strict=True)]
            plan = []  # this process's micro-batches for the rest of the epoch
            for b in range(batch_in_epoch, steps_per_epoch):
                mine = keys[b * config.batch_size:(b + 1) * config.batch_size][
                    processes.rank * per_process:(processes.rank + 1) * per_process]
                plan += [mine[m:m + micro] for m in range(0, per_process, micro)]
            loader = batches(data.train, plan, workers)
            epoch_start = time.perf_counter()
            bar = tqdm(total=steps_per_epoch, initial=batch_in_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                       unit="step", disable=not (config.progress and processes.main), leave=False, dynamic_ncols=True)
            for b in range(batch_in_epoch, steps_per_epoch):
                step_start = time.perf_counter()
                lr = learning_rate(config, step, total_steps, steps_per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                totals = torch.zeros(4, dtype=torch.float64, device=processes.device)
                for m in range(accumulation):
                    images, labels = next(loader)
                    images, labels = _to_device(images, labels, data, processes.device, config.channels_last)
                    sync = m == accumulation - 1 or processes.world == 1
                    with (contextlib.nullcontext() if sync else network.no_sync()), \
                            _autocast(config, processes.device):
                        logits = network(images).float()
                        loss = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=config.label_smoothing)
                    (loss / per_process).backward()
                    with torch.no_grad():
                        totals += torch.stack([loss.detach(), (logits.argmax(1) == labels).sum(),
                                               torch.tensor(len(labels), device=logits.device),
                                               (logits == 0).all(dim=1).sum()]).double()
                requested = float(stop["stop"] or (config.time_limit is not None
                                                   and time.perf_counter() - started > config.time_limit))
                flags = _all_sum(torch.cat([totals, totals.new_tensor([requested])]), processes).tolist()
                loss_sum, correct, count, dead, requested = flags
                mean_loss = loss_sum / max(count, 1)
                if not math.isfinite(mean_loss):
                    raise TrainingError(f"{run.path}: loss became {mean_loss} at step {step + 1} (epoch {epoch + 1}, "
                                        f"lr {lr:.3g}); lower --lr or raise --warmup-epochs. {_last_good(run)}")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                epoch_totals += torch.tensor([loss_sum, correct, count], dtype=torch.float64)
                # The SqueezeNet stall: every output dead (ReLU before the pool) or the loss stuck at ln(C).
                dead_steps = dead_steps + 1 if dead >= count else 0
                recent_losses.append(mean_loss)
                if step <= round(config.warmup_epochs * steps_per_epoch):
                    recent_losses.clear()  # judge the plateau on full-rate steps only
                if config.stall_patience and (dead_steps >= config.stall_patience or (
                        len(recent_losses) == config.stall_patience and min(recent_losses) >= 0.998 * log_c)):
                    stuck = sum(recent_losses) / len(recent_losses) if recent_losses else mean_loss
                    raise TrainingError(
                        f"{run.path}: training stalled at loss {stuck:.4f} ~ ln({num_classes}) = {log_c:.4f} for "
                        f"{config.stall_patience} steps (step {step}); the outputs are dead or constant. Lower --lr, "
                        f"raise --warmup-epochs or try --batch-norm. {_last_good(run)}")
                seconds = time.perf_counter() - step_start
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.4g}", img_s=f"{count / seconds:.0f}", refresh=False)
                bar.update(1)
                if writer is not None:
                    writer.add_scalar("train/loss", mean_loss, step)
                    writer.add_scalar("train/lr", lr, step)
                if requested:
                    stopped_early = True
                    batch_in_epoch = b + 1
                    break
                if config.checkpoint_every and step % config.checkpoint_every == 0 and b + 1 < steps_per_epoch:
                    checkpoint(epoch, b + 1, False, {})
            bar.close()
            if stopped_early and batch_in_epoch < steps_per_epoch:
                checkpoint(epoch, batch_in_epoch, False, {})
                break
            # End of an epoch: evaluate, log, checkpoint.
            loss_sum, correct, count = epoch_totals.tolist()
            elapsed = time.perf_counter() - epoch_start
            metrics: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": lr,
                                       "train_loss": loss_sum / count, "train_top1": correct / count}
            scored = data.test is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs)
            if scored:
                _share_buffers(model, processes)
                metrics.update(_evaluate(model, data, processes, micro, config, workers))
            metrics.update(images_per_s=count / elapsed, epoch_seconds=elapsed,
                           elapsed_seconds=time.perf_counter() - started)
            # With a test split only scored epochs compete for best; without one, the train loss decides.
            score = metrics.get("test_top1", -metrics["train_loss"])
            is_best = (scored or data.test is None) and (not best or score > best["score"])
            if is_best:
                best = {"score": score, "epoch": epoch + 1, **{k: v for k, v in metrics.items() if k != "epoch"}}
            epoch, batch_in_epoch = epoch + 1, 0
            epoch_totals = torch.zeros(3, dtype=torch.float64)
            last_metrics = metrics
            if processes.main:
                run.append_metrics(metrics)
                if writer is not None:
                    for key, value in metrics.items():
                        writer.add_scalar(f"epoch/{key}", value, step)
                shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("epoch", "step"))
                print(f"epoch {epoch}/{config.epochs}: {shown}", flush=True)
                if metrics.get("dead_classes"):
                    print(f"warning: {metrics['dead_classes']} of {num_classes} classes are dead now (logit 0 for "
                          "every test image: the ReLU before the pool); if it lasts, lower --lr or try "
                          "--optimizer adamw with --batch-norm", file=sys.stderr, flush=True)
            checkpoint(epoch, 0, is_best, metrics)
    if writer is not None:
        writer.close()
    if stop["stop"]:
        raise KeyboardInterrupt(f"stopped at step {step}; continue with --resume {run.path}")
    return TrainResult(run.path, epoch, step, best, last_metrics, stopped_early, processes.main)


def _last_good(run: RunFolder) -> str:
    if run.last.is_file():
        return f"The last good checkpoint is kept: {run.last}"
    return "No checkpoint was written yet."


def _tensorboard(run: RunFolder) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
    return SummaryWriter(str(run.path / "tensorboard"))


__all__ = ["RESUME_OVERRIDES", "RunFolder", "TrainConfig", "TrainResult", "config_from_dict",
           "learning_rate", "load_config", "read_metrics", "train"]


# -- the command line ------------------------------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    """One flag per TrainConfig field (defaults shown are the config's; unset flags stay None)."""
    import argparse

    parser.add_argument("--config", metavar="FILE.yaml", help="read settings from a YAML file (keys are flag names)")
    for item in dataclasses.fields(TrainConfig):
        kind = _kind(item.name)
        help_text = f"{item.metadata['help']} (default: {item.default})"
        if kind is bool:
            parser.add_argument(_flag(item.name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(_flag(item.name), type=kind, default=None, choices=item.metadata.get("choices"),
                                metavar=None if item.metadata.get("choices") else item.name.upper(), help=help_text)


def config_from_arguments(args: Any) -> TrainConfig:
    """TrainConfig from parsed flags: defaults, then --config FILE, then the flags given."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if given.get("resume"):
        fixed = sorted(set(given) - {"resume", *RESUME_OVERRIDES})
        if fixed or args.config:
            names = ", ".join(_flag(n) for n in fixed) or "--config"
            raise TrainingError(f"--resume continues the run with its own config.yaml; {names} cannot change "
                                f"(only {', '.join(_flag(n) for n in RESUME_OVERRIDES)} can)")
    base = load_config(args.config) if args.config else TrainConfig()
    return config_from_dict(given, "command line", base)
