"""The layers run one way (docs/architecture.md): the library (checks/config/registry < data < nn
< retrieval < models < eval < train) never imports the application (suites, serve, cli), a module
imports only its own or lower layers, and no import cycle exists, lazy (in-function) imports
included. Checked on the source, so a violation fails here before it can bite at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = [  # (module prefix, layer); the longest matching prefix wins
    ("thawrec", 0), ("thawrec.errors", 0), ("thawrec.checks", 0), ("thawrec.progress", 0),
    ("thawrec.config", 0), ("thawrec.registry", 0),
    ("thawrec.data", 1), ("thawrec.nn", 2), ("thawrec.retrieval", 3), ("thawrec.models", 4),
    ("thawrec.eval", 5), ("thawrec.train", 6),
    ("thawrec.suites", 9), ("thawrec.serve", 9), ("thawrec.cli", 9),
]
APP = 9


def layer(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def read_tree(root: Path) -> dict[str, str]:
    """Module name -> source for every .py file under ``root/thawrec``."""
    out = {}
    for f in sorted((root / "thawrec").rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f.read_text()
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(module: str, source: str, modules: set[str], is_package: bool) -> set[str]:
    """Modules of the tree that ``module`` imports anywhere (lazy imports too, not TYPE_CHECKING)."""
    tree = ast.parse(source)
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules and n != module)
    return found


def graph(tree: dict[str, str]) -> dict[str, set[str]]:
    names = set(tree)
    pkgs = {m for m in names if any(o.startswith(m + ".") for o in names)}
    return {m: imports(m, src, names, m in pkgs) for m, src in tree.items()}


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Backward imports (library -> application, or a lower layer importing a higher one)."""
    bad = []
    for m, targets in edges.items():
        for t in sorted(targets):
            if layer(t) > layer(m):
                kind = "library imports the application" if layer(t) == APP else "imports a higher layer"
                bad.append(f"{m} -> {t} ({kind})")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_library_never_imports_the_application_and_layers_run_one_way():
    assert violations(graph(read_tree(SRC))) == []


def test_no_import_cycles():
    assert cycles(graph(read_tree(SRC))) == []


def test_the_registry_imports_no_model():
    edges = graph(read_tree(SRC))
    assert not [t for t in edges["thawrec.registry"] if t.startswith("thawrec.models")]


def test_the_checks_catch_a_backward_import_and_a_lazy_cycle(tmp_path):
    """The checker itself can fail: a planted violation and a planted (lazy) cycle are found."""
    pkg = tmp_path / "thawrec"
    for d in ("", "models", "suites", "train"):
        (pkg / d).mkdir(parents=True, exist_ok=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "models" / "a.py").write_text("def f():\n    from thawrec.models import b\n")
    (pkg / "models" / "b.py").write_text("from thawrec.models.a import f\nfrom thawrec.suites import x\n")
    (pkg / "suites" / "x.py").write_text("from thawrec.train import y\n")
    (pkg / "train" / "y.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                        "    from thawrec.suites import x\n")
    edges = graph(read_tree(tmp_path))
    assert violations(edges) == ["thawrec.models.b -> thawrec.suites.x (library imports the application)"]
    assert cycles(edges) == [["thawrec.models.a", "thawrec.models.b"]]


@pytest.mark.parametrize("module, expected", [("thawrec.cli", APP), ("thawrec.models.poso", 4),
                                              ("thawrec.retrieval.index", 3), ("thawrec.registry", 0)])
def test_layer_of(module, expected):
    assert layer(module) == expected
