"""Variables both ways: what the templates set is what the code reads, and what an operator may tune can be set.

* Every ``TIDEMARK_*`` variable that either side (CloudFormation or Terraform) sets on a function
  is a row of the configuration table (crates/core/src/config/settings.rs, parsed here), of a
  scope the functions read (not CLI-only), and is read by the code outside the table itself
  (its field is used in the settings' engine configuration or in crates/lambda).
* With every parameter at its default, each such variable carries the table's default (or is
  empty where the table has none), so a deployment and a local run behave alike.
* The operator settings (per-prefix scheduler ceiling and share, late-event allowance, seed step
  seconds, all versions, metrics namespace, the scrub's sample and step seconds) are one
  documented parameter / variable on each side, and setting it reaches the environment of every
  function that reads it, as the code parses it, and of no other.
* The scrub and alert functions get exactly the variables their code reads.
* The change events both sides route (the vault bus rule, the source forwarding rule and the
  bus policy) are exactly the detail types the delta handler captures
  (tidemark_core::changes::events::CAPTURED_DETAIL_TYPES).
"""

from __future__ import annotations

import re

import pytest

import iac_model as m
from conftest import ROOT

SETTINGS_RS = ROOT / "crates" / "core" / "src" / "config" / "settings.rs"
ROW = re.compile(r'^\s*(\w+):\s*([^=]+?)\s*=\s*"(TIDEMARK_\w+)",\s*(\w+),\s*(.+);\s*$', re.M)


def settings_table(text: str | None = None) -> dict[str, dict]:
    """The rows of the `settings!` table: variable -> field, type, scope and default as written."""
    text = SETTINGS_RS.read_text() if text is None else text
    block = text[text.index("settings! {") : text.index("\n}\n", text.index("settings! {"))]
    rows = {}
    for field, ty, var, scope, default in ROW.findall(block):
        default = default.strip()
        if default == "None":
            value = ""
        elif default.endswith(".to_string()"):
            value = default[: -len(".to_string()")].strip('"')
        else:
            value = default.replace("_", "").replace(" ", "")
            if re.fullmatch(r"[\d*]+", value):
                value = str(eval(value))  # products such as 64 * 1024 * 1024
        rows[var] = {"field": field, "ty": ty, "scope": scope, "default": value}
    return rows


def reading_code(text: str | None = None) -> str:
    """The code that reads settings: settings.rs without the table, and crates/lambda/src."""
    text = SETTINGS_RS.read_text() if text is None else text
    start = text.index("settings! {")
    end = text.index("\n}\n", start)
    parts = [text[:start] + text[end:]]
    parts += [p.read_text() for p in sorted((ROOT / "crates" / "lambda" / "src").rglob("*.rs"))]
    return "\n".join(parts)


def is_read(field: str, code: str) -> bool:
    return re.search(rf"\b(settings|self)\.{field}\b", code) is not None


def env_text(v) -> str:
    """A value as the function's environment holds it (both sides turn numbers and bools into text)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


VAULT = [s for s in m.SCENARIOS if s[0].startswith("vault")]


@pytest.fixture(scope="module")
def table():
    return settings_table()


@pytest.mark.parametrize("scenario", [s[0] for s in VAULT])
def test_every_variable_set_is_in_the_table_and_read(table, scenario):
    code = reading_code()
    for side, model in zip(("cloudformation", "terraform"), m.models(scenario)):
        assert model.env_values, f"{side}: no function environments found"
        for fn, env in model.env_values.items():
            for var in (v for v in env if v.startswith("TIDEMARK_")):
                assert var in table, f"{side} sets {var} on {fn}, which is not in the configuration table (settings.rs)"
                row = table[var]
                assert row["scope"] != "Cli", f"{side} sets {var} on {fn}, which only the CLI reads"
                assert is_read(row["field"], code), f"{side} sets {var} on {fn}, but no code reads settings.{row['field']}"


@pytest.mark.parametrize("side", [0, 1], ids=["cloudformation", "terraform"])
def test_defaults_are_the_tables(table, side):
    model = m.models("vault-defaults")[side]
    for fn, env in model.env_values.items():
        for var, value in env.items():
            if var not in table or isinstance(value, (m.Ref, m.Opaque)) or not table[var]["default"]:
                continue
            if table[var]["ty"] == "f64":
                # A number parses the same whatever its spelling (1 and 1.0).
                assert float(env_text(value)) == float(table[var]["default"]), f"{fn}: {var} defaults to {value!r}, the table says {table[var]['default']!r}"
                continue
            assert env_text(value) == table[var]["default"], f"{fn}: {var} defaults to {value!r}, the table says {table[var]['default']!r}"


# The functions that share the pipeline's environment, and the two that get only what their
# code reads: every function's configuration requires the vault, the table and the queue URLs
# (LambdaConfig::from_lookup); the scrub binary reads the verify settings and prints EMF in the
# namespace (it reads the vault with its own role: no source role); the alert binary reads the
# topic and the dead-letter queues it sweeps, and prints no metrics.
PIPELINE = ("seeder", "worker", "delta", "checkpoint", "restore", "api")
REQUIRED = {"TIDEMARK_VAULT_BUCKET", "TIDEMARK_CONTROL_TABLE", "TIDEMARK_WORK_QUEUE_URL", "TIDEMARK_DELTA_QUEUE_URL", "TIDEMARK_RESTORE_QUEUE_URL"}
SCRUB_ONLY = {"TIDEMARK_VERIFY_SAMPLE", "TIDEMARK_VERIFY_STEP_SECONDS"}
OWN_ENVIRONMENT = {
    "scrub": REQUIRED | {"TIDEMARK_METRICS_NAMESPACE", "TIDEMARK_VERIFY_SAMPLE", "TIDEMARK_VERIFY_STEP_SECONDS"},
    "alert": REQUIRED | {"TIDEMARK_ALERT_TOPIC_ARN", "TIDEMARK_DEAD_LETTER_QUEUE_URLS"},
}


@pytest.mark.parametrize("scenario", [s[0] for s in VAULT])
def test_scrub_and_alert_get_only_what_their_code_reads(scenario):
    code = {
        "scrub": (ROOT / "crates/lambda/src/bin/tidemark-scrub.rs").read_text() + (ROOT / "crates/lambda/src/scrub.rs").read_text(),
        "alert": (ROOT / "crates/lambda/src/bin/tidemark-alert.rs").read_text() + (ROOT / "crates/lambda/src/alert.rs").read_text(),
    }
    table = settings_table()
    for side, model in zip(("cloudformation", "terraform"), m.models(scenario)):
        for fn, want in OWN_ENVIRONMENT.items():
            got = {v for v in model.env_values[fn] if v.startswith("TIDEMARK_")}
            assert got == want, f"{side}: {fn} gets {sorted(got ^ want)} wrong"
            # Each variable beyond the required ones is a setting its binary or handler reads.
            for var in want - REQUIRED - {"TIDEMARK_METRICS_NAMESPACE"}:
                assert re.search(rf"\bconfig\.{table[var]['field']}\b", code[fn]), f"{fn} does not read {var}"


# (environment variable, CloudFormation parameter, Terraform variable, a value to set, what the function reads)
OPERATOR_SETTINGS = [
    ("TIDEMARK_PREFIX_CEILING_RPS", "PrefixCeilingRps", "prefix_ceiling_rps", 500, "500"),
    ("TIDEMARK_BACKUP_SHARE", "BackupShare", "backup_share", 0.5, "0.5"),
    ("TIDEMARK_LATE_EVENT_SECONDS", "LateEventSeconds", "late_event_seconds", 120, "120"),
    ("TIDEMARK_STEP_SECONDS", "StepSeconds", "step_seconds", 300, "300"),
    ("TIDEMARK_ALL_VERSIONS", "AllVersions", "all_versions", True, "true"),
    ("TIDEMARK_METRICS_NAMESPACE", "MetricsNamespace", "metrics_namespace", "Acme/Backup", "Acme/Backup"),
    ("TIDEMARK_VERIFY_SAMPLE", "VerifySample", "verify_sample", 0.25, "0.25"),
    ("TIDEMARK_VERIFY_STEP_SECONDS", "VerifyStepSeconds", "verify_step_seconds", 300, "300"),
]


@pytest.mark.parametrize("var,cfn_param,tf_var,value,expected", OPERATOR_SETTINGS, ids=[o[0] for o in OPERATOR_SETTINGS])
def test_operator_settings_can_be_set_on_both_sides(table, var, cfn_param, tf_var, value, expected):
    assert var in table, f"{var} is not in the configuration table"
    _, template, module, cfn_params, tf_vars = VAULT[0]
    cfn_value = {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else value
    cfn = m.cfn_model(m.CFN_DIR / template, {**cfn_params, cfn_param: cfn_value})
    tf = m.tf_model(m.TF_DIR / module, {**tf_vars, tf_var: value})
    for side, model in (("cloudformation", cfn), ("terraform", tf)):
        assert set(model.env_values) == set(PIPELINE) | set(OWN_ENVIRONMENT)
        readers = {fn for fn, own in OWN_ENVIRONMENT.items() if var in own} | (set() if var in SCRUB_ONLY else set(PIPELINE))
        for fn, env in model.env_values.items():
            if fn not in readers:
                assert var not in env, f"{side} sets {var} on {fn}, whose code does not read it"
                continue
            assert env_text(env.get(var)) == expected, f"{side}: {cfn_param if side == 'cloudformation' else tf_var}={value!r} gives {fn} {var}={env.get(var)!r}"
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for name in (cfn_param, tf_var, var):
        assert f"`{name}`" in docs, f"docs/deploy.md does not document {name}"


def test_the_scheduler_is_off_unless_a_ceiling_is_set(table):
    # An empty TIDEMARK_PREFIX_CEILING_RPS is "unset" (the table's None): 0 would be a ceiling of zero.
    for side, model in zip(("cloudformation", "terraform"), m.models("vault-defaults")):
        assert {model.env_values[fn]["TIDEMARK_PREFIX_CEILING_RPS"] for fn in PIPELINE} == {""}, side


def test_the_table_parser_reads_every_row():
    text = SETTINGS_RS.read_text()
    rows = settings_table(text)
    assert len(rows) == text.count('= "TIDEMARK_')
    assert rows["TIDEMARK_PACK_TARGET_BYTES"]["default"] == str(64 * 1024 * 1024)
    assert rows["TIDEMARK_METRICS_NAMESPACE"]["default"] == "Tidemark"
    assert not is_read("no_such_field", reading_code(text))


def captured_detail_types() -> list[str]:
    text = (ROOT / "crates" / "core" / "src" / "changes" / "events.rs").read_text()
    body = re.search(r"CAPTURED_DETAIL_TYPES: \[&str; \d+\] = \[(.*?)\];", text, re.S).group(1)
    return re.findall(r'"([^"]+)"', body)


@pytest.mark.parametrize("scenario,rule", [("vault-defaults", "tidemark-s3-changes-to-delta"), ("source-defaults", "tidemark-forward-s3-changes")])
def test_rules_route_every_captured_detail_type(scenario, rule):
    want = sorted(captured_detail_types())
    assert len(want) >= 8
    for side, model in zip(("cloudformation", "terraform"), m.models(scenario)):
        assert sorted(model.rules[rule]["pattern"]["detail-type"]) == want, f"{side} {rule}"


def test_the_vault_bus_accepts_every_captured_detail_type():
    want = sorted(captured_detail_types())
    for side, model in zip(("cloudformation", "terraform"), m.models("vault-defaults")):
        policies = [st for scope, st in model.raw_statements if scope.startswith("event-bus")]
        assert policies, f"{side}: no event bus policy"
        for st in policies:
            values = st["Condition"]["StringEquals"]["events:detail-type"]
            assert sorted(values) == want, f"{side}: the bus accepts {values}"
