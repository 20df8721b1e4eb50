"""Review-app latency on the full GoEmotions audit (54,263 comments, 28 tags).

Issue 9's bar: the queue page and the example card served in under 300 ms median, a decision stored in under
50 ms. This script

1. builds a dataset folder ``<workdir>/goemotions`` from ``../shared/data/goemotions/goemotions.csv`` (same
   manifest as ``data/goemotions_sample``) and audits it once with ``dq-pipeline audit`` into
   ``<workdir>/audit.duckdb`` (result cache ``<workdir>/cache``); a later run reuses that DuckDB file
   (``--reaudit`` forces a new audit; it takes ~5-6 minutes on 2 cores);
2. copies it to ``<workdir>/serve.duckdb`` (so the decisions this run stores never accumulate), measures the
   baseline *in process* (no HTTP): the library calls the routes make (``review.review_queue``,
   ``review.example_detail``), each opening its own read-only DuckDB connection as the server does;
3. starts ``dq-pipeline review --db serve.duckdb --port P`` in a fresh process, reads its per-start token from
   ``serve.duckdb.review-token``, and times ``--n`` requests of each kind over one keep-alive HTTP connection
   (wall time from sending the request to the last byte of the body): a static file (HTTP + middleware floor),
   the queue page (first page, a tag-filtered page, a deep offset), the example card page, the JSON queue, the
   JSON example and POST decisions (each on a different example);
4. prints medians / p90 and writes ``bench/results/review.md``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_review.py [--workdir /tmp/dq_bench_review] [--n 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATASET = "goemotions"
MANIFEST = """modality: text
source: goemotions.csv
labels:
  column: labels
  separator: "|"
id_column: id
text_column: text
"""
BARS = {"queue page": 300.0, "example card": 300.0, "POST decision": 50.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(workdir: Path, source: Path, reaudit: bool) -> tuple[Path, float | None]:
    """The audited DuckDB file (audited now unless a previous run left it) and the audit's seconds (None = reused)."""
    folder = workdir / DATASET
    db = workdir / "audit.duckdb"
    if db.exists() and not reaudit:
        return db, None
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / "goemotions.csv")
    (folder / "dataset.yaml").write_text(MANIFEST)
    tmp = workdir / "audit.tmp.duckdb"
    tmp.unlink(missing_ok=True)
    env = {**os.environ, "DQ_CACHE_DIR": str(workdir / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("DAGSTER_HOME", None)
    print(f"auditing {folder} into {db} (takes minutes) ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(ROOT / ".venv/bin/dq-pipeline"), "audit", str(folder), "--db", str(tmp)], env=env,
                   check=True)
    seconds = time.perf_counter() - t0
    tmp.replace(db)
    return db, seconds


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def time_calls(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


class Client:
    """One keep-alive HTTP/1.1 connection; ``get`` / ``post`` return (status, body bytes)."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data

    def get(self, path: str):
        status, data = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {data[:300]!r}")
        return data

    def post_json(self, path: str, payload: dict):
        headers = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{self.port}",
                   "X-DQ-Token": self.token}
        status, data = self.request("POST", path, json.dumps(payload).encode(), headers)
        if status not in (200, 201):
            raise RuntimeError(f"POST {path} -> {status}: {data[:300]!r}")
        return data


def start_server(db: Path, port: int) -> tuple[subprocess.Popen, str]:
    token_file = Path(f"{db}.review-token")
    token_file.unlink(missing_ok=True)
    proc = subprocess.Popen([str(ROOT / ".venv/bin/dq-pipeline"), "review", "--db", str(db), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"review server exited: {proc.stdout.read()}")
        if token_file.exists() and token_file.read_text().strip():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return proc, token_file.read_text().strip()
            except OSError:
                pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("review server did not start within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/dq_bench_review", help="audit, cache and served DuckDB copy")
    parser.add_argument("--source", default=str(ROOT.parent / "shared/data/goemotions/goemotions.csv"))
    parser.add_argument("--n", type=int, default=50, help="requests per kind (default 50)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--reaudit", action="store_true", help="audit again even if <workdir>/audit.duckdb exists")
    parser.add_argument("--dataset", default=DATASET,
                        help="dataset to serve from <workdir>/audit.duckdb (default goemotions; another name only "
                             "for a dry run on an audit.duckdb you put there)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/review.md"))
    args = parser.parse_args()
    dataset = args.dataset

    from dq_pipeline import review

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    audited, audit_seconds = prepare(workdir, Path(args.source), args.reaudit and dataset == DATASET)
    db = workdir / "serve.duckdb"
    shutil.copyfile(audited, db)
    for stale in workdir.glob("serve.duckdb.wal"):
        stale.unlink()

    n = args.n
    first = review.review_queue(str(db), dataset, limit=max(n, 50))
    total = first["total"]
    ids = [item["example_id"] for item in first["items"]][:n]
    overview = review.dataset_overview(str(db), dataset)
    n_examples = overview.get("n_examples") or overview.get("examples")
    tag_counts: dict[str, int] = {}
    for item in review.review_queue(str(db), dataset, limit=2000)["items"]:
        for t in item["tag_issues"]:
            tag_counts[t["tag"]] = tag_counts.get(t["tag"], 0) + 1
    tag = max(tag_counts, key=tag_counts.get) if tag_counts else None
    deep = max(0, (total - 50) // 50 * 50)  # the last full page
    print(f"{dataset}: {n_examples} examples, {total} in the open queue; filter tag={tag}; deep offset {deep}",
          flush=True)

    # baseline: the library calls the routes make, in process, no HTTP (each opens its own read-only connection)
    base = {
        "review_queue() first page": time_calls(lambda i: review.review_queue(str(db), dataset, limit=50), n),
        "review_queue() tag filter": time_calls(
            lambda i: review.review_queue(str(db), dataset, tag=tag, limit=50), n),
        "review_queue() deep offset": time_calls(
            lambda i: review.review_queue(str(db), dataset, limit=50, offset=deep), n),
        "example_detail()": time_calls(lambda i: review.example_detail(str(db), dataset, ids[i % len(ids)]), n),
    }

    port = args.port or free_port()
    proc, token = start_server(db, port)
    try:
        c = Client(port, token)
        ds = quote(dataset, safe="")
        q_tag = urlencode({"tag": tag}) if tag else ""
        for path in ("/", f"/datasets/{ds}", "/static/style.css"):  # warm-up: imports, templates, first query
            c.get(path)
        eid = lambda i: quote(str(ids[i % len(ids)]), safe="")  # noqa: E731
        http_rows = {
            "static file (/static/style.css)": time_calls(lambda i: c.get("/static/style.css"), n),
            "queue page, first page": time_calls(lambda i: c.get(f"/datasets/{ds}"), n),
            f"queue page, tag={tag}": time_calls(lambda i: c.get(f"/datasets/{ds}?{q_tag}"), n),
            f"queue page, offset={deep}": time_calls(lambda i: c.get(f"/datasets/{ds}?offset={deep}"), n),
            "example card page": time_calls(lambda i: c.get(f"/datasets/{ds}/examples/{eid(i)}"), n),
            "JSON queue, first page": time_calls(lambda i: c.get(f"/api/datasets/{ds}/queue?limit=50"), n),
            f"JSON queue, offset={deep}": time_calls(
                lambda i: c.get(f"/api/datasets/{ds}/queue?limit=50&offset={deep}"), n),
            "JSON example": time_calls(lambda i: c.get(f"/api/datasets/{ds}/examples/{eid(i)}"), n),
        }
        actions = ("accept", "keep", "exclude")
        http_rows["POST decision (each a new example)"] = time_calls(
            lambda i: c.post_json(f"/api/datasets/{ds}/reviews",
                                  {"example_id": str(ids[i % len(ids)]), "action": actions[i % 3]}), n)
        after = json.loads(c.get(f"/api/datasets/{ds}/queue?state=reviewed&limit=1"))
        queue_page_bytes = len(c.get(f"/datasets/{ds}"))
        card_bytes = len(c.get(f"/datasets/{ds}/examples/{eid(0)}"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def fmt_row(name: str, ms: list[float]) -> str:
        return f"| {name} | {statistics.median(ms):.1f} | {pct(ms, 0.9):.1f} | {max(ms):.1f} |"

    lines = ["| request | median ms | p90 ms | max ms |", "|---|---:|---:|---:|"]
    lines += [fmt_row(k, v) for k, v in http_rows.items()]
    base_lines = ["| library call (in process, no HTTP) | median ms | p90 ms | max ms |", "|---|---:|---:|---:|"]
    base_lines += [fmt_row(k, v) for k, v in base.items()]
    med = {k: statistics.median(v) for k, v in http_rows.items()}
    queue_med = max(v for k, v in med.items() if k.startswith("queue page"))
    verdict = [
        f"- queue page (slowest of the three kinds): median {queue_med:.1f} ms — bar 300 ms: "
        f"**{'met' if queue_med < 300 else 'NOT met'}**",
        f"- example card page: median {med['example card page']:.1f} ms — bar 300 ms: "
        f"**{'met' if med['example card page'] < 300 else 'NOT met'}**",
        f"- POST decision: median {med['POST decision (each a new example)']:.1f} ms — bar 50 ms: "
        f"**{'met' if med['POST decision (each a new example)'] < 50 else 'NOT met'}**",
    ]
    import duckdb

    cpu = platform.processor() or platform.machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_review.py " + " ".join(sys.argv[1:])
    report = "\n".join([
        "# Review app latency (full GoEmotions audit)",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {cpu}, {os.cpu_count()} CPU(s) (shared with other work), {platform.platform()}, Python "
        f"{platform.python_version()}, duckdb {duckdb.__version__}; {now}; load average at the end (1/5/15 min) {load}.  ",
        f"Data: `../shared/data/goemotions/goemotions.csv` audited with `dq-pipeline audit` (default settings) — "
        f"{n_examples} examples, {total} flagged in the open queue; "
        + (f"audit took {audit_seconds / 60:.1f} min in this run." if audit_seconds is not None else
           "the audit (DuckDB file) was reused from an earlier run of this script.")
        + f" {n} requests per row, sequential, one keep-alive connection, client and server on the same "
        f"machine; the tag filter is the tag with the most tag issues among the 2,000 most severe ({tag}); "
        f"the deep page is the last full page (offset {deep}). Queue page {queue_page_bytes / 1024:.0f} KiB, "
        f"example card {card_bytes / 1024:.0f} KiB of HTML.",
        "",
        "## Bars (issue 9)",
        "",
        *verdict,
        "",
        "## Served by `dq-pipeline review` (uvicorn, one process)",
        "",
        *lines,
        "",
        f"{after['total']} decisions stored by the POST row (read back through `state=reviewed`).",
        "",
        "## Baseline: the same queries without HTTP",
        "",
        *base_lines,
        "",
        "The static file is the floor of HTTP + Starlette + the app's middleware; the library calls are the DuckDB "
        "side (connection open, query, row conversion). Server time over both = template rendering and JSON encoding.",
        "",
        "## What these numbers do not show",
        "",
        "- One client, sequential requests: no concurrency (the app runs DuckDB calls one at a time, so "
        "concurrent users queue behind each other), no browser (no rendering, JS, image or CSS fetches, network).",
        "- Text only: no image thumbnails are served (an image dataset's card also fetches its picture), and "
        "tabular cards are not measured.",
        "- A warm OS file cache and a warmed-up server (three untimed requests first); a cold first request "
        "after start is slower.",
        "- Decisions go to a fresh copy of the audit with an empty `reviews` table; a table with many "
        "thousands of decisions, and the `latest_examples` view joining it, are not measured here.",
        "- 2 shared CPU cores: other processes on the machine add noise, mostly to p90/max.",
        "",
    ])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print("\n".join(lines + [""] + base_lines + [""] + verdict))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
