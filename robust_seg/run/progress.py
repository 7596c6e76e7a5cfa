"""One overall progress meter for a whole evaluation or training, with its ETA from the first units of work.

On a terminal it is one tqdm bar over every unit of the run (an evaluation: every model pass of every radius of
every batch; a training: every optimiser step of every epoch). Written to a file or a pipe it prints plain lines
instead, without escape codes: one every ``PLAIN_INTERVAL`` seconds with the share done, the elapsed time and the
ETA of the whole run; the log line of each batch or epoch carries the same ``status()``.
"""
from __future__ import annotations

import sys
import time

PLAIN_INTERVAL = 60.0
"""Seconds between two plain progress lines (not a terminal)."""


def interactive() -> bool:
    """Whether progress goes to a terminal (stderr is a TTY)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``42s``."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "ch")) else "s")


class RunProgress:
    """``total`` units of work (None: unknown); ``update(n)`` as they are done, ``milestone(text)`` after a batch or
    an epoch, ``close()`` at the end. ``done`` units already finished (a resumed run) count neither in the rate nor
    in the ETA."""

    def __init__(self, total: int | None, description: str, unit: str, *, done: int = 0, enabled: bool = True,
                 stream=None):
        self.total, self.description, self.unit, self.enabled = total, description, unit, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.start_units, self.units = done, done
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if enabled and interactive():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=description, unit=unit, dynamic_ncols=True,
                            file=self.stream)

    def eta(self) -> float | None:
        """Seconds left for the whole run at the rate so far (None before the first unit or without a total)."""
        worked = self.units - self.start_units
        if self.total is None or worked <= 0:
            return None
        return (time.monotonic() - self.started) / worked * max(self.total - self.units, 0)

    def status(self) -> str:
        """``37% of 1,200 passes, 2m10s elapsed, ETA 3m40s`` (share and ETA only with a total)."""
        elapsed = duration(time.monotonic() - self.started)
        if self.total:
            eta = self.eta()
            return (f"{100 * self.units / self.total:.0f}% of {self.total:,} {plural(self.unit)}, {elapsed} elapsed, "
                    f"ETA {duration(eta) if eta is not None else '?'}")
        return f"{self.units:,} {plural(self.unit)}, {elapsed} elapsed"

    def update(self, units: int = 1) -> None:
        self.units += units
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(units)
        elif time.monotonic() - self.last_line >= PLAIN_INTERVAL:
            self._line()

    def milestone(self, text: str) -> None:
        """A batch or an epoch is done: the bar's postfix on a terminal (elsewhere its log line says it)."""
        if self.enabled and self.bar is not None:
            self.bar.set_postfix_str(text)

    def _line(self) -> None:
        self.last_line = time.monotonic()
        print(f"{self.description}: {self.status()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
