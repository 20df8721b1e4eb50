"""``dq-pipeline``: audit datasets, run the demo, export corrected labels (all through Dagster)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SUMMARY_COLUMNS = ["dataset", "n_examples", "n_quarantined", "n_label_issues", "n_ambiguous", "n_outliers",
                   "n_near_duplicates", "health_score"]


def _print_table(rows: list[dict]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in SUMMARY_COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in SUMMARY_COLUMNS))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in SUMMARY_COLUMNS))


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _audit_many(folders: list[Path], db: str, verbose: bool = False) -> int:
    from dq_pipeline.defs.runner import run_audit

    rows, failed = [], []
    for folder in folders:
        print(f"auditing {folder} ...", flush=True)
        outcome = run_audit(folder, db_path=db, verbose=verbose)
        if outcome.reused:
            print(f"  unchanged inputs, reused cached results of: {', '.join(outcome.reused)}", flush=True)
        if outcome.step_seconds:  # where the time went (bench/bench_scale.py reads this line)
            print("  step seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in outcome.step_seconds.items()),
                  flush=True)
        if outcome.success and outcome.summary:
            rows.append(outcome.summary)
        else:
            failed.append(outcome)
            print(f"AUDIT FAILED for {outcome.dataset} (run {outcome.run_id}):\n{outcome.reason()}", file=sys.stderr)
    if rows:
        print()
        _print_table(rows)
    print(f"\nDuckDB: {Path(db).resolve()}  (tables: {', '.join(_audit_tables())}; views latest_*)")
    return 1 if failed else 0


def _audit_tables() -> list[str]:
    """The tables an audit writes or reads, as the store defines them (reviews: the review app's decisions)."""
    from dq_pipeline.store import ADDED_TABLES, TABLES

    return [*TABLES, *ADDED_TABLES, "reviews"]


def _manifest_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be audited (its manifest, or the source against it), or None."""
    from dq_pipeline.ingest import check_source
    from dq_pipeline.manifest import ManifestError, load_manifest

    try:
        check_source(load_manifest(folder))
    except ManifestError as exc:
        return str(exc)
    return None


def cmd_review(args: argparse.Namespace) -> int:
    """Serve the review app over --db until Ctrl-C. Exit 2 when the DuckDB file is missing or the port is
    taken. A fresh random token guards every state-changing request (see README, "Reviewing flagged
    examples"): printed here and written to ``<db>.review-token`` (mode 0600), removed at exit."""
    import ipaddress
    import secrets
    import signal
    import socket

    import uvicorn

    from dq_pipeline.review_app import TOKEN_HEADER, create_app, token_file_for

    db = Path(args.db)
    if not db.is_file():
        print(f"error: no DuckDB file at {db}: audit a dataset first (dq-pipeline audit data/<dataset>) or pass "
              "--db", file=sys.stderr)
        return 2
    try:  # fail early and plainly when the port is taken
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as s:
            s.bind((args.host, args.port))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:  # a host name
        loopback = False
    token = secrets.token_urlsafe(32)
    token_file = token_file_for(db)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(token_file, 0o600)
    # Host names the app answers to (DNS rebinding): loopback names, plus --host when it names one address;
    # a wildcard bind (0.0.0.0, ::) cannot know the names it is reached by, so it accepts any.
    wildcard = args.host in ("0.0.0.0", "::", "")
    shown = f"[{args.host}]" if ":" in args.host else args.host
    named = [] if wildcard or args.host in ("127.0.0.1", "localhost", "::1") else [shown]
    app = create_app(db, token=token,
                     allowed_hosts=None if wildcard else ("127.0.0.1", "localhost", "[::1]", *named))
    print(f"review app for {db.resolve()} on http://{shown}:{args.port}/  (Ctrl-C stops it)")
    print(f"scripts: send header {TOKEN_HEADER}: {token}  (also in {token_file})", flush=True)
    if not loopback:
        print(f"warning: listening on {args.host}, not loopback: anyone who can reach this port can read the "
              "audit; decisions still need the token", file=sys.stderr)
    # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit that runs the cleanup
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    except KeyboardInterrupt:
        pass
    finally:
        token_file.unlink(missing_ok=True)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    folder = Path(args.path)
    if not folder.is_dir():
        print(f"error: dataset folder {folder} does not exist (PATH must be a dataset folder)", file=sys.stderr)
        return 2
    if not (folder / "dataset.yaml").is_file():
        print(f"error: {folder}/dataset.yaml not found (PATH must be a dataset folder)", file=sys.stderr)
        return 2
    problem = _manifest_problem(folder)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return _audit_many([folder], args.db, args.verbose)


def cmd_demo(args: argparse.Namespace) -> int:
    from dq_pipeline.manifest import discover_datasets

    folders = list(discover_datasets(args.data_dir).values())
    if not folders:
        print(f"error: no dataset folders (with dataset.yaml) under {args.data_dir}", file=sys.stderr)
        return 2
    problems = {f: _manifest_problem(f) for f in folders}
    for folder, problem in problems.items():
        if problem:
            print(f"error: skipping {folder.name}: {problem}", file=sys.stderr)
    good = [f for f in folders if not problems[f]]
    code = _audit_many(good, args.db, args.verbose) if good else 0
    return 2 if len(good) < len(folders) else code


def cmd_export(args: argparse.Namespace) -> int:
    """Exit 0 written; 2 refused (unknown dataset, no audit, source changed since the audit, bad --out or
    --db, invalid dataset.yaml); 1 writing --out failed (nothing written)."""
    from dq_pipeline.export import ExportError, export_dataset
    from dq_pipeline.manifest import ManifestError
    from dq_pipeline.store import StoreError

    try:
        s = export_dataset(args.dataset, args.out, data_dir=args.data_dir, db_path=args.db)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (StoreError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in s.warnings:
        print(f"note: {warning}", file=sys.stderr)
    print(f"wrote {s.n_rows} rows to {s.path} ({s.source_format}): {s.n_changed} with corrected labels, "
          f"{s.n_excluded} excluded rows dropped, {s.n_unaudited} quarantined rows kept as they were; every "
          f"other byte as in the source (audit {s.run_id}, finished {s.audited_at})")
    return 0


def cmd_reviews(args: argparse.Namespace) -> int:
    """``reviews export`` / ``reviews import``: exit 0 done; 2 bad input (file, line and value named) or an
    unusable --db (nothing imported); 1 writing --out failed."""
    from dq_pipeline import review
    from dq_pipeline.store import StoreError

    try:
        if args.reviews_command == "import":
            n = review.import_reviews(args.db, args.file)
            print(f"imported {n} review decision(s) from {args.file} into {args.db}")
            return 0
        out = args.out
        fmt = "jsonl" if out and Path(out).suffix.lower() in (".jsonl", ".ndjson") else "csv"
        if out and Path(out).suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
            print(f"error: --out {out}: expected a .csv or .jsonl file name", file=sys.stderr)
            return 2
        if not Path(args.db).exists():
            print(f"error: no DuckDB file at {args.db}; pass --db (or set DQ_DUCKDB_PATH)", file=sys.stderr)
            return 2
        frame = review.export_reviews(args.db, args.dataset)
        if not out:
            review.write_reviews(frame, sys.stdout, fmt)
            return 0
        try:
            with open(out, "w", encoding="utf-8", newline="") as fh:
                review.write_reviews(frame, fh, fmt)
        except OSError as exc:
            print(f"error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {len(frame)} review decision(s) to {out} ({fmt})", file=sys.stderr)
        return 0
    except (review.ReviewError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _train_tagger(folder: Path, db: str, verbose: bool) -> int:
    """Run the train_tagger job (audit + tagger) for ``folder`` in-process, as ``audit`` runs its job."""
    import dagster as dg

    from dq_pipeline.definitions import build_definitions
    from dq_pipeline.defs.partitions import dataset_partitions
    from dq_pipeline.defs.runner import brief_console_logger, get_instance

    instance = get_instance()
    in_memory = not os.environ.get("DAGSTER_HOME")
    defs = build_definitions(data_dir=str(folder.parent), db_path=db, in_memory=in_memory,
                             loggers=None if verbose else {"console": brief_console_logger})
    if not instance.has_dynamic_partition(dataset_partitions.name, folder.name):
        instance.add_dynamic_partitions(dataset_partitions.name, [folder.name])
    print(f"auditing {folder} and training its tagger ...", file=sys.stderr, flush=True)
    result = defs.resolve_job_def("train_tagger").execute_in_process(partition_key=folder.name, instance=instance,
                                                                      raise_on_error=False)
    if result.success:
        return 0
    reasons = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        message = (data.user_failure_data.description if data.user_failure_data is not None
                   else (data.error.cause or data.error).message if data.error else "")
        reasons.append(f"{event.step_key}: {(message or '').strip()}")
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            reasons.append(f"{evaluation.check_name}: {evaluation.description}")
    print(f"TRAINING FAILED for {folder.name} (run {result.run_id}):\n" + "\n".join(reasons or ["unknown failure"]),
          file=sys.stderr)
    return 1


def cmd_predict(args: argparse.Namespace) -> int:
    """Exit 0 written; 2 refused (no tagger, input that does not match the model card, bad --out); 1 training
    (--train) or writing --out failed."""
    from dq_pipeline import tagger as tg

    root = tg.models_root(args.db)
    folder = Path(args.data_dir) / args.dataset
    build = (f"dq-pipeline predict {args.dataset} {args.input} --train --db {args.db}"
             + (f" --data-dir {args.data_dir}" if args.data_dir != "data" else "")
             + " (audits the dataset and trains its tagger), or materialize the 'tagger' asset (job "
               "train_tagger) in the Dagster UI")
    if args.train:
        if not (folder / "dataset.yaml").is_file():
            print(f"error: --train: no dataset folder {folder} (with a dataset.yaml) under --data-dir "
                  f"{args.data_dir}", file=sys.stderr)
            return 2
        problem = _manifest_problem(folder)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        if _train_tagger(folder, args.db, args.verbose):
            return 1
    try:
        model_dir = tg.latest_folder(root, args.dataset, build)
        model = tg.load_tagger(model_dir)
        model.card["card_path"] = str(model_dir / tg.CARD_NAME)
        in_path = Path(args.input)
        fmt = "csv" if in_path.is_dir() else None
        if args.out:
            out = Path(args.out)
            if in_path.exists() and out.exists() and out.resolve() == in_path.resolve():
                raise tg.TaggerError(f"--out {out} is the input file; write the predictions to another file")
        elif in_path.suffix.lower() == ".parquet":
            raise tg.TaggerError(f"{in_path}: parquet input needs --out FILE.parquet (it is not written to stdout)")
        prediction = tg.predict_input(model, in_path, cache_dir=os.environ.get("DQ_CACHE_DIR", ".cache"))
    except tg.TaggerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    separator = model.card.get("input", {}).get("separator") or "|"
    try:
        tg.write_prediction(prediction, args.out or sys.stdout, separator=separator, fmt=fmt)
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    n, bad = len(prediction.rows.frame), len(prediction.rows.problems)
    card = model.card
    print(f"tagged {n - bad} of {n} rows of {args.input}"
          + (f" ({bad} could not be tagged: see column {tg.PROBLEM_COLUMN!r}; first: "
             f"{next(iter(prediction.rows.problems.values()))})" if bad else "")
          + (f" -> {args.out}" if args.out else "")
          + f"; tagger {model_dir} (audit {card.get('training', {}).get('audit_run_id')}, created "
            f"{card.get('created_at')}, out-of-fold micro F1 {card['metrics']['oof_micro_f1']:.3f})",
          file=sys.stderr)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """The audit history of one dataset, oldest first; exit 2 for an unknown dataset (the audited ones named)
    or an unusable --db."""
    from dq_pipeline import history
    from dq_pipeline.store import StoreError

    if not Path(args.db).exists():
        print(f"error: no DuckDB file at {args.db}: audit a dataset first or pass --db (or set DQ_DUCKDB_PATH)",
              file=sys.stderr)
        return 2
    try:
        frame = history.audit_history(args.db, args.dataset)
    except (history.HistoryError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(history.format_history(frame, args.dataset))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from dq_pipeline.store import default_db_path

    parser = argparse.ArgumentParser(
        prog="dq-pipeline",
        description="Audit multi-label datasets (image, text, tabular) for wrong and missing tags, ambiguous "
                    "examples, outliers and near-duplicates; results go to a DuckDB file.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    db_help = f"DuckDB file (default: $DQ_DUCKDB_PATH or {default_db_path()})"
    verbose_help = ("log every Dagster event, with stack traces (default: the pipeline's own progress "
                    "messages; a failure's reason is printed first either way)")

    p = sub.add_parser("audit", help="audit one dataset folder (holding a dataset.yaml) through Dagster",
                       description="Runs the Dagster audit job for one dataset; exits 1 with the reason when "
                                   "a gate fails, 2 on usage errors.",
                       epilog="Environment: DQ_CACHE_DIR = cache folder (default .cache; '' disables); "
                              "DQ_EMBEDDING_PRECISION = auto (default: text models in bfloat16 where the CPU "
                              "multiplies it natively, else float32) | float32 | bfloat16; DQ_RAY_ADDRESS = embed "
                              "on a Ray cluster ('local', 'auto', 'ray://host:10001'); DAGSTER_HOME = a persistent "
                              "Dagster instance (the run then shows in the UI).")
    p.add_argument("path", help="dataset folder, e.g. data/mulan_emotions")
    p.add_argument("--db", default=default_db_path(), help=db_help)
    p.add_argument("--verbose", action="store_true", help=verbose_help)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("demo", help="audit every dataset under --data-dir and print a summary per dataset")
    p.add_argument("--data-dir", default=os.environ.get("DQ_DATA_DIR", "data"))
    p.add_argument("--db", default=default_db_path(), help=db_help)
    p.add_argument("--verbose", action="store_true", help=verbose_help)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("review", help="serve the review web app (queue, example cards, decisions) over the DuckDB file",
                       description="Web app to review flagged examples and store decisions (table reviews); "
                                   "binds 127.0.0.1 by default. POSTs need the per-start token it prints.")
    p.add_argument("--db", default=default_db_path(), help=db_help)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("export", help="write a dataset's corrected labels in its original source format",
                       description="Reads latest_curated_labels and writes the source file with corrected "
                                   "tags (same columns, separator and ids); excluded examples are dropped.")
    p.add_argument("dataset", help="dataset name (folder under --data-dir)")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--data-dir", default=os.environ.get("DQ_DATA_DIR", "data"))
    p.add_argument("--db", default=default_db_path(), help=db_help)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("reviews", help="export or import review decisions (table reviews) as CSV or JSONL",
                       description="Review decisions in bulk: export every decision, or import a file of "
                                   "them (columns dataset, example_id, action, labels, reviewer; CSV tags "
                                   "'|'-joined), all or nothing.")
    reviews_sub = p.add_subparsers(dest="reviews_command", required=True)
    q = reviews_sub.add_parser("export", help="write the decisions (default: CSV to stdout)")
    q.add_argument("--dataset", default=None, help="only this dataset's decisions")
    q.add_argument("--out", default=None, help="output file, .csv (tags '|'-joined) or .jsonl (lists)")
    q.add_argument("--db", default=default_db_path(), help=db_help)
    q.set_defaults(func=cmd_reviews)
    q = reviews_sub.add_parser("import", help="store the decisions of a .csv or .jsonl file (all or nothing)")
    q.add_argument("file", help="FILE.csv or FILE.jsonl")
    q.add_argument("--db", default=default_db_path(), help=db_help)
    q.set_defaults(func=cmd_reviews)

    p = sub.add_parser(
        "predict", help="tag new rows with the tagger trained on a dataset's curated labels",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tags new rows of the same kind as DATASET with its latest tagger (the 'tagger' asset: the\n"
                    "audit's embedder + classifier trained on the curated labels, per-tag thresholds), read from\n"
                    "<--db>.models/DATASET/. Output mirrors the input: its columns plus predicted_labels (tags\n"
                    "joined with the dataset's separator in CSV, a list in JSONL) and prob_<tag> per tag, in [0, 1].\n"
                    "Rows that cannot be tagged (empty text, unreadable image, non-number) are kept, with\n"
                    "predict_problem saying why. Exit 0 written; 2 no tagger / input does not match the model\n"
                    "card; 1 training or writing failed.",
        epilog="INPUT per modality (what the model card expects):\n"
               "  text     CSV/TSV/JSONL/parquet with the dataset's text column\n"
               "  image    a folder of images (searched recursively), or a CSV/JSONL with the image column\n"
               "           (paths relative to that file)\n"
               "  tabular  CSV/TSV/JSONL/parquet with the dataset's feature columns (others are passed through)\n"
               "examples:\n"
               "  dq-pipeline predict goemotions_sample new_comments.csv --out tagged.csv\n"
               "  dq-pipeline predict miml_scenes photos/ > tags.csv\n"
               "  dq-pipeline predict mulan_emotions new.jsonl --train   # audit + train first")
    p.add_argument("dataset", help="dataset name whose tagger to use (its folder under --data-dir)")
    p.add_argument("input", help="file (.csv .tsv .jsonl .parquet) or folder of images to tag")
    p.add_argument("--out", default=None, help="output file, in the input's format (default: stdout; a folder "
                                               "of images gives CSV)")
    p.add_argument("--db", default=default_db_path(), help=db_help + "; taggers live in <db>.models/")
    p.add_argument("--data-dir", default=os.environ.get("DQ_DATA_DIR", "data"), help="folder of dataset folders "
                                                                                   "(for --train)")
    p.add_argument("--train", action="store_true", help="first audit DATASET and train its tagger through Dagster "
                                                       "(job train_tagger; cached stages are reused)")
    p.add_argument("--verbose", action="store_true", help=verbose_help)
    p.set_defaults(func=cmd_predict)


    p = sub.add_parser("history", help="print a dataset's audit history: health, open issues by type, changes",
                       description="One line per successful audit, oldest first: time, run id, health score, "
                                   "open issues by type, expected error rate (when recorded), examples added / "
                                   "removed / edited and issues new / resolved / reopened since the previous audit.")
    p.add_argument("dataset", help="dataset name (as audited)")
    p.add_argument("--db", default=default_db_path(), help=db_help)
    p.set_defaults(func=cmd_history)
    return parser


#: Checked audit settings whose default an environment variable sets (named in the error when its value is refused).
_SETTING_ENV = {"embedding_precision": "DQ_EMBEDDING_PRECISION"}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from dq_pipeline.manifest import ManifestError
    from dq_pipeline.runtime import fewer_collections

    try:
        with fewer_collections():  # the whole command, the job's imports and Dagster's set-up included
            return args.func(args)
    except ManifestError as exc:  # a usage error: the message names the file and what to fix
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a setting from the environment ($DQ_EMBEDDING_PRECISION, ...) is refused
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            env = f" (from ${_SETTING_ENV[field]})" if field in _SETTING_ENV and os.environ.get(_SETTING_ENV[field]) \
                else ""
            print(f"error: setting {field}{env}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
