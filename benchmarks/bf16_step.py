"""Training-step throughput in float32 and under bfloat16 autocast, one thread (the speed `--bf16` buys).

Run by hand on a quiet machine:

    .venv/bin/python benchmarks/bf16_step.py            # SqueezeNet v1.1, 10 classes, batch 64, 128 and 160 px

Random tensors, channels-last, SGD with momentum; 3 untimed steps, then 8 timed ones per row. bfloat16 pays where
the CPU has AVX-512 BF16 or AMX; elsewhere oneDNN emulates it and it is slower than float32.
"""

from __future__ import annotations

import argparse
import time

import torch

import squeezenet as sq


def images_per_second(size: int, bf16: bool, batch: int, steps: int) -> float:
    model = sq.build("1_1", num_classes=10).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inputs = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for size in (int(text) for text in args.sizes.split(",")):
        fp32 = images_per_second(size, False, args.batch, args.steps)
        bf16 = images_per_second(size, True, args.batch, args.steps)
        print(f"{size}x{size}: float32 {fp32:.1f} img/s, bfloat16 autocast {bf16:.1f} img/s ({bf16 / fp32:.2f}x)",
              flush=True)


if __name__ == "__main__":
    main()
