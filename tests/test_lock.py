"""One writer per surface file: the lock module, and real concurrent runs of `landscape surface`.

Unit tests drive `landscape.io.lock` with real lock files and real processes (a dead pid, a live
`sleep`, a reused pid); the end-to-end tests run the installed command twice on one file, kill
a run with SIGKILL and resume it, interrupt one with SIGINT, and start two independent serial
runs under mpich's `mpiexec -n 2`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest
from conftest import cli_env, landscape_command, mpiexec_command

from landscape.errors import LandscapeError
from landscape.io.lock import Owner, SurfaceLock, is_stale, lock_path, process_start, read_owner

# a grid big enough that a run lasts several seconds on a shared two-core machine
BIG = ("--x=-1:1:61", "--y=-1:1:61")


def _write_lock(path: Path, host: str, pid: int, start: int | None) -> Path:
    lock = lock_path(path)
    lock.write_text(json.dumps({"host": host, "pid": pid, "start": start, "since": "2026-01-01T00:00:00+00:00"}))
    return lock


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# ----------------------------------------------------------------------------- the lock module


def test_lock_records_the_owner_and_is_released(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with SurfaceLock.acquire(path) as lock:
        owner = read_owner(lock_path(path))
        assert owner == lock.owner
        assert (owner.host, owner.pid) == (socket.gethostname(), os.getpid())
        assert owner.start == process_start(os.getpid()) is not None
        with pytest.raises(LandscapeError, match=f"being written by another run \\(pid {os.getpid()} on "):
            SurfaceLock.acquire(path)  # a live owner (this very process): refused
    assert not lock_path(path).exists()
    with pytest.raises(RuntimeError), SurfaceLock.acquire(path):
        raise RuntimeError("an error inside the run")
    assert not lock_path(path).exists()  # released on error too


def test_a_live_owner_is_refused_with_one_line(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    path = tmp_path / "s.h5"
    lock = _write_lock(path, socket.gethostname(), sleeper.pid, process_start(sleeper.pid))
    before = lock.read_bytes()
    with pytest.raises(LandscapeError) as err:
        SurfaceLock.acquire(path)
    message = str(err.value)
    assert "\n" not in message
    assert f"pid {sleeper.pid} on {socket.gethostname()} since 2026-01-01T00:00:00+00:00" in message
    assert f"delete {lock}" in message
    assert lock.read_bytes() == before


def test_a_dead_owner_is_taken_over_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    pid = _dead_pid()
    _write_lock(path, socket.gethostname(), pid, 12345)
    notes: list[str] = []
    lock = SurfaceLock.acquire(path, note=notes.append)
    assert read_owner(lock_path(path)) == lock.owner
    assert len(notes) == 1 and f"pid {pid}" in notes[0] and "no longer running" in notes[0]
    lock.release()
    assert not lock_path(path).exists()


def test_a_reused_pid_is_stale_but_another_host_never_is(tmp_path: Path) -> None:
    me = Owner.me()
    assert not is_stale(me)
    reused = Owner(me.host, me.pid, (me.start or 0) + 1, me.since)  # same pid, another process
    assert is_stale(reused)
    assert is_stale(Owner(me.host, _dead_pid(), 1, me.since))
    assert not is_stale(Owner("another-host", _dead_pid(), 1, me.since))
    path = tmp_path / "s.h5"
    _write_lock(path, "another-host", _dead_pid(), 1)
    with pytest.raises(LandscapeError, match="pid .* on another-host"):
        SurfaceLock.acquire(path)


def test_an_old_empty_lock_is_debris_but_release_keeps_a_taken_over_lock(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    lock = lock_path(path)
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    mine = SurfaceLock.acquire(path, note=None)
    # another run took the lock over (as if this one had been judged dead): release leaves it
    _write_lock(path, "another-host", 1, 1)
    mine.release()
    assert read_owner(lock).host == "another-host"


# ----------------------------------------------------------------------------- real runs


def _start(ckpt: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [landscape_command(), "surface", "--ckpt", str(ckpt), *BIG, "--out", "s.h5", "--quiet", *extra],
        cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(cond, timeout: float = 120) -> None:  # noqa: ANN001
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def _computed(path: Path) -> int:
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["computed"][()].sum())
    except (OSError, KeyError):
        return 0


def _run(ckpt: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [landscape_command(), "surface", "--ckpt", str(ckpt), *BIG, "--out", "s.h5", "--quiet", *extra],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300,
    )


def test_a_second_run_on_the_same_file_is_refused(tiny_ckpt: Path, tmp_path: Path) -> None:
    """Two runs with different seeds: the second is refused in one line naming the first; the
    file ends complete, holding only the first run's settings and one run record."""
    first = _start(tiny_ckpt, tmp_path)
    _wait_for(lambda: _computed(tmp_path / "s.h5") > 0)
    second = _run(tiny_ckpt, tmp_path, "--seed", "7")
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"being written by another run (pid {first.pid} on" in lines[0]
    assert first.wait(timeout=300) == 0, first.stderr.read()
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert json.loads(f.attrs["settings"])["directions"]["seed"] == 0
        assert len(json.loads(f.attrs["runs"])) == 1
        assert f["computed"][()].all()
    assert not lock_path(tmp_path / "s.h5").exists()


def test_a_finished_file_held_by_a_live_run_is_not_touched(tiny_ckpt: Path, tmp_path: Path,
                                                           sleeper: subprocess.Popen) -> None:
    """--force, or `hessian --store`, on a file another live process owns: refused, the file
    byte-identical."""
    done = subprocess.run([landscape_command(), "surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:3",
                           "--out", "s.h5", "--quiet"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before = (tmp_path / "s.h5").read_bytes()
    _write_lock(tmp_path / "s.h5", socket.gethostname(), sleeper.pid, process_start(sleeper.pid))
    again = subprocess.run([landscape_command(), "surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:5",
                            "--out", "s.h5", "--force", "--quiet"], cwd=tmp_path, env=cli_env(),
                           capture_output=True, text=True)
    assert again.returncode != 0 and f"pid {sleeper.pid}" in again.stderr
    store = subprocess.run([landscape_command(), "hessian", "--ckpt", str(tiny_ckpt), "--top-k", "1",
                            "--max-samples", "8", "--store", "s.h5"], cwd=tmp_path, env=cli_env(),
                           capture_output=True, text=True)  # the other writer of surface files
    assert store.returncode != 0 and f"pid {sleeper.pid}" in store.stderr
    assert (tmp_path / "s.h5").read_bytes() == before


def test_kill_9_then_the_rerun_takes_over_and_resumes(tiny_ckpt: Path, tmp_path: Path) -> None:
    run = _start(tiny_ckpt, tmp_path)
    _wait_for(lambda: _computed(tmp_path / "s.h5") > 0)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert read_owner(lock_path(tmp_path / "s.h5")).pid == run.pid  # left behind
    partial = _computed(tmp_path / "s.h5")
    again = _run(tiny_ckpt, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"locked by pid {run.pid}" in again.stderr and "taking over" in again.stderr
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["computed"][()].all()
        assert json.loads(f.attrs["runs"])[0]["points"] == 61 * 61 - partial  # resumed, not restarted
    assert not lock_path(tmp_path / "s.h5").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_release_the_lock(sig: signal.Signals, tiny_ckpt: Path, tmp_path: Path) -> None:
    """Ctrl-C, and SIGTERM (a batch system's time limit), end the run through its `finally`
    blocks: the lock goes, the points stay, and a rerun needs no take-over."""
    run = _start(tiny_ckpt, tmp_path)
    _wait_for(lambda: _computed(tmp_path / "s.h5") > 0)
    run.send_signal(sig)
    assert run.wait(timeout=60) == 130
    assert "interrupted" in run.stderr.read()
    assert not lock_path(tmp_path / "s.h5").exists()
    assert _computed(tmp_path / "s.h5") > 0


def test_two_serial_runs_under_mpiexec_one_refused_one_complete(tiny_ckpt: Path, tmp_path: Path) -> None:
    mpiexec = mpiexec_command()
    proc = subprocess.run(
        [mpiexec, "-n", "2", landscape_command(), "surface", "--ckpt", str(tiny_ckpt), *BIG,
         "--out", "s.h5", "--comm", "serial", "--quiet"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0  # one of the two failed, and mpiexec says so
    refused = [line for line in proc.stderr.splitlines() if "being written by another run" in line]
    assert len(refused) == 1, proc.stderr
    assert proc.stdout.count("wrote s.h5") == 0  # --quiet: and the refused run wrote nothing
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["computed"][()].all()
        assert len(json.loads(f.attrs["runs"])) == 1
    assert not lock_path(tmp_path / "s.h5").exists()


def test_under_mpi_rank_0_alone_holds_the_lock(tiny_ckpt: Path, tmp_path: Path, sleeper: subprocess.Popen) -> None:
    """--comm mpi: a file owned by a live process is refused once, by rank 0, and not created;
    once free, the two ranks compute it together (the workers take no lock) and leave none."""
    mpiexec = mpiexec_command()
    cmd = [mpiexec, "-n", "2", landscape_command(), "surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:5",
           "--y=-1:1:5", "--max-samples", "50", "--out", "s.h5", "--comm", "mpi", "--quiet"]
    lock = _write_lock(tmp_path / "s.h5", socket.gethostname(), sleeper.pid, process_start(sleeper.pid))
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count(f"being written by another run (pid {sleeper.pid}") == 1, proc.stderr
    assert not (tmp_path / "s.h5").exists()
    lock.unlink()
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f["computed"][()].all()
        assert json.loads(f.attrs["runs"])[0]["ranks"] == 2
    assert not lock_path(tmp_path / "s.h5").exists()


def test_write_surface_in_python_respects_the_lock(tmp_path: Path,
                                                   sleeper: subprocess.Popen) -> None:
    """`landscape.write_surface` replaces a file only when no live run owns it."""
    import numpy as np

    from landscape.api import write_surface
    from landscape.io.storage import read_surface

    class Plain:
        x, y = np.linspace(-1, 1, 3), None
        arrays = {"train_loss": np.array([1.0, 0.5, 1.0])}

    path = write_surface(tmp_path / "s.h5", Plain())
    assert read_surface(path).done == 3 and not lock_path(path).exists()
    before = path.read_bytes()
    _write_lock(path, socket.gethostname(), sleeper.pid, process_start(sleeper.pid))
    with pytest.raises(LandscapeError, match=f"pid {sleeper.pid}"):
        write_surface(path, Plain())
    assert path.read_bytes() == before
