"""Where the time of a batch-1 forward pass goes, per layer type, in ONNX Runtime and OpenVINO, float32 and int8.

Run by hand, alone on the machine (about a minute):

    .venv/bin/python benchmarks/int8_profile.py                               # this CPU as it is
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/int8_profile.py      # OpenVINO's oneDNN kernels capped
                                                                              # at AVX2 (no VNNI, no AVX-512)

Both runtimes' own profilers are used: OpenVINO's per-node performance counters (``PERF_COUNT``: each node's
layer type, the kernel it ran, its time) and ONNX Runtime's session profiling (``enable_profiling``: a JSON trace
of every node). The figures are the mean microseconds a call over ``--calls`` calls at batch 1. ONNX Runtime's
kernels (MLAS) choose their instructions from the CPU alone, so ``ONEDNN_MAX_CPU_ISA`` changes only OpenVINO's rows.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from shared_files import CAFFEMODEL_V11, IMAGENET_SAMPLES
from squeezenet.deploy.export import calibration_inputs, export_onnx, quantize_onnx, quantize_openvino
from squeezenet.machine import watched
from squeezenet.weights.io import load


def openvino_profile(model: object, inputs: np.ndarray, calls: int) -> tuple[float, dict[str, float], list]:
    """Mean ms a call, microseconds a call per (layer type, kernel), and the slowest nodes."""
    import openvino as ov

    config = {"PERF_COUNT": True}
    if "ONEDNN_MAX_CPU_ISA" in os.environ:  # OpenVINO's own kernels still see bf16 and pick it, which the capped
        config["INFERENCE_PRECISION_HINT"] = "f32"  # oneDNN then cannot serve (no pooling kernel at all): f32
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    for _ in range(20):
        request.infer({0: inputs})
    totals: collections.Counter[str] = collections.Counter()
    nodes: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    for _ in range(calls):
        request.infer({0: inputs})
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                microseconds = info.real_time.total_seconds() * 1e6
                totals[f"{info.node_type} [{info.exec_type}]"] += microseconds / calls
                nodes[f"{info.node_name} ({info.node_type}, {info.exec_type})"] += microseconds / calls
    wall = (time.perf_counter() - started) / calls * 1000
    return wall, dict(totals), nodes.most_common(6)


def onnxruntime_profile(path: Path, inputs: np.ndarray, calls: int, scratch: Path) -> tuple[float, dict[str, float]]:
    """Mean ms a call and microseconds a call per operator type, from ONNX Runtime's trace."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(scratch / path.stem)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(20):
        session.run(None, {name: inputs})
    started = time.perf_counter()
    for _ in range(calls):
        session.run(None, {name: inputs})
    wall = (time.perf_counter() - started) / calls * 1000
    trace = json.loads(Path(session.end_profiling()).read_text())
    totals: collections.Counter[str] = collections.Counter()
    for event in trace:  # the 20 warm-up calls are in the trace too: counted, then divided by all calls
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / (calls + 20)
    return wall, dict(totals)


def show(title: str, wall: float, totals: dict[str, float]) -> None:
    print(f"\n{title}: {wall:.3f} ms a call, {sum(totals.values()) / 1000:.3f} ms in the nodes")
    for key, microseconds in sorted(totals.items(), key=lambda item: -item[1])[:12]:
        print(f"  {microseconds:8.1f} us  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    import openvino as ov

    print(f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(not set)')}, openvino {ov.__version__}")
    with watched(lambda line: print(line, flush=True)):  # the figures mean something only on a quiet machine
        profile_all(args, ov)


def profile_all(args: argparse.Namespace, ov: object) -> None:
    model = load(CAFFEMODEL_V11, "1_1")
    calibration = calibration_inputs(IMAGENET_SAMPLES, model.preprocess, 100, input_size=args.input_size)
    inputs = calibration[0]
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        fp32 = export_onnx(model, scratch / "fp32.onnx", input_size=args.input_size)
        int8 = quantize_onnx(fp32, scratch / "int8.onnx", calibration)
        for label, path in (("onnxruntime fp32", fp32), ("onnxruntime int8 (QDQ)", int8)):
            show(label, *onnxruntime_profile(path, inputs, args.calls, scratch))
        fp32_model = ov.Core().read_model(str(fp32))
        for label, ov_model in (("openvino default", fp32_model),
                                ("openvino int8 (NNCF)", quantize_openvino(fp32_model, calibration))):
            wall, totals, slowest = openvino_profile(ov_model, inputs, args.calls)
            show(label, wall, totals)
            print("  slowest nodes: " + "; ".join(f"{name} {us:.0f} us" for name, us in slowest))


if __name__ == "__main__":
    main()
