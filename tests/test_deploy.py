"""Export (ONNX, OpenVINO IR, int8), the runtime backends, predict --backend, and accuracy of every backend.

Exports are checked against PyTorch on real weights and real images; int8 and
bf16 are held to the issue's bar (within 1 point top-1 of float32) on the 400
sample images that int8 calibration never saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import squeezenet as sq
from squeezenet import deploy
from squeezenet.benchmark import compare_accuracy
from squeezenet.deploy import (
    Backend,
    Classifier,
    ExportError,
    backends,
    check_outputs,
    export_onnx,
    export_openvino,
    inference_model,
    make_backend,
    open_exported,
    read_metadata,
)
from squeezenet.errors import InputSizeError, SqueezeNetError, WeightsError
from squeezenet.evaluate import evaluate
from squeezenet.images import labelled_images, open_image
from squeezenet.model import ModelMeta

from .conftest import shared_path
from .test_cli import run as run_cli

V11 = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
DC = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"
SAMPLES = "data/imagenet-samples"
TENCH = "n01440764_tench.JPEG"  # class 0
CALIBRATION_STEP = 5  # every 5th sample image calibrates int8; the other 400 measure accuracy
ONE_POINT = 0.01 + 1e-9  # the bar, as a fraction (1e-9: 0.73 - 0.72 is 0.0100000001 in floats)


@pytest.fixture(autouse=True)
def private_export_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """predict/evaluate cache their ONNX conversions; tests keep theirs out of the user's cache."""
    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path_factory.getbasetemp() / "export-cache"))


@pytest.fixture(scope="module")
def v11() -> sq.SqueezeNet:
    return sq.load(shared_path(V11))


@pytest.fixture(scope="module")
def samples() -> Path:
    return shared_path(SAMPLES)


@pytest.fixture(scope="module")
def real_batch(v11: sq.SqueezeNet, samples: Path) -> np.ndarray:
    items, _ = labelled_images(samples)
    return deploy.preprocessed([path for path, _ in items[:5]], v11.preprocess)


@pytest.fixture(scope="module")
def calibration(v11: sq.SqueezeNet, samples: Path) -> list[np.ndarray]:
    return deploy.calibration_inputs(samples, v11.preprocess, limit=16)


@pytest.fixture(scope="module")
def v11_onnx(v11: sq.SqueezeNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(v11, tmp_path_factory.mktemp("onnx") / "v11.onnx")


# -- ONNX -------------------------------------------------------------------------------


def test_onnx_export_has_dynamic_batch_opset_and_metadata(v11: sq.SqueezeNet, v11_onnx: Path,
                                                          real_batch: np.ndarray) -> None:
    proto = onnx.load(str(v11_onnx))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, 227, 227]  # the caffe recipe's crop
    spec, preprocess = read_metadata(v11_onnx)
    assert spec == v11.spec and preprocess == v11.preprocess
    backend = open_exported(v11_onnx, "onnxruntime")
    expected = deploy.torch_logits(v11, real_batch)
    for batch in (real_batch[:1], real_batch):  # batch 1 and 5 through one file
        np.testing.assert_allclose(backend(batch), expected[: len(batch)], atol=1e-4, rtol=0)
    assert expected[0].argmax() == 0  # the tench really is a tench: real weights, real image


@pytest.mark.parametrize("weights", [V11, DC])
def test_onnx_runs_the_same_in_opencv_and_ends_in_a_clean_classifier_tail(weights: str, samples: Path,
                                                                         tmp_path: Path) -> None:
    """OpenCV's DNN module, an independent consumer, computes what ONNX Runtime does on real photos: Deep
    Compression's conv10 (a 1x1 convolution with pad 1) is exported as an explicit Pad, which OpenCV gets right."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV comes with the test extra (opencv-python-headless)")
    model = sq.load(shared_path(weights))
    path = export_onnx(model, tmp_path / "model.onnx")
    operators = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert operators[-2:] == ["GlobalAveragePool", "Flatten"]
    assert not {"Range", "Gather", "ReduceMean", "Reshape"} & set(operators)
    if model.spec.conv10_padding:
        assert operators[-5:-3] == ["Pad", "Conv"]
    items, _ = labelled_images(samples)
    batch = deploy.preprocessed([item for item, _ in items[:8]], model.preprocess)
    expected = open_exported(path, "onnxruntime")(batch)
    network = cv2.dnn.readNetFromONNX(str(path))
    for image, logits in zip(batch, expected, strict=True):
        network.setInput(image[None])
        got = network.forward()[0]
        scale = float(np.abs(logits).max())
        assert float(np.abs(got - logits).max()) <= 1e-4 * scale, weights
        assert got.argmax() == logits.argmax()


def test_export_check_rejects_outputs_that_differ(v11: sq.SqueezeNet) -> None:
    def off_by_a_little(batch: np.ndarray) -> np.ndarray:
        return deploy.torch_logits(v11, batch) + 1e-3

    with pytest.raises(ExportError, match=r"model\.onnx.*differ from PyTorch's by 0\.001") as error:
        check_outputs(off_by_a_little, v11, 227, "model.onnx")
    assert "\n" not in str(error.value)
    assert check_outputs(lambda batch: deploy.torch_logits(v11, batch), v11, 227, "same") == 0.0


class _Unexportable(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this module cannot be traced\nsecond line of a long story")


class _TracesDifferently(torch.nn.Module):
    """Scores x * 3 when run, but x * 2 in the exported graph: only the export check can notice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 2 if torch.compiler.is_compiling() else x * 3).mean((2, 3))  # (N, C) logits, as a classifier


@pytest.mark.parametrize(("module", "message"), [(_Unexportable(), r"model\.onnx: ONNX export failed: .*traced"),
                                                 (_TracesDifferently(), r"model\.onnx .*differ from PyTorch's")])
def test_failed_export_is_one_line_and_keeps_the_existing_file(tmp_path: Path, module: torch.nn.Module,
                                                               message: str) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the user's earlier export")
    with pytest.raises(ExportError, match=message) as error:
        export_onnx(module, target, input_size=8)
    assert "\n" not in str(error.value)
    assert target.read_bytes() == b"the user's earlier export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary left behind


def test_export_refuses_an_old_opset(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="opset 13 is too old"):
        export_onnx(sq.build("1_1"), tmp_path / "old.onnx", opset=13)


def test_onnx_int8_is_quantized_checked_and_keeps_metadata(v11: sq.SqueezeNet, calibration: list[np.ndarray],
                                                           real_batch: np.ndarray, tmp_path: Path) -> None:
    path = export_onnx(v11, tmp_path / "int8.onnx", calibration=calibration)
    proto = onnx.load(str(path))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == 26  # every convolution's weight, per output channel
    assert read_metadata(path) == (v11.spec, v11.preprocess)
    check = deploy.check_int8(open_exported(path, "onnxruntime"), v11, [real_batch], "int8")
    assert check.relative_error < 0.3 and check.top1_agreement >= 0.8


# -- OpenVINO ----------------------------------------------------------------------------


def test_openvino_ir_float32_and_int8(v11: sq.SqueezeNet, calibration: list[np.ndarray],
                                      real_batch: np.ndarray, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    fp32 = export_openvino(v11, tmp_path / "v11.xml")
    assert fp32.with_suffix(".bin").stat().st_size > 4 * 1_200_000  # float32 weights, not OpenVINO's fp16 default
    assert read_metadata(fp32) == (v11.spec, v11.preprocess)
    expected = deploy.torch_logits(v11, real_batch)
    np.testing.assert_allclose(open_exported(fp32)(real_batch), expected, atol=1e-4, rtol=0)

    int8 = export_openvino(v11, tmp_path / "v11-int8.xml", calibration=calibration)
    assert int8.with_suffix(".bin").stat().st_size < fp32.with_suffix(".bin").stat().st_size / 2
    assert read_metadata(int8) == (v11.spec, v11.preprocess)
    assert (open_exported(int8)(real_batch).argmax(1) == expected.argmax(1)).mean() >= 0.8
    with pytest.raises(ExportError, match=r"\.xml"):
        export_openvino(v11, tmp_path / "v11.onnx")


def test_backends_agree_and_check_their_input_shape(v11: sq.SqueezeNet, v11_onnx: Path,
                                                    real_batch: np.ndarray) -> None:
    expected = deploy.torch_logits(v11, real_batch)
    runners = [deploy.torch_backend(v11), deploy.torchvision_backend(v11), open_exported(v11_onnx, "onnxruntime")]
    if deploy.available("openvino"):
        runners.append(open_exported(v11_onnx, "openvino"))
    for runner in runners:
        np.testing.assert_allclose(runner(real_batch), expected, atol=1e-4, rtol=0, err_msg=runner.name)
    with pytest.raises(InputSizeError, match=r"takes batches of shape \(N, 3, 227, 227\), got \(1, 3, 224, 224\)"):
        open_exported(v11_onnx, "onnxruntime")(np.zeros((1, 3, 224, 224), np.float32))
    assert isinstance(runners[0], Backend) and runners[0].details["channels_last"] is True


# -- predict --backend, and bad input -----------------------------------------------------


def test_predict_on_every_backend_gives_the_same_answer(capsys: pytest.CaptureFixture[str], samples: Path,
                                                        v11_onnx: Path) -> None:
    tench = str(samples / TENCH)
    weights = str(shared_path(V11))
    runs = {"pytorch": weights, "onnxruntime": weights, "auto": weights, "onnxruntime ": str(v11_onnx)}
    if deploy.available("openvino"):
        runs["openvino"] = weights
        runs["openvino "] = str(v11_onnx)
    answers = {}
    for backend, model_file in runs.items():
        code, out, err = run_cli(capsys, "predict", tench, "--weights", model_file, "--backend", backend.strip(),
                                 "--topk", "3", "--json")
        assert code == 0, err
        (entry,) = json.loads(out)
        answers[backend] = entry["predictions"]
    for backend, predictions in answers.items():
        assert [p["class_index"] for p in predictions] == [p["class_index"] for p in answers["pytorch"]], backend
        assert predictions[0]["class_index"] == 0 and predictions[0]["name"].startswith("tench")
        assert predictions[0]["probability"] == pytest.approx(answers["pytorch"][0]["probability"], abs=1e-4)


def test_models_and_backends_are_classifiers(v11: sq.SqueezeNet, v11_onnx: Path, real_batch: np.ndarray) -> None:
    runner = open_exported(v11_onnx, "onnxruntime")
    assert isinstance(v11, Classifier) and isinstance(runner, Classifier)
    assert not isinstance(v11, Backend) and not isinstance(runner, torch.nn.Module)  # no fake module any more
    scores = runner(torch.from_numpy(real_batch))  # a tensor in, a tensor out; numpy in, numpy out
    assert isinstance(scores, torch.Tensor) and scores.device.type == "cpu"
    np.testing.assert_array_equal(scores.numpy(), runner(real_batch))
    assert make_backend("onnxruntime", v11).meta == v11.meta  # the model's class names, the graph's recipe


def test_evaluate_takes_the_same_backends_as_predict(capsys: pytest.CaptureFixture[str], samples: Path,
                                                     v11_onnx: Path, tmp_path: Path) -> None:
    weights = str(shared_path(V11))
    items = labelled_images(samples)[0][::25]
    scores = {name: evaluate(inference_model(weights, name), items) for name in ("pytorch", "onnxruntime")}
    assert scores["pytorch"].n == scores["onnxruntime"].n == 20
    assert scores["pytorch"].top1 == scores["onnxruntime"].top1 and scores["pytorch"].top1 > 0.5
    assert scores["pytorch"].loss == pytest.approx(scores["onnxruntime"].loss, abs=1e-4)
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,class_index\n" + "".join(f"{path.name},{label}\n" for path, label in items))
    for backend, model_file in (("onnxruntime", str(v11_onnx)), ("pytorch", weights)):
        code, out, err = run_cli(capsys, "evaluate", "--data", str(samples), "--labels", str(labels),
                                 "--weights", model_file, "--backend", backend, "--json")
        assert code == 0, err
        assert json.loads(out) == pytest.approx(scores[backend].to_dict()), backend
    code, _, err = run_cli(capsys, "evaluate", "--data", str(samples), "--weights", str(v11_onnx))
    assert code == 2 and "cannot run on backend 'pytorch'" in err and err.count("\n") == 1


def test_default_backend_exports_nothing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path, samples: Path) -> None:
    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path))
    tench, weights = str(samples / TENCH), str(shared_path(V11))
    assert run_cli(capsys, "predict", tench, "--weights", weights)[0] == 0
    assert not (tmp_path / "exports").exists()
    assert run_cli(capsys, "predict", tench, "--weights", weights, "--backend", "onnxruntime")[0] == 0
    assert len(list((tmp_path / "exports").glob("*.onnx"))) == 1  # asked for: one export, cached


def test_openvino_backend_is_float32_on_every_cpu(v11: sq.SqueezeNet, v11_onnx: Path) -> None:
    pytest.importorskip("openvino")
    for runner in (make_backend("openvino", v11), open_exported(v11_onnx, "openvino")):
        assert runner.details["inference_precision_hint"] == "f32", runner.details  # not bf16 on AMX/AVX512-BF16
        assert runner.meta is not None and runner.meta.spec == v11.spec


def test_auto_picks_the_fastest_installed_backend(v11: sq.SqueezeNet, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "openvino" if deploy.available("openvino") else "pytorch"
    assert deploy.fastest_backend() == expected
    monkeypatch.setattr(backends, "available", lambda runtime: runtime != "openvino")
    assert deploy.fastest_backend() == "pytorch"


def _not_a_model_files(folder: Path, real_onnx: Path) -> dict[str, Path]:
    files = {
        "random.onnx": np.random.default_rng(0).bytes(4096),
        "truncated.onnx": real_onnx.read_bytes()[: real_onnx.stat().st_size // 2],
        "empty.onnx": b"",
        "text.xml": b"not xml at all",
        "html.xml": b"<html><body>404</body></html>",
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return {name: folder / name for name in files}


def test_files_that_are_not_models_fail_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      samples: Path, v11_onnx: Path) -> None:
    tench = str(samples / TENCH)
    for name, path in _not_a_model_files(tmp_path, v11_onnx).items():
        if name.endswith(".xml") and not deploy.available("openvino"):
            continue
        with pytest.raises(WeightsError, match=name):
            inference_model(path, "auto")
        backend = "onnxruntime" if name.endswith(".onnx") else "openvino"
        code, out, err = run_cli(capsys, "predict", tench, "--weights", str(path), "--backend", backend)
        assert code == 2 and out == "", name
        assert err.count("\n") == 1 and name in err and "Traceback" not in err, err
    garbage = tmp_path / "random.onnx"
    for argv in (("export", "--weights", str(garbage), "--out", str(tmp_path / "x.onnx")),
                 ("benchmark", "--weights", str(garbage), "--backends", "pytorch"),
                 ("predict", tench, "--weights", str(v11_onnx), "--backend", "pytorch")):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "x.onnx").exists()


def _image_in_every_mode(source: Image.Image, folder: Path) -> dict[str, Path]:
    """The same photo as CMYK, 16-bit grayscale, palette, RGBA, LA, L and 1-bit; the grayscale ones share pixels."""
    gray = source.convert("L")
    sixteen = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)  # full 16-bit range, same picture
    rgba = source.convert("RGBA")  # fully opaque: must give exactly the RGB answer
    variants = {"cmyk.jpg": source.convert("CMYK"), "gray16.png": sixteen, "palette.png": source.convert("P"),
                "rgba.png": rgba, "la.png": gray.convert("LA"), "gray.png": gray, "bilevel.png": source.convert("1"),
                "rgb.png": source}
    paths = {}
    for name, image in variants.items():
        image.save(folder / name)
        paths[name] = folder / name
    return paths


def test_images_of_every_mode_are_converted(v11: sq.SqueezeNet, v11_onnx: Path, samples: Path,
                                            tmp_path: Path) -> None:
    paths = _image_in_every_mode(open_image(samples / TENCH), tmp_path)
    assert Image.open(paths["gray16.png"]).mode.startswith("I")  # really 16-bit on disk
    runner = open_exported(v11_onnx, "onnxruntime")  # a Classifier: the file brings spec and preprocessing
    assert runner.meta == ModelMeta(v11.spec, v11.preprocess)
    from squeezenet.evaluate import logits

    scores, _ = logits(runner, list(paths.values()), batch_size=4)
    by_name = dict(zip(paths, scores.numpy(), strict=True))
    np.testing.assert_allclose(by_name["rgba.png"], by_name["rgb.png"], atol=1e-4)  # opaque alpha changes nothing
    np.testing.assert_allclose(by_name["la.png"], by_name["gray.png"], atol=1e-4)
    np.testing.assert_allclose(by_name["gray16.png"], by_name["gray.png"], atol=1e-3)  # 16 bits scaled, not clipped
    assert by_name["rgb.png"].argmax() == 0 and by_name["cmyk.jpg"].argmax() == 0  # colour survives CMYK
    assert all(np.isfinite(s).all() for s in by_name.values())


def test_unreadable_image_fails_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              v11_onnx: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    code, _, err = run_cli(capsys, "predict", str(broken), "--weights", str(v11_onnx), "--backend", "onnxruntime")
    assert code == 2 and "broken.jpg" in err and err.count("\n") == 1


# -- the export CLI --------------------------------------------------------------------------


def test_cli_export_onnx_and_its_argument_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 samples: Path) -> None:
    out_file = tmp_path / "v11.onnx"
    code, out, err = run_cli(capsys, "export", "--weights", str(shared_path(V11)), "--format", "onnx",
                             "--out", str(out_file))
    assert code == 0, err
    assert str(out_file) in out and read_metadata(out_file)[1] == sq.get_preprocessing("caffe")
    smaller = tmp_path / "v11-224.onnx"  # another graph size: the stored recipe crops to match it
    assert run_cli(capsys, "export", "--weights", str(shared_path(V11)), "--input-size", "224",
                   "--out", str(smaller))[0] == 0
    assert read_metadata(smaller)[1] == sq.get_preprocessing("caffe").replace(crop=224)
    code, out, err = run_cli(capsys, "predict", str(samples / TENCH), "--weights", str(smaller), "--backend",
                             "onnxruntime", "--json")
    assert code == 0 and json.loads(out)[0]["predictions"][0]["class_index"] == 0, err
    code, _, err = run_cli(capsys, "export", "--weights", str(shared_path(V11)), "--int8", "--out", str(out_file))
    assert code == 2 and "--calib" in err
    code, _, err = run_cli(capsys, "export", "--weights", str(shared_path(V11)), "--int8", "--calib",
                           str(tmp_path / "missing"), "--out", str(tmp_path / "q.onnx"))
    assert code == 2 and "missing" in err and err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(capsys, "export", "--weights", str(shared_path(V11)), "--int8", "--calib", str(empty),
                           "--out", str(tmp_path / "q.onnx"))
    assert code == 2 and "no images" in err


def test_export_cache_is_reused(v11: sq.SqueezeNet) -> None:
    first = deploy.cached_onnx(v11)
    stamp = first.stat().st_mtime_ns
    assert deploy.cached_onnx(v11) == first and first.stat().st_mtime_ns == stamp
    other = sq.load(shared_path(V11), preprocess="torchvision")  # another recipe, another graph size
    assert deploy.cached_onnx(other) != first


# -- accuracy of every backend on the real images ----------------------------------------------


@pytest.fixture(scope="module")
def sample_set(samples: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All 500 sample images with Caffe preprocessing, their labels, and the calibration mask (every 5th)."""
    items, _ = labelled_images(samples)
    inputs = deploy.preprocessed([path for path, _ in items], sq.get_preprocessing("caffe"))
    labels = np.array([label for _, label in items])
    return inputs, labels, np.arange(len(items)) % CALIBRATION_STEP == 0


@pytest.fixture(scope="module", params=[DC, V11], ids=["dc-v1.0", "v1.1"])
def accuracy_rows(request: pytest.FixtureRequest, sample_set) -> dict[str, object]:
    inputs, labels, calibrate = sample_set
    model = sq.load(shared_path(request.param))
    calibration = [inputs[i : i + 1] for i in np.flatnonzero(calibrate)]
    names = ["pytorch", "onnxruntime-int8", "openvino-int8"]
    rows = compare_accuracy(model, inputs[~calibrate], labels[~calibrate], calibration, names)
    return {row.name: row for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["onnxruntime-int8", "openvino-int8"])
def test_int8_is_within_one_point_of_float32(accuracy_rows, name: str) -> None:
    row, fp32 = accuracy_rows[name], accuracy_rows["pytorch"]
    if row.skipped:
        pytest.skip(row.skipped)
    assert row.n == fp32.n == 400
    assert fp32.top1 > 0.6  # real weights on real images
    assert abs(row.top1 - fp32.top1) <= ONE_POINT, (row.top1, fp32.top1)
    assert row.agreement >= 0.9


@pytest.mark.slow
def test_bf16_is_within_one_point_of_float32(sample_set) -> None:
    """bf16 weights and activations (PyTorch's bf16 kernels), v1.1, on 100 held-out images.

    PyTorch's bf16 shows the numerics on any CPU, slowly where the CPU lacks
    bf16 instructions, hence the subset (benchmarks/backend_accuracy.py runs
    all 500). OpenVINO's default is held to the same bar where it picks bf16
    (CPUs with AMX or AVX512-BF16) and must equal PyTorch where it picks f32.
    """
    inputs, labels, calibrate = sample_set
    held_out = np.flatnonzero(~calibrate)[::4]
    model = sq.load(shared_path(V11))
    rows = {row.name: row for row in compare_accuracy(model, inputs[held_out], labels[held_out], None,
                                                      ["pytorch", "pytorch-bf16", "openvino-default"])}
    fp32, bf16, default = rows["pytorch"], rows["pytorch-bf16"], rows["openvino-default"]
    assert fp32.n == 100 and fp32.top1 > 0.5
    assert abs(bf16.top1 - fp32.top1) <= ONE_POINT and bf16.agreement >= 0.95
    if default.skipped:
        return
    if default.details["inference_precision_hint"] == "f32":
        assert default.agreement == 1.0 and default.top1 == fp32.top1
    else:
        assert abs(default.top1 - fp32.top1) <= ONE_POINT


def test_exported_file_without_our_metadata_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.onnx"
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([onnx.helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
                                    onnx.helper.make_node("Flatten", ["pooled"], ["logits"])], "someone-else's",
                                   [tensor("input", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                                   [tensor("logits", onnx.TensorProto.FLOAT, [1, 3])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(WeightsError, match=r"foreign\.onnx: has no squeezenet metadata"):
        inference_model(foreign, "onnxruntime")
    with pytest.raises(SqueezeNetError, match="cannot run on backend 'pytorch'"):
        inference_model(foreign, "pytorch")
