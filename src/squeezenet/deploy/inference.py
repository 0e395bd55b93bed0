"""What predict and evaluate run: a weights file or an exported graph, as a Classifier on the chosen backend.

"pytorch" (the default) runs the loaded SqueezeNet itself and exports
nothing. "onnxruntime" and "openvino" on a weights file export it once to
ONNX through the cache (``cached_onnx``); on an exported .onnx/.xml file they
run the file, which brings its spec and preprocessing. OpenVINO runs with f32
forced, so a float32 backend is float32 on every CPU.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import SqueezeNetError, WeightsError
from ..extras import require
from ..model import ModelMeta
from ..preprocess import Preprocessing, get_preprocessing
from ..spec import Spec
from .backends import (
    BACKENDS,
    OPENVINO_F32,
    Backend,
    Classifier,
    available,
    fastest_backend,
    onnxruntime_backend,
    openvino_backend,
    torch_backend,
)
from .export import DEVICE_FORMATS, cached_onnx

DEVICE_FILES = {device.suffix: (name, device) for name, device in DEVICE_FORMATS.items()}
# --backend; auto: the fastest installed. The on-device runtimes run only their own files, which choose them anyway.
BACKEND_CHOICES = ("pytorch", "onnxruntime", "openvino", "auto", *(d.runtime for d in DEVICE_FORMATS.values()))
EXPORTED = (".onnx", ".xml", *DEVICE_FILES)


def _known(name: str) -> str:
    name = fastest_backend() if name == "auto" else name
    for file_format, device in DEVICE_FORMATS.items():
        if name == device.runtime:
            raise SqueezeNetError(f"backend {name!r} runs {device.suffix} files: write one with `squeezenet export "
                                  f"--format {file_format}` and pass it as --weights")
    if name not in BACKENDS:
        raise SqueezeNetError(f"unknown backend {name!r}; known: {', '.join(BACKEND_CHOICES)}")
    return name


def make_backend(name: str, model: nn.Module, *, input_size: int | None = None) -> Backend:
    """A float32 backend ("pytorch", "onnxruntime", "openvino" or "auto" = the fastest installed) for ``model``.

    The ONNX runtimes run ``cached_onnx(model)``; the backend keeps the model's
    class names, with the recipe the exported graph was fitted to.
    """
    name = _known(name)
    if name == "pytorch":
        return torch_backend(model, input_size=input_size)
    require(name, f"the {name} backend")  # before the export, so the message names the runtime asked for
    onnx_path = cached_onnx(model, input_size)
    runner = onnxruntime_backend(onnx_path) if name == "onnxruntime" else openvino_backend(onnx_path,
                                                                                           config=OPENVINO_F32)
    meta = getattr(model, "meta", None)
    if isinstance(meta, ModelMeta):
        fitted = runner.meta.preprocessing if runner.meta is not None else meta.preprocessing
        runner.meta = meta.replace(preprocessing=fitted)
    return runner


def open_exported(path: str | Path, backend: str = "auto") -> Backend:
    """A backend running an exported file: .onnx or .xml ("auto": OpenVINO for .xml, else the fastest
    installed; OpenVINO runs with f32 forced, an int8 file keeping its int8 layers), or an on-device file in its
    own runtime (.pte: ExecuTorch, .tflite: LiteRT, .param: ncnn), its facts read from the JSON beside it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DEVICE_FILES:
        import importlib

        _, device = DEVICE_FILES[suffix]
        if backend not in ("auto", "pytorch", device.runtime):
            raise SqueezeNetError(f"{path}: a {suffix} file runs on its own runtime ({device.runtime}), "
                                  f"not {backend!r}")
        return getattr(importlib.import_module(f"{__package__}.{device.runtime}"), device.backend)(path)
    if suffix not in (".onnx", ".xml"):
        raise WeightsError(f"{path}: not an exported model (expected .onnx, OpenVINO .xml, .pte, .tflite or "
                           "ncnn .param)")
    if backend == "auto":
        backend = "openvino" if suffix == ".xml" or available("openvino") else "onnxruntime"
    if backend == "onnxruntime" and suffix == ".onnx":
        return onnxruntime_backend(path)
    if backend == "openvino":
        return openvino_backend(path, config=OPENVINO_F32)
    raise SqueezeNetError(f"{path}: an exported {suffix} file cannot run on backend {backend!r}"
                          f" (use {'openvino' if suffix == '.xml' else 'onnxruntime or openvino'})")


def inference_model(weights: str | Path, backend: str = "pytorch", *, arch: str | Spec | None = None,
                    preprocess: str | Preprocessing | None = None) -> Classifier:
    """A weights file, pretrained name or exported .onnx/.xml as the Classifier that predict and evaluate take.

    Weights files load with ``weights.io.load``; "pytorch" returns that model
    itself. Exported files bring their spec and preprocessing from their
    metadata. ``preprocess`` overrides the recipe either way.
    """
    from ..weights.io import load
    from ..weights.registry import resolve

    path = resolve(weights)
    if path.suffix.lower() not in EXPORTED:
        model = load(path, arch=arch, preprocess=preprocess)
        chosen = _known(backend)
        return model if chosen == "pytorch" else make_backend(chosen, model)
    if backend == "pytorch" and path.suffix.lower() in (".onnx", ".xml"):
        raise SqueezeNetError(f"{path}: an exported model cannot run on backend 'pytorch'; "
                              "pass the weights file, or --backend onnxruntime/openvino")
    runner = open_exported(path, backend)
    if runner.meta is None:
        raise WeightsError(f"{path}: has no squeezenet metadata (spec); export it with `squeezenet export`")
    if preprocess is not None:
        runner.meta = runner.meta.replace(preprocessing=get_preprocessing(preprocess))
    return runner
