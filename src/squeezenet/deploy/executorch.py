"""ExecuTorch: a .pte program for phones and boards, its convolutions delegated to XNNPACK.

The network goes through ``torch.export`` at batch 1 (a device app classifies one photo at a time), is lowered with
the XNNPACK partitioner, and is run back here with ``executorch.runtime`` to check it against PyTorch. int8 is
post-training static quantization with the XNNPACK PT2E quantizer (symmetric 8-bit per-channel weights, int8
activations from histogram observers, the pooling head left in float: see pt2e), calibrated on real images. The
spec, preprocessing and class names go into a JSON file beside the .pte (graph.sidecar).
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
from .pt2e import quantize_calibrated, with_float_head


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

    # 8-bit weights and a float pooling head (pt2e): measured on the held-out sample images, the quantizer as it
    # comes cost Deep Compression v1.0 1.5 points of top-1 even with 7-bit weights, mostly from ties in logits
    # quantized in steps of 0.85; with the head in float, 8-bit weights did best (see docs/deployment.md).
    quantizer = with_float_head(XNNPACKQuantizer)().set_global(get_symmetric_quantization_config(is_per_channel=True))
    return quantize_calibrated(graph, quantizer, calibration)


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
