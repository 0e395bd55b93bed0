"""How long the paper's design-space sweep takes here, from measured training steps of every point.

    .venv/bin/python benchmarks/explore_budget.py                       # docs/design-space.md's sweep, CIFAR-10
    .venv/bin/python benchmarks/explore_budget.py --target-minutes 90   # epochs that fit 90 minutes
    .venv/bin/python benchmarks/explore_budget.py --steps 1 --warmup 0  # smoke test

For each point of the sweep (by default 5 squeeze ratios + 6 pct_3x3 + 3 bypass modes on the ``cifar``
preset, the shared base counted once: 12 networks) it times ``--steps`` optimizer steps (forward, backward,
SGD update, the training loop's work) at ``--batch-size`` on 32x32 inputs, and one evaluation batch; then
prints the seconds an epoch of CIFAR-10 (50,000 training + 10,000 test images) costs each point, and how
many epochs fit ``--target-minutes`` for the whole sweep. Inputs are random: the cost of a dense convolution
does not depend on the values. Numbers hold for the machine's load at the time; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

import squeezenet as sq
from squeezenet.explore import parse_sweep, plan_points

PAPER_SWEEPS = ("squeeze_ratio=0.125,0.25,0.5,0.75,1.0", "pct_3x3=0.01,0.125,0.25,0.5,0.75,0.99",
                "bypass=none,simple,complex")


def step_seconds(spec: sq.Spec, batch: int, size: int, steps: int, warmup: int,
                 bf16: bool) -> tuple[float, float, float, float]:
    """Median wall and CPU seconds of one training step, then of one evaluation batch, of ``batch`` images.

    CPU seconds (all threads of this process) are what a quiet machine needs; wall seconds grow with the load.
    """
    model = sq.SqueezeNet(spec.replace(num_classes=10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    walls, cpus = [], []
    for step in range(warmup + steps):
        wall, cpu = time.perf_counter(), time.process_time()
        with autocast:
            loss = F.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    model.eval()
    with torch.inference_mode(), autocast:
        wall, cpu = time.perf_counter(), time.process_time()
        model(images)
        eval_wall, eval_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2], eval_wall, eval_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cifar", help="base preset (default cifar)")
    parser.add_argument("--sweep", action="append", default=None, help="as squeezenet explore (default: the paper's)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=50_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per point (default 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--target-minutes", type=float, default=75.0, help="whole-sweep wall time to fit")
    args = parser.parse_args()

    points = plan_points(sq.get_spec(args.arch), [parse_sweep(text) for text in args.sweep or PAPER_SWEEPS])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(points)} points, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"{torch.get_num_threads()} threads, load average {load:.2f}{', bf16' if args.bf16 else ''}")
    print(f"{'point':28} {'params':>9} {'img/s':>6} {'epoch s':>8} {'epoch CPU s':>11}")
    total_wall = total_cpu = 0.0
    for point in points:
        train, train_cpu, evaluate, evaluate_cpu = step_seconds(point.spec, args.batch_size, args.image_size,
                                                                args.steps, args.warmup, args.bf16)
        epoch = (args.train_images * train + args.test_images * evaluate) / args.batch_size
        epoch_cpu = (args.train_images * train_cpu + args.test_images * evaluate_cpu) / args.batch_size
        total_wall, total_cpu = total_wall + epoch, total_cpu + epoch_cpu
        params = sum(p.numel() for p in sq.SqueezeNet(point.spec.replace(num_classes=10)).parameters())
        print(f"{point.slug:28} {params:>9,} {args.batch_size / train:>6.0f} {epoch:>8.1f} {epoch_cpu:>11.1f}",
              flush=True)
    print(f"one epoch of every point: {total_wall / 60:.1f} min wall now, {total_cpu / 60:.1f} CPU-minutes "
          f"(a quiet machine's wall time with 1 thread, about half with 2 cores)")
    for label, seconds in (("now", total_wall), ("quiet, 1 core", total_cpu), ("quiet, 2 cores", total_cpu / 2)):
        print(f"  {args.target_minutes:g} min fit {args.target_minutes * 60 / seconds:.1f} epochs per point "
              f"({label}; data loading and checkpoints not counted)")


if __name__ == "__main__":
    main()
