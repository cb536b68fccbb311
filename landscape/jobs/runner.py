"""Running a surface job: its evaluators, its sink (the file, or memory), and the run record.

`run_job(job, executor)` is what every entry point ends in. Rank 0 opens the job's file
(creating it, or checking a resumed file's settings and taking its stored directions: a new
job, never an edited one) and lists the pending points; every rank builds the evaluator for
its job; the executor (serial or MPI) evaluates chunks and hands the results to the sink;
rank 0 then records the run (timing, plan, scalar metrics). `compute_in_memory(job)` is the
same with a sink in memory (the Python API without `out`).

Example:
    >>> path = run_job(job)                                  # serial, resumable
    >>> surface = compute_in_memory(job)                     # no file
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.grid import Grid, level_breaks
from ..core.loss_surface import Surface, base_attrs
from ..engine.evaluate import LoaderEvaluator, PointEvaluator
from ..engine.inputs import is_batched_split
from ..engine.planning import EvalPlan, candidate_plans
from ..engine.trial import TrialEvaluator, TrialPolicy, trial_skip_reason
from ..errors import LandscapeError
from ..io.lock import SurfaceLock
from ..io.storage import (
    SurfaceWriter,
    create_surface,
    open_surface,
    planned_size,
    read_directions,
    read_surface,
    update_attrs,
)
from ..system.cpu import cpu_info, time_call
from ..system.messages import say, warn
from ..system.progress import Progress, format_seconds
from .executor import Evaluate, Executor, RunStats, SerialExecutor, Start, Work
from .job import SurfaceJob, legacy_settings, pack_directions, unpack_directions

__all__ = [
    "FileSink",
    "MemorySink",
    "open_job_file",
    "announce_plan",
    "plan_line",
    "estimate_line",
    "check_resumable",
    "make_evaluator",
    "precision_check",
    "run_job",
    "run_prepared",
    "compute_in_memory",
]

CoordsEvaluator = Callable[[np.ndarray], dict[str, np.ndarray]]  # coordinates [k, ndim] -> values


class FileSink:
    """Results written to a surface file as they come (values, then their `computed` flags).

    After the second chunk (under MPI: once every rank's first chunk is in) of a run with `pending` points on `ranks` ranks, a run that will take
    longer than `LONG_RUN_SECONDS` at that chunk's speed says so (`estimate_line`), unless
    `quiet`. Not the first: it pays the warm-up (allocation, trial, compilation) too, which
    made the estimate several times too long on small nets.
    """

    def __init__(self, path: Path, pending: int = 0, ranks: int = 1, quiet: bool = True) -> None:
        self.path = path
        self.write_seconds = 0.0
        self.left, self.ranks, self.quiet = pending, max(ranks, 1), quiet
        self.written = 0
        self.chunks = 0

    def write(self, idx: np.ndarray, values: Mapping[str, np.ndarray], seconds: float, rank: int) -> None:
        if not len(idx):
            return
        t0 = time.perf_counter()
        with SurfaceWriter(self.path) as w:
            w.write_points(idx, values, seconds / len(idx), rank=rank)
        self.write_seconds += time.perf_counter() - t0
        self.written += len(idx)
        self.chunks += 1
        if self.chunks == self.ranks + 1 and not self.quiet:  # each rank's first chunk is warm-up
            left, per_point = self.left - self.written, seconds / len(idx) / self.ranks
            if left * per_point > LONG_RUN_SECONDS:
                say(estimate_line(left, per_point))


class MemorySink:
    """Results kept in flat arrays (NaN until computed), with the seconds per point."""

    def __init__(self, n_points: int) -> None:
        self.values: dict[str, np.ndarray] = {}
        self.seconds = np.zeros(n_points)
        self.n = n_points

    def write(self, idx: np.ndarray, values: Mapping[str, np.ndarray], seconds: float, rank: int) -> None:
        for name, v in values.items():
            self.values.setdefault(name, np.full(self.n, np.nan))[idx] = v
        self.seconds[idx] = seconds / max(len(idx), 1)


# ---------------------------------------------------------------------------------------------
# the file


LONG_RUN_POINTS = 10_000  # a grid this large gets a plan line (points, file size) before it starts
LONG_RUN_SECONDS = 300.0  # a run estimated longer gets a time estimate after its second chunk


def plan_line(grid: Grid, size: int) -> str:
    """'planned: 1,002,001 points (1001x1001 grid), surface file about 45 MB' (`size` in bytes,
    as `landscape.io.storage.planned_size` counts them)."""
    shape = "x".join(str(n) for n in grid.shape)
    return f"planned: {grid.num_points:,} points ({shape} grid), surface file about {_bytes(size)}"


def announce_plan(job: SurfaceJob) -> None:
    """Print `plan_line` before a long run (a grid of `LONG_RUN_POINTS` or more), unless quiet."""
    if not job.engine.quiet and job.grid.num_points >= LONG_RUN_POINTS:
        size = planned_size(job.grid, len(job.array_names), job.directions, job.directions.trajectory)
        say(plan_line(job.grid, size))


def estimate_line(points_left: int, seconds_per_point: float) -> str:
    """'estimate: about 8.1 days for 99,999,000 points at 143 points/s (second chunk's speed)'."""
    rate = 1.0 / max(seconds_per_point, 1e-12)
    return (
        f"estimate: about {_duration(points_left * seconds_per_point)} for {points_left:,} points "
        f"at {rate:.3g} points/s (the second chunk's speed, past the warm-up; Ctrl-C stops, a rerun "
        "resumes)"
    )


def _bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"


def _stored_settings(path: Path) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    attrs = read_surface(path).attrs
    return dict(attrs.get("settings") or {}), attrs


def check_resumable(job: SurfaceJob) -> None:
    """The existing file's settings must be the job's (in the older key set for older files);
    raise naming the first difference."""
    assert job.out is not None
    try:
        open_surface(job.out, job.settings)
    except LandscapeError:
        stored, _ = _stored_settings(job.out)
        wanted = legacy_settings(stored, job.settings, job.record.attrs)
        if wanted == dict(job.settings):
            raise
        open_surface(job.out, wanted)  # raises the older file's own difference


def _matching(
    path: Path, axis: str, stored: Mapping[str, torch.Tensor], fresh: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The stored directions, checked against the model's (same keys, same shapes)."""
    if set(stored) != set(fresh) or any(stored[k].shape != fresh[k].shape for k in fresh):
        raise LandscapeError(
            f"{path}: its {axis} direction does not fit this model (other keys or shapes); the file "
            "is damaged or from another model: use another --out, or --force to start afresh"
        )
    return {k: v.to(fresh[k].dtype) for k, v in stored.items()}


def open_job_file(job: SurfaceJob) -> tuple[SurfaceJob, np.ndarray]:
    """Create the job's file, or check an existing one's settings; return the job to run (with
    a resumed file's stored directions, bit for bit) and the pending flat indices."""
    assert job.out is not None
    if job.out.exists() and not job.record.force:
        check_resumable(job)
        x, y, _ = read_directions(job.out)
        d = job.directions
        stored = replace(
            d,
            x=_matching(job.out, "x", x, d.x),
            y=_matching(job.out, "y", y, d.y) if y is not None and d.y is not None else d.y,
        )
        job = job.with_directions(stored)
    else:
        create_surface(
            job.out, job.grid, job.array_names, job.directions, job.record.attrs, job.settings,
            job.record.trajectory,
        )
    with SurfaceWriter(job.out) as w:
        return job, w.pending()


# ---------------------------------------------------------------------------------------------
# evaluation


def _candidates(job: SurfaceJob, n_points: int) -> list[EvalPlan] | None:
    """The plans worth timing for a job (the rule's first), or None for data in batches."""
    t, e = job.target, job.engine
    if any(is_batched_split(s) for s in t.splits.values()):  # DataLoaders, dict inputs
        return None
    first = next(iter(t.splits.values()))[0]
    return candidate_plans(
        t.model, e.device, n_points, e.precision, t.bn_mode, sample=first, strategy=e.strategy,
        points_per_pass=e.points_per_pass, batch_size=e.batch_size, compile=e.compile,
    )


def _point_evaluator(job: SurfaceJob, plan: EvalPlan) -> PointEvaluator:
    t = job.target
    return PointEvaluator(t.model, job.directions, t.splits, plan, t.loss, t.metric, t.bn_mode, t.bn_data)


def _loss_evaluator(job: SurfaceJob, plan: EvalPlan | None) -> PointEvaluator | LoaderEvaluator:
    t, e = job.target, job.engine
    if plan is None:
        return LoaderEvaluator(
            t.model, job.directions, t.splits, t.loss, t.metric, t.bn_mode, t.bn_data, e.device,
            e.precision, e.batch_size,
        )
    return _point_evaluator(job, plan)


def _with_curvature(job: SurfaceJob, ev: CoordsEvaluator) -> CoordsEvaluator:
    """`ev`, and with `engine.curvature` the curvature maps beside its values."""
    if not job.engine.curvature:
        return ev
    from .curvature import CurvatureEvaluator

    curvature = CurvatureEvaluator(job)

    def both(coords: np.ndarray) -> dict[str, np.ndarray]:
        return {**ev(coords), **curvature(coords)}

    return both


def make_evaluator(job: SurfaceJob, n_points: int) -> tuple[CoordsEvaluator, PointEvaluator | LoaderEvaluator]:
    """The function evaluating coordinates [k, ndim] for a job (losses, and with
    `engine.curvature` the curvature maps), and the loss evaluator (its `plan` is the rule's
    plan for the device, the model and `n_points`; no trial: see `_setup`)."""
    plans = _candidates(job, n_points)
    ev = _loss_evaluator(job, plans[0] if plans else None)
    return _with_curvature(job, ev), ev


def _choose_plan(
    job: SurfaceJob, ev: PointEvaluator | LoaderEvaluator, plans: list[EvalPlan] | None, n_pending: int,
    ranks: int,
) -> tuple[PointEvaluator | LoaderEvaluator | TrialEvaluator, int]:
    """The loss evaluator of a run and its points per pass: `ev` itself when the trial is
    skipped (the reason is recorded in its plan), else a `TrialEvaluator` starting with `ev`."""
    policy = TrialPolicy(job.engine.trial)
    skip = "data in batches (one plan)" if plans is None else trial_skip_reason(plans, n_pending, policy)
    if skip is not None or plans is None or not isinstance(ev, PointEvaluator):
        ev.plan = replace(ev.plan, trial={"skipped": skip})
        return ev, ev.plan.points_per_pass
    trial = TrialEvaluator(lambda p: _point_evaluator(job, p), plans, n_pending, ranks, policy, first=ev)
    return trial, trial.unit


def precision_check(job: SurfaceJob, ev: PointEvaluator | LoaderEvaluator) -> dict[str, float]:
    """What a reduced precision costs, measured at the centre: its largest relative loss error
    against fp32 and, for bf16 on a CPU without native bf16, its speed against fp32.

    Without native bf16 (an AVX2-only CPU, see `landscape.system.cpu`) the kernels are emulated and
    were measured 7-12x slower than fp32; the run keeps the precision it was asked for, prints
    one warning with the measured slowdown, and records it in the file (`bf16_slowdown`).
    """
    if job.engine.precision == "fp32":
        return {}
    t = job.target
    ref_plan = replace(ev.plan, precision="fp32")
    ref = PointEvaluator(t.model, job.directions, t.splits, ref_plan, t.loss, t.metric, t.bn_mode, t.bn_data)
    c = np.zeros((1, job.grid.ndim))
    a, b = ev(c), ref(c)
    found = {
        "precision_max_rel_error": max(
            float(abs(a[k][0] - b[k][0]) / max(abs(b[k][0]), 1e-12)) for k in a if k.endswith("_loss")
        )
    }
    if job.engine.precision == "bf16" and job.device.type == "cpu":
        info = cpu_info()
        if not info.native_bf16:  # both ran once already: these calls are warm
            slowdown = round(time_call(lambda: ev(c)) / max(time_call(lambda: ref(c)), 1e-9), 3)
            found["bf16_slowdown"] = slowdown  # the warning prints the recorded value
            if slowdown > 1.0:
                warn(
                    f"warning: bf16 measured {slowdown:.1f}x slower than fp32 at the first point on "
                    f"this CPU ({info.describe()}); --precision fp32 is faster here and exact"
                )
    return found


@dataclass
class _Found:
    """What rank 0's setup learns for the run record."""

    evaluator: PointEvaluator | LoaderEvaluator | TrialEvaluator | None = None
    precision: dict[str, float] = field(default_factory=dict)  # precision_check's findings

    @property
    def plan(self) -> EvalPlan:
        """The loss evaluator's plan as it is now (the trial and a compile decision update it)."""
        assert self.evaluator is not None
        return self.evaluator.plan


def _setup(
    job: SurfaceJob, n_pending: int, found: _Found | None = None, measure: bool = True, ranks: int = 1
) -> tuple[Evaluate, int]:
    """(evaluate flat indices, points per pass) for a job on one of `ranks` ranks; on rank 0
    `found` receives the plan and (with `measure`) what the precision costs. Where the engine
    has a choice, the first points time candidate plans (`landscape.engine.trial`)."""
    n = max(n_pending, 1)
    plans = _candidates(job, n)
    ev = _loss_evaluator(job, plans[0] if plans else None)
    if found is not None:
        found.precision = precision_check(job, ev) if n_pending and measure else {}
    loss, unit = _choose_plan(job, ev, plans, n_pending, ranks)
    if found is not None:
        found.evaluator = loss
    evaluate = _with_curvature(job, loss)
    grid = job.grid
    return (lambda idx: evaluate(grid.coords_of(idx))), unit


# ---------------------------------------------------------------------------------------------
# runs


def _progress(job: SurfaceJob, n_pending: int) -> Progress:
    total = job.grid.num_points
    return Progress(total, desc="surface", unit="pt", enabled=not job.engine.quiet, initial=total - n_pending)


def _record_run(job: SurfaceJob, found: _Found, stats: RunStats) -> None:
    """Record the run (timing, plan, precision error, executor details such as per-rank point
    counts) and scalar metrics; print the final line."""
    assert job.out is not None
    points, seconds = stats.points, stats.seconds
    run = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "points": int(points),
        "seconds": round(seconds, 4),
        "points_per_second": round(points / seconds, 4) if seconds > 0 else 0.0,
        "ranks": stats.ranks,
        "host": socket.gethostname(),
        "device": str(job.device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_info().describe(),
        "plan": found.plan.meta(),
        **stats.extra,
    }
    attrs: dict[str, Any] = {"plan": found.plan.meta(), **found.precision}
    from ..core.metrics import surface_metrics

    surface = read_surface(job.out)
    # a rerun with nothing to do leaves the file (and its plan) untouched, unless the run that
    # computed the points died before recording them (e.g. a full disk at the very end)
    restore = not points and _lacks_final_metadata(surface)
    if points or restore:
        attrs["metrics"] = surface_metrics(surface)
        if restore:
            run["restored_metadata"] = True
        update_attrs(job.out, attrs, append_run=run)
        if restore and not job.engine.quiet:
            say(f"note: {job.out} lacked its final metrics and run record; restored them")
    if not job.engine.quiet:
        rate = f"{points / seconds:.3g} points/s" if seconds > 0 and points else "nothing to do"
        on = f" on {stats.ranks} ranks" if stats.ranks > 1 else ""
        say(f"wrote {job.out}: {points} points in {format_seconds(seconds)}{on} ({rate})")


def _lacks_final_metadata(surface: Surface) -> bool:
    """Whether a file holds computed points but no metrics or run record."""
    return surface.done > 0 and ("metrics" not in surface.attrs or not surface.attrs.get("runs"))


def run_prepared(
    executor: Executor,
    lead: Callable[[], SurfaceJob],
    follow: Callable[[Any, Any], SurfaceJob],
    preload: Callable[[], Any] = lambda: None,
) -> None:
    """Run a job to its file on every rank of `executor`.

    Rank 0 builds its job with `lead()` and opens the file; the other ranks run `preload()`
    (their own model and data) while it does, then build theirs with `follow(preloaded,
    directions)` from rank 0's directions (the file's, when resuming).
    """
    state: dict[str, SurfaceJob] = {}
    found = _Found()
    locks: list[SurfaceLock] = []
    made: list[FileSink] = []  # the sink of a file this run created (removed if it fails empty)

    def prepare() -> Start:
        job = lead()
        assert job.out is not None
        # rank 0 is the one writer: it owns the file (landscape.io.lock) until the run ends, and a
        # second run on the same file is refused before it touches it
        locks.append(SurfaceLock.acquire(job.out))
        announce_plan(job)
        fresh = job.record.force or not job.out.exists()
        job, pending = open_job_file(job)
        state["job"] = job
        assert job.out is not None
        message = lambda: {"directions": pack_directions(job.directions)}  # noqa: E731
        sink = FileSink(job.out, len(pending), executor.size, job.engine.quiet)
        made.extend([sink] if fresh else [])
        return Start(pending, sink, message, str(job.device), _progress(job, len(pending)),
                     job.engine.quiet, level_breaks(job.grid, pending))

    def setup(n_pending: int, message: Any, preloaded: Any) -> tuple[Evaluate, int]:
        if message is None:  # rank 0, or a serial run
            return _setup(state["job"], n_pending, found, ranks=executor.size)
        job = follow(preloaded, unpack_directions(message["directions"])).quietly()
        return _setup(job, n_pending, ranks=executor.size)

    def finish(stats: RunStats) -> None:
        _record_run(state["job"], found, stats)

    try:
        executor.run(Work(prepare, setup, preload, finish))
    except BaseException:
        for sink in (s for s in made if s.written == 0):  # a failed run leaves no empty file
            sink.path.unlink(missing_ok=True)
        raise
    finally:
        for lock in locks:
            lock.release()


def run_job(job: SurfaceJob, executor: Executor | None = None) -> Path:
    """Evaluate every pending point of a job that every rank holds alike, and store the results.

    Serially by default (resumable); with an MPI executor the other ranks evaluate along rank
    0's directions (the file's, when resuming).
    """
    assert job.out is not None
    run_prepared(executor or SerialExecutor(), lambda: job, lambda _, d: job.with_directions(d))
    return job.out


def compute_in_memory(job: SurfaceJob) -> Surface:
    """Evaluate every point of a job in this process, without a file; return the surface."""
    grid = job.grid
    total = grid.num_points
    sink = MemorySink(total)
    found = _Found()
    work = Work(
        prepare=lambda: Start(np.arange(total), sink, progress=Progress(
            total, desc="surface", unit="pt", enabled=not job.engine.quiet), quiet=job.engine.quiet),
        setup=lambda n, message, preloaded: _setup(job, n, found, measure=False),
    )
    SerialExecutor().run(work)
    names = job.array_names
    arrays = {name: sink.values[name].reshape(grid.shape) for name in names if name in sink.values}
    arrays.update({n: v.reshape(grid.shape) for n, v in sink.values.items() if n not in arrays})
    arrays["point_seconds"] = sink.seconds.reshape(grid.shape)
    from ..core.metrics import surface_metrics

    attrs = {
        **base_attrs(grid, job.settings),
        **job.record.attrs,
        "plan": found.plan.meta(),
    }
    result = Surface(
        path="", x=grid.x.coords(), y=grid.y.coords() if grid.y is not None else None,
        arrays=arrays, computed=np.ones(grid.shape, dtype=bool), attrs=attrs,
        directions=job.directions,
    )
    result.attrs["metrics"] = surface_metrics(result)
    return result
