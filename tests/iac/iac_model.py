"""Read the CloudFormation templates and the Terraform modules into one comparable model.

Neither CloudFormation nor Terraform can be run here (no AWS, no provider downloads), so the
parity and policy tests evaluate the sources themselves:

* CloudFormation: parsed with cfn-lint's YAML loader; parameters take their defaults (or the
  scenario's values); ``Conditions``, ``Fn::If``, ``AWS::NoValue``, ``Ref`` to parameters and
  ``Fn::Sub`` over parameters are evaluated; any other intrinsic stays opaque.
* Terraform: parsed with python-hcl2; variables take their defaults (or the scenario's
  values); ``count``, ``for_each``, ``dynamic`` blocks, ``each.*``, ``var.*``, ``local.*``,
  ternaries, comparisons and a handful of functions are evaluated; references to other
  resources become :class:`Ref` objects that the extractors follow.

Both sides are reduced to the same vocabulary (resource kinds, IAM statements by scope and
Sid, function / event source / queue / rule / alarm / bucket settings) so that a test can
compare them with ``==``. An unknown resource type is an error: extend ``CFN_KINDS`` /
``TF_KINDS`` when you add one, on both sides.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
CFN_DIR = ROOT / "cloudformation"
TF_DIR = ROOT / "terraform" / "modules"

# ---------------------------------------------------------------------------------- kinds

CFN_KINDS = {
    "AWS::KMS::Key": "kms-key",
    "AWS::KMS::Alias": "kms-alias",
    "AWS::S3::Bucket": "s3-bucket",
    "AWS::S3::BucketPolicy": "s3-bucket-policy",
    "AWS::SQS::Queue": "sqs-queue",
    "AWS::SQS::QueuePolicy": "sqs-queue-policy",
    "AWS::DynamoDB::Table": "dynamodb-table",
    "AWS::Logs::LogGroup": "log-group",
    "AWS::IAM::Role": "iam-role",
    "AWS::IAM::Policy": "iam-role-policy",
    "AWS::Lambda::Function": "lambda-function",
    "AWS::Lambda::EventSourceMapping": "event-source-mapping",
    "AWS::Lambda::Permission": "lambda-permission",
    "AWS::Events::EventBus": "event-bus",
    "AWS::Events::EventBusPolicy": "event-bus-policy",
    "AWS::Events::Rule": "event-rule",
    "AWS::ApiGateway::RestApi": "api",
    "AWS::ApiGateway::Resource": "api-resource",
    "AWS::ApiGateway::Model": "api-model",
    "AWS::ApiGateway::RequestValidator": "api-request-validator",
    "AWS::ApiGateway::Method": "api-method",
    "AWS::ApiGateway::Deployment": "api-deployment",
    "AWS::ApiGateway::Stage": "api-stage",
    "AWS::ApiGateway::Account": "api-account",
    "AWS::SNS::Topic": "sns-topic",
    "AWS::SNS::TopicPolicy": "sns-topic-policy",
    "AWS::SNS::Subscription": "sns-subscription",
    "AWS::CloudWatch::Dashboard": "dashboard",
    "AWS::CloudWatch::Alarm": "alarm",
    "Custom::TidemarkBucketSetup": "bucket-setup-invocation",
    "AWS::Glue::Database": "glue-database",
    "AWS::Glue::Table": "glue-table",
}

# None: an aspect of a bucket that CloudFormation sets as a property of AWS::S3::Bucket.
TF_KINDS = {
    "aws_kms_key": "kms-key",
    "aws_kms_alias": "kms-alias",
    "aws_s3_bucket": "s3-bucket",
    "aws_s3_bucket_policy": "s3-bucket-policy",
    "aws_s3_bucket_versioning": None,
    "aws_s3_bucket_object_lock_configuration": None,
    "aws_s3_bucket_server_side_encryption_configuration": None,
    "aws_s3_bucket_ownership_controls": None,
    "aws_s3_bucket_public_access_block": None,
    "aws_s3_bucket_logging": None,
    "aws_s3_bucket_lifecycle_configuration": None,
    "aws_sqs_queue": "sqs-queue",
    "aws_sqs_queue_policy": "sqs-queue-policy",
    "aws_dynamodb_table": "dynamodb-table",
    "aws_cloudwatch_log_group": "log-group",
    "aws_iam_role": "iam-role",
    "aws_iam_role_policy": "iam-role-policy",
    "aws_lambda_function": "lambda-function",
    "aws_lambda_event_source_mapping": "event-source-mapping",
    "aws_lambda_permission": "lambda-permission",
    "aws_cloudwatch_event_bus": "event-bus",
    "aws_cloudwatch_event_bus_policy": "event-bus-policy",
    "aws_cloudwatch_event_rule": "event-rule",
    "aws_cloudwatch_event_target": "event-target",
    "aws_api_gateway_rest_api": "api",
    "aws_api_gateway_resource": "api-resource",
    "aws_api_gateway_model": "api-model",
    "aws_api_gateway_request_validator": "api-request-validator",
    "aws_api_gateway_method": "api-method",
    "aws_api_gateway_integration": "api-integration",
    "aws_api_gateway_method_response": "api-method-response",
    "aws_api_gateway_integration_response": "api-integration-response",
    "aws_api_gateway_deployment": "api-deployment",
    "aws_api_gateway_stage": "api-stage",
    "aws_api_gateway_method_settings": "api-method-settings",
    "aws_api_gateway_account": "api-account",
    "aws_sns_topic": "sns-topic",
    "aws_sns_topic_policy": "sns-topic-policy",
    "aws_sns_topic_subscription": "sns-subscription",
    "aws_cloudwatch_dashboard": "dashboard",
    "aws_cloudwatch_metric_alarm": "alarm",
    "aws_lambda_invocation": "bucket-setup-invocation",
    "aws_glue_catalog_database": "glue-database",
    "aws_glue_catalog_table": "glue-table",
}

# ---------------------------------------------------------------------------------- model


@dataclass
class Model:
    """What one side (CloudFormation or Terraform) deploys, in a shared vocabulary."""

    kinds: Counter = field(default_factory=Counter)
    # (scope, sid, effect, actions, condition keys, has "*" resource)
    statements: set = field(default_factory=set)
    # every policy statement, raw-ish, for the wildcard test: (scope, statement dict)
    raw_statements: list = field(default_factory=list)
    functions: dict = field(default_factory=dict)
    event_sources: dict = field(default_factory=dict)
    queues: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    alarms: dict = field(default_factory=dict)
    # alarm name -> its description as evaluated (test_alarms.py; the step and runbook anchor it
    # names are in `alarms`, which the parity tests compare)
    alarm_descriptions: dict = field(default_factory=dict)
    buckets: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)  # name -> default
    # function -> {environment variable -> value as evaluated}; not compared by the parity tests
    # (resource references stay opaque on both sides), read by test_variables.py
    env_values: dict = field(default_factory=dict)

    def actions(self, scope_prefix: str) -> set:
        out = set()
        for st in self.statements:
            if st[0].startswith(scope_prefix) and st[2] == "Allow":
                out |= set(st[3])
        return out


def _norm_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _statement_key(scope: str, st: dict) -> tuple:
    cond = st.get("Condition") or {}
    cond_keys = frozenset((op, var) for op, body in cond.items() for var in (body or {}))
    resources = _norm_list(st.get("Resource"))
    return (
        scope,
        st.get("Sid"),
        st.get("Effect", "Allow"),
        frozenset(_norm_list(st.get("Action"))),
        cond_keys,
        any(r == "*" for r in resources),
    )


# "Step: <step>. Runbook: docs/runbook.md#<anchor>." at the start of every alarm description.
ALARM_STEP = re.compile(r"^Step: (?P<step>[^.]+)\. Runbook: (?P<page>docs/[\w./-]+\.md)#(?P<anchor>[a-z0-9-]+)\.(?: |$)")


def alarm_step(description) -> dict:
    """The step and runbook line an alarm description names ({} when it names none)."""
    found = ALARM_STEP.match(description) if isinstance(description, str) else None
    return {"step": found["step"], "runbook": f"{found['page']}#{found['anchor']}"} if found else {}


def _event_source_key(function: str, queue: str) -> str:
    """An event source's key: its function, and for a dead-letter queue (the alert function reads three) the queue too."""
    return f"{function}:{queue}" if queue.endswith("-dlq") else function


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


# ============================================================================ CloudFormation


class CfnTemplate:
    def __init__(self, path: Path, params: dict[str, Any] | None = None):
        self.path = path
        self.doc = cfn_yaml.load(str(path))
        self.params: dict[str, Any] = {}
        for name, p in self.doc.get("Parameters", {}).items():
            value = (params or {}).get(name, p.get("Default"))
            if p.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [v.strip() for v in value.split(",")] if value != "" else [""]
            self.params[name] = value
        self.pseudo = {"AWS::Region": "eu-west-1", "AWS::AccountId": "222222222222", "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
        self.conditions = {n: self._cond(c) for n, c in self.doc.get("Conditions", {}).items()}
        self.resources = {
            n: r for n, r in self.doc["Resources"].items() if "Condition" not in r or self.conditions[r["Condition"]]
        }

    # -- evaluation
    def _cond(self, c) -> bool:
        if isinstance(c, dict) and len(c) == 1:
            (fn, args), = c.items()
            if fn == "Fn::Equals":
                a, b = (self.value(x) for x in args)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self._cond(args[0])
            if fn == "Fn::And":
                return all(self._cond(x) for x in args)
            if fn == "Fn::Or":
                return any(self._cond(x) for x in args)
            if fn == "Condition":
                return self._cond(self.doc["Conditions"][args])
        raise ValueError(f"cannot evaluate condition {c!r}")

    def resolve(self, v):
        """Evaluate Fn::If / AWS::NoValue everywhere, parameters where possible."""
        if isinstance(v, dict):
            if len(v) == 1:
                (k, a), = v.items()
                if k == "Fn::If":
                    branch = a[1] if self._cond({"Condition": a[0]}) else a[2]
                    return self.resolve(branch)
                if k == "Ref" and a == "AWS::NoValue":
                    return _NOVALUE
            out = {}
            for k, x in v.items():
                r = self.resolve(x)
                if r is not _NOVALUE:
                    out[k] = r
            return out
        if isinstance(v, list):
            return [r for r in (self.resolve(x) for x in v) if r is not _NOVALUE]
        return v

    def value(self, v):
        """Best-effort scalar value: parameters, pseudo parameters, Fn::Sub, Fn::Join."""
        v = self.resolve(v)
        if isinstance(v, dict) and len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                if a in self.params:
                    return self.params[a]
                if a in self.pseudo:
                    return self.pseudo[a]
                return Ref("cfn", a, None, "ref")
            if k == "Fn::GetAtt":
                parts = a if isinstance(a, list) else a.split(".", 1)
                return Ref("cfn", parts[0], None, parts[1])
            if k == "Fn::Sub":
                text, variables = (a, {}) if isinstance(a, str) else (a[0], a[1])
                def sub(m):
                    name = m.group(1)
                    if name in variables:
                        val = self.value(variables[name])
                    elif name in self.params:
                        val = self.params[name]
                    elif name in self.pseudo:
                        val = self.pseudo[name]
                    elif SYMBOLS is not None and name in SYMBOLS:
                        val = SYMBOLS[name]
                    else:
                        return "?"
                    return str(val) if isinstance(val, (str, int, float)) else "?"
                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if k == "Fn::Split":
                whole = self.value(a[1])
                if isinstance(whole, str):
                    return whole.split(a[0])
            if k == "Fn::Join":
                parts = self.value(a[1])
                if isinstance(parts, list):
                    return a[0].join(str(self.value(p)) for p in parts)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict) and not any(k == "Ref" or k.startswith("Fn::") for k in v):
            return {k: self.value(x) for k, x in v.items()}
        return v

    def props(self, name: str) -> dict:
        return self.resolve(self.resources[name].get("Properties", {}))

    def target(self, v) -> str | None:
        """Logical id a Ref / GetAtt points at."""
        v = self.resolve(v)
        if isinstance(v, dict) and "Ref" in v:
            return v["Ref"]
        if isinstance(v, dict) and "Fn::GetAtt" in v:
            a = v["Fn::GetAtt"]
            return (a if isinstance(a, list) else a.split("."))[0]
        return None

    def tag(self, name: str, key: str) -> str | None:
        for t in self.props(name).get("Tags", []) or []:
            if t.get("Key") == key:
                return t.get("Value")
        return None


_NOVALUE = object()


def cfn_model(path: Path, params: dict | None = None) -> Model:
    t = CfnTemplate(path, params)
    m = Model()
    m.parameters = {n: p.get("Default") for n, p in t.doc.get("Parameters", {}).items()}

    def role_id(logical: str) -> str:
        return t.tag(logical, "tidemark:role") or logical

    def fn_id(logical: str) -> str:
        return t.tag(logical, "tidemark:function") or logical

    def add_doc(scope: str, doc):
        statements = doc.get("Statement", []) if isinstance(doc, dict) and "Statement" in doc else doc
        for st in _norm_list(statements):
            m.statements.add(_statement_key(scope, st))
            m.raw_statements.append((scope, st))

    for name, res in t.resources.items():
        typ = res["Type"]
        if typ not in CFN_KINDS:
            raise KeyError(f"{path.name}: resource type {typ} ({name}) has no kind in CFN_KINDS")
        m.kinds[CFN_KINDS[typ]] += 1
        p = t.props(name)
        if typ == "AWS::IAM::Role":
            add_doc(f"trust:{role_id(name)}", p["AssumeRolePolicyDocument"])
            for pol in p.get("Policies", []):
                m.kinds["iam-role-policy"] += 1
                add_doc(f"role:{role_id(name)}", pol["PolicyDocument"])
        elif typ == "AWS::IAM::Policy":
            for r in p["Roles"]:
                add_doc(f"role:{role_id(t.target(r))}", p["PolicyDocument"])
        elif typ == "AWS::KMS::Key":
            add_doc("kms-key", p["KeyPolicy"])
        elif typ == "AWS::S3::BucketPolicy":
            add_doc(f"s3-bucket-policy:{t.tag(t.target(p['Bucket']), 'tidemark:component')}", p["PolicyDocument"])
        elif typ == "AWS::SQS::QueuePolicy":
            for q in p["Queues"]:
                add_doc(f"sqs-queue-policy:{t.value(t.props(t.target(q))['QueueName'])}", p["PolicyDocument"])
        elif typ == "AWS::SNS::TopicPolicy":
            add_doc("sns-topic-policy", p["PolicyDocument"])
        elif typ == "AWS::Events::EventBusPolicy":
            add_doc("event-bus-policy", [p["Statement"]])
        elif typ == "AWS::Lambda::Permission":
            scope = f"lambda-permission:{fn_id(t.target(p['FunctionName']))}:{p['Principal']}"
            add_doc(scope, [{"Effect": "Allow", "Action": p["Action"], "Resource": "function"}])
        elif typ == "AWS::Events::Rule":
            targets = p.get("Targets", [])
            m.kinds["event-target"] += len(targets)
            m.rules[t.value(p["Name"])] = {
                "schedule": t.value(p.get("ScheduleExpression")),
                "pattern": _plain(t.value(p.get("EventPattern"))),
                "state": p.get("State"),
                "targets": sorted(
                    (
                        x["Id"],
                        "DeadLetterConfig" in x,
                        json.dumps(x.get("RetryPolicy"), sort_keys=True),
                        json.loads(t.value(x["Input"])) if "Input" in x else None,
                        "RoleArn" in x,
                    )
                    for x in targets
                ),
            }
        elif typ == "AWS::ApiGateway::Method":
            m.kinds["api-method-response"] += len(p.get("MethodResponses", []))
            if "Integration" in p:
                m.kinds["api-integration"] += 1
                m.kinds["api-integration-response"] += len(p["Integration"].get("IntegrationResponses", []))
        elif typ == "AWS::ApiGateway::Stage":
            m.kinds["api-method-settings"] += len(p.get("MethodSettings", []))
        elif typ == "AWS::Lambda::Function":
            env = p.get("Environment", {}).get("Variables", {})
            m.env_values[fn_id(name)] = {k: t.value(v) for k, v in env.items()}
            m.functions[fn_id(name)] = {
                "runtime": p["Runtime"],
                "handler": p["Handler"],
                "architectures": t.value(p.get("Architectures")),
                "memory": int(t.value(p["MemorySize"])),
                "timeout": int(t.value(p["Timeout"])),
                "reserved": None if "ReservedConcurrentExecutions" not in p else int(t.value(p["ReservedConcurrentExecutions"])),
                "tracing": p.get("TracingConfig", {}).get("Mode"),
                "env": sorted(env),
                "dead_letter": "DeadLetterConfig" in p,
                "kms_env": "KmsKeyArn" in p,
                "log_format": p.get("LoggingConfig", {}).get("LogFormat"),
            }
        elif typ == "AWS::Lambda::EventSourceMapping":
            q = t.target(p["EventSourceArn"])
            queue = t.value(t.props(q)["QueueName"])
            m.event_sources[_event_source_key(fn_id(t.target(p["FunctionName"])), queue)] = {
                "queue": queue,
                "batch_size": int(t.value(p["BatchSize"])),
                "batching_window": int(t.value(p.get("MaximumBatchingWindowInSeconds", 0))),
                "response_types": sorted(p.get("FunctionResponseTypes", [])),
                "max_concurrency": int(t.value(p["ScalingConfig"]["MaximumConcurrency"])),
            }
        elif typ == "AWS::SQS::Queue":
            redrive = p.get("RedrivePolicy")
            m.queues[t.value(p["QueueName"])] = {
                "visibility_timeout": int(t.value(p.get("VisibilityTimeout", 30))),
                "retention": int(t.value(p.get("MessageRetentionPeriod", 345600))),
                "kms": "KmsMasterKeyId" in p,
                "dlq": redrive and t.value(t.props(t.target(redrive["deadLetterTargetArn"]))["QueueName"]),
                "max_receive_count": redrive and int(t.value(redrive["maxReceiveCount"])),
            }
        elif typ == "AWS::CloudWatch::Alarm":
            queries = [(q["Id"], t.value(q.get("Expression")), int(q["Period"])) for q in p.get("Metrics", [])]
            m.alarm_descriptions[t.value(p["AlarmName"])] = t.value(p.get("AlarmDescription"))
            m.alarms[t.value(p["AlarmName"])] = {
                **alarm_step(t.value(p.get("AlarmDescription"))),
                "namespace": p.get("Namespace"),
                "metric": p.get("MetricName"),
                "statistic": p.get("Statistic"),
                "period": int(p["Period"]) if "Period" in p else None,
                "queries": queries,
                "evaluation_periods": int(p["EvaluationPeriods"]),
                "threshold": float(t.value(p["Threshold"])),
                "comparison": p["ComparisonOperator"],
                "missing": p.get("TreatMissingData"),
                "dimensions": sorted(d["Name"] for d in p.get("Dimensions", [])),
                "actions": (len(p.get("AlarmActions", [])), len(p.get("OKActions", []))),
            }
        elif typ == "AWS::S3::Bucket":
            feats = set()
            if p.get("VersioningConfiguration", {}).get("Status") == "Enabled":
                feats.add("versioning")
            if "ObjectLockConfiguration" in p:
                rule = p["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
                feats.add(f"object-lock:{rule['Mode']}")
            for r in p.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
                feats.add("sse-kms" if r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" else "sse-s3")
            if any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in p.get("OwnershipControls", {}).get("Rules", [])):
                feats.add("owner-enforced")
            pab = p.get("PublicAccessBlockConfiguration", {})
            if pab and all(pab.get(k) is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")):
                feats.add("public-access-block")
            if "LoggingConfiguration" in p:
                feats.add("access-logging")
            for rule in p.get("LifecycleConfiguration", {}).get("Rules", []):
                feats.add(f"lifecycle:{rule['Id']}")
            m.buckets[t.tag(name, "tidemark:component")] = feats
        elif typ == "AWS::DynamoDB::Table":
            m.tables[t.value(p["TableName"])] = {
                "keys": sorted((k["AttributeName"], k["KeyType"]) for k in p["KeySchema"]),
                "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in p["AttributeDefinitions"]),
                "billing": p.get("BillingMode"),
                "ttl": p.get("TimeToLiveSpecification", {}).get("AttributeName"),
                "pitr": p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True,
                "sse_kms": p.get("SSESpecification", {}).get("SSEType") == "KMS",
                "deletion_protection": p.get("DeletionProtectionEnabled") is True,
            }
    return m


def _plain(v):
    """Turn cfn-lint node classes into plain Python containers."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, str):
        return str(v)
    return v


# ================================================================================= Terraform


@dataclass(frozen=True)
class Ref:
    """A reference to another resource's attribute (Terraform) or a Ref/GetAtt (CloudFormation)."""

    kind: str  # resource type ("data.aws_iam_policy_document" for data sources), or "cfn"
    name: str
    key: Any
    attr: str | None

    def symbol(self) -> str:
        """The name SYMBOLS knows this reference by: `VaultBucket.Arn`, `aws_sqs_queue.main[work].arn`."""
        if self.kind == "cfn":
            return self.name if self.attr == "ref" else f"{self.name}.{self.attr}"
        key = f"[{self.key}]" if self.key is not None else ""
        return f"{self.kind}.{self.name}{key}.{self.attr}"

    def __str__(self):
        if SYMBOLS is not None and self.symbol() in SYMBOLS:
            return SYMBOLS[self.symbol()]
        return "?"


# When set (test_calls.py, through `symbols()`), references to resources render as these
# deployed names in strings and str(): {Ref.symbol(): value}. Unset, they stay "?".
SYMBOLS: dict[str, str] | None = None


class symbols:
    """Context manager: evaluate with resource references rendered by `table`."""

    def __init__(self, table: dict[str, str]):
        self.table = table

    def __enter__(self):
        global SYMBOLS
        SYMBOLS = self.table

    def __exit__(self, *exc):
        global SYMBOLS
        SYMBOLS = None


class Opaque:
    """A value the evaluator does not compute (file(), jsonencode of unknowns, ...)."""

    def __repr__(self):
        return "Opaque()"

    def __str__(self):
        return "?"


def _unquote(s):
    return s[1:-1] if isinstance(s, str) and len(s) >= 2 and s[0] == s[-1] == '"' else s


# The deploy-time facts the CloudFormation side gets from pseudo parameters.
KNOWN_DATA = {
    ("data.aws_partition", "partition"): "aws",
    ("data.aws_region", "id"): "eu-west-1",
    ("data.aws_caller_identity", "account_id"): "222222222222",
}


class _Attr:
    """resource_type.name[key].attr chains inside expressions."""

    def __init__(self, kind, name=None, key=None):
        self._kind, self._name, self._key = kind, name, key

    def __getattr__(self, item):
        if item.startswith("_"):
            raise AttributeError(item)
        if self._name is None:
            return _Attr(self._kind, item)
        if (self._kind, item) in KNOWN_DATA:
            return KNOWN_DATA[(self._kind, item)]
        return Ref(self._kind, self._name, self._key, item)

    def __getitem__(self, key):
        return _Attr(self._kind, self._name, key)


class _Data:
    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        return _Attr("data." + item)


class _NS:
    def __init__(self, getter):
        self._get = getter

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        return self._get(item)


class _Obj(dict):
    """HCL objects: attribute access on dicts (each.value.memory)."""

    def __getattr__(self, item):
        try:
            return self[item]
        except KeyError as e:
            raise AttributeError(item) from e


def _obj(v):
    if isinstance(v, dict):
        return _Obj({k: _obj(x) for k, x in v.items()})
    if isinstance(v, list):
        return [_obj(x) for x in v]
    return v


class _Scope(dict):
    def __init__(self, module, each=None):
        super().__init__()
        self.module, self.each = module, each

    def __missing__(self, name):
        m = self.module
        if name == "var":
            return _NS(lambda n: _obj(m.vars[n]))
        if name == "local":
            return _NS(m.local)
        if name == "each":
            return self.each
        if name == "data":
            return _Data()
        if name == "path":
            return _Obj(module=str(m.path), root=str(m.path), cwd=str(m.path))
        if name == "count":
            return self.each
        if name.startswith("aws_") or name.startswith("archive_"):
            return _Attr(name)
        if name in _FUNCS:
            return _FUNCS[name]
        raise NameError(name)


def _merge(*ds):
    out = _Obj()
    for d in ds:
        if isinstance(d, dict):
            out.update(d)
    return out


_FUNCS = {
    "length": len,
    "contains": lambda coll, v: v in coll,
    "keys": lambda d: sorted(d),
    "toset": lambda v: sorted(set(v)),
    "merge": _merge,
    "join": lambda sep, items: sep.join(items) if all(isinstance(i, str) for i in items) else Opaque(),
    "jsonencode": lambda v: v,  # keep the structure for analysis
    "jsondecode": lambda v: Opaque(),
    "file": lambda p: Opaque(),
    "templatefile": lambda p, v: Opaque(),
    "filebase64sha256": lambda p: Opaque(),
    "sha1": lambda v: Opaque(),
    "can": lambda v: True,
    "regex": lambda *a: True,
    "alltrue": all,
    "coalesce": lambda *a: next((x for x in a if x not in (None, "")), None),
}


def _skip_string(s: str, i: int) -> int:
    """s[i] is an opening quote; return the index just past the closing one (handles ${...})."""
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        if s.startswith("${", i):
            i = _match(s, i + 1) + 1
            continue
        i += 1
    raise ValueError(f"unterminated string in {s!r}")


def _match(s: str, i: int) -> int:
    """s[i] is an opening bracket; return the index of its closing bracket."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[s[i]]]
    i += 1
    while i < len(s):
        c = s[i]
        if c == '"':
            i = _skip_string(s, i)
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if c != stack.pop():
                raise ValueError(f"unbalanced brackets in {s!r}")
            if not stack:
                return i
        i += 1
    raise ValueError(f"unbalanced brackets in {s!r}")


def _split_top(expr: str, sep: str) -> int:
    """Index of the first top-level `sep` (outside brackets and strings), or -1."""
    i = 0
    while i < len(expr):
        c = expr[i]
        if c == '"':
            i = _skip_string(expr, i)
            continue
        if c in "([{":
            i = _match(expr, i) + 1
            continue
        if expr.startswith(sep, i):
            if sep == "=" and (expr[i + 1:i + 2] == "=" or expr[i - 1:i] in "=!<>"):
                i += 1
                continue
            return i
        i += 1
    return -1


def _split_all(expr: str, seps: str = ",") -> list[str]:
    parts, i, start = [], 0, 0
    while i < len(expr):
        c = expr[i]
        if c == '"':
            i = _skip_string(expr, i)
            continue
        if c in "([{":
            i = _match(expr, i) + 1
            continue
        if c in seps:
            parts.append(expr[start:i])
            start = i + 1
        i += 1
    parts.append(expr[start:])
    return [p for p in parts if p.strip()]


def _s(v):
    if isinstance(v, Ref):
        return str(v)
    return str(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else "?"


def _iter2(coll):
    return coll.items() if isinstance(coll, dict) else enumerate(coll)


def _to_python(expr: str) -> str:
    """Translate an HCL expression into a Python expression over the _Scope names."""
    expr = expr.strip()
    q = _split_top(expr, "?")
    if q >= 0:
        rest = expr[q + 1:]
        c = _split_top(rest, ":")
        if c < 0:
            raise ValueError(f"cannot translate ternary {expr!r}")
        cond, a, b = expr[:q], rest[:c], rest[c + 1:]
        return f"(({_to_python(a)}) if ({_to_python(cond)}) else ({_to_python(b)}))"
    out, i = [], 0
    while i < len(expr):
        c = expr[i]
        if c == '"':
            j = _skip_string(expr, i)
            out.append(_string_to_python(expr[i + 1:j - 1]))
            i = j
        elif c in "([{":
            j = _match(expr, i)
            inner = expr[i + 1:j]
            if c == "(":
                out.append("(" + ", ".join(_to_python(e) for e in _split_all(inner)) + ")")
            elif c == "[" and inner.lstrip().startswith("for "):
                out.append(_for_to_python(inner.lstrip()[4:]))
            elif c == "[":
                out.append("[" + ", ".join(_to_python(e) for e in _split_all(inner)) + "]")
            else:
                if inner.lstrip().startswith("for "):
                    raise ValueError(f"object for-expressions are not supported: {expr!r}")
                pairs = []
                for entry in _split_all(inner, ",\n"):
                    k = _split_top(entry, "=")
                    if k < 0:
                        k = _split_top(entry, ":")
                    key, val = entry[:k].strip(), entry[k + 1:]
                    key = key if key.startswith('"') else f'"{key}"'
                    pairs.append(f"{key}: ({_to_python(val)})")
                out.append("_Obj({" + ", ".join(pairs) + "})")
            i = j + 1
        elif expr.startswith("&&", i):
            out.append(" and ")
            i += 2
        elif expr.startswith("||", i):
            out.append(" or ")
            i += 2
        elif c == "!" and not expr.startswith("!=", i):
            out.append(" not ")
            i += 1
        elif c.isalpha() or c == "_":
            j = i
            while j < len(expr) and (expr[j].isalnum() or expr[j] in "_-"):
                j += 1
            word = expr[i:j]
            out.append({"null": "None", "true": "True", "false": "False"}.get(word, word))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _string_to_python(body: str) -> str:
    parts, i, lit = [], 0, ""
    while i < len(body):
        if body.startswith("${", i):
            j = _match(body, i + 1)
            if lit:
                parts.append(repr(lit))
                lit = ""
            parts.append(f"_s({_to_python(body[i + 2:j])})")
            i = j + 1
        elif body[i] == "\\":
            lit += body[i:i + 2].encode().decode("unicode_escape")
            i += 2
        else:
            lit += body[i]
            i += 1
    if lit or not parts:
        parts.append(repr(lit))
    return "(" + " + ".join(parts) + ")"


def _for_to_python(body: str) -> str:
    head, rest = body.split(" in ", 1)
    colon = _split_top(rest, ":")
    coll, value = rest[:colon], rest[colon + 1:]
    cond = None
    k = value.find(" if ")
    if k >= 0 and _split_top(value[:k], '"') < 0:
        value, cond = value[:k], value[k + 4:]
    names = [n.strip() for n in head.split(",")]
    src = f"_iter2({_to_python(coll)})" if len(names) == 2 else f"({_to_python(coll)})"
    tail = f" if ({_to_python(cond)})" if cond else ""
    return f"[({_to_python(value)}) for {', '.join(names)} in {src}{tail}]"


class TfModule:
    def __init__(self, path: Path, overrides: dict[str, Any] | None = None):
        self.path = path
        self.blocks: dict[str, list] = {"variable": [], "locals": [], "resource": [], "data": [], "output": []}
        for f in sorted(path.glob("*.tf")):
            with open(f) as fh:
                doc = hcl2.load(fh)
            for k, v in doc.items():
                self.blocks.setdefault(k, []).extend(v)
        self.var_defaults = {}
        for v in self.blocks["variable"]:
            for name, body in v.items():
                self.var_defaults[_unquote(name)] = self.literal(body.get("default", _REQUIRED))
        self.vars = dict(self.var_defaults)
        self.vars.update(overrides or {})
        missing = [k for k, v in self.vars.items() if v is _REQUIRED]
        if missing:
            raise ValueError(f"{path}: no value for required variables {missing}")
        self.locals_src = {}
        for block in self.blocks["locals"]:
            for k, v in block.items():
                if k != "__is_block__":
                    self.locals_src[k] = v
        self._locals: dict[str, Any] = {}
        self.resources = self._index("resource")
        self.data = self._index("data")

    # -- parsing helpers
    def literal(self, v):
        if isinstance(v, str):
            if v.startswith('"') and v.endswith('"') and "${" not in v:
                return v[1:-1]
            return v
        if isinstance(v, list):
            return [self.literal(x) for x in v]
        if isinstance(v, dict):
            return {_unquote(k): self.literal(x) for k, x in v.items() if k != "__is_block__"}
        return v

    def _index(self, kind):
        out = {}
        for block in self.blocks[kind]:
            for typ, named in block.items():
                for name, body in named.items():
                    out[(_unquote(typ), _unquote(name))] = body
        return out

    # -- evaluation
    def local(self, name):
        if name not in self._locals:
            self._locals[name] = self.eval(self.locals_src[name])
        return self._locals[name]

    def expr(self, text: str, each=None):
        try:
            code = _to_python(text)
            scope = _Scope(self, each)
            # comprehensions resolve names as globals, so hand eval() a plain dict of them
            names: dict[str, Any] = {"_Obj": _Obj, "_s": _s, "_iter2": _iter2, "__builtins__": {}}
            for word in set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", code)):
                if word in ("None", "True", "False", "if", "else", "for", "in", "and", "or", "not"):
                    continue
                try:
                    names[word] = scope[word]
                except NameError:
                    pass
            return eval(code, names)  # noqa: S307
        except (NameError, SyntaxError, TypeError, AttributeError, KeyError, ValueError, IndexError):
            return Opaque()

    def eval(self, v, each=None):
        if isinstance(v, str):
            if v.startswith("${") and _match(v, 1) == len(v) - 1:
                return self.expr(v[2:-1], each)
            if v.startswith('"') and v.endswith('"'):
                s = v[1:-1]

                return self.expr(v, each)
            return v
        if isinstance(v, list):
            return [self.eval(x, each) for x in v]
        if isinstance(v, dict):
            return _Obj({_unquote(k): self.eval(x, each) for k, x in v.items() if k != "__is_block__"})
        return v

    def instances(self, body) -> list:
        """[(each-or-None, key)] for a resource / data block."""
        if "for_each" in body:
            coll = self.eval(body["for_each"])
            if isinstance(coll, dict):
                return [(_Obj(key=k, value=_obj(v)), k) for k, v in coll.items()]
            if isinstance(coll, (list, set)):
                return [(_Obj(key=k, value=k), k) for k in coll]
            raise ValueError(f"cannot evaluate for_each {body['for_each']!r}")
        if "count" in body:
            n = self.eval(body["count"])
            if not isinstance(n, int):
                raise ValueError(f"cannot evaluate count {body['count']!r}")
            return [(_Obj(index=i), i) for i in range(n)]
        return [(None, None)]

    def blocks_of(self, body, name, each):
        """Static and dynamic nested blocks named `name`, evaluated."""
        out = [self.eval(b, each) for b in body.get(name, [])]
        for dyn in body.get("dynamic", []):
            for dname, dbody in dyn.items():
                if _unquote(dname) != name:
                    continue
                coll = self.eval(dbody["for_each"], each)
                if isinstance(coll, Opaque):
                    raise ValueError(f"cannot evaluate dynamic {name} for_each {dbody['for_each']!r}")
                for _ in coll:
                    for content in dbody["content"]:
                        out.append(self.eval(content, each))
        return out

    def instance(self, ref: Ref):
        """(body, each) of the resource or data instance a Ref points at."""
        if ref.kind.startswith("data."):
            body = self.data[(ref.kind[5:], ref.name)]
        else:
            body = self.resources[(ref.kind, ref.name)]
        for each, key in self.instances(body):
            if key == ref.key:
                return body, each
        raise KeyError(f"no instance {ref}")

    def policy_document(self, ref) -> list[dict]:
        """Statements of a data.aws_iam_policy_document instance, as IAM JSON-like dicts."""
        if not (isinstance(ref, Ref) and ref.kind == "data.aws_iam_policy_document"):
            raise ValueError(f"policy is not an aws_iam_policy_document reference: {ref!r}")
        body, each = self.instance(ref)
        out = []
        for st in self.blocks_of(body, "statement", each):
            cond: dict = {}
            for c in st.get("condition", []):
                cond.setdefault(c["test"], {})[c["variable"]] = c["values"]
            principals = {p["type"]: p["identifiers"] for p in st.get("principals", [])}
            out.append({
                "Sid": st.get("sid"),
                "Effect": st.get("effect", "Allow"),
                "Action": st.get("actions", []),
                "Resource": st.get("resources", []),
                "Principal": principals,
                **({"Condition": cond} if cond else {}),
            })
        return out


_REQUIRED = object()


def tf_model(path: Path, overrides: dict | None = None) -> Model:
    mod = TfModule(path, overrides)
    m = Model()
    m.parameters = dict(mod.var_defaults)

    def tag_of(ref, key):
        if not isinstance(ref, Ref):
            return None
        body, each = mod.instance(ref)
        tags = mod.eval(body.get("tags", {}), each)
        return tags.get(key) if isinstance(tags, dict) else None

    def add_doc(scope, statements):
        for st in statements:
            m.statements.add(_statement_key(scope, st))
            m.raw_statements.append((scope, st))

    def queue_name(ref):
        body, each = mod.instance(ref)
        return mod.eval(body["name"], each)

    for (typ, name), body in mod.resources.items():
        if typ not in TF_KINDS:
            raise KeyError(f"{path.name}: resource type {typ} ({name}) has no kind in TF_KINDS")
        for each, _key in mod.instances(body):
            kind = TF_KINDS[typ]
            if kind:
                m.kinds[kind] += 1
            a = lambda attr, default=None: mod.eval(body[attr], each) if attr in body else default  # noqa: E731
            if typ == "aws_iam_role":
                rid = mod.eval(body.get("tags", {}), each).get("tidemark:role")
                trust = mod.eval(body["assume_role_policy"], each)
                add_doc(f"trust:{rid}", mod.policy_document(Ref(trust.kind, trust.name, trust.key, None)))
            elif typ == "aws_iam_role_policy":
                role = a("role")
                pol = a("policy")
                add_doc(f"role:{tag_of(role, 'tidemark:role')}", mod.policy_document(pol))
            elif typ == "aws_kms_key":
                add_doc("kms-key", mod.policy_document(a("policy")))
            elif typ == "aws_s3_bucket_policy":
                add_doc(f"s3-bucket-policy:{tag_of(a('bucket'), 'tidemark:component')}", mod.policy_document(a("policy")))
            elif typ == "aws_sqs_queue_policy":
                add_doc(f"sqs-queue-policy:{queue_name(a('queue_url'))}", mod.policy_document(a("policy")))
            elif typ == "aws_sns_topic_policy":
                add_doc("sns-topic-policy", mod.policy_document(a("policy")))
            elif typ == "aws_cloudwatch_event_bus_policy":
                add_doc("event-bus-policy", mod.policy_document(a("policy")))
            elif typ == "aws_lambda_permission":
                fn = a("function_name")
                scope = f"lambda-permission:{tag_of(fn, 'tidemark:function')}:{a('principal')}"
                add_doc(scope, [{"Effect": "Allow", "Action": a("action"), "Resource": "function"}])
            elif typ == "aws_cloudwatch_event_rule":
                m.rules[a("name")] = {
                    "schedule": a("schedule_expression"),
                    "pattern": _plain(a("event_pattern")) if "event_pattern" in body else None,
                    "state": a("state"),
                    "targets": [],
                }
            elif typ == "aws_lambda_function":
                env = {}
                for e in body.get("environment", []):
                    env = mod.eval(e, each).get("variables", {})
                m.env_values[a("tags").get("tidemark:function")] = dict(env)
                reserved = a("reserved_concurrent_executions", -1)
                logging = (mod.blocks_of(body, "logging_config", each) or [{}])[0]
                m.functions[a("tags").get("tidemark:function")] = {
                    "runtime": a("runtime"),
                    "handler": a("handler"),
                    "architectures": a("architectures"),
                    "memory": a("memory_size"),
                    "timeout": a("timeout"),
                    "reserved": None if reserved == -1 else reserved,
                    "tracing": (mod.blocks_of(body, "tracing_config", each) or [{}])[0].get("mode"),
                    "env": sorted(env),
                    "dead_letter": bool(mod.blocks_of(body, "dead_letter_config", each)),
                    "kms_env": "kms_key_arn" in body,
                    "log_format": logging.get("log_format"),
                }
            elif typ == "aws_lambda_event_source_mapping":
                scaling = mod.blocks_of(body, "scaling_config", each)[0]
                queue = queue_name(a("event_source_arn"))
                m.event_sources[_event_source_key(tag_of(a("function_name"), "tidemark:function"), queue)] = {
                    "queue": queue,
                    "batch_size": a("batch_size"),
                    "batching_window": a("maximum_batching_window_in_seconds", 0),
                    "response_types": sorted(a("function_response_types", [])),
                    "max_concurrency": scaling["maximum_concurrency"],
                }
            elif typ == "aws_sqs_queue":
                redrive = a("redrive_policy")
                m.queues[a("name")] = {
                    "visibility_timeout": a("visibility_timeout_seconds", 30),
                    "retention": a("message_retention_seconds", 345600),
                    "kms": "kms_master_key_id" in body,
                    "dlq": redrive and queue_name(redrive["deadLetterTargetArn"]),
                    "max_receive_count": redrive and redrive["maxReceiveCount"],
                }
            elif typ == "aws_cloudwatch_metric_alarm":
                queries = [(q["id"], q.get("expression"), q["period"]) for q in mod.blocks_of(body, "metric_query", each)]
                m.alarm_descriptions[a("alarm_name")] = a("alarm_description")
                m.alarms[a("alarm_name")] = {
                    **alarm_step(a("alarm_description")),
                    "namespace": a("namespace"),
                    "metric": a("metric_name"),
                    "statistic": a("statistic"),
                    "period": a("period"),
                    "queries": queries,
                    "evaluation_periods": a("evaluation_periods"),
                    "threshold": float(a("threshold")),
                    "comparison": a("comparison_operator"),
                    "missing": a("treat_missing_data"),
                    "dimensions": sorted(a("dimensions", {})),
                    "actions": (len(a("alarm_actions", [])), len(a("ok_actions", []))),
                }
            elif typ == "aws_dynamodb_table":
                keys = [(a("hash_key"), "HASH")] + ([(a("range_key"), "RANGE")] if "range_key" in body else [])
                attrs = [mod.eval(x, each) for x in body.get("attribute", [])]
                m.tables[a("name")] = {
                    "keys": sorted(keys),
                    "attributes": sorted((x["name"], x["type"]) for x in attrs),
                    "billing": a("billing_mode"),
                    "ttl": mod.eval(body["ttl"][0], each)["attribute_name"] if "ttl" in body else None,
                    "pitr": bool(body.get("point_in_time_recovery")) and mod.eval(body["point_in_time_recovery"][0], each)["enabled"] is True,
                    "sse_kms": bool(body.get("server_side_encryption")) and "kms_key_arn" in body["server_side_encryption"][0],
                    "deletion_protection": a("deletion_protection_enabled") is True,
                }

    # event targets belong to their rule
    for (typ, name), body in mod.resources.items():
        if typ != "aws_cloudwatch_event_target":
            continue
        for each, _ in mod.instances(body):
            rule_ref = mod.eval(body["rule"], each)
            rule_body, rule_each = mod.instance(rule_ref)
            rule_name = mod.eval(rule_body["name"], rule_each)
            retry = (mod.blocks_of(body, "retry_policy", each) or [None])[0]
            m.rules[rule_name]["targets"].append((
                mod.eval(body["target_id"], each),
                bool(mod.blocks_of(body, "dead_letter_config", each)),
                json.dumps(retry and {"MaximumEventAgeInSeconds": retry["maximum_event_age_in_seconds"],
                                      "MaximumRetryAttempts": retry["maximum_retry_attempts"]}, sort_keys=True),
                mod.eval(body["input"], each) if "input" in body else None,
                "role_arn" in body,
            ))
    for r in m.rules.values():
        r["targets"].sort(key=repr)

    # bucket features from the aspect resources
    feature_of = {
        "aws_s3_bucket_versioning": lambda b, e: "versioning" if mod.eval(b["versioning_configuration"][0], e)["status"] == "Enabled" else None,
        "aws_s3_bucket_object_lock_configuration": lambda b, e: "object-lock:" + mod.eval(b["rule"][0], e)["default_retention"][0]["mode"],
        "aws_s3_bucket_server_side_encryption_configuration": lambda b, e: "sse-kms" if mod.eval(b["rule"][0], e)["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms" else "sse-s3",
        "aws_s3_bucket_ownership_controls": lambda b, e: "owner-enforced" if mod.eval(b["rule"][0], e)["object_ownership"] == "BucketOwnerEnforced" else None,
        "aws_s3_bucket_public_access_block": lambda b, e: "public-access-block" if all(mod.eval(b[k], e) is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")) else None,
        "aws_s3_bucket_logging": lambda b, e: "access-logging",
    }
    for (typ, name), body in mod.resources.items():
        if typ != "aws_s3_bucket":
            continue
        for each, _ in mod.instances(body):
            m.buckets[mod.eval(body["tags"], each).get("tidemark:component")] = set()
    for (typ, name), body in mod.resources.items():
        if typ in feature_of or typ == "aws_s3_bucket_lifecycle_configuration":
            for each, _ in mod.instances(body):
                comp = tag_of(mod.eval(body["bucket"], each), "tidemark:component")
                if typ == "aws_s3_bucket_lifecycle_configuration":
                    for rule in mod.blocks_of(body, "rule", each):
                        m.buckets[comp].add(f"lifecycle:{rule['id']}")
                else:
                    f = feature_of[typ](body, each)
                    if f:
                        m.buckets[comp].add(f)
    return m


# ================================================================================ scenarios

VAULT_CFN_DEFAULT = {
    "SourceAccountIds": "111111111111,333333333333",
    "ProtectedBucketNames": "acme-prod-data,acme-prod-logs",
    "ExternalId": "0123456789abcdef0123",
    "ArtifactBucket": "artifacts",
}
VAULT_TF_DEFAULT = {
    "source_account_ids": ["111111111111", "333333333333"],
    "protected_bucket_names": ["acme-prod-data", "acme-prod-logs"],
    "external_id": "0123456789abcdef0123",
    "lambda_s3_bucket": "artifacts",
}
VAULT_CFN_ALL_ON = {**VAULT_CFN_DEFAULT, "EnableRestoreTargetRole": "true", "AlarmEmail": "ops@example.com", "CheckpointReservedConcurrency": 1, "CheckpointIntervalMinutes": 1}
VAULT_TF_ALL_ON = {**VAULT_TF_DEFAULT, "enable_restore_target_role": True, "alarm_email": "ops@example.com", "checkpoint_reserved_concurrency": 1, "checkpoint_interval_minutes": 1}

SOURCE_CFN_DEFAULT = {
    "VaultAccountId": "222222222222",
    "ExternalId": "0123456789abcdef0123",
    "VaultEventBusArn": "arn:aws:events:eu-west-1:222222222222:event-bus/tidemark-vault",
    "VaultBucketName": "tidemark-vault-222222222222-eu-west-1",
    "VaultKmsKeyArn": "arn:aws:kms:eu-west-1:222222222222:key/11111111-2222-3333-4444-555555555555",
    "ProtectedBucketNames": "acme-prod-data,acme-prod-logs",
}
SOURCE_TF_DEFAULT = {
    "vault_account_id": "222222222222",
    "external_id": "0123456789abcdef0123",
    "vault_event_bus_arn": "arn:aws:events:eu-west-1:222222222222:event-bus/tidemark-vault",
    "vault_bucket_name": "tidemark-vault-222222222222-eu-west-1",
    "vault_kms_key_arn": "arn:aws:kms:eu-west-1:222222222222:key/11111111-2222-3333-4444-555555555555",
    "protected_bucket_names": ["acme-prod-data", "acme-prod-logs"],
}
SOURCE_CFN_ALL_ON = {**SOURCE_CFN_DEFAULT, "EnableRestoreTargetRole": "true", "SourceKmsKeyArns": "arn:aws:kms:eu-west-1:111111111111:key/abc", "InventoryBucketName": "existing-inventory"}
SOURCE_TF_ALL_ON = {**SOURCE_TF_DEFAULT, "enable_restore_target_role": True, "source_kms_key_arns": ["arn:aws:kms:eu-west-1:111111111111:key/abc"], "inventory_bucket_name": "existing-inventory"}

# (name, CloudFormation template, Terraform module, CFN parameters, TF variables)
SCENARIOS = [
    ("vault-defaults", "vault-account.yaml", "vault-account", VAULT_CFN_DEFAULT, VAULT_TF_DEFAULT),
    ("vault-all-options", "vault-account.yaml", "vault-account", VAULT_CFN_ALL_ON, VAULT_TF_ALL_ON),
    ("source-defaults", "source-account.yaml", "source-account", SOURCE_CFN_DEFAULT, SOURCE_TF_DEFAULT),
    ("source-all-options", "source-account.yaml", "source-account", SOURCE_CFN_ALL_ON, SOURCE_TF_ALL_ON),
]


def models(scenario: str, cfn_dir: Path = CFN_DIR, tf_dir: Path = TF_DIR) -> tuple[Model, Model]:
    for name, template, module, cfn_params, tf_vars in SCENARIOS:
        if name == scenario:
            return cfn_model(cfn_dir / template, cfn_params), tf_model(tf_dir / module, tf_vars)
    raise KeyError(scenario)
