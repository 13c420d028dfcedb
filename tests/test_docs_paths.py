"""Every repository path the documentation cites exists.

The documents are ``README.md`` and ``docs/**/*.md``. Two kinds of citation are checked:

* a backticked text that starts with ``src/``, ``tests/``, ``docs/``, ``examples/`` or
  ``benchmarks/``: a path from the repository root (``README.md``'s convention and the docs');
* a Markdown link target that is not a URL or an anchor: a path relative to its document, as a
  Markdown renderer resolves it (``[engine](engine.md#how)`` in ``docs/`` is ``docs/engine.md``).

A ``:name`` or ``#anchor`` after the path is dropped; ``*`` matches as in a glob and
``{a,b}`` expands as in a shell; a path with a placeholder (``<pkg>``, ``VERB``, ``...``) names a
pattern, not a file, and is skipped. :data:`PENDING` lists the citations of documents edited
elsewhere that are known not to resolve yet; any other missing path fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PREFIXES = ("src/", "tests/", "docs/", "examples/", "benchmarks/")

# document -> paths it cites that do not exist (yet), with why; remove an entry when its document is fixed
PENDING: dict[str, dict[str, str]] = {
    "docs/benchmarks/gpu.md": {
        "docs/benchmarks/fused_loss_cuda.md": "written by the GPU run the document describes",
        "docs/benchmarks/train_step_cuda.md": "written by the GPU run the document describes",
        "benchmarks/.gpu_bundle/": "a folder the GPU run's bundling step creates",
    },
}

_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_PATTERN = re.compile(r"<|>|\.\.\.|(?<![A-Za-z])(?!README|LICENSE|CHANGELOG|DESIGN)[A-Z]{2,}(?![A-Za-z])")
_BRACES = re.compile(r"\{([^{}]*,[^{}]*)\}")


def _expand(path: str) -> list[str]:
    """Shell brace expansion: ``a/{b,c}.yaml`` -> ``a/b.yaml``, ``a/c.yaml``."""
    m = _BRACES.search(path)
    if not m:
        return [path]
    return [q for alt in m.group(1).split(",") for q in _expand(path[:m.start()] + alt + path[m.end():])]


def _clean(raw: str) -> str:
    return raw.strip().split("#", 1)[0].split(":", 1)[0].rstrip(".,;")


def cited_paths(text: str, doc_dir: str = "") -> list[str]:
    """The repository paths (from the root) that a document's ``text`` cites; ``doc_dir`` is the
    document's folder relative to the root (``"docs"``), against which its links resolve."""
    found = []
    for raw in _CODE.findall(text):
        path = _clean(raw)
        if path.startswith(PREFIXES) and " " not in path and not _PATTERN.search(path):
            found.extend(_expand(path))
    for raw in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", raw) or raw.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor in the same document
        path = _clean(raw)
        if path and not _PATTERN.search(path):
            parts: list[str] = []
            for part in (Path(doc_dir) / path).as_posix().split("/"):
                if part == "..":
                    parts = parts[:-1]
                elif part not in ("", "."):
                    parts.append(part)
            found.extend(_expand("/".join(parts)))
    return list(dict.fromkeys(found))


def _exists(path: str) -> bool:
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


def test_cited_paths_of_a_sample():
    text = ("see `src/deft/eval/scorers.py:score`, [engine](engine.md#how), [up](../README.md), "
            "`tests/test_*.py` and `examples/paper/{math,figfont}.yaml`; not `cli/VERB.py`, "
            "`src/deft/<pkg>/<mod>.py`, `deft eval`, [site](https://example.org) or [here](#top)")
    assert cited_paths(text, "docs") == [
        "src/deft/eval/scorers.py", "tests/test_*.py", "examples/paper/math.yaml", "examples/paper/figfont.yaml",
        "docs/engine.md", "README.md",
    ]


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_every_cited_path_exists(doc):
    rel = doc.relative_to(ROOT)
    pending = PENDING.get(rel.as_posix(), {})
    missing = [p for p in cited_paths(doc.read_text(encoding="utf-8"), rel.parent.as_posix())
               if not _exists(p) and p not in pending]
    assert not missing, f"{rel} cites paths that do not exist: {', '.join(missing)}"
