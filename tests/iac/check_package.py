"""Check the Lambda zips `make package` built: each holds an executable `bootstrap` ELF for the architecture the templates deploy, without debug info.

    python tests/iac/check_package.py target/lambda [arm64|x86_64]

The architecture defaults to the one target/lambda/ARCHITECTURE records. For each binary of
BINARIES the zip must exist, hold exactly one entry named `bootstrap` with the executable bit,
be an ELF whose machine is that architecture's (EM_AARCH64 183, EM_X86_64 62), and carry no
`.debug_*` section (the Makefile builds with debug info off and symbols stripped). Prints the
zip and bootstrap sizes; exits 1 naming every problem. Only the standard library is used, so the
check runs anywhere `make package` runs.
"""

from __future__ import annotations

import struct
import sys
import zipfile
from pathlib import Path

BINARIES = ["tidemark-seeder", "tidemark-worker", "tidemark-delta", "tidemark-checkpoint", "tidemark-restore", "tidemark-api", "tidemark-scrub", "tidemark-alert"]
MACHINES = {"arm64": 183, "x86_64": 62}


def elf_problems(data: bytes, arch: str) -> list[str]:
    """What is wrong with `data` as a stripped 64-bit little-endian ELF executable for `arch`."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        return ["not an ELF file"]
    if data[4] != 2 or data[5] != 1:
        return ["not a 64-bit little-endian ELF"]
    problems = []
    (machine,) = struct.unpack_from("<H", data, 18)
    if machine != MACHINES[arch]:
        names = {v: k for k, v in MACHINES.items()}
        problems.append(f"built for machine {machine} ({names.get(machine, 'unknown')}), not {arch} ({MACHINES[arch]})")
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    if shoff and shnum and shstrndx < shnum and shoff + shnum * shentsize <= len(data):
        def section(i):
            return struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)  # name, type, flags, addr, offset, size
        _, _, _, _, str_off, str_size = section(shstrndx)
        names = data[str_off : str_off + str_size]
        for i in range(shnum):
            name_off = section(i)[0]
            end = names.find(b"\0", name_off)
            name = names[name_off:end].decode(errors="replace")
            # .debug_gdb_scripts only names rustc's pretty-printers; it survives stripping.
            if name.startswith(".debug_") and name != ".debug_gdb_scripts":
                problems.append(f"carries debug info ({name})")
                break
    return problems


def check(lambda_dir: Path, arch: str | None = None) -> tuple[list[str], list[str]]:
    """(problems, size lines) for the zips under `lambda_dir`."""
    recorded = lambda_dir / "ARCHITECTURE"
    if arch is None:
        if not recorded.exists():
            return [f"{recorded} is missing: run make package"], []
        arch = recorded.read_text().strip()
    if arch not in MACHINES:
        return [f"unknown architecture {arch!r}"], []
    problems, sizes = [], []
    for binary in BINARIES:
        path = lambda_dir / binary / "bootstrap.zip"
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if names != ["bootstrap"]:
                problems.append(f"{path}: holds {names}, not just bootstrap")
                continue
            info = z.getinfo("bootstrap")
            if not (info.external_attr >> 16) & 0o111:
                problems.append(f"{path}: bootstrap is not executable")
            data = z.read("bootstrap")
        problems += [f"{path}: bootstrap {p}" for p in elf_problems(data, arch)]
        sizes.append(f"{binary}: zip {path.stat().st_size / 1e6:.1f} MB, bootstrap {len(data) / 1e6:.1f} MB ({arch})")
    return problems, sizes


def main(argv: list[str]) -> int:
    lambda_dir = Path(argv[1]) if len(argv) > 1 else Path("target/lambda")
    problems, sizes = check(lambda_dir, argv[2] if len(argv) > 2 else None)
    for line in sizes:
        print(line)
    for p in problems:
        print(f"package check: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
