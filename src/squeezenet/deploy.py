"""Fast CPU inference: export to ONNX and OpenVINO IR, int8 quantization, and runtime backends.

Every exported file is checked against PyTorch when it is written (a wrong
export is worse than none): float32 exports must match within 1e-4, int8 ones
within a bounded relative error on real calibration images. Each file carries
the spec and the preprocessing in its metadata, so the file alone is enough to
classify an image.

Runtimes sit behind one small interface, :class:`Backend`: a callable from a
preprocessed float32 batch (N, C, H, W) to logits (N, classes), with a name and
the facts of how it runs. ``make_backend(name, model)`` builds one from a
PyTorch model; ``open_exported(path)`` runs an exported file; ``inference_model``
dresses either as the ``nn.Module`` that ``evaluate.predict`` and ``evaluate.evaluate`` take.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import cache_dir
from .errors import DataError, ExportError, InputSizeError, SqueezeNetError, WeightsError
from .model import ModelMeta
from .preprocess import Preprocessing, get_preprocessing
from .spec import PRESETS, Spec

ONNX_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
META_PREPROCESS = "squeezenet.preprocess"  # ONNX metadata_props keys (JSON values)
META_SPEC = "squeezenet.spec"
OPENVINO_SECTION = "squeezenet"  # OpenVINO rt_info section holding the same two keys
DEFAULT_INPUT_SIZE = 224
EXPORT_ATOL = 1e-4
INT8_MAX_RELATIVE_ERROR = 0.3  # int8 logits vs PyTorch's, relative to the logits' own spread
INT8_CHECK_IMAGES = 16
OPENVINO_F32 = {"INFERENCE_PRECISION_HINT": "f32"}
FORMATS = ("onnx", "openvino")
BACKENDS = ("openvino", "pytorch", "onnxruntime")  # for predict/evaluate, fastest first (see benchmark.py)
_RUNTIME_MODULES = {"openvino": "openvino", "nncf": "nncf", "onnxruntime": "onnxruntime", "pytorch": "torch"}


def _first_line(error: BaseException) -> str:
    """The error's first line, without terminal colour codes, at most 300 characters."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception: torch.onnx wraps the real reason in pages of advice."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


# -- inputs, reference outputs and checks ------------------------------------------------


def _input_size(model: nn.Module, input_size: int | None) -> int:
    """The square side a graph is exported at: asked for, else the preprocessing's output size, else 224."""
    if input_size is not None:
        if not isinstance(input_size, int) or input_size < 1:
            raise ExportError(f"input size must be a positive integer, got {input_size!r}")
        return input_size
    preprocess = getattr(model, "preprocess", None)
    size = preprocess.output_size if isinstance(preprocess, Preprocessing) else None
    return size[0] if size else DEFAULT_INPUT_SIZE


def _in_channels(model: nn.Module) -> int:
    spec = getattr(model, "spec", None)
    return spec.in_channels if isinstance(spec, Spec) else 3


def example_batch(model: nn.Module, batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Random images pushed through the model's own preprocessing: inputs in the range it really sees.

    Plain N(0, 1) noise would understate the error of a Caffe-style model whose
    inputs span -123..152, so export checks and benchmarks feed these.
    """
    from PIL import Image

    generator = np.random.default_rng(seed)
    preprocess = getattr(model, "preprocess", None)
    if not isinstance(preprocess, Preprocessing):
        return generator.standard_normal((batch, _in_channels(model), size, size), dtype=np.float32)
    recipe = preprocess.replace(resize=size, resize_mode="squash", crop=None)
    pixels = generator.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    return np.stack([recipe(Image.fromarray(image)).numpy() for image in pixels])


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
                          f"{_first_line(error)}") from None


def check_outputs(run: Callable[[np.ndarray], np.ndarray], model: nn.Module, size: int, what: str,
                  atol: float = EXPORT_ATOL, batches: Sequence[int] = (1, 3)) -> float:
    """Raise ExportError unless ``run`` and PyTorch agree within ``atol`` on realistic inputs.

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
        if not difference <= atol:
            raise ExportError(f"{what}: outputs differ from PyTorch's by {difference:.3g} "
                              f"(allowed {atol:g}) at batch {batch}")
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


def image_files(directory: str | Path) -> list[Path]:
    """Every image file under ``directory`` (recursively, sorted); DataError when there is none."""
    from .data import IMAGE_EXTENSIONS

    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: image folder not found")
    files = sorted(path for path in directory.rglob("*")
                   if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file())
    if not files:
        raise DataError(f"{directory}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def preprocessed(paths: Sequence[str | Path], preprocess: Preprocessing) -> np.ndarray:
    """Images as one float32 batch (N, C, H, W), each read with data.open_image (any mode becomes RGB)."""
    from .data import open_image

    if preprocess.output_size is None:
        raise DataError(f"preprocessing {preprocess.name!r} gives images of varying size; it needs a crop")
    return np.stack([preprocess(open_image(path)).numpy() for path in paths])


def calibration_inputs(directory: str | Path, preprocess: Preprocessing, limit: int = 100,
                       input_size: int | None = None) -> list[np.ndarray]:
    """Up to ``limit`` real images from ``directory`` as a list of (1, C, S, S) arrays for int8 calibration.

    ``input_size`` re-crops to another square side (the benchmark runs at 224
    a model whose recipe crops 227). The first ``limit`` files in sorted order
    are taken, so a calibration set is reproducible.
    """
    if limit < 1:
        raise DataError(f"calibration needs at least one image, got limit={limit}")
    recipe = preprocess.replace(crop=input_size) if input_size is not None else preprocess
    batch = preprocessed(image_files(directory)[:limit], recipe)
    return [batch[i : i + 1] for i in range(len(batch))]


# -- ONNX ---------------------------------------------------------------------------------


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
    return metadata


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
        raise ExportError(f"{where}: ONNX export failed: {type(cause).__name__}: {_first_line(cause)}") from None
    _set_onnx_metadata(proto, _metadata(model, size))
    proto.producer_name = "squeezenet"
    return proto


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
    import onnx

    path = Path(path)
    if opset < 17:
        raise ExportError(f"{path}: opset {opset} is too old; use 17 or later")
    size = _input_size(model, input_size)
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
    import onnx
    from onnxruntime import quantization as ortq

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
            raise ExportError(f"{path}: ONNX Runtime quantization failed: {_first_line(error)}") from None
    metadata = {entry.key: entry.value for entry in onnx.load_model(str(source)).metadata_props}
    quantized = onnx.load_model(str(path))
    _set_onnx_metadata(quantized, metadata)
    onnx.save_model(quantized, str(path))
    return path


def _read_onnx(path: Path) -> Any:
    import onnx

    if not path.is_file():
        raise WeightsError(f"{path}: no such model file")
    try:
        proto = onnx.load_model(str(path))
        onnx.checker.check_model(proto)
    except Exception as error:
        raise WeightsError(f"{path}: not a valid ONNX model ({_first_line(error)})") from None
    if not proto.graph.node:
        raise WeightsError(f"{path}: not a valid ONNX model (its graph is empty)")
    return proto


# -- OpenVINO -------------------------------------------------------------------------------


def _read_openvino(path: Path) -> Any:
    """An ov.Model from .xml (IR) or .onnx; WeightsError for anything else."""
    import openvino as ov

    if not path.is_file():
        raise WeightsError(f"{path}: no such model file")
    if path.suffix.lower() == ".onnx":
        _read_onnx(path)  # a clear message for a broken file, rather than OpenVINO's
    try:
        return ov.Core().read_model(str(path))
    except Exception as error:
        raise WeightsError(f"{path}: not a valid OpenVINO model ({_first_line(error)})") from None


def quantize_openvino(model: Any, calibration: Sequence[np.ndarray]) -> Any:
    """int8 post-training static quantization of an ov.Model with NNCF, its default preset.

    NNCF calibrates activations on ``calibration`` and applies its fast bias
    correction; on the sample images it stays within a point of float32.
    """
    _require("nncf")
    import nncf

    if not calibration:
        raise DataError("int8 quantization needs calibration images")
    nncf.set_log_level(40)  # errors only: its progress bars would drown a CLI's output
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return nncf.quantize(model, nncf.Dataset(list(calibration)), subset_size=len(calibration))
    except Exception as error:
        raise ExportError(f"NNCF quantization failed: {_first_line(error)}") from None


def export_openvino(model: nn.Module, path: str | Path, *, input_size: int | None = None,
                    calibration: Sequence[np.ndarray] | None = None, check: bool = True,
                    atol: float = EXPORT_ATOL) -> Path:
    """Write ``model`` as an OpenVINO IR (``path`` .xml plus a .bin beside it), checked against PyTorch.

    Converted from our ONNX export, weights kept float32 (OpenVINO's own default
    would halve them to fp16); with ``calibration`` quantized to int8 by NNCF.
    The spec and preprocessing go into the IR's rt_info. The check compiles
    with f32 forced, so it means the same on CPUs whose default is bf16.
    """
    import openvino as ov

    path = Path(path)
    if path.suffix.lower() != ".xml":
        raise ExportError(f"{path}: an OpenVINO IR is written as NAME.xml (with NAME.bin beside it)")
    size = _input_size(model, input_size)
    import onnx

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
            raise ExportError(f"{path}: OpenVINO cannot save the model ({_first_line(error)})") from None
        if check:
            runner = openvino_backend(temporary, config=OPENVINO_F32)
            if calibration is None:
                check_outputs(runner, model, size, f"{path} (OpenVINO)", atol)
            else:
                check_int8(runner, model, calibration, f"{path} (OpenVINO int8)")
    return path


def export(model: nn.Module, path: str | Path, file_format: str = "onnx", *,
           calibration: Sequence[np.ndarray] | None = None, input_size: int | None = None) -> Path:
    """``export_onnx`` or ``export_openvino`` by name ("onnx" or "openvino"): the CLI's entry point."""
    if file_format == "onnx":
        return export_onnx(model, path, input_size=input_size, calibration=calibration)
    if file_format == "openvino":
        _require("openvino")
        return export_openvino(model, path, input_size=input_size, calibration=calibration)
    raise ExportError(f"unknown export format {file_format!r}; known: {', '.join(FORMATS)}")


def read_metadata(path: str | Path) -> tuple[Spec | None, Preprocessing | None]:
    """The spec and preprocessing stored in an exported .onnx or .xml file (None where absent)."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        _require("openvino")
        ov_model = _read_openvino(path)
        text = {key: ov_model.get_rt_info([OPENVINO_SECTION, key]).astype(str)
                for key in (META_SPEC, META_PREPROCESS) if ov_model.has_rt_info([OPENVINO_SECTION, key])}
    else:
        text = {entry.key: entry.value for entry in _read_onnx(path).metadata_props}
    try:
        spec = Spec.from_json(text[META_SPEC]) if META_SPEC in text else None
        preprocess = Preprocessing.from_json(text[META_PREPROCESS]) if META_PREPROCESS in text else None
    except SqueezeNetError as error:
        raise WeightsError(f"{path}: bad squeezenet metadata ({error})") from None
    return spec, preprocess


# -- runtime backends -----------------------------------------------------------------------


@dataclass
class Backend:
    """One way to run the network: ``backend(batch)`` maps float32 (N, C, H, W) to logits (N, classes).

    ``input_shape`` (C, H, W), when set, is checked so that a wrong-sized
    batch fails with one clear line instead of a runtime's stack trace.
    ``details`` records how it runs (precision, threads, hints) for reports.
    """

    name: str
    run: Callable[[np.ndarray], np.ndarray]
    input_shape: tuple[int, int, int] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.input_shape is not None and (batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape):
            expected = ", ".join(map(str, self.input_shape))
            raise InputSizeError(f"backend {self.name!r} takes batches of shape (N, {expected}), "
                                 f"got {tuple(batch.shape)}")
        return self.run(batch)


def available(runtime: str) -> bool:
    """Whether the package behind a backend ("openvino", "onnxruntime", "pytorch") is installed."""
    return importlib.util.find_spec(_RUNTIME_MODULES.get(runtime, runtime)) is not None


def _require(runtime: str) -> None:
    if not available(runtime):
        extra = " (pip install 'squeezenet[openvino]')" if runtime in ("openvino", "nncf") else ""
        raise SqueezeNetError(f"the {_RUNTIME_MODULES[runtime]} package is not installed{extra}")


def fastest_backend() -> str:
    """The first of BACKENDS that is installed (the order the benchmark measured at batch 1, float32)."""
    return next(name for name in BACKENDS if available(name))


def torch_backend(model: nn.Module, name: str = "pytorch", *, channels_last: bool = True,
                  compile_model: bool = False, dtype: torch.dtype = torch.float32,
                  input_size: int | None = None) -> Backend:
    """Our PyTorch path: a private eval-mode copy in channels_last, run under inference_mode.

    channels_last lets oneDNN pick its blocked convolution kernels (about 2x
    at batch 1 on this CPU); ``compile_model`` adds torch.compile (inductor),
    which costs tens of seconds up front. ``dtype=torch.bfloat16`` runs
    weights and activations in bf16: the numerics of bf16 inference, on any
    CPU (slowly where the CPU has no bf16 instructions).
    """
    runner: nn.Module = copy.deepcopy(model).eval().to(dtype)
    if channels_last:
        runner = runner.to(memory_format=torch.channels_last)
    if compile_model:
        runner = torch.compile(runner)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            inputs = torch.from_numpy(batch).to(dtype).contiguous(memory_format=memory_format)
            return runner(inputs).float().numpy()

    size = _input_size(model, input_size)
    details = {"runtime": "pytorch", "threads": torch.get_num_threads(), "channels_last": channels_last,
               "torch.compile": compile_model, "dtype": str(dtype).removeprefix("torch.")}
    return Backend(name, run, (_in_channels(model), size, size), details)


def onnxruntime_backend(path: str | Path | bytes, name: str = "onnxruntime", threads: int | None = None) -> Backend:
    """An ONNX Runtime CPU session with all graph optimisations; ``threads`` None keeps ORT's default."""
    _require("onnxruntime")
    import onnxruntime as ort

    if isinstance(path, (str, Path)):
        _read_onnx(Path(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    source = path if isinstance(path, bytes) else str(path)
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as error:
        where = "ONNX bytes" if isinstance(path, bytes) else str(path)
        raise WeightsError(f"{where}: ONNX Runtime cannot load it ({_first_line(error)})") from None
    graph_input = session.get_inputs()[0]

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {graph_input.name: batch})[0]

    details = {"runtime": "onnxruntime", "threads": threads or "default"}
    return Backend(name, run, _static_shape(graph_input.shape), details)


def openvino_backend(model: Any, name: str = "openvino", config: dict[str, Any] | None = None) -> Backend:
    """An OpenVINO CPU compiled model from an ov.Model or a .xml/.onnx path; ``config`` holds CPU properties.

    With no config OpenVINO chooses everything: a latency hint, and bf16 on
    CPUs with AMX or AVX512-BF16, else f32. ``details`` records what it chose.
    """
    _require("openvino")
    import openvino as ov

    if isinstance(model, (str, Path)):
        model = _read_openvino(Path(model))
    try:
        compiled = ov.Core().compile_model(model, "CPU", dict(config or {}))
    except Exception as error:
        raise WeightsError(f"OpenVINO cannot compile the model ({_first_line(error)})") from None
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        return request.infer({0: batch}, share_inputs=True)[0].copy()

    details: dict[str, Any] = {"runtime": "openvino", "config": {k: str(v) for k, v in (config or {}).items()}}
    for key in ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS"):
        with contextlib.suppress(Exception):
            value = compiled.get_property(key)
            details[key.lower()] = value.to_string() if hasattr(value, "to_string") else str(value)
    shape = compiled.input(0).get_partial_shape()
    dims = [dim.get_length() if dim.is_static else None for dim in shape]
    return Backend(name, run, _static_shape(dims), details)


def _static_shape(shape: Sequence[Any]) -> tuple[int, int, int] | None:
    """(C, H, W) from a graph input shape when those three are fixed numbers."""
    if len(shape) != 4 or not all(isinstance(dim, int) for dim in shape[1:]):
        return None
    return (int(shape[1]), int(shape[2]), int(shape[3]))


def torchvision_backend(model: nn.Module, name: str = "torchvision-eager") -> Backend:
    """torchvision's own SqueezeNet class holding the same weights, run as its documentation shows.

    Eager, NCHW, under ``torch.no_grad``: the baseline every other backend is
    compared with. Only for the 1_0 and 1_1 layouts (torchvision has no
    others); a spec that differs elsewhere, such as the Deep Compression
    file's conv10 padding, is noted in ``details`` (same cost, other outputs).
    """
    import torchvision

    from .weights.torchvision import to_torchvision

    spec = getattr(model, "spec", None)
    builders = {"1_0": torchvision.models.squeezenet1_0, "1_1": torchvision.models.squeezenet1_1}
    arch = next((name for name in builders if isinstance(spec, Spec) and
                 spec.fire_modules() == PRESETS[name].fire_modules() and spec.pool_after == PRESETS[name].pool_after
                 and spec.conv1_filters == PRESETS[name].conv1_filters), None)
    if arch is None:
        raise SqueezeNetError("torchvision has a class only for the 1_0 and 1_1 architectures")
    baseline = builders[arch](num_classes=spec.num_classes).eval()
    baseline.load_state_dict(to_torchvision(model))

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return baseline(torch.from_numpy(batch)).numpy()

    same = spec.conv10_padding == PRESETS[arch].conv10_padding
    details = {"runtime": "pytorch", "threads": torch.get_num_threads(), "torchvision_class": f"squeezenet{arch}",
               "same_outputs_as_ours": same}
    return Backend(name, run, None, details)


# -- backends for predict and evaluate -------------------------------------------------------


def cached_onnx(model: nn.Module, input_size: int | None = None) -> Path:
    """An ONNX export of ``model``, made once and reused: keyed by a hash of its weights, spec, preprocessing and size.

    predict and evaluate convert a weights file on every run; the export takes
    seconds, the cache lookup milliseconds. The cache lives in the package's
    cache folder ($SQUEEZENET_CACHE, else ~/.cache/squeezenet), under exports/.
    """
    size = _input_size(model, input_size)
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


def make_backend(name: str, model: nn.Module, *, input_size: int | None = None) -> Backend:
    """A float32 backend ("openvino", "pytorch", "onnxruntime" or "auto" = the fastest installed) for ``model``."""
    name = fastest_backend() if name == "auto" else name
    if name not in BACKENDS:
        raise SqueezeNetError(f"unknown backend {name!r}; known: auto, {', '.join(BACKENDS)}")
    _require(name)
    if name == "pytorch":
        return torch_backend(model, input_size=input_size)
    onnx_path = cached_onnx(model, input_size)
    if name == "onnxruntime":
        return onnxruntime_backend(onnx_path)
    return openvino_backend(onnx_path)


def open_exported(path: str | Path, backend: str = "auto") -> Backend:
    """A backend running an exported .onnx or .xml file ("auto": OpenVINO for .xml, else the fastest installed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".onnx", ".xml"):
        raise WeightsError(f"{path}: not an exported model (expected .onnx or OpenVINO .xml)")
    if backend == "auto":
        backend = "openvino" if suffix == ".xml" or available("openvino") else "onnxruntime"
    if backend == "onnxruntime" and suffix == ".onnx":
        return onnxruntime_backend(path)
    if backend == "openvino":
        _require("openvino")
        return openvino_backend(path)
    raise SqueezeNetError(f"{path}: an exported {suffix} file cannot run on backend {backend!r}"
                          f" (use {'openvino' if suffix == '.xml' else 'onnxruntime or openvino'})")


class BackendModel(nn.Module):
    """A Backend dressed as the nn.Module that ``evaluate.predict`` and ``evaluate.evaluate`` take.

    It carries ``spec``, ``preprocess`` and ``class_names`` like a loaded
    model; forward hands the batch to the backend. The empty ``anchor``
    parameter only tells callers which device inputs belong on (the CPU).
    """

    def __init__(self, backend: Backend, spec: Spec, preprocess: Preprocessing | None,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.meta = ModelMeta(spec, preprocess, tuple(class_names) if class_names is not None else None)
        self.spec = spec
        self.preprocess = preprocess
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.backend(batch.detach().cpu().numpy()))


def inference_model(weights: str | Path, backend: str = "auto", *, arch: str | Spec | None = None,
                    preprocess: str | Preprocessing | None = None) -> nn.Module:
    """What predict and evaluate run: a weights file or an exported .onnx/.xml, on the chosen backend.

    Weights files load with ``weights.io.load`` ("pytorch" returns that model
    itself); exported files bring their spec and preprocessing from their
    metadata. ``preprocess`` overrides the recipe either way.
    """
    from .weights.io import load
    from .weights.registry import resolve

    path = resolve(weights)
    if path.suffix.lower() in (".onnx", ".xml"):
        if backend == "pytorch":
            raise SqueezeNetError(f"{path}: an exported model cannot run on backend 'pytorch'; "
                                  "pass the weights file, or --backend onnxruntime/openvino")
        spec, recipe = read_metadata(path)
        if spec is None:
            raise WeightsError(f"{path}: has no squeezenet metadata (spec); export it with `squeezenet export`")
        runner = open_exported(path, backend)
        return BackendModel(runner, spec, get_preprocessing(preprocess) if preprocess is not None else recipe)
    model = load(path, arch=arch, preprocess=preprocess)
    chosen = fastest_backend() if backend == "auto" else backend
    if chosen == "pytorch":
        return model
    runner = make_backend(chosen, model)
    return BackendModel(runner, model.spec, model.preprocess, model.meta.class_names)
