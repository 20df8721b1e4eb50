"""The review app over HTTP as a script or an attacker meets it: a real `dq-pipeline review` server
(its own process group, a free port) over a real DuckDB file from real audits of bundled-data subsets
(GoEmotions texts with a `<script>` comment, MIML photos, MULAN flags rows). Security (cross-site POSTs,
Host header, image paths leaving the dataset folder, escaping) and the JSON API round trip.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest

from dq_pipeline_tests.conftest import DATA, REPO, stop_process_group

BIN = Path(sys.executable).parent
SCRIPT_TEXT = "<script>alert(1)</script>"
#: A comment replaced by base64: the outliers flag it as unreadable as words (tokenizer pieces per word).
UNREADABLE_TEXT = "c2VjcmV0IGtleSBtYXRlcmlhbCBmb3IgdGhlIGJhY2t1cCBqb2IgcnVubmluZyBhdCBtaWRuaWdodA=="
N_TEXT, N_IMAGE = 300, 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_subsets(root: Path, tabular: bool = False) -> Path:
    """``root/data`` with ~300 GoEmotions rows (row 6's text replaced by ``SCRIPT_TEXT``, row 9's by
    ``UNREADABLE_TEXT``), ~60 MIML photos
    (every 7th row, their image files only) and, when ``tabular``, MULAN flags as it is."""
    data = root / "data"
    text = data / "goemotions_sample"
    text.mkdir(parents=True)
    shutil.copyfile(DATA / "goemotions_sample" / "dataset.yaml", text / "dataset.yaml")
    with open(DATA / "goemotions_sample" / "comments.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:N_TEXT + 1]
    body[5][header.index("text")] = SCRIPT_TEXT
    body[8][header.index("text")] = UNREADABLE_TEXT
    with open(text / "comments.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *body])

    image = data / "miml_scenes"
    (image / "images").mkdir(parents=True)
    shutil.copyfile(DATA / "miml_scenes" / "dataset.yaml", image / "dataset.yaml")
    with open(DATA / "miml_scenes" / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:][::7][:N_IMAGE]
    with open(image / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *body])
    for row in body:
        shutil.copyfile(DATA / "miml_scenes" / row[0], image / row[0])
    if tabular:
        shutil.copytree(DATA / "mulan_flags", data / "mulan_flags")
    return data


def audit(folder: Path, db: Path) -> None:
    from dq_pipeline.defs.runner import run_audit

    outcome = run_audit(folder, db_path=str(db))
    assert outcome.success, outcome.reason()


class ReviewServer:
    """`dq-pipeline review --db DB --port P` in its own process group; ``token`` read from <db>.review-token."""

    def __init__(self, db: Path, log: Path) -> None:
        self.db, self.port = db, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "DAGSTER_TELEMETRY_DISABLED": "1"}
        self.proc = subprocess.Popen([str(BIN / "dq-pipeline"), "review", "--db", str(db), "--port", str(self.port)],
                                     cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"review server exited: {self.log_text()}"
            try:
                with urllib.request.urlopen(f"{self.base}/api/datasets", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"review server did not answer: {self.log_text()}") from None
                time.sleep(0.3)
        self.token_file = Path(f"{db}.review-token")
        self.token = self.token_file.read_text().strip()

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def stop(self) -> None:
        stop_process_group(self.proc, timeout_s=20)
        self.log.close()

    # --- HTTP (raw http.client: the path goes out exactly as written, no ../ normalisation) ---
    def request(self, method: str, path: str, body: object = None, headers: dict | None = None,
                raw: bytes | None = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json"} if data is not None and raw is None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        out = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        conn.close()
        return out

    def get_json(self, path: str) -> tuple[int, object]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def post(self, path: str, body: object, origin: str | None = "self", token: str | None = "self",
             extra: dict | None = None) -> tuple[int, object]:
        headers = dict(extra or {})
        if origin is not None:
            headers["Origin"] = self.base if origin == "self" else origin
        if token is not None:
            headers["X-DQ-Token"] = self.token if token == "self" else token
        status, _, data = self.request("POST", path, body, headers)
        return status, json.loads(data)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReviewServer, Path, Path]]:
    root = tmp_path_factory.mktemp("review_app")
    data = build_subsets(root, tabular=True)
    outside = root / "outside"
    outside.mkdir()
    db = root / "curated.duckdb"
    for name in ("miml_scenes", "goemotions_sample", "mulan_flags"):
        audit(data / name, db)
    # Hostile image paths after the audit: a photo replaced by a symlink to a file outside the folder, and
    # two stored paths (the DB edited like an attacker with write access would) that leave it.
    with open(data / "miml_scenes" / "labels.csv", newline="") as fh:
        ids = [r["image"] for r in csv.DictReader(fh)]
    shutil.copyfile(data / "miml_scenes" / ids[0], outside / "secret.jpg")
    (data / "miml_scenes" / ids[1]).unlink()
    (data / "miml_scenes" / ids[1]).symlink_to(outside / "secret.jpg")
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE examples SET payload = ? WHERE dataset = 'miml_scenes' AND example_id = ?",
                    ["../../outside/secret.jpg", ids[2]])
        con.execute("UPDATE examples SET payload = ? WHERE dataset = 'miml_scenes' AND example_id = ?",
                    [str(outside / "secret.jpg"), ids[3]])
    server = ReviewServer(db, root / "review.log")
    try:
        yield server, data, db
    finally:
        server.stop()
    assert not server.token_file.exists(), "the token file is removed when the server stops"


def _miml_ids(data: Path) -> list[str]:
    with open(data / "miml_scenes" / "labels.csv", newline="") as fh:
        return [r["image"] for r in csv.DictReader(fh)]


def _script_id(data: Path) -> str:
    with open(data / "goemotions_sample" / "comments.csv", newline="", encoding="utf-8") as fh:
        return next(r["id"] for r in csv.DictReader(fh) if r["text"] == SCRIPT_TEXT)


# ------------------------------------------------------------------------------------------- security

def test_cli_binds_loopback_by_default_and_token_file_is_private(served) -> None:
    from dq_pipeline.cli import build_parser

    server, _, _ = served
    args = build_parser().parse_args(["review"])
    assert (args.host, args.port) == ("127.0.0.1", 8765)
    assert server.token_file.stat().st_mode & 0o777 == 0o600
    assert len(server.token) >= 40
    assert server.token in server.log_text()  # printed on the console for scripts


def test_post_without_origin_or_token_is_refused(served) -> None:
    server, data, _ = served
    body = {"example_id": _miml_ids(data)[5], "action": "keep"}
    path = "/api/datasets/miml_scenes/reviews"
    assert server.post(path, body, origin=None, token=None)[0] == 403
    assert server.post(path, body, origin="self", token=None)[0] == 403  # same origin, no token
    assert server.post(path, body, origin=None, token="wrong")[0] == 403
    status, answer = server.post(path, body, origin="http://evil.example", token="self")  # foreign origin
    assert status == 403 and "cross-site" in answer["error"]
    assert server.post(path, body, origin="null", token="self")[0] == 403  # sandboxed iframe / file://
    assert server.post(path, body, origin=None, token="self",
                       extra={"Referer": "http://evil.example/page"})[0] == 403
    assert server.post("/api/datasets/miml_scenes/accept-top", {"k": 5}, origin="http://evil.example")[0] == 403
    # a plain cross-site form POST to the page route: no token field, foreign origin
    status, _, _ = server.request("POST", "/datasets/miml_scenes/accept-top", raw=b"k=50",
                                  headers={"Content-Type": "application/x-www-form-urlencoded",
                                           "Origin": "http://evil.example"})
    assert status == 403
    status, _, _ = server.request("POST", "/datasets/miml_scenes/accept-top", raw=b"k=50",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403
    status, queue = server.get_json("/api/datasets/miml_scenes/queue?state=reviewed")
    assert status == 200 and queue["total"] == 0, "nothing refused was stored"


def test_foreign_host_header_is_refused(served) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 would make the attacker's page same-origin."""
    server, _, _ = served
    status, _, body = server.request("GET", "/api/datasets", headers={"Host": f"evil.example:{server.port}"})
    assert status == 403 and b"not allowed" in body
    assert server.request("GET", "/", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_pages_send_a_strict_content_security_policy(served) -> None:
    server, _, _ = served
    status, headers, _ = server.request("GET", "/")
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_text_is_escaped_on_queue_and_card(served) -> None:
    server, data, _ = served
    sid = _script_id(data)
    status, _, page = server.request("GET", f"/datasets/goemotions_sample/examples/{quote(sid, safe='')}")
    assert status == 200
    html = page.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert SCRIPT_TEXT not in html
    status, _, page = server.request("GET", "/datasets/goemotions_sample?state=all&limit=500")
    assert status == 200 and SCRIPT_TEXT not in page.decode()
    status, detail = server.get_json(f"/api/datasets/goemotions_sample/examples/{quote(sid, safe='')}")
    assert status == 200 and detail["payload"] == SCRIPT_TEXT  # the API returns data, not HTML


def test_an_outlier_says_why_it_was_flagged(served) -> None:
    """The base64 'comment' is an outlier because its text is unreadable as words; the card and the queue say so,
    the API gives the reason; a photo or row flagged for its distance says that instead."""
    server, data, db = served
    with open(data / "goemotions_sample" / "comments.csv", newline="", encoding="utf-8") as fh:
        uid = next(r["id"] for r in csv.DictReader(fh) if r["text"] == UNREADABLE_TEXT)
    status, detail = server.get_json(f"/api/datasets/goemotions_sample/examples/{quote(uid, safe='')}")
    assert status == 200 and detail["is_outlier"] and detail["outlier_reason"] == "pieces_per_word"
    status, _, page = server.request("GET", f"/datasets/goemotions_sample/examples/{quote(uid, safe='')}")
    assert status == 200 and "unreadable as words" in page.decode() and "outlier: unreadable text" in page.decode()
    status, _, page = server.request("GET", "/datasets/goemotions_sample?issue=outlier&limit=500")
    assert status == 200 and "outlier: unreadable text" in page.decode()
    with duckdb.connect(str(db), read_only=True) as con:
        far = con.execute("SELECT dataset, example_id FROM latest_examples WHERE outlier_reason = 'knn_distance' "
                          "ORDER BY dataset, example_id LIMIT 1").fetchone()
        unflagged = con.execute("SELECT count(*) FROM latest_examples WHERE NOT is_outlier AND outlier_reason IS NOT "
                                "NULL").fetchone()[0]
    assert far is not None and unflagged == 0
    status, _, page = server.request("GET", f"/datasets/{far[0]}/examples/{quote(far[1], safe='')}")
    assert status == 200 and "far from its neighbours" in page.decode()


def test_images_are_served_only_from_inside_the_dataset_folder(served) -> None:
    server, data, _ = served
    ids = _miml_ids(data)
    good = ids[4]
    status, headers, body = server.request("GET", f"/datasets/miml_scenes/image/{quote(good, safe='')}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert body == (data / "miml_scenes" / good).read_bytes()
    for escaping in ids[1:4]:  # symlink leading out, ../ path, absolute path
        status, _, body = server.request("GET", f"/datasets/miml_scenes/image/{quote(escaping, safe='')}")
        assert status == 404, escaping
        assert body != (data / "miml_scenes" / good).read_bytes()
    for path in ("/datasets/miml_scenes/image/..%2F..%2Fetc%2Fpasswd", "/datasets/miml_scenes/image/../../etc/passwd",
                 "/datasets/miml_scenes/image/%2Fetc%2Fpasswd", "/datasets/miml_scenes/image//etc/passwd",
                 "/datasets/x/image/..%2F..%2Fetc%2Fpasswd", "/datasets/..%2F..%2Fetc/image/passwd",
                 f"/datasets/goemotions_sample/image/{quote(_script_id(data), safe='')}",
                 "/datasets/miml_scenes/image/labels.csv", "/datasets/miml_scenes/image/dataset.yaml"):
        status, _, body = server.request("GET", path)
        assert status == 404, path
        assert b"root:" not in body


def test_token_and_origin_accepted(served) -> None:
    """A script (no Origin, the token) and the pages (same Origin, the token) may store decisions."""
    server, data, db = served
    ids = _miml_ids(data)
    status, row = server.post("/api/datasets/miml_scenes/reviews", {"example_id": ids[6], "action": "keep"},
                              origin=None)
    assert status == 201 and row["action"] == "keep" and row["example_id"] == ids[6]
    status, row = server.post("/api/datasets/miml_scenes/reviews",
                              {"example_id": ids[7], "action": "set", "labels": ["sea", "desert"]},
                              extra={"Referer": f"{server.base}/datasets/miml_scenes"})
    assert status == 201 and row["labels"] == ["desert", "sea"]  # class order
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT example_id, action FROM reviews WHERE dataset = 'miml_scenes' "
                             "AND example_id IN (?, ?) ORDER BY reviewed_at", [ids[6], ids[7]]).fetchall()
    assert stored == [(ids[6], "keep"), (ids[7], "set")]


# ------------------------------------------------------------------------------------------- API

def test_api_round_trip(served) -> None:
    server, data, _ = served
    status, answer = server.get_json("/api/datasets")
    assert status == 200
    names = {d["dataset"]: d for d in answer["datasets"]}
    assert set(names) == {"goemotions_sample", "miml_scenes", "mulan_flags"}
    assert names["miml_scenes"]["modality"] == "image" and names["miml_scenes"]["n_examples"] > 40
    before = names["goemotions_sample"]["n_reviewed"]

    status, queue = server.get_json("/api/datasets/goemotions_sample/queue?issue=label_issue&limit=5")
    assert status == 200 and queue["total"] > 5 and len(queue["items"]) == 5
    severities = [i["severity"] for i in queue["items"]]
    assert severities == sorted(severities)
    assert all(i["is_label_issue"] for i in queue["items"])
    first = queue["items"][0]
    status, page2 = server.get_json("/api/datasets/goemotions_sample/queue?issue=label_issue&limit=5&offset=5")
    assert status == 200 and not {i["example_id"] for i in page2["items"]} & {i["example_id"] for i in queue["items"]}
    tag = first["tag_issues"][0]["tag"]
    kind = first["tag_issues"][0]["kind"]
    status, filtered = server.get_json(f"/api/datasets/goemotions_sample/queue?tag={quote(tag)}&kind={kind}")
    assert status == 200 and filtered["total"] >= 1
    assert all(any(t["tag"] == tag and t["kind"] == kind for t in i["tag_issues"]) for i in filtered["items"])

    eid = first["example_id"]
    status, row = server.post("/api/datasets/goemotions_sample/reviews", {"example_id": eid, "action": "accept"})
    assert status == 201 and row["action"] == "accept" and row["labels"] == first["suggested_labels"]
    status, detail = server.get_json(f"/api/datasets/goemotions_sample/examples/{quote(eid, safe='')}")
    assert status == 200 and detail["review"]["action"] == "accept" and detail["review_action"] == "accept"
    assert {t["tag"] for t in detail["tags"]} == set(server.get_json("/api/datasets/goemotions_sample")[1]["tags"])
    status, reviewed = server.get_json("/api/datasets/goemotions_sample/queue?state=reviewed&limit=500")
    assert eid in {i["example_id"] for i in reviewed["items"]}
    status, opened = server.get_json("/api/datasets/goemotions_sample/queue?state=open&limit=500")
    assert eid not in {i["example_id"] for i in opened["items"]}

    status, answer = server.post("/api/datasets/goemotions_sample/accept-top", {"k": 3, "issue": "label_issue"})
    assert status == 200 and answer["accepted"] == 3
    status, answer = server.get_json("/api/datasets")
    after = {d["dataset"]: d for d in answer["datasets"]}["goemotions_sample"]["n_reviewed"]
    assert after == before + 4


def test_api_errors(served) -> None:
    server, data, _ = served
    eid = _miml_ids(data)[8]
    reviews = "/api/datasets/miml_scenes/reviews"
    assert server.post(reviews, {"example_id": eid, "action": "delete"})[0] == 400
    assert server.post(reviews, {"example_id": eid, "action": "set", "labels": ["<b>nope</b>"]})[0] == 400
    assert server.post(reviews, {"example_id": eid, "action": "set"})[0] == 400
    assert server.post(reviews, {"example_id": eid, "action": "set", "labels": "sea"})[0] == 400
    assert server.post(reviews, {"action": "keep"})[0] == 400
    assert server.post(reviews, ["not", "an", "object"])[0] == 400
    status, answer = server.post(reviews, {"example_id": "images/nope.jpg", "action": "keep"})
    assert status == 404 and "unknown example" in answer["error"]
    assert server.post("/api/datasets/nope/reviews", {"example_id": eid, "action": "keep"})[0] == 404
    assert server.post("/api/datasets/miml_scenes/accept-top", {"k": "many"})[0] == 400
    assert server.get_json("/api/datasets/nope/queue")[0] == 404
    assert server.get_json("/api/datasets/miml_scenes/queue?issue=typo")[0] == 400
    assert server.get_json("/api/datasets/miml_scenes/queue?state=done")[0] == 400
    assert server.get_json("/api/datasets/miml_scenes/queue?limit=-1")[0] == 400
    assert server.get_json("/api/datasets/miml_scenes/queue?tag=nope")[0] == 400
    assert server.get_json("/api/datasets/miml_scenes/examples/images%2Fnope.jpg")[0] == 404
    assert server.request("GET", "/datasets/nope")[0] == 404
    assert server.request("GET", "/datasets/miml_scenes/examples/images%2Fnope.jpg")[0] == 404
    status, _, body = server.request("POST", reviews, raw=b"x" * (2 << 20),
                                     headers={"X-DQ-Token": server.token, "Content-Type": "application/json"})
    assert status in (400, 413)


def test_pages_render_every_modality(served) -> None:
    server, data, _ = served
    status, _, page = server.request("GET", "/")
    assert status == 200 and all(n in page.decode() for n in ("goemotions_sample", "miml_scenes", "mulan_flags"))
    for dataset in ("goemotions_sample", "miml_scenes", "mulan_flags"):
        status, _, page = server.request("GET", f"/datasets/{dataset}?state=all")
        assert status == 200, dataset
        html = page.decode()
        assert "Class summary" in html and "reviewed / open" in html
        assert 'id="expected-errors"' in html and "expected wrong" in html  # the estimate, with its interval
    status, listing = server.get_json("/api/datasets")
    for d in listing["datasets"]:
        assert d["expected_error_rate_lo"] <= d["expected_error_rate"] <= d["expected_error_rate_hi"]
    status, queue = server.get_json("/api/datasets/mulan_flags/queue?state=all&limit=1")
    item = queue["items"][0]
    eid = quote(item["example_id"], safe="")
    status, _, page = server.request("GET", f"/datasets/mulan_flags/examples/{eid}?pos=0")
    html = page.decode()
    assert status == 200 and '<table class="kv">' in html
    for column, value in list(json.loads(item["payload"]).items())[:5]:
        assert f"<th>{column}</th><td>{value}</td>" in html
    status, _, page = server.request("GET", f"/datasets/miml_scenes/examples/{quote(_miml_ids(data)[4], safe='')}")
    assert status == 200 and f'/datasets/miml_scenes/image/{quote(_miml_ids(data)[4], safe="")}' in page.decode()
    status, _, page = server.request("GET", "/datasets/miml_scenes?issue=nope")
    assert status == 400


# ------------------------------------------------------------------------------------------- CLI

def test_review_command_refuses_a_missing_db_and_a_taken_port(tmp_path: Path) -> None:
    missing = subprocess.run([str(BIN / "dq-pipeline"), "review", "--db", str(tmp_path / "none.duckdb")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no DuckDB file" in missing.stderr
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run([str(BIN / "dq-pipeline"), "review", "--db", str(db), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert not Path(f"{db}.review-token").exists()
