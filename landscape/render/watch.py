"""`landscape report --watch`: rewrite a report each time a surface being computed completes a level.

The computing process writes values, then their `computed` flags, into a file opened without
HDF5 locks; this module only reads it, through `landscape.io.storage.read_surface` (validated,
probed), every `interval` seconds. The surfaces are computed coarse to fine, so a new level
(a finer full-range sub-grid, see `landscape.core.preview`) completes a few times per run: each time,
the report is rewritten atomically (`landscape.io.outputs.atomic_write`) with a page that reloads
itself. When every surface is complete it is written once more without the reload, and the
watch ends; Ctrl-C also ends it with a last write without the reload. A file that does not
exist yet is waited for (the watch may start beside the `landscape surface` that creates it).

Example:
    >>> watch_report(["surfaces/resnet20.h5"], "plots/resnet20_report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.loss_surface import Surface
from ..core.preview import level_key, preview, preview_note
from ..errors import LandscapeError
from ..io.storage import read_surface
from .labels import partial_note
from .report import write_report

__all__ = ["MAX_INTERVAL", "WatchSettings", "watch_report"]

MAX_INTERVAL = 3600.0  # seconds: a watch looks at its files at least once an hour

# A file that the computing process replaces by rename (a run's last attributes) may be
# unreadable for an instant; only this many failed reads in a row are an error.
_READ_RETRIES = 3


@dataclass(frozen=True)
class WatchSettings:
    """How often to look at the files, and how often the page reloads itself while watching."""

    interval: float = 5.0
    reload_seconds: int = 5
    limit: float | None = None  # stop after this many seconds (tests, batch jobs); None: never

    def __post_init__(self) -> None:
        if not 0 < self.interval <= MAX_INTERVAL:  # time.sleep(1e10) is an OverflowError
            raise LandscapeError(
                f"--interval {self.interval:g}: give seconds above 0 and at most {MAX_INTERVAL:g}"
            )
        if not 1 <= self.reload_seconds <= MAX_INTERVAL:
            raise LandscapeError(f"reload_seconds {self.reload_seconds} must be from 1 to {MAX_INTERVAL:g}")
        if self.limit is not None and not (self.limit > 0 and math.isfinite(self.limit)):
            raise LandscapeError(f"limit {self.limit} must be a positive number of seconds")


def watch_report(
    files: Sequence[str | Path],
    out: str | Path,
    surf: str | None = None,
    zmax: float | None = None,
    settings: WatchSettings = WatchSettings(),
    on_write: Callable[[str], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> Path:
    """Write the report of `files` to `out` now and at every new complete level, until every
    surface is complete (a last write without the reload) or Ctrl-C; return the path.

    `on_write` is told one line per write (the path and what it shows).
    """
    files = [Path(f) for f in files]
    out = Path(out)
    started = time.monotonic()
    last_key: tuple | None = None
    surfaces: list[Surface] = []
    failures = 0
    waiting = False
    try:
        while True:
            missing = [f for f in files if not f.exists()]
            if missing:  # started beside `landscape surface`, which creates the file shortly
                if not waiting and on_write is not None:
                    on_write(f"waiting for {', '.join(map(str, missing))} to be created (Ctrl-C to stop)")
                waiting = True
                _check_limit(settings, started)
                time.sleep(settings.interval)
                continue
            try:
                surfaces = [read_surface(f) for f in files]
                failures = 0
            except LandscapeError:
                failures += 1
                if failures >= _READ_RETRIES:
                    raise
                time.sleep(settings.interval)
                continue
            key = tuple(level_key(s) for s in surfaces)
            complete = all(s.done == s.computed.size for s in surfaces)
            if key != last_key or complete:
                reload = None if complete else settings.reload_seconds
                write_report(surfaces, out, surf, zmax, on_skip=on_skip if last_key is None else None,
                             reload_seconds=reload)
                last_key = key
                if on_write is not None:
                    on_write(f"{out}: {_progress(surfaces)}")
            if complete:
                return out
            _check_limit(settings, started)
            time.sleep(settings.interval)
    except KeyboardInterrupt:
        if surfaces:  # the page stops reloading: the last report stays as written, without reload
            write_report(surfaces, out, surf, zmax)
        raise


def _check_limit(settings: WatchSettings, started: float) -> None:
    if settings.limit is not None and time.monotonic() - started > settings.limit:
        raise LandscapeError(
            f"report --watch: the surfaces are still incomplete after {settings.limit:g} s; "
            "the last report written is kept: rerun to watch again"
        )


def _progress(surfaces: Sequence[Surface]) -> str:
    """'complete', or each file's preview / partial note, '; '-joined."""
    notes = []
    for s in surfaces:
        note = preview_note(preview(s)) or partial_note(s)
        notes.append(f"{Path(s.path).name} {note}" if note else f"{Path(s.path).name} complete")
    return "; ".join(notes)
