"""Parity: the Terraform modules and the CloudFormation templates describe the same system.

For each scenario (defaults, and every optional feature switched on) both sides are evaluated
by iac_model.py and compared: resource kinds and their counts, every IAM / resource-policy
statement (scope, Sid, effect, actions, condition keys), function settings (runtime, handler,
architecture, memory, timeout, reserved concurrency, tracing, environment variable names, DLQ),
SQS event sources (queue, batch size, batching window, response types, MaximumConcurrency),
queues, EventBridge rules and targets, alarms, bucket features and the table. Adding a resource,
a permission or a setting to one side only fails here. The last tests prove that the comparison
notices such a change (on copies in a temporary directory).
"""

from __future__ import annotations

import re
import shutil

import hcl2
import pytest

import iac_model as m

SCENARIOS = [s[0] for s in m.SCENARIOS]


@pytest.fixture(scope="module", params=SCENARIOS)
def pair(request):
    return request.param, *m.models(request.param)


def test_resource_kinds_match(pair):
    name, cfn, tf = pair
    diff = {k: (cfn.kinds[k], tf.kinds[k]) for k in set(cfn.kinds) | set(tf.kinds) if cfn.kinds[k] != tf.kinds[k]}
    assert not diff, f"{name}: resource counts differ (kind: (cloudformation, terraform)): {diff}"


def test_iam_statements_match(pair):
    name, cfn, tf = pair
    only_cfn = sorted(cfn.statements - tf.statements, key=repr)
    only_tf = sorted(tf.statements - cfn.statements, key=repr)
    assert not only_cfn and not only_tf, f"{name}: only in CloudFormation: {only_cfn}\nonly in Terraform: {only_tf}"


def test_iam_actions_per_role_match(pair):
    name, cfn, tf = pair
    scopes = {s[0] for s in cfn.statements | tf.statements}
    for scope in sorted(scopes):
        assert cfn.actions(scope) == tf.actions(scope), f"{name}: {scope}"


@pytest.mark.parametrize("attr", ["functions", "event_sources", "queues", "rules", "alarms", "buckets", "tables"])
def test_settings_match(pair, attr):
    name, cfn, tf = pair
    a, b = getattr(cfn, attr), getattr(tf, attr)
    diff = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert not diff, f"{name}: {attr} differ (key: (cloudformation, terraform)): {diff}"


def test_models_are_not_empty():
    cfn, tf = m.models("vault-defaults")
    assert set(cfn.functions) == {"seeder", "worker", "delta", "checkpoint", "restore", "api", "scrub", "alert"}
    # No dead-letter queue is an event source: the alert function sweeps them on a schedule.
    assert set(cfn.event_sources) == {"worker", "delta", "restore"}
    assert cfn.rules["tidemark-alert"]["schedule"] == "rate(5 minutes)"
    assert len(cfn.queues) == 7 and len(cfn.alarms) == 17 and len(cfn.statements) > 50
    assert cfn.kinds["lambda-function"] == 8 and cfn.kinds["sqs-queue"] == 7
    assert cfn.rules["tidemark-scrub"]["schedule"] == "rate(1 day)" and "tidemark-verify-damaged" in cfn.alarms
    # The restore API: three IAM-authorised methods, each proxied to the api function.
    assert cfn.kinds["api-method"] == 3 and cfn.kinds["api-integration"] == 3 and cfn.kinds["api-resource"] == 2
    cfn, tf = m.models("source-defaults")
    assert cfn.kinds["bucket-setup-invocation"] == 1 and "role:read" in {s[0] for s in cfn.statements}


# Parameters and variables: same knobs, same defaults (CamelCase <-> snake_case).
CFN_ONLY_PARAMETERS = {
    "vault-account.yaml": {"ArtifactBucket", "ArtifactPrefix"},  # Terraform: lambda_s3_bucket / lambda_s3_prefix / lambda_package_dir
    "source-account.yaml": set(),
}
TF_ONLY_VARIABLES = {
    "vault-account": {"lambda_package_dir", "lambda_s3_bucket", "lambda_s3_prefix", "tags"},
    "source-account": {"tags"},
}


@pytest.mark.parametrize("template,module", [("vault-account.yaml", "vault-account"), ("source-account.yaml", "source-account")])
def test_parameters_and_variables_match(template, module):
    cfn = m.cfn_model(m.CFN_DIR / template, {})
    tf_defaults = {}
    for f in sorted((m.TF_DIR / module).glob("*.tf")):
        with open(f) as fh:
            for block in hcl2.load(fh).get("variable", []):
                for vname, body in block.items():
                    tf_defaults[vname.strip('"')] = body.get("default", "<required>")
    cfn_params = {m.camel_to_snake(k): v for k, v in cfn.parameters.items() if k not in CFN_ONLY_PARAMETERS[template]}
    tf_vars = {k: v for k, v in tf_defaults.items() if k not in TF_ONLY_VARIABLES[module]}
    assert set(cfn_params) == set(tf_vars)
    for k, cfn_default in cfn_params.items():
        tf_default = tf_vars[k]
        if tf_default == "<required>":
            assert cfn_default is None, f"{k}: required in Terraform, defaulted in CloudFormation"
            continue
        tf_default = tf_default.strip('"') if isinstance(tf_default, str) else tf_default
        if isinstance(tf_default, bool):
            cfn_default = {"true": True, "false": False}[cfn_default]
        elif isinstance(tf_default, list):
            cfn_default = [x for x in (cfn_default or "").split(",") if x]
        elif isinstance(tf_default, (int, float)):
            cfn_default = type(tf_default)(float(cfn_default))
        assert cfn_default == tf_default, f"{k}: CloudFormation {cfn_default!r} != Terraform {tf_default!r}"


# ------------------------------------------------------------------ the comparison notices drift


def _copy_tree(tmp_path):
    cfn_dir = tmp_path / "cloudformation"
    tf_dir = tmp_path / "terraform" / "modules"
    shutil.copytree(m.CFN_DIR, cfn_dir)
    shutil.copytree(m.TF_DIR, tf_dir)
    return cfn_dir, tf_dir


def test_an_extra_queue_in_cloudformation_only_is_detected(tmp_path):
    cfn_dir, tf_dir = _copy_tree(tmp_path)
    path = cfn_dir / "vault-account.yaml"
    text = path.read_text().replace(
        "\n  # ---------------------------------------------------------------- control table\n",
        "\n  StrayQueue:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: stray\n"
        "\n  # ---------------------------------------------------------------- control table\n",
    )
    path.write_text(text)
    cfn, tf = m.models("vault-defaults", cfn_dir, tf_dir)
    assert cfn.kinds["sqs-queue"] == tf.kinds["sqs-queue"] + 1


def test_an_extra_action_in_terraform_only_is_detected(tmp_path):
    cfn_dir, tf_dir = _copy_tree(tmp_path)
    path = tf_dir / "vault-account" / "iam.tf"
    text = path.read_text()
    text, n = re.subn(r'(sid\s+= "EnqueueTasks"\n\s+effect\s+= "Allow"\n\s+actions\s+= \[)', r'\1"sqs:PurgeQueue", ', text)
    assert n == 1
    path.write_text(text)
    cfn, tf = m.models("vault-defaults", cfn_dir, tf_dir)
    assert "sqs:PurgeQueue" in tf.actions("role:seeder") - cfn.actions("role:seeder")


def test_a_changed_function_setting_is_detected(tmp_path):
    cfn_dir, tf_dir = _copy_tree(tmp_path)
    path = tf_dir / "vault-account" / "main.tf"
    text = path.read_text()
    text, n = re.subn(r"(delta = \{\n\s+binary\s+= \"tidemark-delta\"\n\s+memory\s+= )1024", r"\g<1>1536", text)
    assert n == 1
    path.write_text(text)
    cfn, tf = m.models("vault-defaults", cfn_dir, tf_dir)
    assert cfn.functions["delta"]["memory"] == 1024 and tf.functions["delta"]["memory"] == 1536
