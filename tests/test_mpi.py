"""MPI sharding with a real `mpiexec`: the file written by 2 and 3 ranks equals a serial run and
plain PyTorch; Ctrl-C, a killed worker, a hung worker, a failing worker and bad input each end
the job with a clear line; a stopped run resumes; asking for MPI without mpi4py names the fix.

The launcher is the mpich wheel's `mpiexec` next to this interpreter (or one on PATH); without
it these tests skip, unless LANDSCAPE_REQUIRE_MPI=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import cli_env, digits_splits, landscape_command, mpiexec_command, plain_evaluate

from landscape.core.grid import level_points
from landscape.core.preview import complete_level
from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint
from landscape.io.storage import read_directions, read_surface
from landscape.jobs.distributed import ChunkQueue, mpi_timeout, rank_threads, want_mpi

SURFACE_PY = Path(__file__).resolve().parents[1] / "scripts" / "surface.py"
# resnet8 (width 4, BatchNorm folded) on 300 digits: a few seconds of work on one core; the rule's
# plan on every rank (no trial: on a loaded machine its timing could pick another plan, whose
# values agree within 1e-5, not the 1e-6 these files are compared at)
GRID = ("--x=-1:1:21", "--y=-0.5:0.5:15", "--max-samples", "300", "--trial", "off")
BOUND = 30.0  # seconds within which every rank must have stopped after a fault


def _env(**extra: str) -> dict[str, str]:
    return {**cli_env(), **extra}


def _launch(n: int, *args: str, cwd: Path, env: dict[str, str] | None = None,
            script: bool = False) -> subprocess.Popen:
    program = [sys.executable, str(SURFACE_PY)] if script else [landscape_command(), "surface"]
    return subprocess.Popen(
        [mpiexec_command(), "-n", str(n), *program, *args], cwd=cwd, env=env or _env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _run(n: int, *args: str, cwd: Path, env: dict[str, str] | None = None, script: bool = False,
         timeout: float = 120) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    proc = _launch(n, *args, cwd=cwd, env=env, script=script)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err, time.monotonic() - t0


def _computed(path: Path, rank: int | None = None) -> int:
    """Points done (by `rank`, if given) in a surface file, read while it is being written."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            done = f["computed"][()].astype(bool)
            if rank is not None:
                done &= f["point_rank"][()] == rank
            return int(done.sum())
    except (OSError, KeyError):
        return 0


def _wait_for_points(path: Path, proc: subprocess.Popen, more_than: int, limit: float = 90,
                     rank: int | None = None) -> int:
    """Poll the surface file until it holds more than `more_than` points (by `rank`)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        done = _computed(path, rank)
        if done > more_than:
            return done
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no progress in {path} after {limit} s")


def _rank_pids(root: int) -> dict[int, int]:
    """Rank -> pid of the processes a launcher started (descendants carrying PMI_RANK)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        for child in [c for c, p in parents.items() if p == pid]:
            todo.append(child)
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for entry in env:
                if entry.startswith((b"PMI_RANK=", b"OMPI_COMM_WORLD_RANK=")):
                    found[int(entry.split(b"=")[1])] = child
    return found


def _assert_same(path: Path, ref: Path) -> None:
    a, b = read_surface(ref), read_surface(path)
    assert b.computed.all()
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
        np.testing.assert_allclose(b.arrays[name], a.arrays[name], rtol=1e-6, atol=0, err_msg=name)


def _one_line(err: str) -> str:
    assert "Traceback" not in err and "terminate called" not in err, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("surface [", "mpi: "))]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def serial_ref(tiny_resnet_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The resnet8 surface of GRID computed serially (1 thread), the reference for MPI runs."""
    mpiexec_command()
    tmp = tmp_path_factory.mktemp("mpi_serial")
    proc = subprocess.run(
        [landscape_command(), "surface", "--ckpt", str(tiny_resnet_ckpt), *GRID, "--comm", "serial",
         "--out", "serial.h5", "--quiet"],
        cwd=tmp, env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return tmp / "serial.h5"


# ---------------------------------------------------------------------------------------------
# pure parts


def test_chunk_queue_hands_out_every_point_once_in_whole_passes() -> None:
    pending = np.arange(3, 1003)
    q = ChunkQueue(pending, ranks=3, unit=8, target_seconds=1.0)
    first = {r: q.next(r) for r in range(3)}
    assert all(len(c) == 8 for c in first.values())  # one pass each, to measure the rank
    q.record(0, 8, 0.008)  # rank 0: 1 ms per point -> ~1 s = 1000 points, capped by the share
    q.record(1, 8, 0.08)  # rank 1: 10x slower -> ~100 points
    c0, c1 = q.next(0), q.next(1)
    assert len(c0) == 8 * int(np.ceil(np.ceil(976 / 6) / 8)) == 168
    assert len(c1) == 104 and len(c1) % 8 == 0
    chunks = [*first.values(), c0, c1]
    sizes = []
    while q.left:
        chunks.append(q.next(2 if len(chunks) % 2 else 0))
        sizes.append(len(chunks[-1]))
    assert len(q.next(1)) == 0
    assert np.array_equal(np.concatenate(chunks), pending)  # each point once, in order
    assert all(s % 8 == 0 for s in sizes[:-1]) and sizes[-1] <= 8
    assert sizes[-2] <= sizes[0]  # chunks shrink near the end
    starts = np.cumsum([0] + [len(c) for c in chunks])[:-1]
    assert all(s % 8 == 0 for s in starts)  # passes line up with a serial run's


def test_threads_per_rank_and_settings() -> None:
    assert rank_threads(1, cpus=8) == 8
    assert rank_threads(2, cpus=2) == 1
    assert rank_threads(3, cpus=2) == 1  # oversubscribed: still one thread each
    assert rank_threads(4, cpus=64, affinity=4) == 4  # bound by the launcher to 4 cores
    assert rank_threads(2, cpus=8, omp="3") is None  # the user's OMP_NUM_THREADS wins
    assert mpi_timeout({}) == 20.0 and mpi_timeout({"LANDSCAPE_MPI_TIMEOUT": "2.5"}) == 2.5
    with pytest.raises(LandscapeError, match="LANDSCAPE_MPI_TIMEOUT"):
        mpi_timeout({"LANDSCAPE_MPI_TIMEOUT": "soon"})
    assert want_mpi("mpi") and not want_mpi("serial")
    with pytest.raises(LandscapeError, match="--comm"):
        want_mpi("threads")


@pytest.fixture
def no_mpi4py(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import mpi4py` fails, as when it is not installed."""
    hide = tmp_path / "hide_mpi4py"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n\n\n"
        "class _NoMPI:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'mpi4py':\n"
        "            raise ModuleNotFoundError(f\"No module named {name!r}\", name=name)\n\n\n"
        "sys.meta_path.insert(0, _NoMPI())\n"
    )
    return _env(PYTHONPATH=str(hide))


def test_mpi_without_mpi4py_names_the_pip_install(tiny_ckpt: Path, tmp_path: Path,
                                                  no_mpi4py: dict[str, str]) -> None:
    for extra, env in (
        (["--comm", "mpi"], no_mpi4py),
        ([], {**no_mpi4py, "PMI_SIZE": "2", "PMI_RANK": "0"}),  # auto under a 2-rank launcher
    ):
        proc = subprocess.run(
            [landscape_command(), "surface", "--ckpt", str(tiny_ckpt), "--x=-1:1:3", "--out", "s.h5", *extra],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 2
        line = _one_line(proc.stderr)
        assert "mpi4py" in line and "pip install 'nn-landscape[mpi]'" in line, line
        assert not (tmp_path / "s.h5").exists()  # never a silent serial run


# ---------------------------------------------------------------------------------------------
# real mpiexec


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_ranks_write_the_serial_file(ranks: int, serial_ref: Path, tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    # 1 rank through the MPI path (--comm mpi); 3 ranks on a 2-core machine: oversubscribed
    comm = ("--comm", "mpi") if ranks == 1 else ()
    code, out, err, _ = _run(ranks, "--ckpt", str(tiny_resnet_ckpt), *GRID, "--out", "mpi.h5", *comm,
                             cwd=tmp_path, script=ranks == 3)
    assert code == 0, err
    assert f"mpi: {ranks} rank" in err and (f"on {ranks} ranks" in out or ranks == 1)
    path = tmp_path / "mpi.h5"
    _assert_same(path, serial_ref)
    s = read_surface(path)
    owner = s.arrays["point_rank"]
    used = set(np.unique(owner).tolist())
    assert used <= set(range(ranks)) and (len(used) > 1 or ranks == 1)
    run = s.attrs["runs"][-1]
    assert run["ranks"] == ranks and run["comm"] == "mpi"
    assert run["points_per_rank"] == [int((owner == r).sum()) for r in range(ranks)]
    assert sum(run["points_per_rank"]) == s.computed.size == run["points"]
    assert run["threads_per_rank"] == [1] * ranks


@pytest.mark.mpi
def test_every_rank_runs_its_own_trial(serial_ref: Path, tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    grid = [a for a in GRID if a not in ("--trial", "off")]
    code, _, err, _ = _run(2, "--ckpt", str(tiny_resnet_ckpt), *grid, "--trial", "on", "--out", "t.h5",
                           cwd=tmp_path)
    assert code == 0, err
    s, ref = read_surface(tmp_path / "t.h5"), read_surface(serial_ref)
    assert s.computed.all()
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
        np.testing.assert_allclose(s.arrays[name], ref.arrays[name], rtol=1e-5, atol=0, err_msg=name)
    trial = s.attrs["plan"]["plan_trial"]
    assert len(trial["candidates"]) > 1 and trial["chosen"] in [c["plan"] for c in trial["candidates"]]
    assert set(np.unique(s.arrays["point_rank"]).tolist()) == {0, 1}


@pytest.mark.mpi
def test_vmap_model_under_launcher_auto_equals_plain_pytorch(tiny_ckpt: Path, tmp_path: Path) -> None:
    # `landscape surface` with the default --comm auto shards when started by mpiexec -n 2
    code, out, err, _ = _run(2, "--ckpt", str(tiny_ckpt), "--x=-1:1:61", "--y=-1:1:41", "--out", "m.h5",
                             cwd=tmp_path)
    assert code == 0, err
    s = read_surface(tmp_path / "m.h5")
    assert s.computed.all() and len(np.unique(s.arrays["point_rank"])) == 2
    assert s.attrs["plan"]["plan_strategy"] == "vmap"
    ckpt = load_checkpoint(tiny_ckpt)
    x, y, _ = read_directions(tmp_path / "m.h5")
    splits = digits_splits()
    rng = np.random.default_rng(0)
    for i, j in zip(rng.integers(0, 61, 6), rng.integers(0, 41, 6)):
        a, b = float(s.x[i]), float(s.y[j])
        state = {k: v + a * x[k] + b * y[k] if k in x else v for k, v in ckpt.state_dict.items()}
        ref = plain_evaluate(ckpt.model, ckpt.model_kwargs, state, splits)
        for name, want in ref.items():
            assert s.arrays[name][i, j] == pytest.approx(want, rel=1e-5), (name, i, j)


@pytest.mark.mpi
def test_curvature_maps_are_sharded_like_the_losses(tiny_ckpt: Path, tmp_path: Path) -> None:
    from landscape.jobs.compute import SurfaceConfig, compute_surface

    grid = dict(x="-1:1:12", y="-1:1:8", max_samples=300)
    serial = compute_surface(SurfaceConfig(ckpt=str(tiny_ckpt), out=str(tmp_path / "serial.h5"),
                                           curvature=True, comm="serial", quiet=True, **grid))
    code, _, err, _ = _run(2, "--ckpt", str(tiny_ckpt), "--x=-1:1:12", "--y=-1:1:8", "--max-samples", "300",
                           "--curvature", "--out", "mpi.h5", "--quiet", cwd=tmp_path)
    assert code == 0, err
    a, b = read_surface(serial), read_surface(tmp_path / "mpi.h5")
    assert b.computed.all()
    for name in ("max_eig", "min_eig", "train_loss"):
        np.testing.assert_allclose(b.arrays[name], a.arrays[name], rtol=1e-6, err_msg=name)


@pytest.mark.mpi
def test_interrupt_and_killed_worker_stop_every_rank_and_the_rerun_resumes(
    serial_ref: Path, tiny_resnet_ckpt: Path, tmp_path: Path
) -> None:
    args = ("--ckpt", str(tiny_resnet_ckpt), *GRID, "--out", "s.h5")
    path = tmp_path / "s.h5"
    total = read_surface(serial_ref).computed.size

    # Ctrl-C: mpiexec forwards SIGINT to every rank; each stops after the chunk in hand
    proc = _launch(2, *args, cwd=tmp_path)
    _wait_for_points(path, proc, 0)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=BOUND)
    assert time.monotonic() - t0 < BOUND and proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    after_interrupt = _computed(path)
    assert 0 < after_interrupt < total

    # a worker killed with SIGKILL: the launcher ends every rank, naming the dead process's pid
    proc = _launch(2, *args, cwd=tmp_path)
    _wait_for_points(path, proc, after_interrupt)
    pids = _rank_pids(proc.pid)
    os.kill(pids[1], signal.SIGKILL)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=BOUND)
    assert time.monotonic() - t0 < BOUND and proc.returncode != 0
    assert f"pids 0:{pids[0]} 1:{pids[1]}" in err  # our line maps ranks to pids ...
    assert f"PID {pids[1]} " in out + err or f"PID {pids[1]}\n" in out + err  # ... hydra names one
    after_kill = _computed(path)
    assert after_interrupt < after_kill < total
    with h5py.File(path, "r", locking=False) as f:  # what was flagged done holds values
        done = f["computed"][()].astype(bool)
        assert np.isfinite(f["train_loss"][()][done]).all()

    # the same command again computes only the missing points, and matches an unbroken run
    code, out, err, _ = _run(2, *args, cwd=tmp_path)
    assert code == 0, err
    assert f"wrote s.h5: {total - after_kill} points" in out
    _assert_same(path, serial_ref)
    assert [r["points"] for r in read_surface(path).attrs["runs"]] == [total - after_kill]


@pytest.mark.mpi
def test_hung_worker_is_named_within_the_timeout(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    proc = _launch(2, "--ckpt", str(tiny_resnet_ckpt), *GRID, "--out", "s.h5", cwd=tmp_path,
                   env=_env(LANDSCAPE_MPI_TIMEOUT="3"))
    pids: dict[int, int] = {}
    try:
        _wait_for_points(tmp_path / "s.h5", proc, 0, rank=1)  # rank 1 is at work
        pids = _rank_pids(proc.pid)
        os.kill(pids[1], signal.SIGSTOP)  # alive but silent, holding chunks: no launcher notices
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=BOUND)
        assert time.monotonic() - t0 < 3 + 10 and proc.returncode != 0
        assert f"rank 1 (pid {pids[1]} on " in err and "sent nothing for 3 s" in err, (proc.returncode, out, err)
        assert "rerun the same command to resume" in err
    finally:
        for pid in pids.values():  # never leave a stopped process behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture
def failing_model(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A checkpoint of a model whose forward raises on rank 1 only."""
    (tmp_path / "failing_net.py").write_text(
        "import os\n\nfrom torch import nn\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(64, 10)\n\n"
        "    def forward(self, x):\n"
        "        if os.environ.get('PMI_RANK', os.environ.get('OMPI_COMM_WORLD_RANK')) == '1':\n"
        "            raise RuntimeError('boom on rank 1')\n"
        "        return self.fc(x.flatten(1))\n\n\n"
        "def make():\n"
        "    return Net()\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import failing_net

        from landscape.io.checkpoint import Checkpoint, save_checkpoint

        ckpt = tmp_path / "failing.pt"
        save_checkpoint(Checkpoint(model="failing_net:make", state_dict=failing_net.make().state_dict()), ckpt)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("failing_net", None)
    yield ckpt, _env(PYTHONPATH=str(tmp_path))


@pytest.mark.mpi
def test_exception_on_a_worker_names_the_rank(failing_model: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    ckpt, env = failing_model
    # the user names the factory: an import path stored in a file is never imported by itself
    code, _, err, seconds = _run(3, "--ckpt", str(ckpt), "--model", "failing_net:make", "--data", "digits",
                                 "--x=-1:1:41", "--y=-1:1:41", "--out", "f.h5", cwd=tmp_path, env=env)
    assert code == 2 and seconds < 60
    assert _one_line(err).endswith("rank 1 (" + os.uname().nodename + ") failed: RuntimeError: boom on rank 1")


@pytest.mark.mpi
def test_bad_input_gives_one_line_from_all_ranks(tiny_ckpt: Path, tmp_path: Path) -> None:
    code, _, err, seconds = _run(3, "--ckpt", "missing.pt", "--x=-1:1:5", cwd=tmp_path, script=True)
    # every rank fails alike; rank 0 speaks and leaves, and the launcher ends the others (its exit
    # status is rank 0's 2, or 9 for the signal that ended a rank, whichever it reports)
    assert code in (2, 9) and seconds < 60
    assert _one_line(err) == "surface.py: error: checkpoint missing.pt does not exist"
    code, _, err, _ = _run(2, "--ckpt", str(tiny_ckpt), "--x=1:-1:5", cwd=tmp_path)
    assert code in (2, 9) and "--x='1:-1:5': MIN must be below MAX" in _one_line(err)
    assert not list(tmp_path.glob("**/*.h5"))


@pytest.mark.mpi
def test_ranks_compute_coarse_to_fine(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    """Under MPI the file fills level by level: the half-resolution sub-grid (21x21 of 41x41, a
    quarter of the points) is complete long before the end, where a row-by-row run would have
    it only with its last row (97% of the points)."""
    shape = (41, 41)
    proc = _launch(2, "--ckpt", str(tiny_resnet_ckpt), "--x=-1:1:41", "--y=-1:1:41", "--max-samples", "100",
                   "--out", "mpi.h5", cwd=tmp_path)
    path = tmp_path / "mpi.h5"
    half = np.zeros(shape, bool)
    half[np.ix_(level_points(41, 2, anchor=20), level_points(41, 2, anchor=20))] = True  # 0 at index 20
    first_half_done, snapshots = None, 0
    try:
        while proc.poll() is None:
            try:
                with h5py.File(path, "r", locking=False) as f:
                    done = f["computed"][()].astype(bool)
            except (OSError, KeyError):
                time.sleep(0.02)
                continue
            if 0 < done.sum() < done.size:
                snapshots += 1
                if first_half_done is None and done[half].all():
                    first_half_done = int(done.sum())
            time.sleep(0.02)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    s = read_surface(path)
    assert s.computed.all() and set(np.unique(s.arrays["point_rank"]).tolist()) == {0, 1}
    assert snapshots > 0, "the run ended before any partial read; enlarge the grid"
    assert first_half_done is not None and first_half_done <= 0.9 * s.computed.size, first_half_done
    assert complete_level(s.computed).spacing == 1
