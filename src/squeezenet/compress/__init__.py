"""Deep Compression for SqueezeNet: magnitude pruning, k-means weight sharing, Huffman coding, ``.sqz`` files.

    import squeezenet as sq
    result = sq.compress("compressed_SqueezeNet.net", "model.sqz", bits=6, huffman=True)
    print(result.report)          # Table 1/2-style: density, bits and exact bytes per layer
    model = sq.load("model.sqz")  # a dense model again

Modules, in the order the pipeline uses them: ``prune`` (per-layer magnitude
pruning), ``importance`` (Fisher information, to weigh the sharing without
training data), ``quantize`` (k-means sharing, fine-tuning parametrizations),
``calibrate`` (bias correction of the shared model on unlabelled images),
``huffman`` and ``sqz`` (the encoders of the ``.sqz`` container and the paper's
``.net`` layout; their readers, which ``sq.load`` uses, are in ``weights``),
``report``, ``pipeline`` (all of it, set by ``config.CompressConfig``), ``finetune`` (through the
training loop).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CompressionError
from ..lazy import lazy_attributes

if TYPE_CHECKING:
    import torch

    from ..model import SqueezeNet
    from .config import CompressConfig
    from .pipeline import CompressionResult, Evaluator, Finetuner


def compress(weights: str | Path | SqueezeNet, out: str | Path | None = None, config: CompressConfig | None = None,
             *, finetune: Finetuner | None = None, evaluate: Evaluator | None = None,
             importance: Mapping[str, torch.Tensor] | None = None, calibration: torch.Tensor | None = None,
             **settings: Any) -> CompressionResult:
    """Deep-compress a model into a ``.sqz`` (or the paper's ``.net``): ``pipeline.compress``, whose modules
    (and torch, scikit-learn) load on the first call, so that ``import squeezenet`` stays fast."""
    from .pipeline import compress as run

    return run(weights, out, config, finetune=finetune, evaluate=evaluate, importance=importance,
               calibration=calibration, **settings)


__getattr__ = lazy_attributes(__name__, {
    "SharedLayer": "..weights.sqz", "decode_sqz": "..weights.sqz", "read_sqz": "..weights.sqz",
    "correct_biases": ".calibrate", "CompressConfig": ".config", "fisher_information": ".importance",
    "CompressionResult": ".pipeline", "PAPER_DENSITIES": ".prune", "allocate_bits": ".quantize",
    "share_weights": ".quantize", "CompressionReport": ".report", "Encoding": ".sqz", "encode_net": ".sqz",
    "encode_sqz": ".sqz", "write_sqz": ".sqz",
})

__all__ = [
    "PAPER_DENSITIES",
    "CompressConfig",
    "CompressionError",
    "CompressionReport",
    "CompressionResult",
    "Encoding",
    "SharedLayer",
    "allocate_bits",
    "compress",
    "correct_biases",
    "decode_sqz",
    "encode_net",
    "encode_sqz",
    "fisher_information",
    "read_sqz",
    "share_weights",
    "write_sqz",
]
