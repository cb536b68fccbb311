"""No command overwrites what it did not write, and OS errors on outputs are one line.

Outputs are written to a temporary file and renamed; a path that holds another kind of file
(judged by content) is refused. A full disk is simulated two ways, both real: a file size limit
(`RLIMIT_FSIZE` with SIGXFSZ ignored, so writes fail with EFBIG) in a subprocess, and a small
tmpfs where `mount` is permitted. A read-only folder is a read-only bind mount (root ignores
file modes), skipped where `mount` is not permitted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import cli_env, landscape_command

from landscape.cli import main
from landscape.errors import LandscapeError
from landscape.io.outputs import atomic_write, check_output, file_kind


def _main(*args: str | os.PathLike[str], cwd: Path) -> tuple[int, str, str]:
    """`landscape ARGS...` in this process (no start-up cost); a traceback fails the test."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:
                code = int(e.code or 0)
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def _one_line(code: int, err: str, *fragments: str) -> str:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".lock")]


@pytest.fixture(scope="module")
def surface_file(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2D surface (5x5, 50 samples): treat as read-only."""
    from landscape.jobs.compute import SurfaceConfig, compute_surface

    out = tmp_path_factory.mktemp("outputs") / "s.h5"
    compute_surface(SurfaceConfig(ckpt=str(tiny_ckpt), x="-1:1:5", y="-1:1:5", max_samples=50,
                                  out=str(out), quiet=True))
    return out


# ----------------------------------------------------------------------------- kinds by content


def test_file_kinds_are_judged_by_content(surface_file: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.png"  # names lie: only the content counts
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    (tmp_path / "page.h5").write_text("<!DOCTYPE html>\n<html><body><svg></svg></body></html>")
    (tmp_path / "notes.html").write_text("my own notes")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert file_kind(surface_file) == "hdf5"
    assert file_kind(tiny_ckpt) == "checkpoint"
    assert file_kind(legacy) == "checkpoint"
    assert file_kind(tmp_path / "page.h5") == "html"
    assert file_kind(tmp_path / "notes.html") == "other"
    assert file_kind(tmp_path / "empty.pt") == "empty"
    assert file_kind(tmp_path) == "folder"
    assert file_kind(tmp_path / "missing") is None
    check_output(tmp_path / "empty.pt", "png")  # nothing to lose
    check_output(tmp_path / "page.h5", "html")  # its own kind may be replaced
    with pytest.raises(LandscapeError, match="holds an HDF5 file .*not an HTML page"):
        check_output(surface_file, "html")
    with pytest.raises(LandscapeError, match="is a folder; give a file name"):
        check_output(tmp_path, "png")


def test_atomic_write_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old" and _temporaries(tmp_path) == []
    with atomic_write(path, "write") as tmp:
        Path(tmp).write_text("new")
    assert path.read_text() == "new" and _temporaries(tmp_path) == []
    with pytest.raises(LandscapeError, match="file name too long"):
        with atomic_write(tmp_path / ("n" * 300), "write"):
            pass


def test_outputs_of_another_kind_are_refused(surface_file: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    """report -o S.h5, a checkpoint as a plot or figure, a surface as a checkpoint, a folder or a
    name too long as a file: each refused in one line, every file byte-identical."""
    s = tmp_path / "S.h5"
    s.write_bytes(surface_file.read_bytes())
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    (tmp_path / "fig.png").write_bytes(tiny_ckpt.read_bytes())
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "S_train_loss_contour.png").write_bytes(tiny_ckpt.read_bytes())
    keep = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    cases = [
        (("report", s, "-o", s), "holds an HDF5 file"),
        (("plot", s, "--kind", "contour", "--surf", "train_loss"), "holds a torch checkpoint"),
        (("compare", s, s, "--out", "c.png"), None),  # a new file: fine (checked below)
        (("compare", s, s, "--out", "fig.png"), "holds a torch checkpoint, not a PNG image"),
        (("export", s, "--vtp", "--out", s), "is a file, not a folder"),
        (("train", "--model", "mlp", "--epochs", "1", "--out", s), "holds an HDF5 file"),
        (("surface", "--ckpt", ckpt, "--x=-1:1:3", "--out", ckpt, "--force"), "holds a torch checkpoint"),
        (("report", s, "-o", "plots"), "is a folder"),
        (("report", s, "-o", "n" * 300 + ".html"), "file name too long (choose a shorter name)"),
        (("plot", s, "--out", ckpt), "is a file; plot writes into a folder"),
    ]
    for args, fragment in cases:
        code, _, err = _main(*args, cwd=tmp_path)
        if fragment is None:
            assert code == 0, err
            continue
        _one_line(code, err, fragment)
    for p, content in keep.items():
        assert p.read_bytes() == content, p
    assert _temporaries(tmp_path) == []


# ----------------------------------------------------------------------------- full disk (EFBIG)


def _limited(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _run_limited(limit: int, *args: str | os.PathLike[str], cwd: Path) -> tuple[int, str, str]:
    proc = subprocess.run([landscape_command(), *map(str, args)], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=300, preexec_fn=lambda: _limited(limit))
    return proc.returncode, proc.stdout, proc.stderr


def test_a_full_disk_leaves_previous_outputs_and_no_temporaries(surface_file: Path, tiny_ckpt: Path,
                                                               tmp_path: Path) -> None:
    s = tmp_path / "s.h5"
    s.write_bytes(surface_file.read_bytes())
    outputs = [  # (command, the output it writes)
        (("plot", s, "--kind", "contour", "--surf", "train_loss", "--out", "plots"),
         tmp_path / "plots" / "s_train_loss_contour.png"),
        (("report", s, "-o", "r.html"), tmp_path / "r.html"),
        (("compare", s, s, "--out", "c.png"), tmp_path / "c.png"),
        (("export", s, "--vtp", "--out", "vtk"), tmp_path / "vtk" / "s_train_loss.vtp"),
        (("train", "--model", "mlp", "--model-kwargs", '{"hidden": 4}', "--epochs", "1", "--quiet",
          "--device", "cpu", "--out", "t.pt"), tmp_path / "t.pt"),
    ]
    for args, out in outputs:  # the previous outputs, written without a limit
        code, _, err = _main(*args, cwd=tmp_path)
        assert code == 0 and out.stat().st_size > 2000, err
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for args, out in outputs:
        code, _, err = _run_limited(2000, *args, cwd=tmp_path)
        _one_line(code, err, "cannot write ", str(out.relative_to(tmp_path)), "file too large")
    code, _, err = _run_limited(2000, "surface", "--ckpt", tiny_ckpt, "--x=-1:1:41", "--y=-1:1:41",
                                "--out", "new.h5", cwd=tmp_path)
    _one_line(code, err, "cannot write surface file new.h5: file too large")
    assert not (tmp_path / "new.h5").exists()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert _temporaries(tmp_path) == []


def test_a_rerun_restores_lost_final_metadata(surface_file: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    """All points stored, metrics and run record lost (a full disk at the very end): the rerun
    writes them instead of saying 'nothing to do'; values are unchanged."""
    s = tmp_path / "s.h5"
    s.write_bytes(surface_file.read_bytes())
    with h5py.File(s, "r+") as f:
        metrics = json.loads(f.attrs["metrics"])
        values = f["train_loss"][()]
        del f.attrs["metrics"]
        f.attrs["runs"] = "[]"
    code, out, err = _main("surface", "--ckpt", tiny_ckpt, "--x=-1:1:5", "--y=-1:1:5", "--max-samples", "50",
                           "--out", s, cwd=tmp_path)
    assert code == 0, err
    assert "restored" in out
    with h5py.File(s, "r") as f:
        assert json.loads(f.attrs["metrics"]) == metrics
        assert json.loads(f.attrs["runs"])[0]["restored_metadata"] is True
        np.testing.assert_array_equal(f["train_loss"][()], values)


# ----------------------------------------------------------------------------- tmpfs and read-only mounts


@contextlib.contextmanager
def _mounted(target: Path, *mount_args: str) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", *mount_args, str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount is not permitted here ({proc.stderr.strip()})")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_surface_on_a_small_disk_is_refused_then_finished(tiny_ckpt: Path, tmp_path: Path) -> None:
    """A real full disk (tmpfs): too little room for the file is refused before creating it;
    too little for the final metadata keeps every point; after freeing space the rerun finishes
    the file, metadata included."""
    grid = ("--x=-1:1:101", "--y=-1:1:101", "--max-samples", "20", "--quiet")
    code, _, err = _main("surface", "--ckpt", tiny_ckpt, *grid, "--out", tmp_path / "ref.h5", cwd=tmp_path)
    assert code == 0, err
    size = (tmp_path / "ref.h5").stat().st_size  # the file this run makes
    with _mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=4m", "tmpfs") as disk:
        args = ("surface", "--ckpt", tiny_ckpt, *grid, "--out", disk / "s.h5")
        filler = disk / "filler"

        def leave_free(n: int) -> None:
            filler.unlink(missing_ok=True)
            filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - n))

        leave_free(size)  # not enough for the file and its margin
        code, _, err = _main(*args, cwd=tmp_path)
        _one_line(code, err, "not enough disk space for surface file", "free some space")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
        leave_free(size + (1 << 20) + size // 2)  # room for the file, not for its updated copy
        code, _, err = _main(*args, cwd=tmp_path)
        _one_line(code, err, "not enough disk space for updating")
        with h5py.File(disk / "s.h5", "r") as f:
            assert f["computed"][()].all()  # every point kept
            assert "metrics" not in f.attrs and f.attrs["runs"] == "[]"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "s.h5"]
        filler.unlink()
        code, out, err = _main(*args, cwd=tmp_path)
        assert code == 0, err
        with h5py.File(disk / "s.h5", "r") as f:
            assert "metrics" in f.attrs and len(json.loads(f.attrs["runs"])) == 1
        assert sorted(p.name for p in disk.iterdir()) == ["s.h5"]


def test_a_read_only_folder_gives_one_line(surface_file: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "s.h5").write_bytes(surface_file.read_bytes())
    with _mounted(tmp_path / "ro", "--bind", str(src)) as ro:
        proc = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"read-only remount is not permitted ({proc.stderr.strip()})")
        s = ro / "s.h5"
        before = s.read_bytes()
        for args in (("report", s, "-o", ro / "r.html"),
                     ("plot", s, "--kind", "contour", "--surf", "train_loss", "--out", ro),
                     ("train", "--model", "mlp", "--epochs", "1", "--quiet", "--out", ro / "t.pt"),
                     ("surface", "--ckpt", tiny_ckpt, "--x=-1:1:3", "--out", ro / "n.h5")):
            code, _, err = _main(*args, cwd=tmp_path)
            _one_line(code, err, "read-only file system")
        assert s.read_bytes() == before
        assert sorted(p.name for p in ro.iterdir()) == ["s.h5"]
