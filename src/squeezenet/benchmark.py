"""One CPU inference benchmark: every backend, the same inputs, the same run.

Rows: torchvision's own class run eagerly (the baseline), our PyTorch path,
ONNX Runtime float32 and int8, OpenVINO with its default settings, with f32
forced and int8 (NNCF), and the on-device runtimes (ExecuTorch, LiteRT, ncnn)
running their exported files, with each file's size and the peak resident
memory of a fresh process that loads it and classifies one image. Backends
take turns round by round, so a noisy neighbour slows all of them alike
instead of whichever ran at the time; each row reports latency percentiles
(p10, p50, p90: the spread) at batch 1 and throughput at every batch size, as
ratios to torchvision eager and to OpenVINO's default too. A backend that
cannot run here is listed as skipped with the reason.
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .deploy import (
    DEVICE_FORMATS,
    OPENVINO_F32,
    Backend,
    available,
    calibration_inputs,
    example_batch,
    export_device,
    export_onnx,
    onnxruntime_backend,
    open_exported,
    openvino_backend,
    quantize_onnx,
    quantize_openvino,
    torch_backend,
    torchvision_backend,
)
from .errors import DataError, SqueezeNetError
from .extras import EXTRA_OF
from .machine import MachineCheck, machine_info
from .model import SqueezeNet
from .preprocess import Preprocessing
from .text import text_table

BASELINE = "torchvision-eager"
REFERENCE = "openvino-default"
STABLE_WITHIN = 0.02  # more rounds until one more moves no row's median latency by over 2%


@dataclass
class Setup:
    """What the variants share: the model, its exported files and int8 versions, each built once on demand."""

    model: SqueezeNet
    input_size: int
    scratch: Path
    calibration: list[np.ndarray] | None = None  # real preprocessed images at input_size; None: no int8 rows
    cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def onnx_fp32(self) -> Path:
        return self.once("onnx", lambda: export_onnx(self.model, self.scratch / "fp32.onnx",
                                                     input_size=self.input_size))

    def int8_calibration(self) -> list[np.ndarray]:
        if not self.calibration:
            raise _Skip("int8 needs calibration images: pass --calib DIR")
        return self.calibration

    def onnx_int8(self) -> Path:
        return self.once("onnx-int8", lambda: quantize_onnx(self.onnx_fp32(), self.scratch / "int8.onnx",
                                                            self.int8_calibration()))

    def openvino_fp32(self) -> Any:
        import openvino as ov

        return self.once("openvino", lambda: ov.Core().read_model(str(self.onnx_fp32())))

    def openvino_int8(self) -> Any:
        return self.once("openvino-int8", lambda: quantize_openvino(self.openvino_fp32(), self.int8_calibration()))

    def device_file(self, file_format: str, int8: bool) -> Path:
        precision = "int8" if int8 else "fp32"
        target = self.scratch / f"{file_format}-{precision}{DEVICE_FORMATS[file_format].suffix}"
        return self.once(target.name, lambda: export_device(
            self.model, target, file_format, input_size=self.input_size,
            calibration=self.int8_calibration() if int8 else None))


class _Skip(Exception):
    """A variant that cannot run on this machine or with these arguments; the message says why."""


def _needs(runtime: str) -> None:
    if not available(runtime):
        extra = EXTRA_OF.get(runtime)
        raise _Skip(f"{runtime} is not installed" + (f" (pip install 'squeezenet[{extra}]')" if extra else ""))


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    build: Callable[[Setup], Backend]


def _torchvision(setup: Setup) -> Backend:
    try:
        return torchvision_backend(setup.model)
    except SqueezeNetError as error:
        raise _Skip(str(error)) from None


def _onnxruntime(int8: bool) -> Callable[[Setup], Backend]:
    def build(setup: Setup) -> Backend:
        _needs("onnxruntime")
        path = setup.onnx_int8() if int8 else setup.onnx_fp32()
        runner = onnxruntime_backend(path, "onnxruntime-int8" if int8 else "onnxruntime-fp32")
        runner.details.update(file_bytes=path.stat().st_size, peak_rss_mb=peak_memory_mb(path))
        return runner
    return build


def _openvino(name: str, config: dict[str, Any], int8: bool = False) -> Callable[[Setup], Backend]:
    def build(setup: Setup) -> Backend:
        _needs("openvino")
        if int8:
            _needs("nncf")
        return openvino_backend(setup.openvino_int8() if int8 else setup.openvino_fp32(), name, config)
    return build


def _device(file_format: str, int8: bool) -> Callable[[Setup], Backend]:
    def build(setup: Setup) -> Backend:
        device = DEVICE_FORMATS[file_format]
        for module in device.toolkit:
            _needs(module)
        if int8 and device.no_int8:
            raise _Skip(device.no_int8.split(";")[0])
        path = setup.device_file(file_format, int8)
        runner = open_exported(path)
        runner.name = f"{device.runtime}-{'int8' if int8 else 'fp32'}"
        files = [path, *(path.with_suffix(s) for s in device.siblings if s != ".json")]  # the sidecar not counted
        runner.details.update(file_bytes=sum(f.stat().st_size for f in files), peak_rss_mb=peak_memory_mb(path))
        return runner
    return build


# A fresh process that imports only the runtime, loads the file and runs one image: its peak resident memory is
# what a device app pays for the model (P: the path, S: the input shape).
_LOAD_AND_RUN = {
    ".pte": "import torch\nfrom executorch.runtime import Runtime\n"
            "Runtime.get().load_program(P).load_method('forward').execute([torch.zeros(S)])",
    ".tflite": "import numpy as np\nfrom ai_edge_litert.interpreter import Interpreter\n"
               "i = Interpreter(model_path=P)\ni.allocate_tensors()\nd = i.get_input_details()[0]\n"
               "i.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))\ni.invoke()",
    ".param": "import ncnn, numpy as np\nn = ncnn.Net()\nn.load_param(P)\nn.load_model(P[:-6] + '.bin')\n"
              "e = n.create_extractor()\ne.input('in0', ncnn.Mat(np.zeros(S[1:], np.float32)).clone())\n"
              "e.extract('out0')",
    ".onnx": "import numpy as np, onnxruntime as ort\ns = ort.InferenceSession(P)\n"
             "s.run(None, {s.get_inputs()[0].name: np.zeros(S, np.float32)})",
}


def peak_memory_mb(path: Path) -> float | None:
    """Peak resident memory (MB) of a process that loads ``path`` in its runtime and classifies one image."""
    import subprocess
    import sys

    from .deploy.graph import read_sidecar

    code = _LOAD_AND_RUN.get(path.suffix)
    if code is None:
        return None
    shape = read_sidecar(path)[1].get("input", {}).get("shape")
    if shape is None and path.suffix == ".onnx":
        import onnx

        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        shape = [1, *(d.dim_value for d in dims[1:])]
    # VmHWM, the peak of this process's own memory since its exec: getrusage's ru_maxrss would also count the
    # benchmark process it was forked from.
    program = f"P = {str(path)!r}\nS = {shape!r}\n{code}\n" \
              "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return round(int(done.stdout.split()[-1]) / 1024, 1)  # kilobytes


VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "torchvision's class, eager NCHW fp32, torch.no_grad", _torchvision),
    Variant("pytorch", "ours: channels_last + inference_mode, fp32",
            lambda setup: torch_backend(setup.model, input_size=setup.input_size)),
    Variant("pytorch-compile", "ours + torch.compile (inductor), fp32",
            lambda setup: torch_backend(setup.model, "pytorch-compile", compile_model=True,
                                        input_size=setup.input_size)),
    Variant("onnxruntime-fp32", "ONNX Runtime CPU, all graph optimisations", _onnxruntime(int8=False)),
    Variant("onnxruntime-int8", "ONNX Runtime, QDQ int8 static (quantize_static)", _onnxruntime(int8=True)),
    Variant(REFERENCE, "OpenVINO CPU, no settings (its choice of precision, hint, threads)",
            _openvino(REFERENCE, {})),
    Variant("openvino-f32", "OpenVINO CPU, INFERENCE_PRECISION_HINT=f32", _openvino("openvino-f32", OPENVINO_F32)),
    Variant("openvino-int8", "OpenVINO CPU, int8 from NNCF post-training quantization",
            _openvino("openvino-int8", {}, int8=True)),
    Variant("executorch-fp32", "ExecuTorch .pte, XNNPACK delegate, fp32, one image a call",
            _device("executorch", int8=False)),
    Variant("executorch-int8", "ExecuTorch .pte, XNNPACK, int8 (PT2E XNNPACK quantizer)", _device("executorch", True)),
    Variant("litert-fp32", "LiteRT .tflite (litert-torch), NHWC, fp32, one image a call", _device("tflite", False)),
    Variant("litert-int8", "LiteRT .tflite, int8 (litert-torch PT2E quantizer)", _device("tflite", True)),
    Variant("ncnn-fp32", "ncnn .param/.bin (pnnx), fp32 storage and arithmetic", _device("ncnn", False)),
    Variant("ncnn-int8", "ncnn int8", _device("ncnn", True)),
)


@dataclass
class Row:
    """One backend's measurements: per-call seconds at each batch size, or the reason it was skipped."""

    name: str
    description: str
    skipped: str | None = None
    setup_s: float = 0.0
    seconds: dict[int, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def img_per_s(self, batch: int) -> float | None:
        calls = self.seconds.get(batch)
        return batch * len(calls) / sum(calls) if calls else None

    def percentile_ms(self, batch: int, q: float) -> float | None:
        calls = self.seconds.get(batch)
        return float(np.percentile(calls, q) * 1e3) if calls else None


@dataclass
class Report:
    arch: str
    weights: str | None
    input_size: int
    batches: tuple[int, ...]
    warmup: int
    rounds: int
    calls: dict[int, int]
    rows: list[Row]
    machine: dict[str, Any]
    check: MachineCheck | None = None  # the machine measured at the start and the end
    stable: bool | None = None  # whether the last round moved no row's median by more than STABLE_WITHIN

    def _ratio(self, row: Row, other_name: str, batch: int) -> float | None:
        other = next((r for r in self.rows if r.name == other_name and not r.skipped), None)
        mine, theirs = row.img_per_s(batch), other.img_per_s(batch) if other else None
        return mine / theirs if mine and theirs else None

    def fastest(self, batch: int = 1) -> Row | None:
        ran = [row for row in self.rows if not row.skipped and row.img_per_s(batch)]
        return max(ran, key=lambda row: row.img_per_s(batch) or 0.0, default=None)

    def to_dict(self) -> dict[str, Any]:
        first = self.batches[0]
        rows = []
        for row in self.rows:
            entry: dict[str, Any] = {"name": row.name, "description": row.description}
            if row.skipped:
                entry["skipped"] = row.skipped
                rows.append(entry)
                continue
            entry.update(p10_ms=_round(row.percentile_ms(first, 10)), p50_ms=_round(row.percentile_ms(first, 50)),
                         p90_ms=_round(row.percentile_ms(first, 90)))
            for batch in self.batches:
                entry[f"b{batch}_img_per_s"] = _round(row.img_per_s(batch), 2)
                entry[f"b{batch}_call_ms_p10_p50_p90"] = [_round(row.percentile_ms(batch, q)) for q in (10, 50, 90)]
                entry[f"b{batch}_timed_calls"] = len(row.seconds[batch])
            for batch in self.batches:
                for other in (BASELINE, REFERENCE):
                    entry[f"b{batch}_vs_{other.replace('-', '_')}"] = _round(self._ratio(row, other, batch))
            entry["setup_s"] = _round(row.setup_s, 2)
            entry["details"] = row.details
            rows.append(entry)
        fastest = self.fastest(first)
        return {
            "arch": self.arch, "weights": self.weights, "input_size": self.input_size,
            "batches": list(self.batches), "warmup_calls": self.warmup, "rounds": self.rounds,
            "medians_stable": self.stable,
            "timed_calls_per_round": {str(b): n for b, n in self.calls.items()},
            "latency_batch": first, "machine": self.machine,
            "machine_check": self.check.to_dict() if self.check is not None else None,
            "busy": self.check.busy if self.check is not None else None, "rows": rows,
            "fastest": None if fastest is None else {
                "batch": first, "name": fastest.name,
                "vs_openvino_default": _round(self._ratio(fastest, REFERENCE, first)),
                "vs_torchvision_eager": _round(self._ratio(fastest, BASELINE, first))},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        first = self.batches[0]
        header = ["backend", f"p50 ms b{first}", f"p10-p90 ms b{first}", *(f"img/s b{b}" for b in self.batches),
                  *(f"x tv b{b}" for b in self.batches), *(f"x ov-default b{b}" for b in self.batches),
                  "file MB", "peak RSS MB"]
        table: list[list[str]] = []
        for row in self.rows:
            if row.skipped:
                table.append([row.name, f"skipped: {row.skipped}"])
                continue
            table.append([
                row.name, _fmt(row.percentile_ms(first, 50), 2),
                f"{_fmt(row.percentile_ms(first, 10), 2)}-{_fmt(row.percentile_ms(first, 90), 2)}",
                *(_fmt(row.img_per_s(b), 1) for b in self.batches),
                *(_fmt(self._ratio(row, BASELINE, b), 2) for b in self.batches),
                *(_fmt(self._ratio(row, REFERENCE, b), 2) for b in self.batches),
                _fmt(row.details["file_bytes"] / 1e6 if "file_bytes" in row.details else None, 2),
                _fmt(row.details.get("peak_rss_mb"), 0),
            ])
        busy = [f"warning: {self.check.busy}"] if self.check is not None and self.check.busy else []
        quiet = self.check.to_dict() if self.check is not None else {}
        checked = (f"; load average {quiet['load_average_before']} -> {quiet['load_average_after']}, float32 matmul "
                   f"{quiet['matmul_gflops_before']} -> {quiet['matmul_gflops_after']} GFLOP/s") if quiet else ""
        lines = [*busy, f"SqueezeNet {self.arch} at {self.input_size}x{self.input_size}, weights: "
                 f"{self.weights or 'random'}; {self.warmup} warm-up calls per batch size, then {self.rounds} "
                 "round(s) of "
                 + ", ".join(f"{n} call(s) at batch {b}" for b, n in self.calls.items())
                 + f" per backend; {self.machine.get('cpu')}, {self.machine.get('logical_cpus')} CPUs{checked}",
                 *text_table(header, table)]
        fastest = self.fastest(first)
        if fastest is not None:
            ratios = [f"{ratio:.2f}x {other}" for other in (REFERENCE, BASELINE)
                      if (ratio := self._ratio(fastest, other, first)) is not None]
            lines.append(f"fastest at batch {first}: {fastest.name}" + (f" = {', '.join(ratios)}" if ratios else ""))
        return "\n".join(lines)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_benchmark(model: SqueezeNet, *, weights: str | None = None, batches: Sequence[int] = (1, 32),
                  input_size: int = 224, warmup: int = 10, rounds: int = 5, calls: Sequence[int] | None = None,
                  calib_dir: str | Path | None = None, calib_images: int = 100, only: Sequence[str] | None = None,
                  progress: Callable[[str], None] | None = None, stable_within: float = STABLE_WITHIN,
                  max_seconds: float = 0.0) -> Report:
    """Build every variant, warm each up, then time them round-robin for ``rounds`` rounds.

    ``calls[i]`` is the number of timed calls per round at ``batches[i]``
    (default: 40 at batch 1, else enough for about 128 images). ``only``
    restricts the variants by name. Inputs are random images through the
    model's preprocessing, cropped to ``input_size``; the speed of a dense
    network does not depend on the pixels. After ``rounds``, more rounds run
    while ``max_seconds`` of timing allow, until one more round moves no row's
    median at the first batch size by more than ``stable_within``.
    """
    batches = tuple(sorted(set(batches)))
    if not batches or min(batches) < 1:
        raise SqueezeNetError(f"batch sizes must be positive, got {batches}")
    if warmup < 0 or rounds < 1:
        raise SqueezeNetError(f"need warmup >= 0 and rounds >= 1, got {warmup} and {rounds}")
    counts = tuple(calls) if calls is not None else tuple(40 if b == 1 else max(1, 128 // b) for b in batches)
    if len(counts) != len(batches) or min(counts) < 1:
        raise SqueezeNetError(f"need one positive call count per batch size, got {counts} for {batches}")
    known = [variant.name for variant in VARIANTS]
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise SqueezeNetError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(known)}")
    say = progress or (lambda _message: None)
    say("measuring the machine (load average, float32 matmul)")
    check = MachineCheck.start()
    inputs = {batch: example_batch(model, batch, input_size, seed=batch) for batch in batches}
    rows: list[Row] = []
    runners: dict[str, Backend] = {}
    with tempfile.TemporaryDirectory(prefix="squeezenet-bench-") as scratch:
        calibration = None
        if calib_dir is not None:
            if not isinstance(model.preprocess, Preprocessing):
                raise DataError("int8 calibration needs the model's preprocessing (model.preprocess is unset)")
            calibration = calibration_inputs(calib_dir, model.preprocess, calib_images, input_size=input_size)
        setup = Setup(model, input_size, Path(scratch), calibration)
        for variant in VARIANTS:
            if only and variant.name not in only:
                continue
            row = Row(variant.name, variant.description)
            rows.append(row)
            say(f"building {variant.name}")
            start = time.perf_counter()
            try:
                runner = variant.build(setup)
                for batch in batches:  # the first call compiles or allocates: part of setup, not of timing
                    runner(inputs[batch])
            except _Skip as reason:
                row.skipped = str(reason)
                continue
            except Exception as error:  # one backend failing must not sink the others' measurements
                row.skipped = f"failed: {type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
                continue
            row.setup_s = time.perf_counter() - start
            row.details = runner.details
            runners[variant.name] = runner
            row.seconds = {batch: [] for batch in batches}
        for name, runner in runners.items():
            say(f"warming up {name}")
            for batch in batches:
                for _ in range(warmup):
                    runner(inputs[batch])
        by_name = {row.name: row for row in rows}
        gc_was_enabled = gc.isenabled()
        gc.disable()
        timing_started, done, medians, stable = time.perf_counter(), 0, None, False
        try:
            while done < rounds or (time.perf_counter() - timing_started < max_seconds and not stable):
                done += 1
                say(f"round {done}/{rounds}" if done <= rounds else f"round {done} (medians not yet stable)")
                for name, runner in runners.items():
                    for batch, count in zip(batches, counts, strict=True):
                        timings = by_name[name].seconds[batch]
                        for _ in range(count):
                            start = time.perf_counter()
                            runner(inputs[batch])
                            timings.append(time.perf_counter() - start)
                previous, medians = medians, [float(np.median(by_name[name].seconds[batches[0]])) for name in runners]
                stable = previous is not None and all(abs(now / then - 1) <= stable_within
                                                      for now, then in zip(medians, previous, strict=True))
        finally:
            if gc_was_enabled:
                gc.enable()
    return Report(model.spec.name, weights, input_size, batches, warmup, done,
                  dict(zip(batches, counts, strict=True)), rows, machine_info(), check.finish(), stable)


# -- accuracy of every backend ---------------------------------------------------------------

BF16 = Variant("pytorch-bf16", "ours in bfloat16 weights and activations (the numerics of bf16 inference)",
               lambda setup: torch_backend(setup.model, "pytorch-bf16", dtype=torch.bfloat16,
                                           input_size=setup.input_size))
ACCURACY_VARIANTS = (*(v for v in VARIANTS if v.name != "pytorch-compile"), BF16)  # compile: same numerics


@dataclass(frozen=True)
class AccuracyRow:
    """One backend's top-1/top-5 on the images, and how often its top-1 matches PyTorch float32's."""

    name: str
    top1: float | None = None
    top5: float | None = None
    n: int = 0
    agreement: float | None = None
    skipped: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    predictions: np.ndarray | None = field(default=None, repr=False)  # top-1 class per image, for subsets


def compare_accuracy(model: SqueezeNet, inputs: np.ndarray, labels: np.ndarray,
                     calibration: list[np.ndarray] | None, names: Sequence[str] | None = None,
                     batch_size: int = 50) -> list[AccuracyRow]:
    """Run each backend variant over the same preprocessed ``inputs`` (N, C, S, S) and score it against ``labels``.

    ``calibration`` (real images, ideally not among ``inputs``) feeds the
    int8 rows. Rows that cannot run here (a missing package, torchvision's
    class for a spec it cannot express) are skipped with the reason.
    """
    from .evaluate import accuracy

    variants = [v for v in ACCURACY_VARIANTS if names is None or v.name in names]
    size = int(inputs.shape[-1])

    def scores_of(runner: Backend) -> np.ndarray:
        return np.concatenate([runner(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])

    pytorch = torch_backend(model, input_size=size)  # the reference: the "pytorch" row, computed once
    reference = scores_of(pytorch)
    rows = []
    with tempfile.TemporaryDirectory(prefix="squeezenet-accuracy-") as scratch:
        setup = Setup(model, size, Path(scratch), calibration)
        for variant in variants:
            try:
                runner = pytorch if variant.name == "pytorch" else variant.build(setup)
            except _Skip as reason:
                rows.append(AccuracyRow(variant.name, skipped=str(reason)))
                continue
            if runner.details.get("same_outputs_as_ours") is False:
                rows.append(AccuracyRow(variant.name, skipped="torchvision's class cannot express this spec "
                                                              "(conv10 padding); not the same network"))
                continue
            scores = reference if runner is pytorch else scores_of(runner)
            result = accuracy(torch.from_numpy(scores), torch.from_numpy(np.asarray(labels)))
            agreement = float(np.mean(scores.argmax(axis=1) == reference.argmax(axis=1)))
            rows.append(AccuracyRow(variant.name, result.top1, result.top5, result.n, agreement,
                                    details=runner.details, predictions=scores.argmax(axis=1)))
    return rows
