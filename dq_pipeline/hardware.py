"""What this CPU does fast, and the numeric precision the models run in.

``native_bf16`` decides two things: the exact cosine search's bfloat16 candidates
(:mod:`dq_pipeline.neighbours`) and, where the ``embedding_precision`` setting is ``"auto"``, whether the
embedding models run under bfloat16 autocast (:mod:`dq_pipeline.embed.text`, :mod:`dq_pipeline.embed.image`).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

#: ``embedding_precision`` values: "auto" = "bfloat16" where :func:`native_bf16`, else "float32".
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX tiles or AVX512-BF16), as torch reports it; elsewhere
    bfloat16 products are emulated and slower than float32."""
    import torch

    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # a private torch helper: absent or failing means no
            continue
    return False


def resolve_precision(precision: str) -> str:
    """``"float32"`` or ``"bfloat16"``: ``precision`` itself, or for ``"auto"`` bfloat16 where the CPU multiplies
    it natively. ValueError for anything else."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return precision


def inference_precision(precision: str) -> Any:
    """A context manager running torch CPU inference in ``precision`` (resolved first): bfloat16 = torch's CPU
    autocast (matrix products and convolutions in bfloat16, normalisations and softmax kept in float32);
    float32 = nothing changes."""
    if resolve_precision(precision) == "float32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16)
