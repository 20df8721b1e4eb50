"""On-disk cache of stage results keyed by content, settings and code.

A re-audit of an unchanged dataset should not refit cross-validation or rerun detectors: each cached
stage gets a key ``fingerprint(stage, code_version(), settings..., upstream fingerprints)`` and stores
its output as ``<root>/<stage>/<key>.npz``. A change to the data, a setting, any source file of this
package or the version of a library that computes a cached value changes the key, so a stale result
is never served. Writes go to a temporary file then ``os.replace`` (atomic on POSIX). Each stage keeps
its ``max_entries`` most recently used entries.

Entries are **data, never code**: an ``.npz`` read with ``allow_pickle=False`` holding a JSON
description of the value plus its numeric arrays (numpy ``.npy`` members) and data frames (parquet
bytes). Only these types are rebuilt: ``None``, bool, int, float, str, list, tuple, dict, numpy arrays
and scalars (not of object dtype), pandas DataFrames (numeric, bool, categorical, datetime and string
columns), Dagster metadata values (through Dagster's JSON serdes, which only constructs classes it has
whitelisted) and the dataclasses named in :data:`ALLOWED_DATACLASSES`, rebuilt field by field through
their constructors. Anything else in a file -- a pickle, a truncated or garbage file, an unknown tag or
type, a field list that does not match the class -- is a miss: the stage recomputes and the entry is
replaced. A value the cache cannot store is simply not cached. Failing to read or write the cache
folder (read-only, not a folder) never fails a stage either: it is logged and the stage computes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import io
import json
import logging
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_ENTRIES = 32
SUFFIX = ".npz"
FORMAT = 1

#: Distributions whose code computes (or encodes) a cached value. Libraries upstream of the cached
#: stages' inputs (torch, pillow, sentence-transformers, transformers) are left out on purpose: they
#: only shape the features, and every key holds the features' bytes, so a change there that changes a
#: vector already changes the key (and the embedding cache keys on them itself).
_LIBRARIES = (
    "numpy", "pandas", "scikit-learn", "scipy", "iterative-stratification",  # probabilities, detectors
    "great-expectations",  # gate verdicts
    "dagster",  # metadata value classes and their serialisation
    "matplotlib", "tabulate",  # plots (PNG bytes) and markdown tables in detector metadata
    "pyarrow",  # encodes cached data frames
)

#: The dataclasses a cache entry may rebuild: ``"module.QualName"`` -> (module, name). Rebuilt only
#: through their constructor with exactly their declared fields (whose values are decoded the same way).
ALLOWED_DATACLASSES: dict[str, tuple[str, str]] = {
    "dq_pipeline.issues.base.DetectorResult": ("dq_pipeline.issues.base", "DetectorResult"),
    "dq_pipeline.model.OutOfFold": ("dq_pipeline.model", "OutOfFold"),
    "dq_pipeline.expectations.GateResult": ("dq_pipeline.expectations", "GateResult"),
    "dq_pipeline.expectations.GateFailure": ("dq_pipeline.expectations", "GateFailure"),
    "dq_pipeline.neighbours.NeighbourGraph": ("dq_pipeline.neighbours", "NeighbourGraph"),
}

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_MAX_DESCRIPTION_BYTES = 64 << 20
_STALE_TMP_SECONDS = 3600


# --------------------------------------------------------------------------------------- keys


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
    elif isinstance(part, (list, tuple)) and len(part) > 64 and all(type(item) is str for item in part):
        # many strings (ids, exact-duplicate keys): one JSON encoding (escapes make it unambiguous), not
        # one tagged update per item
        digest.update(f"strs|{len(part)}|".encode())
        digest.update(json.dumps(part if isinstance(part, list) else list(part)).encode())
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


def package_pins(packages: Sequence[str]) -> list[str]:
    """``name==version`` (or ``name absent``) of each installed distribution in ``packages``."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in packages:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(f"{name} absent")
    return pins


def library_versions() -> list[str]:
    """``name==version`` (or ``name absent``) of each library in ``_LIBRARIES``, plus Python's."""
    return [f"python=={platform.python_implementation()}-{platform.python_version()}", *package_pins(_LIBRARIES)]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Fingerprint of every ``.py`` file of this package plus the versions of the libraries that
    compute, render or encode a cached value (see ``_LIBRARIES``) and of Python.

    Any edit to the pipeline's code invalidates cached results (computed once per process).
    """
    package = Path(__file__).resolve().parent
    parts: list[Any] = []
    for path in sorted(package.rglob("*.py")):
        parts += [path.relative_to(package).as_posix(), path.read_bytes()]
    parts += library_versions()
    return fingerprint(*parts)


# ----------------------------------------------------------------------------- entry format


class MalformedEntry(ValueError):
    """A cache file that is not a well-formed entry of this format (treated as a miss)."""


class _Encoder:
    """Value -> JSON description, collecting arrays (and parquet bytes) as separate npz members.

    Every JSON object in a description is a tagged node ``{"$": tag, ...}``; lists, strings, ints,
    bools, null and finite floats stand for themselves.
    """

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _ref(self, array: np.ndarray) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = array
        return name

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if type(value) is int:
            return value
        if type(value) is float:
            return value if np.isfinite(value) else {"$": "float", "v": repr(value)}
        if type(value) is list:
            return [self.encode(v) for v in value]
        if type(value) is tuple:
            return {"$": "tuple", "items": [self.encode(v) for v in value]}
        if type(value) is dict:
            return {"$": "dict", "items": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if type(value) is np.ndarray:
            if value.dtype.hasobject:
                return {"$": "objarray", "shape": list(value.shape),
                        "items": [self.encode(v) for v in value.ravel().tolist()]}
            return {"$": "ndarray", "ref": self._ref(value)}
        if isinstance(value, np.generic) and not isinstance(value, np.object_):
            return {"$": "npscalar", "ref": self._ref(np.asarray(value))}
        if type(value) is pd.DataFrame:
            return self._frame(value)
        if _is_dagster_metadata(value):
            from dagster._serdes import serialize_value

            return {"$": "dagster", "json": serialize_value(value)}
        name = f"{type(value).__module__}.{type(value).__qualname__}"
        if dataclasses.is_dataclass(value) and name in ALLOWED_DATACLASSES:
            fields = [f.name for f in dataclasses.fields(value) if f.init]
            return {"$": "dataclass", "type": name,
                    "fields": [[f, self.encode(getattr(value, f))] for f in fields]}
        raise TypeError(f"the result cache cannot store a {name}")

    def _frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        columns = list(frame.columns)
        if not all(type(c) is str for c in columns) or len(set(columns)) != len(columns):
            raise TypeError("the result cache stores data frames with unique string column names only")
        object_columns = [c for c in columns if frame[c].dtype == object]
        for column in object_columns:
            if pd.api.types.infer_dtype(frame[column], skipna=True) not in ("string", "empty"):
                raise TypeError(f"column {column!r} holds objects other than strings")
        buffer = io.BytesIO()
        frame.to_parquet(buffer, engine="pyarrow")
        data = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
        return {"$": "frame", "ref": self._ref(data), "object_columns": object_columns}


def _is_dagster_metadata(value: Any) -> bool:
    if not type(value).__module__.startswith("dagster"):
        return False
    import dagster as dg

    return isinstance(value, dg.MetadataValue)


class _Decoder:
    """JSON description + arrays -> value; anything unexpected raises ``MalformedEntry``."""

    def __init__(self, arrays: Any) -> None:
        self.arrays = arrays

    def _array(self, ref: Any) -> np.ndarray:
        if not isinstance(ref, str) or not re.fullmatch(r"a\d+", ref) or ref not in self.arrays:
            raise MalformedEntry(f"missing array {ref!r}")
        return self.arrays[ref]  # npz member, loaded with allow_pickle=False

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict):
            raise MalformedEntry(f"unexpected node {type(node).__name__}")
        tag = node.get("$")
        if tag == "float":
            if node.get("v") not in ("nan", "inf", "-inf"):
                raise MalformedEntry("bad float")
            return float(node["v"])
        if tag == "tuple":
            return tuple(self.decode(v) for v in self._list(node, "items"))
        if tag == "dict":
            out = {}
            for pair in self._list(node, "items"):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise MalformedEntry("bad dict item")
                out[self.decode(pair[0])] = self.decode(pair[1])
            return out
        if tag == "ndarray":
            return self._array(node.get("ref"))
        if tag == "npscalar":
            array = self._array(node.get("ref"))
            if array.ndim != 0:
                raise MalformedEntry("scalar is not 0-d")
            return array[()]
        if tag == "objarray":
            shape = node.get("shape")
            if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
                raise MalformedEntry("bad shape")
            items = [self.decode(v) for v in self._list(node, "items")]
            if len(items) != int(np.prod(shape, dtype=np.int64)):
                raise MalformedEntry("object array size does not match its shape")
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out.reshape(shape)
        if tag == "frame":
            return self._frame(node)
        if tag == "dagster":
            import dagster as dg
            from dagster._serdes import deserialize_value

            text = node.get("json")
            if not isinstance(text, str):
                raise MalformedEntry("bad dagster value")
            # Dagster's serdes only constructs classes registered in its whitelist (unknown ones raise
            # DeserializationError), and ``as_type`` refuses anything but a metadata value.
            return deserialize_value(text, as_type=dg.MetadataValue)
        if tag == "dataclass":
            return self._dataclass(node)
        raise MalformedEntry(f"unknown tag {tag!r}")

    @staticmethod
    def _list(node: dict, key: str) -> list:
        items = node.get(key)
        if not isinstance(items, list):
            raise MalformedEntry(f"{key} is not a list")
        return items

    def _frame(self, node: dict) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self._array(node.get("ref"))
        object_columns = self._list(node, "object_columns")
        if data.dtype != np.uint8 or data.ndim != 1:
            raise MalformedEntry("frame bytes are not uint8")
        frame = pq.read_table(pa.BufferReader(data.tobytes())).to_pandas()
        for column in object_columns:  # pandas reads string columns back as ``str``; restore ``object``
            if not isinstance(column, str) or column not in frame.columns:
                raise MalformedEntry(f"unknown column {column!r}")
            frame[column] = frame[column].astype(object)
        return frame

    def _dataclass(self, node: dict) -> Any:
        name = node.get("type")
        if name not in ALLOWED_DATACLASSES:
            raise MalformedEntry(f"type {name!r} is not allowed")
        module, qualname = ALLOWED_DATACLASSES[name]
        cls = getattr(importlib.import_module(module), qualname)
        expected = [f.name for f in dataclasses.fields(cls) if f.init]
        pairs = self._list(node, "fields")
        if [p[0] if isinstance(p, list) and len(p) == 2 else None for p in pairs] != expected:
            raise MalformedEntry(f"fields of {name} do not match {expected}")
        return cls(**{field: self.decode(value) for field, value in pairs})


def write_entry(fh: Any, value: Any) -> None:
    """Write ``value`` to binary file ``fh`` in the entry format (``TypeError`` if it cannot)."""
    encoder = _Encoder()
    description = encoder.encode(value)
    text = json.dumps({"format": FORMAT, "value": description}, allow_nan=False, separators=(",", ":"))
    members = {"entry": np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **encoder.arrays}
    np.savez(fh, **members)


def read_entry(path: str | Path) -> Any:
    """The value stored at ``path``; ``MalformedEntry`` (or an ``OSError``) if it is not a valid entry.

    Nothing in the file is executed: ``np.load(allow_pickle=False)`` refuses pickled data, the
    description is JSON, and only the types listed in this module's docstring are rebuilt.
    """
    with np.load(path, allow_pickle=False) as data:
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise MalformedEntry("not an npz archive")
        info = data.zip.getinfo("entry.npy") if "entry" in data.files else None
        if info is None or info.file_size > _MAX_DESCRIPTION_BYTES:
            raise MalformedEntry("no entry description")
        raw = data["entry"]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise MalformedEntry("entry description is not uint8 bytes")
        head = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(head, dict) or head.get("format") != FORMAT or "value" not in head:
            raise MalformedEntry("unknown entry format")
        return _Decoder(data).decode(head["value"])


# ------------------------------------------------------------------------------------- cache


class ResultCache:
    """Stage results under ``root``: one ``.npz`` entry per (stage, key), least recently used pruned.

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
        """``<root>/<stage>/<key>.npz`` (stage and key: letters, digits, ``_ . -``; no leading dot)."""
        for part in (stage, key):
            if not isinstance(part, str) or not _SAFE_NAME.fullmatch(part) or ".." in part:
                raise ValueError(f"invalid cache stage or key {part!r}")
        return self.root / stage / f"{key}{SUFFIX}"

    def get(self, stage: str, key: str) -> Any | None:
        """The stored value, or None on a miss. An entry that is unreadable, malformed or holds a type
        outside the allowed ones is a miss and is removed (the caller recomputes and replaces it)."""
        path = self.path_for(stage, key)
        try:
            value = read_entry(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, recompute
            log.warning("result cache: ignoring unreadable entry %s (%s: %s)", path, type(exc).__name__,
                        str(exc)[:200])
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            return None
        try:
            os.utime(path)  # most recently used
        except OSError:
            pass
        return value

    def put(self, stage: str, key: str, value: Any) -> bool:
        """Store ``value`` and prune the stage to ``max_entries``.

        Returns False, storing nothing, when ``value`` holds a type the cache cannot store or the
        folder cannot be written (both logged); a failed write never raises ``OSError``.
        """
        path = self.path_for(stage, key)
        buffer = io.BytesIO()
        try:
            write_entry(buffer, value)
        except Exception as exc:  # noqa: BLE001 - an unstorable value is simply not cached
            log.warning("result cache: not storing %s/%s (%s: %s)", stage, key[:12], type(exc).__name__, exc)
            return False
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(buffer.getbuffer())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            log.warning("result cache: cannot write %s (%s: %s)", path, type(exc).__name__, exc)
            return False
        finally:
            if tmp is not None:
                try:
                    Path(tmp).unlink(missing_ok=True)
                except OSError:
                    pass
        self._prune(path.parent)
        return True

    def _prune(self, folder: Path) -> None:
        """Keep the ``max_entries`` most recent entries; drop pickles of earlier versions of this cache
        (never read) and temporary files a crashed writer left over an hour ago."""
        entries = []
        now = time.time()
        try:
            listing = list(folder.iterdir())
        except OSError:
            return
        for entry in listing:
            try:
                if entry.suffix == SUFFIX and not entry.name.startswith("."):
                    entries.append((entry.stat().st_mtime, entry))
                elif entry.suffix == ".pkl" or (
                    entry.name.startswith(".") and entry.suffix == ".tmp"
                    and now - entry.stat().st_mtime > _STALE_TMP_SECONDS
                ):
                    entry.unlink(missing_ok=True)
            except OSError:  # removed by a concurrent prune, or not ours to remove
                continue
        entries.sort(reverse=True)
        for _, stale in entries[self.max_entries:]:
            try:
                stale.unlink(missing_ok=True)
            except OSError:
                pass


def cached(cache: ResultCache | None, stage: str, key: str, compute: Callable[[], T]) -> tuple[T, bool]:
    """``(value, hit)``: the stored value for (stage, key), else ``compute()`` stored and returned.

    ``cache=None`` always computes (``hit`` False). A cache that cannot be read or written behaves
    as empty.
    """
    if cache is not None:
        value = cache.get(stage, key)
        if value is not None:
            return value, True
    value = compute()
    if cache is not None:
        cache.put(stage, key, value)
    return value, False
