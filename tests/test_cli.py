"""End-to-end runs of the installed `landscape` command (in subprocesses, without CUDA)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import RunCli, cli_env, landscape_command

import landscape
from landscape.io.checkpoint import load_checkpoint
from landscape.models import create_model, list_models

HEAVY_MODULES = ("torch", "numpy", "h5py", "matplotlib", "sklearn", "plotly")


def _assert_one_line_error(result: tuple[int, str, str], *needles: str) -> str:
    """Non-zero exit, exactly one line on stderr, no traceback, and the line says `needles`."""
    code, _, err = result
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- fast answers


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_answer_at_once(flag: str) -> None:
    start = time.perf_counter()
    proc = subprocess.run(
        [landscape_command(), flag], env=cli_env(), capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0 and proc.stderr == ""
    assert elapsed < 2.0  # well under a second unloaded; torch alone takes longer to import
    if flag == "--version":
        assert proc.stdout.strip() == f"landscape {landscape.__version__}"
    else:
        for command in ("train", "models", "info", "surface"):
            assert command in proc.stdout


def test_help_and_version_do_not_import_torch() -> None:
    code = f"""
import sys
from landscape.cli import main
for argv in (["--help"], ["--version"], ["train", "--help"], ["info", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("HEAVY", sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr


# ----------------------------------------------------------------------------- models


def test_models_lists_the_registry(run_cli: RunCli) -> None:
    code, out, err = run_cli("models")
    assert code == 0 and err == ""
    names = out.split()
    assert "resnet56" in names and "resnet56_noshort" in names
    assert names == list_models()


def test_models_with_params_prints_counts(run_cli: RunCli) -> None:
    code, out, _ = run_cli("models", "resnet*", "--params")
    assert code == 0
    printed = {}
    for line in out.strip().splitlines():
        name, count = line.split()
        assert count.endswith("M")
        printed[name] = float(count[:-1])
    assert sorted(printed) == list_models("resnet*")
    for name, millions in printed.items():
        with torch.device("meta"):
            n = sum(p.numel() for p in create_model(name).parameters())
        assert millions == pytest.approx(n / 1e6, abs=5e-4), name
    # the sizes He et al. (2016) report for CIFAR ResNets
    assert printed["resnet20"] == pytest.approx(0.27, abs=0.005)
    assert printed["resnet56"] == pytest.approx(0.85, abs=0.01)
    assert printed["resnet110"] == pytest.approx(1.7, abs=0.05)
    assert printed["resnet56_noshort"] < printed["resnet56"]


def test_models_pattern_without_match(run_cli: RunCli) -> None:
    _assert_one_line_error(run_cli("models", "transformer*"), "transformer*")


# ----------------------------------------------------------------------------- train and info


def test_train_then_info(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "ck" / "mlp.pt"
    code, stdout, stderr = run_cli(
        "train", "--model", "mlp", "--data", "digits", "--epochs", "2", "--out", out, "--quiet"
    )
    assert code == 0, stderr
    assert stderr == ""
    assert out.is_file() and f"wrote {out}" in stdout

    ckpt = load_checkpoint(out)
    assert ckpt.model == "mlp" and ckpt.epoch == 2 and ckpt.data["name"] == "digits"
    # the summary line reports the metrics stored in the file
    reported = re.search(r"train loss ([\d.]+) acc ([\d.]+)%, test loss ([\d.]+)", stdout)
    assert reported is not None, stdout
    assert float(reported[1]) == pytest.approx(ckpt.metrics["train_loss"], abs=1e-4)
    assert float(reported[2]) == pytest.approx(ckpt.metrics["train_acc"], abs=0.01)
    assert float(reported[3]) == pytest.approx(ckpt.metrics["test_loss"], abs=1e-4)

    code, text, err = run_cli("info", out)
    assert code == 0 and err == ""
    assert "model: mlp" in text and "epoch: 2" in text
    assert re.search(r"^data:\n\s+name: digits$", text, re.M)
    assert re.search(r"^metrics:$", text, re.M)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        shown = re.search(rf"^\s+{key}: (\S+)$", text, re.M)
        assert shown is not None, key
        assert float(shown[1]) == pytest.approx(ckpt.metrics[key], rel=1e-5)


def test_info_json_of_a_bare_state_dict(run_cli: RunCli, tmp_path: Path) -> None:
    model = create_model("resnet8", width=4)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    # the weights are checked against the named architecture, so its arguments are needed
    args = ["info", tmp_path / "bare.pt", "--model", "resnet8"]
    _assert_one_line_error(run_cli(*args), "shape mismatch")
    code, out, err = run_cli(*args, "--model-kwargs", '{"width": 4}', "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["source"] == "state_dict" and info["model"] == "resnet8"
    assert info["model_kwargs"] == {"width": 4}
    assert info["state_entries"] == len(model.state_dict())
    float_entries = [v for v in model.state_dict().values() if v.is_floating_point()]
    assert info["state_floats"] == sum(v.numel() for v in float_entries)


# ----------------------------------------------------------------------------- bad input


def test_unknown_model_lists_close_matches(run_cli: RunCli) -> None:
    line = _assert_one_line_error(
        run_cli("train", "--model", "resnet57", "--data", "synthetic", "--epochs", "1", "--quiet"),
        "resnet57",
        "resnet56",
    )
    assert line.startswith("landscape train: error:")


def test_info_of_weights_that_do_not_fit_the_model(run_cli: RunCli, tmp_path: Path) -> None:
    torch.save(create_model("resnet20").state_dict(), tmp_path / "r20.pt")
    _assert_one_line_error(
        run_cli("info", tmp_path / "r20.pt", "--model", "resnet20_noshort"),
        "unexpected keys",
        "shortcut",
    )
    _assert_one_line_error(run_cli("info", tmp_path / "r20.pt"), "--model")


@pytest.mark.parametrize("kind", ["text", "missing"])
def test_info_of_an_unreadable_file(run_cli: RunCli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "notes.txt"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    _assert_one_line_error(run_cli("info", path), "notes.txt")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--epochs", "zero"], ["--epochs", "zero"]),
        (["--epochs", "0"], ["--epochs", "positive"]),
        (["--lr", "-1"], ["--lr", "-1"]),
        (["--lr", "nan"], ["--lr"]),
        (["--model-kwargs", "[1]"], ["--model-kwargs", "JSON object"]),
        (["--model-kwargs", "{width: 4}"], ["--model-kwargs", "JSON"]),
        (["--augment", "mixup"], ["--augment", "mixup"]),
        (["--no-such-option"], ["--no-such-option"]),
    ],
)
def test_bad_option_value(run_cli: RunCli, args: list[str], needles: list[str]) -> None:
    result = run_cli("train", "--model", "mlp", "--quiet", *args)
    _assert_one_line_error(result, *needles)
    assert result[0] == 2


def test_unknown_command(run_cli: RunCli) -> None:
    _assert_one_line_error(run_cli("trian"), "trian")


def test_cifar_without_data_root(run_cli: RunCli, tmp_path: Path) -> None:
    _assert_one_line_error(
        run_cli("train", "--model", "mlp", "--data", "cifar10", "--quiet"),
        "--data-root",
        "data_batch_1",
    )
    assert list(tmp_path.iterdir()) == []  # nothing written (no default ckpts/ directory)


def test_cifar_with_missing_data_root(run_cli: RunCli) -> None:
    _assert_one_line_error(
        run_cli(
            "train", "--model", "mlp", "--data", "cifar10", "--data-root", "/nonexistent", "--quiet"
        ),
        "/nonexistent",
        "cifar-10-batches-py",
    )
