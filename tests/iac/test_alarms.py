"""Every alarm is actionable: it names its step and the runbook section for it, on both sides.

Each alarm description of CloudFormation and Terraform begins with
``Step: <step>. Runbook: docs/runbook.md#<anchor>.`` (iac_model.ALARM_STEP). This test fails
when an alarm of either side, in any scenario, names no step, or names a runbook page that does
not exist or an anchor that is no heading of it (anchors as GitHub makes them from headings).
The parity tests compare the step and anchor of each alarm between the sides.
"""

from __future__ import annotations

import re

import pytest

import iac_model as m
from conftest import ROOT


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page (outside code blocks)."""
    out, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading and not fenced:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).lower())
            out.add(text.replace(" ", "-"))
    return out


def problems(model: m.Model) -> list[str]:
    """What is wrong with the step and runbook line of each alarm of one side."""
    out = []
    for name, description in sorted(model.alarm_descriptions.items()):
        found = m.alarm_step(description)
        if not found:
            out.append(f"{name}: the description does not begin 'Step: <step>. Runbook: docs/<page>.md#<anchor>.': {description!r}")
            continue
        page, anchor = found["runbook"].split("#", 1)
        path = ROOT / page
        if not path.is_file():
            out.append(f"{name}: runbook page {page} does not exist")
        elif anchor not in anchors(path.read_text()):
            out.append(f"{name}: {page} has no section #{anchor}")
    return out


@pytest.mark.parametrize("scenario", [s[0] for s in m.SCENARIOS])
def test_every_alarm_names_its_step_and_an_existing_runbook_section(scenario):
    for side, model in zip(("cloudformation", "terraform"), m.models(scenario)):
        # The source accounts have no alarms today; one added there is checked all the same.
        if scenario.startswith("vault"):
            assert len(model.alarm_descriptions) >= 17, f"{side}: alarms not found"
        found = problems(model)
        assert not found, f"{side} ({scenario}):\n  " + "\n  ".join(found)


def test_the_check_finds_a_missing_step_and_a_missing_anchor():
    model = m.Model()
    model.alarm_descriptions = {
        "ok": "Step: scrub. Runbook: docs/runbook.md#vault-verification. Damage.",
        "no-step": "The scrub found damage.",
        "bad-anchor": "Step: scrub. Runbook: docs/runbook.md#no-such-section. Damage.",
        "bad-page": "Step: scrub. Runbook: docs/no-such-page.md#vault-verification. Damage.",
    }
    found = problems(model)
    assert [p.split(":")[0] for p in found] == ["bad-anchor", "bad-page", "no-step"], found


def test_anchors_are_githubs():
    page = "# Runbook\n## Seed steps and tasks\n```sh\n# not a heading\n```\n## S3 503 SlowDown\n### Sources gone by design\n"
    assert anchors(page) == {"runbook", "seed-steps-and-tasks", "s3-503-slowdown", "sources-gone-by-design"}
