"""Loading the mutation runner's scripts (``mutation/*.py``, not a package) in tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTATION = ROOT / "mutation"


def load_mutation_module(name: str):
    """``mutation/<name>.py`` loaded as module ``mutation_<name>``. Its own imports of its sibling
    scripts (``from report import ...``) resolve while it loads; ``sys.path`` and the bare
    sibling names are restored after, since a plain ``report`` would shadow benchmarks/report.py
    for later tests."""
    saved_path = list(sys.path)
    siblings = {p.stem for p in MUTATION.glob("*.py")}
    saved = {s: sys.modules.pop(s) for s in siblings if s in sys.modules}
    sys.path.insert(0, str(MUTATION))
    spec = importlib.util.spec_from_file_location(f"mutation_{name}", MUTATION / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        for s in siblings:
            sys.modules.pop(s, None)
        sys.modules.update(saved)
    return module
