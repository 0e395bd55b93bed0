"""Deep Compression end to end: prune, fine-tune, share weights, fine-tune, store, report.

``compress`` is what ``sq.compress`` and ``squeezenet compress`` run; every
setting is a field of ``CompressConfig`` (``config.py``). The weights are read
once; the Fisher information and the bias-correction images come from
``config.calib`` through that one model. Fine-tuning and evaluation are
callables: built from ``config.finetune_data`` / ``config.eval_data`` by
``finetune.py``, or passed in (``finetune.distill_finetuner``, any
``model -> {"top1", "top5", "n"}`` function), so this module needs neither a
dataset nor the training loop. The accuracy "after" is measured on the model
decoded from the bytes written, so it is the accuracy of the file, float16
codebooks included.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model import SqueezeNet
from ..weights.io import load, write_atomic
from ..weights.names import module_paths
from ..weights.sqz import decode_sqz
from .calibrate import check_images, correct_biases
from .config import CompressConfig
from .importance import fisher_information
from .layers import CompressionError
from .prune import prune as prune_model
from .prune import resolve_densities
from .quantize import SharedLayer, attach, detach, load_shared, resolve_bits, share_weights
from .report import CompressionReport, build_report
from .sqz import encode_net, encode_sqz

Evaluator = Callable[[nn.Module], Mapping[str, float]]
Finetuner = Callable[[SqueezeNet, str], None]  # (model with parametrized weights, "prune" | "share")


@dataclass
class CompressionResult:
    model: SqueezeNet  # the compressed model, decoded from the file's bytes
    report: CompressionReport
    data: bytes


@dataclass
class _Run:
    """What one compression works on, gathered and checked before any slow step."""

    model: SqueezeNet  # the one copy of the input weights; compressed in place
    source: str
    densities: dict[str, float]
    finetune: Finetuner | None
    evaluate: Evaluator | None
    images: torch.Tensor | None  # preprocessed calibration images
    init: str  # the k-means start that runs (``init="auto"`` resolved)


def compress(weights: str | Path | SqueezeNet, out: str | Path | None = None, config: CompressConfig | None = None,
             *, finetune: Finetuner | None = None, evaluate: Evaluator | None = None,
             importance: Mapping[str, torch.Tensor] | None = None, calibration: torch.Tensor | None = None,
             **settings: Any) -> CompressionResult:
    """Deep-compress a model (a file or pretrained name ``sq.load`` reads) into a ``.sqz`` (or the paper's ``.net``).

    ``config`` holds every setting (``CompressConfig``); keyword ``settings`` change its fields, so
    ``sq.compress(path, out, bits=6, huffman=True)`` works as well. What ``config`` names is built here:
    calibration images from ``calib`` (Fisher weighting and bias correction), the fine-tuning from
    ``finetune_data``, the evaluation from ``eval_data``. Each can be given ready-made instead:
    ``finetune(model, stage)`` runs after pruning and after sharing (masks and shared values are kept by
    parametrizations), ``evaluate(model)`` returns ``{"top1", "top5", "n"}``, ``importance`` is per-layer
    Fisher diagonals (``importance.fisher_information``), ``calibration`` preprocessed images (N, C, H, W).
    ``out`` ending in ``.net`` writes the paper's layout (8-bit codes, v1.0). The input model is not modified.
    """
    config = config or CompressConfig()
    config = config.replace(**settings) if settings else config
    run = _prepare(weights, out, config, finetune, evaluate, calibration)
    model, images = run.model, run.images
    before = dict(run.evaluate(model)) if run.evaluate is not None else None
    if importance is None and images is not None and config.fisher:
        importance = fisher_information(model, images)
    original = copy.deepcopy(model) if images is not None and config.bias_correction else None
    shared = _prune_and_share(model, config, run, importance)
    if original is not None:
        correct_biases(original, model, images)

    as_net = out is not None and str(out).lower().endswith(".net")
    record: dict[str, Any] = {
        "source": run.source, "arch": model.spec.name, "prune": _plain(config.prune), "bits": config.layer_bits(),
        "init": run.init, "init_auto": config.init == "auto", "importance": importance is not None,
        "rate_cost": config.rate_cost, "calib": None if config.calib is None else str(config.calib),
        "bias_correction": 0 if original is None or images is None else len(images), "huffman": config.huffman,
        "layout": config.layout, "gap_bits": config.gap_bits, "codebook_dtype": config.codebook_dtype,
        "raw_dtype": config.raw_dtype, "finetuned": run.finetune is not None, "format": "net" if as_net else "sqz",
    }
    if as_net:
        data, size = encode_net(model, shared)
    else:
        text = {key: str(value) for key, value in record.items()}
        data, size = encode_sqz(model, shared, config.encoding(), {**text, **dict(config.metadata or {})})
    decoded = _written(model, data, out)
    after = dict(run.evaluate(decoded)) if run.evaluate is not None else None
    paths = module_paths(model.spec)
    float32_bytes = 4 * sum(tensor.numel() for tensor in model.state_dict().values()
                            if tensor.is_floating_point())
    report = build_report(size, shared, paths, float32_bytes, record)
    report.accuracy_before, report.accuracy_after = before, after
    report.path = str(out) if out is not None else None
    return CompressionResult(decoded, report, data)


def _prepare(weights: str | Path | SqueezeNet, out: str | Path | None, config: CompressConfig,
             finetune: Finetuner | None, evaluate: Evaluator | None, calibration: torch.Tensor | None) -> _Run:
    """Load the weights once, check every setting against the model, and build what the config names."""
    for given, field, what in ((calibration, "calib", "calibration"), (finetune, "finetune_data", "finetune"),
                               (evaluate, "eval_data", "evaluate")):
        if given is not None and getattr(config, field) is not None:
            raise CompressionError(f"{field} and {what}= both given; pass one")
    model, source = _input_model(weights, config)
    densities = resolve_densities(model, config.prune)
    resolve_bits(model, config.layer_bits())  # a pattern that matches no layer fails here, not after fine-tuning
    if calibration is None and config.calib is not None:
        calibration = calibration_images(config.calib, model, config.calib_images)
    if calibration is not None:
        check_images(calibration, "calibration")
    finetune = finetune if finetune is not None else _finetuner(config, out)
    if evaluate is None and config.eval_data is not None:
        from .finetune import evaluator_for

        evaluate = evaluator_for(config.eval_data)
    return _Run(model, source, densities, finetune, evaluate, calibration, config.resolved_init(finetune is not None))


def _input_model(weights: str | Path | SqueezeNet, config: CompressConfig) -> tuple[SqueezeNet, str]:
    """A private copy of the input (metadata included) in eval mode, and what to record as its source."""
    if not isinstance(weights, SqueezeNet):
        from ..weights.registry import resolve

        return load(resolve(weights), config.arch, preprocess=config.preprocess), str(weights)
    model = SqueezeNet(weights.spec, weights.meta)
    model.load_state_dict(weights.state_dict())
    if config.preprocess is not None:
        from ..preprocess import get_preprocessing

        model.meta = model.meta.replace(preprocessing=get_preprocessing(config.preprocess))
    return model.eval(), "model"


def calibration_images(directory: str | Path, model: SqueezeNet, limit: int) -> torch.Tensor:
    """The first ``limit`` images under ``directory`` (sorted), through the model's preprocessing, as one batch."""
    import numpy as np

    from ..deploy import calibration_inputs

    if model.preprocess is None:
        raise CompressionError(f"calib: the weights carry no preprocessing to read {directory} with; set preprocess")
    return torch.from_numpy(np.concatenate(calibration_inputs(directory, model.preprocess, limit)))


def _finetuner(config: CompressConfig, out: str | Path | None) -> Finetuner | None:
    """Fine-tuning on ``config.finetune_data`` through the training loop, one run folder per stage."""
    if config.finetune_data is None:
        return None
    from .finetune import train_finetuner

    runs = config.finetune_out if config.finetune_out is not None else (None if out is None else f"{out}.finetune")
    if runs is None:
        raise CompressionError("finetune_out must be set when there is no out file to put the runs beside")
    overrides = {"lr": config.lr} if config.lr is not None else {}
    return train_finetuner(config.finetune_data, config.epochs, runs, **overrides)


def _prune_and_share(model: SqueezeNet, config: CompressConfig, run: _Run,
                     importance: Mapping[str, torch.Tensor] | None) -> dict[str, SharedLayer]:
    """Prune, fine-tune the kept weights, share them, fine-tune the shared values: ``model`` ends shared."""
    masks = prune_model(model, run.densities)
    if run.finetune is not None and any(density < 1.0 for density in run.densities.values()):
        attach(model, masks=masks)
        try:
            run.finetune(model, "prune")
        finally:
            detach(model)
    shared = share_weights(model, config.layer_bits(), masks, run.init, importance, config.rate_cost)
    if run.finetune is not None:
        attach(model, shared=shared)
        try:
            run.finetune(model, "share")
        finally:
            shared = detach(model, shared)
        load_shared(model, shared)
    return shared


def _written(model: SqueezeNet, data: bytes, out: str | Path | None) -> SqueezeNet:
    """The model the file's bytes hold (read back from ``out`` when written), with the input's metadata where
    the file has none: the accuracy measured on it is the file's."""
    if out is not None:
        write_atomic(out, data)
        decoded = load(out, model.spec)
    else:
        contents = decode_sqz(data, "compressed model")
        decoded = SqueezeNet(contents.spec)
        decoded.load_state_dict(contents.state_dict)
        decoded.meta = decoded.meta.replace(preprocessing=contents.preprocessing)
    meta = decoded.meta
    decoded.meta = meta.replace(
        preprocessing=meta.preprocessing if meta.preprocessing is not None else model.preprocess,
        class_names=meta.class_names if meta.class_names is not None else model.meta.class_names)
    return decoded.eval()


def _plain(value: Any) -> Any:
    """A setting as JSON-ready data (a mapping becomes a dict)."""
    return dict(value) if isinstance(value, Mapping) else value
