"""predict / evaluate through the API and the CLI, on real images, and every bad input as one line + exit 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import squeezenet as sq
from squeezenet import DataError
from squeezenet.cli import main
from squeezenet.evaluate import accuracy, evaluate, predict
from squeezenet.images import labelled_images, list_images
from squeezenet.model import imagenet_classes

from .conftest import shared_path

V11 = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
SAMPLES = ("n01440764_tench.JPEG", "n02097474_Tibetan_terrier.JPEG", "n04562935_water_tower.JPEG",
           "n01484850_great_white_shark.JPEG", "n01514859_hen.JPEG", "n02134084_ice_bear.JPEG")


@pytest.fixture(scope="module")
def v11() -> sq.SqueezeNet:
    return sq.load(shared_path(V11))


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    """Six real images (links, not copies) and a labels.csv taken from the real one."""
    folder = shared_path("data/imagenet-samples")
    with open(folder / "labels.csv", newline="") as handle:
        labels = {row["filename"]: row["class_index"] for row in csv.DictReader(handle)}
    data = tmp_path / "images"
    data.mkdir()
    for name in SAMPLES:
        (data / name).symlink_to(folder / name)
    with open(data / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "class_index"])
        writer.writerows([name, labels[name]] for name in SAMPLES)
    return data


def test_imagenet_classes_ship_with_the_package() -> None:
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert classes[0] == ("n01440764", "tench, Tinca tinca") and classes[999][0] == "n15075141"
    assert sq.build("cifar").meta.labels[3] == "class 3"


def test_accuracy_counts_top1_and_top5() -> None:
    scores = torch.tensor([[9.0, 8, 7, 6, 5, 4], [1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    result = accuracy(scores, torch.tensor([0, 0, 5]))
    assert (result.top1, result.top5, result.n) == (1 / 3, 1 / 3, 3)
    assert accuracy(scores, torch.tensor([0, 1, 4])).top5 == 1.0


def test_evaluate_and_predict_api(v11: sq.SqueezeNet, small_set: Path) -> None:
    items, _ = labelled_images(small_set)
    result = evaluate(v11, items, batch_size=4)
    assert result.n == 6 and result.top1 >= 0.5 and result.top5 >= result.top1
    (best,) = predict(v11, [small_set / "n04562935_water_tower.JPEG"], topk=3)
    assert best[0].class_index == 900 and len(best) == 3
    assert best[0].probability > best[1].probability > best[2].probability


def test_cli_predict(capsys: pytest.CaptureFixture[str], small_set: Path) -> None:
    tench = str(small_set / "n01440764_tench.JPEG")
    assert main(["predict", tench, "--weights", str(shared_path(V11)), "--topk", "2", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["image"] == tench and len(entry["predictions"]) == 2
    assert entry["predictions"][0]["class_index"] == 0 and entry["predictions"][0]["name"].startswith("tench")
    assert main(["predict", tench, "--weights", str(shared_path(V11))]) == 0
    assert "tench, Tinca tinca (0)" in capsys.readouterr().out


def test_cli_evaluate_json(capsys: pytest.CaptureFixture[str], small_set: Path) -> None:
    assert main(["evaluate", "--weights", str(shared_path(V11)), "--data", str(small_set), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"top1", "top5", "n"} and result["n"] == 6
    assert 0.5 <= result["top1"] <= result["top5"] <= 1.0


def test_cli_evaluate_image_folder_tree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # ImageFolder layout: class subfolders, class index = sorted folder order (wnids sort as ImageNet's indices)
    folder = shared_path("data/imagenet-samples")
    for name in SAMPLES[:3]:
        (tmp_path / name.split("_")[0]).mkdir()
        (tmp_path / name.split("_")[0] / name).symlink_to(folder / name)
    assert main(["evaluate", "--weights", str(shared_path(V11)), "--data", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3


def test_cli_summary_of_a_weights_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--weights", str(shared_path(V11)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 1_235_496


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_cli_bad_inputs_end_in_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                    small_set: Path) -> None:
    weights = str(shared_path(V11))
    image = str(small_set / SAMPLES[0])
    one_line_error(capsys, ["predict", image, "--weights", str(tmp_path / "missing.caffemodel")],
                   "missing.caffemodel", "not found")
    one_line_error(capsys, ["predict", image, "--weights", weights, "--arch", "1_0"],
                   "squeezenet_v1.1.caffemodel", "'conv1 weight'")
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(shared_path(V11).read_bytes()[:100_000])
    one_line_error(capsys, ["predict", image, "--weights", str(truncated)], "truncated.caffemodel")
    broken = tmp_path / "broken.JPEG"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    one_line_error(capsys, ["predict", str(broken), "--weights", weights], "broken.JPEG")
    one_line_error(capsys, ["predict", str(tmp_path / "absent.jpg"), "--weights", weights], "absent.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,class_index\nn01440764_tench.JPEG,0\nnot_there.JPEG,4\n")
    one_line_error(capsys, ["evaluate", "--weights", weights, "--data", str(small_set), "--labels", str(labels)],
                   "not_there.JPEG", "missing")
    one_line_error(capsys, ["evaluate", "--weights", weights, "--data", str(tmp_path / "nowhere")], "nowhere")
    one_line_error(capsys, ["predict", image, "--weights", "squeezenet3-imaginary"], "squeezenet3-imaginary")


def test_weights_without_preprocessing_need_one(tmp_path: Path, small_set: Path) -> None:
    model = sq.build("1_1")
    path = sq.save(model, tmp_path / "bare.safetensors")  # model.preprocess is None: nothing stored
    loaded = sq.load(path)
    assert loaded.preprocess is None
    with pytest.raises(DataError, match="no preprocessing"):
        predict(loaded, [small_set / SAMPLES[0]])
    assert len(predict(loaded, [small_set / SAMPLES[0]], preprocess="caffe")[0]) == 5
    with pytest.raises(DataError, match="topk"):
        predict(loaded, [small_set / SAMPLES[0]], topk=0, preprocess="caffe")


def test_cli_predict_a_folder_lists_its_images_recursively_in_sorted_order(capsys: pytest.CaptureFixture[str],
                                                                          small_set: Path) -> None:
    (small_set / "more").mkdir()
    (small_set / "more" / SAMPLES[1]).symlink_to(small_set / SAMPLES[1])
    (small_set / ".hidden.JPEG").symlink_to(small_set / SAMPLES[0])
    expected = sorted([*(small_set / name for name in SAMPLES), small_set / "more" / SAMPLES[1]])
    assert list_images(small_set) == expected
    assert list_images(small_set, recursive=False) == sorted(small_set / name for name in SAMPLES)
    tench = str(small_set / SAMPLES[0])
    assert main(["predict", str(small_set), tench, "--weights", str(shared_path(V11)), "--topk", "1", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [entry["image"] for entry in entries] == [*map(str, expected), tench]
    by_name = {Path(entry["image"]).name: entry["predictions"][0]["class_index"] for entry in entries}
    assert by_name["n04562935_water_tower.JPEG"] == 900 and by_name[SAMPLES[0]] == 0
    empty = small_set / "empty"
    empty.mkdir()
    one_line_error(capsys, ["predict", str(empty), "--weights", str(shared_path(V11))], "empty", "no images")


def test_five_classes_or_fewer_report_no_top5(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = sq.build("1_1", num_classes=3)
    model.meta = model.meta.replace(preprocessing=sq.get_preprocessing("caffe"), class_names=("a", "b", "c"))
    weights = str(sq.save(model, tmp_path / "three.safetensors"))
    folder = shared_path("data/imagenet-samples")
    for name, image in zip("abc", SAMPLES, strict=False):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "data" / name / image).symlink_to(folder / image)
    assert main(["evaluate", "--weights", weights, "--data", str(tmp_path / "data"), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"top1", "n"}
    assert main(["evaluate", "--weights", weights, "--data", str(tmp_path / "data")]) == 0
    text = capsys.readouterr().out
    assert "top-1" in text and "top-5" not in text and "over 3 images" in text
    assert main(["predict", str(folder / SAMPLES[0]), "--weights", weights, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert sorted(p["name"] for p in entry["predictions"]) == ["a", "b", "c"]  # topk 5 shows the 3 there are
