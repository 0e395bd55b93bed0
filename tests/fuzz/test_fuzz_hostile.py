"""Hostile inputs, second wave: special files, memory bombs, tampered run folders, odd file names, foreign
models, worker errors, absurd sizes and numbers, config bombs, two runs on one folder, paths in labels.

Every case runs the real command line in a child process under the resource guard (guard.py): a refusal is one
line on stderr and exit status 2 within 10 s and 1.5 GiB of peak memory. Each class was seen to end in a
traceback, a hang or gigabytes of memory before it was fixed; the cases build such inputs from the real files in
../shared. The counts per class go into the suite's tally (docs/reliability.md).
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ..conftest import shared_path
from .guard import read_fine, refused, run_cli
from .test_fuzz_weights import net_file, sqz_file  # noqa: F401 (fixtures: the .sqz made from the paper's file)

CAFFE = "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
NET = "weights/deep_compression_v1.0/compressed_SqueezeNet.net"
SAMPLES = "data/imagenet-samples"


def photo() -> Path:
    return sorted(shared_path(SAMPLES).glob("*.JPEG"))[0]


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# -- special files: only regular files are read -----------------------------------------------------------------------


def _socket_file(path: Path) -> Path:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))  # the file stays after the socket closes
    server.close()
    return path


SPECIAL = {
    "fifo as --weights": lambda t: (["summary", "--weights", fifo(t / "w.caffemodel")], t / "w.caffemodel"),
    "fifo as an image": lambda t: (["predict", fifo(t / "x.jpg"), "--weights", shared_path(CAFFE)], t / "x.jpg"),
    "fifo as a labels CSV": lambda t: (["evaluate", "--data", shared_path(SAMPLES), "--labels", fifo(t / "l.csv"),
                                        "--weights", shared_path(CAFFE)], t / "l.csv"),
    "fifo as --config": lambda t: (["train", "--config", fifo(t / "c.yaml")], t / "c.yaml"),
    "/dev/zero as .caffemodel": lambda t: (["summary", "--weights", _link(t / "z.caffemodel", "/dev/zero")],
                                           t / "z.caffemodel"),
    "/dev/zero as .net": lambda t: (["summary", "--weights", _link(t / "z.net", "/dev/zero")], t / "z.net"),
    "/dev/zero as .sqz": lambda t: (["summary", "--weights", _link(t / "z.sqz", "/dev/zero")], t / "z.sqz"),
    "/dev/zero as an image": lambda t: (["predict", _link(t / "z.png", "/dev/zero"), "--weights",
                                         shared_path(CAFFE)], t / "z.png"),
    "a socket as an image": lambda t: (["predict", _socket_file(t / "s.jpg"), "--weights", shared_path(CAFFE)],
                                       t / "s.jpg"),
    "a folder as --config": lambda t: (["train", "--config", t], t),
}


def _link(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


@pytest.mark.parametrize("case", sorted(SPECIAL))
def test_special_files_are_refused_at_once(tmp_path: Path, case: str) -> None:
    argv, names = SPECIAL[case](tmp_path)
    refused("special files", case, run_cli(*argv), names)


# -- memory bombs in .pth files: shapes are checked before any tensor is read --------------------------------------


def _zip_pth(path: Path, numel: int, shape: tuple[int, ...], stride: tuple[int, ...], stored: int) -> Path:
    """A torch.save zip archive by hand: one tensor of ``shape``/``stride`` over a storage that claims ``numel``
    floats while the archive holds ``stored`` of them."""
    import pickle
    import zipfile
    from collections import OrderedDict

    class Storage:
        pass

    marker = Storage()

    class Tensor:
        def __reduce__(self):  # what torch.save writes for a tensor
            return torch._utils._rebuild_tensor_v2, (marker, 0, shape, stride, False, OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", numel) if obj is marker else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"features.conv1.weight": Tensor()})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", bytes(4 * stored))
        archive.writestr("archive/version", "3\n")
    return path


def _large_foreign_pth(path: Path) -> Path:
    """A real 400 MB state dict of shapes no SqueezeNet has (read in full, it would take 400 MB and more)."""
    torch.save({"features.conv1.weight": torch.zeros(100, 1000, 1000)}, path)
    return path


def _expanded_view_pth(path: Path) -> Path:
    """One float stored, saved as a 10^10-element view of it (stride 0)."""
    torch.save({"classifier.conv10.weight": torch.zeros(1).expand(100_000, 100_000, 1, 1)}, path)
    return path


PTH_BOMBS = {
    "400 MB of foreign shapes": _large_foreign_pth,
    "a view expanding 4 bytes to 40 GB": _expanded_view_pth,
    "a storage claiming 100 GB": lambda path: _zip_pth(path, 25_000_000_000, (25_000_000_000,), (1,), 1),
}


@pytest.mark.parametrize("case", sorted(PTH_BOMBS))
def test_pth_memory_bombs_are_refused_without_reading_them(tmp_path: Path, case: str) -> None:
    path = PTH_BOMBS[case](tmp_path / "bomb.pth")
    refused("memory bombs", case, run_cli("summary", "--weights", path), path)


# -- tampered run folders: the state and config are checked field by field ------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder: a small network, two epochs on the digits, a checkpoint after each."""
    run = tmp_path_factory.mktemp("run") / "run"
    done = subprocess.run([sys.executable, "-m", "squeezenet", "train", "--data", "digits", "--arch", "cifar",
                           "--base-e", "16", "--incr-e", "16", "--num-fires", "4", "--image-size", "8", "--subset",
                           "128", "--batch-size", "64", "--epochs", "2", "--keep", "3", "--no-progress",
                           "--out", str(run)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    return run


def _copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target, symlinks=True)
    return target


def _edit_state(change: Callable[[dict], object]) -> Callable[[Path], Path]:
    def edit(run: Path) -> Path:
        state = torch.load(run / "state.pt", weights_only=True)
        state = change(state) or state
        torch.save(state, run / "state.pt")
        return run / "state.pt"
    return edit


def _other_optimizer(state: dict) -> None:
    for buffers in state["optimizer"]["state"].values():
        buffers["momentum_buffer"] = torch.zeros(3, 5)


def _write(relative: str, data: bytes | None) -> Callable[[Path], Path]:
    def edit(run: Path) -> Path:
        target = run / relative
        if data is None:
            target.unlink()
            target.mkdir()
        else:
            target.write_bytes(data)
        return target
    return edit


def _edit_config(old: str, new: str) -> Callable[[Path], Path]:
    def edit(run: Path) -> Path:
        text = (run / "config.yaml").read_text()
        assert old in text
        (run / "config.yaml").write_text(text.replace(old, new))
        return run / "config.yaml"
    return edit


TAMPERED = {
    "state.pt lacks a key": _edit_state(lambda state: state.pop("optimizer") and None),
    "state.pt holds a list": _edit_state(lambda state: [state]),
    "text where a number belongs": _edit_state(lambda state: state.update(step="eleven")),
    "an RNG state of the wrong size": _edit_state(lambda state: state["rng"][0].update(torch=torch.zeros(7,
                                                                                        dtype=torch.uint8))),
    "another model's optimizer state": _edit_state(_other_optimizer),
    "weights outside the folder": _edit_state(lambda state: state.update(weights="../../../etc/passwd")),
    "config.yaml edited to another architecture": _edit_config("arch: cifar", "arch: 1_0"),
    "config.yaml emptied": _write("config.yaml", b""),
    "metrics.jsonl not UTF-8": _write("metrics.jsonl", b"\xff\xfe\x00{"),
    "metrics.jsonl is a folder": _write("metrics.jsonl", None),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_run_folders_are_refused_naming_the_field(tmp_path: Path, trained_run: Path, case: str) -> None:
    run = _copy_run(trained_run, tmp_path / "run")
    for checkpoint in (run / "checkpoints").glob("step-*.state.pt"):
        checkpoint.unlink()  # no intact previous checkpoint to fall back to: the refusal itself is tested
    names = TAMPERED[case](run)
    refused("tampered run folders", case, run_cli("train", "--resume", run, "--no-progress"), names)


def test_a_damaged_newest_checkpoint_offers_the_previous_one(tmp_path: Path, trained_run: Path) -> None:
    run = _copy_run(trained_run, tmp_path / "run")
    (run / "state.pt").write_bytes(b"PK\x03\x04 torn")
    steps = sorted((run / "checkpoints").glob("step-*.state.pt"))
    steps[-1].write_bytes(b"torn too")
    child = run_cli("train", "--resume", run, "--no-progress")
    refused("tampered run folders", "newest checkpoint torn", child, run / "state.pt")
    assert steps[-2].name in child.stderr and "--resume-previous" in child.stderr
    resumed = run_cli("train", "--resume", run, "--no-progress", "--resume-previous", seconds=120, warnings=True)
    assert resumed.returncode == 0, resumed.stderr
    assert steps[-2].name in resumed.stderr  # the warning says which checkpoint it took
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]  # the last epoch trained again from the previous checkpoint, its line not repeated


# -- two runs, one folder -----------------------------------------------------------------------------------------


def test_a_second_run_on_a_busy_folder_refuses_naming_the_holder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "squeezenet", "train", "--data", "digits", "--arch", "1_1",
                              "--epochs", "50", "--no-progress", "--out", str(run)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while not (run / ".lock").is_file() or not (run / ".lock").read_text().strip():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.1)
        for argv in (["train", "--data", "digits", "--out", run], ["train", "--resume", run]):
            child = run_cli(*argv)
            refused("two runs, one folder", " ".join(map(str, argv[:2])), child, run)
            assert f"pid {first.pid}" in child.stderr
    finally:
        first.kill()
        first.wait()


# -- file names ---------------------------------------------------------------------------------------------------


def test_odd_file_names_print_as_one_escaped_line(tmp_path: Path) -> None:
    data = photo().read_bytes()
    not_utf8 = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jpg"))
    newline = tmp_path / "two\nlines.jpg"
    for path in (not_utf8, newline):
        path.write_bytes(data)
    child = run_cli("predict", not_utf8, newline, "--weights", shared_path(CAFFE), "--topk", "1")
    read_fine("file names", "not UTF-8 and a newline", child)
    lines = child.stdout.splitlines()
    assert len(lines) == 4, lines  # two names, one prediction each: the newline did not split a name
    assert lines[0].endswith("caf\\xe9.jpg") and lines[2].endswith("two\\nlines.jpg")
    too_long = tmp_path / ("x" * 300 + ".jpg")
    refused("file names", "over the system's limit", run_cli("predict", too_long, "--weights", shared_path(CAFFE)))


# -- foreign ONNX models: inputs and outputs are checked when the file is opened -----------------------------------


def _onnx(path: Path, inputs: list[tuple[str, int, list]], outputs: list[tuple[str, int, list]],
          nodes: list, initializers: list | None = None) -> Path:
    from onnx import helper, save

    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def _foreign_models() -> dict[str, Callable[[Path], Path]]:
    from onnx import TensorProto, helper, numpy_helper

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    shape = numpy_helper.from_array(np.array([-1, 7], dtype=np.int64), "shape")
    return {
        "two inputs": lambda p: _onnx(p, [("a", f32, [1, 3, 224, 224]), ("b", f32, [1, 3, 224, 224])],
                                      [("y", f32, [1, 3, 224, 224])], [helper.make_node("Add", ["a", "b"], ["y"])]),
        "an integer input": lambda p: _onnx(p, [("ids", i64, [1, 3, 224, 224])], [("y", i64, [1, 3, 224, 224])],
                                            [helper.make_node("Identity", ["ids"], ["y"])]),
        "a 1-D output": lambda p: _onnx(p, [("x", f32, [1, 3, 224, 224])], [("y", f32, [None])],
                                        [helper.make_node("Flatten", ["x"], ["f"], axis=0),
                                         helper.make_node("Squeeze", ["f"], ["y"])]),
        "a reshape that fails at run time": lambda p: _onnx(
            p, [("x", f32, [1, 3, 224, 224])], [("y", f32, [None, 7])],
            [helper.make_node("Reshape", ["x", "shape"], ["y"])], [shape]),
    }


@pytest.mark.parametrize("case", ["two inputs", "an integer input", "a 1-D output", "a reshape that fails at run time"])
def test_foreign_onnx_models_are_refused(tmp_path: Path, case: str) -> None:
    pytest.importorskip("onnx")
    path = _foreign_models()[case](tmp_path / "foreign.onnx")
    child = run_cli("predict", photo(), "--weights", path, "--backend", "onnxruntime", "--preprocess", "torchvision")
    refused("foreign models", case, child, path)


# -- worker processes ---------------------------------------------------------------------------------------------


def test_a_corrupt_image_in_a_worker_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "labels.csv").write_text("filename,class_index\nok.JPEG,0\nbad.JPEG,0\n")
    (data / "ok.JPEG").write_bytes(photo().read_bytes())
    (data / "bad.JPEG").write_bytes(photo().read_bytes()[:300])
    child = run_cli("evaluate", "--data", data, "--workers", "2", "--weights", shared_path(CAFFE), seconds=30)
    refused("worker processes", "corrupt image, --workers 2", child, data / "bad.JPEG")


# -- absurd sizes and numbers on the command line -----------------------------------------------------------------


NUMBERS = {
    "summary --input-size 100000": ["summary", "--input-size", "100000"],
    "summary --num-classes 10000000000": ["summary", "--num-classes", "10000000000"],
    "summary --base-e 10**12": ["summary", "--base-e", str(10**12)],
    "evaluate --batch-size 0": ["evaluate", "--data", "D", "--weights", "W", "--batch-size", "0"],
    "evaluate --workers -1": ["evaluate", "--data", "D", "--weights", "W", "--workers", "-1"],
    "train --seed -1": ["train", "--seed", "-1"],
    "train --seed 2**70": ["train", "--seed", str(2**70)],
    "train --image-size 100000": ["train", "--image-size", "100000"],
    "train --num-classes 1000000000": ["train", "--num-classes", "1000000000"],
    "train --crop-padding 1000000": ["train", "--crop-padding", "1000000"],
    "export --input-size 0": ["export", "--weights", "W", "--out", "x.onnx", "--input-size", "0"],
    "benchmark --batch 10**9": ["benchmark", "--batch", str(10**9)],
}


@pytest.mark.parametrize("case", sorted(NUMBERS))
def test_numbers_out_of_range_are_refused_before_any_work(tmp_path: Path, case: str) -> None:
    refused("numbers and sizes", case, run_cli(*NUMBERS[case], cwd=tmp_path))


def test_outputs_that_cannot_be_written_are_refused_first(tmp_path: Path, trained_run: Path) -> None:
    child = run_cli("export", "--weights", shared_path(CAFFE), "--out", tmp_path)
    refused("outputs", "export --out a folder", child, tmp_path)
    assert child.seconds < 8  # before the export's work, not after it
    child = run_cli("plot", trained_run / "config.yaml")
    refused("outputs", "plot given a file", child, trained_run / "config.yaml")


# -- config files -------------------------------------------------------------------------------------------------


CONFIGS = {
    "a 5,000-digit number": b"epochs: " + b"9" * 5000 + b"\n",
    "a 50 MB scalar": b"data: " + b"a" * (50 << 20) + b"\n",
    "200,000 keys": b"".join(b"k%d: 1\n" % index for index in range(200_000)),
    "a resume key": b"resume: runs/other\nepochs: 3\n",
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_config_bombs_are_refused(tmp_path: Path, case: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(CONFIGS[case])
    refused("config files", case, run_cli("train", "--config", path), path)


# -- other readers ------------------------------------------------------------------------------------------------


def _sqz_with_listed_name(path: Path, encoded: bytes) -> Path:
    """The paper's Deep Compression file as a .sqz (the fuzz suite's own), its first tensor named by a list."""
    length = struct.unpack("<I", encoded[4:8])[0]
    header = json.loads(zlib.decompress(encoded[8:8 + length]))
    header["tensors"][0]["name"] = ["features.conv1.weight"]
    packed = zlib.compress(json.dumps(header).encode())
    path.write_bytes(encoded[:4] + struct.pack("<I", len(packed)) + packed + encoded[8 + length:])
    return path


def _safetensors_of_empty_tensors(path: Path) -> Path:
    header = {f"t{index}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for index in range(600_000)}
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    return path


def _flat_png(path: Path, side: int, bit_depth: int, color_type: int, channels: int) -> Path:
    """A PNG of one flat colour: a few hundred KB that decode to hundreds of MB."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + bytes(side * channels * bit_depth // 8)
    header = struct.pack(">IIBBBBB", side, side, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * side, 9))
                     + chunk(b"IEND", b""))
    return path


def _eps_named_jpg(path: Path) -> Path:
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n%%EOF\n")
    return path


READERS = {
    "a .sqz tensor name that is a list": (None, "summary"),  # built from the sqz_file fixture
    "600,000 empty safetensors tensors": (_safetensors_of_empty_tensors, "summary"),
    "a 9000x9000 RGBA PNG": (lambda path: _flat_png(path, 9000, 8, 6, 4), "predict"),
    "EPS named .jpg": (_eps_named_jpg, "predict"),
}


@pytest.mark.parametrize("case", sorted(READERS))
def test_other_readers_refuse_forged_files(tmp_path: Path, case: str, request: pytest.FixtureRequest) -> None:
    build, command = READERS[case]
    suffix = {"summary": ".sqz" if "sqz" in case else ".safetensors", "predict": ".png" if "PNG" in case else ".jpg"}
    path = tmp_path / f"forged{suffix[command]}"
    path = build(path) if build is not None else _sqz_with_listed_name(path, request.getfixturevalue("sqz_file")[0])
    argv = ["summary", "--weights", path] if command == "summary" else \
        ["predict", path, "--weights", shared_path(CAFFE)]
    refused("other readers", case, run_cli(*argv), path)


def test_a_16_bit_gray_png_of_81_megapixels_is_read_within_bounds(tmp_path: Path) -> None:
    """Under the pixel limit and 162 MB decoded: read, converted to RGB without gigabytes of float temporaries."""
    path = _flat_png(tmp_path / "gray16.png", 9000, 16, 0, 1)
    assert path.stat().st_size < 400_000
    read_fine("other readers", "a 9000x9000 16-bit gray PNG", run_cli("predict", path, "--weights",
                                                                        shared_path(CAFFE), seconds=30))


# -- paths in a labels CSV ----------------------------------------------------------------------------------------


def test_labels_may_not_leave_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.JPEG").write_bytes(photo().read_bytes())
    outside = tmp_path / "secret.JPEG"
    outside.write_bytes(photo().read_bytes())
    cases = {"../": "../secret.JPEG", "an absolute path": str(outside), "a/../../": "a/../../secret.JPEG"}
    for case, name in cases.items():
        (data / "labels.csv").write_text(f"filename,class_index\nx.JPEG,0\n{name},0\n")
        child = run_cli("evaluate", "--data", data, "--weights", shared_path(CAFFE))
        refused("labels paths", case, child, data / "labels.csv")
        assert "outside the data folder" in child.stderr
    read_fine("labels paths", "--allow-outside-data", run_cli("evaluate", "--data", data, "--weights",
                                                              shared_path(CAFFE), "--allow-outside-data"))
    (data / "labels.csv").write_text("filename,class_index\nx.JPEG,0\n./x.JPEG,0\n")
    child = run_cli("evaluate", "--data", data, "--weights", shared_path(CAFFE))
    refused("labels paths", "./x and x", child, data / "labels.csv")
    assert "listed twice" in child.stderr
