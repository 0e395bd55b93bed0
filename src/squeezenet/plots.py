"""Training curves: a run folder's metrics.jsonl -> one PNG with loss, accuracy and learning rate by epoch."""

from __future__ import annotations

from pathlib import Path

from .errors import TrainingError
from .extras import require
from .train import read_metrics


def plot_run(run: str | Path, path: str | Path | None = None) -> Path:
    """Draw RUN/metrics.jsonl to ``path`` (default RUN/curves.png) and return where it went."""
    matplotlib = require("matplotlib", "plotting training curves")
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    run = Path(run)
    records = read_metrics(run)
    if not records:
        raise TrainingError(f"{run / 'metrics.jsonl'}: no epoch finished yet; nothing to plot")
    target = Path(path) if path is not None else run / "curves.png"

    def series(key: str, scale: float = 1.0) -> tuple[list[int], list[float]] | None:
        """The epochs that logged ``key`` and its values there (--eval-every leaves test scores out of some)."""
        points = [(r["epoch"], scale * r[key]) for r in records if r.get(key) is not None]
        return ([p[0] for p in points], [p[1] for p in points]) if points else None

    figure, (loss_axis, accuracy_axis, lr_axis) = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for key, label in (("train_loss", "train"), ("test_loss", "test")):
        if (points := series(key)) is not None:
            loss_axis.plot(*points, marker=".", label=label)
    loss_axis.set(title="loss (cross-entropy)", xlabel="epoch")
    for key, label in (("train_top1", "train top-1"), ("test_top1", "test top-1"), ("test_top5", "test top-5")):
        if (points := series(key, 100.0)) is not None:
            accuracy_axis.plot(*points, marker=".", label=label)
    scored = [r for r in records if "test_top1" in r] or records
    best = max(scored, key=lambda r: r.get("test_top1", r.get("train_top1", 0.0)))
    accuracy_axis.set(title=f"accuracy (best test top-1 {100 * best.get('test_top1', float('nan')):.1f}% "
                            f"at epoch {best['epoch']})", xlabel="epoch", ylabel="%")
    lr_axis.plot(*(series("lr") or ([], [])), marker=".")
    lr_axis.set(title="learning rate (at the epoch's last step)", xlabel="epoch")
    for axis in (loss_axis, accuracy_axis):
        axis.legend()
    for axis in (loss_axis, accuracy_axis, lr_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"{run.resolve().name}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp.png")
        figure.savefig(temporary, dpi=100)
        temporary.replace(target)
    except OSError as error:
        raise TrainingError(f"{target}: cannot write the plot ({error.strerror or error})") from None
    finally:
        plt.close(figure)
    return target
