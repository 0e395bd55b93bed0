"""How much each weight matters to the output: the diagonal of the Fisher information.

Re-clustering weights without fine-tuning (no training data at hand) moves
every weight a little; what counts is how far the *output* moves. To second
order the loss grows by ``sum_i F_i (w_i - c_i)^2 / 2``, with ``F_i`` the
Fisher information of weight ``i``. So k-means weighted by ``F`` (Choi et al.,
"Towards the Limit of Network Quantization", 2017) spends its shared values
where the network is sensitive. ``F`` is estimated from unlabelled images: the
labels are drawn from the model's own softmax, so no ground truth is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..weights.names import convolutions
from .calibrate import check_images


def fisher_information(model: nn.Module, images: torch.Tensor, draws: int = 2, seed: int = 0,
                       progress: bool = True) -> dict[str, torch.Tensor]:
    """The Fisher diagonal of each convolution's weight, averaged over ``images`` (preprocessed, N x C x H x W).

    One backward pass per image and drawn label: per-image gradients are squared before they are summed,
    which a batched pass would not allow. The model is left in eval mode and unchanged.
    """
    check_images(images, "Fisher information")
    convs = convolutions(model)
    totals = {name: torch.zeros_like(conv.weight, dtype=torch.float64) for name, conv in convs.items()}
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.inference_mode():
        probabilities = torch.cat([F.softmax(model(batch).float(), 1) for batch in images.split(50)])
    for index in tqdm(range(len(images)), desc="Fisher information", unit="image", disable=None if progress else True,
                      leave=False):
        for label in torch.multinomial(probabilities[index], draws, replacement=True, generator=generator):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(images[index:index + 1]).float(), label[None]).backward()
            for name, conv in convs.items():
                totals[name] += conv.weight.grad.double() ** 2
    model.zero_grad(set_to_none=True)
    return {name: (total / (len(images) * draws)).float() for name, total in totals.items()}
