"""Surfaces useful early: a run stopped part-way holds complete coarse levels, and `plot`,
`report` and `info` show the finest one over the whole range; `report --watch` follows a real
run level by level and ends with a report that no longer reloads.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from conftest import cli_env, landscape_command, run_cli_here

from landscape.core.grid import level_points
from landscape.core.loss_surface import Surface
from landscape.core.preview import complete_level, preview, preview_note
from landscape.errors import LandscapeError
from landscape.io.storage import read_surface
from landscape.jobs.compute import SurfaceConfig, run_config
from landscape.jobs.executor import SerialExecutor, Work
from landscape.jobs.info import describe
from landscape.render.labels import partial_note
from landscape.render.plotting import plot_surface
from landscape.render.report import report_html
from landscape.render.watch import WatchSettings, watch_report

GRID = {"x": "-1:1:9", "y": "-1:1:9", "max_samples": 64}  # levels: 2x2, 3x3, 5x5, 9x9 points


class _StopAfter:
    """A serial run interrupted after `n` points: the real job, file and evaluation, then Ctrl-C."""

    rank = 0
    local_rank = 0
    size = 1

    def __init__(self, n: int) -> None:
        self.n = n
        self.order: list[int] = []

    def run(self, work: Work) -> None:
        start = work.prepare()
        evaluate, unit = work.setup(len(start.pending), None, None)
        todo = np.asarray(start.pending[: self.n], dtype=np.int64)
        for lo in range(0, len(todo), max(1, unit)):
            idx = todo[lo : lo + max(1, unit)]
            start.sink.write(idx, evaluate(idx), 0.01, 0)
            self.order += idx.tolist()
        raise KeyboardInterrupt

    def sync(self) -> None:
        return None


def _partial(ckpt: Path, out: Path, n: int) -> list[int]:
    stop = _StopAfter(n)
    with pytest.raises(KeyboardInterrupt):
        run_config(SurfaceConfig(ckpt=str(ckpt), out=str(out), quiet=True, **GRID), stop)
    return stop.order


def _surface(done: np.ndarray) -> Surface:
    x, y = np.linspace(-1, 1, done.shape[0]), np.linspace(-2, 2, done.shape[1])
    loss = np.add.outer(x**2, y**2)
    return Surface("s.h5", x, y, {"train_loss": np.where(done, loss, np.nan)}, done.astype(bool), {"model": "m"})


def test_preview_is_the_finest_complete_sub_grid() -> None:
    done = np.zeros((51, 51), bool)
    keep = level_points(51, 2, anchor=25)  # both axes have 0 at index 25: levels count from there
    assert keep.tolist() == [0, *range(1, 50, 2), 50]
    done[np.ix_(keep, keep)] = True
    done[2, 2] = done[4, 1] = True  # a few points of the next level: not a complete level yet
    s = _surface(done)
    p = preview(s)
    assert p.shape == (27, 27) and p.computed.all() and p.done == 729
    np.testing.assert_array_equal(p.x, s.x[keep])
    np.testing.assert_array_equal(p.y, s.y[keep])
    assert 0.0 in p.x and 0.0 in p.y  # the centre (the trained weights) is in every preview
    np.testing.assert_array_equal(p.arrays["train_loss"], np.add.outer(s.x[keep] ** 2, s.y[keep] ** 2))
    assert preview_note(p) == partial_note(p) == "preview: 27x27 of 51x51, every 2nd point; 731/2601 computed"
    assert preview(p) is p  # a preview is complete: nothing more to cut

    done[3, 1] = False  # a point of the spacing-2 level missing: only the spacing-4 level is whole
    p = preview(_surface(done))
    assert p.shape == (15, 15) and p.x[-1] == 1.0 and 0.0 in p.x and "every 4th point" in partial_note(p)


def test_complete_and_unordered_surfaces_are_shown_as_they_are() -> None:
    full = _surface(np.ones((9, 9), bool))
    assert preview(full) is full and partial_note(full) is None
    strip = np.zeros((9, 9), bool)
    strip[:4] = True  # a file computed row by row (before coarse-to-fine): no whole level
    s = _surface(strip)
    assert complete_level(strip) is None and preview(s) is s
    assert partial_note(s) == "partial: 36 of 81 points computed"
    line = _surface(np.ones((9, 9), bool))
    one_d = Surface("l.h5", line.x, None, {"train_loss": line.x**2}, np.isin(np.arange(9), [0, 4, 8, 2, 6]))
    p = preview(one_d)
    assert p.shape == (5,) and p.y is None and "every 2nd point; 5/9" in partial_note(p)


def test_a_stopped_serial_run_previews_its_level_and_resumes(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    order = _partial(tiny_ckpt, out, 25 + 4)  # the 5x5 level and 4 points of the next
    s = read_surface(out)
    assert s.done == 29
    # the points were computed coarse to fine: first the 3x3 of ends and centre, then 5x5
    assert set(order[:9]) == {i * 9 + j for i in (0, 4, 8) for j in (0, 4, 8)}
    rows = [np.unravel_index(k, (9, 9)) for k in order[:25]]
    assert all(i % 2 == 0 and j % 2 == 0 for i, j in rows)
    p = preview(s)
    assert p.shape == (5, 5) and p.computed.all()
    np.testing.assert_array_equal(p.arrays["train_loss"], s.arrays["train_loss"][::2, ::2])
    note = "preview: 5x5 of 9x9, every 2nd point; 29/81 computed"
    assert partial_note(p) == note

    # info, plot and report on the partial file say which level they show
    assert "preview: 5x5 of 9x9, every 2nd point; 29/81 computed" in describe(out)
    fig, ax = plt.subplots()
    plot_surface(p, "train_loss", kind="contour", ax=ax)
    assert ax.get_title().endswith("\n" + note)
    plt.close(fig)
    code, stdout, err = run_cli_here(tmp_path, "plot", out, "--surf", "train_loss", "--kind", "contour")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == f"note: {note} (the file is still being computed; plot it again later)"
    assert lines[1:] and all((tmp_path / line).exists() for line in lines[1:])
    page = report_html([s])
    assert note in page and "blank areas" not in page and "http-equiv='refresh'" not in page

    # resume: the rest, in order, and nothing recomputed
    run_config(SurfaceConfig(ckpt=str(tiny_ckpt), out=str(out), quiet=True, **GRID), SerialExecutor())
    done = read_surface(out)
    assert done.computed.all() and [r["points"] for r in done.attrs["runs"]] == [81 - 29]
    assert preview(done) is done and partial_note(done) is None
    kept = s.computed
    np.testing.assert_array_equal(done.arrays["train_loss"][kept], s.arrays["train_loss"][kept])


@pytest.mark.e2e
def test_report_watch_follows_a_real_run_to_the_end(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    """A real `landscape surface` in a subprocess, `landscape report --watch` in another: the
    watcher writes a preview report that reloads, then the final one without the reload."""
    surface = tmp_path / "r.h5"
    html = tmp_path / "r.html"
    # the watcher first: it waits for the file that the run creates
    watcher = subprocess.Popen(
        [landscape_command(), "report", str(surface), "--watch", "--interval", "0.2", "-o", str(html)],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    cmd = [landscape_command(), "surface", "--ckpt", str(tiny_resnet_ckpt), "--x=-1:1:17", "--y=-1:1:17",
           "--max-samples", "200", "--out", str(surface)]
    run = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 240
        previews = []
        while watcher.poll() is None and time.monotonic() < deadline:
            if html.exists():
                page = html.read_text(encoding="utf-8")
                if "of 17x17, every" in page and page not in previews:
                    previews.append(page)
            time.sleep(0.1)
        out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, err
        assert run.wait(timeout=60) == 0, run.stderr.read() if run.stderr else ""
    finally:
        for proc in (run, watcher):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert previews, f"the watcher wrote no preview report: {out}"
    assert all("http-equiv='refresh'" in page for page in previews)
    assert any("of 17x17, every 2nd point" in page or "of 17x17, every 4th point" in page for page in previews)
    final = html.read_text(encoding="utf-8")
    assert "http-equiv='refresh'" not in final and "of 17x17" not in final and "points computed" not in final
    assert "289 of 289" in final  # the metadata table: every point
    lines = out.strip().splitlines()
    assert lines[0].startswith("waiting for ") and lines[-1].endswith("r.h5 complete")
    assert any("preview: " in line for line in lines)


def test_watch_stops_on_its_limit_and_ctrl_c_leaves_a_page_that_no_longer_reloads(
    tiny_ckpt: Path, tmp_path: Path
) -> None:
    out = tmp_path / "s.h5"
    _partial(tiny_ckpt, out, 9 + 1)  # the 3x3 level and one point more
    page = tmp_path / "w.html"
    lines: list[str] = []
    with pytest.raises(LandscapeError, match="still incomplete after 0.3 s; the last report written is kept"):
        watch_report([out], page, settings=WatchSettings(interval=0.1, reload_seconds=7, limit=0.3),
                     on_write=lines.append)
    assert lines == [f"{page}: s.h5 preview: 3x3 of 9x9, every 4th point; 10/81 computed"]  # one level: one write
    text = page.read_text(encoding="utf-8")
    assert "<meta http-equiv='refresh' content='7'>" in text and "3x3 of 9x9, every 4th point" in text

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        watch_report([out], page, settings=WatchSettings(interval=0.1), on_write=interrupt)
    text = page.read_text(encoding="utf-8")
    assert "http-equiv='refresh'" not in text and "3x3 of 9x9, every 4th point" in text


def test_interval_without_watch_is_refused_in_one_line(tmp_path: Path) -> None:
    code, _, err = run_cli_here(tmp_path, "report", "missing.h5", "--interval", "2")
    assert code != 0 and err.strip().splitlines() == [
        "landscape report: error: --interval is for --watch: add --watch, or leave --interval out"
    ]
