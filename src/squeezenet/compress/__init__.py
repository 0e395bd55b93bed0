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

from ..weights.sqz import SharedLayer, decode_sqz, read_sqz
from .calibrate import correct_biases
from .config import CompressConfig
from .importance import fisher_information
from .layers import CompressionError
from .pipeline import CompressionResult, compress
from .prune import PAPER_DENSITIES, prune
from .quantize import allocate_bits, share_weights
from .report import CompressionReport
from .sqz import Encoding, encode_net, encode_sqz, write_sqz

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
    "prune",
    "read_sqz",
    "share_weights",
    "write_sqz",
]
