"""Progress that never looks hung: a tqdm bar on a terminal, plain lines in a pipe, nothing under --quiet.

On a terminal the familiar tqdm bar is drawn on stderr. When stderr is piped
(a log file, ``nohup``, a CI job) a bar would be unreadable, but silence for a
200-second epoch looks like a hang; so one plain, flushed line is written at
each 10 % of the loop instead, e.g. ``epoch 3/10: 40% (240/600, 35 s)``. Loops
that finish within a second of starting stay silent, so short loops (and tests)
print nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

# line mode: print at each LINE_STEP_PERCENT boundary, but not before LINE_MIN_SECONDS into the loop;
# without a length, print every LINE_EVERY_SECONDS
LINE_STEP_PERCENT = 10
LINE_MIN_SECONDS = 1.0
LINE_EVERY_SECONDS = 30.0


def show_progress(quiet: bool = False) -> bool:
    """True where a tqdm bar is drawn: not quiet and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


def progress(iterable: Iterable[T], *, quiet: bool = False, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` so a person can see it move.

    A tqdm bar on stderr when stderr is a terminal (``kwargs`` go to tqdm); plain
    progress lines on stderr when it is not (only ``desc`` and ``total`` are used);
    the iterable itself under ``quiet``.
    """
    if quiet:
        return iterable
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, file=sys.stderr, leave=False, dynamic_ncols=True, **kwargs)
    return ProgressLines(iterable, desc=kwargs.get("desc"), total=kwargs.get("total"))


class ProgressLines(Iterable[T]):
    """Iterate ``iterable`` and write a line to stderr at each 10 % boundary crossed
    (only once a second has passed since the loop started: at most 10 lines a loop); with no length
    known, a line every 30 s. No ``set_postfix``: callers check with ``hasattr``."""

    def __init__(self, iterable: Iterable[T], desc: str | None = None, total: int | None = None) -> None:
        self.iterable = iterable
        self.desc = desc
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total = total

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this progress wrapper has no length")
        return self.total

    def __bool__(self) -> bool:  # truthy like the iterable, without len() failing on one of unknown length
        return self.total != 0

    def _write(self, text: str) -> None:
        prefix = f"{self.desc}: " if self.desc else ""
        try:
            print(prefix + text, file=sys.stderr, flush=True)
        except (OSError, ValueError):  # a closed or broken stderr must not stop the work
            pass

    def __iter__(self) -> Iterator[T]:
        total = self.total
        start = time.monotonic()
        done = 0
        if total is not None and total > 0:
            step = 0  # how many 10 % boundaries the loop has crossed
            for item in self.iterable:
                yield item
                done += 1
                now_step = min(done, total) * 100 // total // LINE_STEP_PERCENT
                if now_step > step:
                    step = now_step
                    elapsed = time.monotonic() - start
                    if elapsed >= LINE_MIN_SECONDS:
                        self._write(f"{min(done, total) * 100 // total}% ({done}/{total}, {elapsed:.0f} s)")
        else:
            last = start
            for item in self.iterable:
                yield item
                done += 1
                now = time.monotonic()
                if now - last >= LINE_EVERY_SECONDS:
                    last = now
                    self._write(f"{done} done ({now - start:.0f} s)")
