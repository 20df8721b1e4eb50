"""Progress lines a person can read: done / total, share, rate and time left (or time taken)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


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
    seconds, and always at the end. A stage that first loads something (a model) calls ``progress(0, total)``
    when the counted work starts: the rate and time left are then measured from there (nothing is emitted)."""
    started = [time.monotonic()]
    last = [float("-inf")]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == 0 and total > 0 and last[0] == float("-inf"):
            started[0] = now
            return
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            emit(progress_line(stage, done, total, now - started[0], unit))

    return report


@contextmanager
def heartbeat(emit: Callable[[str], None] | None, stage: str, every_s: float = 10.0) -> Iterator[None]:
    """Progress for a stage that cannot count its work (a library call that reports nothing): emit
    ``'<stage>: started'`` at once, ``'<stage>: still running, 20 s so far'`` every ``every_s`` seconds (from a
    daemon thread) and ``'<stage>: done in 31.2 s'`` at the end. ``emit=None``: nothing is emitted."""
    if emit is None:
        yield
        return
    started = time.monotonic()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            emit(f"{stage}: still running, {time.monotonic() - started:.0f} s so far")

    emit(f"{stage}: started")
    thread = threading.Thread(target=beat, name=f"heartbeat: {stage}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    emit(f"{stage}: done in {time.monotonic() - started:.1f} s")
