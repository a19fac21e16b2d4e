"""The command line: `zfwidgets info` prints layers, shapes and receptive fields."""

from __future__ import annotations

import subprocess
import sys

from zfwidgets.cli import main


def test_info_on_the_demo(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "demo: SmallZFNet, input (1, 28, 28)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert rows["features.0"][1:] == ["conv", "32x28x28", "5", "1"]
    assert rows["features.1"][1:3] == ["conv1", "relu"]
    assert rows["features.2"][-3:] == ["32x13x13", "7", "2"]  # 5 + (3-1)*1 = 7, stride 2
    assert rows["classifier.4"][-3:] == ["10", "image", "4"]


def test_info_reports_bad_input_shapes(capsys):
    assert main(["info", "--model", "alexnet", "--input", "3,20,20"]) == 2
    err = capsys.readouterr().err
    assert "zfwidgets: error:" in err and "(3, 20, 20)" in err


def test_info_unknown_model(capsys):
    assert main(["info", "--model", "resnet50"]) == 2
    assert "unknown model 'resnet50'" in capsys.readouterr().err


def test_console_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "zfwidgets.cli", "info", "--model", "demo"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "features.9" in done.stdout
