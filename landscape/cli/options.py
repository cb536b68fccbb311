"""The options every command shares: a one-line-error parser, checked numeric types, the data
source and thread options, and the process's thread settings (entered before torch loads).

Example:
    >>> positive_int("3")
    3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

from ..system.seeds import MAX_SEED, valid_seed
from .edge import leave_failing, lenient_streams

__all__ = [
    "Parser",
    "json_dict",
    "positive_int",
    "nonneg_int",
    "positive_float",
    "finite_float",
    "nonneg_float",
    "unit_interval",
    "seed_int",
    "watch_interval",
    "MAX_SEED",
    "MAX_WATCH_INTERVAL",
    "add_data_source",
    "add_threads",
    "thread_settings",
]


_N = TypeVar("_N", int, float)  # what a numeric argument type returns


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (no usage dump) and exits 2 (under an MPI
    launcher, through the edge's exit that ends every rank: `landscape.cli.edge`)."""

    def error(self, message: str) -> NoReturn:
        with lenient_streams():
            leave_failing(f"{self.prog}: error: {message} (see '{self.prog} --help')", 2)
        self.exit(2)


def json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"width\": 8}}', got {text!r}")
    return value


def _number_type(
    name: str, convert: Callable[[str], _N], accept: Callable[[_N], bool], expected: str
) -> Callable[[str], _N]:
    """An argparse type: `convert` the text, and reject it unless `accept(value)`, saying what was
    `expected` in one line."""

    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


MAX_WATCH_INTERVAL = 3600.0  # = landscape.render.watch.MAX_INTERVAL (not imported: --help stays light)

positive_int = _number_type("positive_int", int, lambda v: v >= 1, "a positive integer")
nonneg_int = _number_type("nonneg_int", int, lambda v: v >= 0, "an integer >= 0")
seed_int = _number_type("seed_int", int, valid_seed, "an integer seed from 0 to 2**63-1")
positive_float = _number_type(
    "positive_float", float, lambda v: v > 0 and math.isfinite(v), "a positive number"
)
nonneg_float = _number_type("nonneg_float", float, lambda v: v >= 0 and math.isfinite(v), "a finite number >= 0")
finite_float = _number_type("finite_float", float, math.isfinite, "a finite number")
unit_interval = _number_type("unit_interval", float, lambda v: 0 <= v < 1, "a number from 0 to below 1")
watch_interval = _number_type(
    "watch_interval", float, lambda v: 0 < v <= MAX_WATCH_INTERVAL,
    f"a number of seconds above 0 and at most {MAX_WATCH_INTERVAL:g}",
)


def add_data_source(group: argparse._ActionsContainer) -> None:
    """--data, --data-root, --data-test: the data set around a checkpoint (default: its own).

    Shared by `surface` and `hessian`; `landscape.data.sources.dataset_for_checkpoint` resolves them.
    """
    group.add_argument("--data", default=None, help="data set (default: the checkpoint's own)")
    group.add_argument("--data-root", default=None, help="directory with CIFAR python-pickle files")
    group.add_argument("--data-test", default=None, help="test split for --data path.npz/.pt (arrays x, y)")
    group.add_argument("--normalization", default=None, metavar="paper|landscape|MEAN,STD",
                       help="CIFAR-10 input normalization: the paper's code's constants, ours, or your own "
                       "(one mean and std, or one per channel: M1,M2,M3,S1,S2,S3) (default: what the "
                       "checkpoint records; paper for a file from the paper's code)")


def add_threads(group: argparse._ActionsContainer) -> None:
    """--threads: torch's intra-op threads (default: the cores this process may use)."""
    group.add_argument("--threads", type=positive_int, default=None,
                       help="CPU threads per process (default: the cores this process may use: "
                       "affinity, container CPU quota, MPI ranks per node; OMP_NUM_THREADS wins)")


@contextlib.contextmanager
def thread_settings(
    threads: int | None, warn: Callable[[str], None] | None = None, busy: bool | None = None
) -> Iterator[int]:
    """The threads of one command that computes; the process-wide edge (`run_parsed`) enters it
    before torch is imported.

    1. The environment: OMP_WAIT_POLICY=PASSIVE on a busy machine (`machine_busy`), unless the
       user set it or GOMP_SPINCOUNT (GNU OpenMP reads it once, when torch loads it), and `threads` as OMP_NUM_THREADS (so it also
       holds for MPI ranks and child processes); see `landscape.system.threads.thread_environment`.
    2. torch's intra-op threads: `threads` (--threads), else OMP_NUM_THREADS when set, else the
       cores this process may use (`landscape.system.threads.default_threads`). Under MPI, `layout_of`
       later gives each rank its share of the node.

    `threads` above `landscape.system.threads.max_threads` is refused in one line (far too many crash
    the OpenMP runtime); an OMP_NUM_THREADS that is not a sane count is dropped for the command,
    and `warn` is told why; `busy` (None: measure) decides the waiting. Yields the thread count. Both are restored afterwards, as the
    command may run inside a longer-lived process (a test).
    """
    import os

    from ..system.threads import (
        check_threads,
        default_threads,
        machine_busy,
        machine_cpus,
        omp_threads,
        sample_others,
        thread_environment,
    )

    limits = machine_cpus()
    if threads is not None:
        check_threads(threads, limits)
    saved = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    _, note = omp_threads(os.environ, limits)
    if note is not None:
        os.environ.pop("OMP_NUM_THREADS")
        if warn is not None and threads is None:
            warn(note)
    if busy is None:  # measured: tasks running now besides this one
        busy = machine_busy(sample_others(), limits.usable)
    added = thread_environment(os.environ, threads, busy=busy)
    saved.update({k: os.environ.get(k) for k in added if k not in saved})
    os.environ.update(added)
    try:
        import torch

        before = torch.get_num_threads()
        try:
            wanted = threads or default_threads(limits, env=os.environ)
            if wanted:
                torch.set_num_threads(wanted)
            yield torch.get_num_threads()
        finally:
            torch.set_num_threads(before)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
