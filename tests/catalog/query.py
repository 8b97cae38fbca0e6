"""Answer the catalog's two questions with DuckDB over local copies of a vault's catalog objects.

Usage: query.py DIR --bucket B --key K --prefix P --since T1 --until T2

DIR holds copies of the vault's catalog objects (``v1/<bucket>/catalog/*.ndjson``, at any
depth; every ``*.ndjson`` file is read). The columns and their types come from the schema table of docs/catalog.md, the one
description of the catalog, translated from Glue's spelling to DuckDB's. Before DuckDB reads
anything, every line of every file is checked to hold only fields the schema names (nested
ones too), so a line of another shape (the header line of a version-1 or version-2 segment,
say) is an error rather than a row of NULLs. Prints one JSON object:

* ``versions``: which versions of key K exist and when (puts and delete markers, each once).
* ``changes``: what changed under prefix P with an event time in (T1, T2].

Exits 1, naming the file and line, when a line does not fit the schema, and 2 when DIR holds no
catalog object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

import schema

DOC = schema.DOC
SCALARS = {"string": "VARCHAR", "bigint": "BIGINT", "boolean": "BOOLEAN", "int": "INTEGER", "double": "DOUBLE"}


def documented_columns(doc: Path = DOC) -> list[tuple[str, str]]:
    """The (column, Glue type) rows of the schema table of docs/catalog.md; exits if it has none."""
    rows = schema.documented_columns(doc)
    if not rows:
        sys.exit(f"{doc}: no schema table")
    return rows


def _split_top(s: str) -> list[str]:
    """Splits at the commas outside angle brackets."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def parse_type(t: str):
    """A Glue type as a tree: ("scalar", name), ("struct", [(field, tree)]), ("map", k, v), ("array", tree)."""
    t = t.strip()
    for kind in ("struct", "map", "array"):
        if t.startswith(kind + "<") and t.endswith(">"):
            inner = t[len(kind) + 1 : -1]
            if kind == "struct":
                return ("struct", [(f.split(":", 1)[0].strip(), parse_type(f.split(":", 1)[1])) for f in _split_top(inner)])
            if kind == "map":
                k, v = _split_top(inner)
                return ("map", parse_type(k), parse_type(v))
            return ("array", parse_type(inner))
    if t not in SCALARS:
        raise ValueError(f"unknown Glue type {t!r}")
    return ("scalar", t)


def duckdb_type(tree) -> str:
    if tree[0] == "scalar":
        return SCALARS[tree[1]]
    if tree[0] == "struct":
        return "STRUCT(" + ", ".join(f'"{n}" {duckdb_type(t)}' for n, t in tree[1]) + ")"
    if tree[0] == "map":
        return f"MAP({duckdb_type(tree[1])}, {duckdb_type(tree[2])})"
    return duckdb_type(tree[1]) + "[]"


def misfits(value, tree, path: str) -> list[str]:
    """The fields of a JSON value that its schema type does not name."""
    if value is None:
        return []
    if tree[0] == "struct":
        if not isinstance(value, dict):
            return [f"{path} is not an object"]
        fields = dict(tree[1])
        out = []
        for k, v in value.items():
            out += [f"{path}.{k}"] if k not in fields else misfits(v, fields[k], f"{path}.{k}")
        return out
    if tree[0] == "map":
        return [] if isinstance(value, dict) else [f"{path} is not an object"]
    if tree[0] == "array":
        return [m for i, v in enumerate(value) for m in misfits(v, tree[1], f"{path}[{i}]")] if isinstance(value, list) else [f"{path} is not a list"]
    if isinstance(value, (dict, list)):
        return [f"{path} is not a {tree[1]}"]
    return []


def check_files(files: list[Path], schema) -> int:
    """Checks every line against the schema; returns the number of records."""
    n = 0
    for f in files:
        for i, line in enumerate(f.read_text().splitlines(), start=1):
            if not line:
                continue
            bad = misfits(json.loads(line), schema, "")
            if bad:
                sys.stderr.write(f"{f}:{i}: not a catalog record: fields {', '.join(b.lstrip('.') for b in bad)} are not in docs/catalog.md\n")
                sys.exit(1)
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    for a in ("--bucket", "--key", "--prefix", "--since", "--until"):
        ap.add_argument(a, required=True)
    args = ap.parse_args()

    columns = documented_columns()
    schema = ("struct", [(n, parse_type(t)) for n, t in columns])
    files = sorted(args.dir.rglob("*.ndjson"))
    if not files:
        sys.stderr.write(f"{args.dir}: no catalog object (*.ndjson)\n")
        sys.exit(2)
    records = check_files(files, schema)

    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    cols = "{" + ", ".join(f"'{n}': '{duckdb_type(t)}'" for n, t in schema[1]) + "}"
    glob = str(args.dir / "**" / "*.ndjson")
    db.execute(f"CREATE VIEW catalog AS SELECT * FROM read_json('{glob}', format = 'newline_delimited', columns = {cols})")
    rows = db.execute("SELECT count(*) FROM catalog").fetchone()[0]
    if rows != records:
        sys.exit(f"DuckDB read {rows} rows, the files hold {records} records")
    at = "strftime(event_time::TIMESTAMPTZ, '%Y-%m-%dT%H:%M:%SZ')"
    versions = db.execute(
        f"""SELECT DISTINCT version_id, kind, {at} AS happened, size, checksum.value AS sha256
            FROM catalog
            WHERE bucket = ? AND key = ? AND kind IN ('put', 'delete') AND last_modified IS NULL
            ORDER BY happened, version_id""",
        [args.bucket, args.key],
    ).fetchall()
    changes = db.execute(
        f"""SELECT DISTINCT key, version_id, kind, {at} AS happened
            FROM catalog
            WHERE bucket = ? AND starts_with(key, ?)
              AND event_time::TIMESTAMPTZ > ?::TIMESTAMPTZ AND event_time::TIMESTAMPTZ <= ?::TIMESTAMPTZ
            ORDER BY happened, key, version_id""",
        [args.bucket, args.prefix, args.since, args.until],
    ).fetchall()
    json.dump(
        {
            "records": records,
            "versions": [dict(zip(["version_id", "kind", "at", "size", "sha256"], r)) for r in versions],
            "changes": [dict(zip(["key", "version_id", "kind", "at"], r)) for r in changes],
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
