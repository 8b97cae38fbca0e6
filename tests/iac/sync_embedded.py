"""Keep the copies embedded in the CloudFormation templates identical to their single source.

CloudFormation cannot read a file next to the template, so three artefacts that Terraform reads
from disk are embedded in the templates between marker comments:

    # BEGIN-EMBED <repo-relative path> as <mode>
    ...generated...
    # END-EMBED

Modes: ``sub-block`` (a ``- |`` list item, for ``!Sub [body, vars]``), ``json:<Key>`` (``Key: {json}``
on one line) and ``block:<Key>`` (``Key: |`` followed by the file's text).

``python tests/iac/sync_embedded.py`` rewrites the embedded copies; ``--check`` exits 1 if any is
stale (test_shared_artifacts.py runs the same check under pytest).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "cloudformation").glob("*.yaml"))
BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN-EMBED (?P<path>\S+) as (?P<mode>\S+)\s*$")
END = re.compile(r"^\s*# END-EMBED\s*$")


def render(path: str, mode: str, indent: str) -> list[str]:
    text = (ROOT / path).read_text()
    if mode == "sub-block":
        return [f"{indent}- |"] + [f"{indent}  {line}".rstrip() for line in text.rstrip("\n").split("\n")]
    if mode.startswith("json:"):
        key = mode.split(":", 1)[1]
        return [f"{indent}{key}: {json.dumps(json.loads(text), separators=(', ', ': '))}"]
    if mode.startswith("block:"):
        key = mode.split(":", 1)[1]
        return [f"{indent}{key}: |"] + [f"{indent}  {line}".rstrip() for line in text.rstrip("\n").split("\n")]
    raise ValueError(f"unknown embed mode {mode!r}")


def synced(template: Path) -> str:
    out: list[str] = []
    lines = template.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = BEGIN.match(lines[i])
        out.append(lines[i])
        i += 1
        if not m:
            continue
        while i < len(lines) and not END.match(lines[i]):
            i += 1
        if i == len(lines):
            raise ValueError(f"{template}: BEGIN-EMBED {m['path']} without END-EMBED")
        out.extend(render(m["path"], m["mode"], m["indent"]))
    return "\n".join(out)


def embeds(template: Path) -> list[tuple[str, str]]:
    return [(m["path"], m["mode"]) for m in map(BEGIN.match, template.read_text().split("\n")) if m]


def main(argv: list[str]) -> int:
    stale = []
    for template in TEMPLATES:
        new = synced(template)
        if new != template.read_text():
            stale.append(template)
            if "--check" not in argv:
                template.write_text(new)
    for template in stale:
        verb = "stale" if "--check" in argv else "rewrote"
        print(f"{verb}: {template.relative_to(ROOT)}")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
