"""An independent reference: runs Caffe's own deploy.prototxt in numpy, sharing no code with the package's model.

The network is read from the original prototxt (layers, strides, pads, pooling
rules), not from our Spec, and executed with plain numpy (im2col + matmul,
Caffe's round-up pooling). Images are prepared here too, with PIL and numpy,
following Caffe's classic recipe. Weight arrays are passed in by the caller,
keyed by Caffe layer name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

_TOKEN = re.compile(r'"[^"]*"|[{}:]|[^\s{}:"]+')


def parse_prototxt(text: str) -> dict[str, list]:
    """Protobuf text format -> nested dicts of lists (every key may repeat)."""
    tokens = _TOKEN.findall(re.sub(r"#[^\n]*", "", text))
    position = 0

    def block() -> dict[str, list]:
        nonlocal position
        fields: dict[str, list] = {}
        while position < len(tokens) and tokens[position] != "}":
            key = tokens[position]
            position += 1
            if tokens[position] == ":":
                position += 1
            if tokens[position] == "{":
                position += 1
                value: object = block()
                position += 1  # the closing brace
            else:
                raw = tokens[position]
                position += 1
                value = raw.strip('"') if raw.startswith('"') else _number_or_word(raw)
            fields.setdefault(key, []).append(value)
        return fields

    return block()


def _number_or_word(raw: str) -> object:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _one(fields: Mapping[str, list], key: str, default: object = None) -> object:
    return fields.get(key, [default])[0]


class CaffeNet:
    """Executes the Convolution/ReLU/Pooling/Concat/Dropout layers of a deploy prototxt in numpy (inference)."""

    def __init__(self, prototxt: Path, weights: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.layers = parse_prototxt(prototxt.read_text())["layer"]
        self.weights = {name: (np.asarray(w, np.float32), np.asarray(b, np.float32))
                        for name, (w, b) in weights.items()}

    def conv_shapes(self, in_channels: int = 3) -> dict[str, tuple[int, int, int, int]]:
        """(out, in, k, k) of every convolution, by following channel counts through the graph."""
        channels = {"data": in_channels}
        shapes = {}
        for layer in self.layers:
            kind, tops, bottoms = layer["type"][0], layer.get("top", []), layer.get("bottom", [])
            if kind == "Convolution":
                param = layer["convolution_param"][0]
                kernel = _one(param, "kernel_size")
                shapes[layer["name"][0]] = (_one(param, "num_output"), channels[bottoms[0]], kernel, kernel)
                channels[tops[0]] = _one(param, "num_output")
            elif kind == "Concat":
                channels[tops[0]] = sum(channels[b] for b in bottoms)
            elif bottoms:
                channels[tops[0]] = channels[bottoms[0]]
        return shapes

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 -> the input of the final Softmax, (N, classes)."""
        blobs = {"data": batch.astype(np.float32)}
        last = "data"
        for layer in self.layers:
            kind, name = layer["type"][0], layer["name"][0]
            bottoms, tops = layer.get("bottom", []), layer.get("top", [])
            if kind in ("Input", "Softmax", "Dropout"):  # Dropout is the identity at inference
                if kind == "Dropout":
                    blobs[tops[0]] = blobs[bottoms[0]]
                continue
            inputs = [blobs[b] for b in bottoms]
            if kind == "Convolution":
                param = layer["convolution_param"][0]
                weight, bias = self.weights[name]
                out = convolution(inputs[0], weight, bias, int(_one(param, "stride", 1)), int(_one(param, "pad", 0)))
            elif kind == "ReLU":
                out = np.maximum(inputs[0], 0.0)
            elif kind == "Pooling":
                param = layer["pooling_param"][0]
                if _one(param, "global_pooling", "false") in ("true", True):
                    out = inputs[0].mean(axis=(2, 3), keepdims=True)
                elif _one(param, "pool", "MAX") == "MAX":
                    out = max_pool_round_up(inputs[0], int(_one(param, "kernel_size")), int(_one(param, "stride", 1)))
                else:
                    raise NotImplementedError(f"pooling {param}")
            elif kind == "Concat":
                out = np.concatenate(inputs, axis=1)
            else:
                raise NotImplementedError(f"layer type {kind}")
            blobs[tops[0]] = out
            last = tops[0]
        return blobs[last].reshape(batch.shape[0], -1)


def convolution(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation as Caffe computes it: im2col, then one matrix product."""
    n, c, h, w = x.shape
    out_channels, _, kh, kw = weight.shape
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    if kh == kw == 1 and stride == 1:
        columns = x.transpose(0, 2, 3, 1).reshape(-1, c)
    else:
        windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
        columns = windows[:, :, :oh, :ow].transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    out = columns @ weight.reshape(out_channels, -1).T + bias
    return out.reshape(n, oh, ow, out_channels).transpose(0, 3, 1, 2)


def max_pool_round_up(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Caffe's max pooling: output size ceil((in - k) / s) + 1; windows past the edge see only real pixels."""
    n, c, h, w = x.shape
    oh = math.ceil((h - kernel) / stride) + 1
    ow = math.ceil((w - kernel) / stride) + 1
    padded = np.full((n, c, (oh - 1) * stride + kernel, (ow - 1) * stride + kernel), -np.inf, dtype=x.dtype)
    padded[:, :, :h, :w] = x
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel), axis=(2, 3))
    return windows[:, :, ::stride, ::stride].max(axis=(4, 5))


def caffe_image(path: Path, size: int = 256, crop: int = 227, mean_bgr: tuple[float, ...] = (104.0, 117.0, 123.0),
                keep_aspect: bool = False) -> np.ndarray:
    """Caffe's classic recipe: RGB, resize (bilinear), center crop, BGR, 0-255, minus the mean -> (3, crop, crop)."""
    image = Image.open(path).convert("RGB")
    if keep_aspect:
        scale = size / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    else:
        image = image.resize((size, size), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    top = (pixels.shape[0] - crop) // 2  # Caffe crops at the floor of the centre offset
    left = (pixels.shape[1] - crop) // 2
    pixels = pixels[top:top + crop, left:left + crop, ::-1] - np.asarray(mean_bgr, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))
