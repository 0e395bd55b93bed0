"""Fine-tuning the pretrained SqueezeNet v1.1 on few images, against a linear probe and training from scratch.

Run by hand (minutes each; one at a time on a quiet machine):

    .venv/bin/python benchmarks/finetune_bench.py recipe               # the learning rate of the recipe
    .venv/bin/python benchmarks/finetune_bench.py fewshot              # (a) fine-tune vs probe vs scratch
    .venv/bin/python benchmarks/finetune_bench.py first-model          # (c) a 500-image folder to best.safetensors
    .venv/bin/python benchmarks/finetune_bench.py full --sizes 96,128  # (b) all of CIFAR-10, 30 minutes a size
    .venv/bin/python benchmarks/finetune_bench.py full --head-epochs 2 # (b) LP-FT: the head first, in the budget
    .venv/bin/python benchmarks/finetune_bench.py stages --bf16        # (b) 96 px, then 160 px, 30 minutes in all
    .venv/bin/python benchmarks/finetune_bench.py small-scratch        # from random weights, 180 photos, defaults
    .venv/bin/python benchmarks/finetune_bench.py stem                 # linear probes: input size x conv1 stride
    .venv/bin/python benchmarks/finetune_bench.py views RUN            # a (b) run's weights under each test view
    .venv/bin/python benchmarks/finetune_bench.py speed --bf16         # (b) the loop's img/s by size and --freeze

The data is CIFAR-10 from ../shared (JPEG files): a fixed, seeded subset of N training images per class,
laid out as an ImageFolder (train/ + val/ of symbolic links), so every run goes through `squeezenet train`
exactly as a user's folder would; (b) reads the whole archive from ../shared. Each run is its own `squeezenet
train` process (two single-threaded ones under torchrun with --processes 2); the figures come from its run
folder's metrics.jsonl.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from shared_files import CAFFEMODEL_V11, CIFAR10
from squeezenet.machine import watched

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def unpacked(cache: Path) -> Path:
    """CIFAR-10's JPEG files, unpacked once under ``cache``."""
    root = cache / "cifar10-jpeg"
    if not (root / "train").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(CIFAR10) as archive:
            archive.extractall(root, filter="data")
    return root


def folder(cache: Path, per_class: int, test_per_class: int | None) -> Path:
    """train/ with ``per_class`` images of each class (seed 0), val/ with ``test_per_class`` test images of each
    (None: all 1,000), as symbolic links."""
    source = unpacked(cache)
    target = cache / f"cifar10-{per_class}-{test_per_class or 'all'}"
    if target.is_dir():
        return target
    picker = random.Random(0)
    for split, count in (("train", per_class), ("val", test_per_class)):
        for name in CLASSES:
            files = sorted((source / ("train" if split == "train" else "test") / name).iterdir())
            chosen = sorted(picker.sample(files, count)) if count is not None else files
            (target / split / name).mkdir(parents=True, exist_ok=True)
            for file in chosen:
                (target / split / name / file.name).symlink_to(file)
    return target


def train(data: Path, out: Path, *flags: str, processes: int = 1) -> dict[str, object]:
    """One `squeezenet train` run (``processes`` > 1: single-threaded processes under torchrun); its wall time
    and last metrics."""
    launcher, environment = [sys.executable, "-m"], dict(os.environ)
    if processes > 1:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        if torchrun is None:
            sys.exit("torchrun is not installed beside this Python")
        launcher = [torchrun, "--standalone", f"--nproc-per-node={processes}", "-m"]
        environment.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    command = [*launcher, "squeezenet", "train", "--data", str(data), "--out", str(out), "--no-progress", *flags]
    print("$", " ".join(command[len(launcher) - 1:]), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()] \
        if (out / "metrics.jsonl").is_file() else []
    if result.returncode != 0 or not records:  # e.g. the stall at ln(classes): a result of its own, reported
        said = [line for line in result.stderr.splitlines() if "error" in line.lower()] or \
            result.stderr.strip().splitlines() or ["(nothing on stderr)"]  # torchrun ends in a banner: find the error
        reason = said[-1][:300] if result.returncode else "no epoch finished in time"
        row = {"run": str(out), "wall_seconds": round(wall, 1), "epochs": len(records), "failed": reason}
        print(json.dumps(row), flush=True)
        return row
    last = records[-1]
    row = {"run": str(out), "wall_seconds": round(wall, 1), "epochs": len(records),
           "train_seconds": round(last["elapsed_seconds"], 1), "images_per_s": round(last["images_per_s"], 1),
           "test_top1": last.get("test_top1"),
           "best_top1": max(r.get("test_top1", 0.0) for r in records)}
    print(json.dumps(row), flush=True)
    return row


def recipe(args: argparse.Namespace) -> None:
    """The fine-tuning learning rate: 50 images per class, scored on 100 test images per class."""
    data = folder(args.cache, 50, 100)
    rows = {lr: train(data, args.out / f"recipe-lr{lr}", "--weights", str(CAFFEMODEL_V11), "--lr", lr)
            for lr in args.lrs.split(",")}
    print(json.dumps({"recipe": rows}))


def fewshot(args: argparse.Namespace) -> None:
    """(a): 50 images per class, the full 10,000 test images, the same budget for each way of training."""
    data = folder(args.cache, 50, None)
    budget = ["--time-limit", str(args.budget_minutes * 60), "--eval-every", "1000"]
    epochs = ["--epochs", str(args.epochs)]
    tuned = args.finetune_flags.split()  # a recipe to try over the defaults, e.g. "--lr 0.03 --backbone-lr-scale 0.1"
    tag = "-" + "".join(part.lstrip("-") for part in tuned) if tuned else ""
    runs = {  # each with the defaults a user gets: the fine-tuning recipe, or from scratch the small-data one
        "fine-tuned": (f"fewshot-finetune{tag}", "--weights", str(CAFFEMODEL_V11), *tuned),
        "linear probe": ("fewshot-probe", "--weights", str(CAFFEMODEL_V11), "--train", "classifier"),
        "from scratch": ("fewshot-scratch", "--arch", "1_1", "--image-size", "227"),
    }
    chosen = args.rows.split(",") if args.rows else list(runs)
    rows = {name: train(data, args.out / runs[name][0], *runs[name][1:], *epochs, *budget)
            for name in chosen if name in runs}
    if "probe then fine-tuned" in chosen:  # LP-FT (Kumar et al., 2022): a trained head first, so the backbone's
        # first steps are not spent on the gradients of a random one. Both stages share the budget; the probe
        # trains on train/ alone (no split held out: --val-fraction 0), so it scores nothing, and is charged its
        # whole wall time
        probe = train(data / "train", args.out / "fewshot-lpft-probe", "--weights", str(CAFFEMODEL_V11), "--train",
                      "classifier", "--val-fraction", "0", "--epochs", str(args.probe_epochs), *budget)
        left = args.budget_minutes * 60 - probe["wall_seconds"]
        tuned_row = train(data, args.out / f"fewshot-lpft{tag}", "--weights",
                          str(args.out / "fewshot-lpft-probe" / "last.safetensors"), *tuned,
                          "--epochs", str(args.lpft_epochs), "--time-limit", str(round(left)), "--eval-every", "1000")
        rows["probe then fine-tuned"] = {"probe": probe, **tuned_row, "seconds_both": round(
            probe["wall_seconds"] + tuned_row.get("train_seconds", 0.0), 1)}
    print(json.dumps({"fewshot": rows}))


def small_scratch(args: argparse.Namespace) -> None:
    """A user's first run from random weights: `squeezenet train --data FOLDER` with every default on 180 photos of
    3 classes (60 each; the run holds out 20%), which the paper's recipe refuses (fewer than one batch of 1024)."""
    source = unpacked(args.cache)
    target = args.cache / "cifar10-3x60"
    if not target.is_dir():
        for name in CLASSES[:3]:
            (target / name).mkdir(parents=True)
            for file in sorted((source / "train" / name).iterdir())[:60]:
                (target / name / file.name).symlink_to(file)
    rows = {"defaults": train(target, args.out / "small-defaults"),
            "paper recipe, batch 32": train(target, args.out / "small-paper-b32", "--recipe", "paper",
                                            "--batch-size", "32")}
    print(json.dumps({"small_scratch": rows}))


def first_model(args: argparse.Namespace) -> None:
    """(c): `squeezenet train --weights` on a 500-image folder with every default, to best.safetensors."""
    data = folder(args.cache, 50, None) / "train"  # one folder: the run holds out its own validation split
    row = train(data, args.out / "first-model", "--weights", str(CAFFEMODEL_V11))
    print(json.dumps({"first_model": row}))


def _probe(args: argparse.Namespace, name: str, size: int, epochs: int, lr: float | None = None,
           flags: tuple[str, ...] = ()) -> dict[str, object]:
    """A short run on 2,048 training images at ``size``: it times the steps and scoring (with ``flags``, which may
    change both, e.g. --freeze or --test-shift), and decodes the archive at that size into the cache once, before
    the timed runs."""
    return train(CIFAR10, args.out / name, "--weights", str(CAFFEMODEL_V11), *_run_flags(args, size, lr), *flags,
                 "--epochs", str(epochs), "--subset", "2048", "--eval-every", "1000", processes=args.processes)


def _run_flags(args: argparse.Namespace, size: int | str, lr: float | str | None) -> list[str]:
    """What every CIFAR-10 run of the (b) modes shares: its size, images decoded once into the cache, the batch,
    the peak lr (None: the recipe's) and bfloat16."""
    return ["--image-size", str(size), "--cache", "on", "--batch-size", str(args.batch_size),
            *(["--lr", str(lr)] if lr else []), *(["--bf16"] if args.bf16 else [])]


def full(args: argparse.Namespace) -> None:
    """(b): all 50,000 training images, the 10,000 test images, ``--budget-minutes`` of training at each size.

    The cosine schedule has to end inside the budget, so each size first runs a short probe (two epochs on 2,048
    images, then scoring the test set; it also decodes the archive at that size once into the cache): its
    second epoch's img/s and its scoring time set the epochs, as many as 92% of the budget holds after four flipped
    scorings. The probe's time is not counted in the budget."""
    rows = {}
    for size in (int(text) for text in args.sizes.split(",")):
        common = _run_flags(args, size, args.lr)
        probe = _probe(args, f"full-{size}-probe", size, epochs=2, lr=args.lr, flags=tuple(args.finetune_flags.split()))
        if "failed" in probe:
            rows[size] = probe
            continue
        records = [json.loads(line) for line in
                   (args.out / f"full-{size}-probe" / "metrics.jsonl").read_text().splitlines()]
        rate = records[-1]["images_per_s"]  # the second epoch: the first one's slow first steps left out
        # the 10,000 test images once, after the last epoch; flipped too: twice that
        scoring = probe["train_seconds"] - sum(record["epoch_seconds"] for record in records)
        training = args.budget_minutes * 60 - 4 * 2 * scoring
        epochs = args.full_epochs or max(1, math.floor(0.92 * training * rate / 50_000))
        print(f"{size}px: {rate:.0f} img/s, {scoring:.0f} s to score in the probe -> {epochs} epochs"
              + (" (--full-epochs)" if args.full_epochs else ""), flush=True)
        start, budget, head = CAFFEMODEL_V11, args.budget_minutes * 60, {}
        if args.head_epochs:  # LP-FT: conv10 trained on the frozen backbone first, in the budget; the fine-tuning
            # then starts from a trained head instead of a random one. (At 128 px the features of all of CIFAR-10
            # fit the probe's feature cache in bfloat16 only, with --bf16; in float32 each epoch runs the backbone.)
            head = train(CIFAR10, args.out / f"full-{size}-head", "--weights", str(start), *common, "--train",
                         "classifier", "--dropout", "0", "--epochs", str(args.head_epochs), "--eval-every", "1000",
                         "--time-limit", str(budget), processes=args.processes)
            start, budget = args.out / f"full-{size}-head" / "last.safetensors", budget - head["wall_seconds"]
        rows[size] = {"probe_images_per_s": rate, **({"head": head} if head else {}), **train(
            CIFAR10, args.out / f"full-{size}", *common, "--weights", str(start), "--epochs", str(epochs),
            "--warmup-epochs", "0.3", "--test-flip", "--eval-every", str(max(1, math.ceil(epochs / 3))),
            "--time-limit", str(round(budget)), *args.finetune_flags.split(), processes=args.processes)}
    print(json.dumps({"full": rows}))


def progressive(args: argparse.Namespace) -> None:
    """(b) in stages: the first at a small size (fast epochs), each next one fine-tunes the previous stage's
    last weights at a larger size, where the pretrained features see more pixels; ``--budget-minutes`` is the
    training time of all stages together (each gets what the earlier ones left as its time limit).

    Each size's data is decoded into the cache by an untimed one-epoch probe on 2,048 images first, so no stage
    pays for decoding. A stage scores the test set (flipped too) once, at its end."""
    plan = [tuple(part.split(":")) for part in args.stages.split(",")]
    for size in dict.fromkeys(int(stage[0]) for stage in plan):
        probe = _probe(args, f"stages-{size}-probe", size, epochs=1)
        if "failed" in probe:  # the stages would fail the same way, after the same wait
            print(json.dumps({"stages": [{"size": size, "probe": probe}]}))
            return
    weights, spent, rows = CAFFEMODEL_V11, 0.0, []
    for number, (size, epochs, *lr) in enumerate(plan, start=1):
        out = args.out / f"stages-{number}-{size}px"
        row = train(CIFAR10, out, "--weights", str(weights), *_run_flags(args, size, lr[0] if lr else args.lr),
                    "--epochs", epochs, "--warmup-epochs", "0.3" if number == 1 else "0.1", "--test-flip",
                    "--eval-every", epochs, "--time-limit", str(round(args.budget_minutes * 60 - spent)),
                    processes=args.processes)
        rows.append({"size": int(size), **row})
        if "failed" in row:
            break
        spent += row["train_seconds"]
        weights = out / "last.safetensors"
    print(json.dumps({"stages": rows, "train_seconds": round(spent, 1)}))


def speed(args: argparse.Namespace) -> None:
    """How fast the (b) loop trains at each SIZE:FROZEN (`--freeze`; none: every layer trains), on ``--per-class``
    training images of each class: two epochs, the second one timed (the first pays for the first steps)."""
    data, rows = folder(args.cache, args.per_class, args.test_per_class), []
    for text in args.speeds.split(","):
        size, frozen = text.split(":")
        run = train(data, args.out / f"speed-{size}-{frozen}", "--weights", str(CAFFEMODEL_V11),
                    *_run_flags(args, size, args.lr), *(["--freeze", frozen] if frozen != "none" else []),
                    "--epochs", "2", "--eval-every", "1000", processes=args.processes)
        row = {"size": int(size), "frozen": frozen, **run}  # images_per_s: the last (second) epoch's
        if "failed" not in run:
            ratio = row["images_per_s"] / rows[0]["images_per_s"] if rows and "images_per_s" in rows[0] else 1.0
            print(f"{size}px, {frozen} frozen: {row['images_per_s']:.1f} img/s ({ratio:.2f}x the first row)",
                  flush=True)
        rows.append(row)
    print(json.dumps({"speed": rows}))


def stem(args: argparse.Namespace) -> None:
    """Which input size and conv1 stride give the pretrained v1.1 the most useful features for CIFAR-10, by a
    quick proxy: logistic regression on the standardised, pooled fire9 features (no fine-tuning) of
    ``--per-class`` training images per class, scored on ``--test-per-class`` test images per class. Stride 1 at
    half the size costs what stride 2 costs at the full size (the same maps after conv1)."""
    import numpy as np
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from torchvision.transforms.v2 import functional as F

    import squeezenet as sq

    data = folder(args.cache, args.per_class, args.test_per_class)

    def images(split: str) -> tuple[torch.Tensor, np.ndarray]:
        files = [(file, label) for label, name in enumerate(CLASSES)
                 for file in sorted((data / split / name).iterdir())]
        return (torch.stack([F.pil_to_tensor(Image.open(file).convert("RGB")) for file, _ in files]),
                np.array([label for _, label in files]))

    def features(model: sq.SqueezeNet, size: int, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([model.forward_features(model.meta.preprocessing.normalize(
                F.resize(part, [size, size], antialias=True))).mean((2, 3)) for part in batch.split(250)]).numpy()

    (train_images, train_labels), (test_images, test_labels) = images("train"), images("val")
    rows = []
    for size, stride in (tuple(int(n) for n in part.split(":")) for part in args.stems.split(",")):
        model = sq.build(weights=str(CAFFEMODEL_V11), conv1_stride=stride).eval()
        started = time.perf_counter()
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=args.probe_iterations)).fit(
            features(model, size, train_images), train_labels)  # standardised: Caffe's features run into the 100s
        rows.append({"size": size, "conv1_stride": stride, "probe_top1": round(probe.score(
            features(model, size, test_images), test_labels), 4), "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"stem": rows}))


def views(args: argparse.Namespace) -> None:
    """A (b) run's saved weights scored on the 10,000 test images under each test view (none, flip, flip and two
    moved copies), in one process; with --ema-decay, the weights as trained (state.pt) beside their average."""
    import torch

    import squeezenet as sq
    from squeezenet.data import load_datasets
    from squeezenet.evaluate import Tally
    from squeezenet.train import TrainConfig, load_config
    from squeezenet.train.loop import test_logits

    run = args.run
    config = load_config(run / "config.yaml")
    saved = sq.load(run / "last.safetensors")
    networks = {"saved": saved}
    state = torch.load(run / "state.pt", weights_only=True)
    if "trained_weights" in state:
        networks["as trained"] = copy.deepcopy(saved)
        networks["as trained"].load_state_dict(state["trained_weights"])
    data = load_datasets(CIFAR10, config.image_size, cache="on", preprocessing=saved.meta.preprocessing)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    rows = []
    for flip, shift in ((False, 0), (True, 0), (True, config.test_shift or 8)):
        scoring = TrainConfig(test_flip=flip, test_shift=shift, channels_last=config.channels_last)
        for name, network in networks.items():
            network.eval().to(memory_format=layout)
            tally = Tally(network.spec.num_classes)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                for start in range(0, len(data.test), 500):
                    batch, labels = data.test.batch([(i, 0) for i in range(start, min(start + 500, len(data.test)))])
                    tally.add(test_logits(network, data.normalize(batch).contiguous(memory_format=layout), scoring),
                              labels)
            rows.append({"weights": name, "flip": flip, "shift": shift, "top1": round(tally.accuracy().top1, 4)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"views": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("recipe", "fewshot", "first-model", "full", "stages", "small-scratch", "stem",
                                         "views", "speed"))
    parser.add_argument("run", type=Path, nargs="?", help="views: the run folder of a (b) run")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "squeezenet-bench")
    parser.add_argument("--out", type=Path, default=Path("runs/finetune-bench"))
    parser.add_argument("--lrs", default="0.003,0.01,0.03", help="recipe: learning rates to try")
    parser.add_argument("--epochs", type=int, default=30, help="fewshot: epochs for each run")
    parser.add_argument("--rows", default=None, help="fewshot: which runs, e.g. 'linear probe,from scratch' "
                                                     "(default: fine-tuned, linear probe, from scratch; also "
                                                     "'probe then fine-tuned')")
    parser.add_argument("--probe-epochs", type=int, default=10, help="fewshot: epochs of the probe before "
                                                                      "'probe then fine-tuned' fine-tunes")
    parser.add_argument("--lpft-epochs", type=int, default=28, help="fewshot: epochs of fine-tuning after the "
                                                                     "probe in 'probe then fine-tuned'")
    parser.add_argument("--finetune-flags", default="", help="fewshot, full: train flags over the recipe for the "
                                                             "fine-tuned runs, e.g. '--label-smoothing 0.1'")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="training time of each run (default: fewshot 10, full and stages 30)")
    parser.add_argument("--sizes", default="96,128", help="full: input sizes to fine-tune at, one run each")
    parser.add_argument("--batch-size", type=int, default=128, help="full, stages, speed: batch per step")
    parser.add_argument("--lr", type=float, default=0.012, help="full, stages: peak lr (the recipe's 0.003 at "
                                                                  "batch 32, scaled to the batch)")
    parser.add_argument("--stages", default="96:4,160:3:0.006",
                        help="stages: SIZE:EPOCHS[:PEAK_LR] in order, each from the previous stage's weights")
    parser.add_argument("--processes", type=int, default=2, help="full, stages, speed: training processes (torchrun)")
    parser.add_argument("--full-epochs", type=int, default=None,
                        help="full: epochs of each run instead of the probe's estimate (its 16 steps include the "
                             "kernels' first-call cost, which bfloat16 makes large)")
    parser.add_argument("--head-epochs", type=int, default=0, help="full: first train conv10 alone on the frozen "
                        "features for this many epochs, in the budget (LP-FT), then fine-tune every layer from it")
    parser.add_argument("--per-class", type=int, default=500, help="stem, speed: training images per class")
    parser.add_argument("--test-per-class", type=int, default=200, help="stem, speed: test images per class")
    parser.add_argument("--stems", default="128:2,64:1,160:2,80:1,96:1", help="stem: SIZE:CONV1_STRIDE, one probe each")
    parser.add_argument("--probe-iterations", type=int, default=2000, help="stem: the logistic regression's limit")
    parser.add_argument("--speeds", default="128:none,128:conv1,128:fire3,144:fire3,160:fire3,160:fire5",
                        help="speed: SIZE:FROZEN (a --freeze layer, or none), one short run each")
    parser.add_argument("--bf16", action="store_true", help="full, stages, speed: bfloat16 autocast (faster where the "
                                                            "CPU has AVX-512 BF16 or AMX)")
    args = parser.parse_args()
    if args.mode == "views" and args.run is None:
        parser.error("views needs the run folder of a (b) run")
    if args.budget_minutes is None:
        args.budget_minutes = 30.0 if args.mode in ("full", "stages") else 10.0
    modes = {"recipe": recipe, "fewshot": fewshot, "first-model": first_model, "full": full,
             "stages": progressive, "small-scratch": small_scratch, "stem": stem, "views": views, "speed": speed}
    with watched(lambda line: print(line, flush=True)):  # the figures are results only if the machine stayed quiet
        modes[args.mode](args)


if __name__ == "__main__":
    main()
