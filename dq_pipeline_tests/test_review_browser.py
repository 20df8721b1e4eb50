"""The review app as a person meets it: Playwright driving Debian's chromium against a real
`dq-pipeline review` server over a real DuckDB file from real audits (MIML photos and GoEmotions texts
subsets). Review three examples with the keyboard, reload and see them stored, accept the top K, export
the corrected file, re-audit and find the decisions kept. Screenshots land in $DQ_SCREENSHOT_DIR (the
README's, docs/review/, are retaken with ``DQ_SCREENSHOT_DIR=docs/review``), else in a temporary folder, so
that a test run leaves the checkout unchanged.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from dq_pipeline_tests.test_review_app import SCRIPT_TEXT, ReviewServer, audit, build_subsets

BIN = Path(sys.executable).parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("DQ_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "dq_review_shots")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is required for the browser tests: apt-get install chromium "
                    "(.ci/run installs it)")
    root = tmp_path_factory.mktemp("review_browser")
    data = build_subsets(root)
    db = root / "curated.duckdb"
    for name in ("miml_scenes", "goemotions_sample"):
        audit(data / name, db)
    server = ReviewServer(db, root / "review.log")
    try:
        yield {"server": server, "data": data, "db": db, "root": root}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(env: dict):
    from playwright.sync_api import sync_playwright

    dialogs: list[tuple[str, str]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.set_default_timeout(60_000)

        def on_dialog(dialog) -> None:
            dialogs.append((dialog.type, dialog.message))
            dialog.accept() if dialog.type == "confirm" else dialog.dismiss()

        page.on("dialog", on_dialog)
        page.dialogs = dialogs  # type: ignore[attr-defined]
        yield page
        browser.close()
    assert not [d for d in dialogs if d[0] != "confirm"], f"unexpected dialogs (script ran?): {dialogs}"


def _card_id(page) -> str:
    return page.locator("#card").get_attribute("data-example-id")


def _ready(page) -> None:
    """The page's script has bound its keys."""
    page.wait_for_selector("body[data-ready]", state="attached")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def _labels(path: Path, id_column: str) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {r[id_column]: [t for t in r["labels"].split("|") if t] for r in csv.DictReader(fh)}


def test_keyboard_review_persists_and_survives_export_and_reaudit(env: dict, page) -> None:
    server, data, db = env["server"], env["data"], env["db"]
    page.goto(f"{server.base}/datasets/miml_scenes")
    page.wait_for_load_state("networkidle")
    _ready(page)
    assert page.locator("#n-reviewed").inner_text() == "0"
    n_open = int(page.locator("#n-open").inner_text())
    assert n_open >= 3
    _shot(page, "queue.png")

    page.keyboard.press("Enter")  # opens the first (most severe) open example
    page.wait_for_selector("#card")
    page.wait_for_load_state("networkidle")
    _ready(page)
    assert page.locator("img.photo").evaluate("img => img.complete && img.naturalWidth > 0")

    decided: dict[str, str] = {}
    for key, action in (("a", "accept"), ("k", "keep"), ("x", "exclude")):
        current = _card_id(page)
        with page.expect_navigation():
            page.keyboard.press(key)
        page.wait_for_selector("#card")
        _ready(page)
        decided[current] = action
        assert _card_id(page) != current, "the card moved on to the next open example"
        assert _card_id(page) not in decided
    page.reload()
    assert page.locator("#n-reviewed").inner_text() == "3"
    assert int(page.locator("#n-open").inner_text()) == n_open - 3

    page.goto(f"{server.base}/datasets/miml_scenes?state=reviewed")
    rows = page.locator("tr.row")
    assert rows.count() == 3
    shown = {rows.nth(i).locator("a.open").inner_text(): rows.nth(i).locator(".state").inner_text()
             for i in range(3)}
    assert shown == decided
    page.goto(f"{server.base}/datasets/miml_scenes?state=open")
    assert not set(decided) & {page.locator("tr.row a.open").nth(i).inner_text()
                               for i in range(page.locator("tr.row").count())}

    # export: the file carries the decisions
    given = _labels(data / "miml_scenes" / "labels.csv", "image")
    _, detail = server.get_json(f"/api/datasets/miml_scenes/examples/{quote(next(iter(decided)), safe='')}")
    accepted_labels = detail["suggested_labels"]
    out = env["root"] / "miml_fixed.csv"
    done = subprocess.run([str(BIN / "dq-pipeline"), "export", "miml_scenes", "--out", str(out), "--data-dir",
                           str(data), "--db", str(db)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    fixed = _labels(out, "image")
    for eid, action in decided.items():
        if action == "exclude":
            assert eid not in fixed
        elif action == "keep":
            assert fixed[eid] == given[eid]
        else:
            assert sorted(fixed[eid]) == sorted(accepted_labels)
    assert len(fixed) == len(given) - 1

    # a second audit of unchanged data keeps every decision
    audit(data / "miml_scenes", db)
    page.goto(f"{server.base}/datasets/miml_scenes?state=reviewed")
    assert page.locator("#n-reviewed").inner_text() == "3"
    rows = page.locator("tr.row")
    assert {rows.nth(i).locator("a.open").inner_text(): rows.nth(i).locator(".state").inner_text()
            for i in range(rows.count())} == decided
    assert page.locator(".s-reopened").count() == 0

    # the screenshot of an image card: the most severe open label issue (its flagged tags show)
    page.goto(f"{server.base}/datasets/miml_scenes?issue=label_issue")
    page.locator("tr.row a.open").first.click()
    page.wait_for_selector("#card")
    page.wait_for_load_state("networkidle")
    assert page.locator("img.photo").evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.locator("table.tags .flag").count() >= 1
    _shot(page, "image_card.png")


def test_script_text_renders_as_text_and_accept_top_k(env: dict, page) -> None:
    server, data = env["server"], env["data"]
    with open(data / "goemotions_sample" / "comments.csv", newline="", encoding="utf-8") as fh:
        sid = next(r["id"] for r in csv.DictReader(fh) if r["text"] == SCRIPT_TEXT)
    page.goto(f"{server.base}/datasets/goemotions_sample/examples/{quote(sid, safe='')}")
    page.wait_for_load_state("networkidle")
    assert page.locator("p.text").inner_text() == SCRIPT_TEXT
    assert page.evaluate("() => document.querySelectorAll('main script').length") == 0

    # a text card worth looking at: the most severe open label issue, edit panel open
    page.goto(f"{server.base}/datasets/goemotions_sample?issue=label_issue")
    page.locator("tr.row a.open").first.click()
    page.wait_for_selector("#card")
    _ready(page)
    page.keyboard.press("e")
    assert page.locator("#edit").is_visible()
    _shot(page, "text_card.png")
    page.keyboard.press("Escape")
    assert not page.locator("#edit").is_visible()

    # edit tags: check exactly one box, Enter saves as 'set'
    current = _card_id(page)
    page.keyboard.press("e")
    boxes = page.locator('#edit input[name="tag"]')
    for i in range(boxes.count()):
        boxes.nth(i).set_checked(False)
    boxes.nth(0).check()
    chosen = boxes.nth(0).get_attribute("value")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    _, detail = server.get_json(f"/api/datasets/goemotions_sample/examples/{quote(current, safe='')}")
    assert detail["review"]["action"] == "set" and detail["review"]["labels"] == [chosen]

    page.goto(f"{server.base}/datasets/goemotions_sample?issue=label_issue")
    _ready(page)
    before = int(page.locator("#n-reviewed").inner_text())
    top = [page.locator("tr.row a.open").nth(i).inner_text() for i in range(5)]
    page.locator("form.bulk input[name=k]").fill("5")
    with page.expect_navigation():
        page.locator("form.bulk button").click()
    assert "accepted the suggestions of 5" in page.locator(".notice").inner_text()
    assert int(page.locator("#n-reviewed").inner_text()) == before + 5
    _, reviewed = server.get_json("/api/datasets/goemotions_sample/queue?state=reviewed&limit=500")
    actions = {i["example_id"]: i["review_action"] for i in reviewed["items"]}
    assert all(actions.get(eid) == "accept" for eid in top)
    assert ("confirm", "Accept the suggested tags for the top K examples of this filter?") in page.dialogs


def test_an_unreadable_text_outlier_says_why_in_the_browser(env: dict, page) -> None:
    """The base64 'comment' of the fixture: its queue row's badge and its card tell the reviewer it was flagged as
    unreadable as words, not for its distance."""
    from dq_pipeline_tests.test_review_app import UNREADABLE_TEXT

    server, data = env["server"], env["data"]
    with open(data / "goemotions_sample" / "comments.csv", newline="", encoding="utf-8") as fh:
        uid = next(r["id"] for r in csv.DictReader(fh) if r["text"] == UNREADABLE_TEXT)
    page.goto(f"{server.base}/datasets/goemotions_sample?issue=outlier&state=all")
    page.wait_for_load_state("networkidle")
    assert page.locator("span.badge.b-out", has_text="outlier: unreadable text").count() >= 1
    page.goto(f"{server.base}/datasets/goemotions_sample/examples/{quote(uid, safe='')}")
    page.wait_for_load_state("networkidle")
    assert page.locator("dl.scores").inner_text().count("unreadable as words") == 1
    assert page.locator("span.badge.b-out").first.inner_text() == "outlier: unreadable text"
