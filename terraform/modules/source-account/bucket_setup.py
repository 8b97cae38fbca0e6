# tidemark bucket setup: adds EventBridge delivery to each protected bucket's EXISTING
# notification configuration (never replacing queue/topic/lambda configurations) and manages
# the tidemark S3 Inventory configuration. Runs as a CloudFormation custom resource or from
# Terraform's aws_lambda_invocation (lifecycle_scope = "CRUD"). Single source of the code that
# cloudformation/source-account.yaml embeds (tests/iac/sync_embedded.py).
import json
import urllib.request

import boto3

s3 = boto3.client("s3")
OTHERS = ("TopicConfigurations", "QueueConfigurations", "LambdaFunctionConfigurations")
MINE = "tidemark"  # the inventory configuration the seeder reads: <prefix>/<bucket>/tidemark/
WAS_ON = "tidemark-eventbridge-was-on"  # disabled marker: EventBridge delivery predates tidemark


def notification(bucket):
    cfg = s3.get_bucket_notification_configuration(Bucket=bucket)
    return {k: v for k, v in cfg.items() if k in OTHERS or k == "EventBridgeConfiguration"}


def put_notification(bucket, cfg):
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=cfg, SkipDestinationValidation=True)


def my_inventories(bucket):
    ids, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_bucket_inventory_configurations(Bucket=bucket, **kw)
        ids += [c["Id"] for c in r.get("InventoryConfigurationList", []) if c["Id"].startswith(MINE)]
        token = r.get("NextContinuationToken")
        if not token:
            return ids


def inventory(inv_id, p, enabled):
    return {
        "Id": inv_id, "IsEnabled": enabled,
        "IncludedObjectVersions": p.get("IncludedVersions", "All"),
        "Schedule": {"Frequency": p.get("Frequency", "Daily")},
        "OptionalFields": ["Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded",
                           "EncryptionStatus", "ChecksumAlgorithm"],
        "Destination": {"S3BucketDestination": {
            "AccountId": p["AccountId"], "Bucket": p["InventoryBucketArn"],
            "Format": p.get("Format", "CSV"), "Prefix": p["InventoryPrefix"]}}}


def setup(bucket, p):
    cfg = notification(bucket)
    if not my_inventories(bucket) and "EventBridgeConfiguration" in cfg:
        # remember, before changing anything, that tidemark must not turn EventBridge off later
        s3.put_bucket_inventory_configuration(
            Bucket=bucket, Id=WAS_ON, InventoryConfiguration=inventory(WAS_ON, p, False))
    s3.put_bucket_inventory_configuration(
        Bucket=bucket, Id=MINE, InventoryConfiguration=inventory(MINE, p, True))
    if "EventBridgeConfiguration" not in cfg:
        cfg["EventBridgeConfiguration"] = {}
        put_notification(bucket, cfg)


def teardown(bucket):
    ids = my_inventories(bucket)
    for i in ids:
        s3.delete_bucket_inventory_configuration(Bucket=bucket, Id=i)
    cfg = notification(bucket)
    if MINE in ids and WAS_ON not in ids and "EventBridgeConfiguration" in cfg:
        del cfg["EventBridgeConfiguration"]  # only what tidemark turned on
        put_notification(bucket, cfg)


def apply(action, new, old):
    new_b = set(new.get("Buckets", []))
    for b in set(old.get("Buckets", [])) - new_b:
        teardown(b)
    for b in sorted(new_b):
        setup(b, new)
    return {"Buckets": sorted(new_b)}


def respond(event, context, status, data, reason=""):
    body = json.dumps({
        "Status": status, "Reason": reason or "see CloudWatch log stream " + context.log_stream_name,
        "PhysicalResourceId": event.get("PhysicalResourceId") or "tidemark-bucket-setup",
        "StackId": event["StackId"], "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"], "Data": data}).encode()
    req = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                 headers={"Content-Type": "", "Content-Length": str(len(body))})
    urllib.request.urlopen(req, timeout=30).read()


def handler(event, context):
    print(json.dumps({k: v for k, v in event.items() if k != "ResponseURL"}))
    if "RequestType" not in event:  # Terraform aws_lambda_invocation, CRUD lifecycle
        tf = event.get("tf", {})
        action = tf.get("action", "create")
        new = {k: v for k, v in event.items() if k != "tf"}
        old = tf.get("prev_input") or {}
        return apply(action, {}, new) if action == "delete" else apply(action, new, old)
    try:
        action = event["RequestType"].lower()
        new = event["ResourceProperties"]
        old = event.get("OldResourceProperties", {})
        data = apply(action, {}, new) if action == "delete" else apply(action, new, old)
        respond(event, context, "SUCCESS", {"Buckets": ",".join(data["Buckets"])})
    except Exception as e:  # always answer CloudFormation, or the stack waits for an hour
        print(repr(e))
        respond(event, context, "FAILED", {}, str(e)[:200])
