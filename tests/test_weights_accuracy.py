"""Acceptance on real ImageNet images: the real weights agree with an independent numpy reference and score as expected.

The reference (tests/numpy_reference.py) runs Caffe's own deploy.prototxt in
numpy and prepares images with PIL + numpy, sharing no code with the model or
the preprocessing. It is slow (about half a second per image on 2 cores), so
the tests compare on a fixed subset and the 500-image figures come from
benchmarks/imagenet_samples.py (--reference adds the full comparison). Each
way of getting Caffe's conventions wrong is shown to be caught: channel order
and mean by a large accuracy drop, floor pooling and conv10's padding by the
comparison with the reference (they barely move top-1 at 227x227: v1.0's
pools see odd sizes where floor and ceil agree, and conv10's pad only adds
relu(bias) at the border).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import squeezenet as sq
from squeezenet.evaluate import Accuracy, accuracy
from squeezenet.images import labelled_images, open_image
from squeezenet.weights import deep_compression
from squeezenet.weights.caffe import read_caffemodel

from .conftest import shared_path
from .numpy_reference import CaffeNet, caffe_image

SUBSET_STEP = 10  # every 10th of the 500 images: 50, one per 20 classes
REFERENCE_IMAGES = 12  # the first 12 of the subset also go through the numpy reference
DC_FILE = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"
V11_FILE = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"


@pytest.fixture(scope="module")
def subset() -> tuple[list[Path], torch.Tensor, list[Image.Image]]:
    items, _ = labelled_images(shared_path("data/imagenet-samples"))
    assert len(items) == 500
    chosen = items[::SUBSET_STEP]
    return [p for p, _ in chosen], torch.tensor([label for _, label in chosen]), [open_image(p) for p, _ in chosen]


@pytest.fixture(scope="module")
def caffe_batch(subset) -> torch.Tensor:
    return torch.stack([sq.get_preprocessing("caffe")(image) for image in subset[2]])


@pytest.fixture(scope="module")
def models() -> dict[str, sq.SqueezeNet]:
    return {"dc": sq.load(shared_path(DC_FILE)), "v1.1": sq.load(shared_path(V11_FILE))}


@pytest.fixture(scope="module")
def subset_logits(models, caffe_batch) -> dict[str, torch.Tensor]:
    return {name: run(model, caffe_batch) for name, model in models.items()}


@pytest.fixture(scope="module")
def reference_input(subset) -> np.ndarray:
    return np.stack([caffe_image(path) for path in subset[0][:REFERENCE_IMAGES]])


@pytest.fixture(scope="module")
def reference_logits(reference_input: np.ndarray) -> dict[str, np.ndarray]:
    dc_net = CaffeNet(shared_path("weights/deep_compression_v1.0/SqueezeNet_deploy.prototxt"), {})
    shapes = dc_net.conv_shapes()
    decoded = deep_compression.decode(shared_path(DC_FILE).read_bytes(), list(shapes.values()))
    dc_net.weights = dict(zip(shapes, decoded, strict=True))
    v11_layers = read_caffemodel(shared_path(V11_FILE).read_bytes())
    v11_net = CaffeNet(shared_path("caffe/SqueezeNet_v1.1/deploy.prototxt"),
                       {layer.name: layer.blobs for layer in v11_layers})
    return {"dc": dc_net.forward(reference_input), "v1.1": v11_net.forward(reference_input)}


def run(model: sq.SqueezeNet, batch: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(batch)


def score(model: sq.SqueezeNet, batch: torch.Tensor, labels: torch.Tensor) -> Accuracy:
    return accuracy(run(model, batch), labels)


def test_our_caffe_preprocessing_equals_the_reference_recipe(caffe_batch: torch.Tensor,
                                                            reference_input: np.ndarray) -> None:
    np.testing.assert_allclose(caffe_batch[:REFERENCE_IMAGES].numpy(), reference_input, atol=1e-4)


@pytest.mark.parametrize("name", ["dc", "v1.1"])
def test_agrees_with_the_numpy_reference(name: str, subset_logits, reference_logits) -> None:
    ours = subset_logits[name][:REFERENCE_IMAGES].numpy()
    reference = reference_logits[name]
    assert (ours.argmax(1) == reference.argmax(1)).mean() >= 0.99
    np.testing.assert_allclose(ours, reference, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", ["dc", "v1.1"])
def test_accuracy_on_the_subset(name: str, subset_logits, subset) -> None:
    result = accuracy(subset_logits[name], subset[1])
    assert result.n == 50
    assert result.top1 >= 0.55 and result.top5 >= 0.78, result


def test_wrong_channel_order_or_missing_mean_drops_accuracy(models, caffe_batch, subset, subset_logits) -> None:
    model, labels = models["v1.1"], subset[1]
    correct = accuracy(subset_logits["v1.1"], labels).top1
    mean = torch.tensor(sq.get_preprocessing("caffe").mean).view(1, 3, 1, 1)
    pixels_bgr = caffe_batch + mean  # undo the mean: the same crops, 0-255 BGR
    rgb_instead = pixels_bgr.flip(1) - mean
    no_mean = pixels_bgr
    assert score(model, rgb_instead, labels).top1 <= correct - 0.10
    assert score(model, no_mean, labels).top1 <= correct - 0.10


def test_floor_pooling_is_caught(caffe_batch, reference_logits) -> None:
    model = sq.load(shared_path(V11_FILE))
    for module in model.modules():
        if isinstance(module, torch.nn.MaxPool2d):
            module.ceil_mode = False
    sizes = []
    model.classifier.conv10.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    floor = run(model, caffe_batch[:REFERENCE_IMAGES]).numpy()
    assert sizes == [13]  # Caffe rounds up: 14x14 at 227 (see the caffemodel's README)
    assert np.abs(floor - reference_logits["v1.1"]).max() > 1.0


def test_missing_conv10_padding_is_caught(caffe_batch, reference_logits) -> None:
    unpadded = sq.load(shared_path(DC_FILE), arch=sq.get_spec("1_0"))  # torchvision's v1.0: conv10 pad 0
    assert unpadded.spec.conv10_padding == 0
    difference = np.abs(run(unpadded, caffe_batch[:REFERENCE_IMAGES]).numpy() - reference_logits["dc"]).max()
    assert difference > 0.5


@pytest.mark.slow
def test_all_500_images_score_as_published() -> None:
    """The README's figures (benchmarks/imagenet_samples.py prints them); a few minutes on 2 cores."""
    items, _ = labelled_images(shared_path("data/imagenet-samples"))
    images = [open_image(path) for path, _ in items]
    labels = torch.tensor([label for _, label in items])
    caffe = sq.get_preprocessing("caffe")

    def score_all(model: sq.SqueezeNet, recipe: sq.Preprocessing) -> Accuracy:
        chunks = [torch.stack([recipe(image) for image in images[i:i + 50]]) for i in range(0, len(images), 50)]
        return accuracy(torch.cat([run(model, chunk) for chunk in chunks]), labels)

    v11 = sq.load(shared_path(V11_FILE))
    results = {"dc": score_all(sq.load(shared_path(DC_FILE)), caffe), "v1.1": score_all(v11, caffe),
               "v1.1 short side": score_all(v11, caffe.replace(resize_mode="short_side"))}
    for name in ("dc", "v1.1"):
        assert results[name].n == 500
        assert results[name].top1 >= 0.62 and results[name].top5 >= 0.82, (name, results[name])
    assert results["v1.1"].top1 - results["v1.1 short side"].top1 >= 0.03, results
