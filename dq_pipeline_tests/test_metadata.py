"""What the Dagster UI shows: markdown tables and embedded PNG plots."""

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

from dq_pipeline.metadata import histogram_png, markdown_table, tag_bars_png


def _decode(markdown: str) -> Image.Image:
    assert markdown.startswith("![")
    payload = markdown.split("base64,", 1)[1].rstrip(")")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def test_markdown_table_escapes_pipes_and_joins_lists():
    table = markdown_table(pd.DataFrame({"tags": [["a", "b"]], "text": ["x|y\nz"], "score": [0.12345]}))
    header, rule, row = table.splitlines()
    assert row.count("|") - row.count("\\|") == 4  # three cells: the pipe inside the text is escaped
    assert "a, b" in row and "x\\|y z" in row and "0.123" in row
    assert markdown_table(pd.DataFrame()) == "_(none)_"
    long = markdown_table(pd.DataFrame({"n": range(60)}), max_rows=50)
    assert "10 more rows not shown" in long


def test_plots_are_real_pngs():
    rng = np.random.default_rng(0)
    scores = rng.random(200)
    image = _decode(histogram_png(scores, scores < 0.1, "label_issues", "label quality"))
    assert image.format == "PNG" and image.size[0] > 300
    bars = _decode(tag_bars_png(["a", "b", "c"], np.array([1, 2, 3]), np.array([0, 1, 0])))
    assert bars.format == "PNG"
