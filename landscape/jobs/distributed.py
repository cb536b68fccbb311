"""The MPI executor: the work of `landscape.jobs.executor` on every rank of MPI_COMM_WORLD.

`executor_for(comm)` picks the executor for `--comm auto|serial|mpi`; `mpiexec -n N python
scripts/surface.py ...` (or the Python API under mpiexec) then runs through `MpiExecutor`.
Rank 0 owns the sink (h5py from PyPI has no parallel driver: one writer); every rank, rank 0
included, evaluates chunks. This module moves chunks of indices and result arrays; what they
mean (grid points, a surface file) is the caller's (`landscape.jobs.runner`); how they travel
(tags, polled sends and receives, Ctrl-C, the abort) is `landscape.jobs.mpi_channel`'s.

The protocol is point-to-point only; nothing travels per grid point:

- rank 0 prepares (`Work.prepare`: for a surface, the job, its file, on resume the directions
  stored in the file) and sends its message (the directions) to every worker, or the one-line
  error that every rank then exits with;
- a worker asks for two chunks, and with the results of each chunk asks for one more, so it
  always holds its next chunk while computing. Rank 0 answers from a queue of pending flat
  indices (`ChunkQueue`) in the file's order (coarse to fine, `SurfaceWriter.pending`): whole
  passes, about 1.5 s of that rank's measured work, ending at level ends, smaller near the end
  so that the ranks finish together; a slow rank simply asks less often;
- rank 0 evaluates chunks too, in a helper thread; its main thread polls MPI, gives every
  chunk it receives to the sink (the surface file flushes per chunk: a kill loses at most the
  chunks in flight) and draws the progress bar for all ranks;
- heartbeats go both ways. A rank silent for `LANDSCAPE_MPI_TIMEOUT` seconds (default 20) is
  named and the job aborted; an exception on a worker is sent to rank 0, which stops every rank
  and exits with one line naming the rank. Rerunning the same command resumes.

Only the main thread of a process calls MPI (so any MPI thread level works), and every wait is
a poll with a short sleep, so that a waiting rank never spins a core another rank computes on.

Launch lines (the options are those of `landscape surface`):

    mpiexec -n 2 python scripts/surface.py --ckpt ckpts/resnet20.pt --x=-1:1:51 --y=-1:1:51
    mpirun -n 8 -ppn 4 -hosts a,b python scripts/surface.py ...           (MPICH, 2 nodes)
    mpirun -n 8 --map-by ppr:4:node --host a:4,b:4 python scripts/surface.py ...   (Open MPI)
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import LandscapeError, describe_error
from ..system.messages import note
from ..system.mpi_env import (
    MPI_INSTALL_HINT,
    Layout,
    RankStopped,
    import_mpi,
    launched_under_mpi,
    layout_of,
    mpi_timeout,
    rank_threads,
    want_mpi,
)
from .executor import ChunkQueue, Evaluate, Executor, RunStats, SerialExecutor, Start, Work
from .mpi_channel import (
    BEAT,
    BYE,
    ERROR,
    FINAL,
    POLL,
    PREFETCH,
    REQUEST,
    RESULT,
    SETUP,
    SETUP_POLL,
    STOP,
    WORK,
    Channel,
    Interrupts,
    abort,
)

__all__ = [
    "MpiExecutor",
    "executor_for",
    # from mpi_env and executor, importable from here too
    "MPI_INSTALL_HINT",
    "ChunkQueue",
    "Layout",
    "RankStopped",
    "describe_error",
    "import_mpi",
    "launched_under_mpi",
    "mpi_timeout",
    "rank_threads",
    "want_mpi",
]

# ---------------------------------------------------------------------------------------------
# the evaluating thread


class _Computer:
    """Evaluates chunks in a helper thread, so that the main thread stays free for MPI and I/O.

    `setup` runs in the thread first (loading data, building the evaluator) and returns the
    function that evaluates a chunk of flat indices. The outbox receives ("ready",),
    ("done", indices, values, seconds) or ("error", one line).
    """

    def __init__(self, setup: Callable[[], Evaluate]) -> None:
        self.inbox: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self.outbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.held = 0  # chunks given and not yet returned
        self.early: list[tuple[Any, ...]] = []  # taken from the outbox by `wait`
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(setup,), name="landscape-eval", daemon=True)
        self.thread.start()

    def give(self, idx: np.ndarray) -> None:
        self.held += 1
        self.inbox.put(idx)

    def stop(self) -> None:
        self.inbox.put(None)

    def close(self) -> None:
        """Stop after the chunk in hand (at most a couple of seconds) and wait for the thread.

        A thread still inside torch when the interpreter exits is killed in a way C++ answers
        with `terminate` (SIGABRT), so every exit path waits here; a second Ctrl-C cuts it short.
        """
        self.stopping.set()  # chunks still queued are dropped
        self.stop()
        while self.thread.is_alive():
            self.thread.join(0.1)

    def wait(self, timeout: float) -> None:
        """Sleep until the thread reports something, or `timeout` seconds."""
        try:
            self.early.append(self.outbox.get(timeout=timeout))
        except queue.Empty:
            pass

    def drain(self) -> list[tuple[Any, ...]]:
        out, self.early = self.early, []
        while True:
            try:
                out.append(self.outbox.get_nowait())
            except queue.Empty:
                return out

    def _run(self, setup: Callable[[], Evaluate]) -> None:
        try:
            evaluate = setup()
            self.outbox.put(("ready",))
            while (idx := self.inbox.get()) is not None and not self.stopping.is_set():
                t0 = time.perf_counter()
                values = evaluate(idx)
                self.outbox.put(("done", idx, values, time.perf_counter() - t0))
        except BaseException as e:  # reported by the main thread, which owns the exit
            self.outbox.put(("error", describe_error(e)))


# ---------------------------------------------------------------------------------------------
# entry points


def executor_for(comm: str) -> Executor:
    """The executor `--comm` asks for: `MpiExecutor` (MPI started) or `SerialExecutor`."""
    return MpiExecutor() if want_mpi(comm) else SerialExecutor()


class MpiExecutor:
    """Runs a `Work` on every rank of MPI_COMM_WORLD: rank 0 prepares, owns the sink and
    hands out chunks (`ChunkQueue`); every rank evaluates. Starting it starts MPI.

    Example (every rank runs the same code, e.g. under `mpiexec -n 4`):
        >>> MpiExecutor().run(work)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.comm, self.layout, self.chan = _start()
        self.rank, self.size, self.local_rank = self.layout.rank, self.layout.size, self.layout.local_rank

    def run(self, work: Work) -> RunStats | None:
        if self.rank == 0:
            return _lead(self.chan, self.layout, work)
        _follow(self.chan, self.layout, work)
        return None

    def sync(self) -> None:
        self.comm.Barrier()


def _start() -> tuple[Any, Layout, Channel]:
    MPI = import_mpi()
    comm = MPI.COMM_WORLD
    return comm, layout_of(comm, MPI), Channel(comm, MPI)


def _send_setup_error(chan: Channel, layout: Layout, e: BaseException) -> None:
    """Rank 0 could not prepare: every worker exits with the same line (printed by rank 0)."""
    payload = {"ok": False, "message": describe_error(e)}
    for r in range(1, layout.size):
        chan.send(payload, r, SETUP)
    chan.flush(10.0)


# ---------------------------------------------------------------------------------------------
# rank 0


def _lead(chan: Channel, layout: Layout, work: Work) -> RunStats:
    """Rank 0: prepare, send every worker its message, hand out chunks, compute some, store all."""
    try:
        start = work.prepare()
    except BaseException as e:
        _send_setup_error(chan, layout, e)
        raise
    with Interrupts() as interrupts:
        payload = {
            "ok": True,
            "message": start.message() if layout.size > 1 else None,
            "n_pending": len(start.pending),
        }
        for r in range(1, layout.size):
            chan.send(payload, r, SETUP)
        if not start.quiet:
            note(layout.describe(start.label))
        return _serve_and_store(chan, layout, work, start, interrupts)


def _serve_and_store(
    chan: Channel, layout: Layout, work: Work, start: Start, interrupts: Interrupts
) -> RunStats:
    """Rank 0's loop: its own evaluating thread, the workers' requests and results, the sink."""
    pending = np.asarray(start.pending, dtype=np.int64)
    n = len(pending)
    workers = list(range(1, layout.size))
    found: dict[str, int] = {}

    def setup() -> Evaluate:
        evaluate, found["unit"] = work.setup(n, None, None)
        return evaluate

    computer = _Computer(setup)
    chunks: ChunkQueue | None = None
    asked = dict.fromkeys(workers, 0)  # requests for work not yet answered
    heard = dict.fromkeys(workers, time.monotonic())
    points, eval_seconds = [0] * layout.size, [0.0] * layout.size
    bar = start.progress
    if bar is not None:
        bar.enabled = bar.enabled and n > 0
    timeout = mpi_timeout()
    beat_every = min(2.0, timeout / 4)
    written, t_start, last_beat, write_seconds = 0, time.perf_counter(), 0.0, 0.0

    def close_bar() -> None:
        if bar is not None:
            bar.close()

    def store(idx: np.ndarray, values: dict[str, np.ndarray], seconds: float, rank: int) -> None:
        nonlocal written, write_seconds
        if len(idx):
            t0 = time.perf_counter()
            start.sink.write(idx, values, seconds, rank)
            write_seconds += time.perf_counter() - t0
        assert chunks is not None
        chunks.record(rank, len(idx), seconds)
        written += len(idx)
        points[rank] += len(idx)
        eval_seconds[rank] += seconds
        if bar is not None:
            bar.update(len(idx))

    try:
        while chunks is None or written < n:
            if interrupts.flag:
                raise KeyboardInterrupt
            busy = False
            for item in computer.drain():
                busy = True
                if item[0] == "error":
                    raise LandscapeError(f"rank 0 failed: {item[1]}")
                if item[0] == "ready":
                    chunks = ChunkQueue(pending, layout.size, found["unit"], breaks=start.breaks)
                    t_start = time.perf_counter()
                else:  # hand out the next chunk first, so rank 0's thread waits only for this
                    computer.held -= 1
                    if chunks is not None and chunks.left:
                        computer.give(chunks.next(0))
                    store(item[1], item[2], item[3], 0)
            while (msg := chan.poll()) is not None:
                busy = True
                src, tag, obj = msg
                heard[src] = time.monotonic()
                if tag == REQUEST:
                    asked[src] += int(obj)
                elif tag == RESULT:
                    asked[src] += 1
                    store(obj[0], obj[1], obj[2], src)
                elif tag == ERROR and obj == "interrupted":  # Ctrl-C reached that rank only
                    raise KeyboardInterrupt
                elif tag == ERROR:
                    raise LandscapeError(f"rank {src} ({layout.ranks[src][0]}) failed: {obj}")
            if chunks is not None:
                if not computer.held and chunks.left:  # rank 0's own thread: no round trip to hide
                    computer.give(chunks.next(0))
                for r in workers:
                    while asked[r]:
                        chan.send(chunks.next(r), r, WORK)
                        asked[r] -= 1
            now = time.monotonic()
            if now - last_beat > beat_every:
                last_beat = now
                for r in workers:
                    chan.send(None, r, BEAT)
            chan.progress()
            silent = [r for r in workers if now - heard[r] > timeout]
            if silent:
                close_bar()
                abort(chan.comm, _silent_message(
                    layout, silent[0], timeout,
                    "Every point written so far is kept: rerun the same command to resume",
                ))
            if not busy:
                computer.wait(POLL)
    except BaseException as e:  # an error, or Ctrl-C (which mpiexec sends every rank)
        close_bar()
        computer.close()
        _stop_workers(chan, workers, describe_error(e))
        with contextlib.suppress(AttributeError, TypeError):
            e.ranks_told = True  # every rank knows: they leave together (landscape.cli.edge)
        raise
    computer.close()
    seconds = time.perf_counter() - t_start
    close_bar()
    for r in workers:
        chan.send(None, r, FINAL)
    stats = RunStats(n, seconds, layout.size, {
        "comm": "mpi",
        "nodes": layout.nodes,
        "threads_per_rank": [t for _, _, t in layout.ranks],
        "points_per_rank": points,
        "eval_seconds_per_rank": [round(s, 4) for s in eval_seconds],
        "write_seconds": round(write_seconds, 4),
    })
    work.finish(stats)  # before waiting for goodbyes: a hung worker cannot lose the record
    _await_goodbyes(chan, layout, heard, timeout)
    chan.flush(5.0)
    return stats


def _await_goodbyes(chan: Channel, layout: Layout, heard: dict[int, float], timeout: float) -> None:
    """Every worker answers FINAL at once; one that stays silent (hung, stopped) would keep the
    launcher waiting forever after rank 0 exits, so it is named and the job aborted."""
    waiting = set(heard)
    while waiting:
        msg = chan.poll()
        if msg is not None:
            heard[msg[0]] = time.monotonic()
            if msg[1] == BYE:
                waiting.discard(msg[0])
            continue
        now = time.monotonic()
        silent = sorted(r for r in waiting if now - heard[r] > timeout)
        if silent:
            abort(chan.comm, _silent_message(layout, silent[0], timeout, "The surface is complete."))
        chan.progress()
        time.sleep(POLL)


def _silent_message(layout: Layout, rank: int, timeout: float, state: str) -> str:
    host, pid, _ = layout.ranks[rank]
    return (
        f"rank {rank} (pid {pid} on {host}) sent nothing for {timeout:g} s: killed, out of memory "
        f"or hung; stopping all ranks. {state}"
    )


def _stop_workers(chan: Channel, workers: list[int], message: str) -> None:
    """Tell every worker to stop and wait (bounded) until each has said goodbye."""
    for r in workers:
        chan.send(message, r, STOP)
    waiting, end = set(workers), time.monotonic() + 10.0
    while waiting and time.monotonic() < end:
        msg = chan.poll()
        if msg is None:
            chan.progress()
            time.sleep(POLL)
        elif msg[1] == BYE:
            waiting.discard(msg[0])
    if waiting:
        abort(chan.comm, f"{message} (and rank(s) {sorted(waiting)} did not stop)")
    chan.flush(5.0)


# ---------------------------------------------------------------------------------------------
# workers


def _wait_setup(chan: Channel, interrupts: Interrupts) -> Mapping[str, Any]:
    """Rank 0's job, or its error; after Ctrl-C, rank 0 (interrupted too) answers at once."""
    since = None
    while True:
        msg = chan.poll(0)
        if msg is not None and msg[1] == SETUP:
            payload = msg[2]
            if not payload["ok"]:
                if interrupts.flag:
                    raise KeyboardInterrupt
                raise RankStopped(payload["message"])
            return payload
        if interrupts.flag:
            since = since or time.monotonic()
            if time.monotonic() - since > 10.0:  # only this rank was interrupted
                raise KeyboardInterrupt
        time.sleep(SETUP_POLL)


def _follow(chan: Channel, layout: Layout, work: Work) -> None:
    """A worker: evaluate the chunks rank 0 hands out, send back the results.

    `work.preload` (its own model and data) runs in the evaluating thread while rank 0
    prepares; `work.setup` then builds the evaluation from rank 0's message and what `preload`
    returned. A failure in either is reported to rank 0 only once rank 0 has prepared (its own
    error comes first).
    """
    box: queue.SimpleQueue[Mapping[str, Any] | None] = queue.SimpleQueue()

    def setup() -> Evaluate:
        preloaded = work.preload()
        payload = box.get()
        if payload is None:
            raise RankStopped("rank 0 stopped before sending the job")
        evaluate, _ = work.setup(payload["n_pending"], payload["message"], preloaded)
        return evaluate

    with Interrupts() as interrupts:
        computer = _Computer(setup)
        try:
            box.put(_wait_setup(chan, interrupts))
        except BaseException:
            box.put(None)
            computer.close()
            raise
        try:
            _serve(chan, layout, computer, interrupts)
        finally:
            computer.close()


def _serve(chan: Channel, layout: Layout, computer: _Computer, interrupts: Interrupts) -> None:
    """A worker's loop: pass chunks to the evaluating thread and its results to rank 0."""
    reported = False
    timeout = mpi_timeout()
    beat_every = min(2.0, timeout / 4)
    heard = time.monotonic()
    while True:
        busy = False
        if interrupts.flag and not reported:  # rank 0 stops everyone (it may not know yet)
            chan.send("interrupted", 0, ERROR)
            reported = True
        for item in computer.drain():
            busy = True
            if item[0] == "ready":
                chan.send(PREFETCH, 0, REQUEST)
            elif item[0] == "done":
                chan.send(item[1:], 0, RESULT)
            else:  # rank 0 names us and stops everyone; wait for its STOP
                chan.send(item[1], 0, ERROR)
        while (msg := chan.poll(0)) is not None:
            busy = True
            heard = time.monotonic()
            _, tag, obj = msg
            if tag == WORK and len(obj):
                computer.give(obj)
            elif tag in (STOP, FINAL):  # goodbye first: our thread may still be loading data
                chan.send(None, 0, BYE)
                chan.flush(5.0)
                computer.close()
                if tag == STOP and interrupts.flag:
                    raise KeyboardInterrupt
                if tag == STOP:
                    raise RankStopped(obj)
                return
        chan.progress()
        now = time.monotonic()
        if now - chan.last_send > beat_every:
            chan.send(None, 0, BEAT)
        if now - heard > timeout:
            abort(chan.comm, (
                f"rank {layout.rank} on {layout.host}: rank 0 sent nothing for {timeout:g} s "
                "(killed, out of memory or hung); stopping. Rerun the same command to resume"
            ))
        if not busy:
            computer.wait(POLL)
