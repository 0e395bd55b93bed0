"""Training: the paper's recipe, exact resume after a crash, and data parallelism across processes.

``config`` (TrainConfig: every setting, YAML in and out), ``run_folder`` (atomic checkpoints and the state an
exact resume needs), ``distributed`` (torchrun helpers), ``memory`` (micro-batch size, allocator setting),
``loop`` (``train``: set up, then ``train_one_epoch`` and ``evaluate`` in turn).
"""

from .config import RESUME_OVERRIDES, TrainConfig, config_from_dict, config_to_yaml, load_config, spec_overrides
from .loop import TrainResult, learning_rate, train
from .memory import CPU_ACTIVATION_BUDGET, keep_freed_memory
from .run_folder import RunFolder, read_metrics

__all__ = ["CPU_ACTIVATION_BUDGET", "RESUME_OVERRIDES", "RunFolder", "TrainConfig", "TrainResult", "config_from_dict",
           "config_to_yaml", "keep_freed_memory", "learning_rate", "load_config", "read_metrics", "spec_overrides",
           "train"]
