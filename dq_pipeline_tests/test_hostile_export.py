"""Hostile input for `dq-pipeline export`: every untouched byte kept (CSV/TSV/JSONL) or every other column's
schema and values kept (parquet); sources edited after the audit refused; bad names, databases and output
paths refused with a message and exit code, never a traceback."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dq_pipeline import export, store
from dq_pipeline.cli import main
from dq_pipeline.ingest import load_examples
from dq_pipeline.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]


def _dataset(folder: Path, source: str, data: bytes | None = None, table: pa.Table | None = None,
             id_column: str | None = "id") -> Path:
    folder.mkdir(parents=True)
    if table is not None:
        pq.write_table(table, folder / source)
    else:
        (folder / source).write_bytes(data)
    (folder / "dataset.yaml").write_text(
        f"modality: tabular\nsource: {source}\nlabels: {{column: labels, separator: '|'}}\n"
        + (f"id_column: {id_column}\n" if id_column else "") + "feature_columns: [x]\n")
    return folder


def _fake_audit(db: Path, folder: Path, corrections: dict[str, list[str] | None], run_id: str = "r1",
                digest: str | None | bool = True, row_numbers: bool = True) -> None:
    """An audit of ``folder`` as the pipeline writes it, with chosen corrections: id -> new tags, or None to
    exclude; other examples keep their tags. ``digest``: True = the source's sha256, else the value given;
    ``row_numbers=False``: examples without row numbers (export then matches rows by id)."""
    manifest = load_manifest(folder)
    ingest = load_examples(manifest)
    ids = ingest.examples["example_id"].tolist()
    given = ingest.examples["tags"].tolist()
    labels = [corrections[i] if corrections.get(i) is not None else g for i, g in zip(ids, given)]
    excluded = [i in corrections and corrections[i] is None for i in ids]
    reason = ["excluded" if x else ("suggested" if i in corrections else "") for i, x in zip(ids, excluded)]
    run = {"run_id": run_id, "dataset": manifest.name, "started_at": datetime(2026, 1, 1),
           "finished_at": datetime(2026, 1, 1, 0, 5), "status": "success", "n_input_rows": ingest.n_input_rows,
           "source_sha256": export.source_digest(manifest) if digest is True else digest}
    store.write_audit(db, run, {
        "examples": pd.DataFrame({"example_id": ids, "given_labels": given,
                                  "row_number": ingest.examples["row_number"] if row_numbers else None}),
        "quarantine": ingest.quarantine,
        "curated_labels": pd.DataFrame({"example_id": ids, "labels": labels, "excluded": excluded,
                                        "reason": reason}),
    })


def _export(folder: Path, db: Path, out: Path | str, capsys) -> tuple[int, str, str]:
    code = main(["export", folder.name, "--out", str(out), "--data-dir", str(folder.parent), "--db", str(db)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- CSV / TSV: bytes kept

HOSTILE_CSV = (
    b"\xef\xbb\xbfid,x,count,note,labels\r\n"
    b'a1,NA,0,"hello, world",x|y\r\n'            # "NA" float cell, "0" in an int column with a blank below
    b'a2,null,,"line one\r\nline two",y\r\n'     # null, blank int, CRLF inside a quoted cell
    b'a3,NaN,7,"say ""hi""",x\r\n'               # escaped quotes
    b'a4,1.50,3,plain,"x|y"\r\n'                 # quoted labels cell, 1.50 spelled so
    b"\r\n"                                       # a blank line (pandas skips it)
    b"a5,2e3,4,,\r\n"                            # empty labels
    b",1,1,no id,x\r\n"                          # null id: quarantined
    b"a6, 3 ,5,trailing,y"                       # no final newline
)


def test_csv_keeps_every_untouched_byte(tmp_path, capsys):
    folder = _dataset(tmp_path / "data" / "hostile", "data.csv", HOSTILE_CSV)
    db = tmp_path / "c.duckdb"
    _fake_audit(db, folder, {"a1": ["x"], "a2": None, "a4": ["y", "z", "x"], "a5": ["z"]})
    code, out, err = _export(folder, db, tmp_path / "fixed.csv", capsys)
    assert code == 0, err
    assert "wrote 6 rows" in out and "3 with corrected labels" in out and "1 excluded" in out
    assert "1 quarantined rows kept" in out
    assert (tmp_path / "fixed.csv").read_bytes() == (
        b"\xef\xbb\xbfid,x,count,note,labels\r\n"
        b'a1,NA,0,"hello, world",x\r\n'
        b'a3,NaN,7,"say ""hi""",x\r\n'
        b'a4,1.50,3,plain,"x|y|z"\r\n'
        b"\r\n"
        b"a5,2e3,4,,z\r\n"
        b",1,1,no id,x\r\n"
        b"a6, 3 ,5,trailing,y"
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_tsv_keeps_every_untouched_byte_and_quotes_a_new_cell_only_when_needed(tmp_path, capsys):
    data = (b"id\tx\tlabels\tnote\n"
            b'b1\tNA\tx\t"tab\tinside"\n'
            b'b2\t0\t\t"multi\nline"\n'
            b"b3\t\tx|y\tnull\n")
    folder = _dataset(tmp_path / "data" / "tsv", "data.tsv", data)
    db = tmp_path / "c.duckdb"
    _fake_audit(db, folder, {"b2": ["y"], "b3": ["y"]}, row_numbers=False)  # matched by id
    code, _, err = _export(folder, db, tmp_path / "fixed.tsv", capsys)
    assert code == 0, err
    assert (tmp_path / "fixed.tsv").read_bytes() == (b"id\tx\tlabels\tnote\n"
                                                     b'b1\tNA\tx\t"tab\tinside"\n'
                                                     b'b2\t0\ty\t"multi\nline"\n'
                                                     b"b3\t\ty\tnull\n")


def test_audited_hostile_csv_round_trip(tmp_path, capsys):
    """A real audit (Dagster, no id column) of the bundled flags data made hostile: BOM, CRLF, "NA"/"null"/
    "NaN" cells, an integer column with a blank; the exported file differs only in changed labels cells."""
    rows = (REPO / "data" / "mulan_flags" / "flags.csv").read_text().splitlines()
    header, body = rows[0], rows[1:]
    cells = [r.split(",") for r in body]
    for i, token in ((0, "NA"), (1, "null"), (2, "NaN")):
        cells[i][2] = token  # area (float)
    cells[3][14] = ""  # crescent (an integer column) gets one blank: its "0"s must stay "0"
    lines = [header] + [",".join(c) for c in cells]
    data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n"
    folder = tmp_path / "data" / "flags"
    folder.mkdir(parents=True)
    (folder / "flags.csv").write_bytes(data)
    (folder / "dataset.yaml").write_text("modality: tabular\nsource: flags.csv\nlabels: {column: labels, "
                                         "separator: '|'}\ncategorical_columns: [landmass, zone, language, religion]\n")
    db = tmp_path / "c.duckdb"
    assert main(["audit", str(folder), "--db", str(db)]) == 0
    capsys.readouterr()
    code, out, err = _export(folder, db, tmp_path / "fixed.csv", capsys)
    assert code == 0, err
    written = (tmp_path / "fixed.csv").read_bytes()
    assert written.startswith(b"\xef\xbb\xbf") and written.count(b"\r\n") == data.count(b"\r\n")
    new_lines = written[3:].decode().split("\r\n")
    changed = 0
    for old, new in zip(lines, new_lines):
        old_cells, new_cells = old.split(","), new.split(",")
        assert old_cells[:-1] == new_cells[:-1]  # every cell but labels, as written (NA, null, "", 0)
        changed += old_cells[-1] != new_cells[-1]
    curated = store.read_latest(db, "curated_labels", "flags")
    assert changed == curated["reason"].ne("").sum() > 0 and f"{changed} with corrected labels" in out


def test_a_quarantined_row_sharing_an_id_is_left_alone(tmp_path, capsys):
    """Rows are matched by the audit's row numbers: a short (quarantined) row carrying the id of a curated
    example keeps its bytes instead of receiving that example's correction or exclusion."""
    data = b"id,x,labels\na1,1,x|y\na2,2,y\na1,3\n"
    folder = _dataset(tmp_path / "data" / "dup", "data.csv", data)
    db = tmp_path / "c.duckdb"
    _fake_audit(db, folder, {"a1": ["y"], "a2": None})
    assert _export(folder, db, tmp_path / "fixed.csv", capsys)[0] == 0
    assert (tmp_path / "fixed.csv").read_bytes() == b"id,x,labels\na1,1,y\na1,3\n"


# --------------------------------------------------------------------------- JSONL: lines kept, labels key edited

HOSTILE_JSONL = (
    b'{"id": "a1", "x": 1.0, "labels": ["x", "y"], "note": "caf\\u00e9"}\n'
    b'{"labels":"x|y","id":"a2","x":1e3}\r\n'
    b"\n"
    b'{"id": "a3", "x": null, "labels": null}\n'
    b'{"id": "a4", "x": -0.0}\n'
    b'{"id": "a5", "x": 2, "labels": ["y"], "nested": {"labels": ["q"]}}\n'
    b'{"id": "a6",  "x" : 3 , "labels" : [ "x" ] }\n'
    b'{"id": null, "x": 4, "labels": ["x"]}\n'
    b'{"id": "a7", "x": 5, "labels": ["x"], "t": "\xc3\xa9t\xc3\xa9"}'
)


def test_jsonl_edits_only_the_labels_value(tmp_path, capsys):
    folder = _dataset(tmp_path / "data" / "jl", "data.jsonl", HOSTILE_JSONL)
    db = tmp_path / "c.duckdb"
    _fake_audit(db, folder, {"a1": ["x"], "a2": ["y", "z"], "a3": ["z"], "a6": None, "a7": ["y"]})
    code, out, err = _export(folder, db, tmp_path / "fixed.jsonl", capsys)
    assert code == 0, err
    assert (tmp_path / "fixed.jsonl").read_bytes() == (
        b'{"id": "a1", "x": 1.0, "labels": ["x"], "note": "caf\\u00e9"}\n'
        b'{"labels":"y|z","id":"a2","x":1e3}\r\n'
        b"\n"
        b'{"id": "a3", "x": null, "labels": ["z"]}\n'
        b'{"id": "a4", "x": -0.0}\n'  # no labels key: quarantined by ingestion, kept as it was
        b'{"id": "a5", "x": 2, "labels": ["y"], "nested": {"labels": ["q"]}}\n'
        b'{"id": null, "x": 4, "labels": ["x"]}\n'
        b'{"id": "a7", "x": 5, "labels": ["y"], "t": "\xc3\xa9t\xc3\xa9"}'
    )
    assert "with corrected labels" in out and "1 excluded" in out


def test_jsonl_labels_key_is_added_where_a_line_lacks_it(tmp_path):
    """Should ingestion ever curate a line without the key, the corrected labels are added before its '}'."""
    folder = _dataset(tmp_path / "data" / "jl", "data.jsonl", b'{"id": "a"}\n{ }\n{"id": "c", "labels": ["x"]}')
    manifest = load_manifest(folder)
    frame = pd.DataFrame({"id": ["a", None, "c"], "labels": [None, None, ["x"]]})
    plan = export._Plan(keep=[True, True, True], changes={0: ["x"], 1: ["y"]}, n_unaudited=0)
    assert export._edit_jsonl(manifest, (folder / "data.jsonl").read_bytes(), frame, plan) == (
        b'{"id": "a", "labels": ["x"]}\n{ "labels": ["y"]}\n{"id": "c", "labels": ["x"]}')


# --------------------------------------------------------------------------- parquet: schema and values kept

def test_parquet_keeps_every_other_column_and_the_schema(tmp_path, capsys):
    table = pa.table({
        "id": pa.array(["p1", "p2", "p3", "p4"]),
        "x": pa.array([1.5, float("nan"), None, 0.0]),
        "count": pa.array([0, None, 7, 3], type=pa.int64()),
        "code": pa.array(["a", "b", "a", None]).dictionary_encode(),
        "when": pa.array([datetime(2026, 1, d) for d in (1, 2, 3, 4)], type=pa.timestamp("ms")),
        "note": pa.array(["NA", "null", "", "0"], type=pa.large_string()),
        "labels": pa.array([["x", "y"], ["y"], [], None], type=pa.list_(pa.string())),
    }).replace_schema_metadata({"origin": "hostile test"})
    folder = _dataset(tmp_path / "data" / "pq", "data.parquet", table=table)
    db = tmp_path / "c.duckdb"
    _fake_audit(db, folder, {"p1": ["y", "z"], "p3": None, "p4": ["x"]})
    code, _, err = _export(folder, db, tmp_path / "fixed.parquet", capsys)
    assert code == 0, err
    written = pq.read_table(tmp_path / "fixed.parquet")
    assert written.schema.equals(pq.read_table(folder / "data.parquet").schema, check_metadata=True)
    assert written.schema.metadata[b"origin"] == b"hostile test"
    expected = table.filter(pa.array([True, True, False, True]))
    for name in table.column_names[:-1]:  # repr: NaN and null stay distinct and equal to themselves
        assert [repr(v) for v in written.column(name).to_pylist()] == [repr(v) for v in expected.column(name).to_pylist()]
    assert written.column("labels").to_pylist() == [["y", "z"], ["y"], ["x"]]


def test_parquet_string_labels_stay_strings(tmp_path, capsys):
    table = pa.table({"id": ["q1", "q2"], "x": [1, 2], "labels": pa.array(["x|y", None], type=pa.large_string())})
    folder = _dataset(tmp_path / "data" / "pqs", "data.parquet", table=table)
    db = tmp_path / "c.duckdb"
    _fake_audit(db, folder, {"q1": ["y"], "q2": ["x", "y"]})
    assert _export(folder, db, tmp_path / "fixed.parquet", capsys)[0] == 0
    written = pq.read_table(tmp_path / "fixed.parquet")
    assert written.schema.equals(table.schema) and written.column("labels").to_pylist() == ["y", "x|y"]


# --------------------------------------------------------------------------- the source must match the audit

@pytest.fixture
def audited(tmp_path) -> tuple[Path, Path]:
    folder = _dataset(tmp_path / "data" / "hostile", "data.csv", HOSTILE_CSV)
    db = tmp_path / "c.duckdb"
    _fake_audit(db, folder, {"a1": ["x"]})
    return folder, db


def test_source_reordered_after_the_audit_is_refused(audited, tmp_path, capsys):
    folder, db = audited
    lines = HOSTILE_CSV.split(b"\r\n")
    (folder / "data.csv").write_bytes(b"\r\n".join([lines[0], lines[3], lines[2], lines[1], *lines[4:]]))
    code, out, err = _export(folder, db, tmp_path / "fixed.csv", capsys)
    assert code == 2 and not (tmp_path / "fixed.csv").exists() and "Traceback" not in err
    assert f"{folder / 'data.csv'} changed since the audit of 'hostile' audited at 2026-01-01 00:05:00 (run r1)" in err
    assert f"re-audit it first: dq-pipeline audit {folder}" in err


def test_one_byte_changed_is_refused_and_an_audit_without_digest_too(audited, tmp_path, capsys):
    folder, db = audited
    (folder / "data.csv").write_bytes(HOSTILE_CSV.replace(b"a6, 3 ,5", b"a6, 4 ,5"))
    code, _, err = _export(folder, db, tmp_path / "fixed.csv", capsys)
    assert code == 2 and "changed since the audit" in err
    (folder / "data.csv").write_bytes(HOSTILE_CSV)
    _fake_audit(db, folder, {"a1": ["x"]}, run_id="r2", digest=None)  # an audit from before fingerprints
    code, _, err = _export(folder, db, tmp_path / "fixed.csv", capsys)
    assert code == 2 and "did not record the sha256" in err and "re-audit it first" in err


def test_reordered_source_of_a_real_audit_without_ids_is_refused(tmp_path, capsys):
    """The reported case: no id_column (ids are row numbers), rows reordered after the audit."""
    frame = pd.read_csv(REPO / "data" / "mulan_flags" / "flags.csv", keep_default_na=False)
    folder = tmp_path / "data" / "flags"
    folder.mkdir(parents=True)
    frame.to_csv(folder / "flags.csv", index=False)
    (folder / "dataset.yaml").write_text("modality: tabular\nsource: flags.csv\nlabels: {column: labels, "
                                         "separator: '|'}\ncategorical_columns: [landmass, zone, language, religion]\n")
    db = tmp_path / "c.duckdb"
    assert main(["audit", str(folder), "--db", str(db)]) == 0
    assert store.read_latest(db, "audit_runs", "flags")["source_sha256"].tolist() == [
        export.source_digest(load_manifest(folder))]
    frame.iloc[::-1].to_csv(folder / "flags.csv", index=False)
    capsys.readouterr()
    code, _, err = _export(folder, db, tmp_path / "fixed.csv", capsys)
    assert code == 2 and "changed since the audit" in err and "row numbers as ids" in err


# --------------------------------------------------------------------------- bad names, databases, outputs

def test_unknown_dataset_and_bad_names_are_refused(audited, tmp_path, capsys):
    folder, db = audited
    for name in ("nope", "../hostile", ""):
        code = main(["export", name, "--out", str(tmp_path / "x.csv"), "--data-dir", str(folder.parent),
                     "--db", str(db)])
        err = capsys.readouterr().err
        assert code == 2 and f"unknown dataset {name!r}" in err and "datasets there: hostile" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("db_case, expected", [
    ("missing", "no DuckDB file at"),
    ("folder", "is a directory, not a DuckDB file"),
    ("text", "is not a DuckDB database file"),
    ("empty_db", "no successful audit of 'hostile'"),
])
def test_bad_databases_are_refused(audited, tmp_path, capsys, db_case, expected):
    folder, _ = audited
    db = tmp_path / f"{db_case}.duckdb"
    if db_case == "folder":
        db.mkdir()
    elif db_case == "text":
        db.write_text("not a database\n")
    elif db_case == "empty_db":
        store.write_audit(db, {"run_id": "o", "dataset": "other", "status": "success", "n_input_rows": 0}, {})
    code, _, err = _export(folder, db, tmp_path / "x.csv", capsys)
    assert code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()


def test_bad_output_paths_are_refused(audited, tmp_path, capsys):
    folder, db = audited
    source = folder / "data.csv"
    (tmp_path / "link.csv").symlink_to(source)
    cases = {
        str(tmp_path / "missing" / "x.csv"): "does not exist; create it first",
        str(source): "is the dataset's source file",
        str(tmp_path / "link.csv"): "is the dataset's source file",
        str(folder / "dataset.yaml"): "is the dataset's manifest",
        str(db): "is the DuckDB file",
        str(tmp_path): "is a folder",
    }
    for out, expected in cases.items():
        code, _, err = _export(folder, db, out, capsys)
        assert code == 2 and expected in err, (out, err)
    assert source.read_bytes() == HOSTILE_CSV and not (tmp_path / "missing").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_full_device_fails_with_exit_1(audited, capsys):
    folder, db = audited
    code, out, err = _export(folder, db, "/dev/full", capsys)
    assert code == 1 and "cannot write /dev/full: No space left on device" in err and "Traceback" not in err


def test_existing_output_is_replaced_atomically_keeping_its_mode(audited, tmp_path, capsys):
    folder, db = audited
    out = tmp_path / "fixed.csv"
    out.write_text("old content")
    out.chmod(0o640)
    assert _export(folder, db, out, capsys)[0] == 0
    assert out.read_bytes().startswith(b"\xef\xbb\xbfid,x") and oct(out.stat().st_mode & 0o777) == oct(0o640)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_output_suffix_other_than_the_source_format_is_noted(audited, tmp_path, capsys):
    folder, db = audited
    code, _, err = _export(folder, db, tmp_path / "fixed.parquet", capsys)
    assert code == 0 and "gets the source's format (csv), not parquet" in err
    assert os.path.getsize(tmp_path / "fixed.parquet") > 0


# --------------------------------------------------------------------------- the CSV/TSV editor, property-tested

EDGE_SOURCES = {
    "cr_only.csv": b"id,labels,note\ra,x,1\rb,y,2\r",
    "mixed_endings.csv": b"id,labels,note\r\na,x,1\nb,y,2\rc,x|y,3",
    "whitespace_lines.csv": b"id,labels,note\n  \na,x,1\n\t\nb,y,2\n\n",
    "quote_inside.csv": b'id,labels,note\na,x,say "hi"\nb,y,"q"tail\n',
    "quoted_labels_with_newline.csv": b'id,labels,note\na,"x|\ny",1\nb,"y",2\n',
    "labels_first.csv": b"labels,id\nx,a\n,b\n",
    "tabs.tsv": b'id\tlabels\tnote\na\tx\t"t\tab"\nb\t\t""\n',
    "only_labels.csv": b"labels\nx\ny|x\n",
}


@pytest.mark.parametrize("name", sorted(EDGE_SOURCES))
def test_editor_reproduces_the_source_and_changes_exactly_the_labels(tmp_path, name):
    from dq_pipeline.ingest import read_source

    data = EDGE_SOURCES[name]
    folder = tmp_path / "data" / "edge"
    folder.mkdir(parents=True)
    (folder / name).write_bytes(data)
    id_line = "id_column: id\n" if b"id" in data.split(b"\n")[0] else ""
    (folder / "dataset.yaml").write_text(f"modality: tabular\nsource: {name}\nlabels: {{column: labels, "
                                         f"separator: '|'}}\n{id_line}")
    manifest = load_manifest(folder)
    frame = read_source(manifest)
    unchanged = export._Plan(keep=[True] * len(frame), changes={}, n_unaudited=0)
    assert export._edit_delimited(manifest, data, frame, unchanged) == data
    for new in (["z", "w"], []):
        plan = export._Plan(keep=[True] * len(frame), changes={i: new for i in range(len(frame))}, n_unaudited=0)
        (folder / name).write_bytes(export._edit_delimited(manifest, data, frame, plan))
        again = read_source(manifest)
        assert again[manifest.labels_column].tolist() == ["|".join(new)] * len(frame)
        pd.testing.assert_frame_equal(again.drop(columns="labels"), frame.drop(columns="labels"))
        (folder / name).write_bytes(data)


def test_editor_refuses_rows_it_reads_differently(tmp_path):
    folder = _dataset(tmp_path / "data" / "odd", "data.csv", b"id,x,labels\na,1,x\nb,2,y\n")
    manifest = load_manifest(folder)
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1, 2], "labels": ["x", "OTHER"]})
    plan = export._Plan(keep=[True, True], changes={}, n_unaudited=0)
    with pytest.raises(export.ExportError, match=r"row 1, column 'labels': text 'y' but pandas reads 'OTHER'"):
        export._edit_delimited(manifest, b"id,x,labels\na,1,x\nb,2,y\n", frame, plan)
    with pytest.raises(export.ExportError, match="unterminated quoted field"):
        export._edit_delimited(manifest, b'id,x,labels\na,1,x\nb,"2,y\n', frame, plan)
