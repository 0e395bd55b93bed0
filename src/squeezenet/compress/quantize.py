"""Weight sharing by k-means (Deep Compression's second stage) and fine-tuning that keeps it.

Each layer's kept (non-zero) weights are clustered into ``2**bits - 1`` shared
values with k-means initialised linearly over [min, max] (the initialisation
Deep Compression found best *with* fine-tuning: it keeps the few large weights
that matter most). Two other starts: ``density`` (the paper's CDF-spaced one)
and ``kmeans++`` (best of 10 k-means++ starts), which fits the weights far more
closely when no fine-tuning follows (re-clustering the paper's 8-bit file to 6
bits: 2.5x less squared error than linear).
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

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..weights.names import convolutions
from ..weights.sqz import MAX_BITS, SharedLayer
from .layers import CompressionError, per_layer


def check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise CompressionError(f"bits must be an integer from 1 to {MAX_BITS}, got {bits!r}")


INITS = ("linear", "density", "kmeans++")


def check_init(init: str) -> None:
    if init not in INITS:
        raise CompressionError(f"k-means init must be one of {', '.join(INITS)}, got {init!r}")


def kmeans_1d(values: np.ndarray, clusters: int, init: str = "linear", importance: np.ndarray | None = None,
              rate_cost: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means of ``values`` into at most ``clusters`` centres; ``init``: one of INITS.

    ``importance`` weighs each value's squared error (e.g. its Fisher information).
    ``rate_cost`` > 0 makes it entropy-constrained: a value may go to a farther but
    more common centre when the error it adds costs less than ``rate_cost`` per bit
    its Huffman code saves, in the units of importance x squared error.
    Returns (sorted centres, label of each value). Runs on the distinct values
    (weights summed): the same objective, much faster on quantized inputs.
    """
    check_init(init)
    if not rate_cost >= 0:
        raise CompressionError(f"rate_cost must be >= 0, got {rate_cost!r}")
    values = np.asarray(values, dtype=np.float64).ravel()
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if len(distinct) <= clusters and rate_cost == 0:
        return distinct.astype(np.float32), inverse
    if importance is None:
        weights = counts.astype(np.float64)
    else:
        importance = np.asarray(importance, dtype=np.float64).ravel()
        if importance.shape != values.shape or not (np.isfinite(importance) & (importance >= 0)).all():
            raise CompressionError("importance must be finite, >= 0 and one per value")
        # A tiny floor: a value no image reacted to still needs a centre near it, just the least say in where.
        weights = np.bincount(inverse, weights=importance, minlength=len(distinct))
        weights += 1e-6 * weights.mean() * counts + np.finfo(np.float64).tiny
    clusters = min(clusters, len(distinct))
    from sklearn.cluster import KMeans  # imported here: scikit-learn takes a second to import
    from threadpoolctl import threadpool_limits

    if init == "kmeans++":
        kmeans = KMeans(n_clusters=clusters, init="k-means++", n_init=10, random_state=0)
    else:
        if init == "linear":
            initial = np.linspace(distinct[0], distinct[-1], clusters)
        else:  # density: equal steps of the cumulative distribution, mapped back to weight values
            cumulative = np.cumsum(counts) / counts.sum()
            initial = np.interp((np.arange(clusters) + 0.5) / clusters, cumulative, distinct)
        kmeans = KMeans(n_clusters=clusters, init=initial.reshape(-1, 1), n_init=1, random_state=0)
    # One thread: on 1-D data OpenMP's start-up costs far more than it saves (seconds on a busy machine).
    with threadpool_limits(1, user_api="openmp"):
        labels = kmeans.fit_predict(distinct.reshape(-1, 1), sample_weight=weights)
    centres = kmeans.cluster_centers_.ravel()
    if rate_cost > 0:
        labels, centres = _entropy_constrained(distinct, weights, counts, labels, centres, rate_cost)
    # One last update step, so every centre is exactly the (weighted) mean of the weights assigned to it.
    centres = _weighted_means(distinct, weights, labels, centres)
    used = np.unique(labels)  # an emptied cluster is dropped rather than stored
    order = used[np.argsort(centres[used])]
    rank = np.empty(clusters, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return centres[order].astype(np.float32), rank[labels][inverse]


def _weighted_means(distinct: np.ndarray, weights: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each centre moved to the weighted mean of its values; a centre with none keeps its place."""
    sums = np.bincount(labels, weights=distinct * weights, minlength=len(centres))
    sizes = np.bincount(labels, weights=weights, minlength=len(centres))
    return np.where(sizes > 0, sums / np.where(sizes > 0, sizes, 1), centres)


def _entropy_constrained(distinct: np.ndarray, weights: np.ndarray, counts: np.ndarray, labels: np.ndarray,
                         centres: np.ndarray, rate_cost: float, rounds: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd rounds on error + rate_cost x code length (-log2 of the centre's share): rarer centres empty out."""
    centres = centres.copy()
    for _ in range(rounds):
        share = np.bincount(labels, weights=counts, minlength=len(centres)) / counts.sum()
        length = np.where(share > 0, -np.log2(np.where(share > 0, share, 1)), np.inf)
        new = np.concatenate([  # in slices: a float layer can have ~10^6 distinct values
            (weights[part, None] * (distinct[part, None] - centres[None, :]) ** 2
             + rate_cost * counts[part, None] * length).argmin(axis=1)
            for part in np.array_split(np.arange(len(distinct)), max(1, len(distinct) // 65536))])
        centres = _weighted_means(distinct, weights, new, centres)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels, centres


def share_layer(name: str, weight: np.ndarray, keep: np.ndarray, bits: int, init: str = "linear",
                importance: np.ndarray | None = None, rate_cost: float = 0.0) -> SharedLayer:
    """Cluster the kept weights of one layer into ``2**bits - 1`` shared values (see ``kmeans_1d``)."""
    check_bits(bits)
    flat = np.asarray(weight, dtype=np.float32).ravel()
    kept = np.asarray(keep, dtype=bool).ravel()
    codes = np.zeros(flat.size, dtype=np.int64)
    centres = np.zeros(0, dtype=np.float32)
    if kept.any():
        weighting = None if importance is None else np.asarray(importance, dtype=np.float64).ravel()[kept]
        centres, labels = kmeans_1d(flat[kept], 2**bits - 1, init, weighting, rate_cost)
        codes[kept] = labels + 1
    return SharedLayer(name, tuple(weight.shape), bits, np.concatenate([[0.0], centres]).astype(np.float32), codes)


def resolve_bits(model: nn.Module, bits: int | Mapping[str, int]) -> dict[str, int]:
    return per_layer(bits, list(convolutions(model)), "bits", check_bits)


def layer_importance(importance: Mapping[str, torch.Tensor], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One layer's importance as float64, checked against the layer's weight shape."""
    if name not in importance or tuple(importance[name].shape) != tuple(shape):
        raise CompressionError(f"importance has no {tuple(shape)} entry for layer {name}")
    return importance[name].detach().cpu().double().numpy()


@torch.no_grad()
def share_weights(model: nn.Module, bits: int | Mapping[str, int], masks: Mapping[str, torch.Tensor] | None = None,
                  init: str = "linear", importance: Mapping[str, torch.Tensor] | None = None,
                  rate_cost: float = 0.0) -> dict[str, SharedLayer]:
    """Weight-share every convolution of ``model`` (in place); ``masks`` (default: the non-zeros) say what is kept.

    ``importance``: per-layer weights of the squared error, shaped like each weight (``fisher_information``),
    rescaled to mean 1 over all layers, so ``rate_cost`` is in squared weight units per bit of an average weight.
    """
    check_init(init)
    scale = 1.0
    if importance is not None:
        scale = float(sum(value.double().sum() for value in importance.values()) /
                      max(1, sum(value.numel() for value in importance.values())))
        scale = scale if math.isfinite(scale) and scale > 0 else 1.0
    layer_bits = resolve_bits(model, bits)
    shared = {}
    for name, conv in convolutions(model).items():
        weight = conv.weight.detach().cpu()
        keep = masks[name] if masks is not None and name in masks else weight != 0
        weighting = None if importance is None else layer_importance(importance, name, tuple(weight.shape)) / scale
        layer = share_layer(name, weight.numpy(), keep.cpu().numpy(), layer_bits[name], init, weighting, rate_cost)
        conv.weight.copy_(torch.from_numpy(layer.weights()).to(conv.weight))
        shared[name] = layer
    return shared


@torch.no_grad()
def load_shared(model: nn.Module, shared: Mapping[str, SharedLayer]) -> None:
    """Set each convolution's weights to its shared values (in place)."""
    for name, conv in convolutions(model).items():
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
    for name, conv in convolutions(model).items():
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
    for name, conv in convolutions(model).items():
        if not parametrize.is_parametrized(conv, "weight"):
            continue
        if name in trained:
            centroids = conv.parametrizations.weight.original.detach().float().cpu().numpy()
            layer = trained[name]
            trained[name] = SharedLayer(layer.name, layer.shape, layer.bits,
                                        np.concatenate([[0.0], centroids]).astype(np.float32), layer.codes)
        parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    return trained


def allocate_bits(model: nn.Module, importance: Mapping[str, torch.Tensor], saving: float,
                  widths: tuple[int, ...] = (4, 5, 6), init: str = "kmeans++") -> dict[str, int]:
    """Per-layer bits that cut about ``saving`` bytes of codes from all-``max(widths)``, where it costs least.

    Each layer is clustered at every width; its cost is the Fisher-weighted squared error (the second-order loss
    estimate) and its size the entropy of its codes (what Huffman coding reaches). Greedily, the layer with the
    smallest loss increase per byte saved drops one width at a time. Deep Compression used one width per kind of
    layer; this finds where fewer bits are cheap.
    """
    widths = tuple(sorted(set(widths)))
    for bits in widths:
        check_bits(bits)
    cost: dict[str, dict[int, tuple[float, float]]] = {}
    for name, conv in convolutions(model).items():
        weight = conv.weight.detach().cpu().numpy()
        keep, fisher = weight != 0, layer_importance(importance, name, weight.shape)
        cost[name] = {}
        for bits in widths:
            layer = share_layer(name, weight, keep, bits, init, fisher)
            counts = np.bincount(layer.codes[layer.codes > 0])
            share = counts[counts > 0] / max(1, counts.sum())
            cost[name][bits] = (float((fisher * (layer.weights() - weight) ** 2).sum()),
                                float(-(share * np.log2(share)).sum() * layer.kept / 8))
    chosen = {name: widths[-1] for name in cost}
    saved = 0.0
    while saved < saving:
        steps = []
        for name, bits in chosen.items():
            if bits == widths[0]:
                continue
            lower = widths[widths.index(bits) - 1]
            gain = cost[name][bits][1] - cost[name][lower][1]
            steps.append(((cost[name][lower][0] - cost[name][bits][0]) / max(gain, 1e-9), name, lower, gain))
        if not steps:
            break
        _, name, lower, gain = min(steps)
        chosen[name], saved = lower, saved + gain
    return chosen
