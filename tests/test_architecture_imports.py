"""The import structure of ``src/deft``, read with :mod:`ast` (nothing is imported): no module takes
a private name (``_x``, not a dunder) from another module of the package, and the modules of one
package (one folder) import each other without a cycle, counting imports inside functions too.

A private name is a module's own business: a module that needs it from elsewhere needs a public
name. A cycle between two modules of one folder (even one that works because one side imports
inside a function) means neither can be read or changed without the other; the shared piece
belongs in one of them, or in a third that both use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "deft"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(src: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under ``src``."""
    return {_module_name(p, src): p for p in sorted(src.rglob("*.py"))}


def _package_of(module: str, path: Path) -> str:
    """The package a module's relative imports start from (a package's ``__init__`` is its own)."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The dotted module an ``from X import ...`` reads from, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = _package_of(module, path).split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` for every import of ``module``, at any depth
    (inside functions too); ``from pkg import sub`` of a submodule counts as importing ``pkg.sub``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, "", node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, path)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append((sub, "", node.lineno) if sub in known else (source, alias.name, node.lineno))
    return found


def private_imports(src: Path = SRC) -> list[str]:
    """``"module:line imports _name from other"`` for every private name one module of the package
    takes from another: ``from other import _name`` and ``other_module._name`` attribute reads."""
    known = _modules(src)
    problems = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bound = {}  # local name -> package module it stands for
        for source, name, line in _imports(module, path, known):
            if not source.startswith(PACKAGE) or source == module:
                continue
            if name and _is_private(name):
                problems.append(f"{module}:{line} imports {name} from {source}")
            leaf = (name or source).rpartition(".")[2]
            if _is_private(leaf) and not name and source in known:
                problems.append(f"{module}:{line} imports the private module {source}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE):
                        bound[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, module, path)
                for alias in node.names:
                    if f"{source}.{alias.name}" in known:
                        bound[alias.asname or alias.name] = f"{source}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                target = _dotted(node.value)
                if target in bound and bound[target] != module:
                    problems.append(f"{module}:{node.lineno} reads {node.attr} of {bound[target]}")
    return problems


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """``{module: modules of the same folder it imports}`` (packages' ``__init__`` left out: they
    gather their modules' public names)."""
    known = _modules(src)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        if path.name == "__init__.py":
            continue
        folder = module.rpartition(".")[0]
        edges = graph.setdefault(module, set())
        for source, _, _ in _imports(module, path, known):
            target = source if source in known else None
            if target and target != module and target.rpartition(".")[0] == folder \
                    and known[target].name != "__init__.py":
                edges.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_module_imports_a_private_name_of_another():
    problems = private_imports()
    assert not problems, "private names taken across modules (make them public):\n  " + "\n  ".join(problems)


def test_the_modules_of_each_package_import_each_other_without_a_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles inside a package:\n  " + "\n  ".join(" <-> ".join(c) for c in found)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("text, expected", [
    ("from .a import _helper\n", "deft.sub.b:1 imports _helper from deft.sub.a"),
    ("def f():\n    from ..sub.a import _helper\n", "deft.sub.b:2 imports _helper from deft.sub.a"),
    ("from . import a\nx = a._helper\n", "deft.sub.b:2 reads _helper of deft.sub.a"),
    ("import deft.sub.a as m\nx = m._helper\n", "deft.sub.b:2 reads _helper of deft.sub.a"),
])
def test_the_private_import_check_finds_each_form_and_names_module_and_name(tmp_path, text, expected):
    src = _write(tmp_path, {"__init__.py": "", "sub/__init__.py": "", "sub/a.py": "def _helper(): pass\n",
                            "sub/b.py": text})
    assert private_imports(src) == [expected]


def test_dunder_names_and_a_module_s_own_private_names_pass(tmp_path):
    src = _write(tmp_path, {"__init__.py": "", "a.py": "from . import __version__\n_x = 1\ny = _x\n"})
    assert private_imports(src) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(tmp_path):
    src = _write(tmp_path, {"__init__.py": "", "sub/__init__.py": "from .a import f\n",
                            "sub/a.py": "from .b import g\n\ndef f():\n    return g()\n",
                            "sub/b.py": "def g():\n    from .a import f\n    return f\n",
                            "sub/c.py": "from .a import f\n", "other.py": "from .sub.a import f\n"})
    assert cycles(import_graph(src)) == [["deft.sub.a", "deft.sub.b"]]
    (src / PACKAGE / "sub" / "b.py").write_text("def g():\n    return 1\n")
    assert cycles(import_graph(src)) == []
