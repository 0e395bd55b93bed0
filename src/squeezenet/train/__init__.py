"""Training: the paper's recipe, exact resume after a crash, and data parallelism across processes.

``config`` (TrainConfig: every setting, YAML in and out), ``run_folder`` (atomic checkpoints and the state an
exact resume needs), ``distributed`` (torchrun helpers), ``memory`` (micro-batch size, allocator setting),
``loop`` (``train``: set up, then ``train_one_epoch`` and ``evaluate`` in turn). The config is light; the
rest loads with torch when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes
from .config import (
    RESUME_OVERRIDES,
    TrainConfig,
    adapt_to_data,
    config_from_dict,
    config_to_yaml,
    load_config,
    spec_overrides,
)

if TYPE_CHECKING:
    from ..model import SqueezeNet
    from ..spec import Spec
    from .loop import TrainResult


def train(config: TrainConfig, model: SqueezeNet | None = None, spec: Spec | None = None) -> TrainResult:
    """Train as ``config`` says (``config.resume``: continue that run folder) and return where it went.

    ``spec``: the network to train (default: the preset ``config.arch``); the run folder stores it, so a
    resume needs nothing else. ``model``: train this network in place instead of a fresh one (fine-tuning;
    e.g. squeezenet.compress passes one whose weights are parametrized, so pruning and weight sharing hold at
    every step); its spec must fit the data, and resuming such a run needs the same kind of ``model`` again.
    """
    from .loop import run

    return run(config, model, spec)


__getattr__ = lazy_attributes(__name__, {
    "TrainResult": ".loop", "learning_rate": ".loop", "CPU_ACTIVATION_BUDGET": ".memory",
    "keep_freed_memory": ".memory", "RunFolder": ".run_folder", "read_metrics": ".run_folder",
})

__all__ = ["CPU_ACTIVATION_BUDGET", "RESUME_OVERRIDES", "RunFolder", "TrainConfig", "TrainResult", "adapt_to_data",
           "config_from_dict",
           "config_to_yaml", "keep_freed_memory", "learning_rate", "load_config", "read_metrics", "spec_overrides",
           "train"]
