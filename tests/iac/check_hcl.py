"""Parse every Terraform file with python-hcl2 (no provider download, so no `terraform validate`).

Usage: python tests/iac/check_hcl.py [DIR ...]  (default: terraform/). Exits 1 on the first
file that does not parse, naming it and the parser's message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hcl2

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    dirs = [Path(a) for a in argv] or [ROOT / "terraform"]
    files = sorted(f for d in dirs for f in d.rglob("*.tf") if ".terraform" not in f.parts)
    for f in files:
        try:
            with open(f) as fh:
                hcl2.load(fh)
        except Exception as e:  # noqa: BLE001 - report any parser error with the file name
            print(f"{f}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    print(f"python-hcl2 parsed {len(files)} .tf files")
    return 0 if files else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
