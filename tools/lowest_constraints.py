"""Print pip pins (NAME==LOWER) of deft's dependencies at the lowest version their bounds admit.

Reads ``pyproject.toml``: the core ``dependencies`` and the extras named on the command line
(default: ``test``). Each ``NAME>=X`` becomes ``NAME==X``; ``torch`` is left out (these machines
install one CPU build, ``torch==2.13.0``, from a local file before the project). A dependency without
a lower bound is an error: a range that admits every version cannot be tested at its low end.

    python tools/lowest_constraints.py --skip trl > .venv-min/lowest.txt
    pip install -e . -r .venv-min/lowest.txt
    python tools/lowest_constraints.py trl --no-core     # trl==1.16: TRL's own lower bound
    .venv-min/bin/python tools/lowest_constraints.py --requires-of trl   # what TRL needs raised, to its bounds

``make test-min`` runs these and the fast tests (see docs/testing.md).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = ("torch",)
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(.*)$")


def _strings(block: str) -> list[str]:
    return re.findall(r'"([^"]+)"', block)


def requirements(pyproject: str, extras: tuple[str, ...] = ("test",), *, core: bool = True) -> list[str]:
    """The requirement strings of the core dependencies (unless ``core`` is false) and of ``extras``
    (in that order)."""
    found = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", pyproject, re.S | re.M)
    if found is None:
        raise ValueError("pyproject.toml: no [project] dependencies list")
    reqs = _strings(found.group(1)) if core else []
    optional = pyproject.split("[project.optional-dependencies]", 1)[-1].split("\n[", 1)[0]
    for extra in extras:
        line = re.search(rf"^{re.escape(extra)}\s*=\s*\[(.*?)\]", optional, re.S | re.M)
        if line is None:
            raise ValueError(f"pyproject.toml: no optional dependency group {extra!r}")
        reqs += _strings(line.group(1))
    return reqs


def lowest_pins(reqs: list[str], skip: tuple[str, ...] = SKIP) -> list[str]:
    """``NAME==LOWER`` for each requirement (first occurrence of a name wins; ``skip`` left out)."""
    pins: dict[str, str] = {}
    for req in reqs:
        match = _REQ.match(req)
        if match is None:
            raise ValueError(f"cannot read the requirement {req!r}")
        name, spec = match.group(1).lower(), match.group(2)
        if name in skip or name in pins:
            continue
        lower = [v for op, v in re.findall(r"(>=|==)\s*([^,;\s]+)", spec)]
        if not lower:
            raise ValueError(f"{req!r} has no lower bound: give it one (>=X) so that its low end can be tested")
        pins[name] = f"{name}=={lower[0]}"
    return list(pins.values())


def raised_pins(requires: list[str], installed: dict[str, str], skip: tuple[str, ...] = SKIP) -> list[str]:
    """``NAME==BOUND`` for each requirement of ``requires`` (the requirement strings of one
    distribution) that ``installed`` (``{name: version}``) has below its lower bound, or not at all:
    installing these raises only what the new package needs, and only to its bound; pip moves
    anything else only where these pins require it. Requirements under a marker are left out."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = []
    for text in requires:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if req.marker is not None or name in skip:
            continue
        lower = [s.version for s in req.specifier if s.operator in (">=", "==")]
        have = installed.get(name)
        if not lower:
            continue
        if have is None or Version(have) < Version(lower[0]):
            pins.append(f"{name}=={lower[0]}")
    return pins


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="pip pins of deft's dependencies at their lowest admitted versions")
    parser.add_argument("extras", nargs="*", default=["test"], help="optional dependency groups to add (default test)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME",
                        help="leave this package out too (repeatable; torch is always left out)")
    parser.add_argument("--no-core", action="store_true", help="only the extras' packages, not the core dependencies")
    parser.add_argument("--requires-of", metavar="DIST",
                        help="instead: pins for the requirements of the installed DIST, raising what this environment "
                             "has below its bounds to exactly the bound (run it with the environment's python)")
    args = parser.parse_args(argv)
    if args.requires_of:
        from importlib import metadata

        installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in metadata.distributions()}
        print("\n".join(raised_pins(metadata.requires(args.requires_of) or [], installed)))
        return 0
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    skip = SKIP + tuple(name.lower() for name in args.skip)
    print("\n".join(lowest_pins(requirements(text, tuple(args.extras), core=not args.no_core), skip)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
