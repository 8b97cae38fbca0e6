"""IAM guard rails, checked on the policies of both the CloudFormation templates and the Terraform modules.

* No Allow statement grants "*" or a whole service ("s3:*") as its action.
* No Allow statement names Resource "*" unless AWS requires it, and then it has a condition:
  KMS key policies (their "*" is the key itself) and X-Ray's PutTraceSegments /
  PutTelemetryRecords, which have no resource-level permissions.
* The source account's read-only backup role can read the protected buckets and nothing else
  there: every action on them is a read; its only writes are new objects under the vault's
  v1/*/objects/ prefix (server-side copies) and the vault key for those.
* Both cross-account roles require the external id and only trust tidemark's vault roles.
* The restore target role (write access to the source buckets) exists only when enabled, may
  write nothing but the protected buckets, and only the restore and api functions may assume it.
* The api function gets exactly what its router needs; nothing in the vault account may delete
  anything but a restore run's marker in a restore target.
"""

from __future__ import annotations

import pytest

import iac_model as m

NO_RESOURCE_LEVEL_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "cloudwatch:GetMetricStatistics"}
READ_ACTIONS = {
    "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging",
    "s3:GetObjectAcl", "s3:GetObjectVersionAcl", "s3:ListBucket", "s3:ListBucketVersions",
    "s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetBucketNotification", "s3:GetBucketOwnershipControls", "kms:Decrypt",
}
VAULT_COPY_ACTIONS = {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "kms:GenerateDataKey"}
PROTECTED = ["acme-prod-data", "acme-prod-logs"]
VAULT_BUCKET = "tidemark-vault-222222222222-eu-west-1"
VAULT_KEY = "arn:aws:kms:eu-west-1:222222222222:key/11111111-2222-3333-4444-555555555555"


def _sides(scenario):
    cfn_path = next(m.CFN_DIR / s[1] for s in m.SCENARIOS if s[0] == scenario)
    cfn_params = next(s[3] for s in m.SCENARIOS if s[0] == scenario)
    template = m.CfnTemplate(cfn_path, cfn_params)
    cfn, tf = m.models(scenario)
    # CloudFormation statements with parameters substituted, so resources can be inspected
    cfn_raw = [(scope, template.value(st)) for scope, st in cfn.raw_statements]
    return {"cloudformation": cfn_raw, "terraform": tf.raw_statements}


ALL = [(scenario, side) for scenario in [s[0] for s in m.SCENARIOS] for side in ("cloudformation", "terraform")]


@pytest.fixture(scope="module")
def statements():
    cache = {}

    def get(scenario, side):
        if scenario not in cache:
            cache[scenario] = _sides(scenario)
        return cache[scenario][side]

    return get


def _list(v):
    return v if isinstance(v, list) else [v]


@pytest.mark.parametrize("scenario,side", ALL)
def test_no_wildcard_actions(statements, scenario, side):
    for scope, st in statements(scenario, side):
        if st.get("Effect", "Allow") != "Allow":
            continue  # Deny statements (TLS-only, wrong key) may use s3:*; they take away
        for action in _list(st.get("Action")):
            assert action != "*" and not action.endswith(":*"), f"{side} {scope} {st.get('Sid')}: action {action}"


@pytest.mark.parametrize("scenario,side", ALL)
def test_star_resources_only_where_required_and_conditioned(statements, scenario, side):
    for scope, st in statements(scenario, side):
        if st.get("Effect", "Allow") != "Allow" or "*" not in _list(st.get("Resource")):
            continue
        where = f"{side} {scope} {st.get('Sid')}"
        assert scope == "kms-key" or set(_list(st["Action"])) <= NO_RESOURCE_LEVEL_ACTIONS, f"{where}: Resource '*'"
        assert st.get("Condition"), f"{where}: Resource '*' without a condition"


@pytest.mark.parametrize("scenario,side", [a for a in ALL if a[0].startswith("source")])
def test_backup_role_cannot_write_or_delete_in_source_buckets(statements, scenario, side):
    read = [st for scope, st in statements(scenario, side) if scope == "role:read" and st.get("Effect", "Allow") == "Allow"]
    assert read, "no read role statements found"
    for st in read:
        actions = set(_list(st["Action"]))
        resources = [str(r) for r in _list(st["Resource"])]
        assert actions <= READ_ACTIONS | VAULT_COPY_ACTIONS, f"{side} {st.get('Sid')}: {actions - READ_ACTIONS - VAULT_COPY_ACTIONS}"
        writes = actions - READ_ACTIONS
        if writes or "kms:Decrypt" in actions and any(VAULT_KEY in r for r in resources):
            # writes only into the vault's objects/ prefix, or the vault key through S3
            for r in resources:
                assert r.endswith(f":s3:::{VAULT_BUCKET}/v1/*/objects/*") or r == VAULT_KEY, f"{side} {st.get('Sid')}: writes to {r}"
            assert not any(b in r for b in PROTECTED for r in resources)
        for r in resources:
            if any(b in r for b in PROTECTED):
                assert actions <= READ_ACTIONS, f"{side} {st.get('Sid')}: non-read action on a protected bucket"
    granted = set().union(*(set(_list(st["Action"])) for st in read))
    for forbidden in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl", "s3:PutObjectTagging", "s3:PutBucketPolicy", "s3:PutBucketNotification"):
        assert forbidden not in granted


@pytest.mark.parametrize("scenario,side", [a for a in ALL if a[0].startswith("source")])
def test_cross_account_roles_need_external_id_and_a_vault_role(statements, scenario, side):
    trusts = [(scope, st) for scope, st in statements(scenario, side) if scope in ("trust:read", "trust:target")]
    assert trusts
    for scope, st in trusts:
        cond = st["Condition"]
        assert cond["StringEquals"]["sts:ExternalId"], scope
        principal_arns = _list(cond["ArnLike"]["aws:PrincipalArn"])
        assert all(":iam::222222222222:role/tidemark-" in p for p in principal_arns), principal_arns
    if scenario == "source-all-options":
        (target,) = [st for scope, st in trusts if scope == "trust:target"]
        assert sorted(_list(target["Condition"]["ArnLike"]["aws:PrincipalArn"])) == [
            "arn:aws:iam::222222222222:role/tidemark-api",
            "arn:aws:iam::222222222222:role/tidemark-restore",
        ]


@pytest.mark.parametrize("side", ["cloudformation", "terraform"])
def test_the_restore_target_role_is_off_by_default(statements, side):
    default_scopes = {scope for scope, _ in statements("source-defaults", side)}
    assert "trust:target" not in default_scopes and "role:target" not in default_scopes
    for function in ("role:restore", "role:api"):
        assumes = [st for scope, st in statements("vault-defaults", side) if scope == function and "sts:AssumeRole" in _list(st.get("Action"))]
        assert not assumes, f"{function} may not assume any source role by default"
    enabled = {scope for scope, _ in statements("source-all-options", side)}
    assert {"trust:target", "role:target"} <= enabled
    for function in ("role:restore", "role:api"):
        (assume,) = [st for scope, st in statements("vault-all-options", side) if scope == function and "sts:AssumeRole" in _list(st.get("Action"))]
        assert [str(r) for r in _list(assume["Resource"])] == ["arn:aws:iam::*:role/tidemark-restore-target"], assume
        assert assume["Condition"]["StringEquals"]["aws:ResourceAccount"]


@pytest.mark.parametrize("side", ["cloudformation", "terraform"])
def test_the_restore_target_role_writes_only_the_protected_buckets(statements, side):
    target = [st for scope, st in statements("source-all-options", side) if scope == "role:target"]
    assert target
    granted = set()
    for st in target:
        actions = set(_list(st["Action"]))
        granted |= actions
        for r in (str(r) for r in _list(st["Resource"])):
            if r.startswith("arn:aws:s3:::"):
                bucket = r[len("arn:aws:s3:::"):].split("/", 1)[0]
                if bucket == VAULT_BUCKET:
                    assert actions <= {"s3:GetObject", "s3:GetObjectVersion"} and r.endswith("/v1/*/objects/*"), f"{side} {st.get('Sid')}: {r}"
                else:
                    assert bucket in PROTECTED, f"{side} {st.get('Sid')}: {r}"
            else:
                assert r.startswith("arn:aws:kms:"), f"{side} {st.get('Sid')}: {r}"
    # What a restore into this account does: write and rewrite objects, delete newer ones, list,
    # create a deleted bucket again. Never destroy history or change a bucket's configuration.
    assert {"s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:CreateBucket"} <= granted
    for forbidden in ("s3:DeleteObjectVersion", "s3:DeleteBucket", "s3:PutBucketPolicy", "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration"):
        assert forbidden not in granted


# What the api function's router does: run::start reads the vault's points and the control table
# (common), checks a copy-mode target in this account (HeadBucket = ListBucket, a one-key
# listing), creates a missing one, writes the run's marker and sends the first plan step.
API_ACTIONS = {
    "logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
    "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable",
    "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey",
    "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation",
    "s3:CreateBucket", "s3:PutObject", "sqs:SendMessage",
}


@pytest.mark.parametrize("scenario,side", [a for a in ALL if a[0].startswith("vault")])
def test_the_api_function_gets_what_its_router_needs_and_no_more(statements, scenario, side):
    api = [st for scope, st in statements(scenario, side) if scope == "role:api"]
    granted = set().union(*(set(_list(st["Action"])) for st in api))
    extra = {"sts:AssumeRole"} if scenario == "vault-all-options" else set()
    assert granted == API_ACTIONS | extra, f"{side}: extra {granted - API_ACTIONS - extra}, missing {(API_ACTIONS | extra) - granted}"
    for st in api:
        actions = set(_list(st["Action"]))
        resources = [str(r) for r in _list(st["Resource"])]
        if "s3:PutObject" in actions:
            assert actions == {"s3:PutObject"} and all(r.endswith(":s3:::tidemark-restore-*/*.tidemark-restore/*") for r in resources), (side, st)
        if "s3:CreateBucket" in actions:
            assert all(r.endswith(":s3:::tidemark-restore-*") for r in resources), (side, st)
        if "sqs:SendMessage" in actions:
            assert len(resources) == 1, (side, st)


@pytest.mark.parametrize("scenario,side", [a for a in ALL if a[0].startswith("vault")])
def test_nothing_in_the_vault_account_may_delete_vault_objects(statements, scenario, side):
    for scope, st in statements(scenario, side):
        if st.get("Effect", "Allow") != "Allow":
            continue
        actions = set(_list(st.get("Action")))
        for action in actions:
            assert action not in ("s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutBucketObjectLockConfiguration"), f"{side} {scope}: {action}"
        if "s3:DeleteObject" in actions:
            # The one delete: a finished copy-mode restore removes its marker from its target.
            resources = [str(r) for r in _list(st["Resource"])]
            assert scope == "role:restore" and actions == {"s3:DeleteObject"}, f"{side} {scope}: {st}"
            assert all(r.endswith(":s3:::tidemark-restore-*/*.tidemark-restore/*") for r in resources), f"{side} {scope}: {resources}"
