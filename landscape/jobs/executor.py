"""The execution core: pending points in, values out to a sink, whatever runs the evaluations.

An executor takes a `Work`: `prepare` (on rank 0: open the sink, list the pending flat
indices), `setup` (on every rank: build the function that evaluates a chunk of flat indices)
and `finish` (on rank 0: record the run). It hands out chunks of whole passes, evaluates them
and gives every result to the sink as soon as it is computed. `SerialExecutor` runs in this
process; `landscape.jobs.distributed.MpiExecutor` runs the same work on every rank of an MPI job.
Neither knows what a point or a surface is: a chunk is an array of integers, a result a dict
of arrays.

Example:
    >>> sink = ListSink()
    >>> work = Work(
    ...     prepare=lambda: Start(np.arange(5), sink),
    ...     setup=lambda n, message, preloaded: (lambda idx: {"sq": idx.astype(float) ** 2}, 2),
    ... )
    >>> stats = SerialExecutor().run(work)
    >>> stats.points, [c.tolist() for c, _ in sink.chunks]   # one pass first, then ~2 s chunks
    (5, [[0, 1], [2, 3, 4]])
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..system.progress import Progress

__all__ = [
    "Evaluate",
    "Sink",
    "ListSink",
    "Start",
    "Work",
    "RunStats",
    "Executor",
    "SerialExecutor",
    "chunk_points",
    "chunk_end",
    "ChunkQueue",
]

Evaluate = Callable[[np.ndarray], dict[str, np.ndarray]]  # flat indices [k] -> {name: values [k]}


class Sink(Protocol):
    """Where results go (a surface file, memory): written chunk by chunk, on rank 0 only."""

    def write(self, idx: np.ndarray, values: Mapping[str, np.ndarray], seconds: float, rank: int) -> None:
        """Store the values of the flat indices `idx`, computed by `rank` in `seconds`."""


class ListSink:
    """A sink that keeps every chunk in a list (for tests and examples)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []

    def write(self, idx: np.ndarray, values: Mapping[str, np.ndarray], seconds: float, rank: int) -> None:
        self.chunks.append((idx, dict(values)))


def _nothing() -> Any:
    return None


@dataclass(frozen=True)
class Start:
    """What rank 0's `prepare` returns: the pending indices, the sink, and what the others need."""

    pending: np.ndarray
    sink: Sink
    message: Callable[[], Any] = _nothing  # for the other ranks (built only when there are any)
    label: str = ""  # rank 0's device, for the log line of a parallel run
    progress: Progress | None = None
    quiet: bool = True
    # positions in `pending` where a chunk must end: the end of each level of a coarse-to-fine
    # grid (`landscape.core.grid.level_breaks`), so that a level is in the file as soon as it is done
    breaks: tuple[int, ...] = ()


@dataclass(frozen=True)
class RunStats:
    """How a run went: points evaluated, seconds, ranks, and executor-specific details."""

    points: int
    seconds: float
    ranks: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)


def _no_finish(stats: RunStats) -> None:
    return None


@dataclass(frozen=True)
class Work:
    """What to run. `setup(n_pending, message, preloaded)` returns (evaluate, points per pass);
    on rank 0 `message` and `preloaded` are None. `preload` runs on the other ranks while rank 0
    prepares (loading their own model and data)."""

    prepare: Callable[[], Start]
    setup: Callable[[int, Any, Any], tuple[Evaluate, int]]
    preload: Callable[[], Any] = _nothing
    finish: Callable[[RunStats], None] = _no_finish


class Executor(Protocol):
    """Runs a `Work` on one or many processes."""

    rank: int
    local_rank: int
    size: int

    def run(self, work: Work) -> RunStats | None:
        """Evaluate every pending point; rank 0 returns the statistics, other ranks None."""

    def sync(self) -> None:
        """Wait until every rank has returned from `run` (rank 0 has finished the sink)."""


def chunk_end(begin: int, size: int, breaks: tuple[int, ...]) -> int:
    """Where a chunk of `size` from `begin` ends: at the first break inside it, if any.

    Example:
        >>> chunk_end(0, 10, (4, 13)), chunk_end(4, 10, (4, 13)), chunk_end(13, 10, (4, 13))
        (4, 13, 23)
    """
    end = begin + size
    cut = breaks[bisect.bisect_right(breaks, begin)] if breaks and breaks[-1] > begin else end
    return min(end, cut)


def chunk_points(seconds_per_point: float, points_per_pass: int, target_seconds: float = 2.0) -> int:
    """Points per chunk: whole passes, about `target_seconds` of work, at most 4096.

    Example:
        >>> chunk_points(0.01, 4), chunk_points(10.0, 4)
        (200, 4)
    """
    passes = max(1, math.ceil(target_seconds / max(seconds_per_point * points_per_pass, 1e-9)))
    return int(min(points_per_pass * passes, 4096))


class SerialExecutor:
    """Evaluate in this process: one pass first (to measure it), then ~2 s chunks."""

    rank = 0
    local_rank = 0
    size = 1

    def run(self, work: Work) -> RunStats:
        start = work.prepare()
        pending = np.asarray(start.pending, dtype=np.int64)
        evaluate, unit = work.setup(len(pending), None, None)
        bar = start.progress
        t_start = time.perf_counter()
        done, chunk = 0, unit
        while done < len(pending):
            idx = pending[done : chunk_end(done, chunk, start.breaks)]
            t0 = time.perf_counter()
            values = evaluate(idx)
            dt = time.perf_counter() - t0
            start.sink.write(idx, values, dt, 0)
            done += len(idx)
            if bar is not None:
                bar.update(len(idx))
            chunk = chunk_points(dt / len(idx), unit)
        if bar is not None:  # (an error leaves the bar as it is: the error line comes next)
            bar.enabled = bar.enabled and len(pending) > 0
            bar.close()
        stats = RunStats(len(pending), time.perf_counter() - t_start)
        work.finish(stats)
        return stats

    def sync(self) -> None:
        return None



class ChunkQueue:
    """Pending flat indices, handed out in order as chunks of whole passes, sized per rank.

    A rank's first chunk is one pass (to measure it); later chunks hold about `target_seconds`
    of that rank's measured work, and never more than a `1 / (2 * ranks)` share of what is left,
    so chunks shrink near the end and the ranks finish together. Chunk sizes are multiples of
    `unit` (points per pass) but for the last and those cut at a level end (`breaks`, as the
    serial executor cuts them), so points share passes exactly as in a serial run.

    Example:
        >>> q = ChunkQueue(np.arange(100), ranks=2, unit=4)
        >>> len(q.next(0)), q.record(0, 4, 0.004), len(q.next(0))
        (4, None, 24)
    """

    def __init__(
        self, pending: np.ndarray, ranks: int, unit: int = 1, target_seconds: float = 1.5,
        breaks: tuple[int, ...] = (),
    ) -> None:
        self.pending = np.asarray(pending, dtype=np.int64)
        self.breaks = tuple(breaks)  # chunks end there too (`Start.breaks`)
        self.ranks = max(1, int(ranks))
        self.unit = max(1, int(unit))
        self.target_seconds = target_seconds
        self.cursor = 0
        self.seconds_per_point: dict[int, float] = {}

    @property
    def left(self) -> int:
        return len(self.pending) - self.cursor

    def record(self, rank: int, points: int, seconds: float) -> None:
        """Fold a finished chunk's timing into the rank's seconds per point."""
        if points <= 0:
            return
        spp = seconds / points
        old = self.seconds_per_point.get(rank)
        self.seconds_per_point[rank] = spp if old is None else 0.5 * (old + spp)

    def size_for(self, rank: int) -> int:
        spp = self.seconds_per_point.get(rank)
        size = self.unit if spp is None else chunk_points(spp, self.unit, self.target_seconds)
        share = math.ceil(math.ceil(self.left / (2 * self.ranks)) / self.unit) * self.unit
        return max(self.unit, min(size, share))

    def next(self, rank: int) -> np.ndarray:
        """The next chunk for `rank` (empty when everything has been handed out)."""
        chunk = self.pending[self.cursor : chunk_end(self.cursor, self.size_for(rank), self.breaks)]
        self.cursor += len(chunk)
        return chunk
