"""Fine-tuning the real pretrained SqueezeNet v1.1 on a small folder of real photos (CIFAR-10 JPEG files).

Training runs at 64x64 (small images: decoded once, squashed to the size, normalised as the weights' Caffe
recipe says) and one epoch, so each run takes seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import squeezenet as sq
from squeezenet.cli import make_parser
from squeezenet.flags import train_config_from_arguments
from squeezenet.images import open_image, set_max_image_pixels
from squeezenet.train import read_metrics, train
from squeezenet.weights.io import read_safetensors

from .conftest import cifar_photos, run_cli, shared_path

CLASSES = ("ship", "cat", "dog")  # deliberately not sorted: the head must follow the sorted folder names
FAST = ["--image-size", "64", "--epochs", "1", "--batch-size", "8", "--no-progress", "--workers", "0"]


@pytest.fixture(scope="module")
def caffemodel() -> Path:
    return shared_path("weights/caffe_v1.1/squeezenet_v1.1.caffemodel")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One class-per-folder tree of 12 real CIFAR-10 photos per class, no val/ folder."""
    return cifar_photos(tmp_path_factory.mktemp("photos"), CLASSES, 12)


def _conv_tensors(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key: value for key, value in state.items() if key.startswith(prefix)}


def test_fine_tuning_makes_a_new_head_for_the_folders_and_inherits_the_preprocessing(tmp_path, photos, caffemodel,
                                                                                    capsys):
    code, out, err = run_cli(capsys, "train", "--weights", str(caffemodel), "--data", str(photos),
                             "--out", str(tmp_path / "run"), *FAST, "--image-size", "96")  # over 64: files, cropped
    assert code == 0, err
    model = sq.load(tmp_path / "run" / "best.safetensors")
    assert model.meta.class_names == ("cat", "dog", "ship") and model.spec.num_classes == 3
    assert model.spec.name == "1_1"  # the architecture came from the weights
    recipe = model.preprocess  # the Caffe recipe, scaled from 227 to the 96-pixel training size
    assert (recipe.channel_order, recipe.scale, recipe.mean, recipe.crop, recipe.resize, recipe.resize_mode) == \
        ("BGR", 255.0, (104.0, 117.0, 123.0), 96, round(96 * 256 / 227), "squash")
    records = read_metrics(tmp_path / "run")
    assert records and "test_top1" in records[0]  # scored on the held-out 20% of each class
    assert "batch 8" in out and "peak lr 0.003" in out  # the fine-tuning recipe, not the paper's from scratch


def test_the_validation_split_is_stratified_and_fixed(photos):
    from squeezenet.data import load_datasets

    first = load_datasets(photos, 32, val_fraction=0.25)
    again = load_datasets(photos, 32, val_fraction=0.25)
    assert len(first.test) == 9 and len(first.train) == 27  # 3 of each class's 12
    assert torch.bincount(first.test.labels).tolist() == [3, 3, 3]
    assert torch.equal(first.test.images, again.test.images)


def test_a_linear_probe_leaves_the_backbone_bit_identical(tmp_path, photos, caffemodel):
    config = sq.TrainConfig.finetuning(str(caffemodel), data=str(photos), out=str(tmp_path / "probe"),
                                       train="classifier", image_size=64, epochs=1, batch_size=8, progress=False,
                                       workers=0)
    train(config)
    before = sq.load(caffemodel).state_dict()
    after = read_safetensors(tmp_path / "probe" / "last.safetensors").state_dict
    features = _conv_tensors(before, "features.")
    assert features and all(torch.equal(after[key], value) for key, value in features.items())
    assert after["classifier.conv10.weight"].shape == (3, 512, 1, 1)


def test_backbone_lr_scale_zero_trains_only_the_head(tmp_path, photos, caffemodel):
    config = sq.TrainConfig.finetuning(str(caffemodel), data=str(photos), out=str(tmp_path / "scaled"),
                                       backbone_lr_scale=0.0, weight_decay=0.0, image_size=64, epochs=1,
                                       batch_size=8, progress=False, workers=0)
    train(config)
    before = sq.load(caffemodel).state_dict()
    after = read_safetensors(tmp_path / "scaled" / "last.safetensors").state_dict
    assert all(torch.equal(after[key], value) for key, value in _conv_tensors(before, "features.").items())
    head = sq.SqueezeNet(sq.get_spec("1_1", num_classes=3)).state_dict()["classifier.conv10.weight"]
    assert not torch.equal(after["classifier.conv10.weight"], head)


def test_a_models_own_preprocessing_wins_over_the_datasets(tmp_path, photos, caffemodel):
    """A hand-made head on the Caffe weights trains on BGR 0-255 crops, not on the folder's RGB 0-1 recipe."""
    model = sq.load(caffemodel)
    model.reset_classifier(3)
    config = sq.TrainConfig(data=str(photos), out=str(tmp_path / "own"), image_size=64, epochs=1, batch_size=8,
                            lr=0.01, progress=False, workers=0)
    train(config, model=model)
    assert sq.load(tmp_path / "own" / "best.safetensors").preprocess.channel_order == "BGR"


def test_a_fine_tuning_resumes_in_a_fresh_process(tmp_path, photos, caffemodel):
    run = tmp_path / "run"
    base = [sys.executable, "-m", "squeezenet", "train"]
    first = subprocess.run([*base, "--weights", str(caffemodel), "--data", str(photos), "--out", str(run), *FAST[:2],
                            "--epochs", "2", "--batch-size", "8", "--no-progress", "--time-limit", "0"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([*base, "--resume", str(run), "--time-limit", "600", "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert sq.load(run / "best.safetensors").preprocess.channel_order == "BGR"


def test_the_fine_tuning_recipe_is_the_default_only_with_weights():
    parser, _ = make_parser(["train"])
    tuned = train_config_from_arguments(parser.parse_args(["train", "--weights", "w.caffemodel", "--epochs", "3"]))
    assert (tuned.batch_size, tuned.lr, tuned.schedule, tuned.epochs) == (32, 0.003, "cosine", 3)
    scratch = train_config_from_arguments(parser.parse_args(["train"]))
    assert (scratch.batch_size, scratch.lr, scratch.epochs) == (1024, None, 90)


def test_small_folders_fail_before_training_with_one_line(tmp_path, photos, caffemodel, capsys):
    lonely = tmp_path / "lonely"
    for name, count in (("cat", 3), ("dog", 1)):
        (lonely / name).mkdir(parents=True)
        for index in range(count):
            (lonely / name / f"{index}.jpg").write_bytes((photos / name / sorted(p.name for p in
                                                          (photos / name).iterdir())[index]).read_bytes())
    code, _, err = run_cli(capsys, "train", "--weights", str(caffemodel), "--data", str(lonely), *FAST)
    assert code == 2 and err.count("\n") == 1 and "'dog' has 1 image" in err
    code, _, err = run_cli(capsys, "train", "--data", str(photos), "--train", "classifier", *FAST)
    assert code == 2 and "give --weights" in err


def test_photos_come_upright_and_the_pixel_limit_can_be_raised(tmp_path):
    sideways = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (40, 20), (200, 30, 30)).save(sideways, exif=exif)
    assert open_image(sideways).size == (20, 40)
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    before = Image.MAX_IMAGE_PIXELS
    try:
        set_max_image_pixels(300 * 300 // 4)  # Pillow refuses twice its limit outright
        with pytest.raises(sq.DataError, match="--max-image-pixels"):
            open_image(big)
        set_max_image_pixels(300 * 300)
        assert open_image(big).size == (300, 300)
    finally:
        Image.MAX_IMAGE_PIXELS = before


def test_a_probe_on_cached_features_trains_the_head_as_through_the_frozen_backbone(tmp_path, photos, caffemodel,
                                                                                 capsys, monkeypatch):
    """Without augmentation a linear probe computes the backbone's features once; the head it trains is the one
    a probe through the whole network trains (the same data order and dropout masks: the backbone draws none)."""
    from squeezenet.train import setup

    def probe(name: str) -> dict[str, torch.Tensor]:
        config = sq.TrainConfig.finetuning(str(caffemodel), data=str(photos), out=str(tmp_path / name),
                                           train="classifier", image_size=64, epochs=2, batch_size=8,
                                           progress=False, workers=0)
        train(config)
        return read_safetensors(tmp_path / name / "last.safetensors").state_dict

    cached = probe("cached")
    assert "features of 36 images (train, test) computed once" in capsys.readouterr().out
    monkeypatch.setattr(setup, "FEATURE_CACHE_BYTES", 0)  # no room: the features are computed every step
    whole = probe("whole")
    assert "computed every step instead" in capsys.readouterr().out
    head = "classifier.conv10.weight"
    assert not torch.equal(cached[head], sq.load(caffemodel).state_dict()["classifier.conv10.weight"][:3])
    torch.testing.assert_close(cached[head], whole[head], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(cached["classifier.conv10.bias"], whole["classifier.conv10.bias"], rtol=1e-4,
                               atol=1e-6)
    assert read_metrics(tmp_path / "cached")[-1]["test_top1"] == read_metrics(tmp_path / "whole")[-1]["test_top1"]


def test_a_bf16_probe_caches_its_features_in_half_the_memory(tmp_path, photos, caffemodel, capsys, monkeypatch):
    """With --bf16 the cached features are bfloat16 (what the head casts them to anyway): a cache that the float32
    features of the training images overflow holds all of them, test split included."""
    from squeezenet.train import setup

    model = sq.load(caffemodel)
    with torch.inference_mode():
        per_image = model.forward_features(torch.zeros(1, 3, 64, 64)).numel()
    monkeypatch.setattr(setup, "FEATURE_CACHE_BYTES", 2 * per_image * 36)  # 36 images in all, in bfloat16

    def probe(name: str, bf16: bool) -> str:
        config = sq.TrainConfig.finetuning(str(caffemodel), data=str(photos), out=str(tmp_path / name),
                                           train="classifier", image_size=64, epochs=2, batch_size=8, bf16=bf16,
                                           progress=False, workers=0)
        train(config)
        return capsys.readouterr().out

    assert "computed every step instead" in probe("float32", bf16=False)
    assert "features of 36 images (train, test) computed once" in probe("bf16", bf16=True)
    head = read_safetensors(tmp_path / "bf16" / "last.safetensors").state_dict["classifier.conv10.weight"]
    assert head.dtype == torch.float32 and not torch.equal(head, model.state_dict()["classifier.conv10.weight"][:3])
    assert read_metrics(tmp_path / "bf16")[-1]["test_top1"] > 1 / 3  # three classes: better than chance


def test_augmentation_is_off_for_a_probe_unless_asked_for(tmp_path, photos, caffemodel, capsys):
    assert sq.TrainConfig().augments and not sq.TrainConfig(train="classifier").augments
    assert sq.TrainConfig(train="classifier", augment=True).augments
    code, out, err = run_cli(capsys, "train", "--weights", str(caffemodel), "--data", str(photos), "--train",
                             "classifier", "--augment", "--out", str(tmp_path / "augmented"), *FAST)
    assert code == 0, err
    assert "computed once" not in out  # augmented images differ every epoch: nothing to cache


def test_a_cached_probe_resumes_exactly(tmp_path, photos, caffemodel):
    """A probe stopped after its first step and resumed in a fresh process ends where an unbroken one does: the
    features are computed again from the restored weights."""
    base = [sys.executable, "-m", "squeezenet", "train"]
    settings = ["--weights", str(caffemodel), "--data", str(photos), "--train", "classifier", *FAST[:2],
                "--epochs", "2", "--batch-size", "8", "--no-progress", "--workers", "0"]
    whole = subprocess.run([*base, *settings, "--out", str(tmp_path / "whole")], capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr
    first = subprocess.run([*base, *settings, "--out", str(tmp_path / "broken"), "--time-limit", "0"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "broken" / "metrics.jsonl").is_file() or not read_metrics(tmp_path / "broken")
    second = subprocess.run([*base, "--resume", str(tmp_path / "broken"), "--time-limit", "600", "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "computed once" in second.stdout
    done, broken = (read_safetensors(tmp_path / name / "last.safetensors").state_dict for name in ("whole", "broken"))
    for key in ("classifier.conv10.weight", "classifier.conv10.bias"):
        torch.testing.assert_close(broken[key], done[key], rtol=0, atol=0)


def test_a_fine_tuning_runs_under_torchrun(tmp_path, photos, caffemodel):
    import shutil
    import socket

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launched = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                               str(port), "-m", "squeezenet", "train", "--weights", str(caffemodel), "--data",
                               str(photos), "--out", str(tmp_path / "ddp"), *FAST],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert "batch 8 = 2 process(es)" in launched.stdout and launched.stdout.count("done:") == 1
    model = sq.load(tmp_path / "ddp" / "best.safetensors")
    assert model.meta.class_names == ("cat", "dog", "ship") and model.preprocess.channel_order == "BGR"
    start = sq.load(caffemodel).state_dict()
    tuned = model.state_dict()
    assert any(not torch.equal(tuned[k], start[k]) for k in _conv_tensors(start, "features."))  # all of it trained


def test_predict_and_evaluate_take_the_pixel_limit(tmp_path, photos, caffemodel, capsys):
    image = tmp_path / "cats" / "cat" / "one.jpg"
    image.parent.mkdir(parents=True)
    Image.new("RGB", (300, 300), (90, 60, 30)).save(image)
    before = Image.MAX_IMAGE_PIXELS
    try:
        code, _, err = run_cli(capsys, "predict", str(image), "--weights", str(caffemodel),
                               "--max-image-pixels", str(300 * 300 // 4))
        assert code == 2 and err.count("\n") == 1 and str(image) in err and "decompression bomb" in err
        code, out, err = run_cli(capsys, "predict", str(image), "--weights", str(caffemodel),
                                 "--max-image-pixels", str(300 * 300))
        assert code == 0 and str(image) in out, err
        code, _, err = run_cli(capsys, "evaluate", "--data", str(tmp_path / "cats"), "--weights", str(caffemodel),
                               "--max-image-pixels", "100")
        assert code == 2 and err.count("\n") == 1 and "decompression bomb" in err
    finally:
        Image.MAX_IMAGE_PIXELS = before


def test_fine_tuning_sets_the_settings_without_weights_it_is_given(tmp_path, photos, caffemodel, capsys):
    """The settings without weights change the starting network (dropout and the final ReLU were once silently
    dropped): the saved spec and modules carry them, and so does spec.json, which a resumed run rebuilds its
    network from."""
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--weights", str(caffemodel), "--data", str(photos), "--out", str(run),
                           *FAST, "--dropout", "0.2", "--no-final-relu", "--conv1-stride", "1")
    assert code == 0, err
    model = sq.load(run / "last.safetensors")
    assert (model.spec.dropout, model.spec.final_relu, model.spec.conv1_stride) == (0.2, False, 1)
    assert model.classifier.dropout.p == 0.2 and isinstance(model.classifier.relu10, torch.nn.Identity)
    assert model.features.conv1.stride == (1, 1)
    assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape[-1] == 7  # 64 px at stride 1: 128 px's map
    assert sq.Spec.from_json((run / "spec.json").read_text()) == model.spec
    plain = tmp_path / "plain"
    assert run_cli(capsys, "train", "--weights", str(caffemodel), "--data", str(photos), "--out", str(plain),
                   *FAST)[0] == 0
    kept = sq.load(plain / "last.safetensors").spec  # not given: the weights' own
    assert (kept.dropout, kept.final_relu, kept.conv1_stride) == (0.5, True, 2)


@pytest.mark.parametrize(("flags", "message"), [
    (["--batch-norm"], "--batch-norm: the starting weights have no batch norm"),
    (["--bypass", "complex"], "--bypass complex: the starting weights have bypass none"),
])
def test_fine_tuning_refuses_settings_that_would_change_the_layers(tmp_path, photos, caffemodel, capsys, flags,
                                                                   message):
    code, _, err = run_cli(capsys, "train", "--weights", str(caffemodel), "--data", str(photos),
                           "--out", str(tmp_path / "run"), *FAST, *flags)
    assert code != 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_freeze_keeps_conv1_through_the_layer_and_only_those(tmp_path, photos, caffemodel):
    config = sq.TrainConfig.finetuning(str(caffemodel), data=str(photos), out=str(tmp_path / "run"), freeze="fire2",
                                       image_size=64, epochs=1, batch_size=8, progress=False, workers=0)
    train(config)
    before = sq.load(caffemodel).state_dict()
    after = read_safetensors(tmp_path / "run" / "last.safetensors").state_dict
    kept = {key for key in before if key.startswith(("features.conv1.", "features.fire2."))}
    assert len(kept) == 8 and all(torch.equal(after[key], before[key]) for key in kept)
    changed = [key for key in before if key.startswith("features.") and not torch.equal(after[key], before[key])]
    assert {key.split(".")[1] for key in changed} == {f"fire{index}" for index in range(3, 10)}


def test_freeze_keeps_the_batch_norm_statistics_of_the_frozen_layers(tmp_path, photos):
    """From random weights too (a random stem is a user's choice): the frozen layers' running statistics stay."""
    model = sq.SqueezeNet(sq.get_spec("1_1", num_classes=3, batch_norm=True))
    start = {key: value.clone() for key, value in model.state_dict().items()}
    config = sq.TrainConfig(data=str(photos), out=str(tmp_path / "run"), freeze="fire3", image_size=64, epochs=1,
                            batch_size=8, lr=0.01, progress=False, workers=0)
    train(config, model=model)
    after = read_safetensors(tmp_path / "run" / "last.safetensors").state_dict
    frozen = [key for key in start if key.startswith(("features.conv1.", "features.fire2.", "features.fire3."))]
    assert sum("running_mean" in key and key in after for key in frozen) == 7  # conv1's and 3 in each Fire
    assert all(torch.equal(after[key], start[key]) for key in frozen if key in after)
    moved = [key for key in start if key.startswith("features.fire4.") and "running_mean" in key]
    assert moved and not all(torch.equal(after[key], start[key]) for key in moved)


@pytest.mark.parametrize(("flags", "message"), [
    (["--freeze", "fire12"], "--freeze fire12: 1_1 has no such layer; it has conv1, fire2,"),
    (["--freeze", "conv1", "--train", "classifier"], "--freeze: --train classifier freezes the whole backbone"),
])
def test_freeze_refuses_what_it_cannot_do_in_one_line(tmp_path, photos, caffemodel, capsys, flags, message):
    code, _, err = run_cli(capsys, "train", "--weights", str(caffemodel), "--data", str(photos),
                           "--out", str(tmp_path / "run"), *FAST, *flags)
    assert code != 0 and message in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "last.safetensors").exists()
