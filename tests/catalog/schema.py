"""The catalog's documented schema: the column table of docs/catalog.md, read by the DuckDB query
(tests/catalog/query.py) and by the IaC tests that compare both Glue tables with it
(tests/iac/test_catalog.py). Standard library only, so that either virtual environment imports it.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"


def documented_columns(doc: Path = DOC) -> list[tuple[str, str]]:
    """The (column, Glue type) rows of the schema table of docs/catalog.md, in order."""
    rows, in_schema = [], False
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            in_schema = line.strip() == "## Schema"
            continue
        m = re.match(r"^\| ([a-z_]+) \| ([^|]+?) \|", line)
        if in_schema and m and m.group(1) != "column":
            rows.append((m.group(1), m.group(2)))
    return rows
