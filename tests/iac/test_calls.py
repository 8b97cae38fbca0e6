"""Calls against policies: every AWS request each function makes is allowed by its role, on both sides.

tests/iac/recorded-calls.json is written by crates/lambda/tests/calls_moto.rs, which runs every
function's handler on moto with clients that record each request as the IAM action and resource
it needs, attributed to the principal that makes it when deployed (the function's role, or the
source account's read role for requests on a source bucket); that test fails when the file is
not what the code calls now. Here each row is checked against the Allow statements of that
principal's policies in CloudFormation and in Terraform: the action always, the resource where
the policy names one (IAM wildcards; conditions are not evaluated).
"""

from __future__ import annotations

import fnmatch
import json

import pytest

import iac_model as m
from conftest import ROOT

RECORD = ROOT / "tests" / "iac" / "recorded-calls.json"
REGION, ACCOUNT = "eu-west-1", "222222222222"
VAULT = "tidemark-vault-222222222222-eu-west-1"
PLACEHOLDERS = {
    "${vault}": VAULT,
    "${source}": "acme-prod-data",
    "${target}": "tidemark-restore-acme",
    "${control_table}": "tidemark-control",
    "${work_queue}": "tidemark-work",
    "${delta_queue}": "tidemark-delta",
    "${restore_queue}": "tidemark-restore",
    "${region}": REGION,
    "${account}": ACCOUNT,
}
QUEUES = {"WorkQueue": "work", "DeltaQueue": "delta", "RestoreQueue": "restore"}
# How the vault templates' resources are named when deployed with the scenario's parameters.
SYMBOLS = {
    "VaultBucket": VAULT,
    "VaultBucket.Arn": f"arn:aws:s3:::{VAULT}",
    "aws_s3_bucket.vault.id": VAULT,
    "aws_s3_bucket.vault.arn": f"arn:aws:s3:::{VAULT}",
    "ControlTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/tidemark-control",
    "aws_dynamodb_table.control.arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/tidemark-control",
    **{f"{cfn}.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:tidemark-{q}" for cfn, q in QUEUES.items()},
    **{f"aws_sqs_queue.main[{q}].arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:tidemark-{q}" for q in QUEUES.values()},
}


def record() -> list[dict]:
    rows = json.loads(RECORD.read_text())
    for row in rows:
        for k, v in PLACEHOLDERS.items():
            row["resource"] = row["resource"].replace(k, v)
    return rows


def _list(v):
    return v if isinstance(v, list) else [v]


def policies(side: str) -> dict[str, list[dict]]:
    """Allow statements by principal (function name, or `read`), resources as deployed names."""
    out: dict[str, list[dict]] = {}
    with m.symbols(SYMBOLS):
        for scenario in ("vault-defaults", "source-defaults"):
            cfn_path, cfn_params = next((m.CFN_DIR / s[1], s[3]) for s in m.SCENARIOS if s[0] == scenario)
            template = m.CfnTemplate(cfn_path, cfn_params)
            cfn, tf = m.models(scenario)
            raw = [(scope, template.value(st)) for scope, st in cfn.raw_statements] if side == "cloudformation" else tf.raw_statements
            for scope, st in raw:
                if scope.startswith("role:") and st.get("Effect", "Allow") == "Allow":
                    st = {**st, "Resource": [str(r) for r in _list(st.get("Resource"))], "Action": _list(st.get("Action"))}
                    out.setdefault(scope[len("role:"):], []).append(st)
    return out


def allowed(statements: list[dict], action: str, resource: str) -> bool:
    for st in statements:
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in st["Action"]):
            continue
        if resource == "*" or any(fnmatch.fnmatchcase(resource, r) for r in st["Resource"]):
            return True
    return False


@pytest.mark.parametrize("side", ["cloudformation", "terraform"])
def test_every_recorded_call_is_allowed_by_its_principals_policy(side):
    by_principal = policies(side)
    missing = []
    for row in record():
        if not allowed(by_principal.get(row["principal"], []), row["action"], row["resource"]):
            missing.append(f"{row['principal']} (in the {row['function']} function): {row['action']} on {row['resource']}")
    assert not missing, f"{side}: the policies do not allow what the code calls:\n  " + "\n  ".join(missing)


def test_the_record_covers_every_function_and_the_read_role():
    rows = record()
    assert {r["function"] for r in rows} == {"seeder", "worker", "delta", "checkpoint", "restore"}
    assert {r["principal"] for r in rows} == {"seeder", "worker", "delta", "checkpoint", "restore", "read"}
    # Reconciliation runs in the seeder and writes segments into the vault.
    assert any(r["principal"] == "seeder" and r["action"] == "s3:PutObject" and r["resource"].startswith(f"arn:aws:s3:::{VAULT}/v1/") for r in rows)


def test_the_matcher_refuses_what_no_statement_allows():
    st = [{"Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{VAULT}/v1/*"]}]
    assert allowed(st, "s3:GetObject", f"arn:aws:s3:::{VAULT}/v1/acme/packs/*")
    assert not allowed(st, "s3:PutObject", f"arn:aws:s3:::{VAULT}/v1/acme/packs/*")
    assert not allowed(st, "s3:GetObject", "arn:aws:s3:::other-bucket/v1/x")
    seeder = policies("terraform")["seeder"]
    assert any(f"arn:aws:s3:::{VAULT}" in r for st in seeder for r in st["Resource"]), "the symbols resolve the vault bucket"
