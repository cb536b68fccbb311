"""Plans chosen by measurement: time a few candidate plans on the first real points of a run.

`TrialEvaluator` evaluates coordinates like a `PointEvaluator`. Its first calls hand their
points to the candidates of `planning.candidate_plans` in turn, each a warm-up pass and then a
timed pass of its own points per pass; every result is kept (the points are real pending
points, and every candidate is exact), so no work is lost. Then it keeps the candidate with
the lowest seconds per point and evaluates everything else with it.

Bounds (`TrialPolicy`): after the rule's plan (the first candidate) has been timed, the run's
length is estimated from its speed; a run expected shorter than `min_run_seconds` stops the
trial there (keeping the rule's plan), and the alternatives together may take at most `share`
of the expected run (one whose estimated cost does not fit is not tried). An alternative wins
only when it is at least `margin` faster than the rule's plan (timings on a busy machine are
noisy). torch.compile (`PointEvaluator._try_compiling`) is held back during the trial and
decided by the winner on its next call.

Under MPI every rank runs its own trial on its own first chunks (its choice may differ from
another rank's; values agree within fp32 rounding whatever each chooses); rank 0 records its
own trial.

Example:
    >>> ev = TrialEvaluator(build, plans, n_pending=2601)
    >>> ev(coords)["train_loss"]; ev.plan.trial["chosen"]
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import LandscapeError
from .evaluate import PointEvaluator
from .planning import EvalPlan, lcm_points_per_pass

__all__ = ["TRIAL_MODES", "TrialPolicy", "TrialEvaluator", "trial_skip_reason", "trial_points"]

TRIAL_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class TrialPolicy:
    """How much a trial may cost. `mode`: "auto" (bounded, skipped for short runs), "on" (every
    candidate is timed whatever the run's length: tests and benchmarks), "off" (no trial)."""

    mode: str = "auto"
    min_run_seconds: float = 30.0  # "auto": a shorter expected run keeps the rule's plan
    share: float = 0.05  # "auto": the alternatives' share of the expected run, at most
    margin: float = 0.05  # an alternative must be this much faster than the rule's plan
    too_slow: float = 10.0  # an alternative whose warm-up is this much slower is not timed

    def __post_init__(self) -> None:
        if self.mode not in TRIAL_MODES:
            raise LandscapeError(f"--trial {self.mode!r} is not one of {', '.join(TRIAL_MODES)}")


def trial_points(plans: list[EvalPlan]) -> int:
    """Points a full trial takes: a warm-up and a timed pass per candidate."""
    return sum(2 * p.points_per_pass for p in plans)


def trial_skip_reason(plans: list[EvalPlan], n_pending: int, policy: TrialPolicy) -> str | None:
    """Why a run with these candidates skips the trial before it starts, or None."""
    if policy.mode == "off":
        return "--trial off"
    if len(plans) < 2:
        return "one candidate (the options fix the plan)"
    need = trial_points(plans) * (2 if policy.mode == "on" else 4)
    if n_pending < need:
        return f"{n_pending} points pending, the trial needs {need}"
    return None


@dataclass
class _Candidate:
    plan: EvalPlan
    evaluator: PointEvaluator | None = None
    compile_mode: str | None = None  # held back during the trial
    points: int = 0
    seconds: float = 0.0
    warm_seconds_per_point: float | None = None
    seconds_per_point: float | None = None  # of the timed pass
    note: str = ""

    def record(self) -> dict[str, Any]:
        spp = self.seconds_per_point
        return {
            "plan": self.plan.describe(),
            "points": self.points,
            "seconds_per_point": round(spp, 6) if spp is not None else None,
            **({"note": self.note} if self.note else {}),
        }


class TrialEvaluator:
    """Evaluates coordinates [k, ndim] (like `PointEvaluator`), timing the candidate `plans`
    on its first points, then with the fastest.

    `build(plan)` makes a candidate's evaluator (called when its turn comes; `first` is the
    first candidate's, when already built); `n_pending` points are expected on this rank, out
    of a run on `ranks` ranks.
    """

    def __init__(
        self,
        build: Callable[[EvalPlan], PointEvaluator],
        plans: list[EvalPlan],
        n_pending: int,
        ranks: int = 1,
        policy: TrialPolicy = TrialPolicy(),
        first: PointEvaluator | None = None,
    ) -> None:
        if not plans:
            raise LandscapeError("a trial needs at least one candidate plan")
        self.build = build
        self.policy = policy
        self.n_pending, self.ranks = n_pending, max(1, ranks)
        self.candidates = [_Candidate(p) for p in plans]
        self.unit = lcm_points_per_pass(plans)
        self.current = self._evaluator(0, first)
        self.step = 0  # 2 * candidate index + phase (0: warm-up, 1: timed)
        self.budget = float("inf")
        self.spent = 0.0  # the alternatives' seconds so far
        self.result: dict[str, Any] | None = None  # set when the trial is over

    @property
    def plan(self) -> EvalPlan:
        """The plan in use, with the trial's record (so far, when the run ended during it)."""
        if self.result is not None:
            return replace(self.current.plan, trial=self.result)
        if self.step == 0:
            return self.current.plan
        unfinished = {"unfinished": "the run ended during the trial",
                      "candidates": [c.record() for c in self.candidates]}
        return replace(self.current.plan, trial=unfinished)

    @property
    def done(self) -> bool:
        return self.result is not None

    def __call__(self, coords: np.ndarray) -> dict[str, np.ndarray]:
        coords = np.atleast_2d(np.asarray(coords, dtype=np.float64))
        parts: list[dict[str, np.ndarray]] = []
        pos = 0
        while not self.done and pos < len(coords):
            i, phase = divmod(self.step, 2)
            cand = self.candidates[i]
            if phase == 0 and i > 0 and not self._affordable(cand):
                self.step += 2
                self._finish_if_last()
                continue
            k = cand.plan.points_per_pass
            if len(coords) - pos < k:
                break  # not a whole pass left in this chunk: the next chunk starts with it
            t0 = time.perf_counter()
            try:
                ev = self._evaluator(i)
                with warnings.catch_warnings():  # torch.func's "performance drop" notes: measured here
                    warnings.filterwarnings("ignore", "There is a performance drop", UserWarning)
                    parts.append(ev(coords[pos : pos + k]))
            except LandscapeError:
                raise
            except Exception as e:  # e.g. a model torch.func cannot batch: the others remain
                if i == 0:
                    raise
                self.spent += time.perf_counter() - t0
                cand.note, cand.evaluator = f"failed ({type(e).__name__})", None
                self.step = 2 * (i + 1)
                self._finish_if_last()
                continue
            dt = time.perf_counter() - t0
            pos += k
            cand.points += k
            cand.seconds += dt
            if i > 0:
                self.spent += dt
            self.step += 1
            if phase == 0:
                cand.warm_seconds_per_point = dt / k
                rule = self.candidates[0].seconds_per_point
                if i > 0 and rule is not None and dt / k > self.policy.too_slow * rule:
                    cand.note = f"warm-up {dt / k / rule:.1f}x slower than the first candidate; not timed"
                    self.step += 1
            else:
                cand.seconds_per_point = dt / k
                if i == 0:
                    self._after_rule(dt / k)
            self._finish_if_last()
        if pos < len(coords):
            parts.append(self.current(coords[pos:]))
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    # -- the steps ------------------------------------------------------------------------------

    def _evaluator(self, i: int, built: PointEvaluator | None = None) -> PointEvaluator:
        cand = self.candidates[i]
        if cand.evaluator is None:
            cand.evaluator = built if built is not None else self.build(cand.plan)
            # the compile decision waits for the winner (it would cost seconds per candidate)
            cand.compile_mode, cand.evaluator.compile_mode = cand.evaluator.compile_mode, None
        return cand.evaluator

    def _after_rule(self, seconds_per_point: float) -> None:
        """The rule's plan is timed: estimate the run, stop a short one, set the budget."""
        expected = self.n_pending * seconds_per_point / self.ranks
        if self.policy.mode == "auto":
            if expected < self.policy.min_run_seconds:
                self._finish(f"expected run {expected:.1f} s is under {self.policy.min_run_seconds:g} s")
                return
            self.budget = self.policy.share * expected

    def _affordable(self, cand: _Candidate) -> bool:
        """Whether an alternative's estimated cost (twice the rule's speed, two passes) fits."""
        rule = self.candidates[0].seconds_per_point or 0.0
        estimate = 2 * cand.plan.points_per_pass * rule * 2
        if self.spent + estimate <= self.budget:
            return True
        cand.note = f"not tried: about {estimate:.1f} s over the {self.budget:.1f} s budget"
        return False

    def _finish_if_last(self) -> None:
        if not self.done and self.step >= 2 * len(self.candidates):
            self._finish(None)

    def _finish(self, skipped: str | None) -> None:
        """Keep the fastest timed candidate (the rule's plan unless one is `margin` faster),
        give it back its compile decision, and drop the others."""
        rule = self.candidates[0]
        best = rule
        for cand in self.candidates[1:]:
            spp, best_spp = cand.seconds_per_point, best.seconds_per_point
            if spp is not None and best_spp is not None and spp < best_spp * (1 - self.policy.margin):
                best = cand
        assert best.evaluator is not None
        ev = best.evaluator
        ev.compile_mode = best.compile_mode
        # the compile decision estimates the work ahead from the points this evaluator expects
        others = sum(c.points for c in self.candidates if c is not best)
        ev.plan = replace(ev.plan, expected_points=max(ev.plan.expected_points - others, 1))
        self.current = ev
        total = sum(c.seconds for c in self.candidates)
        if skipped is not None:
            self.result = {"skipped": skipped, "first": rule.record()}
        else:
            self.result = {
                "candidates": [c.record() for c in self.candidates],
                "chosen": best.plan.describe(),
                "seconds": round(total, 4),
                **({"budget_seconds": round(self.budget, 3)} if self.budget != float("inf") else {}),
            }
        for cand in self.candidates:
            if cand is not best:
                cand.evaluator = None  # frees its model copy and data
