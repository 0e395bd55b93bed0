"""Shared fixtures: where the real data lives, and a skip with a reason when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import squeezenet as sq

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(relative: str) -> Path:
    """A file under ../shared, or a skip that says which file is missing and why it matters."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real data {path} is absent (tests that need ../shared skip outside the dev checkout)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Exports and unpacked datasets that tests make go to a temporary cache, not the user's."""
    import os

    before = os.environ.get("SQUEEZENET_CACHE")
    os.environ["SQUEEZENET_CACHE"] = str(tmp_path_factory.mktemp("squeezenet-cache"))
    yield
    if before is None:
        os.environ.pop("SQUEEZENET_CACHE", None)
    else:
        os.environ["SQUEEZENET_CACHE"] = before


def cifar_photos(root: Path, classes: tuple[str, ...], per_class: int) -> Path:
    """A class-per-folder tree (no val/) of the first ``per_class`` real CIFAR-10 training JPEGs of each class."""
    import tarfile

    wanted = dict.fromkeys(classes, 0)
    with tarfile.open(shared_path("data/cifar10-jpeg.tar.gz")) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 3 and parts[-3] == "train" and \
                    wanted.get(parts[-2], per_class) < per_class:
                wanted[parts[-2]] += 1
                (root / parts[-2]).mkdir(parents=True, exist_ok=True)
                (root / parts[-2] / parts[-1]).write_bytes(tar.extractfile(member).read())
            if all(count == per_class for count in wanted.values()):
                break
    return root


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip(f"real data folder {SHARED} is absent")
    return SHARED


def tiny_model(seed: int = 0) -> sq.SqueezeNet:
    """A two-Fire network (about 9k weights) with a preprocessing recipe: every code path, in milliseconds."""
    torch.manual_seed(seed)
    spec = sq.get_spec("cifar").replace(name="tiny", conv1_filters=16, pool_after=("fire2",),
                                        fires=sq.Metaparameters(base_e=32, incr_e=32, num_fires=2))
    model = sq.build(spec)
    model.meta = model.meta.replace(preprocessing=sq.get_preprocessing("torchvision"))
    return model


def digits_test_scores(model: sq.SqueezeNet, flip: bool = False, shift: int = 0) -> tuple[float, float]:
    """(cross-entropy, top-1) of ``model`` on the digits' held-out split, as the training loop scores it;
    with ``flip`` the logits are averaged with those of the mirror images; with ``shift``, weighted 1/2
    against 1/4 each for the images moved down-right and up-left by ``shift`` pixels (edges mirrored)."""
    from torchvision.transforms.v2 import functional as TF

    from squeezenet.data import batches, load_datasets

    data = load_datasets("digits", 32)
    images, labels = next(iter(batches(data.test, [[(i, 0) for i in range(len(data.test))]], 0)))
    images = data.normalize(images)
    model.eval()

    def scored(batch: torch.Tensor) -> torch.Tensor:
        logits = model(batch)
        return (logits + model(TF.horizontal_flip(batch))) / 2 if flip else logits

    with torch.inference_mode():
        logits = scored(images)
        if shift:
            size = images.shape[-1]
            down_right = TF.crop(TF.pad(images, [shift, shift, 0, 0], padding_mode="reflect"), 0, 0, size, size)
            up_left = TF.crop(TF.pad(images, [0, 0, shift, shift], padding_mode="reflect"), shift, shift, size, size)
            logits = logits / 2 + (scored(down_right) + scored(up_left)) / 4
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return loss, (logits.argmax(1) == labels).float().mean().item()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`squeezenet ARGV...` in this process: (exit code, stdout, stderr)."""
    from squeezenet.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
