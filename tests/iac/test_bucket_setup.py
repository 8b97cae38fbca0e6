"""Tests for the bucket-setup function (terraform/modules/source-account/bucket_setup.py).

It is what makes onboarding safe for buckets that already have notifications: it must add
EventBridge delivery to the EXISTING notification configuration (queue, topic and Lambda
configurations are kept), manage only the "tidemark" S3 Inventory configuration, and on
delete remove only what it added (EventBridge stays on if it was on before tidemark).

* The semantics run against an in-memory S3 that behaves like AWS for these six calls.
* The CloudFormation custom-resource protocol (SUCCESS / FAILED sent to ResponseURL) runs
  against a local HTTP server on 127.0.0.1.
* The create path also runs against the moto server, which checks request shapes through
  botocore. moto cannot do the rest: get_bucket_notification_configuration does not return
  EventBridgeConfiguration, and DeleteBucketInventoryConfiguration deletes the whole (empty)
  bucket in moto 5.2.5.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import ROOT, client

SOURCE = ROOT / "terraform" / "modules" / "source-account" / "bucket_setup.py"
QUEUE_CFG = {"Id": "app-events", "QueueArn": "arn:aws:sqs:eu-west-1:111111111111:app", "Events": ["s3:ObjectCreated:*"]}
TOPIC_CFG = {"Id": "audit", "TopicArn": "arn:aws:sns:eu-west-1:111111111111:audit", "Events": ["s3:ObjectRemoved:*"]}
PROPS = {
    "Buckets": ["acme-prod-data"],
    "AccountId": "111111111111",
    "InventoryBucketArn": "arn:aws:s3:::tidemark-inventory-111111111111-eu-west-1",
    "InventoryPrefix": "tidemark-inventory",
    "Frequency": "Daily",
    "IncludedVersions": "All",
    "Format": "CSV",
}


class FakeS3:
    """The six S3 calls the function makes, with AWS's semantics (PUT replaces the whole config)."""

    def __init__(self, buckets):
        self.notifications = {b: {} for b in buckets}
        self.inventories = {b: {} for b in buckets}
        self.calls = []

    def get_bucket_notification_configuration(self, Bucket):
        self.calls.append(("get_notification", Bucket))
        return {"ResponseMetadata": {"HTTPStatusCode": 200}, **copy.deepcopy(self.notifications[Bucket])}

    def put_bucket_notification_configuration(self, Bucket, NotificationConfiguration, SkipDestinationValidation):
        assert SkipDestinationValidation is True
        assert "ResponseMetadata" not in NotificationConfiguration
        self.calls.append(("put_notification", Bucket))
        self.notifications[Bucket] = copy.deepcopy(NotificationConfiguration)

    def list_bucket_inventory_configurations(self, Bucket, ContinuationToken=None):
        items = sorted(self.inventories[Bucket].values(), key=lambda c: c["Id"])
        return {"InventoryConfigurationList": items, "IsTruncated": False}

    def put_bucket_inventory_configuration(self, Bucket, Id, InventoryConfiguration):
        assert InventoryConfiguration["Id"] == Id
        self.calls.append(("put_inventory", Bucket, Id))
        self.inventories[Bucket][Id] = copy.deepcopy(InventoryConfiguration)

    def delete_bucket_inventory_configuration(self, Bucket, Id):
        self.calls.append(("delete_inventory", Bucket, Id))
        del self.inventories[Bucket][Id]


def load(monkeypatch, s3=None):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    spec = importlib.util.spec_from_file_location("bucket_setup_under_test", SOURCE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if s3 is not None:
        mod.s3 = s3
    return mod


def tf(props, action, prev=None):
    return {**props, "tf": {"action": action, "prev_input": prev}}


def test_create_keeps_existing_notifications_and_adds_eventbridge(monkeypatch):
    s3 = FakeS3(["acme-prod-data"])
    s3.notifications["acme-prod-data"] = {"QueueConfigurations": [QUEUE_CFG], "TopicConfigurations": [TOPIC_CFG]}
    fn = load(monkeypatch, s3)
    assert fn.handler(tf(PROPS, "create"), None) == {"Buckets": ["acme-prod-data"]}
    cfg = s3.notifications["acme-prod-data"]
    assert cfg["QueueConfigurations"] == [QUEUE_CFG]
    assert cfg["TopicConfigurations"] == [TOPIC_CFG]
    assert cfg["EventBridgeConfiguration"] == {}
    inv = s3.inventories["acme-prod-data"]["tidemark"]
    assert inv["IsEnabled"] is True and inv["IncludedObjectVersions"] == "All"
    assert inv["Destination"]["S3BucketDestination"] == {
        "AccountId": "111111111111", "Bucket": PROPS["InventoryBucketArn"], "Format": "CSV", "Prefix": "tidemark-inventory"}


def test_delete_removes_only_what_tidemark_added(monkeypatch):
    s3 = FakeS3(["acme-prod-data"])
    s3.notifications["acme-prod-data"] = {"QueueConfigurations": [QUEUE_CFG]}
    s3.inventories["acme-prod-data"]["finance-weekly"] = {"Id": "finance-weekly", "IsEnabled": True}
    fn = load(monkeypatch, s3)
    fn.handler(tf(PROPS, "create"), None)
    fn.handler(tf(PROPS, "delete", PROPS), None)
    assert s3.notifications["acme-prod-data"] == {"QueueConfigurations": [QUEUE_CFG]}
    assert set(s3.inventories["acme-prod-data"]) == {"finance-weekly"}


def test_eventbridge_that_was_already_on_stays_on(monkeypatch):
    s3 = FakeS3(["acme-prod-data"])
    s3.notifications["acme-prod-data"] = {"EventBridgeConfiguration": {}, "QueueConfigurations": [QUEUE_CFG]}
    fn = load(monkeypatch, s3)
    fn.handler(tf(PROPS, "create"), None)
    assert not any(c[0] == "put_notification" for c in s3.calls), "nothing to change"
    assert set(s3.inventories["acme-prod-data"]) == {"tidemark", "tidemark-eventbridge-was-on"}
    assert s3.inventories["acme-prod-data"]["tidemark-eventbridge-was-on"]["IsEnabled"] is False
    fn.handler(tf(PROPS, "update", PROPS), None)  # re-running keeps the marker
    fn.handler(tf(PROPS, "delete", PROPS), None)
    assert s3.notifications["acme-prod-data"] == {"EventBridgeConfiguration": {}, "QueueConfigurations": [QUEUE_CFG]}
    assert s3.inventories["acme-prod-data"] == {}


def test_update_tears_down_removed_buckets_and_sets_up_new_ones(monkeypatch):
    s3 = FakeS3(["a-bucket", "b-bucket", "c-bucket"])
    fn = load(monkeypatch, s3)
    old = {**PROPS, "Buckets": ["a-bucket", "b-bucket"]}
    new = {**PROPS, "Buckets": ["b-bucket", "c-bucket"]}
    fn.handler(tf(old, "create"), None)
    assert fn.handler(tf(new, "update", old), None) == {"Buckets": ["b-bucket", "c-bucket"]}
    assert s3.notifications["a-bucket"] == {} and s3.inventories["a-bucket"] == {}
    for b in ("b-bucket", "c-bucket"):
        assert s3.notifications[b] == {"EventBridgeConfiguration": {}}
        assert set(s3.inventories[b]) == {"tidemark"}


def test_teardown_without_tidemark_inventory_leaves_eventbridge_alone(monkeypatch):
    """A failed create rolled back before anything was written must not switch EventBridge off."""
    s3 = FakeS3(["acme-prod-data"])
    s3.notifications["acme-prod-data"] = {"EventBridgeConfiguration": {}}
    fn = load(monkeypatch, s3)
    fn.handler(tf(PROPS, "delete", PROPS), None)
    assert s3.notifications["acme-prod-data"] == {"EventBridgeConfiguration": {}}


class _Responses(BaseHTTPRequestHandler):
    received: list = []

    def do_PUT(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Responses.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def response_url():
    server = HTTPServer(("127.0.0.1", 0), _Responses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Responses.received = []
    yield f"http://127.0.0.1:{server.server_port}/cfn-response?sig=x"
    server.shutdown()
    server.server_close()


class _Context:
    log_stream_name = "2026/11/21/[$LATEST]abc"


def cfn_event(kind, url, props, old=None, physical=None):
    ev = {
        "RequestType": kind, "ResponseURL": url, "StackId": "arn:aws:cloudformation:eu-west-1:111111111111:stack/s/1",
        "RequestId": "r-1", "LogicalResourceId": "BucketSetup", "ResourceType": "Custom::TidemarkBucketSetup",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:eu-west-1:111111111111:function:tidemark-bucket-setup", **props},
    }
    if old is not None:
        ev["OldResourceProperties"] = old
    if physical:
        ev["PhysicalResourceId"] = physical
    return ev


def test_cloudformation_protocol_success_and_failure(monkeypatch, response_url):
    s3 = FakeS3(["acme-prod-data"])
    fn = load(monkeypatch, s3)
    fn.handler(cfn_event("Create", response_url, PROPS), _Context())
    fn.handler(cfn_event("Delete", response_url, PROPS, physical="tidemark-bucket-setup"), _Context())
    fn.handler(cfn_event("Create", response_url, {**PROPS, "Buckets": ["no-such-bucket"]}), _Context())
    ok, deleted, failed = _Responses.received
    assert ok["Status"] == "SUCCESS" and ok["Data"] == {"Buckets": "acme-prod-data"}
    assert ok["PhysicalResourceId"] == "tidemark-bucket-setup" and ok["RequestId"] == "r-1"
    assert deleted["Status"] == "SUCCESS" and s3.notifications["acme-prod-data"] == {}
    assert failed["Status"] == "FAILED" and "no-such-bucket" in failed["Reason"]


def test_create_against_moto(aws_env, monkeypatch):
    s3 = client("s3", aws_env)
    sqs = client("sqs", aws_env)
    queue_url = sqs.create_queue(QueueName="app-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for b in ("acme-prod-data", "tidemark-inventory-111111111111-eu-west-1"):
        s3.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_notification_configuration(
        Bucket="acme-prod-data",
        NotificationConfiguration={"QueueConfigurations": [{"Id": "app-events", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]},
    )
    fn = load(monkeypatch)  # a real boto3 client, pointed at moto by AWS_ENDPOINT_URL
    assert fn.handler(tf(PROPS, "create"), None) == {"Buckets": ["acme-prod-data"]}
    cfg = s3.get_bucket_notification_configuration(Bucket="acme-prod-data")
    assert [q["Id"] for q in cfg["QueueConfigurations"]] == ["app-events"]
    inv = s3.get_bucket_inventory_configuration(Bucket="acme-prod-data", Id="tidemark")["InventoryConfiguration"]
    assert inv["Destination"]["S3BucketDestination"]["Bucket"] == PROPS["InventoryBucketArn"]
    assert inv["Schedule"]["Frequency"] == "Daily"
