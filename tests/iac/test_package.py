"""Packaging: `make package` builds what the templates deploy, and its check tells a wrong zip.

* The Makefile's default ARCH is the architecture both templates default to, and it packages
  every function binary the templates deploy (the api function included).
* tests/iac/check_package.py (run by `make package` on what it built) accepts a zip holding an
  executable, stripped aarch64 `bootstrap` and refuses an x86-64 one, one with debug info, one
  that is not executable and a missing zip; here on small ELF files built in the test, because a
  real arm64 release build needs the aarch64 Rust standard library and several minutes.
"""

from __future__ import annotations

import re
import struct
import zipfile

import hcl2
import pytest

import check_package
import iac_model as m
from conftest import ROOT


def _elf(machine: int, sections: list[str]) -> bytes:
    """A minimal 64-bit little-endian ELF with the given section names (and .shstrtab)."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in sections + [".shstrtab"])
    header_size, shentsize = 64, 64
    str_off = header_size
    shoff = str_off + len(names)
    shoff += (-shoff) % 8
    shnum = len(sections) + 2  # the null section, the named ones, .shstrtab
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0, 0, shoff, 0, header_size, 0, 0, shentsize, shnum, shnum - 1)
    body = bytearray(header + names + b"\0" * (shoff - str_off - len(names)))
    body += b"\0" * shentsize
    offset = 1
    for n in sections + [".shstrtab"]:
        is_strtab = n == ".shstrtab"
        body += struct.pack("<IIQQQQIIQQ", offset, 3 if is_strtab else 1, 0, 0, str_off if is_strtab else 0, len(names) if is_strtab else 0, 0, 0, 1, 0)
        offset += len(n) + 1
    return bytes(body)


def _package(tmp_path, arch="arm64", machine=183, sections=(".text",), mode=0o755, skip=()):
    for binary in check_package.BINARIES:
        if binary in skip:
            continue
        (tmp_path / binary).mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp_path / binary / "bootstrap.zip", "w") as z:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, _elf(machine, list(sections)))
    (tmp_path / "ARCHITECTURE").write_text(arch + "\n")
    return tmp_path


def test_a_stripped_aarch64_package_passes(tmp_path):
    problems, sizes = check_package.check(_package(tmp_path))
    assert problems == [] and len(sizes) == len(check_package.BINARIES)


@pytest.mark.parametrize(
    "kwargs,says",
    [
        ({"machine": 62}, "not arm64"),
        ({"sections": (".text", ".debug_info")}, "carries debug info"),
        ({"mode": 0o644}, "not executable"),
        ({"skip": ("tidemark-api",)}, "missing"),
    ],
)
def test_the_check_refuses_a_wrong_package(tmp_path, kwargs, says):
    problems, _ = check_package.check(_package(tmp_path, **kwargs))
    assert problems and all(says in p for p in problems), problems


def test_the_makefile_builds_what_the_templates_deploy():
    mk = (ROOT / "infra" / "iac.mk").read_text()
    arch = re.search(r"^ARCH\s*\?=\s*(\S+)", mk, re.M).group(1)
    binaries = re.search(r"^LAMBDA_BINARIES\s*:=\s*(.+)$", mk, re.M).group(1).split()
    cfn = m.cfn_model(m.CFN_DIR / "vault-account.yaml", m.VAULT_CFN_DEFAULT)
    assert cfn.parameters["LambdaArchitecture"] == arch
    with open(m.TF_DIR / "vault-account" / "variables.tf") as fh:
        tf_vars = {k.strip('"'): v for b in hcl2.load(fh)["variable"] for k, v in b.items()}
    assert tf_vars["lambda_architecture"]["default"].strip('"') == arch
    deployed = set(re.findall(r'binary\s*=\s*"(tidemark-[a-z]+)"', (m.TF_DIR / "vault-account" / "main.tf").read_text()))
    assert set(binaries) == deployed == set(check_package.BINARIES)
    assert "check_package.py" in mk and "STRIP" in mk
