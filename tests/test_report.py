"""`landscape report`: one self-contained HTML file, checked as data and in headless Chromium."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from test_plotting import bowl, make_surface, write_paper_surface

from landscape.io.storage import read_surface
from landscape.render.figure_style import CAMERA_AZIM, CAMERA_ELEV, camera_eye
from landscape.render.report import report_figures, report_html

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("LANDSCAPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (LANDSCAPE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture
def two_surfaces(tmp_path: Path) -> list[Path]:
    return [
        make_surface(tmp_path / "bowlnet.h5", curvature=True),
        make_surface(tmp_path / "steepnet.h5", scale=2.0, model="steepnet"),
    ]


def test_report_figures_share_one_scale(two_surfaces: list[Path]) -> None:
    surfaces = [read_surface(p) for p in two_surfaces]
    figs = {fig_id: fig for _, fig_id, fig in report_figures(surfaces)}
    assert list(figs) == [
        "cmp0-3d", "cmp1-3d", "cmp0-contour", "cmp1-contour",
        "s0-3d", "s0-contour", "s0-slices", "s0-traintest", "s0-eigratio",
        "s1-3d", "s1-contour", "s1-slices", "s1-traintest",
    ]
    a, b = figs["cmp0-3d"]["data"][0], figs["cmp1-3d"]["data"][0]
    # colours of a loss in 3D: all of the data (0.01..6.01), basin to walls, as the matplotlib 3D
    # views (log z by default); contours: the paper's levels (0.1..9.6) that the data reach
    assert (a["cmin"], a["cmax"]) == (b["cmin"], b["cmax"]) == pytest.approx((0.01, 0.01 + 2 * 3.0))
    eye = camera_eye(CAMERA_ELEV, CAMERA_AZIM)  # the camera of plot_surface3d
    assert figs["cmp0-3d"]["layout"]["scene"]["camera"]["eye"] == eye and eye["y"] < 0 < eye["x"]
    assert not a["reversescale"]
    acc = report_figures(surfaces, "train_acc")[0][2]["data"][0]
    assert acc["reversescale"]  # viridis_r, as plotting's accuracy views
    zranges = [figs[f"cmp{k}-3d"]["layout"]["scene"]["zaxis"]["range"] for k in (0, 1)]
    assert zranges[0] == zranges[1] == pytest.approx([0.01, 6.01])
    ca, cb = figs["cmp0-contour"]["data"][0], figs["cmp1-contour"]["data"][0]
    assert ca["contours"] == cb["contours"] and (ca["zmin"], ca["zmax"]) == (cb["zmin"], cb["zmax"])
    assert (ca["zmin"], ca["zmax"]) == pytest.approx((0.1, 0.01 + 2 * 3.0))
    # the 3D data are the file's values, rows along y (plotly's layout)
    s = surfaces[1]
    X, Y = np.meshgrid(s.x, s.y)
    np.testing.assert_allclose(np.array(b["z"], dtype=float), bowl(X, Y, 2.0), rtol=1e-5)
    # slices through the centre: train loss along x at y = 0
    sl = next(t for t in figs["s1-slices"]["data"] if t["name"] == "train loss")
    np.testing.assert_allclose(sl["y"], bowl(s.x, 0 * s.x, 2.0), rtol=1e-5)
    # the paper's curvature scale
    er = figs["s0-eigratio"]["data"][0]
    assert (er["zmin"], er["zmax"]) == (0.0, 0.5)


def test_report_1d_paper_and_partial_files(tmp_path: Path) -> None:
    write_paper_surface(tmp_path / "paper.h5")
    line = read_surface(make_surface(tmp_path / "line.h5", nx=31, ny=None))
    half = read_surface(make_surface(tmp_path / "half.h5", done=100))
    figs = report_figures([line, read_surface(tmp_path / "paper.h5"), half])
    ids = [fig_id for _, fig_id, _ in figs]
    assert ids == ["cmp1-3d", "cmp2-3d", "cmp1-contour", "cmp2-contour",
                   "s0-curve", "s1-3d", "s1-contour", "s1-slices",
                   "s2-3d", "s2-contour", "s2-slices", "s2-traintest"]
    half3d = dict((i, f) for _, i, f in figs)["s2-3d"]
    assert len(half3d["data"][0]["x"]) == 7  # 100 points of 15 per x row: 7 rows hold data
    html = report_html([half])
    assert "partial: 100 of 315 points computed" in html


def test_report_command_writes_one_small_self_contained_file(run_cli, two_surfaces: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    code, out, err = run_cli("report", *two_surfaces, "-o", "plots/report.html")
    assert code == 0, err
    assert out.strip() == "plots/report.html"
    page = (tmp_path / "plots/report.html").read_text(encoding="utf-8")
    js = _plotlyjs()
    assert page.count(js[:300]) == 1 and page.count(js[-300:]) == 1  # plotly.js inlined once
    size = (tmp_path / "plots/report.html").stat().st_size
    assert size < len(js.encode()) + 300_000 and size < 5 * 2**20
    assert "<script src" not in page and "cdn." not in page.replace(js, "")
    assert "MathJax" not in page.replace(js, "")
    code, out, err = run_cli("report", two_surfaces[0], "--surf", "test_acc_x")
    assert code != 0 and "has no 'test_acc_x'; it holds: train_loss" in err and len(err.strip().splitlines()) == 1


@pytest.mark.browser
def test_report_in_headless_chromium(two_surfaces: list[Path], tmp_path: Path) -> None:
    """No request but the file itself, no console error, one plotly graph with data per figure."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    page_path = tmp_path / "report.html"
    page_path.write_text(report_html([read_surface(p) for p in two_surfaces]), encoding="utf-8")
    url = page_path.resolve().as_uri()
    expected = 13  # 2 x (3D + contour) side by side; 5 + 4 per surface (see the test above)
    requests: list[str] = []
    errors: list[str] = []

    def route(r) -> None:  # noqa: ANN001
        requests.append(r.request.url)
        if r.request.url == url:
            r.continue_()
        else:
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.route("**/*", route)
            t0 = time.perf_counter()
            page.goto(url, wait_until="load")
            page.wait_for_function(
                f"() => {{ const g = document.querySelectorAll('.js-plotly-plot');"
                f" return g.length === {expected} && Array.from(g).every(d => d._fullLayout); }}",
                timeout=60_000,
            )
            load_seconds = time.perf_counter() - t0
            graphs = page.evaluate(
                """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
                    id: gd.id, traces: gd.data.length,
                    values: gd.data.some(t => (t.z && t.z.length > 0) || (t.y && t.y.length > 0))}))"""
            )
            page.screenshot(path=str(tmp_path / "report.png"))
            # a loss starts on log10 z (as the matplotlib 3D views); the toggle switches every 3D graph
            page.wait_for_function("() => document.body.dataset.zscale === 'log'")
            z = page.evaluate("() => document.getElementById('ls-cmp0-3d').data[0].z[7][10]")
            page.click("#ls-log-toggle")
            page.wait_for_function("() => document.body.dataset.zscale === 'linear'")
            zlin = page.evaluate("() => document.getElementById('ls-cmp0-3d').data[0].z[7][10]")
            # moving one side-by-side camera moves the other
            eyes = page.evaluate(
                """() => Plotly.relayout('ls-cmp0-3d', {'scene.camera': {eye: {x: 0.2, y: 2.1, z: 0.4}}})
                    .then(() => new Promise(r => setTimeout(r, 200)))
                    .then(() => ['ls-cmp0-3d', 'ls-cmp1-3d', 'ls-s0-3d'].map(
                        id => document.getElementById(id).layout.scene.camera))"""
            )
            page.wait_for_timeout(300)
        finally:
            browser.close()
    assert requests == [url], f"unexpected requests: {requests}"
    assert errors == [], errors
    assert len(graphs) == expected
    assert all(g["traces"] > 0 and g["values"] for g in graphs), graphs
    assert z == pytest.approx(np.log10(0.01))  # centre of the bowl, log10
    assert zlin == pytest.approx(0.01)
    assert eyes[1]["eye"] == {"x": 0.2, "y": 2.1, "z": 0.4}
    assert eyes[2] is None or eyes[2].get("eye") != {"x": 0.2, "y": 2.1, "z": 0.4}  # not linked
    assert (tmp_path / "report.png").stat().st_size > 20_000
    assert load_seconds < 60
