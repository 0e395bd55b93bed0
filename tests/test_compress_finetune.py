"""Fine-tuning for compression goes through the real training loop, and the compression holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import squeezenet as sq
from squeezenet.compress.finetune import distill_finetuner, evaluator_for, train_finetuner
from squeezenet.weights.names import convolutions

from .conftest import tiny_model
from .test_compress_sqz import small_model


@pytest.mark.slow
def test_training_loop_finetunes_pruned_and_shared_weights(tmp_path: Path) -> None:
    model = small_model()  # 10 classes at 32x32: the embedded digits fit
    plain = sq.compress(model, tmp_path / "plain.sqz", prune=0.5, bits=3, init="linear")  # as fine-tuning picks
    finetune = train_finetuner("digits", 1, tmp_path / "runs", batch_size=64, time_limit=3.0, lr=0.05)
    tuned = sq.compress(model, tmp_path / "tuned.sqz", prune=0.5, bits=3, finetune=finetune,
                        evaluate=evaluator_for("digits"))
    for stage in ("prune", "share"):  # each stage is an ordinary run folder of the training loop
        assert (tmp_path / "runs" / stage / "state.pt").is_file()
    assert tuned.report.accuracy_before is not None and tuned.report.accuracy_after is not None
    loaded = sq.load(tmp_path / "tuned.sqz")
    changed = False
    for name, conv in convolutions(loaded).items():
        weight = conv.weight.detach()
        reference = convolutions(plain.model)[name].weight.detach()
        assert torch.equal(weight != 0, reference != 0), name  # the same weights pruned, still zero
        assert len(torch.unique(weight[weight != 0])) <= 7, name  # still 3-bit codes
        changed |= not torch.equal(weight, reference)
    assert changed  # the centroids moved
    assert np.isclose(tuned.report.kept / tuned.report.params, 0.5, atol=0.01)


def _divergence(student: torch.nn.Module, teacher: torch.nn.Module, images: torch.Tensor) -> float:
    with torch.no_grad():
        return torch.nn.functional.kl_div(student(images).log_softmax(1), teacher(images).log_softmax(1),
                                          log_target=True, reduction="batchmean").item()


def test_distillation_moves_the_shared_values_toward_the_teacher(tmp_path: Path) -> None:
    torch.manual_seed(3)  # no ReLU after conv10: an untrained network's logits are then not all 0
    teacher = sq.build(tiny_model().spec.replace(final_relu=False)).eval()
    images = torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    calibration, unseen = images[:32], images[32:]
    plain = sq.compress(teacher, tmp_path / "plain.sqz", prune=0.5, bits=2, init="linear")  # as fine-tuning picks
    tuned = sq.compress(teacher, tmp_path / "tuned.sqz", prune=0.5, bits=2,
                        finetune=distill_finetuner(teacher, calibration, epochs=20, lr=1e-3, progress=False))
    # Closer to the teacher, also on images it was not tuned on; the codes and the pruning are untouched.
    assert _divergence(tuned.model, teacher, unseen) < 0.8 * _divergence(plain.model, teacher, unseen)
    for name, conv in convolutions(tuned.model).items():
        weight, reference = conv.weight.detach(), convolutions(plain.model)[name].weight.detach()
        assert torch.equal(weight != 0, reference != 0), name
        assert len(torch.unique(weight[weight != 0])) <= 3, name


def test_distillation_refuses_images_without_a_batch_axis() -> None:
    with pytest.raises(sq.SqueezeNetError, match="shaped"):
        distill_finetuner(tiny_model(), torch.randn(3, 32, 32))
