"""The run folder: atomic checkpoints, the state an exact resume needs, and keep-last-K.

RUN/config.yaml, spec.json, metrics.jsonl, last.safetensors, best.safetensors, state.pt,
checkpoints/step-NNNNNNNN.{safetensors,state.pt} (the newest ``keep``), tensorboard/ (optional).

Exactness: the data order and every sample's augmentation are pure functions of (seed, epoch)
(``data.epoch_order``), so a checkpoint needs only the weights, the optimizer, every process's RNG states and
the position in the epoch. A run killed at any moment and resumed from its folder ends with the same weights,
bit for bit on the CPU, as a run never interrupted.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import reprlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SqueezeNetError, TrainingError, one_line
from ..files import FileLocked, locked, printable, read_file, regular_file
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

    @contextlib.contextmanager
    def hold(self, create: bool = True) -> Iterator[None]:
        """The folder's lock, held while this process trains in it: a second run on the same folder (a new one or
        a --resume) refuses at once instead of mixing its files with this one's. ``create``: make the folder
        (a new run); a resumed one must exist."""
        if not create and not self.path.is_dir():
            raise TrainingError(f"{self.path}: no such run folder")
        made = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TrainingError(f"{self.path}: cannot create the run folder ({error.strerror or error})") from None
        try:
            with locked(self.path / ".lock", wait=False):
                yield
        except FileLocked as busy:
            raise TrainingError(f"{self.path}: another training run is using this folder ({busy.holder}); wait "
                                "for it to end, or choose another --out") from None
        finally:
            with contextlib.suppress(OSError):  # a new run that failed before writing anything leaves no folder
                if made and [entry.name for entry in self.path.iterdir()] == [".lock"]:
                    (self.path / ".lock").unlink()
                    self.path.rmdir()

    def read_state(self, fall_back: bool = False) -> dict[str, Any]:
        """The checkpoint a resume starts from, checked field by field. When the newest is damaged, the error
        names the newest intact step checkpoint, which ``fall_back`` takes instead (with a warning)."""
        if not self.state.exists():
            raise TrainingError(f"{self.path}: no state.pt here; not a run folder, or no checkpoint was written yet")
        try:
            return self._checked_state(self.state)
        except TrainingError as error:
            previous = self._intact_checkpoint()
            if previous is None:
                raise
            if not fall_back:
                raise TrainingError(f"{error}; the checkpoint {previous[0].relative_to(self.path)} is intact: "
                                    "add --resume-previous to continue from it") from None
            warnings.warn(f"{error}; continuing from {previous[0].relative_to(self.path)}", stacklevel=2)
            return previous[1]

    def _checked_state(self, path: Path) -> dict[str, Any]:
        try:
            regular_file(path, TrainingError, "resume state")
            state = torch.load(path, map_location="cpu", weights_only=True)
        except TrainingError:
            raise
        except Exception as error:  # torch raises many types on damaged files
            raise TrainingError(f"{path}: unreadable resume state ({one_line(error, 120)})") from None
        check_state(state, path, self.path)
        regular_file(self.path / state["weights"], TrainingError, "checkpoint weights file")
        return state

    def _intact_checkpoint(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest step checkpoint whose state and weights read, if any."""
        for candidate in sorted(self.checkpoints.glob("step-*.state.pt"), reverse=True):
            try:
                return candidate, self._checked_state(candidate)
            except TrainingError:
                continue
        return None

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
        if not self.metrics.exists():
            return
        lines = _metrics_lines(self.metrics)
        kept = [line for line in lines if line.strip() and _step_of(line) <= step]
        write_atomic(self.metrics, "".join(line + "\n" for line in kept).encode())

    def remove_partial_writes(self) -> None:
        """Delete the temporary files of writes a kill interrupted (never renamed, so never read)."""
        for folder in (self.path, self.checkpoints):
            for temporary in folder.glob(".*.tmp"):
                temporary.unlink(missing_ok=True)


def _metrics_lines(path: Path) -> list[str]:
    try:
        return read_file(path, TrainingError, "metrics file").decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise TrainingError(f"{path}: not UTF-8 text at byte {error.start}; the metrics of a run are JSON lines") \
            from None


# -- what a resume state must hold ---------------------------------------------------------------------------------


def _count(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _tensor(value: Any, dtype: torch.dtype, numel: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == dtype and value.dim() == 1 and value.numel() == numel


def _rng(value: Any) -> bool:
    """One process's RNG states as ``rng_state`` writes them (torch's generator, numpy's MT19937, Python's)."""
    if not isinstance(value, dict) or not _tensor(value.get("torch"), torch.uint8, torch.get_rng_state().numel()):
        return False
    numpy_state, python_state = value.get("numpy"), value.get("python")
    if not (isinstance(numpy_state, (list, tuple)) and len(numpy_state) == 4
            and _tensor(numpy_state[0], torch.int64, 624) and _count(numpy_state[1]) and numpy_state[1] <= 624
            and _count(numpy_state[2]) and _number(numpy_state[3])):
        return False
    words_fit = bool(((numpy_state[0] >= 0) & (numpy_state[0] < 2**32)).all())
    return words_fit and isinstance(python_state, list) and len(python_state) == 625 \
        and all(_count(word) and word < 2**32 for word in python_state) and python_state[-1] <= 624 \
        and ("cuda" not in value or isinstance(value["cuda"], torch.Tensor))


def _inside(run: Path, relative: Any) -> bool:
    """A checkpoint's weights path: relative, and inside the run folder's checkpoints/ once resolved."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative):
        return False
    folder = (run / "checkpoints").resolve()
    return (run / relative).resolve().is_relative_to(folder)


STATE_FIELDS: dict[str, tuple[Any, str]] = {
    "epoch": (_count, "an integer >= 0"),
    "batch_in_epoch": (_count, "an integer >= 0"),
    "step": (_count, "an integer >= 0"),
    "keep": (lambda value: _count(value, 1), "an integer >= 1"),
    "best": (lambda value: isinstance(value, dict), "a mapping"),
    "epoch_totals": (lambda value: isinstance(value, list) and len(value) == 3 and all(map(_number, value)),
                     "a list of 3 finite numbers"),
    "optimizer": (lambda value: isinstance(value, dict) and isinstance(value.get("state"), dict)
                  and isinstance(value.get("param_groups"), list), "an optimizer state_dict"),
    "rng": (lambda value: isinstance(value, list) and len(value) >= 1 and all(map(_rng, value)),
            "one RNG state (torch, numpy, python) per process"),
}


def check_state(state: Any, path: Path, run: Path) -> None:
    """A resume state field by field, so a damaged or edited one is refused in one line naming the field instead
    of a KeyError or a size mismatch deep in the loop."""
    if not isinstance(state, dict):
        raise TrainingError(f"{path}: holds a {type(state).__name__}, not a resume state (a mapping)")
    for key, (fits, wanted) in STATE_FIELDS.items():
        if key not in state:
            raise TrainingError(f"{path}: field {key!r} is missing")
        if not fits(state[key]):
            raise TrainingError(f"{path}: field {key!r} must be {wanted}, got {_short(state[key])}")
    if not _inside(run, state.get("weights")):
        raise TrainingError(f"{path}: field 'weights' must be a path inside {run / 'checkpoints'}, got "
                            f"{_short(state.get('weights'))}")
    if "trained_weights" in state and not (isinstance(state["trained_weights"], dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state["trained_weights"].items())):
        raise TrainingError(f"{path}: field 'trained_weights' must map parameter names to tensors")
    if "trained_weights" in state and not _count(state.get("average_updates")):
        raise TrainingError(f"{path}: field 'average_updates' must be an integer >= 0, got "
                            f"{_short(state.get('average_updates'))}")
    if "config" in state and not isinstance(state["config"], str):
        raise TrainingError(f"{path}: field 'config' must be the run's config as YAML text")


def _short(value: Any) -> str:
    return printable(f"a {value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor)
                     else reprlib.repr(value))


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
    if not path.exists():
        raise TrainingError(f"{path}: no metrics here (not a run folder, or no epoch finished yet)")
    lines = _metrics_lines(path)
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
