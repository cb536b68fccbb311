"""The execution core and the job value: chunks in order to the sink, a frozen job, one builder.

Unit tests: no subprocess, no MPI (the MPI executor's runs are in test_mpi.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from landscape.core.grid import Axis, Grid, level_breaks
from landscape.errors import LandscapeError, describe_error, one_line
from landscape.io.storage import read_surface
from landscape.jobs.compute import SurfaceConfig, prepare_job
from landscape.jobs.executor import (
    ChunkQueue,
    ListSink,
    RunStats,
    SerialExecutor,
    Start,
    Work,
    chunk_points,
)
from landscape.jobs.runner import run_job


def test_serial_executor_gives_every_pending_index_once_in_order() -> None:
    sink = ListSink()
    seen: list[RunStats] = []
    work = Work(
        prepare=lambda: Start(np.array([2, 3, 5, 7, 11]), sink),
        setup=lambda n, message, preloaded: (lambda idx: {"v": idx * 10.0}, 2),
        finish=seen.append,
    )
    stats = SerialExecutor().run(work)
    flat = np.concatenate([idx for idx, _ in sink.chunks])
    np.testing.assert_array_equal(flat, [2, 3, 5, 7, 11])
    np.testing.assert_array_equal(np.concatenate([v["v"] for _, v in sink.chunks]), flat * 10.0)
    assert len(sink.chunks[0][0]) == 2  # the first chunk is one pass (to measure it)
    assert seen == [stats] and stats.points == 5 and stats.ranks == 1


def test_chunks_are_whole_passes_of_about_two_seconds() -> None:
    assert chunk_points(0.01, 4) == 200
    assert chunk_points(10.0, 4) == 4  # never less than one pass
    assert chunk_points(1e-9, 4) == 4096  # never more than 4096 points


def test_job_is_frozen_and_steps_return_new_jobs(tiny_ckpt: Path, tmp_path: Path) -> None:
    job = prepare_job(SurfaceConfig(ckpt=str(tiny_ckpt), x="-1:1:3", out=str(tmp_path / "j.h5"),
                                    max_samples=50, quiet=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.engine = job.engine  # type: ignore[misc]
    other = job.with_directions(dataclasses.replace(job.directions, seed=99))
    assert other is not job and other.directions.seed == 99 and job.directions.seed == 0
    assert job.restarted().record.force and not job.record.force
    assert job.quietly().engine.quiet


def test_settings_keys_are_the_same_for_the_cli_and_the_api(tiny_ckpt: Path, tmp_path: Path) -> None:
    import landscape
    from landscape.data.sources import load_dataset
    from landscape.io.checkpoint import build_model, load_checkpoint

    cli = prepare_job(SurfaceConfig(ckpt=str(tiny_ckpt), x="-1:1:3", y="-1:1:3", max_samples=50, quiet=True))
    ds = load_dataset("digits")
    api = landscape.surface(build_model(load_checkpoint(tiny_ckpt)), (ds.x_train[:50], ds.y_train[:50]),
                            x="-1:1:3", y="-1:1:3", out=tmp_path / "api.h5")
    assert sorted(cli.settings) == sorted(api.attrs["settings"])
    assert cli.settings["weights_sha256"] == api.attrs["settings"]["weights_sha256"]  # the same weights
    assert sorted(set(cli.record.attrs) & set(api.attrs)) == sorted(set(api.attrs) & set(cli.record.attrs))


def test_a_file_with_the_older_settings_keys_resumes(tiny_ckpt: Path, tmp_path: Path) -> None:
    """Files written before the settings were unified (checkpoint_sha256, no metric) resume."""
    out = tmp_path / "old.h5"
    cfg = SurfaceConfig(ckpt=str(tiny_ckpt), x="-1:1:5", max_samples=50, out=str(out), quiet=True)
    run_job(prepare_job(cfg))
    job = prepare_job(cfg)
    old = {k: v for k, v in job.settings.items() if k not in ("weights_sha256", "metric")}
    old["checkpoint_sha256"] = job.record.attrs["checkpoint_sha256"]
    with h5py.File(out, "r+") as f:
        f.attrs["settings"] = json.dumps(old)
        f["computed"][3:] = 0  # two points left to do
    before = read_surface(out).arrays["train_loss"].copy()
    run_job(prepare_job(cfg))
    after = read_surface(out)
    assert after.computed.all()
    np.testing.assert_array_equal(after.arrays["train_loss"], before)
    wrong = dict(old, checkpoint_sha256="0" * 64)
    with h5py.File(out, "r+") as f:
        f.attrs["settings"] = json.dumps(wrong)
    with pytest.raises(LandscapeError, match="checkpoint_sha256"):
        run_job(prepare_job(cfg))


def test_one_line_errors() -> None:
    assert one_line(ValueError("a\n   b")) == "ValueError: a b"
    assert one_line(RuntimeError("x" * 400)).endswith("...") and len(one_line(RuntimeError("x" * 400))) < 320
    assert describe_error(LandscapeError("as given")) == "as given"
    assert describe_error(KeyboardInterrupt()) == "interrupted"
    assert describe_error(RuntimeError("CUDA out of memory.")).startswith("out of memory (RuntimeError")


def test_in_memory_and_file_surfaces_are_equal(tmp_path: Path) -> None:
    import landscape

    torch.manual_seed(0)
    X, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    mem = landscape.surface(net, (X, y), x="-1:1:5", y="-1:1:3")
    disk = landscape.surface(net, (X, y), x="-1:1:5", y="-1:1:3", out=tmp_path / "s.h5")
    for name in ("train_loss", "train_acc"):
        np.testing.assert_array_equal(mem.arrays[name], disk.arrays[name])
    assert mem.attrs["settings"] == disk.attrs["settings"]


def test_chunks_end_at_level_breaks_serially_and_in_the_mpi_queue() -> None:
    """A coarse-to-fine grid's levels reach the file as soon as each is done: no chunk spans the
    end of a level (`Start.breaks`), serially and in rank 0's queue."""
    grid = Grid(Axis.parse("-1:1:9"), Axis.parse("-1:1:9"))
    pending = grid.order()
    breaks = level_breaks(grid, pending)
    assert breaks == (9, 25)  # 3x3 (ends and centre), then 5x5, then all 81
    sink = ListSink()
    work = Work(
        prepare=lambda: Start(pending, sink, breaks=breaks),
        setup=lambda n, message, preloaded: (lambda idx: {"v": idx * 1.0}, 2),
    )
    SerialExecutor().run(work)
    ends = np.cumsum([len(idx) for idx, _ in sink.chunks]).tolist()
    assert 9 in ends and 25 in ends and ends[-1] == 81
    np.testing.assert_array_equal(np.concatenate([idx for idx, _ in sink.chunks]), pending)

    q = ChunkQueue(pending, ranks=2, unit=4, breaks=breaks)
    q.record(0, 4, 1e-6)  # fast: the next chunk would take everything the share allows
    chunks = [q.next(0) for _ in range(40)]
    ends = np.cumsum([len(c) for c in chunks]).tolist()
    assert 9 in ends and 25 in ends and ends[-1] == 81
    np.testing.assert_array_equal(np.concatenate(chunks), pending)
