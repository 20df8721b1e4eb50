"""Hostile input for every reader: each gets a clear answer naming the file, row (and line), column and
value — a ManifestError, a quarantine row, or a failed raw-examples gate — never a crash, never silent
corruption. All data comes from the bundled datasets in ``data/``, altered in ``tmp_path``."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.cli import main
from dq_pipeline.embed.tabular import featurize_tabular
from dq_pipeline.expectations import validate_raw_examples
from dq_pipeline.ingest import MAX_ABS_VALUE, MAX_TEXT_CHARS, IngestResult, load_examples
from dq_pipeline.manifest import ManifestError, load_manifest
from dq_pipeline_tests.conftest import DATA, MIML_MANIFEST, TABULAR_MANIFEST, TEXT_MANIFEST, write_dataset

JSONL_TEXT_MANIFEST = TEXT_MANIFEST.replace("comments.csv", "data.jsonl")
FIRST = "Mean_Acc1298_Mean_Mem40_Centroid"  # first feature column of MULAN emotions


# ---- helpers ----------------------------------------------------------------------------------------

def write_bytes(folder: Path, content: bytes, manifest: str = TABULAR_MANIFEST, source: str = "data.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / source).write_bytes(content)
    (folder / "dataset.yaml").write_text(manifest)
    return folder


def ingest(folder: Path) -> IngestResult:
    result = load_examples(load_manifest(folder))
    assert result.n_input_rows == len(result.examples) + len(result.quarantine)  # nothing lost
    return result


def gate(folder: Path, result: IngestResult | None = None, n_folds: int = 5):
    manifest = load_manifest(folder)
    result = result or ingest(folder)
    return validate_raw_examples(result.examples, modality=manifest.modality, classes=result.classes,
                                 n_folds=n_folds, dataset_folder=str(manifest.folder), source=str(manifest.source))


def reasons(result: IngestResult) -> dict[int, str]:
    return dict(zip(result.quarantine["row_number"], result.quarantine["reason"]))


def manifest_error(folder: Path) -> str:
    with pytest.raises(ManifestError) as info:
        ingest(folder)
    return str(info.value)


@pytest.fixture
def emo(emotions_frame: pd.DataFrame) -> pd.DataFrame:
    """60 real MULAN emotions rows (72 numeric features, 6 tags)."""
    return emotions_frame.iloc[:60].reset_index(drop=True)


@pytest.fixture
def comments() -> pd.DataFrame:
    """40 real GoEmotions comments."""
    return pd.read_csv(DATA / "goemotions_sample" / "comments.csv", keep_default_na=False).iloc[:40]


def jsonl_lines(frame: pd.DataFrame) -> list[dict]:
    return [json.loads(line) for line in frame.to_json(orient="records", lines=True).splitlines()]


def write_jsonl(folder: Path, records: list, manifest: str) -> Path:
    body = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"
    return write_bytes(folder, body.encode(), manifest, "data.jsonl")


# ---- 1. tabular: one bad cell does not change a column's type; inf / huge values are quarantined -----

def test_one_non_numeric_cell_is_quarantined_and_the_column_stays_numeric(tmp_path: Path, emo: pd.DataFrame):
    frame = emo.astype(object)
    frame.loc[3, FIRST] = "abc"
    frame.loc[5, "Mean_Acc1298_Mean_Mem40_Rolloff"] = "1,5"  # a decimal comma
    result = ingest(write_dataset(tmp_path / "emo", frame, TABULAR_MANIFEST))
    why = reasons(result)
    assert sorted(why) == [3, 5]
    assert why[3].startswith("data.csv row 3 (line 5)") and f"column '{FIRST}'" in why[3] and "'abc'" in why[3]
    assert "is not a number" in why[3] and "59 of 60 values are numbers" in why[3]
    assert "'1,5'" in why[5] and "decimal comma" in why[5]
    assert result.quarantine["example_id"].tolist() == ["3", "5"]
    assert result.examples[FIRST].dtype == np.float64
    features = [c for c in result.examples.columns if c not in ("example_id", "row_number", "tags")]
    X = featurize_tabular(result.examples, features)
    assert X.shape == (58, 72) and np.isfinite(X).all()  # not hundreds of one-hot columns


@pytest.mark.parametrize("n_bad, numeric", [(1, True), (3, True), (4, False)])
def test_numeric_threshold_is_five_percent(tmp_path: Path, emo: pd.DataFrame, caplog, n_bad: int, numeric: bool):
    frame = emo.astype(object)
    frame.loc[list(range(n_bad)), FIRST] = "n/a?"
    result = ingest(write_dataset(tmp_path / "emo", frame, TABULAR_MANIFEST))
    if numeric:  # at most 5% of 60 cells (3) are not numbers: they are quarantined
        assert sorted(reasons(result)) == list(range(n_bad))
        assert result.examples[FIRST].dtype == np.float64
    else:  # more: the column is categorical, and the log says which cells made it so
        assert result.quarantine.empty and not pd.api.types.is_numeric_dtype(result.examples[FIRST])
        assert f"column '{FIRST}' is taken as categorical" in caplog.text and "row 0: 'n/a?'" in caplog.text


@pytest.mark.parametrize("cell, accepted", [("inf", False), ("-inf", False), ("Infinity", False),
                                            ("1e308", False), ("-1e308", False), ("1e400", False),
                                            ("1e151", False), ("1e150", True), ("-1e150", True)])
def test_infinite_and_huge_values_are_quarantined(tmp_path: Path, emo: pd.DataFrame, cell: str, accepted: bool):
    frame = emo.astype(object)
    frame.loc[7, FIRST] = cell
    result = ingest(write_dataset(tmp_path / "emo", frame, TABULAR_MANIFEST))
    if accepted:
        assert result.quarantine.empty and abs(result.examples.loc[7, FIRST]) == MAX_ABS_VALUE
        return
    why = reasons(result)[7]
    assert why.startswith("data.csv row 7 (line 9)") and f"column '{FIRST}'" in why
    assert "infinite" in why or f"larger in magnitude than {MAX_ABS_VALUE:g}" in why
    features = [c for c in result.examples.columns if c not in ("example_id", "row_number", "tags")]
    assert np.isfinite(featurize_tabular(result.examples, features)).all()


def test_parquet_infinite_and_huge_values_are_quarantined(tmp_path: Path, emo: pd.DataFrame):
    frame = emo.copy()
    frame.loc[2, FIRST] = np.inf
    frame.loc[4, FIRST] = -1e200
    folder = write_dataset(tmp_path / "emo", frame, TABULAR_MANIFEST.replace("data.csv", "data.parquet"),
                           "data.parquet")
    why = reasons(ingest(folder))
    assert sorted(why) == [2, 4]
    assert why[2].startswith("data.parquet row 2:") and "inf" in why[2]
    assert "-1e+200" in why[4] and "larger in magnitude" in why[4]


def test_jsonl_numbers_out_of_range_and_nan_literal(tmp_path: Path, emo: pd.DataFrame):
    manifest = TABULAR_MANIFEST.replace("data.csv", "data.jsonl")
    lines = emo.to_json(orient="records", lines=True).splitlines()
    lines[2] = lines[2].replace('{"' + FIRST + '":', '{"' + FIRST + '":' + "9" * 400 + ",\"x\":", 1)
    lines[3] = lines[3].replace('{"' + FIRST + '":', '{"' + FIRST + '":NaN,"y":', 1)  # NaN = missing
    lines[4] = lines[4].replace('{"' + FIRST + '":', '{"' + FIRST + '":true,"z":', 1)
    result = ingest(write_jsonl(tmp_path / "emo", lines, manifest))
    why = reasons(result)
    assert sorted(why) == [2, 4]
    assert why[2].startswith("data.jsonl row 2 (line 3)") and "overflows" in why[2]
    assert "True is not a number" in why[4]
    assert np.isnan(result.examples.set_index("row_number").loc[3, FIRST])  # imputed later, not quarantined


def test_text_columns_stay_categorical_and_number_strings_become_numbers(tmp_path: Path):
    flags = pd.read_csv(DATA / "mulan_flags" / "flags.csv", keep_default_na=False)
    flags.insert(0, "mainhue", flags["labels"].str.split("|").str[0])  # a genuine text column
    flags["area"] = flags["area"].astype(str)  # numbers stored as text (parquet keeps them as strings)
    folder = write_dataset(tmp_path / "flags", flags, TABULAR_MANIFEST.replace("data.csv", "data.parquet"),
                           "data.parquet")
    result = ingest(folder)
    assert result.quarantine.empty
    assert result.examples["area"].dtype == np.float64
    assert not pd.api.types.is_numeric_dtype(result.examples["mainhue"])


# ---- 2. labels / id column as a feature -----------------------------------------------------------

@pytest.mark.parametrize("extra, named", [
    ("feature_columns: [Mean_Acc1298_Mean_Mem40_Centroid, labels]\n", "the labels column"),
    ("id_column: song\nfeature_columns: [song, Mean_Acc1298_Mean_Mem40_Centroid]\n", "the id column"),
    ("categorical_columns: [labels]\n", "the labels column"),
])
def test_labels_or_id_column_as_feature_is_rejected(tmp_path: Path, emo: pd.DataFrame, extra: str, named: str):
    frame = emo.copy()
    frame.insert(0, "song", [f"s{i}" for i in range(len(frame))])
    folder = write_dataset(tmp_path / "emo", frame, TABULAR_MANIFEST + extra)
    with pytest.raises(ManifestError, match=re.escape(named)) as info:
        load_manifest(folder)
    assert str(folder / "dataset.yaml") in str(info.value)


# ---- 3. no row carries a tag; K = 1 stays valid -------------------------------------------------------

@pytest.mark.parametrize("classes", ["", ", classes: [happy-pleased]"])
def test_no_tag_anywhere_fails_the_raw_gate(tmp_path: Path, emo: pd.DataFrame, classes: str):
    frame = emo.copy()
    frame["labels"] = ""
    manifest = TABULAR_MANIFEST.replace("separator: \"|\"}", f"separator: \"|\"{classes}}}")
    result = gate(write_dataset(tmp_path / "emo", frame, manifest))
    assert not result.success
    assert "no example carries any tag" in result.describe()


def test_a_single_class_passes_the_raw_gate(tmp_path: Path, emo: pd.DataFrame):
    frame = emo.copy()
    frame["labels"] = np.where(frame["labels"].str.contains("happy-pleased"), "happy-pleased", "")
    result = gate(write_dataset(tmp_path / "emo", frame, TABULAR_MANIFEST))
    assert result.success, result.describe()


# ---- 4. fewer rows than folds: the gate says the minimum -------------------------------------------

def test_fewer_examples_than_folds_says_the_minimum(tmp_path: Path, emo: pd.DataFrame):
    result = gate(write_dataset(tmp_path / "emo", emo.iloc[:3], TABULAR_MANIFEST))
    text = result.describe()
    assert "3 examples, but 5-fold cross-validation needs at least 5" in text
    assert "expect_table_row_count_to_be_between" in text


# ---- 5. not UTF-8: file, row, line, column and byte -------------------------------------------------

def test_latin1_byte_in_csv_names_row_line_column_and_byte(tmp_path: Path, comments: pd.DataFrame):
    data = comments.to_csv(index=False).encode()
    row = 3
    text_start = comments.loc[row, "text"].encode()
    data = data.replace(text_start, b"Caf\xe9 " + text_start, 1)  # 'é' as latin-1
    message = manifest_error(write_bytes(tmp_path / "goemo", data, TEXT_MANIFEST, "comments.csv"))
    assert message.startswith(str(tmp_path / "goemo" / "comments.csv"))
    assert f"row {row} (line {row + 2})" in message and "column 'text'" in message
    assert "Caf\\xe9" in message and "byte 0xe9" in message and "save the file as UTF-8" in message


def test_latin1_byte_in_jsonl_names_row_and_key(tmp_path: Path, comments: pd.DataFrame):
    lines = comments.to_json(orient="records", lines=True, force_ascii=False).encode().split(b"\n")
    lines[4] = lines[4].replace(b'"text":"', b'"text":"\xe9', 1)
    message = manifest_error(write_bytes(tmp_path / "goemo", b"\n".join(lines), JSONL_TEXT_MANIFEST, "data.jsonl"))
    assert "data.jsonl: row 4 (line 5), column 'text'" in message and "byte 0xe9" in message


def test_utf16_file_is_named(tmp_path: Path, emo: pd.DataFrame):
    message = manifest_error(write_bytes(tmp_path / "emo", emo.to_csv(index=False).encode("utf-16")))
    assert "UTF-16" in message and "save it as UTF-8" in message


# ---- 6. separator problems in the manifest ----------------------------------------------------------

@pytest.mark.parametrize("labels, message", [
    ("{column: labels, separator: \"|\", classes: [happy-pleased, \"a|b\"]}", "'a|b' contains the separator '|'"),
    ("{column: labels, separator: \",\", classes: [\"sad, lonely\"]}", "contains the separator ','"),
    ("{column: labels, separator: \"\"}", "'labels.separator' is empty"),
])
def test_separator_problems_are_manifest_errors(tmp_path: Path, emo: pd.DataFrame, labels: str, message: str):
    folder = write_dataset(tmp_path / "emo", emo, f"modality: tabular\nsource: data.csv\nlabels: {labels}\n")
    with pytest.raises(ManifestError, match=re.escape(message)):
        load_manifest(folder)


# ---- 7. the CLI: manifest problems are usage errors (exit 2, message first, no traceback) ------------

def _usage_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_cli_bad_manifest_exits_2(tmp_path: Path, emo: pd.DataFrame, db_path: str, capsys):
    folder = write_dataset(tmp_path / "emo", emo, TABULAR_MANIFEST + "feature_columns: [labels]\n")
    err = _usage_error(capsys, ["audit", str(folder), "--db", db_path])
    assert "dataset.yaml" in err and "'labels'" in err and not Path(db_path).exists()


def test_cli_unreadable_source_exits_2(tmp_path: Path, emo: pd.DataFrame, db_path: str, capsys):
    data = emo.to_csv(index=False).encode().replace(b"happy-pleased", b"h\xe4ppy", 1)
    err = _usage_error(capsys, ["audit", str(write_bytes(tmp_path / "emo", data)), "--db", db_path])
    assert "data.csv" in err and "byte 0xe4" in err


def test_cli_missing_folder_exits_2(tmp_path: Path, capsys):
    err = _usage_error(capsys, ["audit", str(tmp_path / "nope")])
    assert "does not exist" in err


def test_cli_export_and_demo_with_bad_manifest_exit_2(tmp_path: Path, emo: pd.DataFrame, db_path: str, capsys):
    write_dataset(tmp_path / "data" / "emo", emo, "modality: [tabular\n")
    err = _usage_error(capsys, ["export", "emo", "--out", str(tmp_path / "x.csv"), "--data-dir",
                                str(tmp_path / "data"), "--db", db_path])
    assert "not valid YAML" in err
    err = _usage_error(capsys, ["demo", "--data-dir", str(tmp_path / "data"), "--db", db_path])
    assert "skipping emo" in err and "not valid YAML" in err


# ---- the hostile corpus: csv / tsv ------------------------------------------------------------------

def test_empty_and_blank_files(tmp_path: Path):
    assert "the file is empty (no header row)" in manifest_error(write_bytes(tmp_path / "a", b""))
    assert "the file is empty" in manifest_error(write_bytes(tmp_path / "b", b" \r\n\n"))
    jsonl = TABULAR_MANIFEST.replace("data.csv", "data.jsonl")
    assert "the file is empty" in manifest_error(write_bytes(tmp_path / "c", b"\n\n", jsonl, "data.jsonl"))


def test_header_only_fails_the_gate_not_ingest(tmp_path: Path, emo: pd.DataFrame):
    folder = write_bytes(tmp_path / "emo", emo.iloc[:0].to_csv(index=False).encode())
    result = ingest(folder)
    assert result.n_input_rows == 0
    text = gate(folder, result).describe()
    assert "0 examples, but 5-fold cross-validation needs at least 5" in text
    assert "no example carries any tag" in text


@pytest.mark.parametrize("source", ["data.csv", "data.tsv", "data.parquet"])
def test_duplicate_column_names(tmp_path: Path, emo: pd.DataFrame, source: str):
    manifest = TABULAR_MANIFEST.replace("data.csv", source)
    folder = tmp_path / "emo"
    folder.mkdir()
    if source == "data.parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(emo, preserve_index=False)
        table = table.rename_columns([FIRST if i == 1 else n for i, n in enumerate(table.column_names)])
        pq.write_table(table, folder / source)
        (folder / "dataset.yaml").write_text(manifest)
    else:
        sep = "," if source.endswith("csv") else "\t"
        text = emo.to_csv(index=False, sep=sep)
        header, rest = text.split("\n", 1)
        names = header.split(sep)
        names[1] = FIRST
        write_bytes(folder, (sep.join(names) + "\n" + rest).encode(), manifest, source)
    message = manifest_error(folder)
    assert source in message and f"column name '{FIRST}' appears 2 times (columns 1, 2)" in message


def test_bom_crlf_and_cr_read_like_plain_utf8(tmp_path: Path, comments: pd.DataFrame):
    plain = comments.to_csv(index=False).encode()
    expected = ingest(write_bytes(tmp_path / "plain", plain, TEXT_MANIFEST, "comments.csv")).examples
    for name, data in [("bom", b"\xef\xbb\xbf" + plain), ("crlf", plain.replace(b"\n", b"\r\n")),
                       ("bom_crlf", b"\xef\xbb\xbf" + plain.replace(b"\n", b"\r\n"))]:
        result = ingest(write_bytes(tmp_path / name, data, TEXT_MANIFEST, "comments.csv"))
        assert result.quarantine.empty, name
        pd.testing.assert_frame_equal(result.examples, expected, obj=name)


def test_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path: Path, comments: pd.DataFrame):
    frame = comments.copy()
    frame.loc[1, "text"] = "first line\nsecond line"  # a quoted newline: row 1 spans lines 3-4
    frame.loc[4, "text"] = "   "
    data = frame.to_csv(index=False).encode()
    data = data.replace(b"\n" + frame.loc[3, "id"].encode(), b"\n\n" + frame.loc[3, "id"].encode(), 1)  # blank line
    why = reasons(ingest(write_bytes(tmp_path / "goemo", data, TEXT_MANIFEST, "comments.csv")))
    assert list(why) == [4]
    assert why[4].startswith("comments.csv row 4 (line 8): text column 'text' is empty")


def test_short_row_is_quarantined_long_row_is_an_error(tmp_path: Path, emo: pd.DataFrame):
    lines = emo.to_csv(index=False).encode().split(b"\n")
    short = b"\n".join(lines[:4] + [b"0.1,0.2"] + lines[5:])
    why = reasons(ingest(write_bytes(tmp_path / "short", short)))
    assert list(why) == [3] and "row 3 (line 5): has 2 field(s) but the header has 73" in why[3]
    long = b"\n".join(lines[:4] + [lines[4] + b",9"] + lines[5:])
    message = manifest_error(write_bytes(tmp_path / "long", long))
    assert "line 5 has 74 fields but the header (line 1) has 73" in message and "quote" in message


def test_unclosed_quote_nul_in_a_tag_and_a_spaced_header(tmp_path: Path, emo: pd.DataFrame):
    lines = emo.to_csv(index=False).encode().split(b"\n")
    unclosed = b"\n".join(lines[:5] + [b'"' + lines[5]] + lines[6:])
    assert "data.csv: line 6: a quote (\") opens a value that is never closed" in manifest_error(
        write_bytes(tmp_path / "quote", unclosed))
    head, _, tags = lines[3].rpartition(b",")
    nul = b"\n".join(lines[:3] + [head + b"," + tags[:2] + b"\x00" + tags[2:]] + lines[4:])
    why = reasons(ingest(write_bytes(tmp_path / "nul", nul)))
    assert list(why) == [2] and "data.csv row 2 (line 4): labels column 'labels' holds the tag" in why[2]
    assert "control character" in why[2]
    spaced = emo.to_csv(index=False).encode().replace(b",labels\n", b",Labels \n", 1)
    message = manifest_error(write_bytes(tmp_path / "spaced", spaced))
    assert "names column 'labels', which is not in data.csv (did you mean 'Labels '?" in message


def test_cr_only_line_endings(tmp_path: Path, emo: pd.DataFrame):
    result = ingest(write_bytes(tmp_path / "emo", emo.to_csv(index=False).encode().replace(b"\n", b"\r")))
    assert len(result.examples) == 60 and result.quarantine.empty
    assert result.examples["tags"][0] == emo["labels"][0].split("|")


def test_tsv_decimal_comma(tmp_path: Path, emo: pd.DataFrame):
    frame = emo.astype(object)
    frame.loc[0, FIRST] = "0,034741"
    folder = write_dataset(tmp_path / "emo", frame, TABULAR_MANIFEST.replace("data.csv", "data.tsv"), "data.tsv")
    why = reasons(ingest(folder))
    assert list(why) == [0] and why[0].startswith("data.tsv row 0 (line 2)") and "decimal comma" in why[0]


def test_only_labels_column_and_all_empty_features(tmp_path: Path, emo: pd.DataFrame):
    message = manifest_error(write_dataset(tmp_path / "a", emo[["labels"]], TABULAR_MANIFEST))
    assert "no feature columns" in message and "data.csv" in message
    frame = emo[["labels"]].assign(empty1="", empty2="NA")
    result = gate(write_dataset(tmp_path / "b", frame, TABULAR_MANIFEST))
    assert "no usable feature column" in result.describe()


# ---- the hostile corpus: jsonl / parquet -------------------------------------------------------------

@pytest.mark.parametrize("line, message", [
    ('{"id": "x", "text": "hi",', "line 3: not valid JSON"),
    ("[1, 2]", "line 3: expected one JSON object {...} per line, got list"),
    ('{"id": "x", "text": "hi", "labels": [], "labels": ["joy"]}', "line 3: key 'labels' appears more than once"),
])
def test_jsonl_lines_that_are_not_records(tmp_path: Path, comments: pd.DataFrame, line: str, message: str):
    records = jsonl_lines(comments)
    records[2] = line
    assert message in manifest_error(write_jsonl(tmp_path / "goemo", records, JSONL_TEXT_MANIFEST))


@pytest.mark.parametrize("change, expected", [
    ({"labels": 3.5}, "labels column 'labels' holds 3.5 (float); expected a string of tags"),
    ({"labels": True}, "labels column 'labels' holds True (bool)"),
    ({"labels": {"joy": 1}}, "labels column 'labels' holds {'joy': 1} (dict)"),
    ({"labels": ["joy", {"x": 1}]}, "holds {'x': 1} (dict) in its list"),
    ({"labels": ["joy", ["anger"]]}, "holds ['anger'] (list) in its list"),
    ({"labels": ["joy", False]}, "holds False (bool) in its list"),
    ({"text": ["a", "b"]}, "text column 'text' holds ['a', 'b']; expected a string"),
    ({"text": "  \n\t "}, "text column 'text' is empty"),
    ({"id": None}, "id column 'id' is null or empty"),
    ({"id": "   "}, "id column 'id' is null or empty"),
    ({"id": ["x"]}, "id column 'id' holds ['x']"),
    ({"labels": None, "__drop__": "labels"}, "has no 'labels' key"),
])
def test_jsonl_cells_of_the_wrong_kind_are_quarantined(tmp_path: Path, comments: pd.DataFrame, change: dict,
                                                       expected: str):
    records = jsonl_lines(comments.assign(labels=comments["labels"].str.split("|")))
    record = records[2]
    drop = change.pop("__drop__", None)
    record.update(change)
    if drop:
        del record[drop]
    why = reasons(ingest(write_jsonl(tmp_path / "goemo", records, JSONL_TEXT_MANIFEST)))
    assert list(why) == [2], why
    assert why[2].startswith("data.jsonl row 2 (line 3): ") and expected in why[2], why[2]


def test_jsonl_number_labels_and_texts_are_read_as_text(tmp_path: Path, comments: pd.DataFrame):
    records = jsonl_lines(comments.assign(labels=comments["labels"].str.split("|")))
    records[2].update({"labels": 7, "text": 12345})
    records[3].update({"labels": ["joy", 7, None]})
    result = ingest(write_jsonl(tmp_path / "goemo", records, JSONL_TEXT_MANIFEST))
    assert result.quarantine.empty
    ex = result.examples.set_index("row_number")
    assert ex.loc[2, "tags"] == ["7"] and ex.loc[2, "text"] == "12345" and ex.loc[3, "tags"] == ["joy", "7"]
    # with declared classes, the number tag is named by the gate
    classes = sorted({t for s in comments["labels"] for t in s.split("|")})
    manifest = JSONL_TEXT_MANIFEST.replace("separator: \"|\"}", f"separator: \"|\", classes: {classes}}}")
    folder = write_jsonl(tmp_path / "declared", records, manifest)
    text = gate(folder).describe()
    assert "tag(s) ['7'] are not among the classes" in text and "row_number=2" in text


def test_parquet_broken_empty_and_list_labels(tmp_path: Path, emo: pd.DataFrame):
    manifest = TABULAR_MANIFEST.replace("data.csv", "data.parquet")
    assert "cannot read parquet source" in manifest_error(write_bytes(tmp_path / "a", b"PAR1 not parquet", manifest,
                                                                      "data.parquet"))
    assert "cannot read parquet source" in manifest_error(write_bytes(tmp_path / "b", b"", manifest, "data.parquet"))
    frame = emo.copy()
    frame["labels"] = [s.split("|") + [None] for s in frame["labels"]]  # null items in a list are skipped
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    result = ingest(write_bytes(tmp_path / "c", buffer.getvalue(), manifest, "data.parquet"))
    assert result.quarantine.empty and result.examples["tags"][0] == emo["labels"][0].split("|")


# ---- labels, ids, texts ---------------------------------------------------------------------------------

def test_unknown_tag_and_duplicate_id_fail_the_gate_naming_them(tmp_path: Path, comments: pd.DataFrame):
    frame = comments.copy()
    classes = sorted({t for s in frame["labels"] for t in s.split("|")})
    frame.loc[2, "labels"] = frame.loc[2, "labels"] + "|no_such_tag"
    frame.loc[6, "id"] = frame.loc[5, "id"]
    manifest = TEXT_MANIFEST.replace("separator: \"|\"}", f"separator: \"|\", classes: {classes}}}")
    text = gate(write_dataset(tmp_path / "goemo", frame, manifest, "comments.csv")).describe()
    assert "tag(s) ['no_such_tag'] are not among the classes" in text and "row_number=2" in text
    assert f"example id(s) ['{frame.loc[5, 'id']}'] appear more than once" in text and "row_number=6" in text


def test_huge_text_is_quarantined(tmp_path: Path, comments: pd.DataFrame):
    frame = comments.copy()
    frame.loc[3, "text"] = (frame.loc[3, "text"] + " ") * (MAX_TEXT_CHARS // len(frame.loc[3, "text"]) + 1)
    frame.loc[4, "text"] = (frame.loc[4, "text"] + " ") * (MAX_TEXT_CHARS // (len(frame.loc[4, "text"]) + 1) - 1)
    why = reasons(ingest(write_dataset(tmp_path / "goemo", frame, TEXT_MANIFEST, "comments.csv")))
    assert list(why) == [3] and f"more than {MAX_TEXT_CHARS:,}" in why[3] and "comments.csv row 3" in why[3]


# ---- the manifest ---------------------------------------------------------------------------------------

BASE = "modality: tabular\nsource: data.csv\nlabels: {column: labels, separator: \"|\"}\n"


@pytest.mark.parametrize("manifest, message", [
    ("- modality\n- tabular\n", "expected a mapping of keys"),
    ("just a string\n", "expected a mapping of keys"),
    ("", "the manifest is empty"),
    ("# only a comment\n", "the manifest is empty"),
    ("modality: tabular\nsource: data.csv\nlabels:\n\tcolumn: labels\n", "indent with spaces"),
    (BASE + "modality: text\n", "key 'modality' appears twice (lines 1 and 4)"),
    ("modality: tabular\nsource: data.csv\nlabels: {column: labels, classes: [yes, no]}\n", "read as a boolean"),
    ("modality: tabular\nsource: data.csv\nlabels: {column: labels, classes: [happy, ' sad']}\n", "leading or trailing"),
    ("modality: tabular\nsource: data.csv\nlabels: {column: labels, classes: ['']}\n", "must be non-empty"),
    ("modality: tabular\nsource: data.csv\nlabels: tags\n", "'labels.column'"),
    ("modality: tabular\nsource: data.csv\nlabels: {column: ''}\n", "'labels.column'"),
    (BASE + "feature_columns: []\n", "'feature_columns' is empty"),
    (BASE + "feature_columns: [a, a]\n", "more than once"),
    (BASE + "text_column: text\n", "'text_column' is only used by modality 'text'"),
    (BASE + "id_column: labels\n", "'id_column' and 'labels.column' both name column 'labels'"),
    (BASE + "id_column: ''\n", "'id_column' is empty"),
    (BASE + "feature_columns: [a]\ncategorical_columns: [b]\n", "'b', which is not one of 'feature_columns'"),
    ("modality: tabular\nsource: /etc/passwd.csv\nlabels: {column: labels}\n", "leaves the dataset folder"),
    ("modality: tabular\nsource: sub\nlabels: {column: labels}\n", "unsupported format"),
    ("modality: tabular\nsource: sub.csv\nlabels: {column: labels}\n", "is not a file"),
])
def test_manifest_problems_name_file_and_key(tmp_path: Path, emo: pd.DataFrame, manifest: str, message: str):
    folder = write_dataset(tmp_path / "ds", emo.iloc[:5], manifest)
    (folder / "sub").mkdir()
    (folder / "sub.csv").mkdir()
    with pytest.raises(ManifestError, match=re.escape(message)) as info:
        load_manifest(folder)
    assert str(info.value).startswith(str(folder / "dataset.yaml"))


def test_manifest_not_utf8(tmp_path: Path, emo: pd.DataFrame):
    folder = write_dataset(tmp_path / "ds", emo.iloc[:5], BASE)
    (folder / "dataset.yaml").write_bytes(BASE.encode() + b"description: caf\xe9\n")
    with pytest.raises(ManifestError, match="line 4: byte 0xe9 is not valid UTF-8"):
        load_manifest(folder)


def test_source_symlink_out_of_the_folder(tmp_path: Path, emo: pd.DataFrame):
    emo.to_csv(tmp_path / "elsewhere.csv", index=False)
    folder = write_dataset(tmp_path / "ds", emo.iloc[:5], BASE.replace("data.csv", "link.csv"))
    os.symlink(tmp_path / "elsewhere.csv", folder / "link.csv")
    with pytest.raises(ManifestError, match="'link.csv' leaves the dataset folder"):
        load_manifest(folder)


# ---- images: paths out of the folder fail the gate naming them; broken files are quarantined -----------

def test_image_paths_out_of_the_folder_and_odd_files(tmp_path: Path):
    src = DATA / "miml_scenes"
    labels = pd.read_csv(src / "labels.csv", keep_default_na=False).iloc[:30].reset_index(drop=True)
    folder = tmp_path / "miml"
    (folder / "images").mkdir(parents=True)
    for rel in labels["image"]:
        shutil.copyfile(src / rel, folder / rel)
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(src / labels.loc[0, "image"], outside)
    os.symlink(outside, folder / "images" / "link.jpg")
    (folder / "images" / "dir.jpg").mkdir()
    inside_absolute = str((folder / labels.loc[5, "image"]).resolve())
    labels["image"] = labels["image"].astype(object)
    labels.loc[1, "image"] = "../outside.jpg"
    labels.loc[2, "image"] = str(outside)
    labels.loc[3, "image"] = "images/link.jpg"
    labels.loc[4, "image"] = "images/dir.jpg"
    labels.loc[5, "image"] = inside_absolute  # absolute, but inside the folder: fine
    manifest = MIML_MANIFEST.replace("id_column: image\n", "")
    labels.loc[6, "image"] = ""
    result = ingest(write_dataset(folder, labels, manifest, "labels.csv"))
    why = reasons(result)
    assert sorted(why) == [4, 6]
    assert "labels.csv row 4 (line 6)" in why[4] and "not an image file" in why[4]
    assert "image column 'image' is empty" in why[6]
    text = gate(folder, result).describe()
    for path in ("../outside.jpg", str(outside), "images/link.jpg"):
        assert repr(path) in text
    assert "lead outside the dataset folder" in text and inside_absolute not in text.split("e.g.")[0]


# ---- end to end: a dataset with bad numeric cells audits through Dagster ----------------------------------

def test_audit_with_bad_numeric_cells_succeeds_and_stores_the_quarantine(tmp_path: Path, emotions_frame: pd.DataFrame,
                                                                         db_path: str, capsys):
    from dq_pipeline import store

    frame = emotions_frame.iloc[:120].astype(object).reset_index(drop=True)
    frame.loc[10, FIRST] = "abc"
    frame.loc[20, "Mean_Acc1298_Mean_Mem40_Flux"] = "-inf"
    frame.loc[30, "Mean_Acc1298_Mean_Mem40_Rolloff"] = "1e308"
    folder = write_dataset(tmp_path / "emo_bad", frame, TABULAR_MANIFEST)
    assert main(["audit", str(folder), "--db", db_path]) == 0, capsys.readouterr().err
    quarantine = store.read_latest(db_path, "quarantine", "emo_bad").sort_values("row_number")
    assert quarantine["row_number"].tolist() == [10, 20, 30]
    assert "'abc' is not a number" in quarantine["reason"].iloc[0]
    runs = store.read_latest(db_path, "audit_runs", "emo_bad")
    assert runs["n_examples"].item() == 117 and runs["n_quarantined"].item() == 3
