"""Bias correction: take back the mean shift that weight sharing leaves in each channel.

Moving every weight to one of 2^bits shared values changes each output
channel by an error whose mean over real images is not zero. The next layer
sees a shifted input, and the shifts add up through the network. Measured on
a few unlabelled images, a channel's shift is one number, and the layer's
bias can absorb it (empirical bias correction: Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", 2019). Layers
are corrected in network order, each measured after the ones before it are
fixed. A convolution followed by batch norm has no bias, so its batch norm's
running mean takes the shift instead. The classifier (conv10) is left as it
is: its channel means over the calibration images follow which classes those
images show, so "correcting" them would teach it their class mix. In a check
on four shared files of the paper's model (two Fisher seeds at 6 bits and at
4-6 bits; 400 scored images), correcting conv10 too changed top-1 by -0.94
points on average, and leaving it by +0.25. The file does not grow: biases
and batch-norm tensors are stored dense either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

from ..weights.names import convolutions, module_paths
from .layers import CompressionError


def check_images(images: torch.Tensor, use: str) -> None:
    """Calibration images must be a preprocessed batch: checked before any slow step."""
    if images.ndim != 4 or len(images) == 0:
        raise CompressionError(f"{use} needs preprocessed images shaped (N, C, H, W), got {tuple(images.shape)}")


class _Reached(Exception):
    """Ends a forward pass once the last layer of interest has run: the rest of the network is not needed."""


def channel_means(model: nn.Module, layers: dict[str, nn.Module], images: torch.Tensor,
                  batch: int = 50) -> dict[str, torch.Tensor]:
    """Each layer's output averaged over images and positions, one value per channel (float64)."""
    sums: dict[str, torch.Tensor] = {}
    last = next(reversed(layers))

    def recorder(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def record(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            total = output.double().mean(dim=(2, 3)).sum(dim=0)
            sums[name] = sums[name] + total if name in sums else total
            if name == last:
                raise _Reached
        return record

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    try:
        with torch.inference_mode():
            for chunk in images.split(batch):
                with contextlib.suppress(_Reached):
                    model(chunk)
    finally:
        for handle in handles:
            handle.remove()
    return {name: total / len(images) for name, total in sums.items()}


def correct_biases(reference: nn.Module, model: nn.Module, images: torch.Tensor, batch: int = 50,
                   progress: bool = True) -> dict[str, float]:
    """Shift each convolution of ``model`` but the classifier (in place), so that its channel means on ``images``
    match ``reference``'s.

    ``reference`` is the network before sharing, ``images`` are preprocessed (N x C x H x W) and need no labels.
    Both models are put in eval mode. Returns each corrected layer's largest shift: how far sharing had moved
    its channel means.
    """
    check_images(images, "bias correction")
    reference.eval()
    model.eval()
    layers, reference_layers = convolutions(model), convolutions(reference)
    if layers.keys() != reference_layers.keys():
        raise CompressionError("bias correction needs the reference and the compressed model to have the same layers")
    layers.popitem()  # the classifier, conv10
    wanted = channel_means(reference, {name: reference_layers[name] for name in layers}, images, batch)
    corrections: dict[str, float] = {}
    for name, layer in tqdm(layers.items(), desc="bias correction", unit="layer", disable=None if progress else True,
                            leave=False):
        shift = (wanted[name] - channel_means(model, {name: layer}, images, batch)[name]).float()
        with torch.no_grad():
            if layer.bias is not None:
                layer.bias += shift
            else:  # conv + batch norm: subtracting the shift from the running mean puts the normalised output back
                norm = model.get_submodule(module_paths(model.spec)[name].removesuffix(".conv") + ".norm")
                norm.running_mean -= shift
        corrections[name] = float(shift.abs().max())
    return corrections
