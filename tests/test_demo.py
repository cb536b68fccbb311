"""`landscape demo --quick`, end to end: files it promises, finite values, a computed table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint
from landscape.io.storage import read_surface
from landscape.studies.batch_study import (
    BATCH_COLUMNS,
    BatchStudyConfig,
    batch_runs,
    quick_batch_config,
    weight_norm,
)
from landscape.studies.demo import (
    COLUMNS,
    QUICK_NETS,
    QUICK_TARGET_LOSS,
    DemoConfig,
    table_rows,
    train_net,
)
from landscape.studies.steps import format_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    from conftest import run_cli_in

    work = tmp_path_factory.mktemp("demo")
    code, out, err = run_cli_in(work, "demo", "--quick", timeout=600)
    assert code == 0, err[-2000:]
    return work, out, err


def _parse_table(out: str, which: int = 0) -> tuple[list[str], list[list[str]]]:
    """Header cells and rows of a table the demo prints (0: the skip comparison, 1: the batch study)."""
    lines = out.splitlines()
    rules = [i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"}]
    rule = rules[which]
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
    assert again.count("reusing") == len(QUICK_NETS) + len(batch_runs(BatchStudyConfig()))
    assert _parse_table(again) == _parse_table(out)


def test_format_table_leaves_out_empty_columns() -> None:
    text = format_table(COLUMNS, [{"net": "a", "test_err": 1.5}, {"net": "bb"}])
    assert text.splitlines()[0].split() == ["net", "test", "err", "%"]
    assert text.splitlines()[-1].split() == ["bb", "-"]


@pytest.mark.parametrize("bad", [{"resolution": 4}, {"resolution": 1}, {"nets": ()}])
def test_bad_demo_settings_are_one_line(bad: dict) -> None:
    with pytest.raises(LandscapeError) as info:
        DemoConfig(**bad)
    assert "\n" not in str(info.value)


def test_quick_demo_states_the_criterion_and_whether_each_net_met_it(quick_run: tuple[Path, str, str]) -> None:
    work, out, _ = quick_run
    assert f"<= {QUICK_TARGET_LOSS:g}, at most 3 epochs" in out
    header, rows = _parse_table(out)
    column = header.index("converged (epochs)")
    for net, row in zip(QUICK_NETS, rows):
        ckpt = load_checkpoint(work / "ckpts" / "demo-quick" / f"{net}.pt")
        record = ckpt.train
        assert record["target_loss"] == QUICK_TARGET_LOSS and record["epochs"] == 3
        met, used = record["criterion_met"], record["epochs_used"]
        # met means the stored (eval-mode, whole train split) loss is under the threshold;
        # not met means the cap was reached
        assert met == (ckpt.metrics["train_loss"] <= QUICK_TARGET_LOSS)
        assert 1 <= used <= 3 and (met or used == 3) and ckpt.epoch == used
        assert row[column] == f"{'yes' if met else 'no'} ({used})"
        # the recipe column is read back from the surface file: the peak lr and the cap it trained with
        assert row[header.index("recipe")] == f"lr {record['lr']:g}, cap {record['epochs']}"


def test_cached_checkpoint_is_reused_only_with_the_same_criterion(tmp_path: Path) -> None:
    base = DemoConfig(nets=("resnet8",), epochs=2, target_loss=5.0, ckpt_dir=str(tmp_path), quiet=True)
    path, seconds = train_net(base, "resnet8")
    first = load_checkpoint(path)
    assert seconds > 0 and first.train["criterion_met"] and first.train["epochs_used"] == 1
    assert train_net(base, "resnet8") == (path, 0.0)  # same recipe and criterion: reused
    stricter = DemoConfig(nets=("resnet8",), epochs=2, target_loss=1e-6, ckpt_dir=str(tmp_path), quiet=True)
    _, seconds = train_net(stricter, "resnet8")
    again = load_checkpoint(path)
    assert seconds > 0 and again.train["target_loss"] == 1e-6
    assert not again.train["criterion_met"] and again.train["epochs_used"] == 2


def test_each_net_trains_with_its_recipe_unless_lr_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from landscape.studies.recipes import RECIPES, Recipe, recipe_for

    # the paper's recipes: lr 0.01 for the deep nets without skips, 0.1 for the rest
    assert recipe_for("resnet110_noshort").lr == recipe_for("resnet56_noshort").lr == 0.01
    assert recipe_for("resnet110").lr == recipe_for("densenet_bc40").lr == 0.1
    monkeypatch.setitem(RECIPES, "resnet8", Recipe(lr=0.02, epochs=1, warmup_epochs=0.5))
    cfg = DemoConfig(nets=("resnet8",), target_loss=5.0, ckpt_dir=str(tmp_path / "a"), quiet=True)
    record = load_checkpoint(train_net(cfg, "resnet8")[0]).train
    assert (record["lr"], record["epochs"], record["warmup_epochs"]) == (0.02, 1, 0.5)
    given = DemoConfig(nets=("resnet8",), lr=0.05, epochs=2, target_loss=5.0, ckpt_dir=str(tmp_path / "b"), quiet=True)
    ckpt = load_checkpoint(train_net(given, "resnet8")[0])
    assert (ckpt.train["lr"], ckpt.train["epochs"]) == (0.05, 2)  # --lr / --epochs: for every net
    assert (ckpt.metrics["peak_lr"], ckpt.metrics["epoch_cap"]) == (0.05, 2.0)


def test_the_batch_study_of_another_net_keeps_its_own_files() -> None:
    from landscape.studies.demo import batch_config

    default, other = batch_config(DemoConfig()), batch_config(DemoConfig(batch_net="resnet20"))
    assert (default.net, other.net) == ("vgg9", "resnet20")  # the paper's net by default
    assert default.ckpt_dir == "ckpts/demo/batch" and other.ckpt_dir == "ckpts/demo/batch-resnet20"
    assert other.surface_dir == "surfaces/demo/batch-resnet20" and (default.tag, other.tag) == ("", "resnet20")
    with pytest.raises(LandscapeError):  # a bad name fails before anything is trained
        from landscape.studies.demo import run_demo

        run_demo(DemoConfig(batch_net="no_such_net", quiet=True))


def _quick_batch(work: Path) -> BatchStudyConfig:
    cfg = BatchStudyConfig(quick=True, ckpt_dir=str(work / "ckpts" / "demo-quick" / "batch"),
                           surface_dir=str(work / "surfaces" / "demo-quick" / "batch"), plot_dir=str(work / "plots"))
    return quick_batch_config(cfg)


def test_quick_batch_study_writes_its_files_and_a_finite_table(quick_run: tuple[Path, str, str]) -> None:
    work, out, _ = quick_run
    cfg = _quick_batch(work)
    runs = batch_runs(cfg)
    for wd in cfg.weight_decays:
        s = read_surface(Path(cfg.surface_dir) / f"interp_wd{wd:g}.h5")
        assert s.y is None and s.computed.all() and s.x[0] == -0.5 and s.x[-1] == 1.5
        assert s.attrs["dir_kind"] != "random" and s.attrs["norm"] == "none"
    for run in runs:
        s = read_surface(Path(cfg.surface_dir) / f"{run.name}.h5")
        assert s.y is None and s.computed.all() and s.attrs["norm"] == "filter"
        assert load_checkpoint(Path(cfg.ckpt_dir) / f"{run.name}.pt").train["batch_size"] == run.batch
    for name in ("batch_interpolation-quick.png", "batch_directions-quick.png"):
        assert (work / "plots" / name).stat().st_size > 10_000
    header, rows = _parse_table(out, which=1)
    assert header == [label for _, label, _ in BATCH_COLUMNS]
    assert [r[0] for r in rows] == [run.name for run in runs]
    for row in rows:
        numbers = [float(v) for v in row[2:]]  # train loss ... raw width: all present and finite
        assert len(numbers) == len(BATCH_COLUMNS) - 2 and all(np.isfinite(numbers)), row
    # the weight norm printed is that of the checkpoint's conv and linear weights
    col = header.index("weight norm")
    for run, row in zip(runs, rows):
        state = load_checkpoint(Path(cfg.ckpt_dir) / f"{run.name}.pt").state_dict
        want = float(np.sqrt(sum(float((t.double() ** 2).sum()) for k, t in state.items()
                                 if k.endswith("weight") and t.dim() >= 2)))
        assert float(row[col]) == pytest.approx(want, abs=0.006)
        assert weight_norm(Path(cfg.ckpt_dir) / f"{run.name}.pt") == pytest.approx(want)


def test_interpolation_endpoints_are_the_two_checkpoints(quick_run: tuple[Path, str, str]) -> None:
    from conftest import digits_splits, plain_evaluate

    work, _, _ = quick_run
    cfg = _quick_batch(work)
    splits = digits_splits()
    for wd in cfg.weight_decays:
        s = read_surface(Path(cfg.surface_dir) / f"interp_wd{wd:g}.h5")
        for alpha, kind in ((0.0, "small"), (1.0, "large")):
            i = int(np.argmin(np.abs(s.x - alpha)))
            assert s.x[i] == pytest.approx(alpha, abs=1e-12)
            ckpt = load_checkpoint(Path(cfg.ckpt_dir) / f"{kind}_wd{wd:g}.pt")
            own = plain_evaluate(ckpt.model, ckpt.model_kwargs, ckpt.state_dict, splits)
            for split in ("train", "test"):
                assert s.arrays[f"{split}_loss"][i] == pytest.approx(own[f"{split}_loss"], rel=1e-5), (wd, kind)
                assert s.arrays[f"{split}_acc"][i] == pytest.approx(own[f"{split}_acc"], abs=1e-9)


def test_bad_batch_study_settings_are_one_line() -> None:
    for bad in ({"points": 7}, {"small_batch": 64, "large_batch": 32}, {"weight_decays": ()}):
        with pytest.raises(LandscapeError) as info:
            BatchStudyConfig(**bad)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf")])
def test_bad_convergence_criterion_is_one_line(bad: float) -> None:
    from landscape.jobs.train import TrainConfig

    with pytest.raises(LandscapeError) as info:
        TrainConfig(target_loss=bad)
    assert "--target-loss" in str(info.value) and "\n" not in str(info.value)
