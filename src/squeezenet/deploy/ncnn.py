"""ncnn: a .param (graph) + .bin (weights) pair for ARM boards and phones, converted by pnnx from our ONNX file.

pnnx reads the ONNX export (explicit pads, GlobalAveragePool + Flatten: export._tidy_graph) at a fixed input of
1 x 3 x S x S and writes ncnn's files; ncnn's pooling has a round-up mode of its own, so the pools convert as they
are. Weights are stored float32 (pnnx's fp16 default would halve the file and the precision). int8: ncnn makes it
with its C++ tools ncnn2table and ncnn2int8, which neither the ncnn nor the pnnx Python package ships, so it is
refused with the reason. The runtime that checks the files here is ncnn's Python module, with fp16 storage and
arithmetic off so float32 means float32 (a device build turns them on where the CPU has them).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import ExportError, WeightsError
from ..extras import require
from .backends import Backend, first_line
from .graph import read_sidecar, sidecar, sidecar_input_shape


def export_ncnn(model: nn.Module, path: Path, size: int,
                calibration: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Write ``path`` (.param) and the .bin beside it, converted by pnnx (unchecked: export.export_device checks
    it); returns the sidecar content."""
    from .export import DEVICE_FORMATS, export_onnx

    if calibration is not None:
        raise ExportError(DEVICE_FORMATS["ncnn"].no_int8)
    pnnx = require("pnnx", "ncnn export")

    with tempfile.TemporaryDirectory() as scratch:
        onnx_file = export_onnx(model, Path(scratch) / "model.onnx", input_size=size)
        command = [pnnx.EXEC_PATH, str(onnx_file), f"inputshape=[1,3,{size},{size}]", "fp16=0",
                   f"ncnnparam={path}", f"ncnnbin={path.with_suffix('.bin')}",
                   *(f"{key}={Path(scratch) / name}" for key, name in
                     (("pnnxparam", "m.pnnx.param"), ("pnnxbin", "m.pnnx.bin"), ("pnnxpy", "m_pnnx.py"),
                      ("pnnxonnx", "m.pnnx.onnx"), ("ncnnpy", "m_ncnn.py")))]
        try:
            done = subprocess.run(command, capture_output=True, text=True, cwd=scratch, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ExportError(f"pnnx did not run ({first_line(error)})") from None
    if done.returncode != 0 or not path.is_file() or not path.with_suffix(".bin").is_file():
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ExportError(f"pnnx could not convert the model ({reason[0][:300]})")
    return sidecar(model, size, "ncnn", "float32", input_blob="in0", output_blob="out0")


def ncnn_backend(path: str | Path, name: str = "ncnn", threads: int | None = None) -> Backend:
    """An ncnn .param (with its .bin beside it) run by ncnn's Python module, one image at a time, in float32."""
    ncnn = require("ncnn", "the ncnn backend")
    path = Path(path)
    weights = path.with_suffix(".bin")
    for needed in (path, weights):
        if not needed.is_file():
            raise WeightsError(f"{needed}: no such model file (ncnn needs NAME.param and NAME.bin)")
    meta, content = read_sidecar(path)
    net = ncnn.Net()
    net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = False
    if threads is not None:
        net.opt.num_threads = threads
    if net.load_param(str(path)) != 0 or net.load_model(str(weights)) != 0 or not net.input_names():
        raise WeightsError(f"{path}: not an ncnn model (ncnn cannot load {path.name} with {weights.name})")
    source = content.get("input_blob") or net.input_names()[0]
    target = content.get("output_blob") or net.output_names()[0]

    def run(batch: np.ndarray) -> np.ndarray:
        outputs = []
        for image in batch:
            with net.create_extractor() as extractor:
                extractor.input(source, ncnn.Mat(np.ascontiguousarray(image)).clone())
                status, result = extractor.extract(target)
                if status != 0:
                    raise WeightsError(f"{path}: ncnn could not run the model (status {status})")
                outputs.append(np.array(result).reshape(1, -1))
        return np.concatenate(outputs)

    return Backend(name, run, sidecar_input_shape(content), {"runtime": "ncnn", "threads": threads or "default",
                                            "precision": "float32"}, meta)
