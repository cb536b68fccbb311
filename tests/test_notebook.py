"""What a notebook user meets: a short repr and an HTML summary of a Surface, `landscape.plot_surface`
shown as its figure and saved by `plt.savefig`, and the warning about spinning OpenMP threads."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import landscape  # noqa: E402
from landscape.render.notebook import SurfacePlot  # noqa: E402
from landscape.system.waiting import spin_warning, warn_if_spinning  # noqa: E402


@pytest.fixture(scope="module")
def surf() -> landscape.Surface:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    return landscape.surface(net, (X, y), x="-1:1:21", y="-1:1:21", trial="off")


def test_repr_is_one_short_line_and_html_a_small_table(surf: landscape.Surface) -> None:
    text = repr(surf)
    assert "\n" not in text and len(text) < 200
    assert "2D 21x21 grid" in text and "441/441 points" in text and "train_loss" in text
    html = surf._repr_html_()
    assert html.startswith("<table>") and len(html) < 2000
    assert "21 x 21" in html and "center_train_loss" in html


def test_plot_returns_the_current_open_figure_and_savefig_works(surf: landscape.Surface, tmp_path: Path) -> None:
    plt.close("all")
    p = landscape.plot_surface(surf)
    assert isinstance(p, SurfacePlot) and p.figure is plt.gcf()
    assert len(p.levels) > 3  # the artist's attributes fall through (a QuadContourSet)
    png = p._repr_png_()  # not an inline backend: shown as a PNG
    assert png is not None and png[:4] == b"\x89PNG"
    plt.savefig(tmp_path / "after.png")
    image = plt.imread(tmp_path / "after.png")
    assert image[..., :3].std() > 0.05  # not blank: contours and labels drawn
    assert repr(p).startswith("<SurfacePlot: QuadContourSet of the first loss")
    ax = plt.figure().add_subplot()
    assert not isinstance(landscape.plot_surface(surf, ax=ax), SurfacePlot)  # on a given axes: what was drawn
    plt.close("all")


def test_spin_warning_conditions() -> None:
    busy = dict(load=4.0, usable=2, threads=2)
    assert "OMP_WAIT_POLICY=PASSIVE" in spin_warning({}, **busy)
    assert spin_warning({"OMP_WAIT_POLICY": "passive"}, **busy) is None
    assert spin_warning({"GOMP_SPINCOUNT": "0"}, **busy) is None
    assert spin_warning({}, load=1.0, usable=2, threads=2) is None
    assert spin_warning({}, load=4.0, usable=2, threads=1) is None


def test_warn_if_spinning_never_writes_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    before = dict(os.environ)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warn_if_spinning()
    assert dict(os.environ) == before
    assert all("OMP_WAIT_POLICY=PASSIVE" in str(w.message) for w in seen)  # only this warning, with the fix
