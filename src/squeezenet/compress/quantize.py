"""Weight sharing by k-means (Deep Compression's second stage) and fine-tuning that keeps it.

Each layer's kept (non-zero) weights are clustered into ``2**bits - 1`` shared
values with k-means initialised linearly over [min, max] (the initialisation
Deep Compression found best: it keeps the few large weights that matter most).
Code 0 always means the weight 0, so pruned positions, the paper's filler
entries and a dense layout all use the same codebook.

Fine-tuning goes through ordinary training: ``attach`` re-expresses each conv
weight as a function of trainable parameters with torch parametrizations, so
any optimizer over ``model.parameters()`` keeps the compression:

* shared: ``weight = [0, centroids][codes]``; autograd sums the gradients of a
  cluster's weights into its centroid (the paper's centroid update);
* pruned only: ``weight = original * mask``; pruned weights get no gradient and stay 0.

``detach`` folds the parametrizations back into plain weights and returns the
trained codebooks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .layers import CompressionError, compressible_layers, per_layer

MAX_BITS = 8


@dataclass
class SharedLayer:
    """One layer's weights as codes into a codebook of shared values; code 0 is the weight 0."""

    name: str
    shape: tuple[int, ...]
    bits: int
    codebook: np.ndarray  # float32 (at most 2**bits,), codebook[0] == 0.0
    codes: np.ndarray  # int64 (numel,), flat C (OIHW) order

    def weights(self) -> np.ndarray:
        return self.codebook[self.codes].reshape(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def kept(self) -> int:
        """Weights stored with a non-zero code."""
        return int(np.count_nonzero(self.codes))


def check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise CompressionError(f"bits must be an integer from 1 to {MAX_BITS}, got {bits!r}")


def linear_kmeans(values: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means of ``values`` into at most ``clusters`` centres, initialised evenly over [min, max].

    Returns (sorted centres, label of each value). Runs on the distinct values
    weighted by their counts: the same objective, much faster on quantized inputs.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if len(distinct) <= clusters:
        return distinct.astype(np.float32), inverse
    from sklearn.cluster import KMeans  # imported here: scikit-learn takes a second to import
    from threadpoolctl import threadpool_limits

    initial = np.linspace(distinct[0], distinct[-1], clusters).reshape(-1, 1)
    kmeans = KMeans(n_clusters=clusters, init=initial, n_init=1, random_state=0)
    # One thread: on 1-D data OpenMP's start-up costs far more than it saves (seconds on a busy machine).
    with threadpool_limits(1, user_api="openmp"):
        labels = kmeans.fit_predict(distinct.reshape(-1, 1), sample_weight=counts)
    # One last update step, so every centre is exactly the mean of the weights assigned to it.
    sums = np.bincount(labels, weights=distinct * counts, minlength=clusters)
    sizes = np.bincount(labels, weights=counts, minlength=clusters)
    centres = np.where(sizes > 0, sums / np.maximum(sizes, 1), kmeans.cluster_centers_.ravel())
    used = np.unique(labels)  # an emptied cluster is dropped rather than stored
    order = used[np.argsort(centres[used])]
    rank = np.empty(clusters, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return centres[order].astype(np.float32), rank[labels][inverse]


def share_layer(name: str, weight: np.ndarray, keep: np.ndarray, bits: int) -> SharedLayer:
    """Cluster the kept weights of one layer into ``2**bits - 1`` shared values."""
    check_bits(bits)
    flat = np.asarray(weight, dtype=np.float32).ravel()
    kept = np.asarray(keep, dtype=bool).ravel()
    codes = np.zeros(flat.size, dtype=np.int64)
    centres = np.zeros(0, dtype=np.float32)
    if kept.any():
        centres, labels = linear_kmeans(flat[kept], 2**bits - 1)
        codes[kept] = labels + 1
    return SharedLayer(name, tuple(weight.shape), bits, np.concatenate([[0.0], centres]).astype(np.float32), codes)


def resolve_bits(model: nn.Module, bits: int | Mapping[str, int]) -> dict[str, int]:
    return per_layer(bits, list(compressible_layers(model)), "bits", check_bits)


@torch.no_grad()
def share_weights(model: nn.Module, bits: int | Mapping[str, int],
                  masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, SharedLayer]:
    """Weight-share every convolution of ``model`` (in place); ``masks`` (default: the non-zeros) say what is kept."""
    layer_bits = resolve_bits(model, bits)
    shared = {}
    for name, conv in compressible_layers(model).items():
        weight = conv.weight.detach().cpu()
        keep = masks[name] if masks is not None and name in masks else weight != 0
        layer = share_layer(name, weight.numpy(), keep.cpu().numpy(), layer_bits[name])
        conv.weight.copy_(torch.from_numpy(layer.weights()).to(conv.weight))
        shared[name] = layer
    return shared


@torch.no_grad()
def load_shared(model: nn.Module, shared: Mapping[str, SharedLayer]) -> None:
    """Set each convolution's weights to its shared values (in place)."""
    for name, conv in compressible_layers(model).items():
        if name in shared:
            conv.weight.copy_(torch.from_numpy(shared[name].weights()).to(conv.weight))


# -- fine-tuning ----------------------------------------------------------------


class SharedWeight(nn.Module):
    """Parametrization ``weight = [0, centroids][codes]``; the trainable tensor is ``centroids``."""

    def __init__(self, layer: SharedLayer) -> None:
        super().__init__()
        self.register_buffer("codes", torch.from_numpy(layer.codes.reshape(layer.shape)).long())
        self.register_buffer("initial", torch.from_numpy(layer.codebook[1:].copy()))

    def forward(self, centroids: torch.Tensor) -> torch.Tensor:
        return torch.cat([centroids.new_zeros(1), centroids])[self.codes]

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """Centroids from weights: each cluster's mean (its initial value where a cluster is empty)."""
        clusters = len(self.initial) + 1
        sums = torch.zeros(clusters, dtype=weight.dtype, device=weight.device)
        sums.index_add_(0, self.codes.flatten(), weight.detach().flatten())
        counts = torch.bincount(self.codes.flatten(), minlength=clusters).to(weight.dtype)
        means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.cat([sums[:1], self.initial]))
        return means[1:].contiguous()


class MaskedWeight(nn.Module):
    """Parametrization ``weight = original * mask``: pruned weights stay 0 and get no gradient."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.bool())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original * self.mask


def attach(model: nn.Module, shared: Mapping[str, SharedLayer] | None = None,
           masks: Mapping[str, torch.Tensor] | None = None) -> None:
    """Make training keep the compression: shared layers train their centroids, masked layers their kept weights."""
    for name, conv in compressible_layers(model).items():
        if parametrize.is_parametrized(conv, "weight"):
            raise CompressionError(f"layer {name!r} is already attached for fine-tuning")
        if shared is not None and name in shared:
            parametrize.register_parametrization(conv, "weight", SharedWeight(shared[name]))
        elif masks is not None and name in masks:
            parametrize.register_parametrization(conv, "weight", MaskedWeight(masks[name]))


@torch.no_grad()
def detach(model: nn.Module, shared: Mapping[str, SharedLayer] | None = None) -> dict[str, SharedLayer]:
    """Undo ``attach``: plain weights again; returns ``shared`` with the trained codebooks."""
    trained = dict(shared or {})
    for name, conv in compressible_layers(model).items():
        if not parametrize.is_parametrized(conv, "weight"):
            continue
        if name in trained:
            centroids = conv.parametrizations.weight.original.detach().float().cpu().numpy()
            layer = trained[name]
            trained[name] = SharedLayer(layer.name, layer.shape, layer.bits,
                                        np.concatenate([[0.0], centroids]).astype(np.float32), layer.codes)
        parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    return trained
