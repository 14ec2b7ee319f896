"""Check the structure of ``hwprune/``: import circles, upward imports, private names, room sizes.

Reads the source with :mod:`ast` (nothing is imported), builds the graph of imports between hwprune's
modules, and reports:

- **circles**: strongly connected sets of modules (every import counts, also one inside a function or under
  ``TYPE_CHECKING``: a circle through a late import is a circle of design all the same);
- **upward imports**: a module importing one of a higher layer (:data:`LAYERS`);
- **private imports**: ``from a import _name`` where ``a`` is another module than the importer's own
  package's ``__init__`` (a private name is private to its module);
- **large files** (over :data:`MAX_FILE_LINES` lines) and **long functions** (over :data:`MAX_FUNC_LINES`
  lines of code: docstrings, comments and blank lines do not count). A function whose length has a reason
  says so in one comment line in its body that starts with ``# long:``.

``from hwprune.measure import X`` is resolved through the package's lazy ``_EXPORTS`` table (or its
``from .x import X`` lines) to the module that defines ``X``, so re-exports make no false circles.

Usage::

    python scripts/import_graph.py            # the report; exit 0
    python scripts/import_graph.py --check    # exit 1 if any rule is broken (CI runs this)
    python scripts/import_graph.py --dot g.dot # also write the module graph for Graphviz
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "hwprune"

MAX_FILE_LINES = 500
MAX_FUNC_LINES = 80

ALLOWED_LARGE: dict[str, tuple[int, str]] = {
    "hwprune/callbacks/hw_pruning.py": (
        650,
        "the Lightning callback's surface: 26 documented constructor arguments, the checkpoint state and "
        "the hooks; its mechanics already live in _resolve, _step, _network, _trainer, report and verify/",
    ),
}
"""Files allowed over :data:`MAX_FILE_LINES`, each with a ceiling (it cannot grow unnoticed) and the reason.
Listed by ``--check``; an entry here is a known debt, not a pass."""

LAYERS: list[tuple[str, ...]] = [
    ("hwprune._lazy", "hwprune.contract", "hwprune.options", "hwprune.staircase"),
    ("hwprune.models", "hwprune.data"),
    ("hwprune.measure",),
    ("hwprune.predict",),
    ("hwprune.prune",),
    ("hwprune.verify",),
    ("hwprune.callbacks",),
    ("hwprune.module", "hwprune.run", "hwprune.cli", "hwprune"),
    ("hwprune.measure.cli", "hwprune.predict.cli", "hwprune.prune.cli"),
]
"""hwprune's layers, lowest first: a module may import its own layer's modules and lower ones only.

The command-line modules are the top layer wherever they live: each is a composition root that wires the
stages together for a shell user (``hwprune measure --adaptive`` fits a predictor as it measures)."""


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix that names ``module``'s layer."""
    best, best_len = len(LAYERS) - 1, -1
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best_len:
                best, best_len = i, len(n)
    return best


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    exports: dict[str, str] = field(default_factory=dict)  # name -> defining module (package __init__)


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def load_modules() -> dict[str, Module]:
    mods: dict[str, Module] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        name, is_pkg = _module_name(path)
        mods[name] = Module(name, path, is_pkg, ast.parse(path.read_text(), str(path)))
    for m in mods.values():
        if m.is_package:
            m.exports = _package_exports(m)
    return mods


def _package_exports(m: Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.walk(m.tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
                for k, v in zip(node.value.keys, node.value.values, strict=True):
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant):
                        out[str(k.value)] = str(v.value)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(m, node)
            if base is not None:
                for a in node.names:
                    out[a.asname or a.name] = base
    return out


def _resolve_from(m: Module, node: ast.ImportFrom) -> str | None:
    if node.level:
        pkg = m.name if m.is_package else m.name.rpartition(".")[0]
        for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
        base = f"{pkg}.{node.module}" if node.module else pkg
    else:
        base = node.module or ""
    return base if base == PACKAGE or base.startswith(PACKAGE + ".") else None


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    names: tuple[str, ...]


def edges_of(m: Module, mods: dict[str, Module]) -> list[Edge]:
    out: list[Edge] = []
    for node in ast.walk(m.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PACKAGE or a.name.startswith(PACKAGE + "."):
                    out.append(Edge(m.name, _existing(a.name, mods), node.lineno, ()))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(m, node)
            if base is None:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in mods:  # `from pkg import submodule`
                    out.append(Edge(m.name, sub, node.lineno, ()))
                    continue
                dst = _existing(base, mods)
                target = mods.get(dst)
                if target is not None and target.is_package and a.name in target.exports and dst != m.name:
                    dst = _existing(target.exports[a.name], mods)
                out.append(Edge(m.name, dst, node.lineno, (a.name,)))
    return [e for e in out if e.dst != e.src]


def _existing(name: str, mods: dict[str, Module]) -> str:
    while name not in mods and "." in name:
        name = name.rpartition(".")[0]
    return name


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
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
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
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


def _code_lines(fn: ast.AST, src_lines: list[str]) -> int:
    body = fn.body  # type: ignore[attr-defined]
    doc = (
        body[0]
        if body
        and isinstance(body[0], ast.Expr)
        and isinstance(getattr(body[0], "value", None), ast.Constant)
        else None
    )
    skip = set(range(doc.lineno, doc.end_lineno + 1)) if doc is not None else set()
    for inner in ast.walk(fn):  # a nested function or class is a room of its own
        if inner is not fn and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            skip.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    n = 0
    for ln in range(fn.lineno, (fn.end_lineno or fn.lineno) + 1):  # type: ignore[attr-defined]
        text = src_lines[ln - 1].strip()
        if ln in skip or not text or text.startswith("#"):
            continue
        n += 1
    return n


def _has_reason(fn: ast.AST, src_lines: list[str]) -> bool:
    lines = src_lines[fn.lineno - 1 : fn.end_lineno]  # type: ignore[attr-defined]
    return any(line.strip().startswith("# long:") for line in lines)


@dataclass
class Report:
    circles: list[list[str]]
    upward: list[Edge]
    private: list[Edge]
    large_files: list[tuple[str, int]]
    long_functions: list[tuple[str, int]]
    explained: list[tuple[str, int]]

    @property
    def ok(self) -> bool:
        over = [(p, n) for p, n in self.large_files if n > ALLOWED_LARGE.get(p, (MAX_FILE_LINES, ""))[0]]
        return not (self.circles or self.upward or self.private or over or self.long_functions)


def analyse() -> tuple[Report, dict[str, set[str]]]:
    mods = load_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    upward: list[Edge] = []
    private: list[Edge] = []
    for m in mods.values():
        graph.setdefault(m.name, set())
        for e in edges_of(m, mods):
            graph[e.src].add(e.dst)
            if layer_of(e.dst) > layer_of(e.src):
                upward.append(e)
            own_pkg = m.name if m.is_package else m.name.rpartition(".")[0]
            for n in e.names:
                if n.startswith("_") and not n.startswith("__") and e.dst != own_pkg:
                    private.append(Edge(e.src, e.dst, e.line, (n,)))
    large, long_fns, explained = [], [], []
    for m in mods.values():
        src = m.path.read_text().splitlines()
        rel = str(m.path.relative_to(ROOT))
        if len(src) > MAX_FILE_LINES:
            large.append((rel, len(src)))
        for node in ast.walk(m.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, src)
                if n > MAX_FUNC_LINES:
                    where = f"{rel}:{node.lineno} {node.name}"
                    (explained if _has_reason(node, src) else long_fns).append((where, n))
    return Report(circles(graph), upward, private, large, long_fns, explained), graph


def render(rep: Report) -> str:
    out = []

    def section(title: str, rows: list[str]) -> None:
        out.append(f"{title}: {len(rows)}")
        out.extend(f"  {r}" for r in rows)

    section("import circles", [" <-> ".join(c) for c in rep.circles])
    section("upward imports", [f"{e.src}:{e.line} -> {e.dst} {', '.join(e.names)}" for e in rep.upward])
    section(
        "private names imported across modules",
        [f"{e.src}:{e.line} -> {e.dst}.{e.names[0]}" for e in rep.private],
    )
    section(
        f"files over {MAX_FILE_LINES} lines",
        [
            f"{p} {n}"
            + (f" (allowed up to {ALLOWED_LARGE[p][0]}: {ALLOWED_LARGE[p][1]})" if p in ALLOWED_LARGE else "")
            for p, n in rep.large_files
        ],
    )
    section(f"functions over {MAX_FUNC_LINES} lines of code", [f"{w} {n}" for w, n in rep.long_functions])
    section("long functions that say why (# long:)", [f"{w} {n}" for w, n in rep.explained])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if any rule is broken")
    ap.add_argument("--dot", type=Path, help="also write the module graph as Graphviz dot")
    args = ap.parse_args(argv)
    rep, graph = analyse()
    print(render(rep))
    if args.dot:
        lines = ["digraph hwprune {"] + [
            f'  "{a}" -> "{b}";' for a in sorted(graph) for b in sorted(graph[a])
        ]
        args.dot.write_text("\n".join(lines + ["}"]) + "\n")
    if args.check:
        print("structure: OK" if rep.ok else "structure: FAILED (see above)")
        return 0 if rep.ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
