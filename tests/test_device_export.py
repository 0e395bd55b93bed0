"""On-device exports (ExecuTorch .pte, LiteRT .tflite, ncnn .param + .bin) of the real weights, each file run in its
own runtime from Python and compared with PyTorch on the real sample images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import squeezenet as sq
from squeezenet import deploy
from squeezenet.deploy.graph import deployable, read_sidecar
from squeezenet.deploy.inference import open_exported
from squeezenet.images import labelled_images

from .conftest import run_cli, shared_path

V11 = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
DC = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"
SAMPLES = "data/imagenet-samples"
FORMATS = {"executorch": (".pte", "executorch"), "tflite": (".tflite", "litert_torch"), "ncnn": (".param", "pnnx")}
CALIBRATION_STEP = 5  # every 5th sample image calibrates int8; the other 400 measure accuracy
ONE_POINT = 0.01 + 1e-9


@pytest.fixture(autouse=True)
def private_export_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path_factory.getbasetemp() / "export-cache"))


def _toolkit(file_format: str) -> None:
    pytest.importorskip(FORMATS[file_format][1], reason=f"the {file_format} toolkit is an extra; make test "
                                                        "installs it")


@pytest.fixture(scope="module")
def sample_images() -> tuple[list[Path], np.ndarray]:
    items, _ = labelled_images(shared_path(SAMPLES))
    return [path for path, _ in items], np.array([label for _, label in items])


@pytest.fixture(scope="module", params=[V11, DC], ids=["v1.1", "dc-v1.0"])
def real_model(request: pytest.FixtureRequest) -> sq.SqueezeNet:
    return sq.load(shared_path(request.param))


@pytest.mark.parametrize("file_format", list(FORMATS))
def test_float32_export_runs_in_its_runtime_as_pytorch_does(file_format: str, real_model: sq.SqueezeNet,
                                                           sample_images, tmp_path: Path) -> None:
    _toolkit(file_format)
    suffix = FORMATS[file_format][0]
    path = sq.export(real_model, tmp_path / f"model{suffix}", format=file_format)
    meta, content = read_sidecar(path)
    assert meta.spec == real_model.spec and meta.preprocessing == real_model.preprocess
    assert len(content["class_names"]) == 1000 and content["class_names"][0] == "tench, Tinca tinca"
    assert content["input"]["layout"] == ("NHWC" if file_format == "tflite" else "NCHW")
    runner = open_exported(path)
    batch = deploy.preprocessed(sample_images[0][:8], real_model.preprocess)
    expected = deploy.torch_logits(real_model, batch)
    got = runner(batch)
    scale = float(np.abs(expected).max())
    assert float(np.abs(got - expected).max()) <= 1e-4 * scale
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize(("arch", "size"), [("1_0", 224), ("1_1", 227), ("1_0", 227), ("1_1", 224)])
@pytest.mark.parametrize("file_format", ["tflite", "executorch"])
def test_round_up_pooling_sizes_export_equal_outputs(file_format: str, arch: str, size: int,
                                                     tmp_path: Path) -> None:
    """v1.0 at 224 and v1.1 at 227 are the sizes where a round-up pool gives a larger map than a plain one;
    the export's own check (1e-4 of the logit scale) runs in the runtime at that size."""
    _toolkit(file_format)
    torch.manual_seed(0)
    model = sq.build(arch, num_classes=10)
    model.meta = model.meta.replace(preprocessing=sq.get_preprocessing("caffe"))
    path = sq.export(model, tmp_path / f"m{FORMATS[file_format][0]}", format=file_format, input_size=size)
    assert read_sidecar(path)[1]["input"]["shape"][1:3] in ([size, size], [3, size])


@pytest.mark.parametrize("file_format", list(FORMATS))
def test_bypass_and_batch_norm_variants_export_to_every_format(file_format: str, tmp_path: Path) -> None:
    """Any spec, not only the presets: the complex bypass (1x1 convolutions on the shortcut) with batch norm,
    whose statistics are those of a trained network; the export's own check runs the file in its runtime."""
    _toolkit(file_format)
    torch.manual_seed(0)
    model = sq.SqueezeNet(sq.get_spec("1_1", num_classes=5, bypass="complex", batch_norm=True))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.meta = model.meta.replace(preprocessing=sq.get_preprocessing("torchvision"),
                                    class_names=("a", "b", "c", "d", "e"))
    path = sq.export(model, tmp_path / f"m{FORMATS[file_format][0]}", format=file_format)
    meta, _ = read_sidecar(path)
    assert meta.class_names == ("a", "b", "c", "d", "e") and meta.spec == model.spec


@pytest.mark.parametrize("spec", [sq.get_spec("1_0", num_classes=7, bypass="simple"),
                                  sq.get_spec("1_1", num_classes=7, bypass="complex", batch_norm=True),
                                  sq.get_spec("1_0", num_classes=7, batch_norm=True, conv10_padding=1)],
                         ids=["simple-bypass", "complex-bypass-bn", "bn-padded-conv10"])
@pytest.mark.parametrize("size", [224, 227, 231])
def test_the_deployable_network_computes_the_models_logits(spec: sq.Spec, size: int) -> None:
    """Batch norm folded and round-up pools made explicit: same logits, no batch norm or ceil_mode pool left."""
    torch.manual_seed(0)
    model = sq.SqueezeNet(spec).eval()
    for module in model.modules():  # statistics of a trained network, not the identity of a fresh one
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    runner = deployable(model, size, explicit_pool_padding=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in runner.modules())
    assert not any(isinstance(m, torch.nn.MaxPool2d) and m.ceil_mode for m in runner.modules())
    images = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        torch.testing.assert_close(runner(images), model(images), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def int8_rows(real_model: sq.SqueezeNet, sample_images, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """float32 (PyTorch) and each int8 device file on the 400 held-out sample images (100 others calibrate)."""
    paths, labels = sample_images
    inputs = deploy.preprocessed(paths, real_model.preprocess)
    calibrate = np.arange(len(paths)) % CALIBRATION_STEP == 0
    calibration = [inputs[i:i + 1] for i in np.flatnonzero(calibrate)]
    held_out, truth = inputs[~calibrate], labels[~calibrate]
    reference = deploy.torch_logits(real_model, held_out).argmax(1)
    rows = {"float32": {"top1": float(np.mean(reference == truth))}, "weights": real_model.spec.name}
    folder = tmp_path_factory.mktemp("int8")
    for file_format in ("executorch", "tflite"):
        try:
            _toolkit(file_format)
        except pytest.skip.Exception as reason:
            rows[file_format] = {"skipped": str(reason)}
            continue
        path = sq.export(real_model, folder / f"{real_model.spec.name}{FORMATS[file_format][0]}",
                         format=file_format, calibration=calibration)
        runner = open_exported(path)  # loaded once, run on the images 50 at a time
        logits = np.concatenate([runner(held_out[i:i + 50]) for i in range(0, len(held_out), 50)])
        predicted, ranked = logits.argmax(1), np.sort(logits, axis=1)
        rows[file_format] = {"top1": float(np.mean(predicted == truth)), "n": len(truth),
                             "ties": float(np.mean(ranked[:, -1] == ranked[:, -2])),
                             "agreement": float(np.mean(predicted == reference)), "bytes": path.stat().st_size}
    return rows


def test_int8_quantizers_leave_the_pooling_head_in_float() -> None:
    """conv10's map is int8; the average pool and flatten after it are not, so the logits are not int8 steps."""
    _toolkit("executorch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    from squeezenet.deploy.pt2e import with_float_head

    model = sq.SqueezeNet(sq.get_spec("1_1", num_classes=5)).eval()
    graph = torch.export.export(deployable(model, 64), (torch.zeros(1, 3, 64, 64),)).module()
    quantizer = with_float_head(XNNPACKQuantizer)().set_global(get_symmetric_quantization_config(is_per_channel=True))
    # the last node of each kind wins: conv10, its ReLU, the head
    annotated = {str(node.target).split(".")[1].rstrip("_"): "quantization_annotation" in node.meta
                 for node in quantizer.annotate(graph).graph.nodes if node.op == "call_function"}
    assert annotated["conv2d"] and annotated["relu"]
    assert annotated["adaptive_avg_pool2d"] is False and annotated["flatten"] is False


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["executorch", "tflite"])
def test_int8_top1_stays_near_float32(int8_rows: dict, file_format: str) -> None:
    row, fp32 = int8_rows[file_format], int8_rows["float32"]
    if "skipped" in row:
        pytest.skip(row["skipped"])
    print(f"{file_format} {int8_rows['weights']} int8: top-1 {row['top1']:.2%} vs float32 {fp32['top1']:.2%}, "
          f"per-image top-1 agreement {row['agreement']:.2%} over {row['n']} images, {row['bytes']:,} bytes")
    assert row["n"] == 400 and fp32["top1"] > 0.6
    assert fp32["top1"] - row["top1"] <= ONE_POINT
    assert row["agreement"] >= 0.9
    assert row["ties"] == 0  # logits left in int8 steps tie for top-1 (pt2e keeps the pooling head in float)
    assert row["bytes"] < 1.5e6  # a quarter of the float32 file


def test_ncnn_int8_is_refused_with_the_reason(real_model: sq.SqueezeNet, tmp_path: Path) -> None:
    _toolkit("ncnn")
    with pytest.raises(sq.ExportError, match="ncnn2int8"):
        sq.export(real_model, tmp_path / "m.param", format="ncnn", calibration=[np.zeros((1, 3, 227, 227))])
    assert not (tmp_path / "m.param").exists()


@pytest.mark.parametrize("file_format", list(FORMATS))
def test_predict_runs_a_device_file_and_refuses_a_broken_one(file_format: str, sample_images, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    _toolkit(file_format)
    suffix = FORMATS[file_format][0]
    path = tmp_path / f"model{suffix}"
    code, out, err = run_cli(capsys, "export", "--weights", str(shared_path(V11)), "--format", file_format,
                             "--out", str(path))
    assert code == 0, err
    tench = next(p for p in sample_images[0] if "tench" in p.name)
    code, out, err = run_cli(capsys, "predict", str(tench), "--weights", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)[0]["predictions"][0]["class_index"] == 0
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    if file_format == "ncnn":
        broken.with_suffix(".bin").write_bytes(b"\0" * 64)
    not_a_model = tmp_path / f"notes{suffix}"
    not_a_model.write_text("these are my holiday notes\n")
    for bad in (broken, not_a_model):
        code, _, err = run_cli(capsys, "predict", str(tench), "--weights", str(bad))
        assert code == 2 and err.count("\n") == 1 and str(bad.with_suffix("")) in err, err


def test_peak_memory_is_the_loading_process_own(real_model: sq.SqueezeNet, tmp_path: Path) -> None:
    """The benchmark's peak-memory column: a fresh process that loads the file and classifies one image (an int8
    LiteRT file takes int8 input), measured by its own high-water mark, not the benchmark process it forks from."""
    from squeezenet.benchmark import peak_memory_mb

    _toolkit("tflite")
    calibration = deploy.calibration_inputs(shared_path(SAMPLES), real_model.preprocess, limit=8)
    path = sq.export(real_model, tmp_path / "m.tflite", format="tflite", calibration=calibration)
    own = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmRSS:")) / 1024
    peak = peak_memory_mb(path)
    assert peak is not None and 5 < peak < own, (peak, own)
