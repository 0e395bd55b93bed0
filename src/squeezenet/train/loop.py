"""The training loop, read top to bottom: ``run`` sets a run up, then ``train_one_epoch`` and ``evaluate``
take turns until the epochs are done, with a checkpoint after every epoch.

Everything a step depends on is fixed before the first one (``Setup``); where the run stands is a small
record (``Position``) that checkpoints store and a resume restores, so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data import Key, batches, epoch_order
from ..errors import TrainingError, one_line
from ..evaluate import Tally
from ..model import SqueezeNet
from ..spec import Spec
from .config import TrainConfig
from .distributed import Processes, all_sum, barrier, gather, share_buffers, start_processes, stop, wrap
from .memory import keep_freed_memory
from .run_folder import RunFolder, rng_state, seed_everything, set_rng_state
from .setup import Setup, autocast, cache_features, resolve_run, resume_state, run_folder, set_up, train_mode


@dataclass
class TrainResult:
    run: Path
    epochs_done: int
    steps: int
    best: dict[str, Any]
    last_metrics: dict[str, Any]
    stopped_early: bool
    main: bool = True  # False in the other processes of a torchrun launch


def run(config: TrainConfig, model: SqueezeNet | None = None, spec: Spec | None = None) -> TrainResult:
    """``squeezenet.train.train``: the processes started, the run trained, the processes stopped."""
    processes = start_processes(config.device)
    try:
        return _train(config, processes, model, spec)
    finally:
        stop(processes)


def _train(config: TrainConfig, processes: Processes, initial: SqueezeNet | None, spec: Spec | None) -> TrainResult:
    config.validate()
    run = run_folder(config, processes)
    with _holding(run, processes, create=not config.resume):  # before the folder is read: another run may write it
        config = resolve_run(config, run)
        config.validate()
        return _train_in(config, processes, run, resume_state(config, run), initial, spec)


@contextlib.contextmanager
def _holding(run: RunFolder, processes: Processes, create: bool) -> Iterator[None]:
    """The run folder's lock, held by process 0 (which writes the folder) for all; when another run holds it,
    every process refuses."""
    with contextlib.ExitStack() as held:
        refusal = None
        if processes.main:
            try:
                held.enter_context(run.hold(create))
            except TrainingError as error:
                refusal = str(error)
        if (refusal := gather(refusal, processes)[0]) is not None:
            raise TrainingError(refusal)
        yield


def _train_in(config: TrainConfig, processes: Processes, run: RunFolder, state: dict[str, Any] | None,
              initial: SqueezeNet | None, spec: Spec | None) -> TrainResult:
    if config.keep_freed_memory and processes.device.type == "cpu":
        keep_freed_memory()
    seed_everything(config.seed + processes.rank)  # dropout differs across processes; the data order does not
    setup = set_up(config, processes, run, initial, spec, state)
    config = setup.config  # as the data adapted it (the small-data recipe)
    position = _restore(setup, state) if state is not None else Position()
    if state is None and processes.main:
        run.create(config, setup.model.spec)
    barrier(processes)
    setup = cache_features(setup)  # a linear probe's features, from the restored weights on a resume

    network = wrap(setup.trained, processes)
    if config.compile:
        network = torch.compile(network)
    writer = _tensorboard(run) if config.tensorboard and processes.main else None
    if processes.main:
        print(setup.describe(), flush=True)
    stall = StallDetector(setup.model.spec.num_classes, config.stall_patience,
                          round(config.warmup_epochs * setup.steps_per_epoch))
    started = time.perf_counter()
    last_metrics: dict[str, Any] = {}
    stopped_early = False
    train_mode(setup, network)
    with _stop_on_signal() as stop_requested:
        def should_stop() -> bool:
            return stop_requested["stop"] or (config.time_limit is not None
                                              and time.perf_counter() - started > config.time_limit)

        while position.epoch < config.epochs and not stopped_early:
            epoch_start = time.perf_counter()
            ended, stopped_early = train_one_epoch(setup, network, position, stall, should_stop, writer)
            if not ended:  # a stop was asked for mid-epoch: keep the place, score nothing
                _checkpoint(setup, position, False, {})
                break
            last_metrics = _end_epoch(setup, position, epoch_start, started, writer)
    if writer is not None:
        writer.close()
    if stop_requested["stop"]:
        raise KeyboardInterrupt(f"stopped at step {position.step}; continue with --resume {run.path}")
    return TrainResult(run.path, position.epoch, position.step, position.best, last_metrics, stopped_early,
                       processes.main)


# -- where the run stands ----------------------------------------------------------------------------------------------


@dataclass
class Position:
    """Where a run stands: what a checkpoint stores besides the weights, the optimizer and the RNG states."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    epoch_totals: torch.Tensor = field(default_factory=lambda: torch.zeros(3, dtype=torch.float64))  # loss, hits, n


def _restore(setup: Setup, state: dict[str, Any]) -> Position:
    """Weights, optimizer, RNG states and position from a checkpoint, for an exact continuation."""
    from ..weights.io import read_safetensors

    processes, run = setup.processes, setup.run
    weights = run.path / state["weights"]
    _load_weights(setup.result, read_safetensors(weights).state_dict, weights, processes.device)
    if setup.average is not None:  # the file holds the average; the weights as trained are in the state
        if "trained_weights" not in state:
            raise TrainingError(f"{run.state}: field 'trained_weights' is missing (a run with --ema-decay keeps "
                                "the weights as trained there)")
        _load_weights(setup.model, state["trained_weights"], run.state, processes.device)
        setup.average.n_averaged.fill_(state["average_updates"])
    _load_optimizer(setup.optimizer, state["optimizer"], run.state)
    position = Position(state["epoch"], state["batch_in_epoch"], state["step"], state["best"],
                        torch.tensor(state["epoch_totals"], dtype=torch.float64))
    rng = state["rng"]
    if len(rng) != processes.world:
        raise TrainingError(f"{run.path}: was run by {len(rng)} processes, not {processes.world}; "
                            "resume with the same number for an exact continuation")
    set_rng_state(rng[processes.rank], processes.device)
    if processes.main:
        run.rewind_metrics(position.step)
        run.remove_partial_writes()
    return position


def _load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path, device: torch.device) -> None:
    try:
        model.load_state_dict({k: v.to(device) for k, v in tensors.items()})
    except RuntimeError as error:  # missing keys or size mismatches: weights of another network
        raise TrainingError(f"{source}: does not fit the run's network ({one_line(error, 160)})") from None


def _load_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any], path: Path) -> None:
    """The optimizer's state, checked to be one of this network's: torch accepts momentum buffers of other shapes
    and fails only at the next step."""
    try:
        optimizer.load_state_dict(saved)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as error:
        raise TrainingError(f"{path}: field 'optimizer' is not this run's optimizer ({one_line(error, 160)})") \
            from None
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            for name, value in optimizer.state.get(parameter, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != parameter.shape:
                    raise TrainingError(f"{path}: field 'optimizer' holds a {name} of shape {tuple(value.shape)} "
                                        f"for a parameter of shape {tuple(parameter.shape)}: another network's")


def _checkpoint(setup: Setup, position: Position, is_best: bool, metrics: dict[str, Any]) -> None:
    """Every process's RNG state gathered, then process 0 writes the checkpoint."""
    from .config import config_to_yaml

    rng = gather(rng_state(setup.processes.device), setup.processes)
    if setup.processes.main:
        state = {"epoch": position.epoch, "batch_in_epoch": position.batch_in_epoch, "step": position.step,
                 "best": position.best,
                 "epoch_totals": position.epoch_totals.tolist() if position.batch_in_epoch else [0.0, 0.0, 0.0],
                 "optimizer": setup.optimizer.state_dict(), "rng": rng, "keep": setup.config.keep,
                 "config": config_to_yaml(setup.config)}
        if setup.average is not None:  # the weights file holds the average, what is scored and deployed
            state["trained_weights"] = {k: v.detach().cpu() for k, v in setup.model.state_dict().items()}
            state["average_updates"] = int(setup.average.n_averaged)
        metadata = {"epoch": str(position.epoch), "step": str(position.step),
                    **{k: f"{v:.6g}" for k, v in metrics.items() if isinstance(v, float)}}
        setup.run.save(setup.result, state, metadata, is_best)
    barrier(setup.processes)


# -- one epoch ---------------------------------------------------------------------------------------------------------


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


def _epoch_plan(setup: Setup, position: Position) -> list[list[Key]]:
    """This process's micro-batches for the rest of the epoch: (sample, augmentation seed) keys."""
    config, rank, per_process = setup.config, setup.processes.rank, setup.per_process
    order, seeds = epoch_order(len(setup.data.train), config.seed, position.epoch)
    keys = [(int(i), int(s)) for i, s in zip(order, seeds, strict=True)]
    plan = []
    for b in range(position.batch_in_epoch, setup.steps_per_epoch):
        mine = keys[b * config.batch_size:(b + 1) * config.batch_size][rank * per_process:(rank + 1) * per_process]
        plan += [mine[m:m + setup.micro] for m in range(0, per_process, setup.micro)]
    return plan


def train_one_epoch(setup: Setup, network: nn.Module, position: Position, stall: StallDetector,
                    should_stop: Callable[[], bool], writer: Any) -> tuple[bool, bool]:
    """Optimizer steps from ``position`` to the end of the epoch. Returns (whether the epoch ended, whether a stop
    was asked for): every process sees the same answer, since the stop request is summed over processes."""
    config, processes, optimizer = setup.config, setup.processes, setup.optimizer
    loader = batches(setup.data.train, _epoch_plan(setup, position), setup.workers)
    bar = tqdm(total=setup.steps_per_epoch, initial=position.batch_in_epoch, unit="step", leave=False,
               desc=f"epoch {position.epoch + 1}/{config.epochs}", dynamic_ncols=True,
               disable=not (config.progress and processes.main and sys.stderr.isatty()))
    try:
        for b in range(position.batch_in_epoch, setup.steps_per_epoch):
            step_start = time.perf_counter()
            lr = learning_rate(config, position.step, setup.total_steps, setup.steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)  # checkpoints before scales existed have none
            totals = torch.zeros(4, dtype=torch.float64, device=processes.device)  # loss, hits, n, dead
            for m in range(setup.accumulation):
                images, labels = next(loader)
                images, labels = _to_device(images, labels, setup)
                sync = m == setup.accumulation - 1 or processes.world == 1
                with (contextlib.nullcontext() if sync else network.no_sync()), autocast(config, processes.device):
                    logits = network(images).float()
                    loss = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=config.label_smoothing)
                (loss / setup.per_process).backward()
                with torch.no_grad():
                    totals += torch.stack([loss.detach(), (logits.argmax(1) == labels).sum(),
                                           torch.tensor(len(labels), device=logits.device),
                                           (logits == 0).all(dim=1).sum()]).double()
            flags = all_sum(torch.cat([totals, totals.new_tensor([float(should_stop())])]), processes).tolist()
            loss_sum, correct, count, dead, requested = flags
            mean_loss = loss_sum / max(count, 1)
            if not math.isfinite(mean_loss):
                raise TrainingError(f"{setup.run.path}: loss became {mean_loss} at step {position.step + 1} (epoch "
                                    f"{position.epoch + 1}, lr {lr:.3g}); lower --lr or raise --warmup-epochs. "
                                    f"{_last_good(setup.run)}")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if setup.average is not None:
                setup.average.update_parameters(setup.model)
            position.step += 1
            position.batch_in_epoch = b + 1
            position.epoch_totals += torch.tensor([loss_sum, correct, count], dtype=torch.float64)
            stall.check(position.step, mean_loss, all_dead=dead >= count, run=setup.run)
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.4g}",
                            img_s=f"{count / (time.perf_counter() - step_start):.0f}", refresh=False)
            bar.update(1)
            if writer is not None:
                writer.add_scalar("train/loss", mean_loss, position.step)
                writer.add_scalar("train/lr", lr, position.step)
            if requested:
                return b + 1 == setup.steps_per_epoch, True
            if config.checkpoint_every and position.step % config.checkpoint_every == 0 \
                    and b + 1 < setup.steps_per_epoch:
                _checkpoint(setup, position, False, {})
    finally:
        bar.close()
    return True, False


def _end_epoch(setup: Setup, position: Position, epoch_start: float, started: float, writer: Any) -> dict[str, Any]:
    """Score the test split (every ``eval_every`` epochs and after the last), log, and checkpoint."""
    config, data = setup.config, setup.data
    loss_sum, correct, count = position.epoch_totals.tolist()
    elapsed = time.perf_counter() - epoch_start
    lr = learning_rate(config, position.step - 1, setup.total_steps, setup.steps_per_epoch)
    epoch = position.epoch + 1
    metrics: dict[str, Any] = {"epoch": epoch, "step": position.step, "lr": lr,
                               "train_loss": loss_sum / count, "train_top1": correct / count}
    scored = data.test is not None and (epoch % config.eval_every == 0 or epoch == config.epochs)
    if scored:
        share_buffers(setup.model, setup.processes)
        if setup.average is not None:  # each process averaged its own batch-norm statistics
            share_buffers(setup.average.module, setup.processes)
        metrics.update(evaluate(setup))
    metrics.update(images_per_s=count / elapsed, epoch_seconds=elapsed, elapsed_seconds=time.perf_counter() - started)
    # With a test split only scored epochs compete for best; without one, the train loss decides.
    score = metrics.get("test_top1", -metrics["train_loss"])
    is_best = (scored or data.test is None) and (not position.best or score > position.best["score"])
    if is_best:
        position.best = {"score": score, "epoch": epoch, **{k: v for k, v in metrics.items() if k != "epoch"}}
    position.epoch, position.batch_in_epoch = epoch, 0
    position.epoch_totals = torch.zeros(3, dtype=torch.float64)
    if setup.processes.main:
        _log_epoch(setup, metrics, writer)
    _checkpoint(setup, position, is_best, metrics)
    return metrics


def _log_epoch(setup: Setup, metrics: dict[str, Any], writer: Any) -> None:
    setup.run.append_metrics(metrics)
    if writer is not None:
        for key, value in metrics.items():
            writer.add_scalar(f"epoch/{key}", value, metrics["step"])
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("epoch", "step"))
    print(f"epoch {metrics['epoch']}/{setup.config.epochs}: {shown}", flush=True)
    if metrics.get("dead_classes"):
        print(f"warning: {metrics['dead_classes']} of {setup.model.spec.num_classes} classes are dead now (logit 0 "
              "for every test image: the ReLU before the pool); if it lasts, lower --lr or try --optimizer adamw "
              "with --batch-norm", file=sys.stderr, flush=True)


# -- scoring -----------------------------------------------------------------------------------------------------------


def evaluate(setup: Setup) -> dict[str, float]:
    """Loss, top-1, top-5 and dead classes on the test split, each process scoring its share (``evaluate.Tally``,
    summed over processes)."""
    data, processes, config = setup.data, setup.processes, setup.config
    assert data.test is not None
    indices = range(processes.rank, len(data.test), processes.world)
    keys: list[list[Key]] = [[(i, 0) for i in indices[s:s + setup.micro]] for s in range(0, len(indices), setup.micro)]
    tally = Tally(setup.model.spec.num_classes, processes.device)
    model = setup.scorer
    model.eval()
    with torch.inference_mode(), autocast(config, processes.device):
        for images, labels in batches(data.test, keys, setup.workers):
            if len(labels):
                images, labels = _to_device(images, labels, setup)
                tally.add(test_logits(model, images, config), labels)
    train_mode(setup, model)
    all_sum(tally.sums, processes)
    all_sum(tally.alive, processes)
    result = tally.accuracy()
    top5 = {"test_top5": result.top5} if result.top5 is not None else {}  # not reported for 5 classes or fewer
    return {"test_loss": result.loss, "test_top1": result.top1, **top5, "dead_classes": result.dead_classes}


def test_logits(model: nn.Module, images: torch.Tensor, config: TrainConfig) -> torch.Tensor:
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


def _to_device(images: torch.Tensor, labels: torch.Tensor, setup: Setup) -> tuple[torch.Tensor, torch.Tensor]:
    device = setup.processes.device
    images = setup.data.normalize(images.to(device, non_blocking=True))
    if setup.config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


# -- watching the run --------------------------------------------------------------------------------------------------


class StallDetector:
    """The SqueezeNet stall: every output dead (the ReLU before the pool) or the loss stuck at ln(classes) for
    ``patience`` steps. Judged on full-rate steps only: warmup steps are not counted as a plateau."""

    def __init__(self, num_classes: int, patience: int, warmup_steps: int) -> None:
        self.num_classes, self.patience, self.warmup_steps = num_classes, patience, warmup_steps
        self.log_classes = math.log(num_classes)
        self.recent: deque[float] = deque(maxlen=max(1, patience))
        self.dead_steps = 0

    def check(self, step: int, loss: float, all_dead: bool, run: RunFolder) -> None:
        self.dead_steps = self.dead_steps + 1 if all_dead else 0
        self.recent.append(loss)
        if step <= self.warmup_steps:
            self.recent.clear()
        if not self.patience:
            return
        plateau = len(self.recent) == self.patience and min(self.recent) >= 0.998 * self.log_classes
        if self.dead_steps >= self.patience or plateau:
            stuck = sum(self.recent) / len(self.recent) if self.recent else loss
            raise TrainingError(
                f"{run.path}: training stalled at loss {stuck:.4f} ~ ln({self.num_classes}) = {self.log_classes:.4f} "
                f"for {self.patience} steps (step {step}); the outputs are dead or constant. Lower --lr, raise "
                f"--warmup-epochs or try --batch-norm. {_last_good(run)}")


def _last_good(run: RunFolder) -> str:
    if run.last.is_file():
        return f"The last good checkpoint is kept: {run.last}"
    return "No checkpoint was written yet."


def _tensorboard(run: RunFolder) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError("--tensorboard needs the tensorboard extra: pip install 'squeezenet[tensorboard]'") \
            from None
    return SummaryWriter(str(run.path / "tensorboard"))


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
