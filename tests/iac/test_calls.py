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
    "${work_dlq}": "tidemark-work-dlq",
    "${delta_dlq}": "tidemark-delta-dlq",
    "${alert_topic}": "tidemark-alarms",
    "${region}": REGION,
    "${account}": ACCOUNT,
}
QUEUES = {"WorkQueue": "work", "DeltaQueue": "delta", "RestoreQueue": "restore"}
DEAD_LETTER_QUEUES = {"WorkDeadLetterQueue": "work", "DeltaDeadLetterQueue": "delta", "RestoreDeadLetterQueue": "restore"}
ALARM_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:tidemark-alarms"
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
    **{f"{cfn}.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:tidemark-{q}-dlq" for cfn, q in DEAD_LETTER_QUEUES.items()},
    **{f"aws_sqs_queue.dlq[{q}].arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:tidemark-{q}-dlq" for q in DEAD_LETTER_QUEUES.values()},
    # !Ref of an SNS topic is its ARN.
    "AlarmTopic": ALARM_TOPIC,
    "aws_sns_topic.alarms.arn": ALARM_TOPIC,
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
    functions = {"seeder", "worker", "delta", "checkpoint", "restore", "scrub", "alert"}
    assert {r["function"] for r in rows} == functions
    assert {r["principal"] for r in rows} == functions | {"read"}
    # Reconciliation runs in the seeder and writes segments into the vault.
    assert any(r["principal"] == "seeder" and r["action"] == "s3:PutObject" and r["resource"].startswith(f"arn:aws:s3:::{VAULT}/v1/") for r in rows)
    # The scrub reads the vault with its own role and keeps its cursor; the alert function reads a
    # dead-letter queue as its event source and publishes to the alarm topic.
    assert any(r["principal"] == "scrub" and r["action"] == "s3:GetObject" and r["resource"].startswith(f"arn:aws:s3:::{VAULT}/v1/") for r in rows)
    assert {"dynamodb:GetItem", "dynamodb:PutItem"} <= {r["action"] for r in rows if r["principal"] == "scrub"}
    alert = {(r["action"], r["resource"]) for r in rows if r["principal"] == "alert"}
    assert ("sns:Publish", ALARM_TOPIC) in alert
    assert ("sqs:ReceiveMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:tidemark-work-dlq") in alert


def test_scrub_and_alert_roles_grant_only_what_they_call():
    # Least privilege: every action their policies allow is one their code calls (recorded), but
    # those AWS uses on the role's behalf and the code never sends: logs and traces (the Lambda
    # runtime), sqs:SendMessage to the async DLQ (Lambda, for the scrub's failed invocations),
    # sqs:GetQueueAttributes (Lambda, for the alert's event sources), kms:Decrypt (S3, SQS and
    # DynamoDB reading what the vault key encrypts) and kms:GenerateDataKey (SNS, publishing to
    # the encrypted topic).
    runtime = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    on_behalf = {"scrub": {"sqs:SendMessage", "kms:Decrypt"}, "alert": {"sqs:GetQueueAttributes", "kms:Decrypt", "kms:GenerateDataKey"}}
    rows = record()
    for side in ("cloudformation", "terraform"):
        by_principal = policies(side)
        for fn in ("scrub", "alert"):
            granted = {a for st in by_principal[fn] for a in st["Action"]}
            called = {r["action"] for r in rows if r["principal"] == fn}
            extra = granted - called - runtime - on_behalf[fn]
            assert not extra, f"{side}: the {fn} role grants {sorted(extra)}, which its code never calls"


def test_the_matcher_refuses_what_no_statement_allows():
    st = [{"Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{VAULT}/v1/*"]}]
    assert allowed(st, "s3:GetObject", f"arn:aws:s3:::{VAULT}/v1/acme/packs/*")
    assert not allowed(st, "s3:PutObject", f"arn:aws:s3:::{VAULT}/v1/acme/packs/*")
    assert not allowed(st, "s3:GetObject", "arn:aws:s3:::other-bucket/v1/x")
    seeder = policies("terraform")["seeder"]
    assert any(f"arn:aws:s3:::{VAULT}" in r for st in seeder for r in st["Resource"]), "the symbols resolve the vault bucket"
