"""The `squeezenet` command: text and JSON output, one-line errors with exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from .conftest import run_cli as run
from .test_model import PAPER_TABLE_1


def test_summary_prints_table_1(capsys):
    code, out, _ = run(capsys, "summary", "--arch", "1_0")
    assert code == 0
    assert "1,248,424" in out
    for name, params in PAPER_TABLE_1.items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f"{params:,}" in line
    header = out.splitlines()[1]
    assert "output @224" in header and "output @227" in header and "MACs @224" in header


def test_summary_json(capsys):
    code, out, _ = run(capsys, "summary", "--arch", "1_0", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total_params"] == 1_248_424
    params = {layer["name"]: layer["params"] for layer in data["layers"] if layer["params"]}
    assert params == PAPER_TABLE_1
    fire2 = next(layer for layer in data["layers"] if layer["name"] == "fire2")
    assert (fire2["s1x1"], fire2["e1x1"], fire2["e3x3"]) == (16, 64, 64)
    assert fire2["output"]["227"] == [128, 55, 55]


def test_summary_from_metaparameters(capsys):
    code, out, _ = run(capsys, "summary", "--base-e", "128", "--incr-e", "128", "--pct-3x3", "0.5",
                       "--freq", "2", "--squeeze-ratio", "0.25", "--json")
    assert code == 0
    data = json.loads(out)
    assert [layer["s1x1"] for layer in data["layers"] if layer["type"] == "fire"] == [32, 32, 64, 64, 96, 96, 128, 128]
    assert data["total_params"] > 1_248_424


def test_wide_squeeze_rejected_without_opt_out(capsys):
    code, _, err = run(capsys, "summary", "--squeeze-ratio", "1.0")
    assert code == 2
    assert err.count("\n") == 1 and "Strategy 2" in err and "fire2.squeeze" in err
    code, out, _ = run(capsys, "summary", "--squeeze-ratio", "1.0", "--allow-wide-squeeze", "--json")
    assert code == 0 and json.loads(out)["layers"][2]["s1x1"] == 128


@pytest.mark.parametrize("argv", [
    ["summary", "--arch", "nope"],
    ["summary", "--pct-3x3", "2"],
    ["summary", "--input-size", "20"],
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "squeezenet", "summary", "--arch", "1_1"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "1,235,496" in result.stdout


def test_version_and_top_level_help_start_without_torch():
    """`squeezenet --help` and `--version` list the commands without loading torch or any subcommand's needs."""
    probe = ("import sys; from squeezenet.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    for flag in ("--help", "--version"):
        result = subprocess.run([sys.executable, "-c", probe, flag], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.rstrip().endswith("no torch"), (flag, result.stdout)
    assert "squeezenet 0.1.0" in subprocess.run([sys.executable, "-c", probe, "--version"], capture_output=True,
                                                text=True, timeout=60).stdout
    listing = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True, timeout=60).stdout
    for command in ("summary", "predict", "evaluate", "train", "plot", "export", "benchmark", "explore", "compress"):
        assert f"    {command}" in listing


def test_train_and_compress_stay_functions_once_their_packages_load():
    """sq.train and sq.compress share their names with subpackages; loading those must not shadow them."""
    code = ("import squeezenet as sq, sys\n"
            "assert 'torch' not in sys.modules\n"
            "import squeezenet.train.loop, squeezenet.compress.pipeline\n"
            "assert callable(sq.train) and callable(sq.compress) and sq.train.__module__ == 'squeezenet.train'\n"
            "assert type(sq.build('1_0').meta) is sq.ModelMeta\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr


def test_train_help_shows_each_default_once(capsys):
    """A flag whose help already names its default gets no second "(default: ...)"."""
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--squeeze-ratio" in out
    entries = re.split(r"\n  (?=-)", out.split("options:", 1)[1])
    assert len(entries) > 40
    for entry in entries:
        assert " ".join(entry.split()).lower().count("default") <= 1, entry
