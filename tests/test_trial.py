"""Plans chosen by measurement: every candidate plan is exact, and a trial keeps every point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RunCli, digits_splits, plain_evaluate

from landscape import api
from landscape.core.directions import point_state, random_directions
from landscape.engine.evaluate import PointEvaluator
from landscape.engine.planning import candidate_plans, plan_evaluation
from landscape.engine.trial import TrialEvaluator, TrialPolicy, trial_points
from landscape.io.checkpoint import Checkpoint, build_model, load_checkpoint
from landscape.jobs.info import describe, plan_summary
from landscape.models import create_model

CPU = torch.device("cpu")
COORDS = np.array([[0.0, 0.0], [0.5, -0.25], [-1.0, 1.0], [0.2, 0.9], [-0.7, 0.1]])


def _splits(n: int) -> dict:
    s = digits_splits(n)
    return {"train": s["train"], "test": (s["test"][0][: n // 2 + 1], s["test"][1][: n // 2 + 1])}


@pytest.fixture(scope="module", params=["mlp", "resnet8", "densenet_bc40"])
def ckpt(request: pytest.FixtureRequest, tiny_ckpt: Path, tiny_resnet_ckpt: Path) -> Checkpoint:
    if request.param == "mlp":
        return load_checkpoint(tiny_ckpt)
    if request.param == "resnet8":
        return load_checkpoint(tiny_resnet_ckpt)
    torch.manual_seed(0)  # an untrained DenseNet-BC: BatchNorm, concatenations, 1x1 convolutions
    net = create_model("densenet_bc40", in_channels=1)
    return Checkpoint(model="densenet_bc40", model_kwargs={"in_channels": 1}, state_dict=net.state_dict())


def test_every_candidate_equals_plain_pytorch(ckpt: Checkpoint) -> None:
    splits = _splits(40 if ckpt.model == "densenet_bc40" else 150)
    model = build_model(ckpt)
    d = random_directions(model, seed=5)
    plans = candidate_plans(model, CPU, 2000, sample=splits["train"][0])
    assert plans[0] == plan_evaluation(model, CPU, 2000, sample=splits["train"][0])
    assert 3 <= len(plans) <= 5 and len({p.describe() for p in plans}) == len(plans)
    refs = [plain_evaluate(ckpt.model, ckpt.model_kwargs, point_state(ckpt.state_dict, d, *c), splits)
            for c in COORDS]
    assert len({round(r["train_loss"], 7) for r in refs}) == len(refs)  # the points differ
    for plan in plans:
        values = PointEvaluator(model, d, splits, plan)(COORDS)
        for i, ref in enumerate(refs):
            for name, want in ref.items():
                assert float(values[name][i]) == pytest.approx(want, rel=1e-5, abs=1e-12), (plan, i, name)


def test_forced_options_stay_fixed(tiny_resnet_ckpt: Path) -> None:
    model = build_model(load_checkpoint(tiny_resnet_ckpt))
    x = _splits(20)["train"][0]
    assert len(candidate_plans(model, CPU, 5000, sample=x, strategy="sequential")) == 1
    assert len(candidate_plans(model, CPU, 5000, sample=x, bn_mode="recompute")) == 1
    plans = candidate_plans(model, CPU, 5000, sample=x, batch_size=48)
    assert len(plans) > 1 and {p.batch_size for p in plans} == {48}
    assert {p.strategy for p in candidate_plans(model, CPU, 5000, sample=x, compile="on")} == {"sequential"}


def _surface(ckpt: Path, grid: int, **kw: object) -> api.Surface:
    return api.surface(str(ckpt), _splits(60), x=f"-1:1:{grid}", y=f"-1:1:{grid}", **kw)


def test_trial_keeps_every_point_and_records_the_candidates(tiny_resnet_ckpt: Path, tmp_path: Path) -> None:
    model = build_model(load_checkpoint(tiny_resnet_ckpt))
    plans = candidate_plans(model, CPU, 49, sample=_splits(60)["train"][0])
    assert 2 * trial_points(plans) <= 49
    out = tmp_path / "t.h5"
    tried = _surface(tiny_resnet_ckpt, 7, trial="on", out=out)
    forced = _surface(tiny_resnet_ckpt, 7, strategy="sequential")
    for name in ("train_loss", "train_acc", "test_loss"):
        np.testing.assert_allclose(tried.arrays[name], forced.arrays[name], rtol=1e-5)
    assert tried.computed.all()
    trial = tried.attrs["plan"]["plan_trial"]
    assert [c["plan"] for c in trial["candidates"]] == [p.describe() for p in plans]
    assert all(c["points"] >= p.points_per_pass for c, p in zip(trial["candidates"], plans))
    assert trial["chosen"] in {p.describe() for p in plans}
    assert tried.attrs["plan"]["plan_strategy"] == trial["chosen"].split(",")[0]
    text = describe(out)
    assert f"plan trial: chose {trial['chosen']}" in text
    # the forced run: one candidate, the trial skipped, and said why
    assert forced.attrs["plan"]["plan_trial"] == {"skipped": "one candidate (the options fix the plan)"}


def test_short_runs_skip_the_trial(tiny_resnet_ckpt: Path) -> None:
    few = _surface(tiny_resnet_ckpt, 5).attrs["plan"]["plan_trial"]
    assert few["skipped"].startswith("25 points pending, the trial needs")
    short = _surface(tiny_resnet_ckpt, 8).attrs["plan"]["plan_trial"]  # 64 points of a tiny net
    assert short["skipped"].startswith("expected run") and short["first"]["points"] == 2
    off = _surface(tiny_resnet_ckpt, 9, trial="off").attrs["plan"]["plan_trial"]
    assert off == {"skipped": "--trial off"}


def _trial(ckpt: Path, policy: TrialPolicy) -> tuple[TrialEvaluator, np.ndarray, PointEvaluator]:
    """A trial of resnet8's candidates, 40 points to give it, and the rule's plan alone."""
    model = build_model(load_checkpoint(ckpt))
    splits = _splits(60)
    d = random_directions(model, seed=1)
    plans = candidate_plans(model, CPU, 400, sample=splits["train"][0])
    first = PointEvaluator(model, d, splits, plans[0])
    trial = TrialEvaluator(lambda p: PointEvaluator(model, d, splits, p), plans, 400, policy=policy, first=first)
    rule = PointEvaluator(model, d, splits, plans[0])
    return trial, np.random.default_rng(0).uniform(-1, 1, (40, 2)), rule


def test_the_budget_bounds_the_alternatives(tiny_resnet_ckpt: Path) -> None:
    trial, coords, rule = _trial(tiny_resnet_ckpt, TrialPolicy(min_run_seconds=0.0, share=0.0))
    first = trial.current
    values = np.concatenate([trial(coords[i : i + trial.unit])["train_loss"]
                             for i in range(0, len(coords), trial.unit)])
    assert trial.done and trial.current is first  # nothing else fitted a zero budget
    notes = [c.get("note", "") for c in trial.plan.trial["candidates"][1:]]
    assert notes and all(n.startswith("not tried") for n in notes)
    np.testing.assert_allclose(values, rule(coords)["train_loss"], rtol=1e-5)


def test_the_winner_gets_its_compile_decision_back(tiny_resnet_ckpt: Path) -> None:
    trial, coords, rule = _trial(tiny_resnet_ckpt, TrialPolicy(mode="on"))
    assert rule.compile_mode == "auto"  # a CPU conv net: the engine may compile a long run
    assert trial.current.compile_mode is None  # held back during the trial
    pos, parts = 0, []
    while not trial.done:  # one pass at a time: the trial ends exactly at a call's end
        k = trial.candidates[trial.step // 2].plan.points_per_pass
        parts.append(trial(coords[pos : pos + k]))
        pos += k
    kept = [c for c in trial.candidates if c.evaluator is not None]
    assert kept and all(c.evaluator is trial.current for c in kept)  # the others were dropped
    sequential = trial.current.plan.strategy == "sequential"
    assert trial.current.compile_mode == ("auto" if sequential else None)
    assert trial.current.plan.expected_points < 400  # the others' points are not ahead of it
    values = np.concatenate([p["test_loss"] for p in parts])
    np.testing.assert_allclose(values, rule(coords[:pos])["test_loss"], rtol=1e-5)


def test_the_command_line_runs_a_trial_and_info_shows_it(run_cli: RunCli, tiny_resnet_ckpt: Path) -> None:
    code, _, err = run_cli("surface", "--ckpt", tiny_resnet_ckpt, "--x=-1:1:7", "--y=-1:1:7",
                           "--max-samples", "60", "--trial", "on", "--out", "t.h5", "--quiet")
    assert code == 0, err
    code, out, err = run_cli("info", "t.h5")
    assert code == 0, err
    lines = out.splitlines()
    trial = [ln for ln in lines if ln.startswith("plan trial: chose ") and "s/pt" in ln]
    assert len(trial) == 1, out
    chosen = trial[0][len("plan trial: chose "):].split(" in ")[0]  # whichever won on this machine
    assert f"plan: {chosen} (" in lines[lines.index(trial[0]) - 1], out


def test_plan_summary_of_damaged_records() -> None:
    meta = {"plan_strategy": "vmap", "plan_points_per_pass": 8, "plan_batch_size": 512,
            "plan_trial": {"candidates": 7, "chosen": "\x1b[31m", "seconds": "x"}}
    assert plan_summary(meta)["plan trial"] == "chose \x1b[31m; "
    assert plan_summary({**meta, "plan_trial": {"skipped": "--trial off"}})["plan trial"] == "skipped: --trial off"
    assert "plan trial" not in plan_summary({"plan_strategy": "sequential"})
