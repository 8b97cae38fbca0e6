"""The source read role's policy, as both IaC sides render it, kept for the Rust test that runs capture with IAM enforced.

`crates/lambda/tests/read_role_enforced_moto.rs` gives moto's IAM the read role with exactly this
policy, turns moto's access control on, and protects a bucket through the role: every request
the capture path sends to the source must be allowed by the policy the templates deploy. This
test renders the policy of the source-account scenario "source-defaults" (protected buckets
acme-prod-data and acme-prod-logs) from both sides, checks they grant the same, and checks that
tests/iac/read-role-policy.json is that rendering (TIDEMARK_RECORD_POLICY=1 rewrites it).
"""

from __future__ import annotations

import json
import os

from conftest import ROOT
from test_policies import _sides

POLICY_FILE = ROOT / "tests/iac/read-role-policy.json"


def _list(v):
    return v if isinstance(v, list) else [v]


def _rendered(side: str) -> list[dict]:
    out = []
    for scope, st in _sides("source-defaults")[side]:
        if scope != "role:read" or st.get("Effect", "Allow") != "Allow":
            continue
        rendered = {"Sid": st.get("Sid", ""), "Effect": "Allow", "Action": sorted(_list(st["Action"])), "Resource": sorted(str(r) for r in _list(st["Resource"]))}
        if st.get("Condition"):
            rendered["Condition"] = st["Condition"]
        out.append(rendered)
    return sorted(out, key=lambda s: s["Sid"])


def test_both_sides_render_the_same_read_role_policy_and_the_file_is_it():
    cfn, tf = _rendered("cloudformation"), _rendered("terraform")
    assert [(s["Sid"], s["Action"]) for s in cfn] == [(s["Sid"], s["Action"]) for s in tf], "the two sides grant different actions"
    for c, t in zip(cfn, tf):
        # The model leaves a reference to a resource of the same template (the inventory
        # bucket) as `?`; everything it resolves must agree.
        if not any("?" in r for r in c["Resource"]):
            assert c["Resource"] == t["Resource"], f"{c['Sid']}: the two sides name different resources"
    doc = {"Version": "2012-10-17", "Statement": tf}
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if os.environ.get("TIDEMARK_RECORD_POLICY") == "1":
        POLICY_FILE.write_text(text)
    assert POLICY_FILE.exists() and POLICY_FILE.read_text() == text, (
        "tests/iac/read-role-policy.json is not the templates' read role policy; run "
        "TIDEMARK_RECORD_POLICY=1 make iac-pytest, check the diff and commit it"
    )
