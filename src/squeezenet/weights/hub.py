"""Model folders in the Hugging Face Hub layout: ``model.safetensors``, ``config.json`` and a ``README.md`` card.

``save_pretrained(model, DIR)`` writes one; ``load(DIR)`` reads it back (the
folder is recognised by those two files); ``load("hf-hub:ORG/NAME[@REVISION]")``
fetches one through huggingface_hub's download and cache (the ``hub`` extra),
so a Hub repository is just such a folder uploaded. ``config.json`` is the
source of truth for the spec, the preprocessing and the class names; the
safetensors file carries them too (it is our format), so it also loads alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SqueezeNetError, WeightsError, one_line
from ..model import SqueezeNet
from ..preprocess import Preprocessing
from ..spec import Spec
from .files import PathLike, write_atomic
from .fit import build_first_fit, fit
from .safetensors import read_safetensors, save

if TYPE_CHECKING:
    from ..evaluate import Accuracy

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CARD = "README.md"
HUB_PREFIX = "hf-hub:"
LIBRARY = "squeezenet"
CONFIG_VERSION = "1"
Scores = Mapping[str, float | int | str]  # e.g. an Accuracy's to_dict(): {"top1": 0.66, "top5": 0.858, "n": 500}


def is_hub_reference(path: object) -> bool:
    """True for a string naming a Hub repository, ``hf-hub:ORG/NAME`` (optionally ``@REVISION``)."""
    return isinstance(path, str) and path.startswith(HUB_PREFIX)


def save_pretrained(model: SqueezeNet, folder: PathLike, *, training: str | None = None,
                    accuracy: Scores | Accuracy | None = None) -> Path:
    """Write ``model`` as a Hub-style folder (created if needed) and return it.

    ``training`` (free text: data, recipe, epochs) and ``accuracy`` (an ``evaluate`` Accuracy, or a mapping
    of fractions by metric, ints and strings as given) go into the model card and config.json; without them
    the card says they were not recorded. config.json is written last, so a folder cut short is not taken
    for a complete one.
    """
    if not isinstance(model, SqueezeNet):
        raise TypeError(f"save_pretrained() needs a SqueezeNet, got {type(model).__name__}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WeightsError(f"{folder}: exists and is not a folder")
    scores: dict[str, Any] = dict(accuracy.to_dict() if hasattr(accuracy, "to_dict") else accuracy or {})
    config = _config(model, training, scores)
    save(model, folder / WEIGHTS)
    write_atomic(folder / CARD, model_card(model, training, scores).encode("utf-8"))
    write_atomic(folder / CONFIG, (json.dumps(config, indent=2) + "\n").encode("utf-8"))
    return folder


def _config(model: SqueezeNet, training: str | None, scores: dict[str, Any]) -> dict[str, Any]:
    preprocessing = model.preprocess if isinstance(model.preprocess, Preprocessing) else None
    return {
        "library": LIBRARY, "format_version": CONFIG_VERSION,
        "architecture": model.spec.name, "num_classes": model.spec.num_classes, "num_features": model.num_features,
        "spec": model.spec.to_dict(),
        "preprocessing": preprocessing.to_dict() if preprocessing is not None else None,
        "class_names": list(model.meta.class_names) if model.meta.class_names is not None else None,
        "training": training, "accuracy": scores or None,
    }


def model_card(model: SqueezeNet, training: str | None = None, scores: Scores | None = None) -> str:
    """The README.md of a saved folder: what the network is, how many parameters, how it was made and scored."""
    spec = model.spec
    parameters = sum(parameter.numel() for parameter in model.parameters())
    names = model.meta.labels
    shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
    classes = "ImageNet's 1000 (ILSVRC-2012)" if model.meta.class_names is None and spec.num_classes == 1000 else shown
    recipe = model.preprocess
    rows = [
        ("architecture", f"SqueezeNet `{spec.name}`: conv1 {spec.conv1_filters} {spec.conv1_kernel}x{spec.conv1_kernel}"
                         f"/{spec.conv1_stride}, {len(spec.fire_modules())} Fire modules, max-pools after "
                         f"{', '.join(spec.pool_after)}, conv10 + global average pool"),
        ("parameters", f"{parameters:,} ({parameters * 4 / 1e6:.2f} MB as float32)"),
        ("classes", f"{spec.num_classes}: {classes}"),
        ("minimum input", f"{model.min_input_size}x{model.min_input_size}"),
        ("bypass / batch norm / final ReLU", f"{spec.bypass} / {spec.batch_norm} / {spec.final_relu}"),
        ("preprocessing", _describe(recipe) if isinstance(recipe, Preprocessing) else "not recorded"),
    ]
    score_lines = [f"| {metric} | {_score(value)} |" for metric, value in (scores or {}).items()]
    return "\n".join([
        "---", f"library_name: {LIBRARY}", "tags:", "- image-classification", "- squeezenet",
        "pipeline_tag: image-classification", "---", "",
        f"# SqueezeNet `{spec.name}`, {spec.num_classes} classes", "",
        "A SqueezeNet (Iandola et al., 2016, *SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and "
        "<0.5MB model size*, arXiv:1602.07360), saved by the `squeezenet` package. The full spec, the "
        "preprocessing and the class names are in `config.json`; the weights in `model.safetensors`.", "",
        "## Architecture", "", "| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows), "",
        "## Training", "", training or "Not recorded (none was given when this folder was saved).", "",
        "## Accuracy", "",
        *(["| metric | value |", "|---|---|", *score_lines] if score_lines
          else ["Not measured (no figures were given when this folder was saved)."]), "",
        "## Use", "", "```python", "import squeezenet as sq", "",
        'model = sq.load("hf-hub:ORG/NAME")  # or sq.load("path/to/this/folder")',
        "x = model.preprocess(image).unsqueeze(0)  # a PIL image, prepared as these weights expect",
        "probabilities = model(x).softmax(1)", "```", "",
    ])


def _describe(recipe: Preprocessing) -> str:
    resize = f"resize {recipe.resize} ({recipe.resize_mode})" if recipe.resize else "no resize"
    crop = f"center crop {recipe.crop}" if recipe.crop else "no crop"
    return (f"`{recipe.name}`: {resize}, {crop}, {recipe.channel_order}, values 0-{recipe.scale:g}, "
            f"mean {recipe.mean}, std {recipe.std}")


def _score(value: float | int | str) -> str:
    """Fractions as percentages; counts and text as given."""
    return f"{value:.2%}" if isinstance(value, float) else str(value)


def check_folder(path: Path) -> None:
    """A one-line WeightsError unless ``path`` is a folder holding config.json and model.safetensors."""
    if not path.is_dir():
        raise WeightsError(f"{path}: not a folder (a model folder holds {CONFIG} and {WEIGHTS})")
    missing = [name for name in (CONFIG, WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise WeightsError(f"{path}: is a folder but not a model folder: no {' and no '.join(missing)} (a model "
                           f"folder, as save_pretrained writes it, holds {CONFIG} and {WEIGHTS})")


def read(path: Path, arch: str | Spec | None) -> tuple[SqueezeNet, Preprocessing | None]:
    """The model a folder describes: config.json's spec (``arch``: a name only checks, a Spec replaces it),
    filled from model.safetensors, with config.json's class names and preprocessing."""
    check_folder(path)
    spec, preprocessing, class_names = _read_config(path / CONFIG)
    if isinstance(arch, str) and arch != spec.name:
        raise WeightsError(f"{path}: holds weights for architecture {spec.name!r}, not {arch!r}")
    weights = path / WEIGHTS
    state = read_safetensors(weights).state_dict
    model = build_first_fit(weights, arch if isinstance(arch, Spec) else spec, lambda chosen: chosen,
                            lambda skeleton: fit(state, skeleton, str(weights)), None)
    if class_names is not None:
        if len(class_names) != model.spec.num_classes:
            raise WeightsError(f"{path / CONFIG}: class_names is not a list of {model.spec.num_classes} names")
        model.meta = model.meta.replace(class_names=class_names)
    return model, preprocessing


def _read_config(path: Path) -> tuple[Spec, Preprocessing | None, tuple[str, ...] | None]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise WeightsError(f"{path}: not a readable JSON file ({one_line(error, 160)})") from None
    if not isinstance(config, dict) or "spec" not in config:
        raise WeightsError(f"{path}: no spec (not a squeezenet config.json)")
    version = str(config.get("format_version", CONFIG_VERSION))
    if config.get("library", LIBRARY) == LIBRARY and version != CONFIG_VERSION:
        raise WeightsError(f"{path}: written by a newer squeezenet (format version {version}); upgrade to read it")
    try:
        spec = Spec.from_dict(config["spec"])
        recipe = config.get("preprocessing")
        preprocessing = Preprocessing.from_dict(recipe) if recipe is not None else None
    except SqueezeNetError as error:
        raise WeightsError(f"{path}: {error}") from None
    names = config.get("class_names")
    if names is not None and not isinstance(names, list):
        raise WeightsError(f"{path}: class_names must be a list of names or null")
    return spec, preprocessing, tuple(str(name) for name in names) if names is not None else None


def download(reference: str, cache_dir: PathLike | None = None) -> Path:
    """``hf-hub:ORG/NAME[@REVISION]`` -> the local snapshot folder, fetched by huggingface_hub into its cache
    (``HF_HUB_CACHE``, else ``HF_HOME/hub``) unless already there; offline, the cached copy or one line."""
    from .. import __version__
    from ..extras import require

    repo_id, _, revision = reference.removeprefix(HUB_PREFIX).partition("@")
    if not repo_id:
        raise WeightsError(f"{reference!r}: name a repository, as in hf-hub:ORG/NAME")
    hub = require("huggingface_hub", "loading from the Hugging Face Hub")
    try:
        folder = hub.snapshot_download(repo_id, revision=revision or None, cache_dir=cache_dir,
                                       allow_patterns=[CONFIG, WEIGHTS, CARD],
                                       library_name=LIBRARY, library_version=__version__)
    except (OSError, ValueError) as error:  # not cached and no network, no such repository, a bad name
        raise WeightsError(f"{reference}: cannot get it from the Hugging Face Hub ({one_line(error, 160)}); "
                           "offline? pass a local model folder instead (squeezenet.load(DIR), or --weights DIR)"
                           ) from None
    return Path(folder)
