"""The training loop in-process on the real digits: run folder, metrics, checkpoints, schedule, config, errors."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys

import pytest
import torch

import squeezenet as sq
from squeezenet import DataError, TrainingError
from squeezenet.cli import main
from squeezenet.plots import plot_run
from squeezenet.train import TrainConfig, learning_rate, load_config, read_metrics, train
from squeezenet.weights.io import read_safetensors

from .conftest import digits_test_scores

TINY = dict(data="digits", arch="1_1", subset=96, batch_size=32, micro_batch=16, epochs=2, progress=False,
            warmup_epochs=0.5)


def test_learning_rate_schedules():
    config = TrainConfig(lr=0.04, warmup_epochs=1, batch_size=1024)
    rates = [learning_rate(config, step, total_steps=100, steps_per_epoch=10) for step in range(100)]
    assert rates[0] == pytest.approx(0.004) and rates[9] == pytest.approx(0.04)  # warmup over the first epoch
    assert rates[10] == pytest.approx(0.04) and rates[55] == pytest.approx(0.02)  # then linear to zero
    assert rates[-1] == pytest.approx(0.04 / 90) and all(a >= b for a, b in itertools.pairwise(rates[9:]))
    cosine = TrainConfig(lr=0.1, warmup_epochs=0, schedule="cosine")
    assert learning_rate(cosine, 50, 100, 10) == pytest.approx(0.05)
    assert TrainConfig(batch_size=256).peak_lr == pytest.approx(0.01)  # the paper's 0.04 at 1024, scaled linearly
    assert TrainConfig().peak_lr == 0.04 and TrainConfig().epochs == 90 and TrainConfig().momentum == 0.9


def test_config_from_yaml_with_flag_names(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("batch-size: 256\nweight_decay: 1e-4\nlr: 1\nbf16: true\n")
    config = load_config(path)
    assert (config.batch_size, config.weight_decay, config.lr, config.bf16) == (256, 1e-4, 1.0, True)
    path.write_text("batchsize: 3\n")
    with pytest.raises(TrainingError, match="unknown key 'batchsize'"):
        load_config(path)
    path.write_text("lr: fast\n")
    with pytest.raises(TrainingError, match="lr must be a number"):
        load_config(path)


def test_a_short_run_fills_its_folder(tmp_path):
    run = tmp_path / "run"
    result = train(TrainConfig(**TINY, out=str(run), checkpoint_every=2, keep=1))
    assert result.epochs_done == 2 and result.steps == 6 and result.run == run
    for name in ("config.yaml", "metrics.jsonl", "last.safetensors", "best.safetensors", "state.pt"):
        assert (run / name).is_file(), name
    assert len(list((run / "checkpoints").glob("step-*.safetensors"))) == 1  # keep=1
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [3, 6]
    assert {"train_loss", "test_top1", "test_top5", "lr", "images_per_s"} <= set(records[0])
    assert records[-1]["lr"] == pytest.approx(learning_rate(load_config(run / "config.yaml"), 5, 6, 3))
    assert math.isclose(records[0]["train_loss"], math.log(10), rel_tol=0.1)
    model = sq.load(run / "last.safetensors")  # our format: spec, preprocessing and class names come along
    assert model.spec.name == "1_1" and model.spec.num_classes == 10 and model.preprocess.resize == 32
    assert model.meta.class_names == tuple(str(d) for d in range(10))
    stored = read_safetensors(run / "best.safetensors")
    best_epoch = max(records, key=lambda r: r["test_top1"])["epoch"]
    assert stored.metadata["epoch"] == str(best_epoch)
    png = plot_run(run)
    assert png == run / "curves.png" and png.stat().st_size > 10_000
    with pytest.raises(TrainingError, match="already holds a run; continue it with --resume"):
        train(TrainConfig(**TINY, out=str(run)))


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(**{**TINY, "epochs": 1}, out=str(run)))
    before = read_safetensors(run / "last.safetensors").state_dict
    result = train(TrainConfig(resume=str(run)))
    after = read_safetensors(run / "last.safetensors").state_dict
    assert result.steps == 3 and all(torch.equal(before[k], after[k]) for k in before)
    assert len(read_metrics(run)) == 1


def test_non_finite_loss_stops_with_the_run_folder_named(tmp_path):
    run = tmp_path / "boom"
    with pytest.raises(TrainingError, match=r"boom: loss became (nan|inf).*lower --lr") as caught:
        train(TrainConfig(**{**TINY, "epochs": 3, "warmup_epochs": 0}, lr=1e12, out=str(run)))
    assert "\n" not in str(caught.value)


def test_a_stall_at_ln_classes_is_detected_and_the_last_checkpoint_kept(tmp_path):
    run = tmp_path / "stuck"
    # A learning rate this small leaves the loss at ln(10) exactly as a dead network would.
    with pytest.raises(TrainingError, match=r"stuck: training stalled at loss 2\.3\d+ ~ ln\(10\) = 2\.3026 for 4 "
                                            r"steps \(step (\d+)\).*last good checkpoint is kept") as caught:
        train(TrainConfig(**{**TINY, "epochs": 3, "warmup_epochs": 0}, lr=1e-12, stall_patience=4,
                          checkpoint_every=1, out=str(run)))
    stalled_at = int(re.search(r"\(step (\d+)\)", str(caught.value)).group(1))
    assert stalled_at >= 4
    # The stalled step itself is not checkpointed; the one before it is.
    assert read_safetensors(run / "last.safetensors").metadata["step"] == str(stalled_at - 1)


def test_bad_inputs_fail_before_training(tmp_path):
    with pytest.raises(TrainingError, match="fewer than one batch"):
        train(TrainConfig(**{**TINY, "batch_size": 128}, out=str(tmp_path / "a")))
    with pytest.raises(TrainingError, match="has 10 classes but --num-classes is 5"):
        train(TrainConfig(**TINY, num_classes=5, out=str(tmp_path / "b")))
    with pytest.raises(sq.InputSizeError, match="too small"):
        train(TrainConfig(**TINY, image_size=16, out=str(tmp_path / "c")))
    with pytest.raises(TrainingError, match="--schedule must be one of"):
        train(TrainConfig(**TINY, schedule="step", out=str(tmp_path / "d")))
    with pytest.raises(TrainingError, match="--bypass must be one of none, simple, complex, got 'residual'"):
        train(TrainConfig(**TINY, bypass="residual", out=str(tmp_path / "e")))
    with pytest.raises(TrainingError, match="not a run folder"):
        train(TrainConfig(resume=str(tmp_path)))
    assert not (tmp_path / "a" / "state.pt").exists()


def test_cli_train_plot_and_one_line_errors(tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text("data: digits\nsubset: 64\nbatch-size: 32\nepochs: 1\nprogress: false\n")
    assert main(["train", "--config", str(config), "--micro-batch", "16", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "done: 1 epochs, 2 steps" in out and str(run / "best.safetensors") in out
    saved = load_config(run / "config.yaml")
    assert (saved.subset, saved.batch_size, saved.micro_batch) == (64, 32, 16)
    assert main(["plot", str(run), "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").is_file()
    assert main(["train", "--resume", str(run), "--epochs", "5"]) == 2
    assert "--epochs cannot change" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset not found" in err
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics here" in capsys.readouterr().err


def test_one_class_folder_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "data" / "only").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(tmp_path / "data" / "only" / f"{i}.png")
    with pytest.raises(DataError, match="only one class"):
        train(TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), progress=False))


def test_bypass_option_builds_the_section_6_network(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(**{**TINY, "epochs": 1}, bypass="complex", out=str(run)))
    model = sq.load(run / "last.safetensors")
    assert model.spec.bypass == "complex" and load_config(run / "config.yaml").bypass == "complex"
    plain = sq.get_spec("1_1", dropout=0.5, batch_norm=False, final_relu=True, num_classes=10)
    assert sq.summary(model.spec, 224).total_params > sq.summary(plain, 224).total_params  # 1x1 bypass convs
    assert TrainConfig().bypass is None  # default: the preset's own bypass mode


def test_test_flip_scores_the_mean_logits_of_each_image_and_its_mirror(tmp_path):
    runs = {flip: tmp_path / f"flip-{flip}" for flip in (False, True)}
    for flip, run in runs.items():
        train(TrainConfig(**{**TINY, "epochs": 1}, test_flip=flip, out=str(run)))
    plain, flipped = (read_metrics(run)[-1] for run in runs.values())
    model = sq.load(runs[True] / "last.safetensors")
    same = sq.load(runs[False] / "last.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True))
    loss, top1 = digits_test_scores(model, flip=True)
    assert flipped["test_loss"] == pytest.approx(loss, rel=1e-4) and flipped["test_top1"] == pytest.approx(top1)
    assert flipped["test_loss"] != pytest.approx(plain["test_loss"], rel=1e-4)  # the mirror images did count


def test_test_shift_adds_the_moved_images_at_a_quarter_weight_each(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(**{**TINY, "epochs": 1}, test_flip=True, test_shift=2, out=str(run)))
    logged = read_metrics(run)[-1]
    model = sq.load(run / "last.safetensors")
    loss, top1 = digits_test_scores(model, flip=True, shift=2)
    assert logged["test_loss"] == pytest.approx(loss, rel=1e-4) and logged["test_top1"] == pytest.approx(top1)
    assert logged["test_loss"] != pytest.approx(digits_test_scores(model, flip=True)[0], rel=1e-4)
    with pytest.raises(TrainingError, match="test-shift 32 must be smaller than the images"):
        train(TrainConfig(**TINY, test_shift=32, out=str(tmp_path / "wide")))


def test_eval_every_scores_only_those_epochs_and_the_last(tmp_path):
    run = tmp_path / "run"
    result = train(TrainConfig(**{**TINY, "epochs": 3}, eval_every=2, out=str(run)))
    records = read_metrics(run)
    assert ["test_top1" in r for r in records] == [False, True, True]
    best_epoch = max(records[1:], key=lambda r: r["test_top1"])["epoch"]  # an unscored epoch is never the best
    assert result.best["epoch"] == best_epoch
    assert read_safetensors(run / "best.safetensors").metadata["epoch"] == str(best_epoch)
    assert plot_run(run).stat().st_size > 10_000  # the test curve has gaps, the train curve has none
    with pytest.raises(TrainingError, match="eval-every must be an integer from 1 to"):
        train(TrainConfig(**TINY, eval_every=0, out=str(tmp_path / "zero")))


def test_default_cpu_micro_batch_keeps_224_pixel_passes_small(tmp_path, capsys):
    # 1_1 at 224x224 trains fastest per image on the CPU at 16-24 images per pass (docs/training.md):
    # a 48-image batch is split (with 1000 classes as there), while 32x32 images go through whole.
    train(TrainConfig(data="digits", arch="1_1", image_size=224, num_classes=1000, subset=48, batch_size=48, epochs=1,
                      progress=False, out=str(tmp_path / "large")))
    assert "batch 48 = 1 process(es) x 2 x 24" in capsys.readouterr().out
    train(TrainConfig(data="digits", arch="1_1", subset=48, batch_size=48, epochs=1, progress=False,
                      out=str(tmp_path / "small")))
    assert "batch 48 = 1 process(es) x 1 x 48" in capsys.readouterr().out


KEEP_FREED_MEMORY = """
import os, sys, torch
from squeezenet.train import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def resident() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = resident()
block = torch.ones(64 << 18)  # 64 MiB, filled so that its pages are resident
del block
print(resident() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_keep_freed_memory_leaves_a_freed_block_in_the_process():
    """glibc returns a freed 64 MiB block to the kernel at once (its pages must be faulted in again on the next
    step); after keep_freed_memory the process keeps it for the next allocation."""
    kept = {mode: int(subprocess.run([sys.executable, "-c", KEEP_FREED_MEMORY, mode], capture_output=True, text=True,
                                     check=True).stdout) for mode in ("default", "keep")}
    assert kept["default"] < 16 << 20 and kept["keep"] > 48 << 20, kept
