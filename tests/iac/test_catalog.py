"""The catalog's Athena/Glue table: both IaC sides define it with the schema docs/catalog.md documents.

docs/catalog.md's schema table is the one description of the catalog's columns (the capture
records of index segments of format version 3, under ``v1/<bucket>/catalog/`` in the vault);
DuckDB reads the catalog with it (tests/catalog/query.py), and here the Glue table of
terraform/modules/vault-account/catalog.tf and the one of cloudformation/vault-account.yaml must
have exactly its columns, in its order, with its types, over the same location, partitioned the
same way and with the same JSON reader. The last test proves the comparison notices a column
that one side lacks.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hcl2
from cfnlint.decode import cfn_yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "catalog"))
from schema import documented_columns  # noqa: E402

TF = ROOT / "terraform" / "modules" / "vault-account" / "catalog.tf"
CFN = ROOT / "cloudformation" / "vault-account.yaml"


def _unquote(v):
    # python-hcl2 keeps the quotes of string literals in some versions and not in others.
    if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1]
    return v


def _one(v):
    return v[0] if isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict) else v


def terraform_table(path: Path = TF) -> dict:
    with open(path) as fh:
        doc = hcl2.load(fh)
    tables = [v for r in doc.get("resource", []) for typ, v in r.items() if _unquote(typ) == "aws_glue_catalog_table"]
    assert len(tables) == 1, f"{path.name}: one aws_glue_catalog_table, found {len(tables)}"
    (body,) = tables[0].values()
    sd = _one(body["storage_descriptor"])
    serde = _one(sd["ser_de_info"])
    params = {_unquote(k): _unquote(v) for k, v in body["parameters"].items()}
    return {
        "partitions": [(_unquote(p["name"]), _unquote(p["type"])) for p in body["partition_keys"]],
        "projection": params.get("projection.enabled"),
        "projection_type": params.get("projection.source.type"),
        "projection_values": params.get("projection.source.values"),
        "template": params.get("storage.location.template", "").replace("$${", "${"),
        "name": _unquote(body["name"]),
        "table_type": _unquote(body["table_type"]),
        "classification": _unquote(body["parameters"]["classification"]),
        "location": _unquote(sd["location"]),
        "input_format": _unquote(sd["input_format"]),
        "output_format": _unquote(sd["output_format"]),
        "serde": _unquote(serde["serialization_library"]),
        "columns": [(_unquote(c["name"]), _unquote(c["type"])) for c in sd["columns"]],
    }


def cloudformation_table(path: Path = CFN) -> dict:
    doc = cfn_yaml.load(str(path))
    tables = [r for r in doc["Resources"].values() if r["Type"] == "AWS::Glue::Table"]
    assert len(tables) == 1, f"{path.name}: one AWS::Glue::Table, found {len(tables)}"
    ti = tables[0]["Properties"]["TableInput"]
    sd = ti["StorageDescriptor"]
    loc = sd["Location"]
    params = ti["Parameters"]
    template = params.get("storage.location.template", {})
    return {
        "partitions": [(p["Name"], p["Type"]) for p in ti["PartitionKeys"]],
        "projection": params.get("projection.enabled"),
        "projection_type": params.get("projection.source.type"),
        "projection_values": params.get("projection.source.values"),
        "template": (template["Fn::Sub"] if isinstance(template, dict) else template).replace("${!", "${"),
        "name": ti["Name"],
        "table_type": ti["TableType"],
        "classification": ti["Parameters"]["classification"],
        "location": loc["Fn::Sub"] if isinstance(loc, dict) else loc,
        "input_format": sd["InputFormat"],
        "output_format": sd["OutputFormat"],
        "serde": sd["SerdeInfo"]["SerializationLibrary"],
        "columns": [(c["Name"], c["Type"]) for c in sd["Columns"]],
    }


def test_the_document_has_the_record_columns():
    cols = [c for c, _ in documented_columns()]
    for needed in ["bucket", "key", "version_id", "kind", "event_time", "sequencer", "size", "checksum", "captured_at"]:
        assert needed in cols, f"docs/catalog.md: no column {needed}"
    assert len(cols) == len(set(cols)), f"docs/catalog.md: a column twice: {cols}"


def test_both_tables_have_the_documented_columns():
    want = documented_columns()
    for side, table in [("terraform", terraform_table()), ("cloudformation", cloudformation_table())]:
        got = table["columns"]
        missing = [c for c in want if c not in got]
        extra = [c for c in got if c not in want]
        assert got == want, f"{side}: columns differ from docs/catalog.md: missing {missing}, extra {extra}, or the order differs"


def test_both_tables_read_the_same_objects_the_same_way():
    tf, cfn = terraform_table(), cloudformation_table()
    for side, t in [("terraform", tf), ("cloudformation", cfn)]:
        # Each protected bucket's catalog prefix is one partition: every object there is records.
        assert re.fullmatch(r"s3://\$\{[^}]+\}/v1/\$\{source\}/catalog/", t["template"]), f"{side}: template {t['template']}"
        assert re.fullmatch(r"s3://\$\{[^}]+\}/v1/", t["location"]), f"{side}: location {t['location']}"
        assert t["partitions"] == [("source", "string")], f"{side}: {t['partitions']}"
        assert (t["projection"], t["projection_type"]) == ("true", "enum"), f"{side}: {t}"
        assert t["serde"] == "org.openx.data.jsonserde.JsonSerDe", f"{side}: {t['serde']}"
        assert "source" not in [c for c, _ in t["columns"]], f"{side}: the partition key is no column of the records"
    assert tf["template"] == "s3://${aws_s3_bucket.vault.bucket}/v1/${source}/catalog/", tf["template"]
    assert cfn["template"] == "s3://${VaultBucket}/v1/${source}/catalog/", cfn["template"]
    # The partitions are the protected buckets, the same variable on both sides.
    assert tf["projection_values"] == '${join(",", var.protected_bucket_names)}', tf["projection_values"]
    assert cfn["projection_values"] == {"Fn::Join": [",", {"Ref": "ProtectedBucketNames"}]}, cfn["projection_values"]
    for k in ["name", "table_type", "classification", "input_format", "output_format", "serde", "partitions"]:
        assert tf[k] == cfn[k], f"{k}: terraform {tf[k]!r}, cloudformation {cfn[k]!r}"


def test_a_column_missing_on_one_side_is_noticed(tmp_path):
    text = TF.read_text()
    start = text.index('    columns {\n      name = "sequencer"')
    end = text.index("}\n", start) + 2
    broken = tmp_path / "catalog.tf"
    broken.write_text(text[:start] + text[end:])
    got = terraform_table(broken)["columns"]
    assert ("sequencer", "string") not in got
    assert got != documented_columns()
    assert len(documented_columns()) == len(got) + 1
