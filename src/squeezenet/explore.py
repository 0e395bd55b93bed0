"""Design-space exploration: train a family of SqueezeNets that differ in one metaparameter, under one budget.

The paper's Section 5 (Figure 3) asks how accuracy moves with the squeeze ratio and the share of 3x3
filters; Section 6 compares bypass variants. Here each sweep varies ONE metaparameter of a base spec (or its
bypass mode) while everything else keeps the base's value: one factor at a time, as in Figure 3. A point that
several sweeps share (the base itself, usually) is trained once. Every point is trained by ``train.train``
with the same settings (data, epochs, batch, learning rate, seed), so the only difference is the network.

A sweep folder:

    DIR/sweep.json       the base spec and the training settings all points share (a rerun must match them)
    DIR/results.csv      one row per finished point, rewritten atomically after each point
    DIR/<sweep>.png      Figure-3-style plots (squeeze_ratio.png, pct_3x3.png, bypass.png, ...)
    DIR/points/<slug>/   each point's run folder (train's RunFolder) plus point.json, its status

Resuming is rerunning the same command: finished points are read back, not retrained; a half-trained point
continues from its last checkpoint (train's exact resume); the others are trained in order.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ExploreError, SpecError, TrainingError
from .files import FileLocked, locked
from .model import summary
from .spec import BYPASS_MODES, Metaparameters, Spec, get_spec
from .train import RESUME_OVERRIDES, TrainConfig, read_metrics, spec_overrides, train
from .train.config import DEFAULT_ARCH
from .weights.io import read_safetensors, write_atomic

# -- sweeps and points -----------------------------------------------------------------------------------------------

_METAPARAMETER_TYPES: dict[str, type] = {
    name: kind for name, kind in typing.get_type_hints(Metaparameters).items() if kind in (int, float)
}
SWEEPABLE: tuple[str, ...] = (*_METAPARAMETER_TYPES, "bypass")


@dataclass(frozen=True)
class Sweep:
    """One metaparameter (a Metaparameters field, or ``bypass``) and the values it takes."""

    name: str
    values: tuple[int | float | str, ...]


def parse_sweep(text: str) -> Sweep:
    """``"squeeze_ratio=0.125,0.25,0.5"`` -> Sweep; bad syntax raises ExploreError with one line."""
    name, equals, listed = text.partition("=")
    name = name.strip().replace("-", "_")
    usage = "expected NAME=V1,V2,... such as squeeze_ratio=0.125,0.25,0.5"
    if not equals or not name or not listed.strip():
        raise ExploreError(f"--sweep {text!r}: {usage}")
    if name not in SWEEPABLE:
        raise ExploreError(f"--sweep {text!r}: {name!r} is not a metaparameter; sweepable: {', '.join(SWEEPABLE)}")
    values: list[int | float | str] = []
    for part in (piece.strip() for piece in listed.split(",")):
        if not part:
            raise ExploreError(f"--sweep {text!r}: empty value in the list; {usage}")
        value = _parse_value(name, part, text)
        if value in values:
            raise ExploreError(f"--sweep {text!r}: value {part} is listed twice")
        values.append(value)
    return Sweep(name, tuple(values))


def _parse_value(name: str, part: str, text: str) -> int | float | str:
    if name == "bypass":
        if part not in BYPASS_MODES:
            raise ExploreError(f"--sweep {text!r}: bypass must be one of {', '.join(BYPASS_MODES)}, got {part!r}")
        return part
    kind = _METAPARAMETER_TYPES[name]
    try:
        value = kind(part)
    except ValueError:
        raise ExploreError(f"--sweep {text!r}: {name} takes {kind.__name__} values, got {part!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ExploreError(f"--sweep {text!r}: {name} must be a finite number, got {part!r}")
    return value


def with_metaparameters(base: Spec, changes: dict[str, Any], what: str) -> Spec:
    """``base`` with some metaparameters (or ``bypass``) changed; ``what`` names the source in errors.

    Squeeze layers as wide as their expand layers (squeeze ratio 1.0, or rounding at small widths) are
    allowed here: the paper's Figure 3a sweeps up to SR = 1.0 on purpose.
    """
    if not isinstance(base.fires, Metaparameters):
        raise ExploreError(f"architecture {base.name!r} lists its Fire modules explicitly; "
                           "exploring needs one made from metaparameters")
    fields = {name: value for name, value in changes.items() if name != "bypass"}
    bypass = changes.get("bypass", base.bypass)
    try:
        fires = dataclasses.replace(base.fires, **fields)
        wide = base.replace(fires=fires, bypass=bypass, allow_wide_squeeze=True)
        needs_wide = any(fire.squeeze >= fire.expand for fire in wide.fire_modules())
        return wide if needs_wide else wide.replace(allow_wide_squeeze=base.allow_wide_squeeze)
    except (SpecError, TypeError) as error:
        raise ExploreError(f"{what}: {error}") from None


def _number(value: float) -> str:
    """Shortest text that reads back as the same number (0.125, 1, 0.3333333333333333)."""
    short = format(value, "g")
    return short if float(short) == value else repr(value)


def point_slug(base: Spec, spec: Spec) -> str:
    """A point's folder and spec name: squeeze ratio, pct_3x3 and bypass always; other metaparameters when they
    differ from the base. Stable whichever sweeps list the point, so a rerun finds its folder again."""
    assert isinstance(spec.fires, Metaparameters) and isinstance(base.fires, Metaparameters)
    meta, base_meta = spec.fires, base.fires
    parts = [f"sr{_number(meta.squeeze_ratio)}", f"pct{_number(meta.pct_3x3)}", spec.bypass]
    for name in ("base_e", "incr_e", "freq", "num_fires"):
        if getattr(meta, name) != getattr(base_meta, name):
            parts.append(f"{name}{getattr(meta, name)}")
    return "-".join(parts)


@dataclass(frozen=True)
class Point:
    """One network of the sweep: its spec (registered under ``spec.name`` before training) and the sweeps
    it belongs to."""

    slug: str
    spec: Spec
    sweeps: tuple[str, ...]


def plan_points(base: Spec, sweeps: Sequence[Sweep]) -> list[Point]:
    """Every distinct network the sweeps ask for, in the order given; shared points appear once."""
    names = [sweep.name for sweep in sweeps]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ExploreError(f"--sweep {repeated[0]} is given more than once (list all its values in one --sweep)")
    points: dict[str, Point] = {}
    for sweep in sweeps:
        for value in sweep.values:
            spec = with_metaparameters(base, {sweep.name: value}, f"--sweep {sweep.name}={value}")
            slug = point_slug(base, spec)
            known = points.get(slug)
            if known is None:
                points[slug] = Point(slug, spec.replace(name=f"explore/{base.name}/{slug}"), (sweep.name,))
            elif sweep.name not in known.sweeps:
                points[slug] = dataclasses.replace(known, sweeps=(*known.sweeps, sweep.name))
    return list(points.values())


# -- the sweep folder ------------------------------------------------------------------------------------------------

# Training settings that may differ between sessions of one sweep: where and how visibly it runs, not what.
_FREE_SETTINGS = ("out", "resume", "arch", *(name for name in RESUME_OVERRIDES if name != "time_limit"))

COLUMNS = ("point", "sweeps", "squeeze_ratio", "pct_3x3", "bypass", "base_e", "incr_e", "freq", "num_fires",
           "params", "size_mb", "macs", "image_size", "epochs", "epochs_done", "top1", "top5", "best_top1",
           "train_seconds", "status", "run")

FINISHED = ("done", "time_limit", "failed")


@dataclass
class ExploreResult:
    """Where a sweep went: the folder, the CSV, the plots, and one row (a COLUMNS dict) per finished point."""

    out: Path
    csv: Path
    plots: list[Path]
    rows: list[dict[str, Any]]
    trained: int  # points trained (or continued) in this call; 0 when everything was already finished
    pending: int  # points not finished (a stopped sweep)


def _settings(base: Spec, config: TrainConfig) -> dict[str, Any]:
    train_settings = {key: value for key, value in dataclasses.asdict(config).items() if key not in _FREE_SETTINGS}
    return json.loads(json.dumps({"base": base.to_dict(), "train": train_settings}))  # as sweep.json reads back


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Remember the settings; once any point has started training, refuse to mix in other settings.

    Until then (say the first attempt named a wrong --data) a rerun simply replaces them.
    """
    path = out / "sweep.json"
    if not path.exists() or not any((out / "points").glob("*/config.yaml")):
        write_atomic(path, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        differences = [f"base.{key}" for key in sorted(set(saved["base"]) | set(settings["base"]))
                       if saved["base"].get(key) != settings["base"].get(key)]
        differences += [f"--{key.replace('_', '-')}" for key in sorted(set(saved["train"]) | set(settings["train"]))
                        if saved["train"].get(key) != settings["train"].get(key)]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise ExploreError(f"{path}: unreadable sweep settings; choose another --out") from None
    if differences:
        raise ExploreError(f"{path}: this folder holds a sweep made with other settings ({', '.join(differences)}); "
                           "rerun with the same settings to continue it, or choose another --out")


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One explore process per sweep folder; the lock goes with the process, even on SIGKILL."""
    try:
        with locked(out / ".lock", wait=False):
            yield
    except FileLocked as busy:
        raise ExploreError(f"{out}: another explore process is running in this folder ({busy.holder})") from None


def _read_status(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "point.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # a damaged status only costs a check against the run folder: training resumes from state.pt


def _write_status(folder: Path, point: Point, **fields: Any) -> dict[str, Any]:
    status = {**_read_status(folder), "point": point.slug, "spec": point.spec.to_dict(), **fields}
    write_atomic(folder / "point.json", (json.dumps(status, indent=2) + "\n").encode())
    return status


def _records(folder: Path) -> list[dict[str, Any]]:
    try:
        return read_metrics(folder)
    except TrainingError:
        return []


def train_seconds(records: Sequence[dict[str, Any]]) -> float:
    """Seconds spent on the epochs a run's metrics record, across sessions (train + test-set evaluation).

    ``elapsed_seconds`` restarts in each session of a resumed run; a record whose epoch began before the
    previous record ended (elapsed - epoch_seconds < previous elapsed) opens a new session. Work lost to a kill
    and then redone is counted once, so this is the cost of the model as trained.
    """
    total, previous = 0.0, 0.0
    for record in records:
        elapsed = float(record.get("elapsed_seconds", 0.0))
        if elapsed - float(record.get("epoch_seconds", 0.0)) < previous:
            total += previous
        previous = elapsed
    return total + previous


def _row(point: Point, folder: Path, status: dict[str, Any], epochs: int) -> dict[str, Any]:
    meta = point.spec.fires
    assert isinstance(meta, Metaparameters)
    row: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    row.update(point=point.slug, sweeps=";".join(point.sweeps), squeeze_ratio=meta.squeeze_ratio,
               pct_3x3=meta.pct_3x3, bypass=point.spec.bypass, base_e=meta.base_e, incr_e=meta.incr_e,
               freq=meta.freq, num_fires=meta.num_fires, epochs=epochs, status=status.get("status", ""),
               run=f"points/{point.slug}")
    weights = folder / "last.safetensors"
    if weights.is_file():  # the spec as trained (classes from the data) and the input size it was trained at
        stored = read_safetensors(weights)
        spec = stored.spec or point.spec
        recipe = stored.preprocessing
        size = ((recipe.crop or recipe.resize) if recipe is not None else None) or spec.min_input_size()
        table = summary(spec, size)
        row.update(params=table.total_params, size_mb=round(table.total_params * 4 / 1e6, 4),
                   macs=table.total_macs(size), image_size=size)
        meaningful_top5 = spec.num_classes > 5
    else:
        meaningful_top5 = False
    records = _records(folder)
    row["epochs_done"] = len(records)
    row["train_seconds"] = round(train_seconds(records), 1)
    if records:
        last = records[-1]
        row["top1"] = _fraction(last.get("test_top1"))
        row["top5"] = _fraction(last.get("test_top5")) if meaningful_top5 else ""
        row["best_top1"] = _fraction(max((r.get("test_top1", float("nan")) for r in records), default=None))
    return row


def _fraction(value: float | None) -> float | str:
    return "" if value is None or not math.isfinite(value) else round(float(value), 4)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, buffer.getvalue().encode())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a results.csv, as strings (for plotting a finished sweep again, or comparing sweeps)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError as error:
        raise ExploreError(f"{path}: cannot read the sweep results ({error.strerror or error})") from None


# -- plots -----------------------------------------------------------------------------------------------------------


def plot_sweeps(rows: Sequence[dict[str, Any]], out: str | Path, title: str = "") -> list[Path]:
    """Figure-3-style PNGs, one per sweep with a measured point: top-1 against model size for the squeeze ratio
    (Figure 3a), against the swept value for other metaparameters (3b: pct_3x3), and bars for bypass modes."""
    from .extras import require

    require("matplotlib", "the sweep plots")
    from matplotlib.figure import Figure  # the object API: no pyplot state, no display

    out = Path(out)
    by_sweep: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, list[str]] = {}
    for row in rows:
        for sweep in str(row["sweeps"]).split(";"):
            if row.get("status") == "failed":  # its accuracy is where training broke down, not a result
                failed.setdefault(sweep, []).append(str(row["point"]))
            elif row.get("top1") not in ("", None) and row.get("size_mb") not in ("", None):
                by_sweep.setdefault(sweep, []).append(row)
    written = []
    for sweep, points in by_sweep.items():
        figure = Figure(figsize=(6.4, 4.4), layout="constrained")
        if sweep in failed:
            figure.supxlabel(f"not plotted, training failed: {', '.join(failed[sweep])}", fontsize=8, color="#c44e52")
        axis = figure.add_subplot()
        top1 = [100 * float(row["top1"]) for row in points]
        sizes = [float(row["size_mb"]) for row in points]
        if sweep == "bypass":
            labels = [str(row["bypass"]) for row in points]
            bars = axis.bar(labels, top1, color=["#4c72b0", "#55a868", "#c44e52"][:len(points)])
            for bar, accuracy, size in zip(bars, top1, sizes, strict=True):
                axis.annotate(f"{accuracy:.1f}%\n{size:.3g} MB", (bar.get_x() + bar.get_width() / 2, accuracy),
                              ha="center", va="bottom", fontsize=9)
            low = min(top1)
            axis.set_ylim(max(0.0, low - 10), min(100.0, max(top1) + 6))
            axis.set(xlabel="bypass connections (Section 6)", ylabel="test top-1 (%)")
        else:
            order = sorted(range(len(points)), key=lambda i: float(points[i][sweep]))
            if sweep == "squeeze_ratio":
                xs = [sizes[i] for i in order]
                notes = [f"SR={_number(float(points[i][sweep]))}" for i in order]
                axis.set(xlabel="model size (MB, float32)")
            else:
                scale = 100 if sweep == "pct_3x3" else 1
                xs = [scale * float(points[i][sweep]) for i in order]
                notes = [f"{sizes[i]:.3g} MB" for i in order]
                axis.set(xlabel="3x3 filters (% of expand filters)" if sweep == "pct_3x3" else sweep)
            ys = [top1[i] for i in order]
            axis.plot(xs, ys, marker="o")
            for x, y, note in zip(xs, ys, notes, strict=True):
                axis.annotate(note, (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
            axis.set(ylabel="test top-1 (%)")
            axis.margins(x=0.08, y=0.15)
        axis.grid(alpha=0.3)
        axis.set_title(f"{sweep} sweep{': ' + title if title else ''}", fontsize=10)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        written.append(write_atomic(out / f"{sweep}.png", buffer.getvalue()))
    return written


# -- running a sweep -------------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def explore(out: str | Path, sweeps: Sequence[Sweep], config: TrainConfig, base: Spec | None = None,
            log: Callable[[str], None] = print) -> ExploreResult:
    """Train every point of ``sweeps`` (varying ``base``, default the preset ``config.arch``) with the training
    settings of ``config``; write results.csv and the plots to ``out``. Rerunning continues a stopped sweep.

    ``config.time_limit`` is each point's budget in training seconds, over all its sessions: a point that
    reaches it is finished with the epochs it completed. A point whose training stalls or diverges is recorded
    as failed and the sweep goes on (delete its folder under ``out/points`` to try it again).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ExploreError("explore runs in one process (each point may use all cores); do not launch it with torchrun")
    if config.resume:
        raise ExploreError("explore continues a sweep by itself: rerun the same command with the same --out")
    if not sweeps:
        raise ExploreError("nothing to explore: give --sweep NAME=V1,V2,... (e.g. squeeze_ratio=0.125,0.25,0.5) "
                           "or --bypass none,simple,complex")
    config.validate()
    base = get_spec(base if base is not None else config.arch or DEFAULT_ARCH, **spec_overrides(config))
    points = plan_points(base, sweeps)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExploreError(f"{out}: exists and is not a folder")
    try:
        (out / "points").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExploreError(f"{out}: cannot create the sweep folder ({error.strerror or error})") from None
    title = f"{Path(str(config.data)).name.split('.')[0]}, {config.epochs} epochs"
    with _exclusive(out):
        _check_settings(out, _settings(base, config))
        rows: dict[str, dict[str, Any]] = {}
        trained, session_seconds, started = 0, 0.0, time.perf_counter()

        def publish() -> tuple[Path, list[Path]]:
            ordered = [rows[p.slug] for p in points if p.slug in rows]
            return write_csv(out / "results.csv", ordered), plot_sweeps(ordered, out, title)

        for number, point in enumerate(points, start=1):
            folder = out / "points" / point.slug
            status = _read_status(folder)
            if status.get("status") in FINISHED:
                rows[point.slug] = _row(point, folder, status, config.epochs)
                continue
            done = sum(1 for p in points if p.slug in rows)
            eta = (f", about {_duration(session_seconds / trained * (len(points) - done))} left"
                   if trained else "")
            log(f"[explore {number}/{len(points)}] {point.slug} (sweeps: {', '.join(point.sweeps)}): "
                f"{'continuing' if (folder / 'state.pt').is_file() else 'training'}; {done} finished, "
                f"{_duration(time.perf_counter() - started)} so far{eta}")
            point_started = time.perf_counter()
            status = _train_point(point, folder, config, log)
            trained += 1
            session_seconds += time.perf_counter() - point_started
            rows[point.slug] = row = _row(point, folder, status, config.epochs)
            log(f"[explore {number}/{len(points)}] {point.slug}: {status['status']}, top-1 "
                f"{_percent(row['top1'])}, {row['size_mb']} MB, {row['epochs_done']} epochs in "
                f"{_duration(float(row['train_seconds']))}")
            publish()
        csv_path, plots = publish()
    pending = len(points) - len(rows)
    return ExploreResult(out, csv_path, plots, [rows[p.slug] for p in points if p.slug in rows], trained, pending)


def _percent(value: Any) -> str:
    return f"{100 * float(value):.2f}%" if value not in ("", None) else "n/a"


def _train_point(point: Point, folder: Path, config: TrainConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Train (or continue) one point until its epochs or its time budget are spent; returns its final status."""
    spent = train_seconds(_records(folder))
    if config.time_limit is not None and spent >= config.time_limit:
        return _write_status(folder, point, status="time_limit")
    previous = _read_status(folder)
    _write_status(folder, point, status="training", sessions=int(previous.get("sessions", 0)) + 1)
    resume = (folder / "state.pt").is_file()
    remaining = None if config.time_limit is None else config.time_limit - spent
    run_config = dataclasses.replace(config, arch=point.spec.name, out=str(folder),
                                     resume=str(folder) if resume else None, time_limit=remaining)
    try:
        result = train(run_config, spec=point.spec)  # the run folder stores it: a resume needs nothing else
    except TrainingError as error:
        if not (folder / "config.yaml").is_file():  # the settings themselves are wrong: every point would fail
            raise
        log(f"[explore] {point.slug}: failed: {error}")
        return _write_status(folder, point, status="failed", error=str(error))
    finished = "done" if result.epochs_done >= config.epochs else "time_limit"
    return _write_status(folder, point, status=finished)


__all__ = ["COLUMNS", "SWEEPABLE", "ExploreError", "ExploreResult", "Point", "Sweep", "explore", "parse_sweep",
           "plan_points", "plot_sweeps", "point_slug", "read_csv", "train_seconds", "with_metaparameters",
           "write_csv"]
