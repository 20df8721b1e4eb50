"""Progress lines a person can read: done / total, share, rate and time left (or time taken)."""

from __future__ import annotations

import time
from collections.abc import Callable


def progress_line(stage: str, done: int, total: int, elapsed_s: float, unit: str = "items") -> str:
    """``'text embeddings: 640/1261 (51%), 212.4 texts/s, about 3 s left'``; at the end the time taken."""
    share = f" ({100 * done // total}%)" if total else ""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    if done >= total:
        return f"{stage}: {done}/{total}{share}, done in {elapsed_s:.1f} s ({rate:.1f} {unit}/s)"
    left = f", about {(total - done) / rate:.0f} s left" if rate > 0 else ""
    return f"{stage}: {done}/{total}{share}, {rate:.1f} {unit}/s{left}"


def throttled(emit: Callable[[str], None], stage: str, unit: str = "items",
              every_s: float = 2.0) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that emits :func:`progress_line` at most every ``every_s``
    seconds, and always at the end."""
    started = time.monotonic()
    last = [float("-inf")]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            emit(progress_line(stage, done, total, now - started, unit))

    return report
