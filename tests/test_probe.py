"""Untrusted HDF5 files are read first in a forked child: a crash or a hang of the HDF5 library
becomes one line. `tests/data/crashes_hdf5.h5` and `hangs_hdf5.h5` are real surface files with
random bytes flipped, found by fuzzing, on which HDF5 1.14 crashes (SIGSEGV) and loops forever
when their directions are read."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from landscape.cli import main
from landscape.errors import LandscapeError
from landscape.io import probe as probe_module
from landscape.io.probe import probe
from landscape.io.storage import read_directions

DATA = Path(__file__).parent / "data"


def _crash(path: Path) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _hang(path: Path) -> None:
    time.sleep(60)


def _refuse(path: Path) -> None:
    raise LandscapeError(f"{path}: refused for a reason")


def _fail(path: Path) -> None:
    raise KeyError("no such object")


def test_probe_turns_a_crash_a_hang_and_errors_into_one_line(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    path.write_bytes(b"x")
    probe(path, lambda p: None)  # a healthy read: nothing raised
    cases = [
        (_crash, 10.0, "the HDF5 library crashed reading it (signal 11"),
        (_hang, 0.5, "reading it did not finish in 0.5 s"),
        (_refuse, 10.0, "f.h5: refused for a reason"),
        (_fail, 10.0, "cannot be read (KeyError: 'no such object'"),
    ]
    for read, limit, fragment in cases:
        start = time.monotonic()
        with pytest.raises(LandscapeError) as e:
            probe(path, read, timeout=limit)
        assert fragment in str(e.value) and "\n" not in str(e.value)
        assert time.monotonic() - start < limit + 5  # a hung child is killed, not waited for


def test_a_file_that_crashes_hdf5_gives_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_ckpt: Path
) -> None:
    path = DATA / "crashes_hdf5.h5"
    before = path.read_bytes()
    with pytest.raises(LandscapeError) as e:
        read_directions(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    out = tmp_path / "s.h5"
    rc = main(["surface", "--ckpt", str(tiny_ckpt), "--dirs", str(path), "--x=-1:1:2", "--quiet",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and not out.exists()
    assert path.read_bytes() == before


def test_a_file_that_hangs_hdf5_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "probe_seconds", lambda path: 3.0)
    start = time.monotonic()
    with pytest.raises(LandscapeError) as e:
        read_directions(DATA / "hangs_hdf5.h5")
    assert "\n" not in str(e.value) and time.monotonic() - start < 15
