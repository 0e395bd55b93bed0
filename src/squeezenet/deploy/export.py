"""Export to ONNX, OpenVINO IR and the on-device formats, int8 quantization, and the checks every file passes.

Every exported file is checked against PyTorch when it is written (a wrong
export is worse than none): float32 exports must match within 1e-4, int8 ones
within a bounded relative error on real calibration images. Each file carries
the spec and the preprocessing in its metadata, so the file alone is enough to
classify an image. onnx, onnxscript and onnxruntime (``squeezenet[onnx]``),
openvino and nncf (``squeezenet[openvino]``) are imported only here, inside
the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..cache import cache_dir
from ..errors import DataError, ExportError, SqueezeNetError
from ..extras import require
from ..files import printable
from ..images import list_images
from ..model import ModelMeta
from ..preprocess import Preprocessing
from ..spec import Spec
from .backends import (
    META_CLASSES,
    META_PREPROCESS,
    META_SPEC,
    OPENVINO_F32,
    OPENVINO_SECTION,
    first_line,
    in_channels_of,
    input_size_of,
    onnxruntime_backend,
    openvino_backend,
)

ONNX_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORT_ATOL = 1e-4
INT8_MAX_RELATIVE_ERROR = 0.3  # int8 logits vs PyTorch's, relative to the logits' own spread
INT8_CHECK_IMAGES = 16
class DeviceFormat(NamedTuple):
    """One on-device format: its files, the module of squeezenet.deploy that writes and runs them (whose name is
    the runtime's: --backend, benchmark rows), and the toolkit modules that needs."""

    suffix: str
    siblings: tuple[str, ...]  # files written beside it (the JSON sidecar, ncnn's .bin)
    runtime: str
    exporter: str
    backend: str
    toolkit: tuple[str, ...]
    no_int8: str | None = None  # why int8 cannot be made here, where it cannot


DEVICE_FORMATS = {
    "executorch": DeviceFormat(".pte", (".json",), "executorch", "export_executorch", "executorch_backend",
                               ("executorch",)),
    "tflite": DeviceFormat(".tflite", (".json",), "litert", "export_tflite", "litert_backend",
                           ("ai_edge_litert", "litert_torch")),
    "ncnn": DeviceFormat(".param", (".bin", ".json"), "ncnn", "export_ncnn", "ncnn_backend", ("ncnn", "pnnx"),
                         "ncnn int8 needs ncnn's C++ tools ncnn2table and ncnn2int8, which the ncnn and pnnx Python "
                         "packages do not ship; export float32 here and quantize with those tools (see "
                         "docs/deployment.md)"),
}
FORMATS = ("onnx", "openvino", *DEVICE_FORMATS)


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception: torch.onnx wraps the real reason in pages of advice."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


# -- inputs, reference outputs and checks ------------------------------------------------


def example_batch(model: nn.Module, batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Random images pushed through the model's own preprocessing: inputs in the range it really sees.

    Plain N(0, 1) noise would understate the error of a Caffe-style model whose
    inputs span -123..152, so export checks and benchmarks feed these.
    """
    from PIL import Image

    generator = np.random.default_rng(seed)
    preprocess = getattr(model, "preprocess", None)
    if not isinstance(preprocess, Preprocessing):
        return generator.standard_normal((batch, in_channels_of(model), size, size), dtype=np.float32)
    recipe = preprocess.replace(resize=size, resize_mode="squash", crop=None)
    pixels = generator.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    # Contiguous: a strided example makes torch.export trace an as_strided (Range/Gather nodes in ONNX) for flatten.
    return np.ascontiguousarray(np.stack([recipe(Image.fromarray(image)).numpy() for image in pixels]))


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def torch_logits(model: nn.Module, batch: np.ndarray) -> np.ndarray:
    """The reference every export is checked against: the PyTorch model in eval mode."""
    with _eval_mode(model), torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float().numpy()


def _run_for_check(run: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.asarray(run(inputs))
    except SqueezeNetError:
        raise
    except Exception as error:  # a runtime that cannot run its own export makes the export a failure
        raise ExportError(f"{what}: cannot run the exported model at batch {len(inputs)}: "
                          f"{first_line(error)}") from None


def check_outputs(run: Callable[[np.ndarray], np.ndarray], model: nn.Module, size: int, what: str,
                  atol: float = EXPORT_ATOL, batches: Sequence[int] = (1, 3), relative: bool = False) -> float:
    """Raise ExportError unless ``run`` and PyTorch agree within ``atol`` on realistic inputs (``relative``: atol
    times the largest PyTorch logit, at least 1: runtimes that sum in another order differ in proportion).

    Neither batch size is the one the graph was traced with (2), which proves
    the batch axis is dynamic. Returns the largest absolute difference seen.
    """
    worst = 0.0
    for batch in batches:
        inputs = example_batch(model, batch, size, seed=batch)
        expected = torch_logits(model, inputs)
        got = _run_for_check(run, inputs, what)
        if got.shape != expected.shape:
            raise ExportError(f"{what}: output shape {got.shape} at batch {batch}, PyTorch gives {expected.shape}")
        difference = float(np.max(np.abs(got - expected)))
        allowed = atol * max(float(np.abs(expected).max()), 1.0) if relative else atol
        if not difference <= allowed:
            raise ExportError(f"{what}: outputs differ from PyTorch's by {difference:.3g} "
                              f"(allowed {allowed:g}) at batch {batch}")
        worst = max(worst, difference)
    return worst


@dataclass(frozen=True)
class Int8Check:
    """How far int8 logits are from PyTorch's float32 ones on real images."""

    relative_error: float  # ||int8 - fp32|| / ||fp32 - its per-image mean||
    top1_agreement: float  # fraction of images with the same top-1 class
    images: int


def check_int8(run: Callable[[np.ndarray], np.ndarray], model: nn.Module, calibration: Sequence[np.ndarray],
               what: str, max_relative_error: float = INT8_MAX_RELATIVE_ERROR) -> Int8Check:
    """Raise ExportError when a quantized model's logits stray too far from PyTorch's on real images.

    int8 cannot match to 1e-4; a relative error bound catches a broken
    calibration (wrong preprocessing, saturated kernels) without failing on
    the rounding that int8 always brings.
    """
    inputs = np.concatenate(list(calibration[:INT8_CHECK_IMAGES]))
    expected = torch_logits(model, inputs)
    got = _run_for_check(run, inputs, what)
    spread = float(np.linalg.norm(expected - expected.mean(axis=1, keepdims=True)))
    relative = float(np.linalg.norm(got - expected)) / max(spread, 1e-12)
    agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    if not relative <= max_relative_error:
        raise ExportError(f"{what}: int8 logits differ from PyTorch's by {relative:.2f} relative "
                          f"(allowed {max_relative_error}); top-1 agrees on {agreement:.0%} of "
                          f"{len(inputs)} calibration images")
    return Int8Check(relative, agreement, len(inputs))


# -- calibration data -------------------------------------------------------------------


def preprocessed(paths: Sequence[str | Path], preprocess: Preprocessing) -> np.ndarray:
    """Images as one float32 batch (N, C, H, W), each read with images.open_image (any mode becomes RGB)."""
    from ..images import open_image

    if preprocess.output_size is None:
        raise DataError(f"preprocessing {preprocess.name!r} gives images of varying size; it needs a crop")
    return np.stack([preprocess(open_image(path)).numpy() for path in paths])


def calibration_inputs(directory: str | Path, preprocess: Preprocessing, limit: int = 100,
                       input_size: int | None = None) -> list[np.ndarray]:
    """Up to ``limit`` real images from ``directory`` as a list of (1, C, S, S) arrays for int8 calibration.

    ``input_size`` re-crops to another square side (the benchmark runs at 224
    a model whose recipe crops 227). The first ``limit`` files in sorted order
    (images.list_images: recursive) are taken, so a calibration set is reproducible.
    """
    if limit < 1:
        raise DataError(f"calibration needs at least one image, got limit={limit}")
    recipe = preprocess.replace(crop=input_size) if input_size is not None else preprocess
    batch = preprocessed(list_images(directory)[:limit], recipe)
    return [batch[i : i + 1] for i in range(len(batch))]


# -- ONNX ---------------------------------------------------------------------------------


def _check_output(path: Path) -> None:
    """Refuse an output path that cannot be written before any work (an export takes up to a minute)."""
    if path.is_dir():
        raise ExportError(f"{printable(path)}: is a folder; --out names the file to write (e.g. {path / 'model.onnx'})")
    folder = next((parent for parent in path.absolute().parents if parent.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"{printable(path)}: cannot write here ({printable(folder or path.parent)} is not a "
                          "writable folder)")


@contextlib.contextmanager
def _atomic_output(path: Path, siblings: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it (and ``siblings``, suffixes such as .bin) there on success.

    A failed export or check leaves whatever was at ``path`` untouched.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch_context = tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}-")
    except OSError as error:
        raise ExportError(f"{path}: cannot write there ({error.strerror or error})") from None
    with scratch_context as scratch:
        temporary = Path(scratch) / path.name
        yield temporary
        for suffix in siblings:
            os.replace(temporary.with_suffix(suffix), path.with_suffix(suffix))
        os.replace(temporary, path)


def _metadata(model: nn.Module, size: int) -> dict[str, str]:
    """Spec and preprocessing as JSON; a recipe whose crop differs from the graph's size is re-cropped to fit."""
    metadata = {}
    preprocess = getattr(model, "preprocess", None)
    if isinstance(preprocess, Preprocessing):
        if preprocess.crop is not None and preprocess.crop != size:
            preprocess = preprocess.replace(crop=size)
        metadata[META_PREPROCESS] = preprocess.to_json()
    spec = getattr(model, "spec", None)
    if isinstance(spec, Spec):
        metadata[META_SPEC] = spec.to_json()
    meta = getattr(model, "meta", None)
    if isinstance(meta, ModelMeta) and meta.class_names is not None:
        metadata[META_CLASSES] = json.dumps(list(meta.class_names))
    return metadata


def _require_onnx_export() -> Any:
    """The onnx module, once the exporter's packages (onnx, onnxscript, onnxruntime for the check) are known there."""
    for module in ("onnxscript", "onnxruntime"):
        require(module, "ONNX export")
    return require("onnx", "ONNX export")


def _onnx_proto(model: nn.Module, size: int, opset: int, where: str) -> Any:
    """The traced graph as an onnx.ModelProto with our metadata, from the torch.export-based exporter."""
    example = torch.from_numpy(example_batch(model, 2, size))
    try:
        with _eval_mode(model), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, verbose=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            )
        proto = program.model_proto
    except SqueezeNetError:
        raise
    except Exception as error:
        cause = _root_cause(error)
        raise ExportError(f"{where}: ONNX export failed: {type(cause).__name__}: {first_line(cause)}") from None
    _tidy_graph(proto)
    _set_onnx_metadata(proto, _metadata(model, size))
    proto.producer_name = "squeezenet"
    return proto


def _tidy_graph(proto: Any) -> None:
    """Rewrite the exporter's graph into the one a reader (and every consumer) expects, computing the same:

    - a padded 1x1 convolution (Deep Compression's v1.0 conv10 has pad 1) becomes an explicit Pad and an unpadded
      Conv: OpenCV's DNN module mis-computes the padded 1x1 form (logits up to 5 apart from ONNX Runtime's);
    - the global pool and flatten, exported as ReduceMean over the last two axes and a Reshape to (-1, classes),
      become GlobalAveragePool and Flatten, the classifier tail of every CNN's ONNX file.
    """
    from onnx import helper, numpy_helper

    graph = proto.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}

    def value(name: str) -> np.ndarray | None:
        return numpy_helper.to_array(constants[name]) if name in constants else None

    nodes = []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = value(node.input[1]) if node.op_type == "Conv" else None
        if weight is not None and weight.shape[2:] == (1, 1) and any(attributes.get("pads", ())):
            top, left, bottom, right = attributes["pads"]
            pads = numpy_helper.from_array(np.array([0, 0, top, left, 0, 0, bottom, right], dtype=np.int64),
                                           f"{node.name or node.output[0]}_pads")
            graph.initializer.append(pads)
            padded = f"{node.input[0]}_padded"
            nodes.append(helper.make_node("Pad", [node.input[0], pads.name], [padded], mode="constant"))
            node.input[0] = padded
            for attribute in node.attribute:
                if attribute.name == "pads":
                    attribute.ints[:] = [0, 0, 0, 0]
        elif node.op_type == "ReduceMean" and len(node.input) == 2 and attributes.get("keepdims", 1) == 1 \
                and value(node.input[1]) is not None and sorted(value(node.input[1]).tolist()) in ([-2, -1], [2, 3]):
            node = helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        elif node.op_type == "Reshape" and nodes and nodes[-1].op_type == "GlobalAveragePool" \
                and node.input[0] == nodes[-1].output[0] and value(node.input[1]) is not None \
                and value(node.input[1]).tolist()[0] in (-1, 0) and len(value(node.input[1])) == 2:
            node = helper.make_node("Flatten", [node.input[0]], list(node.output), name=node.name, axis=1)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _set_onnx_metadata(proto: Any, metadata: dict[str, str]) -> None:
    kept = [(entry.key, entry.value) for entry in proto.metadata_props if entry.key not in metadata]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def export_onnx(model: nn.Module, path: str | Path, *, input_size: int | None = None,
                calibration: Sequence[np.ndarray] | None = None, opset: int = ONNX_OPSET,
                check: bool = True, atol: float = EXPORT_ATOL) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis, checked against PyTorch with ONNX Runtime.

    The graph maps ``input`` (N, C, S, S) float32 to ``logits`` (N, classes); S is
    ``input_size``, else the model's preprocessing crop, else 224. The spec and
    the preprocessing go into ``metadata_props`` as JSON. With ``calibration``
    (real preprocessed images, see ``calibration_inputs``) the file is int8,
    quantized by ONNX Runtime's own tools. Raises ExportError, leaving any file
    already at ``path`` untouched, when export fails or the outputs differ
    (float32: by more than ``atol``; int8: see ``check_int8``).
    """
    onnx = _require_onnx_export()
    path = Path(path)
    if opset < 17:
        raise ExportError(f"{path}: opset {opset} is too old; use 17 or later")
    size = input_size_of(model, input_size)
    proto = _onnx_proto(model, size, opset, str(path))
    with _atomic_output(path) as temporary:
        if calibration is None:
            onnx.save_model(proto, str(temporary))
            if check:
                check_outputs(onnxruntime_backend(temporary), model, size, f"{path} (ONNX Runtime)", atol)
            return path
        fp32 = temporary.with_name("fp32.onnx")
        onnx.save_model(proto, str(fp32))
        if check:
            check_outputs(onnxruntime_backend(fp32), model, size, f"{path} (ONNX Runtime, before int8)", atol)
        quantize_onnx(fp32, temporary, calibration)
        fp32.unlink()
        if check:
            check_int8(onnxruntime_backend(temporary), model, calibration, f"{path} (ONNX Runtime int8)")
    return path


def quantize_onnx(source: str | Path, path: str | Path, calibration: Sequence[np.ndarray]) -> Path:
    """int8 post-training static quantization of an ONNX file with ONNX Runtime's tools.

    QDQ format, weights signed int8 per output channel, activations unsigned
    int8 calibrated (MinMax) on ``calibration``. ``reduce_range`` keeps weights
    to 7 bits: without it, x86 CPUs lacking VNNI saturate int16 sums in the
    u8 x s8 kernels, which cost SqueezeNet v1.1 about 4 points top-1 here.
    The source's metadata is kept.
    """
    onnx = require("onnx", "ONNX int8 quantization")
    ortq = require("onnxruntime.quantization", "ONNX int8 quantization")

    source, path = Path(source), Path(path)
    if not calibration:
        raise DataError(f"{path}: int8 quantization needs calibration images")

    class Reader(ortq.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            ortq.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            ortq.quantize_static(
                str(prepared), str(path), Reader(), quant_format=ortq.QuantFormat.QDQ,
                per_channel=True, reduce_range=True, activation_type=ortq.QuantType.QUInt8,
                weight_type=ortq.QuantType.QInt8, calibrate_method=ortq.CalibrationMethod.MinMax,
            )
        except Exception as error:
            raise ExportError(f"{path}: ONNX Runtime quantization failed: {first_line(error)}") from None
    metadata = {entry.key: entry.value for entry in onnx.load_model(str(source)).metadata_props}
    quantized = onnx.load_model(str(path))
    _set_onnx_metadata(quantized, metadata)
    onnx.save_model(quantized, str(path))
    return path


def cached_onnx(model: nn.Module, input_size: int | None = None) -> Path:
    """An ONNX export of ``model``, made once and reused: keyed by a hash of its weights, spec, preprocessing and size.

    The onnxruntime and openvino backends convert a weights file on every run;
    the export takes seconds, the cache lookup milliseconds. The cache lives in
    the package's cache folder ($SQUEEZENET_CACHE, else ~/.cache/squeezenet), under exports/.
    """
    size = input_size_of(model, input_size)
    digest = hashlib.sha256(f"{torch.__version__}|{ONNX_OPSET}|{size}".encode())
    for key, value in sorted(_metadata(model, size).items()):
        digest.update(f"{key}={value}".encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    path = cache_dir() / "exports" / f"{digest.hexdigest()[:32]}.onnx"
    if not path.is_file():
        export_onnx(model, path, input_size=size)
    return path


# -- OpenVINO -------------------------------------------------------------------------------


def quantize_openvino(model: Any, calibration: Sequence[np.ndarray]) -> Any:
    """int8 post-training static quantization of an ov.Model with NNCF, its default preset.

    NNCF calibrates activations on ``calibration`` and applies its fast bias
    correction; on the sample images it stays within a point of float32.
    """
    nncf = require("nncf", "OpenVINO int8 quantization")
    if not calibration:
        raise DataError("int8 quantization needs calibration images")
    nncf.set_log_level(40)  # errors only: its progress bars would drown a CLI's output
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return nncf.quantize(model, nncf.Dataset(list(calibration)), subset_size=len(calibration))
    except Exception as error:
        raise ExportError(f"NNCF quantization failed: {first_line(error)}") from None


def export_openvino(model: nn.Module, path: str | Path, *, input_size: int | None = None,
                    calibration: Sequence[np.ndarray] | None = None, check: bool = True,
                    atol: float = EXPORT_ATOL) -> Path:
    """Write ``model`` as an OpenVINO IR (``path`` .xml plus a .bin beside it), checked against PyTorch.

    Converted from our ONNX export, weights kept float32 (OpenVINO's own default
    would halve them to fp16); with ``calibration`` quantized to int8 by NNCF.
    The spec and preprocessing go into the IR's rt_info. The check compiles
    with f32 forced, so it means the same on CPUs whose default is bf16.
    """
    ov = require("openvino", "OpenVINO export")
    path = Path(path)
    if path.suffix.lower() != ".xml":
        raise ExportError(f"{path}: an OpenVINO IR is written as NAME.xml (with NAME.bin beside it)")
    onnx = _require_onnx_export()
    if calibration is not None:
        require("nncf", "OpenVINO int8 quantization")
    size = input_size_of(model, input_size)
    proto = _onnx_proto(model, size, ONNX_OPSET, str(path))
    with tempfile.TemporaryDirectory() as scratch:
        onnx.save_model(proto, str(Path(scratch) / "model.onnx"))
        ov_model = ov.convert_model(str(Path(scratch) / "model.onnx"))
    if calibration is not None:
        ov_model = quantize_openvino(ov_model, calibration)
    for key, value in _metadata(model, size).items():
        ov_model.set_rt_info(value, [OPENVINO_SECTION, key])
    with _atomic_output(path, siblings=(".bin",)) as temporary:
        try:
            ov.save_model(ov_model, str(temporary), compress_to_fp16=False)
        except Exception as error:
            raise ExportError(f"{path}: OpenVINO cannot save the model ({first_line(error)})") from None
        if check:
            runner = openvino_backend(temporary, config=OPENVINO_F32)
            if calibration is None:
                check_outputs(runner, model, size, f"{path} (OpenVINO)", atol)
            else:
                check_int8(runner, model, calibration, f"{path} (OpenVINO int8)")
    return path


def export_device(model: nn.Module, path: str | Path, file_format: str, *, input_size: int | None = None,
                  calibration: Sequence[np.ndarray] | None = None, check: bool = True,
                  atol: float = EXPORT_ATOL) -> Path:
    """Write ``model`` for an on-device runtime ("executorch" .pte, "tflite", "ncnn" .param + .bin) with a JSON
    file beside it (graph.sidecar: spec, preprocessing, class names, input layout), then run the file in that
    runtime here and check it against PyTorch: float32 within ``atol`` times the logits' scale, int8 as
    ``check_int8``. A failed export or check leaves whatever was at ``path`` untouched."""
    import importlib

    from .graph import write_sidecar

    device = DEVICE_FORMATS[file_format]
    path = Path(path)
    if path.suffix.lower() != device.suffix:
        raise ExportError(f"{path}: a {file_format} file is written as NAME{device.suffix}")
    if calibration is not None and device.no_int8:
        raise ExportError(f"{path}: {device.no_int8}")
    module = importlib.import_module(f"{__package__}.{device.runtime}")
    size = input_size_of(model, input_size)
    with _atomic_output(path, siblings=device.siblings) as temporary:
        try:
            content = getattr(module, device.exporter)(model, temporary, size, calibration)
        except ExportError as error:  # the exporters say what failed; the file is the one asked for
            raise ExportError(f"{path}: {error}") from None
        write_sidecar(temporary, content)
        if check:
            runner = getattr(module, device.backend)(temporary)
            what = f"{path} ({runner.name}{' int8' if calibration is not None else ''})"
            if calibration is None:
                check_outputs(runner, model, size, what, atol, relative=True)
            else:
                check_int8(runner, model, calibration, what)
    return path


def export(model: nn.Module, path: str | Path, format: str = "onnx", *,
           calibration: Sequence[np.ndarray] | None = None, input_size: int | None = None) -> Path:
    """Any of FORMATS by name, float32 or (with ``calibration``) int8: the CLI's and ``sq.export``'s entry point."""
    _check_output(Path(path))
    if format == "onnx":
        return export_onnx(model, path, input_size=input_size, calibration=calibration)
    if format == "openvino":
        return export_openvino(model, path, input_size=input_size, calibration=calibration)
    if format in DEVICE_FORMATS:
        return export_device(model, path, format, input_size=input_size, calibration=calibration)
    raise ExportError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
