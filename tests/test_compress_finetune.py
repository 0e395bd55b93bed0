"""Fine-tuning for compression goes through the real training loop, and the compression holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import squeezenet as sq
from squeezenet.compress.finetune import evaluator_for, train_finetuner
from squeezenet.compress.layers import compressible_layers

from .test_compress_sqz import small_model


@pytest.mark.slow
def test_training_loop_finetunes_pruned_and_shared_weights(tmp_path: Path) -> None:
    model = small_model()  # 10 classes at 32x32: the embedded digits fit
    plain = sq.compress(model, tmp_path / "plain.sqz", prune=0.5, bits=3)
    finetune = train_finetuner("digits", 1, tmp_path / "runs", batch_size=64, time_limit=3.0, lr=0.05)
    tuned = sq.compress(model, tmp_path / "tuned.sqz", prune=0.5, bits=3, finetune=finetune,
                        evaluate=evaluator_for("digits"))
    for stage in ("prune", "share"):  # each stage is an ordinary run folder of the training loop
        assert (tmp_path / "runs" / stage / "state.pt").is_file()
    assert tuned.report.accuracy_before is not None and tuned.report.accuracy_after is not None
    loaded = sq.load(tmp_path / "tuned.sqz")
    changed = False
    for name, conv in compressible_layers(loaded).items():
        weight = conv.weight.detach()
        reference = compressible_layers(plain.model)[name].weight.detach()
        assert torch.equal(weight != 0, reference != 0), name  # the same weights pruned, still zero
        assert len(torch.unique(weight[weight != 0])) <= 7, name  # still 3-bit codes
        changed |= not torch.equal(weight, reference)
    assert changed  # the centroids moved
    assert np.isclose(tuned.report.kept / tuned.report.params, 0.5, atol=0.01)
