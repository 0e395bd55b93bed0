"""Top-1/top-5 of the real pretrained weights on ../shared/data/imagenet-samples (the figures of docs/results.md).

    .venv/bin/python benchmarks/imagenet_samples.py                 # all 500 images, PyTorch only
    .venv/bin/python benchmarks/imagenet_samples.py --reference     # + agreement with the numpy reference
    .venv/bin/python benchmarks/imagenet_samples.py --limit 20      # smoke test

Runs: the paper's Deep Compression v1.0 file and the v1.1 caffemodel with the
``caffe`` preset (256x256 squash, crop 227), and both with a short-side resize
(the torchvision rule, crop 227) to show what the resize rule costs.
``--reference`` also runs tests/numpy_reference.py (Caffe's prototxt executed
in numpy, no code shared with the model) and reports per-image top-1 agreement
and the largest logit difference (slow: about a second per image on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import squeezenet as sq
from shared_files import (
    CAFFEMODEL_V11,
    DEEP_COMPRESSION_NET,
    DEEP_COMPRESSION_PROTOTXT,
    IMAGENET_SAMPLES,
    PROTOTXT_V11,
    ROOT,
)
from squeezenet.evaluate import accuracy
from squeezenet.images import labelled_images, open_image
from squeezenet.weights import deep_compression
from squeezenet.weights.caffe import read_caffemodel

DC_FILE, V11_FILE, DC_PROTOTXT, V11_PROTOTXT = (DEEP_COMPRESSION_NET, CAFFEMODEL_V11, DEEP_COMPRESSION_PROTOTXT,
                                                PROTOTXT_V11)


def reference_logits(model_name: str, paths: list[Path], batch: int = 8) -> np.ndarray:
    sys.path.insert(0, str(ROOT / "tests"))
    from numpy_reference import CaffeNet, caffe_image

    if model_name == "dc_v1.0":
        net = CaffeNet(DC_PROTOTXT, {})
        shapes = net.conv_shapes()
        net.weights = dict(zip(shapes, deep_compression.decode(DC_FILE.read_bytes(), list(shapes.values())),
                               strict=True))
    else:
        net = CaffeNet(V11_PROTOTXT, {layer.name: layer.blobs for layer in read_caffemodel(V11_FILE.read_bytes())})
    outputs = []
    for start in range(0, len(paths), batch):
        images = np.stack([caffe_image(path) for path in paths[start:start + batch]])
        outputs.append(net.forward(images))
    return np.concatenate(outputs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=IMAGENET_SAMPLES)
    parser.add_argument("--limit", type=int, default=None, help="first N images only (smoke test)")
    parser.add_argument("--reference", action="store_true", help="also compare with the numpy reference (slow)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    items, _ = labelled_images(args.data)
    items = items[: args.limit]
    images = [open_image(path) for path, _ in items]
    labels = torch.tensor([label for _, label in items])
    caffe = sq.get_preprocessing("caffe")
    short_side = caffe.replace(name="caffe-short-side", resize_mode="short_side")
    models = {"dc_v1.0": sq.load(DC_FILE), "v1.1": sq.load(V11_FILE)}
    results = []
    for model_name, model in models.items():
        for recipe in (caffe, short_side):
            start = time.perf_counter()
            batch = torch.stack([recipe(image) for image in images])
            with torch.inference_mode():
                scores = torch.cat([model(part) for part in batch.split(50)])
            row = {"weights": model_name, "preprocess": recipe.name, **accuracy(scores, labels).to_dict(),
                   "seconds": round(time.perf_counter() - start, 1)}
            if args.reference and recipe is caffe:
                reference = reference_logits(model_name, [path for path, _ in items])
                row["reference_top1_agreement"] = float((reference.argmax(1) == scores.numpy().argmax(1)).mean())
                row["reference_max_logit_diff"] = float(np.abs(reference - scores.numpy()).max())
                row["reference_top1"] = float((reference.argmax(1) == labels.numpy()).mean())
            results.append(row)
            if not args.json:
                extra = "".join(f"  {k} {v:.4g}" for k, v in row.items() if k.startswith("reference"))
                print(f"{model_name:8s} {recipe.name:17s} top-1 {row['top1']:.1%}  top-5 {row['top5']:.1%}  "
                      f"n={row['n']}  ({row['seconds']} s){extra}", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
