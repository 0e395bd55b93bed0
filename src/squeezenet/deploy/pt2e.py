"""PT2E post-training int8 quantization, shared by the ExecuTorch and LiteRT exports.

Both toolkits quantize a ``torch.export`` graph with a PT2E quantizer of their own; what they share is the
calibration loop and one change to the quantizers' choices: the classifier's pooling head stays in float.
The quantizers give the global average pool and the flatten after it the int8 scale of conv10's output, so the
logits come out in steps of that scale (about 0.85 for Deep Compression v1.0): on the held-out sample images 18% of
them then had a tie for top-1, and top-1 fell 1.5 points below float32. Averaging conv10's int8 map in float
costs one small float op and keeps the logits' resolution (ties 0%, the loss within half a point).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

# The ops between conv10's ReLU and the logits: pooling and reshapes, nothing with weights.
_POOLING_HEAD = {torch.ops.aten.adaptive_avg_pool2d.default, torch.ops.aten.avg_pool2d.default,
                 torch.ops.aten.mean.dim, torch.ops.aten.flatten.using_ints, torch.ops.aten.view.default,
                 torch.ops.aten.reshape.default, torch.ops.aten.squeeze.dims}


def with_float_head(quantizer_class: type) -> type:
    """A subclass of a PT2E quantizer that annotates as it does, then leaves the pooling head unquantized (a
    subclass rather than a wrapper, because litert-torch's converter wants its own quantizer class)."""

    class FloatHeadQuantizer(quantizer_class):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            keep_pooling_head_in_float(model)
            return model

    FloatHeadQuantizer.__name__ = FloatHeadQuantizer.__qualname__ = f"FloatHead{quantizer_class.__name__}"
    return FloatHeadQuantizer


def keep_pooling_head_in_float(model: torch.fx.GraphModule) -> None:
    """Remove the quantization annotations of the pooling ops that feed the graph's outputs."""
    output = next(node for node in model.graph.nodes if node.op == "output")
    pending = list(output.all_input_nodes)
    while pending:
        node = pending.pop()
        if node.op == "call_function" and node.target in _POOLING_HEAD:
            node.meta.pop("quantization_annotation", None)
            pending.extend(node.all_input_nodes)


def quantize_calibrated(graph: torch.fx.GraphModule, quantizer, calibration: Sequence[np.ndarray],
                        layout: Callable[[np.ndarray], np.ndarray] = lambda batch: batch,
                        fold_quantize: bool = True) -> torch.fx.GraphModule:
    """``graph`` with int8 observers calibrated on the images, converted to quantize/dequantize form."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(torch.from_numpy(np.ascontiguousarray(layout(batch), dtype=np.float32)))
    return convert_pt2e(prepared, fold_quantize=fold_quantize)
