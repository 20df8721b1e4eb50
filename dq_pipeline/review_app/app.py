"""Starlette app: pages (Jinja2, autoescaped), image thumbnails served only from inside a dataset's
folder, and the JSON API. Every state-changing request passes :func:`_check_post` (see README,
"Reviewing flagged examples": Host allow-list, same-origin ``Origin``/``Referer``, per-start token)."""

from __future__ import annotations

import datetime as _dt
import decimal
import hmac
import json
import math
import mimetypes
import os
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dq_pipeline import review
from dq_pipeline.issues.outliers import OUTLIER_REASONS
from dq_pipeline.store import StoreError

HERE = Path(__file__).resolve().parent
TOKEN_HEADER = "X-DQ-Token"
STATES = ("open", "reviewed", "all")
KINDS = ("missing", "incorrect")
MAX_LIMIT = 500
MAX_BODY = 1 << 20  # a decision is a few hundred bytes; refuse anything over 1 MiB
# Only images are ever served from a dataset folder; anything else is a 404.
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
               ".webp": "image/webp", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}
SECURITY_HEADERS = {
    # No inline script or style: a text that slipped past escaping still could not run.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def token_file_for(db_path: str | os.PathLike) -> Path:
    """Where ``dq-pipeline review`` writes its per-start token: ``<db>.review-token`` (mode 0600)."""
    return Path(f"{db_path}.review-token")


# ---------------------------------------------------------------------------------------------- JSON


def _plain(value: Any) -> Any:
    """DuckDB/numpy/pandas values as JSON: datetimes ISO 8601, NaN/NaT -> null, arrays -> lists."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _plain(value.tolist())
    if hasattr(value, "isoformat"):  # pandas Timestamp
        try:
            return value.isoformat()
        except ValueError:  # NaT
            return None
    return str(value)


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(_plain(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _error(status: int, message: str) -> _JSON:
    return _JSON({"error": message}, status_code=status)


# ------------------------------------------------------------------------------------------ helpers


def _fmt(value: Any, digits: int = 3) -> str:
    """A score that reads well: 3 significant digits, never a wall of 0.000."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 0:
            return f"{0:.{digits}f}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 0.1:
            return f"{value:.{digits}f}"
        if abs(value) >= 0.001:  # 0.00225, 0.00236: distinct, where 3 decimals would read 0.002 twice
            return f"{value:.{digits}g}"
        return f"{value:.{digits - 1}e}"
    return str(value)


def _prob(value: Any) -> str:
    """A probability: 3 decimals, ``<0.001`` below."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = float(value)
    return "<0.001" if 0 < v < 0.0005 else f"{v:.3f}"


def _pct(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(v) else max(0.0, min(100.0, v * 100.0))


def _health(value: Any) -> str:
    """A CSS class for a 0-1 health score."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "unknown"
    return "good" if v >= 0.8 else "fair" if v >= 0.6 else "poor"


def _when(value: Any) -> str:
    """A timestamp to the minute (``2026-12-02 03:21``)."""
    if value is None:
        return "–"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)[:16].replace("T", " ")


def _url_id(example_id: Any) -> str:
    return quote(str(example_id), safe="")


def _tabular(payload: Any) -> list[tuple[str, Any]] | None:
    if not isinstance(payload, str):
        return None
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    return list(obj.items()) if isinstance(obj, dict) else None


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=_fmt, prob=_prob, pct=_pct, health=_health, when=_when, url_id=_url_id, tabular=_tabular)
    env.globals["outlier_reasons"] = OUTLIER_REASONS
    return env


def _query_filters(request: Request) -> dict[str, Any]:
    """The queue filter of a request's query string, validated (bad values -> 400)."""
    q = request.query_params
    issue = q.get("issue") or None
    tag = q.get("tag") or None
    kind = q.get("kind") or None
    state = q.get("state") or "open"
    if issue is not None and issue not in review.ISSUES:
        raise HTTPException(400, f"issue must be one of {', '.join(review.ISSUES)} (got {issue!r})")
    if kind is not None and kind not in KINDS:
        raise HTTPException(400, f"kind must be missing or incorrect (got {kind!r})")
    if state not in STATES:
        raise HTTPException(400, f"state must be one of {', '.join(STATES)} (got {state!r})")
    return {"issue": issue, "tag": tag, "kind": kind, "state": state}


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer (got {raw!r})") from None
    if not lo <= value <= hi:
        raise HTTPException(400, f"{name} must be between {lo} and {hi} (got {value})")
    return value


def _filter_query(filters: dict[str, Any], **extra: Any) -> str:
    items = {k: v for k, v in {**filters, **extra}.items() if v not in (None, "")}
    return urlencode(items)


def _is_inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives / mix of absolute and relative
        return False


# -------------------------------------------------------------------------------------------- the app


class ReviewApp:
    """Routes over one DuckDB file. DuckDB calls run in the thread pool, one at a time (one process
    opens the file with one configuration; a review app is one person's tool)."""

    def __init__(self, db_path: str | os.PathLike, token: str, allowed_hosts: list[str] | None) -> None:
        self.db_path = str(db_path)
        self.token = token
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.env = _environment()
        self._lock = threading.Lock()

    # --- data access (all SQL lives in dq_pipeline.review) ---
    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return fn(self.db_path, *args, **kwargs)
        return await run_in_threadpool(locked)

    async def dataset_or_404(self, dataset: str) -> dict[str, Any]:
        return await self.call(review.dataset_overview, dataset)  # ReviewError(404) when unknown

    async def example_or_404(self, dataset: str, example_id: str) -> dict[str, Any]:
        return await self.call(review.example_detail, dataset, example_id)

    # --- security ---
    def check_host(self, request: Request) -> None:
        """DNS rebinding: a page served under a foreign host name is refused (it would be same-origin
        with the attacker's site)."""
        if self.allowed_hosts is None:
            return
        host = (request.headers.get("host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host not in self.allowed_hosts and name not in self.allowed_hosts:
            raise HTTPException(403, f"host {host!r} is not allowed (this server answers to "
                                     f"{', '.join(sorted(self.allowed_hosts))})")

    def check_post(self, request: Request, form_token: str | None = None) -> None:
        """A state-changing request must (1) come from this app's own origin when the client says where
        it comes from (``Origin``, else ``Referer``), and (2) carry the per-start token (header
        ``X-DQ-Token``, or the form field ``_token`` for the pages' plain forms). A cross-site page can
        neither read the token (no CORS) nor set the header on a simple request."""
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        origin = request.headers.get("origin")
        if origin is None and request.headers.get("referer"):
            parts = urlsplit(request.headers["referer"])
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin is not None and origin.lower() != own:
            raise HTTPException(403, f"cross-site request refused (origin {origin!r} is not {own!r})")
        sent = request.headers.get(TOKEN_HEADER) or form_token or ""
        if not hmac.compare_digest(sent.encode(), self.token.encode()):
            raise HTTPException(403, f"missing or wrong {TOKEN_HEADER} token (pages embed it; scripts read "
                                     "it from the console or <db>.review-token)")

    # --- rendering ---
    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(token=self.token, path=request.url.path,
                                                  actions=review.ACTIONS, issues=review.ISSUES, **context)
        return HTMLResponse(html, status_code=status)

    # --- pages ---
    async def index(self, request: Request) -> Response:
        datasets = await self.call(review.list_datasets)
        return self.render(request, "index.html", datasets=datasets, title="Datasets")

    async def dataset_page(self, request: Request) -> Response:
        dataset = request.path_params["dataset"]
        overview = await self.dataset_or_404(dataset)
        filters = _query_filters(request)
        limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        queue = await self.call(review.review_queue, dataset, limit=limit, offset=offset, **filters)
        hist = await self.call(review.dataset_history, dataset)
        return self.render(request, "dataset.html", title=dataset, ds=overview, queue=queue, filters=filters, hist=hist,
                           limit=limit, offset=offset, qs=lambda **kw: _filter_query(filters, **kw),
                           notice=request.query_params.get("notice"))

    async def example_page(self, request: Request) -> Response:
        dataset, example_id = request.path_params["dataset"], request.path_params["example_id"]
        overview = await self.dataset_or_404(dataset)
        ex = await self.example_or_404(dataset, example_id)
        filters = _query_filters(request)
        pos = _int_param(request, "pos", -1, -1, 10**9)
        prev_id = next_id = None
        if pos >= 0:
            around = await self.call(review.review_queue, dataset, limit=3, offset=max(pos - 1, 0), **filters)
            ids = [i["example_id"] for i in around["items"]]
            if pos > 0 and ids:
                prev_id = ids[0]
            rest = ids[1:] if pos > 0 else ids
            rest = [i for i in rest if i != ex["example_id"]]
            next_id = rest[0] if rest else None

        def order(t: dict) -> tuple:  # flagged first, then given or suggested, then by probability
            return not t.get("kind"), not (t.get("given") or t.get("suggested")), -(t.get("probability") or 0.0)

        tag_rows = sorted(ex.get("tags") or [], key=order)

        def shown(t: dict) -> bool:  # many tags: the unlikely, unflagged ones fold away
            return len(tag_rows) <= 10 or bool(t.get("kind") or t.get("given") or t.get("suggested")
                                               or (t.get("probability") or 0) >= 0.05)

        return self.render(request, "example.html", title=f"{dataset} · {example_id}", ds=overview, ex=ex,
                           tag_rows=[t for t in tag_rows if shown(t)],
                           other_tags=[t for t in tag_rows if not shown(t)],
                           filters=filters, pos=pos, prev_id=prev_id, next_id=next_id,
                           qs=lambda **kw: _filter_query(filters, **kw))

    async def image(self, request: Request) -> Response:
        """The example's image, looked up in the DB (never a path from the request), served only when
        its real path (symlinks resolved) lies inside the dataset folder's real path."""
        dataset, example_id = request.path_params["dataset"], request.path_params["example_id"]
        try:
            ex = await self.call(review.example_detail, dataset, example_id)
        except review.ReviewError:
            raise HTTPException(404, "no such image") from None
        payload, folder = ex.get("payload"), ex.get("folder")
        if ex.get("modality") != "image" or not isinstance(payload, str) or not payload or not folder:
            raise HTTPException(404, "no such image")
        root = os.path.realpath(folder)
        target = os.path.realpath(os.path.join(root, payload))
        suffix = os.path.splitext(target)[1].lower()
        if (not _is_inside(target, root) or target == root or not os.path.isfile(target)
                or suffix not in IMAGE_TYPES):
            raise HTTPException(404, "no such image")
        return FileResponse(target, media_type=IMAGE_TYPES[suffix], headers={"Cache-Control": "private, max-age=300"})

    async def bulk_accept_form(self, request: Request) -> Response:
        dataset = request.path_params["dataset"]
        body = await request.body()
        if len(body) > MAX_BODY:
            raise HTTPException(413, "request too large")
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        self.check_post(request, form.get("_token"))
        await self.dataset_or_404(dataset)
        filters = {k: form.get(k) or None for k in ("issue", "tag", "kind")}
        try:
            k = int(form.get("k", ""))
        except ValueError:
            raise HTTPException(400, "k must be an integer") from None
        n = await self.call(review.accept_top, dataset, k, **filters)
        back = _filter_query({**filters, "state": form.get("state") or "open"},
                             notice=f"accepted the suggestions of {n} example(s)")
        return RedirectResponse(f"/datasets/{quote(dataset, safe='')}?{back}", status_code=303)

    # --- JSON API ---
    async def api_datasets(self, request: Request) -> Response:
        return _JSON({"datasets": await self.call(review.list_datasets)})

    async def api_dataset(self, request: Request) -> Response:
        return _JSON(await self.dataset_or_404(request.path_params["dataset"]))

    async def api_history(self, request: Request) -> Response:
        return _JSON(await self.call(review.dataset_history, request.path_params["dataset"]))

    async def api_queue(self, request: Request) -> Response:
        dataset = request.path_params["dataset"]
        await self.dataset_or_404(dataset)
        filters = _query_filters(request)
        limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        queue = await self.call(review.review_queue, dataset, limit=limit, offset=offset, **filters)
        return _JSON({**queue, "limit": limit, "offset": offset, **filters})

    async def api_example(self, request: Request) -> Response:
        return _JSON(await self.example_or_404(request.path_params["dataset"], request.path_params["example_id"]))

    async def _json_body(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > MAX_BODY:
            raise HTTPException(413, "request too large")
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise HTTPException(400, "the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return data

    async def api_review(self, request: Request) -> Response:
        dataset = request.path_params["dataset"]
        self.check_post(request)
        data = await self._json_body(request)
        example_id, action, labels = data.get("example_id"), data.get("action"), data.get("labels")
        if not isinstance(example_id, (str, int)) or isinstance(example_id, bool):
            raise HTTPException(400, "example_id (a string) is required")
        if not isinstance(action, str):
            raise HTTPException(400, f"action must be one of {', '.join(review.ACTIONS)}")
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(t, str) for t in labels)):
            raise HTTPException(400, "labels must be a list of tag names")
        reviewer = data.get("reviewer") if isinstance(data.get("reviewer"), str) else None
        row = await self.call(review.record_review, dataset, str(example_id), action, labels, reviewer)
        return _JSON(row, status_code=201)

    async def api_accept_top(self, request: Request) -> Response:
        dataset = request.path_params["dataset"]
        self.check_post(request)
        data = await self._json_body(request)
        k = data.get("k")
        if not isinstance(k, int) or isinstance(k, bool):
            raise HTTPException(400, "k (an integer) is required")
        filters = {name: data.get(name) or None for name in ("issue", "tag", "kind")}
        reviewer = data.get("reviewer") if isinstance(data.get("reviewer"), str) else None
        n = await self.call(review.accept_top, dataset, k, reviewer=reviewer, **filters)
        return _JSON({"accepted": n, "k": k, **filters})


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def create_app(db_path: str | os.PathLike, *, token: str | None = None,
               allowed_hosts: tuple[str, ...] | list[str] | None = LOOPBACK_HOSTS) -> Starlette:
    """The review app over ``db_path``. ``token``: the per-start secret every POST must carry (random
    when not given; ``app.state.token``). ``allowed_hosts``: Host header names the app answers to
    (``None``: any, for a deliberate non-loopback bind)."""
    rv = ReviewApp(db_path, token or secrets.token_urlsafe(32), None if allowed_hosts is None else list(allowed_hosts))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", None) or "error"
        if isinstance(exc, review.ReviewError):
            status, detail = getattr(exc, "status", 400), str(exc)
        elif isinstance(exc, StoreError):  # no DuckDB file, not DuckDB, locked, too old and read-only
            status, detail = 503, str(exc)
        if request.url.path.startswith("/api/"):
            return _error(status, str(detail))
        return rv.render(request, "error.html", status=status, title=f"{status}", status_code=status,
                         message=str(detail))

    routes = [
        Route("/", rv.index),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/datasets/{dataset}", rv.dataset_page),
        Route("/datasets/{dataset}/examples/{example_id:path}", rv.example_page),
        Route("/datasets/{dataset}/image/{example_id:path}", rv.image),
        Route("/datasets/{dataset}/accept-top", rv.bulk_accept_form, methods=["POST"]),
        Route("/api/datasets", rv.api_datasets),
        Route("/api/datasets/{dataset}", rv.api_dataset),
        Route("/api/datasets/{dataset}/queue", rv.api_queue),
        Route("/api/datasets/{dataset}/history", rv.api_history),
        Route("/api/datasets/{dataset}/examples/{example_id:path}", rv.api_example),
        Route("/api/datasets/{dataset}/reviews", rv.api_review, methods=["POST"]),
        Route("/api/datasets/{dataset}/accept-top", rv.api_accept_top, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    async def guard(request: Request, call_next: Any) -> Response:
        try:
            rv.check_host(request)
        except HTTPException as exc:
            response: Response = await http_error(request, exc)
        else:
            response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app = Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)],
                    exception_handlers={HTTPException: http_error, review.ReviewError: http_error,
                                        StoreError: http_error})
    app.state.token = rv.token
    app.state.db_path = rv.db_path
    mimetypes.add_type("text/javascript", ".js")
    return app
