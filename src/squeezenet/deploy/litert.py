"""LiteRT (TFLite): a .tflite flatbuffer for Android, iOS and microcontrollers, converted by litert-torch.

The input is NHWC (what a device's camera or bitmap buffer holds, and what LiteRT's delegates expect); the
sidecar says so. TFLite's max-pool has no round-up mode, so each of SqueezeNet's round-up pools is exported as an
explicit -inf pad and a plain pool (graph.deployable), which give the same map. int8 is post-training static
quantization with litert-torch's PT2E quantizer (symmetric, per-channel weights), calibrated on real images. The
runtime that checks the file here is the LiteRT interpreter of ``ai-edge-litert``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ExportError, WeightsError
from ..extras import require
from .backends import Backend, first_line, quiet_native_output
from .graph import deployable, device_file, sidecar
from .pt2e import quantize_calibrated, with_float_head


def export_tflite(model: nn.Module, path: Path, size: int,
                  calibration: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Write ``model`` as a .tflite file with an NHWC input at ``path`` (unchecked: export.export_device checks
    it); returns the sidecar content, the file's int8 scales included."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the converter's C++ logging, before it loads
    with quiet_native_output():  # TensorFlow's and absl's start-up notes
        litert_torch = require("litert_torch", "LiteRT export")
    runner = litert_torch.to_channel_last_io(deployable(model, size, explicit_pool_padding=True), args=[0])
    example = (torch.zeros(1, size, size, 3),)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_loggers():
            warnings.simplefilter("ignore")
            if calibration is None:
                edge = litert_torch.convert(runner.eval(), example)
            else:
                edge = _quantized(litert_torch, runner, example, calibration)
            edge.export(str(path))
    except Exception as error:
        raise ExportError(f"LiteRT export failed: {type(error).__name__}: {first_line(error)}") from None
    precision = "int8" if calibration is not None else "float32"
    content = sidecar(model, size, "tflite", precision, layout="NHWC")
    for key, tensor in io_details(path).items():  # an int8 tensor at either end: its scale goes beside it
        content[key].update(tensor)
    return content


def _quantized(litert_torch, runner: nn.Module, example: tuple[torch.Tensor], calibration: Sequence[np.ndarray]):
    from litert_torch.quantize import pt2e_quantizer, quant_config

    # 8-bit weights and a float pooling head, as for ExecuTorch (pt2e explains the head; docs/deployment.md has
    # the measurements).
    quantizer = with_float_head(pt2e_quantizer.PT2EQuantizer)().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    graph = torch.export.export(runner.eval(), example).module()
    converted = quantize_calibrated(graph, quantizer, calibration, layout=lambda batch: batch.transpose(0, 2, 3, 1),
                                    fold_quantize=False)
    return litert_torch.convert(converted, example, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))


@contextlib.contextmanager
def _quiet_loggers():
    """absl and TensorFlow log every conversion pass at INFO; keep a CLI's output to what it says itself."""
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow", "litert_torch", "jax", "")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    """A float32 array as the tensor's type: itself, or q = round(x / scale) + zero_point for an int8 input."""
    kind = np.dtype(tensor["dtype"])
    if kind == np.float32:
        return np.ascontiguousarray(values, dtype=np.float32)
    scale, zero_point = tensor["quantization"]
    limits = np.iinfo(kind)
    return np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(kind)


def dequantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    if np.dtype(tensor["dtype"]) == np.float32:
        return values.astype(np.float32)
    scale, zero_point = tensor["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def io_details(path: Path) -> dict:
    """The dtype and quantization (scale, zero point) of the file's input and output: what an app converts with."""
    interpreter_module = require("ai_edge_litert.interpreter", "LiteRT export")
    with quiet_native_output():
        interpreter = interpreter_module.Interpreter(model_path=str(path))
    details = {}
    for key, tensor in (("input", interpreter.get_input_details()[0]), ("output", interpreter.get_output_details()[0])):
        scale, zero_point = tensor["quantization"]
        details[key] = {"dtype": np.dtype(tensor["dtype"]).name,
                        **({"scale": float(scale), "zero_point": int(zero_point)} if scale else {})}
    return details


def litert_backend(path: str | Path, name: str = "litert", threads: int | None = None) -> Backend:
    """A .tflite file run by the LiteRT interpreter on this CPU, one image at a time; takes NCHW batches like
    every backend and hands the file the NHWC images it expects."""
    interpreter_module = require("ai_edge_litert.interpreter", "the litert backend")
    path, meta, content = device_file(path)
    try:
        with quiet_native_output():
            interpreter = interpreter_module.Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except Exception as error:
        raise WeightsError(f"{path}: not a LiteRT model ({first_line(error)})") from None
    source, = interpreter.get_input_details()
    target = interpreter.get_output_details()[0]
    nhwc = content.get("input", {}).get("layout", "NHWC") == "NHWC"

    def run(batch: np.ndarray) -> np.ndarray:
        outputs = []
        for image in batch:
            image = image.transpose(1, 2, 0) if nhwc else image
            interpreter.set_tensor(source["index"], quantize(image[None], source))
            interpreter.invoke()
            outputs.append(dequantize(interpreter.get_tensor(target["index"]), target))
        return np.concatenate(outputs)

    shape = [int(dim) for dim in source["shape"]]
    input_shape = (shape[3], shape[1], shape[2]) if nhwc and len(shape) == 4 else \
        (tuple(shape[1:]) if len(shape) == 4 else None)
    return Backend(name, run, input_shape, {"runtime": "litert", "threads": threads or "default",
                                            "precision": content.get("precision")}, meta)
