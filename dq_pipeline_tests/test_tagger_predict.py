"""The ``tagger`` asset through Dagster and ``dq-pipeline predict`` on held-out rows of each modality."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from dq_pipeline import cli
from dq_pipeline import tagger as tg
from dq_pipeline_tests.conftest import DATA, write_dataset


def train(folder: Path, db: str) -> dict:
    """Run the train_tagger job (audit + tagger) on ``folder``; the tagger's materialization metadata."""
    from dq_pipeline.definitions import build_definitions
    from dq_pipeline.defs.partitions import dataset_partitions

    defs = build_definitions(data_dir=str(folder.parent), db_path=db, in_memory=True)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, [folder.name])
    result = defs.resolve_job_def("train_tagger").execute_in_process(partition_key=folder.name, instance=instance)
    assert result.success
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "tagger"]
    assert event.partition == folder.name
    meta = {k: getattr(v, "value", v) for k, v in event.step_materialization_data.materialization.metadata.items()}
    assert meta["audit_run_id"] == result.run_id
    return meta


def train_core(folder: Path, db: str) -> dict:
    """What the tagger asset does, without Dagster (for text and images, whose audit would take longer):
    ingest, embed as the features asset does, train on the given tags, save. The model card."""
    from dq_pipeline.defs.resources import AuditSettings
    from dq_pipeline.embed.cache import EmbeddingCache
    from dq_pipeline.embed.image import embed_images_cached
    from dq_pipeline.embed.text import embed_texts_cached
    from dq_pipeline.ingest import load_examples, tags_matrix
    from dq_pipeline.manifest import load_manifest

    manifest = load_manifest(folder)
    result = load_examples(manifest)
    ex = result.examples
    cache = EmbeddingCache(Path(os.environ["DQ_CACHE_DIR"]) / "embeddings")
    precision = AuditSettings().embedding_precision
    if manifest.modality == "text":
        X = embed_texts_cached(list(ex["text"]), "all-MiniLM-L6-v2", cache, precision=precision)
    else:
        X = embed_images_cached(list(ex["image_path"]), "efficientnet-lite0", cache, precision=precision)
    trained = tg.train_tagger(X, tags_matrix(ex["tags"], result.classes), result.classes, model="fast_logreg")
    trained.card.update(tg.dataset_card(manifest, ex, "all-MiniLM-L6-v2", "efficientnet-lite0", precision))
    model_dir = tg.save_tagger(trained, tg.models_root(db), manifest.name, "run-core")
    return {**trained.card, "path": str(model_dir)}


def predict(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["predict", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def check_output(out: pd.DataFrame, card: dict, n: int) -> np.ndarray:
    """Every row tagged: probabilities in [0, 1], labels = tags at or above the card's thresholds."""
    classes = card["classes"]
    P = out[[f"prob_{c}" for c in classes]].to_numpy(float)
    assert P.shape == (n, len(classes)) and ((P >= 0) & (P <= 1)).all()
    thresholds = np.array([card["thresholds"][c] for c in classes])
    expected = [[c for c, hit in zip(classes, row) if hit] for row in P >= thresholds - 1e-6]
    got = [v if isinstance(v, list) else ([] if pd.isna(v) or v == "" else v.split("|")) for v in out["predicted_labels"]]
    assert got == expected
    return P


FLAGS_MANIFEST = (DATA / "mulan_flags" / "dataset.yaml").read_text()


def test_tabular_tagger_asset_and_predict_round_trip(tmp_path: Path, db_path: str, capsys):
    frame = pd.read_csv(DATA / "mulan_flags" / "flags.csv", keep_default_na=False)
    folder = write_dataset(tmp_path / "data" / "flags", frame.iloc[:160], FLAGS_MANIFEST, "flags.csv")
    meta = train(folder, db_path)
    model_dir = Path(meta["path"])
    assert model_dir.parent == Path(f"{db_path}.models").resolve() / "flags"
    assert (model_dir.parent / tg.LATEST_NAME).read_text().strip() == model_dir.name == meta["audit_run_id"]
    assert 0 < meta["oof_micro_f1"] <= 1 and 0 < meta["oof_macro_f1"] <= 1 and meta["n_train"] == 160
    assert "| red" in meta["thresholds"] and meta["threshold_rule"] == "max_f1"
    card = json.loads((model_dir / tg.CARD_NAME).read_text())
    assert card["modality"] == "tabular" and card["dataset"] == "flags" and card["run_id"] == meta["audit_run_id"]
    assert card["training"]["audit_run_id"] == meta["audit_run_id"] and card["training"]["n_examples"] == 160
    assert card["embedder"]["name"] == "ColumnTransformer" and card["tabular"]["blocks"]
    assert set(card["input"]["feature_columns"]) == set(frame.columns) - {"labels"}
    assert card["classes"] == sorted({t for s in frame["labels"].iloc[:160] for t in s.split("|")})

    held = frame.iloc[160:].drop(columns="labels").reset_index(drop=True)
    held.insert(0, "flag_name", [f"flag{i}" for i in range(len(held))])  # not a feature: passed through
    held.to_csv(tmp_path / "new.csv", index=False)
    code, _, err = predict(capsys, "flags", str(tmp_path / "new.csv"), "--out", str(tmp_path / "out.csv"),
                           "--db", db_path)
    assert code == 0, err
    assert f"tagged {len(held)} of {len(held)} rows" in err
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    raw = pd.read_csv(tmp_path / "new.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(out[list(raw.columns)], raw)  # the input's cells pass through unchanged
    assert list(out.columns) == list(raw.columns) + ["predicted_labels"] + [f"prob_{c}" for c in card["classes"]]
    P = check_output(out, card, len(held))

    # reloading the artifact gives the same probabilities as the features the audit would compute
    loaded = tg.load_tagger(model_dir)
    X = tg.tabular_features(card["tabular"], held)
    np.testing.assert_allclose(loaded.predict_proba(X), P, atol=1e-6)

    # JSONL in -> JSONL out, same tags
    held.to_json(tmp_path / "new.jsonl", orient="records", lines=True)
    code, _, err = predict(capsys, "flags", str(tmp_path / "new.jsonl"), "--out", str(tmp_path / "out.jsonl"),
                           "--db", db_path)
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["flag_name"] for r in records] == list(held["flag_name"])
    assert all(isinstance(r["predicted_labels"], list) for r in records)
    np.testing.assert_allclose(check_output(pd.DataFrame(records), card, len(held)), P, atol=1e-6)

    # a row whose numeric feature is not a number is kept, untagged, with the reason
    held["area"] = held["area"].astype(object)
    held.loc[2, "area"] = "big"
    held.to_csv(tmp_path / "bad.csv", index=False)
    code, stdout, err = predict(capsys, "flags", str(tmp_path / "bad.csv"), "--db", db_path)
    assert code == 0 and "1 could not be tagged" in err
    out = pd.read_csv(io.StringIO(stdout), keep_default_na=False)
    assert "column 'area' = 'big' is not a finite number" in out.loc[2, "predict_problem"]
    assert out.loc[2, "predicted_labels"] == "" and out.loc[3, "predict_problem"] == ""

    # wrong columns: the file, the column and what the model card expects are named
    pd.read_csv(DATA / "mulan_emotions" / "emotions.csv").head(5).to_csv(tmp_path / "emotions.csv", index=False)
    code, _, err = predict(capsys, "flags", str(tmp_path / "emotions.csv"), "--db", db_path)
    assert code == 2
    assert f"error: {tmp_path / 'emotions.csv'}: no column 'area'" in err or "no column 'landmass'" in err
    assert "feature columns" in err and "model_card.json" in err and "tabular" in err
    # wrong modality: a folder of images for a tabular tagger
    code, _, err = predict(capsys, "flags", str(DATA / "miml_scenes" / "images"), "--db", db_path)
    assert code == 2 and "is a folder (of images?), but the tagger of 'flags' tags tabular rows" in err


def test_missing_tagger_says_how_to_build_it_and_train_builds_it(tmp_path: Path, db_path: str, capsys):
    frame = pd.read_csv(DATA / "mulan_flags" / "flags.csv", keep_default_na=False)
    write_dataset(tmp_path / "data" / "flags", frame.iloc[:120], FLAGS_MANIFEST, "flags.csv")
    frame.iloc[120:130].drop(columns="labels").to_csv(tmp_path / "new.csv", index=False)
    args = ["flags", str(tmp_path / "new.csv"), "--db", db_path, "--data-dir", str(tmp_path / "data")]
    code, _, err = predict(capsys, *args)
    assert code == 2
    assert f"no tagger for dataset 'flags': {db_path}.models/flags/LATEST does not exist" in err
    assert "--train" in err and "train_tagger" in err
    code, stdout, err = predict(capsys, *args, "--train")
    assert code == 0, err
    assert "tagged 10 of 10 rows" in err and len(pd.read_csv(io.StringIO(stdout))) == 10
    first = tg.load_tagger(tg.latest_folder(f"{db_path}.models", "flags")).card
    assert first["n_train"] == 120 and first["training"]["n_excluded"] == 0

    # review decisions reach the tagger: an excluded example is left out, a 'set' one trains with its new tags
    from dq_pipeline.review import import_reviews

    reviews = tmp_path / "reviews.csv"
    pd.DataFrame({"dataset": ["flags", "flags"], "example_id": ["0", "1"], "action": ["exclude", "set"],
                  "labels": ["", "black"], "reviewer": ["t", "t"]}).to_csv(reviews, index=False)
    assert import_reviews(db_path, reviews) == 2
    code, _, err = predict(capsys, *args, "--train")
    assert code == 0, err
    card = tg.load_tagger(tg.latest_folder(f"{db_path}.models", "flags")).card
    assert card["run_id"] != first["run_id"] and card["n_train"] == 119
    assert card["training"]["n_excluded"] == 1 and card["training"]["audit_run_id"] == card["run_id"]
    assert card["training"]["n_labels_changed"] >= 1  # example 1 now carries only 'black'
    positives = {t["tag"]: t["n_positive"] for t in card["metrics"]["per_tag"]}
    before = {t["tag"]: t["n_positive"] for t in first["metrics"]["per_tag"]}
    assert positives != before
    code, _, err = predict(capsys, "flags", str(tmp_path / "nope.csv"), "--db", db_path)
    assert code == 2 and "nope.csv: no such file" in err


def test_text_predict_round_trip_and_mismatches(text_dataset: Path, tmp_path: Path, db_path: str, capsys):
    meta = train_core(text_dataset, db_path)
    card = json.loads((Path(meta["path"]) / tg.CARD_NAME).read_text())
    assert card["modality"] == "text" and card["input"]["text_column"] == "text"
    assert card["embedder"]["name"] == "all-MiniLM-L6-v2" and "prep:" in card["embedder"]["identity"]
    from dq_pipeline.embed import resolved_precision

    precision = card["embedder"]["precision"]  # new inputs are embedded as the training rows were
    assert precision == resolved_precision("auto", "text")  # the audit's default embedding_precision
    assert card["embedder"]["identity"].endswith("|bfloat16") == (precision == "bfloat16")
    held = pd.read_csv(DATA / "goemotions_sample" / "comments.csv", keep_default_na=False).iloc[300:330]
    held = held.drop(columns="labels").reset_index(drop=True)
    held.to_json(tmp_path / "new.jsonl", orient="records", lines=True)
    code, stdout, err = predict(capsys, "goemo_small", str(tmp_path / "new.jsonl"), "--db", db_path)
    assert code == 0, err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["id"] for r in records] == list(held["id"]) and [r["text"] for r in records] == list(held["text"])
    P = check_output(pd.DataFrame(records), card, len(held))
    # reloading the artifact and embedding the same texts gives the same probabilities (through the embedding
    # cache, as the command did: in bfloat16 a text's vector moves slightly with its batch-mates, and texts that
    # earlier tests embedded come from the cache)
    from dq_pipeline.embed.cache import EmbeddingCache
    from dq_pipeline.embed.text import embed_texts_cached

    loaded = tg.load_tagger(Path(meta["path"]))
    cache = EmbeddingCache(Path(os.environ["DQ_CACHE_DIR"]) / "embeddings")
    X = embed_texts_cached(list(held["text"]), cache=cache, precision=precision)
    np.testing.assert_allclose(loaded.predict_proba(X), P, atol=1e-5)
    # CSV in -> CSV out
    held.to_csv(tmp_path / "new.csv", index=False)
    code, _, err = predict(capsys, "goemo_small", str(tmp_path / "new.csv"), "--out", str(tmp_path / "o.csv"),
                           "--db", db_path)
    assert code == 0, err
    np.testing.assert_allclose(check_output(pd.read_csv(tmp_path / "o.csv", keep_default_na=False), card, 30), P,
                               atol=1e-6)
    # wrong column: named with the file and the model card
    held.rename(columns={"text": "comment"}).to_csv(tmp_path / "renamed.csv", index=False)
    code, _, err = predict(capsys, "goemo_small", str(tmp_path / "renamed.csv"), "--db", db_path)
    assert code == 2
    assert f"{tmp_path / 'renamed.csv'}: no column 'text'" in err and "text rows" in err and "model_card.json" in err
    # wrong modality: tabular rows / an image folder for a text tagger
    code, _, err = predict(capsys, "goemo_small", str(DATA / "mulan_emotions" / "emotions.csv"), "--db", db_path)
    assert code == 2 and "no column 'text'" in err
    code, _, err = predict(capsys, "goemo_small", str(DATA / "miml_scenes" / "images"), "--db", db_path)
    assert code == 2 and "but the tagger of 'goemo_small' tags text rows" in err


def test_image_predict_folder_and_csv(image_dataset: Path, tmp_path: Path, db_path: str, capsys):
    meta = train_core(image_dataset, db_path)
    card = json.loads((Path(meta["path"]) / tg.CARD_NAME).read_text())
    assert card["modality"] == "image" and card["embedder"]["name"] == "efficientnet-lite0"
    assert card["classes"] == ["desert", "mountains", "sea", "sunset", "trees"]
    src = DATA / "miml_scenes"
    held = pd.read_csv(src / "labels.csv", keep_default_na=False).iloc[100:112].reset_index(drop=True)
    new = tmp_path / "new"
    (new / "sub").mkdir(parents=True)
    for i, rel in enumerate(held["image"]):  # a folder, with a sub-folder
        shutil.copyfile(src / rel, new / ("sub" if i % 2 else "") / Path(rel).name)
    code, stdout, err = predict(capsys, "miml_small", str(new), "--db", db_path)
    assert code == 0, err
    out = pd.read_csv(io.StringIO(stdout), keep_default_na=False)
    assert list(out.columns[:2]) == ["image", "predicted_labels"] and len(out) == 12
    P_folder = check_output(out, card, 12)
    # a CSV naming the images (relative to it), with one that is not an image
    listing = pd.DataFrame({"image": list(out["image"]) + ["broken.jpg"]})
    (new / "broken.jpg").write_bytes(b"not a jpeg")
    listing.to_csv(new / "list.csv", index=False)
    code, _, err = predict(capsys, "miml_small", str(new / "list.csv"), "--out", str(tmp_path / "o.csv"),
                           "--db", db_path)
    assert code == 0 and "tagged 12 of 13 rows" in err
    out2 = pd.read_csv(tmp_path / "o.csv", keep_default_na=False)
    np.testing.assert_allclose(check_output(out2.iloc[:12], card, 12), P_folder, atol=1e-6)
    assert "broken.jpg" in out2.loc[12, "predict_problem"] and out2.loc[12, "prob_sea"] == ""
    # reloading the artifact: same probabilities from the same embeddings
    from dq_pipeline.embed.image import embed_images

    loaded = tg.load_tagger(Path(meta["path"]))
    X = embed_images([new / p for p in out["image"]])
    np.testing.assert_allclose(loaded.predict_proba(X), P_folder, atol=1e-5)
    # a CSV without the image column
    pd.DataFrame({"path": ["a.jpg"]}).to_csv(tmp_path / "nocol.csv", index=False)
    code, _, err = predict(capsys, "miml_small", str(tmp_path / "nocol.csv"), "--db", db_path)
    assert code == 2 and "nocol.csv: no column 'image'" in err and "image paths" in err
