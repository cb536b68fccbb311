"""`landscape demo --quick`, end to end: files it promises, finite values, a computed table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from landscape.demo import COLUMNS, QUICK_NETS, DemoConfig, format_table, table_rows
from landscape.errors import LandscapeError
from landscape.storage import read_surface

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    from conftest import run_cli_in

    work = tmp_path_factory.mktemp("demo")
    code, out, err = run_cli_in(work, "demo", "--quick", timeout=600)
    assert code == 0, err[-2000:]
    return work, out, err


def _parse_table(out: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and rows of the metrics table printed at the end of the demo."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    header = re.split(r"\s{2,}", lines[rule - 1].strip())
    rows = []
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return header, rows


def test_quick_demo_writes_surfaces_figures_and_report(quick_run: tuple[Path, str, str]) -> None:
    work, _, _ = quick_run
    for net in QUICK_NETS:
        s = read_surface(work / "surfaces" / "demo-quick" / f"{net}.h5")
        assert s.computed.all() and s.shape == (5, 5)
        for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
            assert np.isfinite(s.arrays[name]).all(), (net, name)
        assert s.attrs["norm"] == "filter" and s.attrs["dir_kind"] == "random"
        assert s.x[0] == -1 and s.x[-1] == 1
        assert np.isfinite(s.metrics["top_eigenvalue"]) and s.metrics["top_eigenvalue"] > 0
    compare = work / "plots" / "demo_compare-quick.png"
    assert compare.stat().st_size > 10_000
    report = (work / "plots" / "report-quick.html").read_text(encoding="utf-8")
    assert report.count("js-plotly-plot") >= 0 and "plotly" in report.lower()
    assert all(net in report for net in QUICK_NETS)


def test_printed_table_is_the_stored_metrics(quick_run: tuple[Path, str, str]) -> None:
    work, out, _ = quick_run
    header, rows = _parse_table(out)
    assert [r[0] for r in rows] == list(QUICK_NETS)
    stored = table_rows([work / "surfaces" / "demo-quick" / f"{net}.h5" for net in QUICK_NETS])
    labels = {label: (key, fmt) for key, label, fmt in COLUMNS}
    checked = 0
    for row, want in zip(rows, stored):
        for label, cell in zip(header[1:], row[1:]):
            key, fmt = labels[label]
            assert cell == (fmt.format(want[key]) if key in want else "-"), (row[0], label)
            checked += cell != "-"
    assert checked >= 3 * 8  # test error, centre losses, eigenvalue, basin widths, rises...
    # and the test error is the checkpoint's own accuracy, not typed
    s = read_surface(work / "surfaces" / "demo-quick" / "resnet20.h5")
    assert float(rows[0][header.index("test err %")]) == pytest.approx(100 - s.metrics["center_test_acc"], abs=0.006)


def test_rerun_reuses_checkpoints_and_surfaces(quick_run: tuple[Path, str, str]) -> None:
    from conftest import run_cli_in

    work, out, _ = quick_run
    code, again, err = run_cli_in(work, "demo", "--quick", timeout=300)
    assert code == 0, err[-2000:]
    assert again.count("reusing") == len(QUICK_NETS)
    assert _parse_table(again) == _parse_table(out)


def test_format_table_leaves_out_empty_columns() -> None:
    text = format_table([{"net": "a", "test_err": 1.5}, {"net": "bb"}])
    assert text.splitlines()[0].split() == ["net", "test", "err", "%"]
    assert text.splitlines()[-1].split() == ["bb", "-"]


@pytest.mark.parametrize("bad", [{"resolution": 4}, {"resolution": 1}, {"nets": ()}])
def test_bad_demo_settings_are_one_line(bad: dict) -> None:
    with pytest.raises(LandscapeError) as info:
        DemoConfig(**bad)
    assert "\n" not in str(info.value)
