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
    model.preprocess = sq.get_preprocessing("torchvision")
    return model
