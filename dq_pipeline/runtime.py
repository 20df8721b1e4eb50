"""Process-level state around a run: how often Python's cyclic garbage collector runs while an audit executes, and
the process's signal handlers, which the libraries a run calls change and do not put back.

:class:`dq_pipeline.defs.resources.AuditSettings` applies :func:`fewer_collections` for the length of each run that
uses it (CLI and UI runs alike); ``dq-pipeline`` applies it to its whole process, imports included.
:func:`keep_signal_handlers` wraps each in-process Dagster run of :func:`dq_pipeline.defs.runner.run_audit` and each
Ray session :mod:`dq_pipeline.embed.distributed` starts.
"""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Python's cyclic-GC thresholds while an audit runs (CPython's defaults: 700, 10, 10). A run allocates millions of
#: small objects (Dagster events, tag lists, pandas object columns) on a heap that holds the imports of the whole
#: stack, so with the defaults the full GoEmotions audit spent 1.4-1.7 s of its ~20 s outside the embedding in 2,998
#: collections, 14 of them full, and embedded 7% slower; with these, 0.4 s in 191-342 collections, 1-2 full
#: (bench/results/gc_thresholds.md). Collections still run, so cyclic garbage is still freed.
AUDIT_GC_THRESHOLDS: tuple[int, int, int] = (10_000, 10, 10)


@contextmanager
def fewer_collections(thresholds: tuple[int, int, int] = AUDIT_GC_THRESHOLDS) -> Iterator[None]:
    """Run the block with the cyclic GC's ``thresholds``, never lower than the current ones; restore them after."""
    before = gc.get_threshold()
    gc.set_threshold(*(max(a, b) for a, b in zip(thresholds, before)))
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextmanager
def keep_signal_handlers(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Run the block, then give ``signals`` the handlers they had before it (main thread only; elsewhere Python
    cannot set handlers and nothing is done).

    Dagster's in-process execution maps SIGTERM to the SIGINT handler and leaves it so: in a process started in the
    background by a script (SIGINT ignored, as POSIX shells start them) SIGTERM was then ignored for the rest of the
    process, so ``kill`` no longer stopped a ``dq-pipeline audit`` between or after its runs, and a forked worker
    could not be terminated. ``ray.init`` installs a SIGTERM handler of its own that ``ray.shutdown`` leaves behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in signals}
    try:
        yield
    finally:
        for s, handler in before.items():
            if handler is not None:  # None: set outside Python, cannot be restored from here
                signal.signal(s, handler)
