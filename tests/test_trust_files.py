"""Trust in files and writers (issue 23): symlinks and the one-writer lock, grids that collide
in float64, temporary files left by kill -9, bounded reports, `--force` only over surface
files, markup and control characters from files in reports, strict JSON from `info --json`.

Every case runs real files, real processes (SIGKILL) and the real command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_plotting import make_surface

from landscape.cli import main
from landscape.core.grid import Axis
from landscape.errors import LandscapeError
from landscape.io.lock import SurfaceLock
from landscape.io.outputs import atomic_write
from landscape.io.storage import read_surface
from landscape.render.report import report_figures, report_html

GRID = ["--x=-1:1:3", "--y=-1:1:3"]


def _surface_argv(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["surface", "--ckpt", str(ckpt), *GRID, "--max-samples", "16", "--quiet", "--device", "cpu",
            "--out", str(out), *extra]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    rc = main(argv)
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def computed(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trust") / "real.h5"
    assert main(_surface_argv(tiny_ckpt, out)) == 0
    return out


# ---------------------------------------------------------------------------------------------
# symlinks: one lock per real file, and a link is never replaced by a file


def test_the_lock_is_taken_on_the_resolved_file(tmp_path: Path) -> None:
    real = tmp_path / "real.h5"
    real.write_bytes(b"")
    (tmp_path / "link.h5").symlink_to(real)
    (tmp_path / "folder-link").symlink_to(tmp_path, target_is_directory=True)
    with SurfaceLock.acquire(real, note=None):
        with pytest.raises(LandscapeError, match="being written by another run"):
            SurfaceLock.acquire(tmp_path / "folder-link" / "real.h5", note=None)
        with pytest.raises(LandscapeError, match="is a symbolic link"):  # never written through
            SurfaceLock.acquire(tmp_path / "link.h5", note=None)
    with SurfaceLock.acquire(tmp_path / "folder-link" / "real.h5", note=None):
        with pytest.raises(LandscapeError, match="being written by another run"):
            SurfaceLock.acquire(real, note=None)


@pytest.mark.parametrize("force", [False, True])
def test_surface_out_through_a_symlink_is_refused_and_the_link_kept(
    force: bool, computed: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.h5"
    real.write_bytes(computed.read_bytes())
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    before = real.read_bytes()
    line = _one_line_error(capsys, _surface_argv(tiny_ckpt, link, *(["--force"] if force else [])))
    assert "symbolic link" in line and os.path.realpath(real) in line
    assert link.is_symlink() and real.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.h5", "real.h5"]  # no lock, no temp left


def test_report_through_a_symlink_is_refused_and_the_link_kept(
    computed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.html"
    real.write_text("<!DOCTYPE html><html></html>")
    link = tmp_path / "link.html"
    link.symlink_to(real)
    line = _one_line_error(capsys, ["report", str(computed), "-o", str(link)])
    assert "symbolic link" in line
    assert link.is_symlink() and real.read_text() == "<!DOCTYPE html><html></html>"
    with pytest.raises(LandscapeError, match="symbolic link"), atomic_write(link, "write report"):
        pass
    assert link.is_symlink()


# ---------------------------------------------------------------------------------------------
# grids whose points collide in float64


@pytest.mark.parametrize("spec", ["5e-324:2e-323:7", "1:1.0000000000000004:5", "-1e308:1e308:3",
                                  "1e16:1.0000000000000002e16:3"])
def test_a_grid_whose_points_collide_is_refused_at_parse_time(spec: str) -> None:
    with pytest.raises(LandscapeError) as e:
        Axis.parse(spec)
    assert spec in str(e.value) and "\n" not in str(e.value)


def test_force_with_a_colliding_grid_keeps_the_good_file(
    computed: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.h5"
    out.write_bytes(computed.read_bytes())
    argv = _surface_argv(tiny_ckpt, out, "--force")
    argv[argv.index("--x=-1:1:3")] = "--x=5e-324:2e-323:7"
    assert "collide" in _one_line_error(capsys, argv)
    assert out.read_bytes() == computed.read_bytes()


# ---------------------------------------------------------------------------------------------
# temporary files left by kill -9 just before the final rename

_KILLED_WRITE = """
import os, sys, time
from pathlib import Path
from landscape.io.outputs import atomic_write
with atomic_write(Path(sys.argv[1])) as tmp:
    Path(tmp).write_bytes(b"x" * 100_000)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), 9)
    print("ready", flush=True)
    time.sleep(60)
"""


def _temps(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp"))


def test_a_rerun_removes_the_temporary_file_of_a_killed_write_and_only_that(
    computed: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.h5"
    out.write_bytes(computed.read_bytes())
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(out), "kill"], timeout=120)
    assert killed.returncode == -9
    dead = _temps(tmp_path, "s.h5")
    assert len(dead) == 1 and dead[0].stat().st_size == 100_000
    live = subprocess.Popen([sys.executable, "-c", _KILLED_WRITE, str(out), "wait"], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "ready"
        alive = [p for p in _temps(tmp_path, "s.h5") if p not in dead]
        foreign = tmp_path / ".s.h5.someone-else.tmp"  # not named as ours: never touched
        foreign.write_bytes(b"keep")
        # a rerun of the same command (it resumes, finds nothing to do, records the run)
        capsys.readouterr()
        assert main(_surface_argv(tiny_ckpt, out)) == 0
        left = _temps(tmp_path, "s.h5")
        assert dead[0] not in left, "the killed write's temporary file was left"
        assert alive[0] in left and foreign in left
    finally:
        live.kill()
        live.wait()
    read_surface(out)


# ---------------------------------------------------------------------------------------------
# report size


def test_the_report_of_a_huge_grid_is_bounded_and_says_so(tmp_path: Path) -> None:
    path = make_surface(tmp_path / "big.h5", nx=601, ny=601)
    with h5py.File(path, "r+") as f:
        f.attrs["model"] = "m" * 200_000  # one huge string attribute
    t0 = time.perf_counter()
    page = report_html([read_surface(path)])
    seconds = time.perf_counter() - t0
    assert len(page.encode()) < 12 * 2**20, f"{len(page.encode()) / 2**20:.0f} MB"
    assert "m" * 2_000 not in page
    assert "every 3rd point" in page  # said on the page
    assert seconds < 120


# ---------------------------------------------------------------------------------------------
# --force replaces only a landscape surface file


def _keras_like(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        g = f.create_group("model_weights/dense/dense")
        g.create_dataset("kernel:0", data=np.ones((4, 3), dtype=np.float32))
    return path


def test_force_refuses_an_hdf5_file_that_is_not_a_surface(
    computed: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keras = _keras_like(tmp_path / "weights.h5")
    before = keras.read_bytes()
    line = _one_line_error(capsys, _surface_argv(tiny_ckpt, keras, "--force"))
    assert "not a landscape surface file" in line and keras.read_bytes() == before
    paper = tmp_path / "paper.h5"  # a surface of the paper's code: not ours to replace either
    paper.write_bytes(computed.read_bytes())
    with h5py.File(paper, "r+") as f:
        del f.attrs["format"]
    before = paper.read_bytes()
    assert "not a landscape surface file" in _one_line_error(capsys, _surface_argv(tiny_ckpt, paper, "--force"))
    assert paper.read_bytes() == before
    empty = tmp_path / "empty.h5"  # an empty file holds nothing to lose
    empty.write_bytes(b"")
    capsys.readouterr()
    assert main(_surface_argv(tiny_ckpt, empty, "--force")) == 0
    # a landscape surface, even a damaged one, is replaced
    broken = tmp_path / "broken.h5"
    data = computed.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(_surface_argv(tiny_ckpt, broken, "--force")) == 0
    assert read_surface(broken).done == 9


# ---------------------------------------------------------------------------------------------
# markup and control characters from a file, in the report

EVIL = ("<a href='https://evil.example/'>click</a><span style='font-size:80px'>BIG</span><b>bold</b>"
        "\u202eevil\u2066x\u2069\x1b[31m\x07")


def _strings(obj: object) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _strings(v)]
    return []


def test_report_shows_markup_from_a_file_as_text(tmp_path: Path) -> None:
    path = make_surface(tmp_path / "evil.h5", nx=5, ny=5, curvature=True)
    with h5py.File(path, "r+") as f:
        for key in ("model", "dir_kind", "norm", "checkpoint"):
            f.attrs[key] = EVIL
        f.attrs["dataset"] = json.dumps({"name": EVIL})
        f.create_dataset("<b>odd<b>_loss", data=np.ones((5, 5)))
    surface = read_surface(path)
    for surf in (None, "<b>odd<b>_loss"):
        texts = [s for _, _, fig in report_figures([surface, surface], surf) for s in _strings(fig)]
        for text in texts:
            for tag in ("<a", "<span", "<b>", "\u202e", "\u2066", "\x1b", "\x07"):
                assert tag not in text, (tag, text)
    page = report_html([surface])
    for bad in ("\u202e", "\u2066", "\u2069", "\x1b", "\x07", "<a href='https://evil", "<span style='font"):
        assert bad not in page, bad
    assert "&lt;a href=" in page  # shown, as text


# ---------------------------------------------------------------------------------------------
# info --json is JSON


def test_info_json_writes_null_for_non_finite_numbers(
    computed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nan.h5"
    path.write_bytes(computed.read_bytes())
    with h5py.File(path, "r+") as f:
        f.attrs["seed"] = np.nan
        f.attrs["lr"] = np.inf
        f.attrs["checkpoint_metrics"] = '{"train_loss": NaN, "test_loss": -Infinity}'
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    out, _ = capsys.readouterr()

    def refuse(name: str) -> None:
        raise AssertionError(f"info --json wrote {name}")

    info = json.loads(out, parse_constant=refuse)
    assert info["seed"] is None and info["lr"] is None
    assert info["checkpoint_metrics"] == {"train_loss": None, "test_loss": None}
    assert os.path.exists(path)


@pytest.mark.browser
def test_report_markup_from_a_file_is_text_in_chromium(tmp_path: Path) -> None:
    """In the browser: no link, no styled span from the file; its markup shows as text."""
    from test_report import CHROMIUM, CHROMIUM_ARGS, _skip_or_fail

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    path = make_surface(tmp_path / "evil.h5", nx=5, ny=5)
    with h5py.File(path, "r+") as f:
        f.attrs["model"] = EVIL
        f.attrs["norm"] = EVIL
    page_path = tmp_path / "evil.html"
    page_path.write_text(report_html([read_surface(path)]), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                                   ".every(d => d._fullLayout)", timeout=60_000)
            found = page.evaluate("""() => ({
                links: document.querySelectorAll('.js-plotly-plot a').length,
                big: Array.from(document.querySelectorAll('.js-plotly-plot [style]')).filter(e => e.style.fontSize === '80px').length,
                titles: Array.from(document.querySelectorAll('.js-plotly-plot .gtitle')).map(t => t.textContent)})""")
        finally:
            browser.close()
    assert found["links"] == 0 and found["big"] == 0, found
    assert any("<a href='https://evil.example/'>click</a>" in t for t in found["titles"]), found["titles"]
