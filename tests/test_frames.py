"""Landscapes through training (`surface --ckpt SNAPS... --frames`): one surface per snapshot in
one file, exact at every point, one scale, animated in the report and by `plot --gif`."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import digits_splits, plain_evaluate

from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint
from landscape.io.storage import read_surface
from landscape.jobs.compute import SurfaceConfig, compute_surface, run_config
from landscape.jobs.distributed import SerialExecutor
from landscape.jobs.frames import compute_frames, frame_work_dir
from landscape.jobs.train import snapshot_dir
from landscape.render.frames_plot import frames_figure, save_frames
from landscape.render.report import report_html

SAMPLES = 120


def _snaps(ckpt: Path) -> list[str]:
    return [str(p) for p in sorted(snapshot_dir(ckpt).glob("epoch_*.pt"))]


def _cfg(ckpt: Path, out: Path, **kw) -> SurfaceConfig:  # noqa: ANN003
    snaps = _snaps(ckpt)
    return SurfaceConfig(ckpt=snaps[0], frames=tuple(snaps), x="-1:1:3", y="-1:1:3", max_samples=SAMPLES,
                         out=str(out), quiet=True, **kw)


@pytest.fixture(scope="module")
def frames_file(tiny_traj_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frames") / "traj_frames.h5"
    return compute_surface(_cfg(tiny_traj_ckpt, out))


def _independent_direction(state: dict, g: torch.Generator) -> dict:
    """The paper's filter-normalized Gaussian direction, written out here: one N(0, 1) draw per
    parameter tensor in order; 1-D tensors (biases) zeroed; each filter (row) scaled to the norm
    of the same filter of the weights."""
    out = {}
    for k, w in state.items():
        d = torch.randn(w.shape, generator=g, dtype=torch.float32)
        if w.dim() <= 1:
            out[k] = torch.zeros_like(w)
            continue
        wf, df = w.reshape(w.shape[0], -1), d.reshape(d.shape[0], -1)
        out[k] = (df * (wf.norm(dim=1) / (df.norm(dim=1) + 1e-10)).unsqueeze(1)).reshape(w.shape)
    return out


def test_every_frame_is_exact_and_in_one_file(frames_file: Path, tiny_traj_ckpt: Path) -> None:
    s = read_surface(frames_file)
    snaps = _snaps(tiny_traj_ckpt)
    assert s.n_frames == len(snaps) == 4
    assert s.attrs["version"] == 2 and [m["epoch"] for m in s.attrs["frames"]] == [0, 1, 2, 3]
    assert not frame_work_dir(frames_file).exists()  # the work files are gone once assembled
    from landscape.jobs.info import surface_summary

    assert surface_summary(frames_file)["frames"].startswith("4 (epochs 0, 1, 2, 3)")
    assert s.frames["train_loss"].shape == (4, 3, 3) and s.frames["computed"].all()
    # the root is the last frame, as an ordinary surface
    np.testing.assert_array_equal(s.arrays["train_loss"], s.frames["train_loss"][-1])
    splits = digits_splits(SAMPLES)
    for frame, (i, j) in ((2, (0, 2)), (1, (2, 1))):  # off-centre points of two frames
        ck = load_checkpoint(snaps[frame])
        g = torch.Generator().manual_seed(0)  # --seed 0: x drawn first, then y, on every frame
        dx = _independent_direction(ck.state_dict, g)
        dy = _independent_direction(ck.state_dict, g)
        a, b = s.x[i], s.y[j]
        state = {k: v + a * dx[k] + b * dy[k] for k, v in ck.state_dict.items()}
        own = plain_evaluate(ck.model, ck.model_kwargs, state, splits)
        for name in ("train_loss", "test_loss", "train_acc"):
            assert s.frames[name][frame, i, j] == pytest.approx(own[name], rel=1e-5), (frame, name)
    # the centre of every frame is its own snapshot
    for frame, path in enumerate(snaps):
        ck = load_checkpoint(path)
        own = plain_evaluate(ck.model, ck.model_kwargs, ck.state_dict, splits)
        assert s.frames["train_loss"][frame, 1, 1] == pytest.approx(own["train_loss"], rel=1e-5)
        assert s.frame(frame).metrics["center_train_loss"] == pytest.approx(own["train_loss"], rel=1e-5)


def test_an_interrupted_run_resumes_and_a_finished_one_is_kept(
    frames_file: Path, tiny_traj_ckpt: Path, tmp_path: Path
) -> None:
    out = tmp_path / "again.h5"
    cfg = _cfg(tiny_traj_ckpt, out)

    def stop_at_third(line: str) -> None:
        if line.startswith("frame 3/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_frames(cfg, SerialExecutor(), run_config, stop_at_third)
    assert not out.exists()  # no half-assembled output
    assert sorted(p.name for p in frame_work_dir(out).glob("*.h5")) == ["frame_0000.h5", "frame_0001.h5"]
    lines: list[str] = []
    compute_frames(cfg, SerialExecutor(), run_config, lines.append)
    a, b = read_surface(out), read_surface(frames_file)
    for name in ("train_loss", "test_acc"):
        np.testing.assert_allclose(a.frames[name], b.frames[name], rtol=1e-12)
    before = out.stat().st_mtime_ns
    lines.clear()
    compute_frames(cfg, SerialExecutor(), run_config, lines.append)
    assert out.stat().st_mtime_ns == before and lines == [f"{out}: all 4 frames are already computed"]
    with pytest.raises(LandscapeError, match="holds other frames"):
        compute_frames(replace(cfg, seed=1), SerialExecutor(), run_config)


def test_frames_that_cannot_share_a_plane_are_refused(
    tiny_traj_ckpt: Path, tiny_resnet_ckpt: Path, tmp_path: Path, run_cli  # noqa: ANN001
) -> None:
    snaps = _snaps(tiny_traj_ckpt)
    out = tmp_path / "bad.h5"
    mixed = SurfaceConfig(ckpt=snaps[0], frames=(snaps[0], str(tiny_resnet_ckpt)), out=str(out), quiet=True)
    with pytest.raises(LandscapeError, match="every frame must be a snapshot of one architecture"):
        compute_surface(mixed)
    with pytest.raises(LandscapeError, match="--frames needs 2 or more checkpoints"):
        compute_surface(replace(mixed, frames=(snaps[0],)))
    with pytest.raises(LandscapeError, match="--frames takes random directions"):
        compute_surface(replace(mixed, frames=tuple(snaps), pca=tuple(snaps)))
    assert not out.exists() and not frame_work_dir(out).exists()
    code, _, err = run_cli("surface", "--ckpt", *snaps[:2], "--x=-1:1:3")
    assert code != 0 and "add --frames" in err and len(err.strip().splitlines()) == 1


def test_a_damaged_frames_group_is_named(frames_file: Path, tmp_path: Path) -> None:
    cases = {"shape": "frames/train_loss has shape", "attr": "no 'frames' attribute",
             "link": "keeps its data in another file"}
    for case, fragment in cases.items():
        bad = tmp_path / f"{case}.h5"
        bad.write_bytes(frames_file.read_bytes())
        with h5py.File(bad, "r+") as f:
            if case == "shape":
                del f["frames/train_loss"]
                f["frames/train_loss"] = np.zeros((3, 3, 3))
            elif case == "attr":
                del f.attrs["frames"]
            else:
                (tmp_path / "other.h5").write_bytes(b"")
                del f["frames/test_acc"]
                f["frames"].create_dataset("test_acc", (4, 3, 3), dtype="f8", external=[(str(tmp_path / "other.h5"), 0, 4 * 9 * 8)])
        with pytest.raises(LandscapeError, match=fragment):
            read_surface(bad)


def test_plot_writes_frames_on_one_scale_and_a_gif(frames_file: Path, tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    from PIL import Image

    s = read_surface(frames_file)
    paths = save_frames(s, tmp_path / "p", "train_loss", dpi=60, gif=True)
    pngs = [p for p in paths if p.suffix == ".png"]
    assert [p.name for p in pngs] == [f"traj_frames_train_loss_frame_{i:03d}.png" for i in range(4)]
    with Image.open(next(p for p in paths if p.suffix == ".gif")) as gif:
        assert gif.n_frames == 4
    # one scale: every frame's contours have the same levels and colour limits
    from landscape.render.frames_plot import _frame_figure, frame_scale, frame_values

    levels, clim = frame_scale(frame_values(s, "train_loss"))
    for i in (0, 3):
        fig = _frame_figure(s, i, "train_loss", levels, clim, False, None)
        cs = next(c for c in fig.axes[0].collections if hasattr(c, "levels"))
        np.testing.assert_array_equal(cs.levels, levels)
        assert (cs.norm.vmin, cs.norm.vmax) == pytest.approx(clim)
    from landscape.render.views import colour_range, contour_levels

    values = frame_values(s, "train_loss")
    np.testing.assert_array_equal(levels, contour_levels(values))  # from all frames together
    assert clim == colour_range(levels, values)
    own = [colour_range(contour_levels([v]), [v]) for v in values]  # what each frame alone would get
    assert clim[0] <= min(c[0] for c in own) and clim[1] >= max(c[1] for c in own)
    assert len({c for c in own}) > 1  # the frames differ, so a per-frame scale would differ
    code, _, err = run_cli("plot", frames_file, "--mp4", "--out", tmp_path / "m")
    import shutil

    if shutil.which("ffmpeg") is None:
        assert code != 0 and "needs ffmpeg" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "m").exists()


@pytest.mark.browser
def test_report_animates_the_frames_in_headless_chromium(frames_file: Path, tmp_path: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install playwright)")
    from test_report import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        _skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    s = read_surface(frames_file)
    fig = frames_figure(s, "train_loss")
    assert len(fig["frames"]) == 4 and len(fig["layout"]["sliders"][0]["steps"]) == 4
    page_path = tmp_path / "report.html"
    page_path.write_text(report_html([s]), encoding="utf-8")
    url = page_path.resolve().as_uri()
    errors: list[str] = []
    requests: list[str] = []

    def route(r) -> None:  # noqa: ANN001
        requests.append(r.request.url)
        r.continue_() if r.request.url == url else r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.route("**/*", route)
            page.goto(url, wait_until="load")
            page.wait_for_function("() => { const g = document.getElementById('ls-s0-frames');"
                                   " return g && g._fullLayout && g._transitionData; }", timeout=60_000)
            info = page.evaluate("""() => { const g = document.getElementById('ls-s0-frames');
                return {frames: g._transitionData._frames.length, steps: g._fullLayout.sliders[0].steps.length,
                        buttons: document.querySelectorAll('#ls-s0-frames .updatemenu-button').length}; }""")
            z2 = page.evaluate("""() => { const g = document.getElementById('ls-s0-frames');
                return Plotly.animate(g, ['epoch 2'], {mode: 'immediate', frame: {duration: 0, redraw: true},
                    transition: {duration: 0}}).then(() => g.data[0].z[2][0]); }""")  # y index 2, x index 0
            page.evaluate("() => Plotly.animate('ls-s0-frames', ['epoch 0'], {mode: 'immediate',"
                          " frame: {duration: 0, redraw: true}, transition: {duration: 0}}).then(() => 0)")
            page.wait_for_timeout(200)
            page.click("#ls-s0-frames .updatemenu-button >> nth=0")  # play
            t0 = time.perf_counter()
            page.wait_for_function("() => document.getElementById('ls-s0-frames').layout.title.text"
                                   ".includes('epoch 3')", timeout=20_000)
            played = time.perf_counter() - t0
        finally:
            browser.close()
    assert requests == [url] and errors == [], (requests, errors)
    assert info == {"frames": 4, "steps": 4, "buttons": 2}
    assert z2 == pytest.approx(s.frames["train_loss"][2, 0, 2], rel=1e-5)
    assert played < 20


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("LANDSCAPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (LANDSCAPE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def test_frames_from_the_command_line(tiny_traj_ckpt: Path, tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    snaps = _snaps(tiny_traj_ckpt)
    out = tmp_path / "cli_frames.h5"
    code, stdout, err = run_cli("surface", "--ckpt", *snaps, "--frames", "--x=-1:1:3", "--y=-1:1:3",
                                "--max-samples", "60", "--out", out)
    assert code == 0, err
    assert f"wrote {out}: 4 frames" in stdout and "frame 4/4" in stdout
    assert read_surface(out).n_frames == 4
    code, stdout, err = run_cli("plot", out, "--surf", "train_loss", "--kind", "contour", "--gif", "--dpi", "60",
                                "--out", tmp_path / "p")
    assert code == 0, err
    assert (tmp_path / "p" / "cli_frames_train_loss_frames.gif").exists()
    assert len(list((tmp_path / "p").glob("cli_frames_train_loss_frame_*.png"))) == 4
    plain = tmp_path / "plain.h5"
    assert run_cli("surface", "--ckpt", snaps[-1], "--x=-1:1:3", "--y=-1:1:3", "--max-samples", "30",
                   "--quiet", "--out", plain)[0] == 0
    code, _, err = run_cli("plot", plain, "--gif", "--out", tmp_path / "q")
    assert code != 0 and "holds none" in err and len(err.strip().splitlines()) == 1
