"""The folder layout's rules, read from the source (every import, at any depth) and checked at runtime.

* The import graph of the project's own modules (deployments, training,
  clients, bench) has no cycle.
* ``deployments/core/`` reaches neither Ray nor Starlette (nor FastAPI),
  directly or through other project modules.
* ``clients/`` reaches nothing of ``deployments/``, ``training/`` or
  ``bench/``, and neither Ray nor torch: ``pip install`` of the clients alone
  must be enough to run them.
* ``tests/unit/`` reaches no Ray, so the unit folder stays fast and Ray-free.
* README.md's ``## Layout`` table lists exactly the folders there are, packages inside
  packages included.
* Every repository path a comment, docstring or doc cites (a pytest node id ``file.py::test_name`` too)
  exists, so a moved file cannot leave its old name behind.

The source is read with ``ast``: imports inside functions, ``try`` and ``if``
blocks count, as do ``importlib.import_module("x")`` and ``__import__("x")``
with a literal name; ``from a import b`` counts as importing ``a.b`` when that
is a module; relative imports are resolved. Importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``, so reaching a module reaches its
packages too. Nothing here starts Ray or touches the network.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("deployments", "training", "clients", "bench")
SKIP_DIRS = {"__pycache__", "node_modules"}


# ----------------------------------------------------------------------------- the import graph

def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py")
                  if not any(part in SKIP_DIRS or part.startswith(".") for part in p.relative_to(folder).parts))


def written_imports(path: Path, name: str) -> list[tuple[str, Optional[str], int]]:
    """(absolute dotted name, what it falls back to, line) for every import in the file, at any depth.

    ``from a import b`` gives ``("a.b", "a", line)``: it imports the module
    ``a.b`` where there is one, else the name ``b`` from ``a``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, Optional[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                if alias.name == "*":
                    found.append((base, None, node.lineno))
                else:
                    found.append((f"{base}.{alias.name}".lstrip("."), base or None, node.lineno))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and _is_dynamic_import(node.func):
            found.append((node.args[0].value, None, node.lineno))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


@dataclass
class Graph:
    root: Path
    packages: tuple[str, ...]
    files: dict[str, Path] = field(default_factory=dict)  # project module -> its file
    edges: dict[str, dict[str, int]] = field(default_factory=dict)  # module -> {project module: line}
    external: dict[str, dict[str, int]] = field(default_factory=dict)  # module -> {top-level name: line}

    def is_project(self, dotted: str) -> bool:
        return dotted.split(".")[0] in self.packages

    def resolve(self, dotted: str) -> Optional[str]:
        """The project module a dotted import name loads: the longest prefix with a file."""
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in self.files:
                return ".".join(parts[:n])
        return None

    def runs(self, module: str) -> list[str]:
        """The files importing ``module`` executes: its packages' ``__init__``, then itself."""
        parts = module.split(".")
        return [m for m in (".".join(parts[:n]) for n in range(1, len(parts) + 1)) if m in self.files]

    def add_file(self, path: Path) -> None:
        name = module_name(self.root, path)
        if name in self.files and self.files[name].name == "__init__.py":
            return  # a package wins over a module of the same name, as in Python
        self.files[name] = path

    def target(self, dotted: str, fallback: Optional[str]) -> Optional[str]:
        """The project module an import names: ``dotted`` when it is one, else what it falls back to."""
        if dotted in self.files:
            return dotted
        if fallback is not None:
            return self.resolve(fallback)
        return self.resolve(dotted)

    def link(self) -> None:
        for name, path in self.files.items():
            edges, external = {}, {}
            for dotted, fallback, line in written_imports(path, name):
                if self.is_project(dotted):
                    target = self.target(dotted, fallback)
                    if target is not None and target != name:
                        edges.setdefault(target, line)
                else:
                    external.setdefault(dotted.split(".")[0], line)
            self.edges[name] = edges
            self.external[name] = external

    def where(self, module: str, target: str) -> str:
        line = self.edges.get(module, {}).get(target) or self.external.get(module, {}).get(target)
        return f"{self.files[module].relative_to(self.root)}:{line}"


def build_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> Graph:
    graph = Graph(root, tuple(packages))
    for package in graph.packages:
        for path in python_files(root / package):
            graph.add_file(path)
    graph.link()
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle (first module repeated at the end) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph.files):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:
        members, start = set(group), group[0]
        # Shortest way back to `start` inside the group.
        came_from: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in came_from:
            nxt = []
            for v in frontier:
                for w in sorted(graph.edges[v]):
                    if w in members and w not in came_from:
                        came_from[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while path[-1] != start or len(path) == 1:
            path.append(came_from[path[-1]])
        cycles.append(path[::-1])
    return cycles


def describe_cycle(graph: Graph, cycle: list[str]) -> str:
    return " -> ".join(f"{a} ({graph.where(a, b)})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def reach(graph: Graph, starts: Iterable[str]) -> dict[str, Optional[tuple[str, str]]]:
    """Every project module that importing ``starts`` runs, with (the module importing it, what it imports)."""
    seen: dict[str, Optional[tuple[str, str]]] = {}
    frontier: list[str] = []
    for start in starts:
        for m in graph.runs(start):
            if m not in seen:
                seen[m] = None
                frontier.append(m)
    while frontier:
        nxt = []
        for v in frontier:
            for target in graph.edges.get(v, {}):
                for m in graph.runs(target):
                    if m not in seen:
                        seen[m] = (v, target)
                        nxt.append(m)
        frontier = nxt
    return seen


def chain(graph: Graph, seen: dict[str, Optional[tuple[str, str]]], module: str) -> str:
    """How ``module`` was reached: each importing module with the file and line of its import."""
    hops, m = [module], module
    while seen[m] is not None:
        parent, target = seen[m]
        hops.append(f"{parent} ({graph.where(parent, target)})")
        m = parent
    return " -> ".join(reversed(hops))


def forbidden_reached(graph: Graph, starts: Iterable[str], external: Iterable[str] = (),
                      project: Iterable[str] = ()) -> list[str]:
    """How ``starts`` reach a forbidden external top-level name or project package, one line each.

    Only the way into a forbidden package is shown, not everything past it.
    """
    external, project = set(external), set(project)
    seen = reach(graph, starts)

    def forbidden(module: str) -> bool:
        return module.split(".")[0] in project

    problems = []
    for module in sorted(seen):
        if forbidden(module):
            if seen[module] is None or not forbidden(seen[module][0]):
                problems.append(f"{module} reached: {chain(graph, seen, module)}")
            continue
        for name in sorted(set(graph.external[module]) & external):
            problems.append(f"{name} imported at {graph.where(module, name)}, reached: {chain(graph, seen, module)}")
    return problems


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph()


def core_modules(graph: Graph) -> list[str]:
    return sorted(m for m in graph.files if m.startswith("deployments.core."))


def clients_modules(graph: Graph) -> list[str]:
    return sorted(m for m in graph.files if m == "clients" or m.startswith("clients."))


def imported_without(modules: list[str], banned: Iterable[str]) -> subprocess.CompletedProcess:
    """Import ``modules`` in a fresh interpreter; it fails naming each banned top-level package it loaded."""
    code = (f"import {', '.join(modules)}\n"
            "import sys\n"
            f"banned = {tuple(banned)!r}\n"
            "bad = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in banned})\n"
            "assert not bad, f'importing them loaded {bad}'\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


# ----------------------------------------------------------------------------- the checker checks itself

def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_graph_sees_imports_in_functions_from_submodules_and_relative(tmp_path):
    root = write_tree(tmp_path, {
        "pa/__init__.py": "",
        "pa/one.py": "import json\n\ndef later():\n    from pa.sub import two\n",
        "pa/sub/two.py": "try:\n    from ..three import thing\nexcept ImportError:\n    pass\n",
        "pa/three.py": "import importlib\n\ndef f():\n    importlib.import_module('pa.one')\n",
        "pb/four.py": "from pa import one as _one\nfrom pa.sub import two\nimport pa.three\n",
        "pb/__init__.py": "from .four import x\n",
        "pb/five.py": "from pa import CONSTANT\n",
    })
    g = build_graph(root, ("pa", "pb"))
    assert g.edges["pa.one"] == {"pa.sub.two": 4}
    assert g.edges["pa.sub.two"] == {"pa.three": 2}
    assert g.edges["pa.three"] == {"pa.one": 4}
    assert g.edges["pb.four"] == {"pa.one": 1, "pa.sub.two": 2, "pa.three": 3}
    assert g.edges["pb.five"] == {"pa": 1}  # a name from the package, not a module
    assert g.edges["pb"] == {"pb.four": 1}
    assert g.external["pa.one"] == {"json": 1} and g.external["pa.three"] == {"importlib": 1}
    (cycle,) = find_cycles(g)
    assert cycle == ["pa.one", "pa.sub.two", "pa.three", "pa.one"]
    assert describe_cycle(g, cycle) == ("pa.one (pa/one.py:4) -> pa.sub.two (pa/sub/two.py:2) -> "
                                        "pa.three (pa/three.py:4) -> pa.one")


def test_forbidden_imports_are_found_through_modules_and_packages(tmp_path):
    root = write_tree(tmp_path, {
        "core/a.py": "def f():\n    from core import b\n",
        "core/b.py": "from app.x import helper\n",
        "app/__init__.py": "import ray\n",
        "app/x.py": "",
        "cli/c.py": "import httpx\n",
    })
    g = build_graph(root, ("core", "app", "cli"))
    assert find_cycles(g) == []
    problems = forbidden_reached(g, ["core.a"], external=("ray",), project=("cli",))
    assert problems == ["ray imported at app/__init__.py:1, reached: "
                        "core.a (core/a.py:2) -> core.b (core/b.py:1) -> app"]
    assert forbidden_reached(g, ["cli.c"], external=("ray",), project=("app", "core")) == []
    assert [p.split(" reached")[0] for p in forbidden_reached(g, ["core.b"], project=("app",))] == ["app", "app.x"]


# ----------------------------------------------------------------------------- the project's rules

def test_the_import_graph_has_no_cycle(graph):
    assert len(graph.files) > 20  # the packages were found
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(describe_cycle(graph, c) for c in cycles)


def test_core_never_reaches_ray_or_http_statically(graph):
    modules = core_modules(graph)
    assert len(modules) >= 10, modules
    problems = forbidden_reached(graph, modules, external=("ray", "starlette", "fastapi"))
    assert not problems, "deployments/core/ reaches Ray or HTTP:\n" + "\n".join(problems)


def test_core_imports_without_ray_or_http_at_runtime(graph):
    done = imported_without(core_modules(graph), ("ray", "starlette", "fastapi"))
    assert done.returncode == 0, done.stderr[-3000:]


def test_clients_reach_nothing_of_the_server_statically(graph):
    modules = clients_modules(graph)
    assert {"clients", "clients.cli", "clients.loadtest", "clients.evaluate", "clients.jsonl"} <= set(modules)
    problems = forbidden_reached(graph, modules, external=("ray", "torch"),
                                 project=("deployments", "training", "bench"))
    assert not problems, "clients/ must stand alone:\n" + "\n".join(problems)


def test_clients_import_without_ray_or_torch_at_runtime(graph):
    done = imported_without(clients_modules(graph), ("ray", "torch", "deployments", "training", "bench"))
    assert done.returncode == 0, done.stderr[-3000:]


# The replicas that never run the model: importing torch and transformers cost each of them ~5 CPU-s
# and ~400 MiB at every start (a deploy, a scale-out, a replacement).
MODEL_FREE_DEPLOYMENTS = ("deployments.preprocessor", "deployments.router", "deployments.intake.consumer")


def test_the_replicas_that_never_run_the_model_import_without_torch():
    done = imported_without(list(MODEL_FREE_DEPLOYMENTS), ("torch", "transformers"))
    assert done.returncode == 0, done.stderr[-3000:]


def test_unit_tests_never_reach_ray(graph):
    problems = []
    unit_files = python_files(ROOT / "tests" / "unit")
    assert Path(__file__) in unit_files
    for path in unit_files:
        rel = path.relative_to(ROOT)
        written = written_imports(path, module_name(ROOT, path))
        problems += [f"{rel}:{line} imports {name}" for name, _, line in written
                     if name == "ray" or name.startswith("ray.")]
        starts = {graph.target(name, fallback) for name, fallback, _ in written if graph.is_project(name)} - {None}
        problems += [f"{rel}: {p}" for p in forbidden_reached(graph, sorted(starts), external=("ray",))]
    assert not problems, "tests/unit/ must stay Ray-free:\n" + "\n".join(problems)


# The HTTP plumbing and the intake's producer side take their Ray parts by injection: unit-tested without Ray.
RAY_FREE_OUTSIDE_CORE = ("deployments.ingress", "deployments.intake.handlers", "deployments.intake.producer",
                         "deployments.intake.fs_transport")


def test_the_http_plumbing_never_reaches_ray(graph):
    modules = list(RAY_FREE_OUTSIDE_CORE)
    assert set(modules) <= set(graph.files), sorted(set(modules) - set(graph.files))
    problems = forbidden_reached(graph, modules, external=("ray",))
    assert not problems, "the ingress's HTTP plumbing reaches Ray:\n" + "\n".join(problems)


# Past this a module holds several concerns; split it by concern (as deployments/core/contract/ is).
MAX_MODULE_LINES = 600


def test_no_module_is_over_the_line_budget():
    over = []
    for package in ("deployments", "clients", "training"):
        for path in python_files(ROOT / package):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_MODULE_LINES:
                over.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not over, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(over)


# ----------------------------------------------------------------------------- README's folder map

LAYOUT_ROW = re.compile(r"^\|\s*`([^`]+/)`\s*\|\s*(.*?)\s*\|\s*$")


def readme_layout(readme: Path) -> list[tuple[str, str]]:
    """(folder, description) for each row of the table under ``## Layout``."""
    rows, inside = [], False
    for line in readme.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Layout"
            continue
        if inside:
            m = LAYOUT_ROW.match(line.strip())
            if m:
                rows.append((m.group(1), m.group(2)))
    return rows


def python_subfolders(folder: Path) -> list[Path]:
    """The folders directly inside ``folder`` that hold Python, at any depth."""
    return sorted(sub for sub in folder.iterdir()
                  if sub.is_dir() and sub.name not in SKIP_DIRS and not sub.name.startswith(".") and python_files(sub))


def folders_to_list(root: Path, rows: dict[str, str]) -> list[str]:
    """The folders holding Python that the table must list, given its ``rows`` (folder: description).

    Each top-level folder holding Python (``tests/`` by its subfolders) and, inside each folder the
    table must list, each subfolder holding Python, at any depth, so that a new package such as
    ``deployments/intake/`` needs a row. A subfolder its parent's row names in backticks (as
    ``deployments/core/``'s names ``store/``) needs none: the parent's row describes it, and what
    the subfolder holds.
    """
    wanted: list[str] = []

    def walk(folder: Path, rel: str) -> None:
        wanted.append(rel)
        for sub in python_subfolders(folder):
            if f"{rel}{sub.name}/" in rows or f"`{sub.name}/`" not in rows.get(rel, ""):
                walk(sub, f"{rel}{sub.name}/")

    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        if top.name.startswith(".") or top.name in SKIP_DIRS or top.name.endswith(".egg-info"):
            continue
        if top.name == "tests":
            for sub in python_subfolders(top):
                walk(sub, f"tests/{sub.name}/")
        elif python_files(top):
            walk(top, f"{top.name}/")
    return wanted


def layout_problems(root: Path) -> list[str]:
    rows = readme_layout(root / "README.md")
    if not rows:
        return ["README.md has no '## Layout' table with rows like | `deployments/` | ... |"]
    listed = [folder for folder, _ in rows]
    described: dict[str, str] = {}
    for folder, text in rows:
        described[folder] = f"{described.get(folder, '')} {text}".strip()
    problems = [f"{f} is listed twice" for f in sorted({f for f in listed if listed.count(f) > 1})]
    problems += [f"{f} is listed but is not a folder" for f in listed if not (root / f).is_dir()]
    problems += [f"{f} has no description" for f, text in rows if not text]
    unlisted = set(folders_to_list(root, described)) - set(listed)
    problems += [f"{f} holds Python but is not listed" for f in sorted(unlisted)]
    return problems


def test_readme_layout_matches_the_tree():
    problems = layout_problems(ROOT)
    assert not problems, "README.md '## Layout':\n" + "\n".join(problems)


def test_the_layout_check_fails_on_a_stale_table(tmp_path):
    write_tree(tmp_path, {
        "README.md": "# x\n\n## Layout\n\n| Folder | What |\n|---|---|\n| `app/` | the app, its `named/` helpers |\n"
                     "| `gone/` | removed |\n| `app/` | again |\n| `docs/` |  |\n\n## Other\n\n| `other/` | no |\n",
        "app/a.py": "", "new/b.py": "", "tests/unit/test_x.py": "", "deployments/core/c.py": "",
        "docs/x.md": "", ".hidden/h.py": "", "app/named/n.py": "", "app/named/deeper/d.py": "",
        "app/inner/i.py": "", "app/inner/deeper/d.py": "", "app/static/page.html": "",
    })
    assert readme_layout(tmp_path / "README.md") == [("app/", "the app, its `named/` helpers"), ("gone/", "removed"),
                                                      ("app/", "again"), ("docs/", "")]
    assert layout_problems(tmp_path) == [
        "app/ is listed twice",
        "gone/ is listed but is not a folder",
        "docs/ has no description",
        "app/inner/ holds Python but is not listed",
        "app/inner/deeper/ holds Python but is not listed",
        "deployments/ holds Python but is not listed",
        "deployments/core/ holds Python but is not listed",
        "new/ holds Python but is not listed",
        "tests/unit/ holds Python but is not listed",
    ]


# ----------------------------------------------------------------------------- paths cited in prose

# Python cites paths in its comments and docstrings; its other strings are code (and this file's own
# test trees are made up), so only those two are read. Every *.md is read whole, as are these.
CITING_PY_FOLDERS = ("deployments", "clients", "training", "bench", "tests")
CITING_FILES = ("serve_config.yaml", "k8s/*.yaml", "k8s/Dockerfile", "Makefile", "pyproject.toml",
                "bench/*.sh", ".ci/run")
# Top-level names no checkout holds or that are not the project's: a token starting with one is no citation.
NOT_ROOTS = {".git", ".venv", ".pytest_cache", "__pycache__", "build", "dist", ".whl", ".gl"}
# Cited paths that a checkout does not hold, and need not: each is made when the project runs.
NOT_IN_A_CHECKOUT = (
    "models/",     # checkpoints: `make demo` builds models/demo (the e2e tests models/demo-e2e if need be),
                   # the benchmark models/base
    "var/",        # the service's runtime state: the case store, the intake's spool
    "bench/out/",  # the benchmark's output (git-ignored)
)
PATH_CHARS = r"(?:[\w.*?/-]|\{[\w.,/-]*\})*"  # a {a,b} group is spelled out as each choice
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


def path_roots(root: Path) -> tuple[list[str], list[str]]:
    """(folders, files) at the top of the checkout that a cited path may start with."""
    entries = [p for p in root.iterdir()
               if p.name not in NOT_ROOTS and not p.name.endswith(".egg-info")]
    folders = {p.name for p in entries if p.is_dir()} | {r.split("/")[0] for r in NOT_IN_A_CHECKOUT}
    return sorted(folders), sorted(p.name for p in entries if p.is_file())


def path_token(root: Path) -> re.Pattern:
    """A path starting at the checkout's top, not inside a longer path or URL.

    Group 1 is the path; group 2 the names it is cited with, if any: ``file.py::test_x`` (pytest's
    node id, ``::`` again for a class's test) or ``file.py:name``.
    """
    folders, files = path_roots(root)
    starts = "|".join([re.escape(f) + "/" for f in folders] + [re.escape(f) + r"(?![\w-])" for f in files])
    names = r"(?<=\.py):[A-Za-z_]\w*(?![\w:])|(?:::[\w\[\]-]+)*"
    return re.compile(rf"(?<![\w./\\~$:@-])((?:{starts}){PATH_CHARS})({names})")


def prose_lines(path: Path) -> Iterable[tuple[int, str]]:
    """(line number, text) of what ``path`` says: a Python file's comments and docstrings, any other file whole."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".py":
        yield from enumerate(text.splitlines(), 1)
        return
    import io
    import tokenize
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for n, line in enumerate(node.value.value.splitlines()):
                yield node.lineno + n, line


def citing_files(root: Path, py_folders: Iterable[str] = CITING_PY_FOLDERS) -> list[Path]:
    found = {p for p in root.rglob("*.md")
             if not any(part in NOT_ROOTS or part.startswith(".") or part.endswith(".egg-info")
                        for part in p.relative_to(root).parts[:-1])}
    for folder in py_folders:
        if (root / folder).is_dir():
            found |= set(python_files(root / folder))
    for pattern in CITING_FILES:
        found |= set(root.glob(pattern))
    return sorted(p for p in found if p.is_file())


def spelled_out(pattern: str) -> list[str]:
    """``a/{b,c}.py`` as ``a/b.py`` and ``a/c.py``."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [s for choice in m.group(1).split(",")
            for s in spelled_out(pattern[:m.start()] + choice + pattern[m.end():])]


def cited_path_exists(root: Path, cited: str, names: str = "") -> bool:
    for path in spelled_out(cited):
        if any(path == r.rstrip("/") or path.startswith(r) for r in NOT_IN_A_CHECKOUT):
            continue
        matches = list(root.glob(path)) if any(c in path for c in "*?[") else [root / path]
        if not any(m.exists() for m in matches):
            return False
        for name in filter(None, names.lstrip(":").split("::")):
            name = name.split("[")[0]  # a parametrized test's id: the function is what must be there
            if not any(m.is_file() and re.search(rf"\b{re.escape(name)}\b", m.read_text(encoding="utf-8"))
                       for m in matches):
                return False
    return True


def stale_citations(root: Path, py_folders: Iterable[str] = CITING_PY_FOLDERS) -> list[str]:
    """``file:line: path`` for each cited path the checkout lacks, and ``link (target)`` for each
    Markdown link to nothing (a link is relative to its file)."""
    token = path_token(root)
    stale = []
    for path in citing_files(root, py_folders):
        rel = path.relative_to(root)
        for lineno, line in prose_lines(path):
            links = list(MD_LINK.finditer(line)) if path.suffix == ".md" else []
            for link in links:
                target = link.group(1)
                if "://" not in target and not target.startswith("mailto:") \
                        and not (path.parent / target).exists():
                    stale.append(f"{rel}:{lineno}: link ({target})")
            for m in token.finditer(line):
                if any(link.start(1) <= m.start() < link.end(1) for link in links):
                    continue  # a link's target: checked above, from the linking file's folder
                cited = m.group(1).rstrip(".,;:-")  # the sentence's punctuation, not the path's
                if not cited_path_exists(root, cited, m.group(2)):
                    stale.append(f"{rel}:{lineno}: {cited}{m.group(2)}")
    return sorted(set(stale), key=lambda s: (s.split(":")[0], int(s.split(":")[1]), s))


def test_every_cited_path_exists():
    assert len(citing_files(ROOT)) > 100  # the files were found
    stale = stale_citations(ROOT)
    assert not stale, ("paths cited in comments, docstrings and docs that the checkout lacks (fix the "
                       "citation; a path made at run time belongs in NOT_IN_A_CHECKOUT):\n" + "\n".join(stale))


def test_the_citation_check_finds_stale_paths(tmp_path):
    write_tree(tmp_path, {
        "pkg/__init__.py": '''"""See pkg/gone.py and pkg/mod.py."""\nX = "pkg/made_up.py"  # pkg/also_gone.py\n''',
        "pkg/mod.py": "def test_here():\n    pass\n",
        "README.md": "\n".join([
            "`pkg/mod.py::test_here`, `pkg/mod.py::test_gone`, pkg/mod.py:test_here, pkg/mod.py:Gone.",
            "pkg/*.py, pkg/{mod,__init__}.py, pkg/{mod,nope}.py, pkg/*.txt; see pkg/, or pkg/mod.py.",
            "models/demo, var/intake/, out/x, https://example.org/pkg/gone.py, /abs/pkg/gone.py, ~/pkg/gone",
            "[ok](pkg/mod.py), [ok](docs/other.md#part), [gone](docs/gone.md), [web](https://example.org/x)",
        ]),
        "docs/other.md": "[up](../README.md) [gone](../pkg/gone.py) Makefile",
    })
    assert stale_citations(tmp_path, py_folders=("pkg",)) == [
        "README.md:1: pkg/mod.py::test_gone",
        "README.md:1: pkg/mod.py:Gone",
        "README.md:2: pkg/*.txt",
        "README.md:2: pkg/{mod,nope}.py",
        "README.md:4: link (docs/gone.md)",
        "docs/other.md:1: link (../pkg/gone.py)",
        "pkg/__init__.py:1: pkg/gone.py",
        "pkg/__init__.py:2: pkg/also_gone.py",
    ]
