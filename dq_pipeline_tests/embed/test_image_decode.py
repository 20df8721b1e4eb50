"""Image decoding of every pixel format a dataset may hold, and of hostile files.

Each variant is made from a real bundled MIML photo (``data/miml_scenes``) in a tmp folder: the decoded
RGB must match the 8-bit original (or its greyscale) within a few levels, and its EfficientNet-Lite0
embedding must be close to the original's. Hostile files must get a quarantine reason, never a crash
or an unbounded decode.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dq_pipeline.embed.image import check_image, embed_images, open_rgb

from dq_pipeline_tests.conftest import DATA

PHOTO = DATA / "miml_scenes" / "images" / "2.jpg"  # 640 x 416 desert photo
SMALL = DATA / "miml_scenes" / "images" / "37.jpg"  # 140 x 105 thumbnail


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _decoded(path: Path) -> np.ndarray:
    array = np.asarray(open_rgb(path))
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    return array.astype(np.int16)


def _references(photo: Image.Image) -> dict[str, np.ndarray]:
    """'rgb': the photo; 'grey': its greyscale stretched over 0..255 (so 16-bit versions span 0..65535)."""
    from PIL import ImageOps

    return {"rgb": np.asarray(photo), "grey": np.asarray(ImageOps.autocontrast(photo.convert("L")))}


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """name -> (file, reference): the photo in each format, and which 8-bit image it should decode to
    (see ``_references``)."""
    folder = tmp_path_factory.mktemp("variants")
    photo = Image.open(PHOTO).convert("RGB")
    grey = _references(photo)["grey"]
    rng = np.random.default_rng(0)
    out: dict[str, tuple[Path, str]] = {}

    def save(name: str, im: Image.Image, reference: str, **kw) -> None:
        path = folder / name
        im.save(path, **kw)
        out[name] = (path, reference)

    photo.save(folder / "reference.png")
    Image.fromarray(grey).save(folder / "grey.png")
    # 16-bit greyscale over the whole 0..65535 range: the 8-bit value * 257 plus sub-level noise
    g16 = (grey.astype(np.uint32) * 257 + rng.integers(-128, 129, grey.shape)).clip(0, 65535).astype(np.uint16)
    assert g16.max() > 65000 and g16.min() < 600
    save("grey16.png", Image.fromarray(g16), "grey")
    save("grey16.tif", Image.fromarray(g16), "grey")
    save("grey16.pgm", Image.fromarray(g16), "grey")  # Pillow opens 16-bit PGM as mode I
    save("grey32.tif", Image.fromarray(g16.astype(np.int32), "I"), "grey")
    save("float.tif", Image.fromarray((grey / 255.0).astype(np.float32), "F"), "grey")
    save("grey8.jpg", Image.fromarray(grey), "grey", quality=95)
    save("palette.png", photo.quantize(256), "rgb")
    save("palette.gif", photo.quantize(256), "rgb")
    opaque = photo.copy()
    opaque.putalpha(255)
    save("rgba.png", opaque, "rgb")
    save("la.png", Image.fromarray(grey).convert("LA"), "grey")
    save("cmyk.jpg", photo.convert("CMYK"), "rgb", quality=95)
    save("cmyk.tif", photo.convert("CMYK"), "rgb")
    save("rgb.webp", photo, "rgb", quality=95)
    # stored rotated a quarter turn, with the EXIF orientation (6) that turns it upright
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif_rotated.jpg", photo.transpose(Image.Transpose.ROTATE_90), "rgb", quality=95, exif=exif.tobytes())
    return out


@pytest.mark.parametrize("name", ["grey16.png", "grey16.tif", "grey16.pgm", "grey32.tif", "float.tif", "grey8.jpg",
                                  "palette.png", "palette.gif", "rgba.png", "la.png", "cmyk.jpg", "cmyk.tif",
                                  "rgb.webp", "exif_rotated.jpg"])
def test_each_format_decodes_to_the_8bit_picture(variants: dict, name: str) -> None:
    path, reference = variants[name]
    expected = _references(Image.open(PHOTO).convert("RGB"))[reference].astype(np.int16)
    if expected.ndim == 2:
        expected = np.repeat(expected[..., None], 3, axis=2)
    assert check_image(path) is None
    decoded = _decoded(path)
    assert decoded.shape == expected.shape  # EXIF orientation applied: upright again
    assert decoded.std() > 20 and decoded.mean() < 200  # not the uniform white of a clipped 16-bit image
    lossy = name.endswith((".jpg", ".webp")) or name.startswith("palette")
    assert np.abs(decoded - expected).mean() < (4.0 if lossy else 0.6), name


def test_plain_conversion_would_have_clipped_16_bit_to_white(variants: dict) -> None:
    """The bug being fixed: Pillow's convert('RGB') clips I;16 values to 255."""
    path, _ = variants["grey16.png"]
    with Image.open(path) as im:
        assert im.mode == "I;16"
        assert np.asarray(im.convert("RGB")).mean() > 240
    assert _decoded(path).mean() < 200


def test_embeddings_of_each_format_match_the_original(variants: dict, tmp_path: Path) -> None:
    names = ["grey16.png", "grey32.tif", "palette.png", "rgba.png", "la.png", "cmyk.jpg", "exif_rotated.jpg"]
    folder = variants["grey16.png"][0].parent
    refs = {"rgb": folder / "reference.png", "grey": folder / "grey.png"}
    E = embed_images([variants[n][0] for n in names] + [refs["rgb"], refs["grey"]])
    ref_vec = {"rgb": E[-2], "grey": E[-1]}
    for name, vector in zip(names, E):
        assert _cosine(vector, ref_vec[variants[name][1]]) > 0.95, name
    # the greyscale versions are recognisably the same photo, not an outlier
    assert _cosine(E[0], ref_vec["rgb"]) > 0.8


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    photo = Image.open(SMALL).convert("RGB")
    w, h = photo.size
    rgba = photo.copy()
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 2] = 0  # left half fully transparent ...
    pixels = np.asarray(rgba).copy()
    pixels[:, : w // 2] = 0  # ... over black pixels that must not show
    rgba = Image.fromarray(np.dstack([pixels, alpha]), "RGBA")
    rgba.save(tmp_path / "half.png")
    decoded = _decoded(tmp_path / "half.png")
    assert (decoded[:, : w // 2] == 255).all()
    np.testing.assert_array_equal(decoded[:, w // 2 :], np.asarray(photo)[:, w // 2 :])
    # palette with a transparent index, and a half-transparent pixel blend
    pal = photo.quantize(16)
    index = np.asarray(pal)[0, 0]
    pal.save(tmp_path / "pal_t.png", transparency=int(index))
    decoded = _decoded(tmp_path / "pal_t.png")
    assert (decoded[np.asarray(pal) == index] == 255).all()
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    half.save(tmp_path / "half_black.png")
    assert np.abs(_decoded(tmp_path / "half_black.png") - 127).max() <= 1


def test_one_bit_and_sixteen_bit_with_colour_key(tmp_path: Path) -> None:
    photo = Image.open(SMALL).convert("L")
    photo.convert("1").save(tmp_path / "bw.png")
    bw = _decoded(tmp_path / "bw.png")
    assert set(np.unique(bw)) <= {0, 255} and 0.2 < (bw == 255).mean() < 0.8
    g16 = np.asarray(photo).astype(np.uint16) * 257
    g16[0, :] = 0
    Image.fromarray(g16).save(tmp_path / "key16.png", transparency=0)  # colour key: 16-bit value 0
    decoded = _decoded(tmp_path / "key16.png")
    assert (decoded[0] == 255).all()
    np.testing.assert_array_equal(decoded[1:, :, 0][g16[1:] > 0], np.asarray(photo)[1:][g16[1:] > 0])


# ---------------------------------------------------------------------------------- hostile files


def _png(width: int, height: int, data: bytes = b"\0" * 64) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


@pytest.fixture()
def hostile(tmp_path: Path) -> dict[str, Path]:
    jpeg = SMALL.read_bytes()
    png = (tmp_path / "ok.png")
    Image.open(SMALL).save(png)
    files = {name: tmp_path / name for name in [
        "empty.jpg", "text.jpg", "bomb_10gpx.png", "bomb_144mpx_header.png", "bomb_144mpx_real.png",
        "truncated.jpg", "truncated.png", "bad_crc.png", "folder.jpg", "html.png", "garbage_exif.jpg"]}
    files["empty.jpg"].write_bytes(b"")
    files["text.jpg"].write_text("this is a text file, not a photo\n")
    files["bomb_10gpx.png"].write_bytes(_png(100_000, 100_000))
    files["bomb_144mpx_header.png"].write_bytes(_png(12_000, 12_000))  # over MAX_IMAGE_PIXELS, under 2x
    rows = zlib.compress(b"\0" * (12_001 * 12_000), 9)  # a real one: 140 kB that inflate to 144 MB
    files["bomb_144mpx_real.png"].write_bytes(_png(12_000, 12_000)[:33] + struct.pack(">I", len(rows)) + b"IDAT"
                                              + rows + struct.pack(">I", zlib.crc32(b"IDAT" + rows) & 0xFFFFFFFF)
                                              + _png(1, 1)[-12:])
    files["truncated.jpg"].write_bytes(jpeg[: len(jpeg) // 2])
    files["truncated.png"].write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    broken = bytearray(png.read_bytes())
    broken[29] ^= 0xFF  # inside IHDR: CRC mismatch
    files["bad_crc.png"].write_bytes(bytes(broken))
    files["folder.jpg"].mkdir()
    files["html.png"].write_text("<html><body>404 Not Found</body></html>")
    Image.open(SMALL).save(files["garbage_exif.jpg"], exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff junk")
    return files


EXPECTED_REASON = {
    "empty.jpg": "not an image file",
    "text.jpg": "not an image file",
    "html.png": "not an image file",
    "folder.jpg": "not an image file",
    "bomb_10gpx.png": "unreadable image: {} (DecompressionBombError",
    "bomb_144mpx_header.png": "unreadable image: {} (DecompressionBombWarning",
    "bomb_144mpx_real.png": "unreadable image: {} (DecompressionBombWarning",
    "truncated.jpg": "truncated image",
    "truncated.png": "truncated image",
    "bad_crc.png": "not an image file",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_REASON))
def test_hostile_image_gets_a_quarantine_reason(hostile: dict[str, Path], name: str) -> None:
    import resource

    path = hostile[name]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reason = check_image(path)
    expected = EXPECTED_REASON[name]
    expected = expected.format(path) if "{}" in expected else f"{expected}: {path}"
    assert reason is not None and reason.startswith(expected), reason
    with pytest.raises(ValueError, match="image"):
        open_rgb(path)
    # refused before decoding: no 144-megapixel buffer was allocated (KiB on Linux)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000


def test_garbage_exif_keeps_the_pixels(hostile: dict[str, Path]) -> None:
    path = hostile["garbage_exif.jpg"]
    assert check_image(path) is None
    assert np.abs(_decoded(path) - np.asarray(Image.open(SMALL).convert("RGB")).astype(np.int16)).mean() < 4


def test_animated_gif_is_its_first_frame(tmp_path: Path) -> None:
    photo = Image.open(SMALL).convert("RGB")
    frames = [photo.quantize(64), photo.rotate(180).quantize(64)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(tmp_path / "anim.gif") as im:
        assert im.n_frames == 2
        first = np.asarray(im.convert("RGB")).astype(np.int16)
    assert check_image(tmp_path / "anim.gif") is None
    np.testing.assert_array_equal(_decoded(tmp_path / "anim.gif"), first)


def test_embedding_a_hostile_file_names_it(hostile: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="not an image file: .*text.jpg"):
        embed_images([SMALL, hostile["text.jpg"]])
