"""Modality-specific features: text (sentence-transformers), image (EfficientNet-Lite0 or any
sentence-transformers image model), tabular (scikit-learn ColumnTransformer), and an on-disk
embedding cache keyed by content and model. Heavy libraries load lazily on first use."""

from dq_pipeline.embed.cache import EmbeddingCache, cached_embed, content_key, file_keys
from dq_pipeline.embed.image import (
    DEFAULT_IMAGE_MODEL,
    check_image,
    embed_images,
    embed_images_cached,
    image_precision,
)
from dq_pipeline.embed.tabular import build_tabular_transformer, featurize_tabular
from dq_pipeline.embed.text import (
    DEFAULT_TEXT_MODEL,
    embed_texts,
    embed_texts_cached,
    load_text_model,
)



def resolved_precision(precision: str, modality: str) -> str:
    """"float32" or "bfloat16": what ``precision`` (an ``embedding_precision`` value) means for ``modality``'s
    model on this CPU. Text: :func:`dq_pipeline.hardware.resolve_precision`; images:
    :func:`~dq_pipeline.embed.image.image_precision` ("auto" = float32); tabular features have no model
    (float32)."""
    from dq_pipeline.hardware import resolve_precision

    if modality == "image":
        return image_precision(precision)
    resolved = resolve_precision(precision)  # checks the value for every modality
    return resolved if modality == "text" else "float32"


__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_TEXT_MODEL",
    "EmbeddingCache",
    "build_tabular_transformer",
    "cached_embed",
    "check_image",
    "content_key",
    "embed_images",
    "embed_images_cached",
    "embed_texts",
    "embed_texts_cached",
    "featurize_tabular",
    "file_keys",
    "load_text_model",
    "resolved_precision",
]
