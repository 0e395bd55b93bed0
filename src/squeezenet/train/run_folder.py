"""The run folder: atomic checkpoints, the state an exact resume needs, and keep-last-K.

RUN/config.yaml, spec.json, metrics.jsonl, last.safetensors, best.safetensors, state.pt,
checkpoints/step-NNNNNNNN.{safetensors,state.pt} (the newest ``keep``), tensorboard/ (optional).

Exactness: the data order and every sample's augmentation are pure functions of (seed, epoch)
(``data.epoch_order``), so a checkpoint needs only the weights, the optimizer, every process's RNG states and
the position in the epoch. A run killed at any moment and resumed from its folder ends with the same weights,
bit for bit on the CPU, as a run never interrupted.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SqueezeNetError, TrainingError, one_line
from ..model import SqueezeNet
from ..spec import Spec
from ..weights.io import save as save_weights
from ..weights.io import write_atomic
from .config import TrainConfig, config_to_yaml


class RunFolder:
    """The files of one run. ``state.pt`` names the checkpoint a resume starts from; it is written last,
    so a crash at any moment leaves it pointing at a complete checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = path / "config.yaml"
        self.metrics = path / "metrics.jsonl"
        self.last = path / "last.safetensors"
        self.best = path / "best.safetensors"
        self.spec = path / "spec.json"
        self.state = path / "state.pt"
        self.checkpoints = path / "checkpoints"

    def create(self, config: TrainConfig, spec: Spec) -> None:
        if self.state.exists():
            raise TrainingError(f"{self.path}: already holds a run; continue it with --resume {self.path} "
                                "or choose another --out")
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrainingError(f"{self.path}: cannot create the run folder ({error.strerror or error})") from None
        self.metrics.unlink(missing_ok=True)
        write_atomic(self.config, config_to_yaml(config).encode())
        write_atomic(self.spec, (json.dumps(spec.to_dict(), indent=2) + "\n").encode())

    def read_spec(self) -> Spec | None:
        """The network this run trains (None in folders written before runs stored it: the config's arch)."""
        if not self.spec.is_file():
            return None
        try:
            return Spec.from_json(self.spec.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, SqueezeNetError) as error:
            raise TrainingError(f"{self.spec}: unreadable spec ({one_line(error, 160)})") from None

    def read_state(self) -> dict[str, Any]:
        if not self.state.is_file():
            raise TrainingError(f"{self.path}: no state.pt here; not a run folder, or no checkpoint was written yet")
        try:
            return torch.load(self.state, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types on damaged files
            raise TrainingError(f"{self.state}: unreadable resume state ({one_line(error, 120)})") \
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


def rng_state(device: torch.device) -> dict[str, Any]:
    _, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)],
        "python": list(random.getstate()[1]),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate((3, tuple(state["python"]), None))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
