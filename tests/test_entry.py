"""The process edge of every entry point: any failure is one line on stderr and a non-zero exit
(never a traceback, never a hang under `mpiexec`); arguments are checked before any work.

Entry points run for real: the installed `landscape`, `python -m landscape`, `scripts/surface.py`
and `mpiexec -n 2` (the launcher of the mpich wheel, found as in tests/test_mpi.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_env, landscape_command, mpiexec_command

from landscape.cli import build_parser
from landscape.cli.edge import DEBUG_ENV, run_command
from landscape.engine.lanczos import lanczos
from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint, save_checkpoint
from landscape.jobs.train import TrainConfig
from landscape.system.threads import CpuLimits, check_threads, omp_threads

ROOT = Path(__file__).resolve().parents[1]
SURFACE_PY = ROOT / "scripts" / "surface.py"
TOO_BIG_SEED = str(2**64)
HINT = f"rerun with {DEBUG_ENV}=1 for the traceback"


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _run(cmd: list[str], cwd: Path, timeout: float = 120, **env: str) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    env = {**cli_env(), DEBUG_ENV: "0", **env}  # as a user runs it: no traceback of a bug
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


@pytest.fixture(scope="module")
def nan_ckpt(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_ckpt` with one NaN in its second linear layer's weight (fc2.weight)."""
    ckpt = load_checkpoint(tiny_ckpt)
    state = dict(ckpt.state_dict)
    bad = state["fc2.weight"].clone()
    bad[0, 0] = float("nan")
    state["fc2.weight"] = bad
    out = tmp_path_factory.mktemp("nan_ckpt") / "nan.pt"
    save_checkpoint(dataclasses.replace(ckpt, state_dict=state), out)
    return out


# ---------------------------------------------------------------------------------------------
# the edge handler itself


def test_an_unexpected_exception_is_one_line_with_the_debug_hint(capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)

    def body() -> int:
        raise ZeroDivisionError("boom\nin two lines")

    assert run_command("landscape x", body) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == f"landscape x: error: ZeroDivisionError: boom in two lines ({HINT})"
    monkeypatch.setenv(DEBUG_ENV, "1")
    assert run_command("landscape x", body) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: boom" in err


def test_edge_keeps_interrupt_landscape_error_and_os_error(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    def interrupted() -> int:
        raise KeyboardInterrupt

    def bad_input() -> int:
        raise LandscapeError("bad --x")

    def missing() -> int:
        raise FileNotFoundError(2, "No such file or directory", "nothere.h5")

    assert run_command("p", interrupted) == 130
    assert _one_line(capsys.readouterr().err) == "p: interrupted"
    assert run_command("p", bad_input) == 2
    assert _one_line(capsys.readouterr().err) == "p: error: bad --x"
    assert run_command("p", missing) == 2
    assert _one_line(capsys.readouterr().err).startswith("p: error: nothere.h5: ")


# ---------------------------------------------------------------------------------------------
# arguments: seeds, momentum, every float option, threads


def _parse_fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(args)
    assert e.value.code == 2
    return _one_line(capsys.readouterr().err)


SEEDED = [
    ["surface", "--ckpt", "a.pt", "--seed"],
    ["train", "--seed"],
    ["hessian", "--ckpt", "a.pt", "--seed"],
    ["demo", "--seed"],
]


@pytest.mark.parametrize("value", [TOO_BIG_SEED, "-1", "1.5"])
@pytest.mark.parametrize("args", SEEDED, ids=lambda a: " ".join(a[:1] + a[-1:]))
def test_seeds_outside_0_to_2_63_are_refused(args: list[str], value: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    line = _parse_fails([*args, value], capsys)
    assert args[-1] in line and "0 to 2**63-1" in line, line


FLOATS = [
    ["train", "--lr"], ["train", "--wd"], ["train", "--momentum"], ["train", "--warmup"],
    ["demo", "--target-loss"],
    ["hessian", "--ckpt", "a.pt", "--trace-tol"], ["hessian", "--ckpt", "a.pt", "--tol"],
    ["plot", "s.h5", "--vmin"], ["plot", "s.h5", "--vmax"], ["plot", "s.h5", "--vlevel"],
    ["plot", "s.h5", "--zmax"], ["compare", "s.h5", "--zmax"], ["report", "s.h5", "--zmax"],
    ["report", "s.h5", "--interval"], ["export", "s.h5", "--zmax"],
]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
@pytest.mark.parametrize("args", FLOATS, ids=lambda a: " ".join(a[:1] + a[-1:]))
def test_every_float_option_refuses_nan_and_inf(args: list[str], value: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    line = _parse_fails([*args, value], capsys)
    assert args[-1] in line, line


@pytest.mark.parametrize("args", [
    ["train", "--momentum", "-1"], ["train", "--momentum", "1"], ["train", "--wd", "-0.1"],
    ["train", "--warmup", "-1"], ["demo", "--target-loss", "-1"],
    ["report", "s.h5", "--watch", "--interval", "1e10"], ["report", "s.h5", "--interval", "0"],
], ids=" ".join)
def test_out_of_range_numbers_are_refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert args[-2] in _parse_fails(args, capsys)


def test_watch_settings_are_bounded_like_the_option() -> None:
    from landscape.cli.options import MAX_WATCH_INTERVAL
    from landscape.render.watch import MAX_INTERVAL, WatchSettings

    assert MAX_WATCH_INTERVAL == MAX_INTERVAL
    for bad in (1e10, float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(LandscapeError, match="--interval"):
            WatchSettings(interval=bad)


def test_train_config_checks_momentum_warmup_and_seed() -> None:
    for bad in ({"momentum": -1.0}, {"momentum": float("nan")}, {"warmup_epochs": float("nan")},
                {"weight_decay": float("inf")}, {"seed": 2**64}, {"seed": -1}):
        with pytest.raises(LandscapeError):
            TrainConfig(**bad)  # type: ignore[arg-type]


def test_train_momentum_minus_one_is_one_line(run_cli) -> None:  # noqa: ANN001
    code, _, err = run_cli("train", "--model", "mlp", "--epochs", "1", "--momentum", "-1", "--quiet")
    assert code == 2 and "--momentum" in _one_line(err)


def test_threads_far_above_the_usable_cores_are_refused() -> None:
    limits = CpuLimits(cpus=2)
    assert check_threads(8, limits) == 8  # 4x the usable cores still runs
    with pytest.raises(LandscapeError, match=r"--threads 99999: .*2 usable.* at most 8"):
        check_threads(99999, limits)


def test_threads_99999_is_one_line_not_a_crash(tiny_ckpt: Path, tmp_path: Path) -> None:
    code, _, err, _ = _run([landscape_command(), "surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:3",
                            "--threads", "99999", "--quiet"], tmp_path)
    assert code == 2 and "--threads 99999" in _one_line(err)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1e9", "99999", " "])
def test_garbage_omp_num_threads_is_ignored_with_a_warning(value: str) -> None:
    threads, note = omp_threads({"OMP_NUM_THREADS": value}, CpuLimits(cpus=2))
    assert threads is None
    if value.strip():
        assert note is not None and repr(value) in note and "ignored" in note
    assert omp_threads({"OMP_NUM_THREADS": "2"}, CpuLimits(cpus=2)) == (2, None)


def test_garbage_omp_num_threads_warns_once_and_runs(tiny_ckpt: Path, tmp_path: Path) -> None:
    code, out, err, _ = _run([landscape_command(), "info", str(tiny_ckpt)], tmp_path, OMP_NUM_THREADS="abc")
    assert code == 0 and "model: mlp" in out, err
    code, _, err, _ = _run([landscape_command(), "surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:3",
                            "--max-samples", "20", "--quiet", "--out", "s.h5"], tmp_path, OMP_NUM_THREADS="1e9")
    assert code == 0, err
    assert _one_line(err).startswith("landscape surface: warning: OMP_NUM_THREADS='1e9'")


# ---------------------------------------------------------------------------------------------
# NaN weights, --watch, encodings


def test_hessian_refuses_nan_weights_naming_the_tensor(nan_ckpt: Path, run_cli) -> None:  # noqa: ANN001
    code, _, err = run_cli("hessian", "--ckpt", nan_ckpt, "--max-samples", "20")
    line = _one_line(err)
    assert code == 2 and "'fc2.weight'" in line and "NaN" in line, line


def test_lanczos_reports_a_non_finite_operator_as_nan() -> None:
    """At a diverged grid point (curvature maps) the products overflow: NaN, not a crash."""
    res = lanczos(lambda v: torch.full_like(v, float("nan")), 5, top_k=1, smallest=True, max_iter=5)
    assert np.isnan(res.values[0]) and res.min_value is not None and np.isnan(res.min_value)
    assert res.converged is False


def test_non_ascii_output_under_an_ascii_terminal(tiny_ckpt: Path, tmp_path: Path) -> None:
    named = tmp_path / "m\u03bb.pt"
    named.write_bytes(tiny_ckpt.read_bytes())
    code, out, err, _ = _run([landscape_command(), "info", named.name], tmp_path, PYTHONIOENCODING="ascii")
    assert code == 0 and "Traceback" not in err, err
    assert "m\\u03bb.pt" in out


# ---------------------------------------------------------------------------------------------
# every entry point, for real


def _entry_points() -> dict[str, list[str]]:
    return {
        "landscape": [landscape_command()],
        "python -m landscape": [sys.executable, "-m", "landscape"],
    }


@pytest.mark.parametrize("entry", ["landscape", "python -m landscape"])
def test_every_cli_entry_point_gives_one_line(entry: str, tiny_ckpt: Path, tmp_path: Path) -> None:
    cmd = _entry_points()[entry]
    (tmp_path / "badloss.py").write_text("def fn(out, y):\n    raise ZeroDivisionError('boom in the loss')\n")
    cases = [
        ["surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:3", "--seed", TOO_BIG_SEED],
        ["hessian", "--ckpt", str(tiny_ckpt), "--max-samples", "20", "--loss", "badloss:fn"],
        ["info", "missing.pt"],
    ]
    for args in cases:
        code, _, err, seconds = _run([*cmd, *args], tmp_path, PYTHONPATH=str(tmp_path))
        assert code != 0 and seconds < 120, (args, err)
        line = _one_line(err)
        assert "error:" in line, line


def test_scripts_surface_gives_one_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    for args in (["--seed", TOO_BIG_SEED], ["--threads", "99999"], ["--x=1:-1:3"]):
        code, _, err, _ = _run([sys.executable, str(SURFACE_PY), "--ckpt", str(tiny_ckpt), "--x=-1:1:3", *args],
                               tmp_path)
        assert code == 2, err
        assert _one_line(err).startswith("surface.py: error: "), err


@pytest.mark.mpi
def test_mpiexec_bad_input_on_every_rank_is_one_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    code, _, err, seconds = _run(
        [mpiexec_command(), "-n", "2", sys.executable, str(SURFACE_PY), "--ckpt", str(tiny_ckpt),
         "--x=-1:1:3", "--seed", TOO_BIG_SEED], tmp_path, timeout=90)
    assert code != 0 and seconds < 60
    assert "--seed" in _one_line(err)


@pytest.mark.mpi
def test_mpiexec_failure_on_one_rank_ends_every_rank_with_one_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    """Rank 1 alone is refused before MPI starts (MPMD: its own arguments); rank 0 would wait for it
    in the first collective forever: the launcher must end it."""
    common = [sys.executable, str(SURFACE_PY), "--ckpt", str(tiny_ckpt), "--x=-1:1:3", "--max-samples", "20",
              "--quiet", "--out", "s.h5"]
    code, _, err, seconds = _run(
        [mpiexec_command(), "-n", "1", *common, ":", "-n", "1", *common, "--threads", "99999"],
        tmp_path, timeout=90)
    assert code != 0 and seconds < 60, err
    line = _one_line(err)
    assert "rank 1" in line and "--threads 99999" in line, line
    assert not (tmp_path / "s.h5").exists()


@pytest.mark.mpi
def test_mpiexec_failure_on_one_rank_after_mpi_started_is_one_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    """Rank 1 alone fails once MPI runs (its own environment, MPMD), outside the exchange of
    chunks: it is named in one line and the launcher ends rank 0 at once (not after rank 0's
    20 s heartbeat timeout)."""
    common = [sys.executable, str(SURFACE_PY), "--ckpt", str(tiny_ckpt), "--x=-1:1:3", "--max-samples", "20",
              "--quiet", "--out", "s.h5"]
    code, _, err, seconds = _run(
        [mpiexec_command(), "-n", "1", *common, ":", "-n", "1", "-env", "LANDSCAPE_MPI_TIMEOUT", "abc", *common],
        tmp_path, timeout=90)
    assert code == 2 and seconds < 18, (seconds, err)
    assert _one_line(err) == (
        "surface.py: rank 1: error: LANDSCAPE_MPI_TIMEOUT='abc' must be a positive number of seconds"
    )


def test_no_numeric_option_takes_a_plain_int_or_float() -> None:
    """Every numeric option of every command uses a checked type (positive_float, seed_int, ...):
    a plain `float` takes nan and inf, a plain `int` any seed."""
    checked_elsewhere = {("train", "--split-seed")}  # landscape.data.sources checks it (0 to 2**32-1)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for action in p._actions:
            if (name, action.option_strings[-1] if action.option_strings else "") not in checked_elsewhere:
                assert action.type not in (int, float), f"landscape {name} {action.option_strings}"
