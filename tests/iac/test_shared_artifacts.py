"""The artefacts both deploy paths share, and the sample console events.

* infra/dashboard.json is the one dashboard: Terraform renders it with templatefile(), the
  CloudFormation template embeds a copy rendered with Fn::Sub. The copy must be current and
  both must supply exactly the placeholders the JSON uses.
* infra/events/restore-request.schema.json describes the restore request exactly as
  api/openapi.yaml does (the router checks requests; no API Gateway model duplicates it); the
  bucket-setup function is embedded in the source template.
* infra/events/*.json are valid console test events: the restore request satisfies the schema
  (it is also the POST /v1/restores body), the delta batch is an SQS batch whose bodies are
  EventBridge S3 events that the vault bus rule and the source forwarding rule both match, and
  the schedule inputs are what the rules send. (crates/lambda/tests/events.rs parses every one
  with the Rust type its function takes.)
"""

from __future__ import annotations

import json
import re

import hcl2
import jsonschema
import pytest

import sync_embedded
from conftest import ROOT
from iac_model import CfnTemplate

EVENTS = ROOT / "infra" / "events"
DASHBOARD = ROOT / "infra" / "dashboard.json"
VAULT_TEMPLATE = ROOT / "cloudformation" / "vault-account.yaml"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@pytest.mark.parametrize("template", sync_embedded.TEMPLATES, ids=lambda p: p.name)
def test_embedded_copies_are_current(template):
    assert sync_embedded.synced(template) == template.read_text(), (
        f"{template.name} embeds a stale copy; run: python tests/iac/sync_embedded.py")


def test_schedule_events_are_what_the_rules_send():
    cfn = CfnTemplate(VAULT_TEMPLATE, {"SourceAccountIds": "111111111111", "ProtectedBucketNames": "acme-prod-data", "ExternalId": "x" * 16, "ArtifactBucket": "a"})
    inputs = {name: json.loads(cfn.value(cfn.resources[name]["Properties"]["Targets"][0]["Input"])) for name in ("CheckpointRule", "ReconcileRule")}
    assert inputs["CheckpointRule"] == json.loads((EVENTS / "checkpoint-schedule.json").read_text())
    assert inputs["ReconcileRule"] == json.loads((EVENTS / "reconcile.json").read_text())


def test_every_template_embeds_what_it_should():
    embeds = {t.name: set(sync_embedded.embeds(t)) for t in sync_embedded.TEMPLATES}
    assert embeds["vault-account.yaml"] == {("infra/dashboard.json", "sub-block")}
    assert embeds["source-account.yaml"] == {("terraform/modules/source-account/bucket_setup.py", "block:ZipFile")}


def _tf_dashboard_vars():
    with open(ROOT / "terraform" / "modules" / "vault-account" / "monitoring.tf") as fh:
        doc = hcl2.load(fh)
    for block in doc["resource"]:
        for typ, named in block.items():
            if typ.strip('"') == "aws_cloudwatch_dashboard":
                body = next(iter(named.values()))["dashboard_body"]
                return set(re.findall(r"(\w+)\s*=", body.split("{", 1)[1]))
    raise AssertionError("no aws_cloudwatch_dashboard")


def test_dashboard_placeholders_are_supplied_by_both_sides():
    text = DASHBOARD.read_text()
    json.loads(text)  # valid JSON as it stands: placeholders only inside strings
    used = set(PLACEHOLDER.findall(text))
    cfn = CfnTemplate(VAULT_TEMPLATE, {"SourceAccountIds": "111111111111", "ProtectedBucketNames": "acme-prod-data", "ExternalId": "x" * 16, "ArtifactBucket": "a"})
    sub = cfn.resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert set(sub[1]) == used
    assert _tf_dashboard_vars() == used


def test_dashboard_renders_to_valid_json_with_the_alarm_metrics():
    # The namespace is a placeholder too (TIDEMARK_METRICS_NAMESPACE); its default is Tidemark.
    text = PLACEHOLDER.sub(lambda m: "Tidemark" if m.group(1) == "metrics_namespace" else f"value-of-{m.group(1)}", DASHBOARD.read_text())
    body = json.loads(text)
    rows = [x for w in body["widgets"] if w["type"] == "metric" for x in w["properties"]["metrics"]]
    expressions = {x[0]["expression"] for x in rows if isinstance(x[0], dict)}
    # the same Metrics Insights queries as the RPO and 503 alarms, whatever dimensions are emitted
    assert "SELECT MAX(RpoSeconds) FROM Tidemark" in expressions
    assert "SELECT SUM(SlowDown503) FROM Tidemark" in expressions
    cfn = CfnTemplate(VAULT_TEMPLATE, {"SourceAccountIds": "111111111111", "ProtectedBucketNames": "acme-prod-data", "ExternalId": "x" * 16, "ArtifactBucket": "a"})
    alarm_queries = {cfn.value(q["Expression"]) for name in ("RpoAlarm", "SlowDownAlarm", "ChangesFailedAlarm") for q in cfn.resources[name]["Properties"]["Metrics"]}
    assert alarm_queries <= expressions
    assert {tuple(x[:2]) for x in rows if isinstance(x[0], str)} >= {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/Lambda", "Errors")}
    assert sum(1 for w in body["widgets"] if w["type"] == "metric") >= 11
    # Restore throughput and failures, from the EMF metrics the restore function prints
    # (crates/lambda/src/metrics.rs), and the restore failure alarm's query.
    for metric in ("RestoreObjects", "RestoreBytes", "RestoreFailed"):
        assert f"SELECT SUM({metric}) FROM Tidemark" in expressions, metric
    assert {cfn.value(q["Expression"]) for q in cfn.resources["RestoreFailedObjectsAlarm"]["Properties"]["Metrics"]} <= expressions
    assert "SELECT SUM(RestoreObjects) FROM SCHEMA(Tidemark, SourceBucket) GROUP BY SourceBucket" in expressions
    assert {tuple(x[:2]) for x in rows if isinstance(x[0], str)} >= {("AWS/ApiGateway", "5XXError"), ("AWS/ApiGateway", "4XXError")}


def test_the_restore_metrics_the_dashboard_reads_are_the_ones_the_code_prints():
    source = (ROOT / "crates" / "lambda" / "src" / "metrics.rs").read_text()
    names = re.search(r"RESTORE_METRICS: \[&str; \d+\] = \[([^\]]*)\]", source).group(1)
    printed = set(re.findall(r'"(\w+)"', names))
    used = set(re.findall(r"SUM\((Restore\w+)\)", DASHBOARD.read_text()))
    assert used and used <= printed, f"the dashboard reads {used - printed}, which the code does not print"
    assert '"SourceBucket"' in source and "DEFAULT_NAMESPACE: &str = \"Tidemark\"" in source


def test_restore_request_matches_the_schema_and_the_openapi_document():
    import yaml

    schema = json.loads((EVENTS / "restore-request.schema.json").read_text())
    request = json.loads((EVENTS / "restore-request.json").read_text())
    jsonschema.validate(request, schema)
    assert set(request) == {"source_bucket", "prefix", "as_of", "target_bucket", "target_prefix", "mode"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**request, "mode": "overwrite"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**request, "as_of": "yesterday at 9"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**request, "target_role_arn": "arn:aws:iam::12:role/x"}, schema)
    jsonschema.validate({**request, "target_role_arn": "arn:aws:iam::111111111111:role/tidemark-restore-target"}, schema)
    # The OpenAPI document's request is the same: fields, required fields, and each field's constraints.
    document = yaml.safe_load((ROOT / "api" / "openapi.yaml").read_text())
    schemas = document["components"]["schemas"]
    api = schemas["RestoreRequest"]
    assert set(api["properties"]) == set(schema["properties"])
    assert sorted(api["required"]) == sorted(schema["required"])
    assert api["additionalProperties"] is False and schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        theirs = api["properties"][name]
        theirs = schemas[theirs["$ref"].rsplit("/", 1)[1]] if "$ref" in theirs else theirs
        for key in ("type", "minLength", "maxLength", "pattern", "enum"):
            assert theirs.get(key) == prop.get(key), f"{name}.{key}: OpenAPI {theirs.get(key)!r}, schema {prop.get(key)!r}"
    jsonschema.validate(api["example"], schema)


def _matches(pattern: dict, event: dict) -> bool:
    """EventBridge pattern matching for the exact-value lists these rules use."""
    for key, want in pattern.items():
        if key not in event:
            return False
        if isinstance(want, dict):
            if not isinstance(event[key], dict) or not _matches(want, event[key]):
                return False
        elif event[key] not in want:
            return False
    return True


def test_delta_batch_is_an_sqs_batch_of_s3_eventbridge_events():
    batch = json.loads((EVENTS / "delta-batch.json").read_text())
    kinds = set()
    vault_rule = {"source": ["aws.s3"], "detail-type": ["Object Created", "Object Deleted"], "account": ["111111111111"]}
    forward_rule = {"source": ["aws.s3"], "detail-type": ["Object Created", "Object Deleted"], "detail": {"bucket": {"name": ["acme-prod-data"]}}}
    for record in batch["Records"]:
        assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"].endswith(":tidemark-delta")
        assert record["messageId"] and record["receiptHandle"]
        event = json.loads(record["body"])
        kinds.add(event["detail-type"])
        assert event["source"] == "aws.s3"
        obj = event["detail"]["object"]
        assert obj["key"] and obj["version-id"] and obj["sequencer"]
        assert _matches(vault_rule, event) and _matches(forward_rule, event)
    assert "Object Created" in kinds


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("*.json")))
def test_console_events_are_json_objects(name):
    assert isinstance(json.loads((EVENTS / name).read_text()), dict)


def test_example_wires_every_required_module_input():
    def variables(module_dir):
        out = {}
        for f in module_dir.glob("*.tf"):
            with open(f) as fh:
                for block in hcl2.load(fh).get("variable", []):
                    for name, body in block.items():
                        out[name.strip('"')] = "default" in body
        return out

    with open(ROOT / "terraform" / "examples" / "complete" / "main.tf") as fh:
        example = hcl2.load(fh)
    modules = {}
    for block in example["module"]:
        for name, body in block.items():
            modules[name.strip('"')] = body
    for name, module_dir in (("vault", "vault-account"), ("source", "source-account")):
        required = {k for k, has_default in variables(ROOT / "terraform" / "modules" / module_dir).items() if not has_default}
        assert required <= set(modules[name]), f"module {name} misses {required - set(modules[name])}"
