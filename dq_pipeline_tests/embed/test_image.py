"""Image checks and embeddings on real MIML photos (bundled data/miml_scenes; EfficientNet-Lite0) and a
tiny local CLIP."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
from pathlib import Path

import numpy as np
import pytest

from dq_pipeline.embed.image import DEFAULT_IMAGE_MODEL, check_image, embed_images
from dq_pipeline_tests.conftest import DATA

IMAGES = DATA / "miml_scenes" / "images"


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_efficientnet_features_are_1280d_and_find_the_near_duplicate() -> None:
    # 37/41: the same desert photo re-encoded; 1185: a sea photo; 1: another desert photo
    paths = [IMAGES / "37.jpg", IMAGES / "41.jpg", IMAGES / "1185.jpg", IMAGES / "1.jpg"]
    calls: list[tuple[int, int]] = []
    features = embed_images(paths, batch_size=3, progress=lambda d, t: calls.append((d, t)))
    assert features.shape == (4, 1280)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert (features >= 0).all() and features.std() > 0  # pooled ReLU6 activations, not logits
    duplicate = _cosine(features[0], features[1])
    unrelated = _cosine(features[0], features[2])
    assert duplicate > 0.95
    assert duplicate > unrelated + 0.2
    assert calls[-1] == (4, 4)


def test_bfloat16_runs_on_request_and_auto_stays_float32() -> None:
    paths = [IMAGES / "37.jpg", IMAGES / "41.jpg", IMAGES / "1185.jpg", IMAGES / "1.jpg"]
    full = embed_images(paths)
    np.testing.assert_array_equal(embed_images(paths, precision="auto"), full)  # images: "auto" is float32
    low = embed_images(paths, precision="bfloat16")
    assert low.dtype == np.float32 and not np.array_equal(low, full)
    assert min(_cosine(a, b) for a, b in zip(full, low)) > 0.99
    assert _cosine(low[0], low[1]) > 0.95  # the re-encoded photo is still its near duplicate
    with pytest.raises(ValueError, match="precision must be one of"):
        embed_images(paths[:1], precision="half")


def test_batching_does_not_change_features() -> None:
    paths = [IMAGES / f"{i}.jpg" for i in (2, 805, 1600)]  # desert 640x416, sea 80x135, sea|sunset 128x87
    together = embed_images(paths, batch_size=3)
    alone = np.concatenate([embed_images([p]) for p in paths])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)


def test_empty_input() -> None:
    assert embed_images([]).shape == (0, 1280)


@pytest.fixture()
def bad_files(tmp_path: Path) -> dict[str, Path]:
    jpeg = (IMAGES / "37.jpg").read_bytes()
    files = {
        "missing": tmp_path / "missing.jpg",
        "text": tmp_path / "notes.jpg",
        "truncated": tmp_path / "half.jpg",
        "empty": tmp_path / "empty.jpg",
    }
    files["text"].write_text("this is a text file, not a photo\n")
    files["truncated"].write_bytes(jpeg[: len(jpeg) // 2])
    files["empty"].write_bytes(b"")
    return files


def test_check_image_accepts_real_photos() -> None:
    assert check_image(IMAGES / "37.jpg") is None
    assert check_image(str(IMAGES / "922.jpg")) is None


def test_check_image_names_each_failure(bad_files: dict[str, Path]) -> None:
    assert check_image(bad_files["missing"]) == f"image file not found: {bad_files['missing']}"
    assert check_image(bad_files["text"]) == f"not an image file: {bad_files['text']}"
    assert check_image(bad_files["truncated"]) == f"truncated image: {bad_files['truncated']}"
    assert check_image(bad_files["empty"]) == f"not an image file: {bad_files['empty']}"


def test_check_image_ignores_global_truncated_tolerance(bad_files: dict[str, Path]) -> None:
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        assert check_image(bad_files["truncated"]) == f"truncated image: {bad_files['truncated']}"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_embed_images_refuses_a_broken_file_with_the_reason(bad_files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="truncated image"):
        embed_images([IMAGES / "37.jpg", bad_files["truncated"]], model_name=DEFAULT_IMAGE_MODEL)


def _tiny_clip(tmp_path: Path) -> Path:
    """A random-weight CLIP saved as a SentenceTransformer folder (built offline)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Transformer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        projection_dim=8,
    )
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    )
    hf_dir = tmp_path / "hf_clip"
    CLIPModel(config).save_pretrained(hf_dir)
    processor.save_pretrained(hf_dir)
    st_dir = tmp_path / "st_clip"
    SentenceTransformer(modules=[Transformer(str(hf_dir))], device="cpu").save(str(st_dir))
    return st_dir


def test_sentence_transformers_image_model_by_local_path(tmp_path: Path) -> None:
    model_dir = _tiny_clip(tmp_path)
    paths = [IMAGES / "37.jpg", IMAGES / "41.jpg", IMAGES / "1185.jpg"]
    features = embed_images(paths, model_name=str(model_dir), batch_size=2)
    assert features.shape == (3, 8)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert not np.allclose(features[0], features[2])
    assert embed_images([], model_name=str(model_dir)).shape == (0, 8)


def test_features_are_the_pooled_input_of_the_classifier() -> None:
    import torch

    from dq_pipeline.embed.image import load_efficientnet_lite, preprocess_batch

    model = load_efficientnet_lite()
    assert model is load_efficientnet_lite(DEFAULT_IMAGE_MODEL)
    assert not model.training
    paths = [IMAGES / "1185.jpg", IMAGES / "1.jpg"]
    features = embed_images(paths)
    with torch.inference_mode():
        logits = model(preprocess_batch(paths)).numpy()
        from_features = model._fc(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(from_features, logits, rtol=1e-4, atol=1e-4)
