"""ExecuTorch: a .pte program for phones and boards, its convolutions delegated to XNNPACK.

The network goes through ``torch.export`` at batch 1 (a device app classifies one photo at a time), is lowered with
the XNNPACK partitioner, and is run back here with ``executorch.runtime`` to check it against PyTorch. int8 is
post-training static quantization with the XNNPACK PT2E quantizer (symmetric 7-bit per-channel weights, int8
activations from histogram observers), calibrated on real images. The spec, preprocessing and class names go
into a JSON file beside the .pte (graph.sidecar).
"""

from __future__ import annotations

import contextlib
import io
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
from .graph import deployable, device_file, sidecar, sidecar_input_shape


def export_executorch(model: nn.Module, path: Path, size: int,
                      calibration: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Write ``model`` as an XNNPACK-delegated .pte at ``path`` (unchecked; export.export_device checks it). Returns
    the sidecar content to write beside it."""
    require("executorch", "ExecuTorch export")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    runner = deployable(model, size, explicit_pool_padding=True)
    example = (torch.zeros(1, 3, size, size),)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.export.export(runner, example)
            if calibration is not None:
                program = torch.export.export(_quantized(program.module(), calibration), example)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        path.write_bytes(lowered.buffer)
    except Exception as error:
        raise ExportError(f"ExecuTorch export failed: {type(error).__name__}: {first_line(error)}") from None
    precision = "int8" if calibration is not None else "float32"
    return sidecar(model, size, "executorch", precision, delegate="XnnpackBackend")


def _quantized(graph: torch.fx.GraphModule, calibration: Sequence[np.ndarray]) -> torch.fx.GraphModule:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # 7-bit weights (-63..63), as ONNX Runtime's reduce_range: measured on the held-out sample images, full 8-bit
    # weights cost v1.1 1.25 points of top-1 (64.25% against 65.50% float32), 7-bit ones 0.5.
    config = get_symmetric_quantization_config(is_per_channel=True, weight_qmin=-63, weight_qmax=63)
    quantizer = XNNPACKQuantizer().set_global(config)
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
    return convert_pt2e(prepared)


def executorch_backend(path: str | Path, name: str = "executorch") -> Backend:
    """A .pte program run by ExecuTorch's runtime on this CPU (XNNPACK), one image at a time."""
    require("executorch", "the executorch backend")
    from executorch.runtime import Runtime

    path, meta, content = device_file(path)
    try:
        with quiet_native_output():
            program = Runtime.get().load_program(str(path))
            method = program.load_method("forward")
    except Exception as error:
        raise WeightsError(f"{path}: not an ExecuTorch program, or a damaged one ({first_line(error)})") from None
    if method is None:
        raise WeightsError(f"{path}: the ExecuTorch program has no forward method")

    def run(batch: np.ndarray) -> np.ndarray:
        outputs = [method.execute([torch.from_numpy(image[None].copy())])[0] for image in batch]
        return torch.cat(outputs).numpy()

    return Backend(name, run, sidecar_input_shape(content), {"runtime": "executorch", "delegate": "xnnpack",
                                            "precision": content.get("precision")}, meta)
