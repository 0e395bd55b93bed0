"""Weights from the internet cannot run code: a pickle payload in a .pth (or a resume state, or a decoded-data
memo) is refused, and the payload provably did not run; the same file does run it when unpickled unsafely."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import squeezenet as sq
from squeezenet.errors import TrainingError, WeightsError
from squeezenet.train import RunFolder


class Payload:
    """Unpickling this calls exec(): it creates ``marker``, as a real attack would run any command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def payload_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The payload inside a real-looking state dict, in both torch layouts and as a bare pickle."""
    state = sq.build("1_1").state_dict()
    poisoned = {**state, "features.conv1.weight": Payload(marker)}
    files = {"zip": folder / "evil.pth", "legacy": folder / "evil_legacy.pt", "pickle": folder / "evil.pkl.pth"}
    torch.save(poisoned, files["zip"])
    torch.save(poisoned, files["legacy"], _use_new_zipfile_serialization=False)
    files["pickle"].write_bytes(pickle.dumps(poisoned, protocol=2))
    return files


@pytest.mark.parametrize("layout", ["zip", "legacy", "pickle"])
def test_a_pickle_payload_is_refused_and_never_runs(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "payload-ran"
    path = payload_files(tmp_path, marker)[layout]
    with pytest.raises(WeightsError) as caught:
        sq.load(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert not marker.exists()
    # The control: unpickled without weights_only, the very same file runs the payload.
    if layout == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


def test_a_poisoned_resume_state_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    torch.save({"step": 3, "weights": Payload(marker)}, run.state)
    with pytest.raises(TrainingError) as caught:
        run.read_state()
    assert str(run.state) in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_a_poisoned_decoded_image_memo_is_ignored(tmp_path: Path) -> None:
    from squeezenet.cache import read_memo  # the cache of decoded images beside an unpacked dataset

    marker = tmp_path / "payload-ran"
    memo = tmp_path / ".decoded-32.pt"
    torch.save({"train": Payload(marker), "test": None, "skipped": []}, memo)
    assert read_memo(memo, strict=False) is None  # a damaged memo is decoded again, never trusted
    assert not marker.exists()


def test_the_cli_refuses_the_payload_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from squeezenet.cli import main

    marker = tmp_path / "payload-ran"
    path = payload_files(tmp_path, marker)["zip"]
    assert main(["summary", "--weights", str(path)]) == 2
    errors = capsys.readouterr().err
    assert errors.count("\n") == 1 and str(path) in errors
    assert not marker.exists()
