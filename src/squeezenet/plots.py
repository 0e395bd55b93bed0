"""Training curves: a run folder's metrics.jsonl -> one PNG with loss, accuracy and learning rate by epoch."""

from __future__ import annotations

from pathlib import Path

from .errors import TrainingError
from .train import read_metrics


def plot_run(run: str | Path, path: str | Path | None = None) -> Path:
    """Draw RUN/metrics.jsonl to ``path`` (default RUN/curves.png) and return where it went."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    run = Path(run)
    records = read_metrics(run)
    if not records:
        raise TrainingError(f"{run / 'metrics.jsonl'}: no epoch finished yet; nothing to plot")
    target = Path(path) if path is not None else run / "curves.png"
    epochs = [r["epoch"] for r in records]

    def series(key: str) -> list[float] | None:
        values = [r.get(key) for r in records]
        return None if any(v is None for v in values) else values

    figure, (loss_axis, accuracy_axis, lr_axis) = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for key, label in (("train_loss", "train"), ("test_loss", "test")):
        if (values := series(key)) is not None:
            loss_axis.plot(epochs, values, marker=".", label=label)
    loss_axis.set(title="loss (cross-entropy)", xlabel="epoch")
    for key, label in (("train_top1", "train top-1"), ("test_top1", "test top-1"), ("test_top5", "test top-5")):
        if (values := series(key)) is not None:
            accuracy_axis.plot(epochs, [100 * v for v in values], marker=".", label=label)
    best = max(records, key=lambda r: r.get("test_top1", r.get("train_top1", 0.0)))
    accuracy_axis.set(title=f"accuracy (best test top-1 {100 * best.get('test_top1', float('nan')):.1f}% "
                            f"at epoch {best['epoch']})", xlabel="epoch", ylabel="%")
    lr_axis.plot(epochs, series("lr") or [], marker=".")
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
