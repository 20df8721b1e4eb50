"""On-disk cache of stage results keyed by content, settings and code.

A re-audit of an unchanged dataset should not refit cross-validation or rerun detectors: each cached
stage gets a key ``fingerprint(stage, code_version(), settings..., upstream fingerprints)`` and stores
its output (pickled) as ``<root>/<stage>/<key>.pkl``. A change to the data, a setting or any source
file of this package (or the numerical libraries' versions) changes the key, so a stale result is
never served. Writes go to a temporary file then ``os.replace`` (atomic on POSIX); unreadable entries
count as misses. Each stage keeps its ``max_entries`` most recently used entries.

The files are pickles written by this package into a folder you own; do not point ``root`` at files
from elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")

DEFAULT_MAX_ENTRIES = 32
_LIBRARIES = ("numpy", "pandas", "scikit-learn", "scipy", "iterative-stratification")


def _update(digest: Any, part: Any) -> None:
    """Feed one part into ``digest`` with a type tag, so different values never share a byte stream."""
    if isinstance(part, np.ndarray):
        array = np.ascontiguousarray(part)
        if array.dtype == object:
            _update(digest, [str(v) for v in array.tolist()])
            return
        digest.update(f"nd|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.data)
    elif isinstance(part, pd.DataFrame):
        digest.update(f"df|{list(map(str, part.columns))}|{len(part)}|".encode())
        for column in part.columns:
            values = part[column]
            if values.dtype == object:  # lists (tags), mixed objects: hash their text form
                values = values.map(repr)
            _update(digest, pd.util.hash_pandas_object(values, index=False).to_numpy())
    elif isinstance(part, (list, tuple)):
        digest.update(f"seq|{len(part)}|".encode())
        for item in part:
            _update(digest, item)
    elif isinstance(part, dict):
        digest.update(b"map|")
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    elif isinstance(part, bytes):
        digest.update(f"b|{len(part)}|".encode())
        digest.update(part)
    else:  # str, int, float, bool, None
        text = repr(part).encode()
        digest.update(f"s|{type(part).__name__}|{len(text)}|".encode())
        digest.update(text)


def fingerprint(*parts: Any) -> str:
    """sha256 (64 hex characters) of ``parts``: arrays by dtype, shape and bytes; frames column by
    column; sequences, dicts and scalars by value. Equal inputs give equal keys across processes."""
    digest = hashlib.sha256()
    for part in parts:
        _update(digest, part)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Fingerprint of every ``.py`` file of this package plus the numerical libraries' versions.

    Any edit to the pipeline's code invalidates cached results (computed once per process).
    """
    from importlib.metadata import PackageNotFoundError, version

    package = Path(__file__).resolve().parent
    parts: list[Any] = []
    for path in sorted(package.rglob("*.py")):
        parts += [path.relative_to(package).as_posix(), path.read_bytes()]
    for name in _LIBRARIES:
        try:
            parts.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} absent")
    return fingerprint(*parts)


class ResultCache:
    """Stage results under ``root``: one pickle per (stage, key), least recently used pruned.

    Parameters
    ----------
    root : str | Path
        Folder for the cache (created on first write).
    max_entries : int
        Entries kept per stage (the most recently read or written).
    """

    def __init__(self, root: str | Path, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.root = Path(root)
        self.max_entries = max_entries

    def path_for(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.pkl"

    def get(self, stage: str, key: str) -> Any | None:
        """The stored value, or None on a miss (absent or unreadable entry, which is then removed)."""
        path = self.path_for(stage, key)
        try:
            with open(path, "rb") as fh:
                value = pickle.load(fh)
        except FileNotFoundError:
            return None
        except Exception:  # truncated or from an incompatible version: recompute
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # most recently used
        except OSError:
            pass
        return value

    def put(self, stage: str, key: str, value: Any) -> None:
        """Store ``value`` (must pickle) and prune the stage to ``max_entries``."""
        path = self.path_for(stage, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        entries = []
        for entry in folder.glob("*.pkl"):
            try:
                entries.append((entry.stat().st_mtime, entry))
            except FileNotFoundError:  # removed by a concurrent prune
                continue
        entries.sort(reverse=True)
        for _, stale in entries[self.max_entries:]:
            stale.unlink(missing_ok=True)


def cached(cache: ResultCache | None, stage: str, key: str, compute: Callable[[], T]) -> tuple[T, bool]:
    """``(value, hit)``: the stored value for (stage, key), else ``compute()`` stored and returned.

    ``cache=None`` always computes (``hit`` False).
    """
    if cache is not None:
        value = cache.get(stage, key)
        if value is not None:
            return value, True
    value = compute()
    if cache is not None:
        cache.put(stage, key, value)
    return value, False
