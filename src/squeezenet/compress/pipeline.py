"""Deep Compression end to end: prune, fine-tune, share weights, fine-tune, store, report.

``compress`` is what ``sq.compress`` and ``squeezenet compress`` run. Fine-tuning
and evaluation are passed in as callables, so this module needs neither a
dataset nor the training loop: ``finetune.train_finetuner`` builds one on our
training loop, and any ``model -> {"top1", "top5", "n"}`` function evaluates.
The accuracy "after" is measured on the model decoded from the bytes written,
so it is the accuracy of the file, float16 codebooks included.
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
from ..spec import Spec
from ..weights.io import load, write_atomic
from ..weights.names import module_paths
from ..weights.sqz import decode_sqz
from .calibrate import check_images, correct_biases
from .layers import CompressionError
from .prune import prune as prune_model
from .prune import resolve_densities
from .quantize import attach, check_init, detach, load_shared, share_weights
from .report import CompressionReport, build_report
from .sqz import Encoding, encode_net, encode_sqz

Evaluator = Callable[[nn.Module], Mapping[str, float]]
Finetuner = Callable[[SqueezeNet, str], None]  # (model with parametrized weights, "prune" | "share")


@dataclass
class CompressionResult:
    model: SqueezeNet  # the compressed model, decoded from the file's bytes
    report: CompressionReport
    data: bytes


def compress(weights: str | Path | SqueezeNet, out: str | Path | None = None, *, arch: str | Spec | None = None,
             prune: str | float | Mapping[str, float] | None = "none", bits: int | Mapping[str, int] = 6,
             init: str = "linear", importance: Mapping[str, Any] | None = None, rate_cost: float = 0.0,
             bias_correction: torch.Tensor | None = None,
             huffman: bool = False, layout: str = "auto", gap_bits: int | str = 4,
             codebook_dtype: str = "float32", raw_dtype: str = "float32", finetune: Finetuner | None = None,
             evaluate: Evaluator | None = None, metadata: Mapping[str, str] | None = None) -> CompressionResult:
    """Deep-compress a model (or any weights file ``sq.load`` reads) into a ``.sqz`` (or the paper's ``.net``).

    ``prune``: "paper" (Table 1's densities), "none" (keep every non-zero), one
    density, or a mapping by layer name/pattern. ``bits``: code width, one for
    all layers or a mapping. ``init``: the k-means start, "linear" (the paper's),
    "density" or "kmeans++" (closest fit when there is no fine-tuning).
    ``importance`` (``importance.fisher_information``) weighs each weight's error
    in k-means; ``rate_cost`` > 0 trades that error for shorter Huffman codes.
    ``bias_correction``: unlabelled preprocessed images on which each layer's
    mean shift from sharing is measured and taken back (``calibrate``).
    ``finetune(model, stage)`` trains after pruning and after sharing (masks
    and shared values are kept by parametrizations).
    ``out`` ending in ``.net`` writes the paper's layout (8-bit codes, v1.0).
    The input model is not modified.
    """
    if isinstance(weights, SqueezeNet):
        model = SqueezeNet(weights.spec)
        model.load_state_dict(weights.state_dict())
        model.meta = model.meta.replace(preprocessing=weights.preprocess)
    else:
        model = load(weights, arch)
        weights = str(weights)
    encoding = Encoding(layout=layout, gap_bits=gap_bits, huffman=huffman, codebook_dtype=codebook_dtype,
                        raw_dtype=raw_dtype)
    densities = resolve_densities(model, prune)  # validate every setting before any slow step
    check_init(init)
    if not rate_cost >= 0:
        raise CompressionError(f"rate_cost must be >= 0, got {rate_cost!r}")
    as_net = out is not None and str(out).lower().endswith(".net")
    if bias_correction is not None:
        check_images(bias_correction, "bias correction")
    model.eval()
    before = dict(evaluate(model)) if evaluate is not None else None
    original = copy.deepcopy(model) if bias_correction is not None else None

    masks = prune_model(model, densities)
    if finetune is not None and any(density < 1.0 for density in densities.values()):
        attach(model, masks=masks)
        try:
            finetune(model, "prune")
        finally:
            detach(model)
    shared = share_weights(model, bits, masks, init, importance, rate_cost)
    if finetune is not None:
        attach(model, shared=shared)
        try:
            finetune(model, "share")
        finally:
            shared = detach(model, shared)
        load_shared(model, shared)
    if original is not None:
        correct_biases(original, model, bias_correction)

    settings: dict[str, Any] = {
        "source": weights if isinstance(weights, str) else "model", "arch": model.spec.name,
        "prune": prune if isinstance(prune, (str, float, int)) or prune is None else dict(prune),
        "bits": bits if isinstance(bits, int) else dict(bits), "init": init,
        "importance": importance is not None, "rate_cost": rate_cost,
        "bias_correction": 0 if bias_correction is None else len(bias_correction), "huffman": huffman,
        "layout": layout, "gap_bits": gap_bits, "codebook_dtype": codebook_dtype, "raw_dtype": raw_dtype,
        "finetuned": finetune is not None, "format": "net" if as_net else "sqz",
    }
    if as_net:
        data, size = encode_net(model, shared)
    else:
        text = {key: str(value) for key, value in settings.items()}
        data, size = encode_sqz(model, shared, encoding, {**text, **dict(metadata or {})})
    if out is not None:
        write_atomic(out, data)
        decoded = load(out, model.spec)  # the accuracy of the file as written
    else:
        contents = decode_sqz(data, "compressed model")
        decoded = SqueezeNet(contents.spec)
        decoded.load_state_dict(contents.state_dict)
        decoded.meta = decoded.meta.replace(preprocessing=contents.preprocessing)
    if decoded.preprocess is None:
        decoded.meta = decoded.meta.replace(preprocessing=model.preprocess)
    decoded.eval()
    after = dict(evaluate(decoded)) if evaluate is not None else None
    paths = module_paths(model.spec)
    float32_bytes = 4 * sum(tensor.numel() for tensor in model.state_dict().values()
                            if tensor.is_floating_point())
    report = build_report(size, shared, paths, float32_bytes, settings)
    report.accuracy_before, report.accuracy_after = before, after
    report.path = str(out) if out is not None else None
    return CompressionResult(decoded, report, data)

