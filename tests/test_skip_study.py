"""`scripts/skip_study.py`, the paper's full study, run for real under `mpiexec -n 2` on tiny
CIFAR-10 files in the standard pickle layout (1 epoch, 3x3 grid): ranks split the training,
shard every surface, and rank 0 writes complete files, the figures, the report and the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import cli_env, mpiexec_command

from landscape.data.sources import write_cifar_like
from landscape.io.storage import read_surface
from landscape.studies.demo import COLUMNS, table_rows
from landscape.studies.steps import format_table

STUDY_PY = Path(__file__).resolve().parents[1] / "scripts" / "skip_study.py"
NETS = ("resnet20", "resnet20_noshort")


def test_skip_study_under_mpi_writes_complete_surfaces_report_and_table(tmp_path: Path) -> None:
    write_cifar_like(tmp_path / "data", "cifar10", n_per_file=8, seed=4)
    args = [
        "--data-root", str(tmp_path / "data"), "--nets", *NETS, "--epochs", "1", "--resolution", "3",
        "--workdir", str(tmp_path / "work"),
    ]
    proc = subprocess.run(
        [mpiexec_command(), "-n", "2", sys.executable, str(STUDY_PY), *args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    work = tmp_path / "work"
    files = [work / "surfaces" / "study" / f"{net}.h5" for net in NETS]
    for net, path in zip(NETS, files):
        s = read_surface(path)
        assert s.attrs["model"] == net and s.attrs["dataset"]["name"] == "cifar10"
        assert s.computed.all() and s.arrays["train_loss"].shape == (3, 3)
        assert np.isfinite(s.arrays["test_loss"]).all()
        assert (work / "ckpts" / "study" / f"{net}.pt").exists()
    assert (work / "plots" / "study" / "report.html").stat().st_size > 100_000
    # the printed table is the one computed from the files
    assert format_table(COLUMNS, table_rows(files)) in proc.stdout


def test_skip_study_help_and_missing_data_root(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, str(STUDY_PY), "--help"], capture_output=True, text=True, env=cli_env())
    assert ok.returncode == 0 and "mpirun" in ok.stdout and "Traceback" not in ok.stderr
    bad = subprocess.run(
        [sys.executable, str(STUDY_PY), "--data-root", str(tmp_path / "nowhere"), "--epochs", "1"],
        capture_output=True, text=True, env=cli_env(), cwd=tmp_path,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "nowhere" in bad.stderr
