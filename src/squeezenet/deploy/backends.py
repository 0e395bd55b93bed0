"""Runtime backends, and the one small protocol that predict and evaluate take.

A :class:`Classifier` is anything with ``meta`` (spec, preprocessing, class
names) that maps a preprocessed CPU float32 batch (N, C, H, W) to CPU logits
(N, classes). A SqueezeNet is one as it stands (evaluate runs it in eval
mode on its own device); every :class:`Backend` is one too. A backend wraps
a numpy function, so the benchmark times the runtime and not conversions:
called with a numpy array it returns one, called with a tensor a tensor.

The runtimes' packages are extras (``squeezenet[onnx]``, ``[openvino]``),
imported only inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, overload, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..errors import ExportError, InputSizeError, SqueezeNetError, WeightsError, one_line
from ..extras import require
from ..files import printable
from ..model import ModelMeta
from ..preprocess import Preprocessing
from ..spec import PRESETS, Spec

META_PREPROCESS = "squeezenet.preprocess"  # ONNX metadata_props keys (JSON values)
META_SPEC = "squeezenet.spec"
META_CLASSES = "squeezenet.class_names"  # a JSON list, one name per output
OPENVINO_SECTION = "squeezenet"  # OpenVINO rt_info section holding the same two keys
DEFAULT_INPUT_SIZE = 224
OPENVINO_F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # else OpenVINO runs bf16 on CPUs with AMX or AVX512-BF16
BACKENDS = ("openvino", "pytorch", "onnxruntime")  # for predict/evaluate, fastest first (see benchmark.py)
_RUNTIME_MODULES = {"openvino": "openvino", "nncf": "nncf", "onnxruntime": "onnxruntime", "pytorch": "torch"}


@runtime_checkable
class Classifier(Protocol):
    """What predict, evaluate and logits run: a CPU float32 batch (N, C, H, W) -> CPU logits (N, classes).

    ``meta`` says how to feed it and what its outputs are; it is None only for
    a graph exported by someone else, which predict and evaluate refuse.
    """

    @property
    def meta(self) -> ModelMeta | None: ...

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


def first_line(error: BaseException) -> str:
    """The first line of a runtime's error (the rest is advice), without colour codes, at most 300 characters."""
    lines = str(error).strip().splitlines()
    return one_line(RuntimeError(lines[0]) if lines else error, 300)


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what a runtime's C++ code prints straight to the process's stderr (file descriptor 2) while it
    loads a model: CPU probing notes that a CLI user cannot act on. Python's own errors still reach the caller."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(io.StringIO()):  # some print through Python
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def input_size_of(model: nn.Module, input_size: int | None) -> int:
    """The square side a graph runs at: asked for, else the preprocessing's output size, else 224."""
    if input_size is not None:
        if not isinstance(input_size, int) or input_size < 1:
            raise ExportError(f"input size must be a positive integer, got {input_size!r}")
        return input_size
    preprocess = getattr(model, "preprocess", None)
    size = preprocess.output_size if isinstance(preprocess, Preprocessing) else None
    return size[0] if size else DEFAULT_INPUT_SIZE


def in_channels_of(model: nn.Module) -> int:
    spec = getattr(model, "spec", None)
    return spec.in_channels if isinstance(spec, Spec) else 3


def _meta_of(model: nn.Module) -> ModelMeta | None:
    meta = getattr(model, "meta", None)
    return meta if isinstance(meta, ModelMeta) else None


@dataclass
class Backend:
    """One way to run the network: float32 (N, C, H, W) -> logits (N, classes), numpy or torch in and out.

    ``input_shape`` (C, H, W), when set, is checked so that a wrong-sized
    batch fails with one clear line instead of a runtime's stack trace.
    ``details`` records how it runs (precision, threads, hints) for reports;
    ``meta`` what it runs, from the model or the exported file's metadata.
    """

    name: str
    run: Callable[[np.ndarray], np.ndarray]
    input_shape: tuple[int, int, int] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    meta: ModelMeta | None = None

    @overload
    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

    @overload
    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        if isinstance(batch, torch.Tensor):
            return torch.from_numpy(np.asarray(self._checked_run(batch.detach().cpu().numpy())))
        return self._checked_run(batch)

    def _checked_run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.input_shape is not None and (batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape):
            expected = ", ".join(map(str, self.input_shape))
            raise InputSizeError(f"backend {self.name!r} takes batches of shape (N, {expected}), "
                                 f"got {tuple(batch.shape)}")
        return self.run(batch)


def available(runtime: str) -> bool:
    """Whether the package behind a backend ("openvino", "onnxruntime", "pytorch") is installed."""
    return importlib.util.find_spec(_RUNTIME_MODULES.get(runtime, runtime)) is not None


def fastest_backend() -> str:
    """The first of BACKENDS that is installed (the order the benchmark measured at batch 1, float32)."""
    return next(name for name in BACKENDS if available(name))


# -- reading exported files ---------------------------------------------------------------------


def read_onnx(path: Path) -> Any:
    """A checked onnx.ModelProto; WeightsError naming the file when it is missing or not a valid model."""
    onnx = require("onnx", "reading an ONNX file")
    if not path.is_file():
        raise WeightsError(f"{path}: no such model file")
    try:
        proto = onnx.load_model(str(path))
        onnx.checker.check_model(proto)
    except Exception as error:
        raise WeightsError(f"{path}: not a valid ONNX model ({first_line(error)})") from None
    if not proto.graph.node:
        raise WeightsError(f"{path}: not a valid ONNX model (its graph is empty)")
    return proto


def read_openvino(path: Path) -> Any:
    """An ov.Model from .xml (IR) or .onnx; WeightsError for anything else."""
    if path.suffix.lower() == ".onnx":
        read_onnx(path)  # a clear message for a broken file, rather than OpenVINO's
    return _read_with_openvino(path)


def _read_with_openvino(path: Path) -> Any:
    ov = require("openvino", "the openvino backend")
    if not path.is_file():
        raise WeightsError(f"{path}: no such model file")
    try:
        return ov.Core().read_model(str(path))
    except Exception as error:
        raise WeightsError(f"{path}: not a valid OpenVINO model ({first_line(error)})") from None


def _onnx_metadata(proto: Any) -> dict[str, str]:
    return {entry.key: entry.value for entry in proto.metadata_props}


def _openvino_metadata(ov_model: Any) -> dict[str, str]:
    return {key: ov_model.get_rt_info([OPENVINO_SECTION, key]).astype(str)
            for key in (META_SPEC, META_PREPROCESS, META_CLASSES) if ov_model.has_rt_info([OPENVINO_SECTION, key])}


def _parse_metadata(text: dict[str, str], where: object) -> tuple[Spec | None, Preprocessing | None]:
    try:
        spec = Spec.from_json(text[META_SPEC]) if META_SPEC in text else None
        preprocess = Preprocessing.from_json(text[META_PREPROCESS]) if META_PREPROCESS in text else None
    except SqueezeNetError as error:
        raise WeightsError(f"{where}: bad squeezenet metadata ({error})") from None
    return spec, preprocess


def _meta_from(text: dict[str, str], where: object) -> ModelMeta | None:
    """The ModelMeta an exported graph carries, or None without a spec."""
    spec, preprocess = _parse_metadata(text, where)
    if spec is None:
        return None
    try:
        names = json.loads(text[META_CLASSES]) if META_CLASSES in text else None
        return ModelMeta(spec, preprocess, tuple(names) if names is not None else None)
    except (ValueError, TypeError) as error:
        raise WeightsError(f"{where}: bad squeezenet class names ({one_line(error)})") from None


def read_metadata(path: str | Path) -> tuple[Spec | None, Preprocessing | None]:
    """The spec and preprocessing stored in an exported .onnx or .xml file (None where absent)."""
    path = Path(path)
    is_ir = path.suffix.lower() == ".xml"
    return _parse_metadata(_openvino_metadata(read_openvino(path)) if is_ir else _onnx_metadata(read_onnx(path)), path)


# -- the runtimes ----------------------------------------------------------------------------------


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

    size = input_size_of(model, input_size)
    details = {"runtime": "pytorch", "threads": torch.get_num_threads(), "channels_last": channels_last,
               "torch.compile": compile_model, "dtype": str(dtype).removeprefix("torch.")}
    return Backend(name, run, (in_channels_of(model), size, size), details, _meta_of(model))


def onnxruntime_backend(path: str | Path | bytes, name: str = "onnxruntime", threads: int | None = None) -> Backend:
    """An ONNX Runtime CPU session with all graph optimisations; ``threads`` None keeps ORT's default."""
    ort = require("onnxruntime", "the onnxruntime backend")
    meta = None
    if isinstance(path, (str, Path)):
        meta = _meta_from(_onnx_metadata(read_onnx(Path(path))), path)
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
        raise WeightsError(f"{where}: ONNX Runtime cannot load it ({first_line(error)})") from None
    where = "ONNX bytes" if isinstance(path, bytes) else str(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    check_classifier_io([(item.name, item.type == "tensor(float)", len(item.shape)) for item in inputs],
                        [(item.name, item.type == "tensor(float)", len(item.shape)) for item in outputs], where)
    graph_input = inputs[0]

    def run(batch: np.ndarray) -> np.ndarray:
        try:
            return session.run([outputs[0].name], {graph_input.name: batch})[0]
        except Exception as error:  # a graph that loads but fails on a real input (a reshape that cannot hold)
            raise WeightsError(f"{where}: ONNX Runtime failed to run the model ({first_line(error)})") from None

    details = {"runtime": "onnxruntime", "threads": threads or "default"}
    return Backend(name, run, _static_shape(graph_input.shape), details, meta)


def openvino_backend(model: Any, name: str = "openvino", config: dict[str, Any] | None = None) -> Backend:
    """An OpenVINO CPU compiled model from an ov.Model or a .xml/.onnx path; ``config`` holds CPU properties.

    With no config OpenVINO chooses everything: a latency hint, and bf16 on
    CPUs with AMX or AVX512-BF16, else f32 (``OPENVINO_F32`` forces f32).
    ``details`` records what it chose.
    """
    ov = require("openvino", "the openvino backend")
    meta, model_path = None, None
    if isinstance(model, (str, Path)):
        path = model_path = Path(model)
        if path.suffix.lower() == ".onnx":  # OpenVINO does not carry ONNX metadata_props over: read them here
            meta = _meta_from(_onnx_metadata(read_onnx(path)), path)
        model = _read_with_openvino(path)
        if meta is None:
            meta = _meta_from(_openvino_metadata(model), path)
    elif hasattr(model, "has_rt_info"):
        meta = _meta_from(_openvino_metadata(model), "the OpenVINO model")
    try:
        compiled = ov.Core().compile_model(model, "CPU", dict(config or {}))
    except Exception as error:
        raise WeightsError(f"OpenVINO cannot compile the model ({first_line(error)})") from None
    where = str(model_path) if model_path is not None else "the OpenVINO model"
    check_classifier_io(_ports(compiled.inputs, ov.Type.f32), _ports(compiled.outputs, ov.Type.f32), where)
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        try:
            return request.infer({0: batch}, share_inputs=True)[0].copy()
        except Exception as error:
            raise WeightsError(f"{where}: OpenVINO failed to run the model ({first_line(error)})") from None

    details: dict[str, Any] = {"runtime": "openvino", "config": {k: str(v) for k, v in (config or {}).items()}}
    for key in ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS"):
        with contextlib.suppress(Exception):
            value = compiled.get_property(key)
            details[key.lower()] = value.to_string() if hasattr(value, "to_string") else str(value)
    shape = compiled.input(0).get_partial_shape()
    dims = [dim.get_length() if dim.is_static else None for dim in shape]
    return Backend(name, run, _static_shape(dims), details, meta)


def _ports(ports: Sequence[Any], f32: Any) -> list[tuple[str, bool, int]]:
    """OpenVINO's inputs or outputs as check_classifier_io takes them (a dynamic rank counts as -1)."""
    described = []
    for port in ports:
        names = port.get_names()
        rank = port.get_partial_shape().rank
        described.append((next(iter(names), "?"), port.get_element_type() == f32,
                          rank.get_length() if rank.is_static else -1))
    return described


def check_classifier_io(inputs: Sequence[tuple[str, bool, int]], outputs: Sequence[tuple[str, bool, int]],
                        where: str) -> None:
    """A model file that is an image classifier: one float32 input of rank 4 (N, C, H, W) and a first output of
    float32 logits of rank 2 (N, classes). Each entry is (name, is float32, rank). Checked when the file is opened,
    so a foreign model (two inputs, token ids, a 1-D output) is refused in one line, not at the first image."""
    if len(inputs) != 1:
        names = ", ".join(printable(name) for name, _, _ in inputs)
        raise WeightsError(f"{where}: not an image classifier: {len(inputs)} inputs ({names}), where a SqueezeNet "
                           "has one image batch")
    name, is_float, rank = inputs[0]
    if not is_float or rank != 4:
        raise WeightsError(f"{where}: not an image classifier: input {printable(name)!r} is "
                           f"{'float32' if is_float else 'not float32'} of rank {rank}, not a float32 (N, C, H, W) "
                           "batch")
    if not outputs:
        raise WeightsError(f"{where}: not an image classifier: the model has no output")
    name, is_float, rank = outputs[0]
    if not is_float or rank != 2:
        raise WeightsError(f"{where}: not an image classifier: output {printable(name)!r} is "
                           f"{'float32' if is_float else 'not float32'} of rank {rank}, not float32 logits "
                           "(N, classes)")


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

    from ..weights.torchvision import to_torchvision

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
    return Backend(name, run, None, details, _meta_of(model) if same else None)
