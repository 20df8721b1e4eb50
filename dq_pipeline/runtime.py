"""Process-level pace of a run: how often Python's cyclic garbage collector runs while an audit executes.

:class:`dq_pipeline.defs.resources.AuditSettings` applies :func:`fewer_collections` for the length of each run that
uses it (CLI and UI runs alike); ``dq-pipeline`` applies it to its whole process, imports included.
"""

from __future__ import annotations

import gc
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
