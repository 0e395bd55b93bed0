"""Training-step throughput in float32 and under bfloat16 autocast, in both memory formats, one thread, and with
the first layers frozen (the speed `--bf16`, `--channels-last` and `--freeze` buy).

Run by hand on a quiet machine:

    .venv/bin/python benchmarks/bf16_step.py            # SqueezeNet v1.1, 10 classes, batch 64, 128 and 160 px
    .venv/bin/python benchmarks/bf16_step.py --sizes 32,128 --formats contiguous,channels-last
    .venv/bin/python benchmarks/bf16_step.py --sizes 128,144,160 --freeze conv1,fire3

Random tensors, SGD with momentum; 3 untimed steps, then 8 timed ones per row. bfloat16 pays where the CPU has
AVX-512 BF16 or AMX; elsewhere oneDNN emulates it and it is slower than float32.
"""

from __future__ import annotations

import argparse
import time

import torch

import squeezenet as sq
from squeezenet.train.setup import frozen_layers

FORMATS = {"channels-last": torch.channels_last, "contiguous": torch.contiguous_format}


def images_per_second(size: int, bf16: bool, batch: int, steps: int, layout: torch.memory_format,
                      freeze: str | None = None) -> float:
    model = sq.build("1_1", num_classes=10).to(memory_format=layout).train()
    for layer in frozen_layers(model, sq.TrainConfig(freeze=freeze)):  # as `squeezenet train --freeze` does
        layer.requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    inputs = torch.randn(batch, 3, size, size).contiguous(memory_format=layout)
    labels = torch.randint(0, 10, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):  # kernel selection and first allocations
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,160")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--formats", default="channels-last", help=f"memory formats, of {', '.join(FORMATS)}")
    parser.add_argument("--freeze", default="", help="also time bfloat16 steps with conv1 through each of these "
                                                     "layers frozen (e.g. conv1,fire3), against none frozen")
    args = parser.parse_args()
    formats = args.formats.split(",")
    if unknown := [name for name in formats if name not in FORMATS]:
        parser.error(f"--formats: unknown {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    frozen_names, model = [name for name in args.freeze.split(",") if name], sq.build("1_1", num_classes=10)
    for layer in frozen_names:  # refused before any timing, as `squeezenet train --freeze` refuses a bad name
        try:
            frozen_layers(model, sq.TrainConfig(freeze=layer))
        except sq.TrainingError as error:
            parser.error(str(error))
    torch.set_num_threads(args.threads)
    for size in (int(text) for text in args.sizes.split(",")):
        rates = {}
        for name in formats:
            fp32 = images_per_second(size, False, args.batch, args.steps, FORMATS[name])
            bf16 = images_per_second(size, True, args.batch, args.steps, FORMATS[name])
            rates[name] = fp32, bf16
            print(f"{size}x{size} {name}: float32 {fp32:.1f} img/s, bfloat16 autocast {bf16:.1f} img/s "
                  f"({bf16 / fp32:.2f}x)", flush=True)
        if len(rates) == 2:
            ratios = [fast / slow for fast, slow in zip(rates["channels-last"], rates["contiguous"], strict=True)]
            print(f"{size}x{size} channels-last against contiguous: float32 {ratios[0]:.2f}x, "
                  f"bfloat16 {ratios[1]:.2f}x", flush=True)
        for layer in frozen_names:
            frozen = images_per_second(size, True, args.batch, args.steps, FORMATS[formats[-1]], layer)
            print(f"{size}x{size} {formats[-1]}, frozen through {layer}: bfloat16 autocast {frozen:.1f} img/s "
                  f"({frozen / rates[formats[-1]][1]:.2f}x none frozen)", flush=True)


if __name__ == "__main__":
    main()
