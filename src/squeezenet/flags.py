"""Command-line flags made from the config dataclasses and the Spec's metaparameters, and read back into them.

One flag per TrainConfig field, so a setting is added once (in ``train.config``) and is at once a flag, a
YAML key and a field of the run folder's config.yaml. The metaparameter, weights and backend flags are shared
by every subcommand that takes them, so they read the same everywhere. Nothing here imports torch: the
command line starts fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .errors import TrainingError
from .spec import MAX_BATCH, MAX_CHANNELS, PRESETS, Metaparameters, Spec, get_spec
from .train.config import (
    DEFAULT_ARCH,
    FINETUNE_RECIPE,
    LIMITS,
    RESUME_OVERRIDES,
    TrainConfig,
    config_from_dict,
    field_type,
    flag_name,
    read_config_file,
)

METAPARAMETERS = {"base_e": int, "incr_e": int, "freq": int, "num_fires": int, "pct_3x3": float,
                  "squeeze_ratio": float}
SPEC_FLAGS = (*METAPARAMETERS, "allow_wide_squeeze")


def add_metaparameter_arguments(group: Any) -> None:
    """--base-e, --incr-e, --freq, --num-fires, --pct-3x3, --squeeze-ratio and --allow-wide-squeeze."""
    for name, kind in METAPARAMETERS.items():
        group.add_argument(flag_name(name), type=kind, help=f"metaparameter {name} (default: the preset's)")
    group.add_argument("--allow-wide-squeeze", action="store_true", default=None,
                       help="allow s1x1 >= e1x1 + e3x3 (needed for squeeze ratios of 1.0)")


def with_metaparameters(spec: Spec, args: argparse.Namespace, rename: bool) -> Spec:
    """``spec`` with the metaparameter flags given; ``rename``: call the result "custom" (no preset named)."""
    given = {name: getattr(args, name) for name in METAPARAMETERS if getattr(args, name, None) is not None}
    overrides: dict[str, Any] = {}
    if given:
        base = spec.fires if isinstance(spec.fires, Metaparameters) else Metaparameters()
        overrides["fires"] = dataclasses.replace(base, **given)
        if rename:
            overrides["name"] = "custom"
    if getattr(args, "allow_wide_squeeze", None):
        overrides["allow_wide_squeeze"] = True
    return spec.replace(**overrides) if overrides else spec


# -- the network and its weights ------------------------------------------------------------------------------------


def integer(low: int, high: int) -> Any:
    """An argparse type: an integer from ``low`` to ``high``, else the one-line error naming the range (every
    numeric flag has one, so --batch-size 0 or --seed 2**70 stops before any work)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low:,} to {high:,}, got {text[:40]}")
        return value
    parse.__name__ = "integer"  # what argparse names in its messages
    return parse


def number(low: float, high: float) -> Any:
    """An argparse type: a finite number in [low, high]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}, got {text[:40]}")
        return value
    parse.__name__ = "number"
    return parse


def sizes(text: str) -> tuple[int, ...]:
    """Comma-separated sizes (batch sizes, input sides), each from 1 to 65,536."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text[:40]!r}") from None
    if not sizes or min(sizes) < 1 or max(sizes) > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"sizes must be from 1 to {MAX_BATCH:,}, got {text[:40]}")
    return sizes


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that pick a preset and override its fields, shared by every subcommand that builds a model."""
    group = parser.add_argument_group("architecture")
    group.add_argument("--arch", default=None, help=f"preset: {', '.join(PRESETS)} (default 1_0)")
    group.add_argument("--num-classes", type=integer(1, MAX_CHANNELS),
                       help="classes of the final conv10 (default: the preset's)")
    group.add_argument("--bypass", choices=("none", "simple", "complex"), help="Section 6 bypass connections")
    add_metaparameter_arguments(group)


def spec_from_args(args: argparse.Namespace, default_arch: str = "1_0") -> Spec:
    spec = with_metaparameters(get_spec(args.arch or default_arch), args, rename=not args.arch)
    overrides: dict[str, object] = {}
    if getattr(args, "num_classes", None) is not None:
        overrides["num_classes"] = args.num_classes
    if getattr(args, "bypass", None):
        overrides["bypass"] = args.bypass
    return spec.replace(**overrides) if overrides else spec


def add_weights_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--weights (a file in any supported format, or a pretrained name), --preprocess, and --arch if absent."""
    from .preprocess import PREPROCESSING_PRESETS
    from .weights.io import extensions
    from .weights.registry import REGISTRY

    group = parser.add_argument_group("weights")
    group.add_argument("--weights", required=required, metavar="PATH",
                       help=f"a weights file ({extensions()}), a model folder (config.json + model.safetensors), "
                            f"hf-hub:ORG/NAME, or a pretrained name ({', '.join(REGISTRY)}); the format is detected")
    group.add_argument("--preprocess", choices=sorted(PREPROCESSING_PRESETS), default=None,
                       help="override the preprocessing that comes with the weights")
    if not any("--arch" in action.option_strings for action in parser._actions):
        group.add_argument("--arch", default=None, choices=sorted(PRESETS),
                           help="architecture the weights are for (default: from the file)")


def add_image_limit_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-image-pixels", type=integer(1, 2**40), default=None, metavar="N",
                        help="refuse images above N pixels as decompression bombs (default: Pillow's 89 million); "
                             "raise it for files you trust")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """--backend, the same for predict and evaluate: which runtime runs the model, pytorch unless asked."""
    from .deploy import BACKEND_CHOICES, BACKENDS

    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="pytorch",
                        help="runtime, float32 on every CPU: pytorch (default; exports nothing), onnxruntime or "
                             "openvino (a weights file is exported to ONNX once and cached; --weights may also be "
                             "a .onnx/.xml file from `squeezenet export`), or auto = the fastest installed, in the "
                             f"order {', '.join(BACKENDS)}. An on-device file (--weights NAME.pte, .tflite or ncnn "
                             ".param) runs in its own runtime: executorch, litert or ncnn")


# -- train --------------------------------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser, metaparameters: bool = True) -> None:
    """One flag per TrainConfig field (unset flags stay None, so --config and --resume can tell what was given),
    and with ``metaparameters`` the spec flags of ``summary``."""
    parser.add_argument("--config", metavar="FILE.yaml", help="read settings from a YAML file (keys are flag names)")
    for item in dataclasses.fields(TrainConfig):
        kind = field_type(item.name)
        help_text = item.metadata["help"]
        if "default" not in help_text:
            help_text += f" (default: {item.default})"
        if item.name in LIMITS:
            help_text += f"; {LIMITS[item.name].describe(kind)}"
        if kind is bool:
            parser.add_argument(flag_name(item.name), action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag_name(item.name), type=kind, default=None, choices=item.metadata.get("choices"),
                                metavar=None if item.metadata.get("choices") else item.name.upper(), help=help_text)
    if metaparameters:
        add_metaparameter_arguments(parser.add_argument_group("architecture (over the --arch preset)"))


def train_config_from_arguments(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed flags: defaults, then --config FILE, then the flags given."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if given.get("resume"):
        fixed = sorted(set(given) - {"resume", *RESUME_OVERRIDES})
        fixed += [name for name in SPEC_FLAGS if getattr(args, name, None) is not None]
        if fixed or args.config:
            shown = ", ".join(flag_name(n) for n in fixed) or "--config"
            raise TrainingError(f"--resume continues the run with its own config.yaml and spec.json; {shown} cannot "
                                f"change (only {', '.join(flag_name(n) for n in RESUME_OVERRIDES)} can)")
    values = read_config_file(args.config) if args.config else {}
    base = config_from_dict(values, str(args.config))
    if given.get("weights") or (base.weights and not given.get("resume")):  # fine-tuning: its recipe's defaults
        base = config_from_dict(values, str(args.config), TrainConfig(**FINETUNE_RECIPE))
    return config_from_dict(given, "command line", base)


def train_spec_from_arguments(args: argparse.Namespace, config: TrainConfig) -> Spec | None:
    """The network the metaparameter flags describe over ``config.arch``; None when none was given (the preset,
    or on --resume the run folder's own spec)."""
    if config.resume or not any(getattr(args, name, None) is not None for name in SPEC_FLAGS):
        return None
    return with_metaparameters(get_spec(config.arch or DEFAULT_ARCH), args, rename=False)


# -- explore ------------------------------------------------------------------------------------------------------


def add_explore_arguments(parser: argparse.ArgumentParser) -> None:
    """train's flags (each point trains with them), with --out, --arch and --time-limit meaning the sweep's,
    plus --sweep, --bypass and --base. ``parser`` must be made with ``conflict_handler="resolve"``: the sweep's
    flags replace train's of the same name."""
    from .explore import SWEEPABLE

    parser.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                        help=f"vary one metaparameter of the base spec ({', '.join(SWEEPABLE)}); repeatable, "
                             "each sweep varies one factor with the others at the base's values")
    parser.add_argument("--base", action="append", default=[], metavar="NAME=VALUE",
                        help="change a metaparameter of the base spec before sweeping (e.g. squeeze_ratio=0.5, "
                             "the base of the paper's Figure 3b)")
    add_train_arguments(parser, metaparameters=False)
    parser.add_argument("--bypass", metavar="MODES", help="short for --sweep bypass=MODES, e.g. none,simple,complex")
    parser.add_argument("--arch", default=None,
                        help="base architecture preset the sweeps vary (default 1_1; cifar suits 32x32 data)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="sweep folder: results.csv, plots, one run folder per point; rerun to continue")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="training seconds per point over all its sessions; a point that reaches it is "
                             "finished with the epochs it completed. A safety cap: the learning-rate schedule "
                             "follows --epochs, the budget (default: none)")
    parser.add_argument("--resume", default=None, help=argparse.SUPPRESS)


def explore_from_arguments(args: argparse.Namespace) -> tuple[str, list[Any], TrainConfig, Spec]:
    """(out, sweeps, training config, base spec) from parsed flags."""
    from .explore import ExploreError, parse_sweep
    from .explore import with_metaparameters as spec_with

    if args.resume:
        raise ExploreError("explore continues a sweep by itself: rerun the same command with the same --out")
    sweeps = [parse_sweep(text) for text in args.sweep]
    if args.bypass is not None:
        sweeps.append(parse_sweep(f"bypass={args.bypass}"))
    config = train_config_from_arguments(argparse.Namespace(**{**vars(args), "bypass": None}))  # the sweep's
    changes: dict[str, Any] = {}
    for text in args.base:
        sweep = parse_sweep(text)
        if len(sweep.values) != 1:
            raise ExploreError(f"--base {text!r}: expected one value, NAME=VALUE")
        changes[sweep.name] = sweep.values[0]
    base = get_spec(config.arch or DEFAULT_ARCH)
    if changes:
        base = spec_with(base, changes, "--base " + " ".join(args.base))
    return args.out, sweeps, config, base
