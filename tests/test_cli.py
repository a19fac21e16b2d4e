"""The command line: `zfwidgets info` prints layers, shapes and receptive fields."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

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
    assert main(["info", "--model", "resnet500"]) == 2
    assert "unknown model 'resnet500'" in capsys.readouterr().err


def test_info_prints_a_graph_models_blocks_and_methods(capsys):
    """``zfwidgets info --model resnet18``: blocks a teacher recognises, every step with its
    shape and receptive field, the reused ReLU's second call by its own name."""
    assert main(["info", "--model", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "blocks: conv1, relu, maxpool, layer1.0, layer1, layer2.0, layer2" in out
    assert "methods: deconvnet, guided, saliency, gradcam, guided_gradcam" in out
    row = next(line for line in out.splitlines() if line.startswith("layer1.1.relu#2"))
    assert row.split()[1:4] == ["layer1", "relu", "64x56x56"]


def test_console_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "zfwidgets.cli", "info", "--model", "demo"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "features.9" in done.stdout


def test_train_a_tiny_run_then_resume_it(tmp_path, capsys):
    from zfwidgets.train import load_run

    out = tmp_path / "run"
    common = ["--arch", "small-zf", "--data", "demo", "--limit", "64", "--batch-size", "32"]
    args = ["train", *common, "--out", str(out), "--no-progress"]
    assert main([*args, "--epochs", "2", "--snapshot-epochs", "1"]) == 0
    assert "snapshots at epochs [1, 2]" in capsys.readouterr().out
    run = load_run(out)
    assert run.epochs == [1, 2]
    assert run.architecture["class"] == "SmallZFNet"
    assert run.manifest["config"]["init"] == "default"
    assert run.data == {**run.data, "source": "demo", "limit": 64, "size": 64}
    assert main([*args, "--epochs", "3", "--resume"]) == 0
    assert run.refresh() and run.epochs == [1, 2, 3]
    assert [row["epoch"] for row in run.history] == [1, 2, 3]
    # Recording over an existing run without --resume is refused with a clean message.
    assert main([*args, "--epochs", "1"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_train_on_an_image_folder(tmp_path, capsys):
    from PIL import Image

    from zfwidgets.train import Evolution, load_run

    rng = torch.Generator().manual_seed(0)
    for label in ("cats", "dogs"):
        (tmp_path / "folder" / label).mkdir(parents=True)
        for i in range(6):
            pixels = (torch.rand(40, 48, 3, generator=rng) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "folder" / label / f"{i}.png")
    out = tmp_path / "run"
    argv = ["train", "--arch", "small-zf", "--data", str(tmp_path / "folder"), "--epochs", "1"]
    assert main([*argv, "--out", str(out), "--no-progress", "--batch-size", "4"]) == 0
    run = load_run(out)
    assert run.architecture["kwargs"] == {"in_channels": 3, "num_classes": 2, "image_size": 32}
    assert run.manifest["config"]["crop"] == 32 and run.manifest["config"]["flip"] is True
    assert run.mean.shape == (3, 36, 36)  # stored 36x36, trained on random 32x32 crops
    evo = Evolution(run, k=2, device="cpu")  # the default probe is rebuilt from the manifest
    assert len(evo.probe) == 11 and evo.image(0).shape == (3, 32, 32)
    assert evo.top(1, "conv1").images.shape == (32, 2)


def test_train_reports_bad_choices(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert main(["train", "--arch", "zfnet", "--data", "demo", "--out", out]) == 2
    assert "zfnet takes 224x224 images" in capsys.readouterr().err
    missing = str(tmp_path / "nope")
    assert main(["train", "--arch", "small-zf", "--data", missing, "--out", out]) == 2
    assert "is not a directory" in capsys.readouterr().err
    # argparse's refusals too: exit 2 and one line (not the whole usage block)
    assert main(["train", "--arch", "resnet", "--data", "demo", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'resnet'" in err and "see zfwidgets train --help" in err
    assert len(err.strip().splitlines()) == 1, err


def _pictures(root, n: int = 40):
    from PIL import Image

    rng = torch.Generator().manual_seed(2)
    for i in range(n):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (torch.rand(32, 32, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def _mine_args(data, out, *extra):
    return ["mine", "--model", "small_zfnet", "--data", str(data), "--layers", "conv1,conv2",
            "--out", str(out), "--batch-size", "8", "--no-progress", *extra]  # fmt: skip


def test_mine_writes_a_file_topk_load_reads(tmp_path, capsys):
    import torchvision

    from zfwidgets import Inspector
    from zfwidgets.core.mining import TopK
    from zfwidgets.zoo.registry import get_model, preprocessing_for

    data = _pictures(tmp_path / "pics")
    assert main(_mine_args(data, tmp_path / "top.pt", "--k", "5", "--limit", "30")) == 0
    assert "over 30 images" in capsys.readouterr().out
    torch.manual_seed(0)  # the command's default --seed: the same random weights
    insp = Inspector(get_model("small_zfnet")[0], device="cpu")
    folder = torchvision.datasets.ImageFolder(
        str(data), transform=preprocessing_for("small_zfnet").prepare
    )
    top = TopK.load(tmp_path / "top.pt", insp, torch.utils.data.Subset(folder, range(30)))
    assert top.count == 30 and top.k == 5 and set(top.layers) == {"features.1", "features.5"}
    assert not (tmp_path / "top.pt.partial").exists()


def test_mine_interrupted_then_resumed_equals_a_full_run(tmp_path, capsys, monkeypatch):
    from zfwidgets import Inspector
    from zfwidgets.core.mining import TopK

    data = _pictures(tmp_path / "pics")
    assert main(_mine_args(data, tmp_path / "full.pt")) == 0
    out = tmp_path / "top.pt"
    real, calls = Inspector.run_batch, []

    def ctrl_c_on_the_third_batch(self, batch, names):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, batch, names)

    monkeypatch.setattr(Inspector, "run_batch", ctrl_c_on_the_third_batch)
    capsys.readouterr()
    assert main(_mine_args(data, out)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"zfwidgets: interrupted after 16 of 40 images; the work is kept in {out}.partial: "
        "rerun the same command with --resume to continue"
    ]
    monkeypatch.setattr(Inspector, "run_batch", real)
    assert main(_mine_args(data, out)) == 2  # no --resume: refused, the work is kept
    assert "add --resume" in capsys.readouterr().err
    assert main(_mine_args(data, out, "--resume")) == 0
    assert f"resumed at 16 of 40 images from {out}.partial" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="nothing was checked"):
        full, resumed = TopK.load(tmp_path / "full.pt"), TopK.load(out)
    for name, t in full.layers.items():
        assert torch.equal(resumed.layers[name].values, t.values)
        assert torch.equal(resumed.layers[name].images, t.images)
        assert torch.equal(resumed.layers[name].positions, t.positions)
    assert resumed.data_fingerprint == full.data_fingerprint
    assert not (tmp_path / "top.pt.partial").exists()


def test_mine_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    data = _pictures(tmp_path / "pics", n=4)
    (tmp_path / "empty").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    cases = [
        (_mine_args(tmp_path / "nope", tmp_path / "a.pt"), "is not a folder"),
        (_mine_args(tmp_path / "empty", tmp_path / "a.pt"), "has no images to mine"),
        (_mine_args(data, tmp_path / "no" / "a.pt"), "does not exist"),
        (_mine_args(data, tmp_path), "is a folder"),
        ([*_mine_args(data, tmp_path / "a.pt"), "--layers", "conv9"], "unknown layer 'conv9'"),
        ([*_mine_args(data, tmp_path / "a.pt"), "--k", "0"], "must be positive"),
    ]
    import os

    if os.geteuid() != 0:  # root writes anywhere
        cases.append((_mine_args(data, locked / "a.pt"), "is not writable"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("zfwidgets: error:") and message in err[0]


def test_output_paths_that_cannot_be_written_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    import zfwidgets.figures
    import zfwidgets.train.command

    # nothing may start before the path is checked
    monkeypatch.setattr(zfwidgets.train.command, "_demo", lambda *a: 1 / 0)
    monkeypatch.setattr(zfwidgets.figures, "make_figures", lambda *a, **k: 1 / 0)
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    train = ["train", "--arch", "small-zf", "--data", "demo", "--epochs", "1", "--out"]
    cases = [
        ([*train, str(afile)], "is a file, not a folder"),
        ([*train, str(afile / "run")], "'notes.txt' is a file, so no folder can be made"),
        (["figures", "--out", str(afile)], "is a file, not a folder"),
        (["figures", "--out", str(afile / "a" / "b")], "so no folder can be made inside it"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("zfwidgets: error:") and message in err[0]


def test_an_os_error_while_writing_is_one_line(capsys, monkeypatch):
    import zfwidgets.cli

    def fails(args):
        raise PermissionError(13, "Permission denied", "/read-only/run")

    parser = zfwidgets.cli.build_parser()
    monkeypatch.setattr(zfwidgets.cli, "build_parser", lambda: parser)
    args = parser.parse_args(["info", "--model", "demo"])
    monkeypatch.setattr(parser, "parse_args", lambda argv: args)
    args.run = fails
    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "zfwidgets: error: [Errno 13] Permission denied: '/read-only/run'; check the paths given"
    ]


def test_output_piped_into_a_reader_that_stops_early_is_not_an_error():
    """`zfwidgets info | head -1`: the closed pipe ends the command quietly, exit 0."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "zfwidgets.cli", "info", "--model", "densenet201"]  # 73 kB
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away after one line
    assert proc.wait(timeout=120) == 0
    assert b"error" not in proc.stderr.read()


def test_train_resume_takes_the_recorded_recipe_and_refuses_a_changed_one(tmp_path, capsys):
    """--resume continues at the run's own learning rate; a --lr that differs is refused in
    one line (it used to be ignored silently), and the refusal names the flag."""
    import json

    out = str(tmp_path / "run")
    base = ["train", "--arch", "small-zf", "--data", "demo", "--limit", "32", "--no-progress"]
    assert main([*base, "--epochs", "1", "--lr", "0.05", "--out", out]) == 0
    capsys.readouterr()
    assert main([*base, "--epochs", "2", "--resume", "--lr", "0.5", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lr 0.5 differs from the 0.05" in err[0] and "drop --lr" in err[0]
    assert main([*base, "--epochs", "1", "--out", out]) == 2  # again, without --resume
    assert "add --resume to continue it" in capsys.readouterr().err
    assert main([*base, "--epochs", "2", "--resume", "--out", out]) == 0
    history = json.loads((tmp_path / "run" / "manifest.json").read_text())["history"]
    assert [row["lr"] for row in history] == [0.05, 0.05]
