"""Rebuild the bundled demo datasets in data/ from ../shared/data (deterministic).

Run from the repository root:  .venv/bin/python data/make_demo_data.py [--shared ../shared/data]
Each demo folder keeps the upstream SOURCE.md (origin and licence) next to a dataset.yaml.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def _write(folder: Path, manifest: str, shared_src: Path, note: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.yaml").write_text(manifest)
    source_md = (shared_src / "SOURCE.md").read_text()
    (folder / "SOURCE.md").write_text(f"> Demo subset made by data/make_demo_data.py: {note}\n\n{source_md}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared" / "data"))
    shared = Path(parser.parse_args().shared)

    # Image: MIML natural scenes, photos 1..50 (all 'desert'; they include the near-duplicate pairs 37/41
    # and 39/43) plus 350 photos drawn at random (seed 7) from the other 1,950, which cover every tag.
    src = shared / "miml_natural_scenes"
    dst = HERE / "miml_scenes"
    every = pd.read_csv(src / "labels.csv", keep_default_na=False)
    labels = pd.concat([every.iloc[:50], every.iloc[50:].sample(n=350, random_state=7)])
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for rel in labels["image"]:
        shutil.copyfile(src / rel, dst / rel)
    labels.to_csv(dst / "labels.csv", index=False)
    _write(dst, """modality: image
source: labels.csv
labels:
  column: labels
  separator: "|"
  classes: [desert, mountains, sea, sunset, trees]
id_column: image
image_column: image
""", src, "400 photos: images/1.jpg .. images/50.jpg plus 350 drawn at random "
         "(seed 7) from the rest, with their labels")

    # Text: GoEmotions, 1,200 random train comments + 20 duplicated texts with conflicting labels.
    src = shared / "goemotions"
    frame = pd.read_csv(src / "goemotions.csv", keep_default_na=False)
    train = frame[frame["split"] == "train"]
    sample = train.sample(n=1200, random_state=7)
    counts = frame.groupby("text")["labels"].nunique()
    conflicting = counts[counts > 1].index[:20]
    dups = frame[frame["text"].isin(conflicting)]
    out = pd.concat([sample, dups]).drop_duplicates("id").sort_values("id")
    dst = HERE / "goemotions_sample"
    dst.mkdir(parents=True, exist_ok=True)
    out.to_csv(dst / "comments.csv", index=False)
    _write(dst, """modality: text
source: comments.csv
labels:
  column: labels
  separator: "|"
id_column: id
text_column: text
""", src, f"{len(out)} comments: 1,200 random train rows (seed 7) plus every row of 20 texts "
         "that occur more than once with conflicting label sets")

    # Tabular: MULAN emotions (all 593 rows, 72 numeric features) and flags (194 rows, mixed types).
    extra = {"mulan_flags": "categorical_columns: [landmass, zone, language, religion]\n"}
    for name, file in [("mulan_emotions", "emotions.csv"), ("mulan_flags", "flags.csv")]:
        src = shared / name
        dst = HERE / name
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / file, dst / file)
        _write(dst, f"""modality: tabular
source: {file}
labels:
  column: labels
  separator: "|"
""" + extra.get(name, ""), src, "the full dataset, unchanged")
    print("demo datasets written under", HERE)


if __name__ == "__main__":
    main()
