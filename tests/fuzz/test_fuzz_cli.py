"""A sample of the malformed inputs through the real command line: exactly one line on stderr, exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import squeezenet as sq

from ..conftest import shared_path
from . import mutate
from .harness import LONG, TALLY, Outcome
from .test_fuzz_inputs import SAMPLES, YAML_CASES
from .test_fuzz_weights import CAFFE_FILE, NET_FILE, tiny_model


def bad_inputs(folder: Path) -> list[tuple[str, list[str], Path]]:
    """(reader, command line, the bad file it names): every command that reads weights, and the other readers."""
    caffe = mutate.write_case(folder, "cut.caffemodel", shared_path(CAFFE_FILE).read_bytes()[:100_000])
    net = mutate.write_case(folder, "forged.net", mutate.put_uint(shared_path(NET_FILE).read_bytes(), 8, 4, 2**32 - 1))
    good = folder / "tiny.safetensors"
    sq.save(tiny_model(), good)
    endless = {**json.loads(tiny_model().spec.to_json()), "fires": {"metaparameters": {"num_fires": 10**9}}}
    forged = mutate.with_metadata(good.read_bytes(), spec=json.dumps(endless))
    safetensors = mutate.write_case(folder, "forged.safetensors", forged)
    pth = mutate.write_case(folder, "cut.pth", b"PK\x03\x04" + bytes(100))
    samples = shared_path(SAMPLES)
    photo = sorted(samples.glob("*.JPEG"))[0]
    cases = [
        ("caffemodel", ["summary", "--weights", str(caffe)], caffe),
        ("net", ["predict", str(photo), "--weights", str(net)], net),
        ("safetensors", ["evaluate", "--data", str(samples), "--weights", str(safetensors)], safetensors),
    ]
    if LONG:
        image = mutate.write_case(folder, "half.jpg", photo.read_bytes()[:5000])
        labels = mutate.write_case(folder, "labels.csv", b"filename,class_index\nn01440764_tench.JPEG,-1\n")
        config = mutate.write_case(folder, "unknown.yaml", YAML_CASES["unknown_key"])
        cases += [
            ("pth", ["summary", "--weights", str(pth)], pth),
            ("pth", ["predict", str(photo), "--weights", str(pth)], pth),
            ("caffemodel", ["evaluate", "--data", str(samples), "--weights", str(caffe)], caffe),
            ("net", ["export", "--weights", str(net), "--out", str(folder / "x.onnx")], net),
            ("image", ["predict", str(image), "--weights", str(good)], image),
            ("labels_csv", ["evaluate", "--data", str(samples), "--labels", str(labels), "--weights", str(good)],
             labels),
            ("yaml_config", ["train", "--config", str(config)], config),
        ]
    return cases


@pytest.mark.slow  # three interpreters importing torch: seconds on a quiet machine, a minute on a busy one
def test_bad_files_on_the_command_line_give_one_line_and_exit_2(tmp_path: Path) -> None:
    cases = bad_inputs(tmp_path)
    environment = {**os.environ, "PYTHONWARNINGS": "default"}
    running = [subprocess.Popen([sys.executable, "-m", "squeezenet", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=environment) for _, argv, _ in cases]
    bad = []
    for (reader, argv, path), process in zip(cases, running, strict=True):
        _, errors = process.communicate(timeout=600)
        command = argv[0]
        clean = (process.returncode == 2 and errors.count("\n") == 1 and errors.endswith("\n")
                 and errors.startswith(f"squeezenet {command}: error: ") and str(path) in errors)
        TALLY.add(f"cli_{reader}", f"{command} {path.read_bytes()!r}".encode(),
                  Outcome("refused" if clean else "unclear", errors, 0.0))
        if not clean:
            bad.append(f"squeezenet {' '.join(argv)} -> exit {process.returncode}, stderr {errors[-600:]!r}")
    assert not bad, "\n".join(bad)
