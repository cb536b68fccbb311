"""A small progress bar with rate and ETA, written to stderr (no dependencies)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """`75.3` -> `1:15`; `4000` -> `1:06:40`."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Counts units of work; redraws at most every `interval` seconds.

    On a terminal the bar redraws in place; elsewhere (logs, CI) a line is printed at most
    every `log_interval` seconds.
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        unit: str = "it",
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 0.2,
        log_interval: float = 15.0,
        initial: int = 0,
    ) -> None:
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else log_interval
        self.initial = self.n = initial
        self.start = time.perf_counter()
        # on a terminal draw at once; in a log, only once `log_interval` has passed
        self._last = 0.0 if self.tty else self.start
        self._drawn = -1
        self.postfix = ""

    def update(self, k: int = 1, postfix: str | None = None) -> None:
        self.n += k
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.interval or self.n >= self.total):
            self._last = now
            self._draw(final=False)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return (self.n - self.initial) / elapsed if elapsed > 0 else 0.0

    def _draw(self, final: bool) -> None:
        self._drawn = self.n
        elapsed = time.perf_counter() - self.start
        rate = self.rate()
        left = (self.total - self.n) / rate if rate > 0 else float("inf")
        frac = self.n / self.total if self.total else 1.0
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        text = (
            f"{self.desc} [{bar}] {self.n}/{self.total} {frac:4.0%} "
            f"{rate:.3g} {self.unit}/s elapsed {format_seconds(elapsed)} "
            f"eta {format_seconds(left if not final else 0)}"
        )
        if self.postfix:
            text += f" {self.postfix}"
        if self.tty:
            self.stream.write("\r" + text + "\033[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            if self.tty or self._drawn != self.n:  # in a log: one final line, unless just drawn
                self._draw(final=True)
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
