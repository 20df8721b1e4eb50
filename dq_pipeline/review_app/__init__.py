"""The review web app (``dq-pipeline review``): server-rendered pages over the DuckDB file, a little
vanilla JS for the keyboard, and a JSON API for scripts. All data access goes through
:mod:`dq_pipeline.review` (pure functions, SQL with parameters only)."""

from dq_pipeline.review_app.app import TOKEN_HEADER, create_app, token_file_for

__all__ = ["TOKEN_HEADER", "create_app", "token_file_for"]
