"""The ``squeezenet`` command: parse flags, call the public API, print.

Every bad input ends as one line on stderr and exit code 2; nothing here
holds logic that the Python API lacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence

from .errors import SqueezeNetError
from .model import build, summary
from .spec import PRESETS, Metaparameters, Spec, get_spec

Handler = Callable[[argparse.Namespace], int]


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that pick a preset and override its fields, shared by every subcommand that builds a model."""
    group = parser.add_argument_group("architecture")
    group.add_argument("--arch", default=None, help=f"preset: {', '.join(PRESETS)} (default 1_0)")
    group.add_argument("--num-classes", type=int, help="classes of the final conv10 (preset's default)")
    for name in ("base_e", "incr_e", "freq", "num_fires"):
        group.add_argument("--" + name.replace("_", "-"), type=int, help=f"metaparameter {name}")
    for name in ("pct_3x3", "squeeze_ratio"):
        group.add_argument("--" + name.replace("_", "-"), type=float, help=f"metaparameter {name}")
    group.add_argument("--bypass", choices=("none", "simple", "complex"), help="Section 6 bypass connections")
    group.add_argument("--allow-wide-squeeze", action="store_true",
                       help="allow s1x1 >= e1x1 + e3x3 (needed for squeeze ratios of 1.0)")


def spec_from_args(args: argparse.Namespace, default_arch: str = "1_0") -> Spec:
    spec = get_spec(args.arch or default_arch)
    overrides: dict[str, object] = {}
    names = ("base_e", "incr_e", "freq", "num_fires", "pct_3x3", "squeeze_ratio")
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if given:
        base = spec.fires if isinstance(spec.fires, Metaparameters) else Metaparameters()
        overrides["fires"] = dataclasses.replace(base, **given)
        if not args.arch:
            overrides["name"] = "custom"
    if getattr(args, "num_classes", None) is not None:
        overrides["num_classes"] = args.num_classes
    if getattr(args, "bypass", None):
        overrides["bypass"] = args.bypass
    if getattr(args, "allow_wide_squeeze", False):
        overrides["allow_wide_squeeze"] = True
    return spec.replace(**overrides) if overrides else spec


# -- summary -------------------------------------------------------------------


def _add_summary(commands: argparse._SubParsersAction) -> Handler:
    parser = commands.add_parser("summary", help="the paper's Table 1 for any spec: sizes, filters, params, MACs")
    add_spec_arguments(parser)
    parser.add_argument("--input-size", type=_sizes, default=None,
                        help="comma-separated square input sizes (default 224,227; the cifar preset: 32)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return _summary


def _summary(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    sizes = args.input_size or ((32,) if spec.name == "cifar" else (224, 227))
    table = summary(build(spec), sizes)
    print(table.to_json() if args.json else table)
    return 0


# -- main ----------------------------------------------------------------------

COMMANDS: list[Callable[[argparse._SubParsersAction], Handler]] = [_add_summary]


def make_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = argparse.ArgumentParser(prog="squeezenet", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {}
    for add in COMMANDS:
        before = set(commands.choices)
        handler = add(commands)
        for name in set(commands.choices) - before:
            handlers[name] = handler
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = make_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except SqueezeNetError as error:
        print(f"squeezenet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"squeezenet {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
