"""Smoke test: create the vault-account CloudFormation stack on moto and find what it made.

A moto server on 127.0.0.1 (conftest.py) plays CloudFormation. The function code is read from
S3 (ArtifactBucket/ArtifactPrefix), as in a real deploy, so the test first uploads stub
bootstrap.zip files; the template has no inline ZipFile (AWS and cfn-lint reject ZipFile with
provided.al2023, and so does moto's validate_template).

What moto 5.2.5 does with this template (measured; the assertions below check only what moto
really implements):

* Created and checked: the KMS key and alias, both S3 buckets (with tags and the SSE-KMS
  default encryption), all 7 SQS queues (visibility timeout, retention, KMS key, redrive
  policy), the DynamoDB table (keys, billing mode, deletion protection), the 8 Lambda functions
  (runtime, handler, memory, timeout, environment), the 3 SQS event source mappings (batch
  size, batching window, ReportBatchItemFailures, MaximumConcurrency), the event bus, the 5
  rules and their targets (pattern, schedule, DLQ, retry policy), the Lambda permissions, the
  log groups (retention), the IAM roles with their inline policies, the SNS topic (KMS key),
  the dashboard (body rendered through Fn::Sub), the REST API with POST and GET /restores and
  GET /restores/{restore_id}, IAM-authorised and proxied to the api function.
* Accepted but ignored: S3 VersioningConfiguration, ObjectLockEnabled/ObjectLockConfiguration,
  PublicAccessBlockConfiguration, OwnershipControls, LifecycleConfiguration,
  LoggingConfiguration and BucketKeyEnabled; DynamoDB TimeToLiveSpecification,
  PointInTimeRecoverySpecification and SSESpecification; Lambda Architectures (reports x86_64),
  TracingConfig (reports PassThrough), KmsKeyArn, LoggingConfig, DeadLetterConfig and Tags;
  log group KmsKeyId.
* Not implemented at all (moto skips the resource with a warning and the stack still reaches
  CREATE_COMPLETE): AWS::S3::BucketPolicy, AWS::SQS::QueuePolicy, AWS::SNS::TopicPolicy,
  AWS::Events::EventBusPolicy, AWS::CloudWatch::Alarm, AWS::ApiGateway::Stage and ::Account. Those are covered by cfn-lint, checkov and the parity test.
* moto's IAM role reads every entry of Policies as a policy, so a conditional inline policy
  (`!If [cond, {...}, !Ref AWS::NoValue]`) breaks it; conditional policies are AWS::IAM::Policy
  resources with a Condition instead.
* moto returns the AWS::Events::EventBus object for !Ref (AWS returns the name), so the
  template uses !GetAtt VaultEventBus.Name, which is correct on both.
"""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest

from conftest import ROOT, client

FUNCTIONS = ["seeder", "worker", "delta", "checkpoint", "restore", "api", "scrub", "alert"]
QUEUES = ["work", "delta", "restore"]
STACK = "tidemark-vault"
PARAMS = {
    "SourceAccountIds": "111111111111,333333333333",
    "ProtectedBucketNames": "acme-prod-data,acme-prod-logs",
    "ExternalId": "0123456789abcdef0123",
    "ArtifactBucket": "tidemark-artifacts",
    "ArtifactPrefix": "tidemark/0.1.0/",
}


def _stub_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\necho stub\n")
    return buf.getvalue()


@pytest.fixture
def stack(aws_env):
    s3 = client("s3", aws_env)
    s3.create_bucket(Bucket=PARAMS["ArtifactBucket"], CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for fn in FUNCTIONS:
        s3.put_object(Bucket=PARAMS["ArtifactBucket"], Key=f"{PARAMS['ArtifactPrefix']}tidemark-{fn}/bootstrap.zip", Body=_stub_zip())
    cfn = client("cloudformation", aws_env)
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=(ROOT / "cloudformation" / "vault-account.yaml").read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMS.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.monotonic() + 60
    while True:
        st = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        if not st["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert st["StackStatus"] == "CREATE_COMPLETE", st.get("StackStatusReason")
    return aws_env, {o["OutputKey"]: o["OutputValue"] for o in st["Outputs"]}


def test_stack_creates_queues_with_encrypted_dead_letter_queues(stack):
    endpoint, outputs = stack
    sqs = client("sqs", endpoint)
    names = {u.rsplit("/", 1)[1] for u in sqs.list_queues(QueueNamePrefix="tidemark")["QueueUrls"]}
    assert names == {f"tidemark-{q}" for q in QUEUES} | {f"tidemark-{q}-dlq" for q in QUEUES} | {"tidemark-async-dlq"}
    timeouts = {"work": 900, "delta": 300, "restore": 900}  # the consuming function's timeout
    for q in QUEUES:
        url = sqs.get_queue_url(QueueName=f"tidemark-{q}")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(attrs["VisibilityTimeout"]) >= 6 * timeouts[q]
        assert attrs["KmsMasterKeyId"]
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(f":tidemark-{q}-dlq")
        assert int(redrive["maxReceiveCount"]) == 5
        dlq = sqs.get_queue_url(QueueName=f"tidemark-{q}-dlq")["QueueUrl"]
        assert sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["KmsMasterKeyId"])["Attributes"]["KmsMasterKeyId"]
    assert outputs["WorkQueueUrl"].endswith("/tidemark-work")


def test_stack_creates_control_table(stack):
    endpoint, outputs = stack
    table = client("dynamodb", endpoint).describe_table(TableName=outputs["ControlTableName"])["Table"]
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {("pk", "S"), ("sk", "S")}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["DeletionProtectionEnabled"] is True
    # TTL, PITR and SSE-KMS are in the template but moto ignores them (see the module docstring).


def test_stack_creates_vault_bucket_encrypted_with_vault_key(stack):
    endpoint, outputs = stack
    s3 = client("s3", endpoint)
    bucket = outputs["VaultBucketName"]
    assert bucket == "tidemark-vault-123456789012-eu-west-1"
    s3.head_bucket(Bucket=bucket)
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == outputs["VaultKmsKeyArn"]
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags["tidemark:component"] == "vault"
    s3.head_bucket(Bucket="tidemark-vault-logs-123456789012-eu-west-1")
    aliases = [a["AliasName"] for a in client("kms", endpoint).list_aliases()["Aliases"]]
    assert "alias/tidemark-vault" in aliases


def test_stack_creates_functions_and_sqs_event_sources(stack):
    endpoint, outputs = stack
    lam = client("lambda", endpoint)
    env_keys = {"TIDEMARK_VAULT_BUCKET", "TIDEMARK_CONTROL_TABLE", "TIDEMARK_WORK_QUEUE_URL", "TIDEMARK_DELTA_QUEUE_URL", "TIDEMARK_RESTORE_QUEUE_URL"}
    for fn in FUNCTIONS:
        cfg = lam.get_function_configuration(FunctionName=f"tidemark-{fn}")
        assert cfg["Runtime"] == "provided.al2023"
        assert cfg["Handler"] == "bootstrap"
        env = cfg["Environment"]["Variables"]
        assert env_keys <= set(env)
        assert env["TIDEMARK_VAULT_BUCKET"] == outputs["VaultBucketName"]
        assert env["TIDEMARK_CONTROL_TABLE"] == outputs["ControlTableName"]
    all_mappings = lam.list_event_source_mappings()["EventSourceMappings"]
    mappings = {m["FunctionArn"].rsplit(":", 1)[1]: m for m in all_mappings}
    # No dead-letter queue is an event source: the alert function sweeps them on a schedule and
    # leaves every message there (an event source would delete what it read).
    assert set(mappings) == {"tidemark-worker", "tidemark-delta", "tidemark-restore"}
    assert not [m for m in all_mappings if m["EventSourceArn"].endswith("-dlq")]
    alert_env = lam.get_function_configuration(FunctionName="tidemark-alert")["Environment"]["Variables"]
    swept = {u.rsplit("/", 1)[1] for u in alert_env["TIDEMARK_DEAD_LETTER_QUEUE_URLS"].split(",")}
    assert swept == {"tidemark-work-dlq", "tidemark-delta-dlq", "tidemark-restore-dlq"}
    for fn, queue, batch, concurrency in [("worker", "work", 1, 100), ("delta", "delta", 100, 20), ("restore", "restore", 1, 50)]:
        m = mappings[f"tidemark-{fn}"]
        assert m["EventSourceArn"].endswith(f":tidemark-{queue}")
        assert m["BatchSize"] == batch
        assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert m["ScalingConfig"]["MaximumConcurrency"] == concurrency


def test_stack_creates_event_bus_rules_and_schedules(stack):
    endpoint, outputs = stack
    events = client("events", endpoint)
    assert outputs["VaultEventBusArn"].endswith(":event-bus/tidemark-vault")
    (rule,) = events.list_rules(EventBusName="tidemark-vault")["Rules"]
    pattern = json.loads(rule["EventPattern"])
    # Every detail type the delta handler captures (tidemark_core::changes::events::CAPTURED_DETAIL_TYPES).
    from test_variables import captured_detail_types

    assert pattern["detail-type"] == captured_detail_types()
    assert pattern["account"] == ["111111111111", "333333333333"]
    (target,) = events.list_targets_by_rule(Rule=rule["Name"], EventBusName="tidemark-vault")["Targets"]
    assert target["Arn"].endswith(":tidemark-delta")
    assert target["DeadLetterConfig"]["Arn"].endswith(":tidemark-async-dlq")
    schedules = {r["Name"]: r["ScheduleExpression"] for r in events.list_rules()["Rules"]}
    assert schedules == {
        "tidemark-checkpoint": "rate(15 minutes)",
        "tidemark-reconcile": "cron(30 6 * * ? *)",
        "tidemark-scrub": "rate(1 day)",
        "tidemark-alert": "rate(5 minutes)",
    }
    (alert,) = events.list_targets_by_rule(Rule="tidemark-alert")["Targets"]
    assert alert["Arn"].endswith(":tidemark-alert") and json.loads(alert["Input"]) == {}
    (scrub,) = events.list_targets_by_rule(Rule="tidemark-scrub")["Targets"]
    assert json.loads(scrub["Input"]) == {}  # ScrubRequest: every source
    (checkpoint,) = events.list_targets_by_rule(Rule="tidemark-checkpoint")["Targets"]
    assert json.loads(checkpoint["Input"]) == {"buckets": ["acme-prod-data", "acme-prod-logs"]}  # CheckpointRequest
    (reconcile,) = events.list_targets_by_rule(Rule="tidemark-reconcile")["Targets"]
    assert json.loads(reconcile["Input"]) == {"mode": "reconcile", "buckets": ["acme-prod-data", "acme-prod-logs"], "inventory_destination": ""}


def test_stack_creates_restore_api_topic_and_dashboard(stack):
    endpoint, outputs = stack
    apigw = client("apigateway", endpoint)
    (api,) = apigw.get_rest_apis()["items"]
    resources = apigw.get_resources(restApiId=api["id"])["items"]
    paths = {r["path"]: set(r.get("resourceMethods", {})) for r in resources}
    assert paths["/restores"] == {"POST", "GET"} and paths["/restores/{restore_id}"] == {"GET"}
    api_function = client("lambda", endpoint).get_function_configuration(FunctionName="tidemark-api")["FunctionArn"]
    for path, verb in [("/restores", "POST"), ("/restores", "GET"), ("/restores/{restore_id}", "GET")]:
        method = apigw.get_method(restApiId=api["id"], resourceId=next(r["id"] for r in resources if r["path"] == path), httpMethod=verb)
        assert method["authorizationType"] == "AWS_IAM", (path, verb)
        integration = method["methodIntegration"]
        assert integration["type"] == "AWS_PROXY" and api_function in integration["uri"], (path, verb, integration)
    topic = client("sns", endpoint).get_topic_attributes(TopicArn=outputs["AlarmTopicArn"])["Attributes"]
    assert topic.get("KmsMasterKeyId")
    body = json.loads(client("cloudwatch", endpoint).get_dashboard(DashboardName="tidemark")["DashboardBody"])
    rendered = json.dumps(body)
    assert "${" not in rendered and "tidemark-worker" in rendered and "tidemark-delta-dlq" in rendered


def test_stack_deletes_cleanly(stack):
    endpoint, _ = stack
    cfn = client("cloudformation", endpoint)
    cfn.delete_stack(StackName=STACK)
    with pytest.raises(Exception, match="does not exist"):
        cfn.describe_stacks(StackName=STACK)
