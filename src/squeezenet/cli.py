"""The ``squeezenet`` command: parse flags, call the public API, print.

Every bad input ends as one line on stderr and exit code 2; nothing here
holds logic that the Python API lacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from .errors import SqueezeNetError
from .files import is_folder, printable
from .flags import (
    add_backend_argument,
    add_image_limit_argument,
    add_spec_arguments,
    add_weights_arguments,
    integer,
    number,
    sizes,
    spec_from_args,
)
from .spec import MAX_BATCH, MAX_CHANNELS, MAX_INPUT_SIZE, PRESETS

if TYPE_CHECKING:
    from .model import SqueezeNet

Handler = Callable[[argparse.Namespace], int]


def load_model(args: argparse.Namespace) -> SqueezeNet:
    """The model named by --weights (and --arch, --preprocess), in eval mode with its preprocessing."""
    from .weights.io import load
    from .weights.registry import resolve

    return load(resolve(args.weights), arch=args.arch, preprocess=args.preprocess)


# -- summary -------------------------------------------------------------------


def _add_summary(parser: argparse.ArgumentParser) -> Handler:
    add_spec_arguments(parser)
    parser.add_argument("--input-size", type=sizes, default=None,
                        help="comma-separated square input sizes (default 224,227; the cifar preset: 32)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_weights_arguments(parser, required=False)
    return _summary


def _summary(args: argparse.Namespace) -> int:
    from .model import build, summary

    model = load_model(args) if args.weights else build(spec_from_args(args))
    spec = model.spec
    sizes = args.input_size or ((32,) if spec.name == "cifar" else (224, 227))
    table = summary(model, sizes)
    print(table.to_json() if args.json else table)
    return 0


# -- models --------------------------------------------------------------------


def _add_models(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--json", action="store_true", help='print {"presets": [...], "pretrained": [...]}')
    return _models


def _models(args: argparse.Namespace) -> int:
    from .text import text_table
    from .zoo import list_models, list_pretrained

    entries = list_pretrained().values()
    if args.json:
        print(json.dumps({"presets": list_models(), "pretrained": [entry.to_dict() for entry in entries]}, indent=2))
        return 0

    def percent(value: float | None) -> str:
        return f"{value:.1%}" if value is not None else "-"

    rows = [[entry.name, entry.arch or "-", f"{entry.num_params:,}" if entry.num_params else "-",
             str(entry.min_input_size or "-"), f"{entry.file_size:,}" if entry.file_size else "-",
             percent(entry.accuracy.top1 if entry.accuracy else None),
             percent(entry.accuracy.top5 if entry.accuracy else None), entry.preprocessing or "-"]
            for entry in entries]
    print(f"presets (sq.build / --arch): {', '.join(list_models())}")
    print("\npretrained weights (sq.build(ARCH, weights=NAME), sq.pretrained(NAME), --weights NAME):")
    print("\n".join(text_table(["name", "arch", "params", "min input", "file bytes", "top-1", "top-5",
                                "preprocessing"], rows)))
    print("top-1/top-5: measured here on the 500 ImageNet sample images (docs/results.md); - = not measured here")
    for entry in entries:
        if entry.accuracy is not None and entry.accuracy.note:
            print(f"  {entry.name}: {entry.accuracy.note}")
    return 0


# -- predict / evaluate ----------------------------------------------------------


def _add_predict(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files or folders; a folder means every image in it and in its subfolders "
                             "(recursively), in sorted path order")
    add_weights_arguments(parser)
    parser.add_argument("--topk", type=integer(1, MAX_CHANNELS), default=5,
                        help="classes to show per image (default 5, or every class when the model has fewer)")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    add_backend_argument(parser)
    add_image_limit_argument(parser)
    return _predict


def _image_arguments(arguments: Sequence[str]) -> list[str]:
    """predict's IMAGE arguments with each folder replaced by its images (images.list_images: recursive, sorted)."""
    from .images import list_images

    images: list[str] = []
    for argument in arguments:
        images.extend(map(str, list_images(argument)) if is_folder(argument) else [argument])
    return images


def _predict(args: argparse.Namespace) -> int:
    from .deploy import inference_model
    from .evaluate import predict
    from .images import set_max_image_pixels

    set_max_image_pixels(args.max_image_pixels)
    images = _image_arguments(args.images)
    model = inference_model(args.weights, args.backend, arch=args.arch, preprocess=args.preprocess)
    results = predict(model, images, topk=args.topk)
    if args.json:
        print(json.dumps([{"image": image, "predictions": [dataclasses.asdict(p) for p in best]}
                          for image, best in zip(images, results, strict=True)], indent=2))
        return 0
    for image, best in zip(images, results, strict=True):
        print(printable(image))
        for prediction in best:
            print(f"  {prediction.probability:7.2%}  {prediction.name} ({prediction.class_index})")
    return 0


def _add_evaluate(parser: argparse.ArgumentParser) -> Handler:
    add_weights_arguments(parser)
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="an ImageFolder tree (class subfolders) or a flat folder with a labels CSV")
    parser.add_argument("--labels", metavar="CSV", help="CSV with filename,class_index columns "
                                                        "(default: DIR/labels.csv for a flat folder)")
    parser.add_argument("--allow-outside-data", action="store_true",
                        help="let the labels CSV name files outside DIR (../ or absolute paths), which are refused "
                             "otherwise")
    parser.add_argument("--batch-size", type=integer(1, MAX_BATCH), default=32, help="images per batch (default 32)")
    parser.add_argument("--workers", type=integer(0, 64), default=0, help="image-decoding worker processes (default 0)")
    parser.add_argument("--json", action="store_true",
                        help='print {"top1": ..., "top5": ..., "n": ...} (fractions; no top5 for 5 classes or fewer)')
    add_backend_argument(parser)
    add_image_limit_argument(parser)
    return _evaluate


def _evaluate(args: argparse.Namespace) -> int:
    from .deploy import inference_model
    from .evaluate import evaluate
    from .images import labelled_images, set_max_image_pixels

    set_max_image_pixels(args.max_image_pixels)
    model = inference_model(args.weights, args.backend, arch=args.arch, preprocess=args.preprocess)
    items, _ = labelled_images(args.data, args.labels, num_classes=model.meta.spec.num_classes,
                               allow_outside=args.allow_outside_data)
    result = evaluate(model, items, batch_size=args.batch_size, workers=args.workers, progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        top5 = f"  top-5 {result.top5:.2%}" if result.top5 is not None else ""
        print(f"top-1 {result.top1:.2%}{top5}  over {result.n} images")
    return 0


# -- serve ---------------------------------------------------------------------


def _add_serve(parser: argparse.ArgumentParser) -> Handler:
    add_weights_arguments(parser)
    add_backend_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                            "only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--name", default="squeezenet", help="the model's name in the URLs (default squeezenet)")
    parser.add_argument("--max-batch", type=int, default=16,
                        help="images of concurrent requests run in one forward pass, at most (default 16; "
                             "1 = one at a time)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long the first image of a batch waits for others (default 5)")
    parser.add_argument("--workers", type=int, default=1, help="server processes, each with the model (default 1)")
    parser.add_argument("--max-body-mb", type=float, default=20.0, help="largest request body (default 20)")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="do not log every request")
    add_image_limit_argument(parser)
    return _serve


def _serve(args: argparse.Namespace) -> int:
    from .serve import ServeOptions, serve

    given = vars(args)  # every flag of serve is a ServeOptions field of the same name
    serve(ServeOptions(**{field.name: given[field.name] for field in dataclasses.fields(ServeOptions)
                          if field.name in given}))
    return 0


# -- train / plot --------------------------------------------------------------


def _add_train(parser: argparse.ArgumentParser) -> Handler:
    from .flags import add_train_arguments

    add_train_arguments(parser)
    return _train


def _train(args: argparse.Namespace) -> int:
    from .flags import train_config_from_arguments, train_spec_from_arguments
    from .train import train

    config = train_config_from_arguments(args)
    try:
        result = train(config, spec=train_spec_from_arguments(args, config))
    except KeyboardInterrupt as interrupt:
        print(f"squeezenet train: interrupted{': ' + str(interrupt) if str(interrupt) else ''}", file=sys.stderr)
        return 130
    if result.main and not result.best:  # stopped (--time-limit) before any epoch was scored
        print(f"stopped: {result.epochs_done} epochs, {result.steps} steps, none scored yet; weights "
              f"{result.run / 'last.safetensors'}; continue with --resume {result.run}")
    elif result.main:
        best = result.best
        score = f"test top-1 {best['test_top1']:.2%}" if "test_top1" in best else f"train loss {best['train_loss']:.4f}"
        print(f"done: {result.epochs_done} epochs, {result.steps} steps; best {score} at epoch {best['epoch']}; "
              f"weights {result.run / 'best.safetensors'}")
    return 0


def _add_plot(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("run", metavar="RUN_DIR", help="a run folder made by `squeezenet train`")
    parser.add_argument("--output", "-o", metavar="PNG", help="where to write (default RUN_DIR/curves.png)")
    return _plot


def _plot(args: argparse.Namespace) -> int:
    from .plots import plot_run

    print(plot_run(args.run, args.output))
    return 0


# -- export / benchmark ----------------------------------------------------------


def _add_export(parser: argparse.ArgumentParser) -> Handler:
    add_weights_arguments(parser)
    parser.add_argument("--format", choices=("onnx", "openvino", "executorch", "tflite", "ncnn"), default="onnx",
                        help="onnx (default); openvino (NAME.xml + NAME.bin); on-device: executorch (NAME.pte, "
                             "XNNPACK), tflite (LiteRT, NHWC input), ncnn (NAME.param + NAME.bin); each device "
                             "format gets NAME.json beside it (class names, preprocessing, input layout) and needs "
                             "its extra: squeezenet[openvino], [executorch], [litert], [ncnn]")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="output file: .onnx, .xml (openvino), .pte, .tflite or .param (ncnn)")
    parser.add_argument("--int8", action="store_true",
                        help="int8 post-training quantization (ONNX Runtime for onnx, NNCF for openvino, the PT2E "
                             "quantizers for executorch and tflite; ncnn: not from Python)")
    parser.add_argument("--calib", metavar="DIR", help="folder of real images to calibrate int8 on (needed by --int8)")
    parser.add_argument("--calib-images", type=integer(1, 100_000), default=100, metavar="N",
                        help="calibration images to use (default 100)")
    parser.add_argument("--input-size", type=integer(1, MAX_INPUT_SIZE), default=None, metavar="S",
                        help="square input side of the graph (default: the preprocessing's crop)")
    return _export


def _export(args: argparse.Namespace) -> int:
    from .deploy import calibration_inputs, export
    from .errors import DataError

    if args.int8 != bool(args.calib):
        raise DataError("--int8 and --calib DIR go together (int8 is calibrated on real images)")
    model = load_model(args)
    calibration = None
    if args.int8:
        if model.preprocess is None:
            raise DataError(f"{args.weights}: the weights carry no preprocessing; pass --preprocess for calibration")
        calibration = calibration_inputs(args.calib, model.preprocess, args.calib_images, args.input_size)
    path = export(model, args.out, args.format, calibration=calibration, input_size=args.input_size)
    print(f"wrote {path} ({args.format}{', int8' if args.int8 else ''}; checked against PyTorch)")
    return 0


def _add_benchmark(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--weights", metavar="PATH", help="weights file (default: random weights; speed is the same)")
    parser.add_argument("--arch", default=None, choices=sorted(PRESETS),
                        help="architecture (default: from --weights, else 1_1)")
    parser.add_argument("--batch", type=sizes, default=(1, 32), help="batch sizes (default 1,32)")
    parser.add_argument("--input-size", type=integer(1, MAX_INPUT_SIZE), default=224, metavar="S",
                        help="square input side (default 224)")
    parser.add_argument("--calib", metavar="DIR", help="real images to calibrate the int8 rows on (else skipped)")
    parser.add_argument("--calib-images", type=integer(1, 100_000), default=100, metavar="N")
    parser.add_argument("--warmup", type=integer(0, 100_000), default=10,
                        help="untimed calls per batch size (default 10)")
    parser.add_argument("--rounds", type=integer(1, 1_000), default=5,
                        help="round-robin rounds over the backends, at least (default 5)")
    parser.add_argument("--max-seconds", type=number(0, 3600), default=60.0,
                        help="after --rounds, more rounds until no row's median moves by over 2%% or this many "
                             "seconds of timing have passed (default 60; 0: --rounds only)")
    parser.add_argument("--calls", type=sizes, default=None,
                        help="timed calls per round for each batch size, ascending (default 40 at batch 1, "
                             "else 128/batch)")
    parser.add_argument("--backends", type=lambda text: tuple(text.split(",")), default=None,
                        help="comma-separated subset of rows to run (default all)")
    parser.add_argument("--json", action="store_true", help='print {"rows": [...], ...}')
    return _benchmark


def _benchmark(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmark
    from .model import build
    from .preprocess import get_preprocessing
    from .weights.io import load
    from .weights.registry import resolve

    if args.weights:
        model = load(resolve(args.weights), arch=args.arch)
    else:  # random weights run as fast; give them the Caffe recipe the 1_0/1_1 releases use, for int8 calibration
        model = build(args.arch or "1_1")
        model.meta = model.meta.replace(preprocessing=get_preprocessing("caffe"))
    progress = None if args.json else (lambda message: print(f"[{message}]", file=sys.stderr, flush=True))
    report = run_benchmark(model, weights=args.weights, batches=args.batch, input_size=args.input_size,
                           warmup=args.warmup, rounds=args.rounds, calls=args.calls, calib_dir=args.calib,
                           max_seconds=args.max_seconds,
                           calib_images=args.calib_images, only=args.backends, progress=progress)
    print(report.to_json() if args.json else report)
    return 0


# -- explore -------------------------------------------------------------------


def _add_explore(parser: argparse.ArgumentParser) -> Handler:
    from .flags import add_explore_arguments

    add_explore_arguments(parser)
    return _explore


def _explore(args: argparse.Namespace) -> int:
    from .explore import explore
    from .flags import explore_from_arguments

    out, sweeps, config, base = explore_from_arguments(args)
    try:
        result = explore(out, sweeps, config, base, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print(f"squeezenet explore: interrupted; rerun the same command to continue the sweep in {out}",
              file=sys.stderr)
        return 130
    print(f"{len(result.rows)} points finished ({result.trained} trained now); {result.csv}; "
          f"plots: {', '.join(str(p) for p in result.plots) or 'none yet'}")
    return 0


# -- compress --------------------------------------------------------------------


def _add_compress(parser: argparse.ArgumentParser) -> Handler:
    from .compress.config import AUTO_INIT, CompressConfig
    from .compress.quantize import INITS

    default = CompressConfig()  # the flags' defaults are the API's
    add_weights_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="FILE.sqz, or FILE.net for the paper's layout")
    parser.add_argument("--prune", default=default.prune, metavar="paper|none|DENSITY",
                        help="paper: Table 1's per-layer densities; none (default): keep every non-zero weight; "
                             "or one density in (0, 1] for every layer")
    parser.add_argument("--bits", type=integer(1, 8), default=default.bits,
                        help="bits per shared-weight code, 1..8 (default 6)")
    parser.add_argument("--bits-per-layer", metavar="SPEC",
                        help='per-layer bits over --bits, by layer name or pattern: "conv1=8,fire*.squeeze=7"')
    parser.add_argument("--init", choices=(AUTO_INIT, *INITS), default=default.init,
                        help="k-means start: auto (default) = linear with --finetune-data (the paper's, best when "
                             "fine-tuning follows), else kmeans++ (closest fit without fine-tuning); or density")
    parser.add_argument("--calib", metavar="DIR",
                        help="unlabelled images (for models whose training data is not at hand): weigh each "
                             "weight's k-means error by its Fisher information on them, and correct each layer's "
                             "mean shift after sharing on them")
    parser.add_argument("--calib-images", type=integer(1, 100_000), default=default.calib_images, metavar="N",
                        help="calibration images to use, the first N in sorted order (default 100)")
    parser.add_argument("--no-fisher", dest="fisher", action="store_false",
                        help="with --calib: use the images for bias correction only")
    parser.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                        help="with --calib: use the images for the Fisher weighting only")
    parser.add_argument("--rate-cost", type=number(0, 1e6), default=default.rate_cost,
                        help="trade k-means error for shorter Huffman codes (entropy-constrained; try 1e-5 with "
                             "--calib; default 0: off)")
    parser.add_argument("--huffman", action="store_true", help="Huffman-code codes and gaps (each where smaller)")
    parser.add_argument("--layout", choices=("auto", "sparse", "dense"), default=default.layout,
                        help="sparse (relative indices), dense (a code per weight) or auto: smaller per layer")
    parser.add_argument("--gap-bits", default=str(default.gap_bits), metavar="N|auto",
                        help="bits of a relative index in the sparse layout, 1..8, or auto (default 4)")
    parser.add_argument("--codebook", dest="codebook_dtype", choices=("float32", "float16"),
                        default=default.codebook_dtype, help="shared-value type")
    parser.add_argument("--bias", dest="raw_dtype", choices=("float32", "float16"), default=default.raw_dtype,
                        help="bias type")
    parser.add_argument("--finetune-data", metavar="DATA",
                        help="fine-tune after pruning and after sharing on this training data (digits, a folder, "
                             "a .tar.gz) with the training loop")
    parser.add_argument("--epochs", type=integer(1, 10_000), default=default.epochs,
                        help="fine-tuning epochs per stage (default 1)")
    parser.add_argument("--lr", type=number(0, 1_000), default=default.lr,
                        help="fine-tuning learning rate (default 0.004)")
    parser.add_argument("--finetune-out", metavar="DIR", help="fine-tuning run folders (default FILE.finetune)")
    parser.add_argument("--eval-data", metavar="DATA",
                        help="measure top-1/top-5 before and after: labelled images (labels.csv or class "
                             "folders) or a training dataset's test split")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return _compress


def _compress(args: argparse.Namespace) -> int:
    from .compress import compress
    from .compress.config import CompressConfig
    from .compress.prune import parse_prune

    from_text: dict[str, Callable[[str], object]] = {"prune": parse_prune, "gap_bits": _gap_bits}
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(CompressConfig)
              if hasattr(args, field.name)}  # each flag's dest is the name of its field
    config = CompressConfig(**{name: from_text[name](value) if name in from_text else value
                               for name, value in values.items()})
    result = compress(args.weights, args.out, config)
    print(result.report.to_json() if args.json else result.report)
    if config.calib is None and config.finetune_data is None:
        print("squeezenet compress: hint: without fine-tuning data, --calib DIR (about 100 unlabelled images) "
              "measured much better: at 6 bits, top-1 -0.38 points instead of -1.25 (see docs/compression.md)",
              file=sys.stderr)
    return 0


def _gap_bits(text: str) -> int | str:
    from .compress import CompressionError

    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise CompressionError(f"--gap-bits must be an integer or auto, got {text!r}") from None


# -- main ----------------------------------------------------------------------


class Command(NamedTuple):
    help: str  # the line `squeezenet --help` shows
    add: Callable[[argparse.ArgumentParser], Handler]  # adds the subcommand's flags, returns what runs it
    description: str | None = None  # the text above its options in `squeezenet COMMAND --help`
    replaces_flags: bool = False  # later flags of the same name replace earlier ones (explore over train's)


COMMANDS: dict[str, Command] = {
    "summary": Command("the paper's Table 1 for any spec: sizes, filters, params, MACs", _add_summary),
    "models": Command("the presets and the pretrained weights: parameters, sizes, accuracy", _add_models),
    "predict": Command("the most probable classes of each image (or of a folder's images)", _add_predict),
    "evaluate": Command("top-1/top-5 accuracy over a labelled image folder", _add_evaluate),
    "train": Command("train from scratch or fine-tune pretrained weights (--weights) on digits, CIFAR-10 or "
                     "an image folder (resumable, DDP)", _add_train,
                     "Train a SqueezeNet. Defaults are the paper's recipe, or with --weights the fine-tuning recipe; "
                     "the run folder (--out) gets checkpoints, metrics, the config and the spec. Under torchrun, "
                     "every process trains on its share of each batch."),
    "plot": Command("draw a run's loss, accuracy and learning-rate curves to a PNG", _add_plot),
    "export": Command("write ONNX, OpenVINO IR, ExecuTorch, LiteRT or ncnn (optionally int8), each run in its "
                      "runtime and checked against PyTorch", _add_export),
    "serve": Command("serve a model over HTTP: TorchServe-style predictions, KServe v2, /metrics, a page",
                     _add_serve, "Serve --weights over HTTP with dynamic batching: POST /predictions/NAME (an "
                     "image, or a multipart form of several), the Open Inference Protocol under /v2, Prometheus "
                     "/metrics, and a page at / to drop images on. SIGTERM or Ctrl-C drain the requests in "
                     "flight, then stop."),
    "benchmark": Command("CPU latency and throughput of every inference backend, one run", _add_benchmark),
    "explore": Command("design-space sweeps (Figure 3, bypass): train each point, CSV, plots", _add_explore,
                       "Train networks that differ from a base spec in one metaparameter at a time, under the same "
                       "training settings; write DIR/results.csv and Figure-3-style plots. Rerun the same command "
                       "to continue a sweep.", replaces_flags=True),  # its --out, --arch, --time-limit: the sweep's
    "compress": Command("Deep Compression: prune, share weights, Huffman-code into a .sqz file", _add_compress,
                        "Prune by magnitude, share weights by k-means, optionally fine-tune and Huffman-code, and "
                        "write a .sqz file that `squeezenet evaluate/predict --weights` and sq.load read (or, with "
                        "FILE.net and 8-bit codes, the paper's own layout). Prints a per-layer table of bytes."),
}

DESCRIPTION = """\
SqueezeNet (Iandola et al., 2016) from the paper's metaparameters: build any variant, load the real
pretrained weights, predict and evaluate, train and fine-tune, compress, export and benchmark.

examples:
  squeezenet summary --arch 1_1
  squeezenet predict photo.jpg --weights 1_1-caffe
  squeezenet train --data digits --arch cifar --epochs 10 --out runs/digits
  squeezenet train --weights 1_1-caffe --data my_photos/ --out runs/mine
  squeezenet export --weights runs/digits/best.safetensors --out digits.onnx
  squeezenet serve --weights 1_1-caffe --port 8080

`squeezenet COMMAND --help` lists a command's options."""


def make_parser(commands: Collection[str] | None = None) -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The parser, with the flags of ``commands`` (default all); the others are listed by name only, so that
    `squeezenet --help` or one subcommand does not import what every other subcommand needs."""
    from . import __version__

    parser = OneLineParser(prog="squeezenet", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"squeezenet {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    handlers: dict[str, Handler] = {}
    for name, command in COMMANDS.items():
        subparser = subcommands.add_parser(name, help=command.help, description=command.description,
                                           conflict_handler="resolve" if command.replaces_flags else "error")
        if commands is None or name in commands:
            handlers[name] = command.add(subparser)
    return parser, handlers


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad flag reported in one line like every other error (argparse prints the usage above
    it); ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((word for word in argv if not word.startswith("-")), None)
    parser, handlers = make_parser([chosen] if chosen in COMMANDS else [])
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except SqueezeNetError as error:
        print(f"squeezenet {args.command}: error: {printable(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"squeezenet {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
