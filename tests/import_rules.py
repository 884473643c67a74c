"""An AST checker for the import rules of the `cuas_node` package (the rules are the table in
tests/test_architecture.py; docs/architecture.md, "Layers and import rules", explains them).

Why not import-linter or grimp: they build the import graph by walking one package folder, and
`cuas_node` is assembled from three folders by setuptools' package-dir. This module maps files to
module names with that same mapping, read from pyproject.toml, so it sees exactly the modules that
install. It collects every import statement (module level, inside functions, under
`if TYPE_CHECKING:`; relative imports resolved), `importlib.import_module("…")`/`__import__("…")`
calls with a literal name, and literal strings naming a module by its folder (`"node.runtime"`, as
in `mock.patch` targets or `python -m node.cli`); those strings only ever count as forbidden
targets, never as imports to allow-list.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PACKAGE = "cuas_node"
# Folders whose code is not in the package but still must import it by its name.
OTHER_ROOTS = ("tests", "benchmarks", "fuzz", "scripts")
STDLIB = frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
class Contract:
    """One import rule. Patterns: `a.b` is that module, `a.b.*` is `a.b` and everything below it,
    `a.b*` is every module whose name starts with `a.b`, `*` is every scanned module."""

    key: str  # short id (test ids, docs)
    name: str
    why: str  # one line
    sources: tuple[str, ...]  # modules the rule applies to
    exclude: tuple[str, ...] = ()  # ... except these
    allowed: tuple[str, ...] | None = None  # cuas_node modules they may import (None: any not forbidden)
    forbidden: tuple[str, ...] = ()  # modules they must not import (any kind)
    third_party: tuple[str, ...] | None = None  # non-stdlib top-level names allowed (None: any)
    extra_allowed: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (source pattern, more allowed)
    indirect: bool = False  # forbidden also through other modules (a -> b -> forbidden)
    must_not_load: tuple[str, ...] = ()  # top-level modules an import must not load (dynamic check)
    kind: Literal["imports", "private-names", "module-size"] = "imports"
    max_lines: int = 0  # for kind="module-size"


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the repository, POSIX
    module: str
    is_package: bool
    tree: ast.Module
    n_lines: int

    @property
    def package(self) -> str:
        """The package a module belongs to: its parent, or itself for an `__init__`."""
        return self.module if self.is_package else self.module.rpartition(".")[0]


@dataclass(frozen=True)
class Import:
    source: SourceFile
    line: int
    target: str  # absolute module name
    name: str | None = None  # `from target import name`, when name is not a module itself
    context: str = ""  # "in function", "under TYPE_CHECKING", "dynamic import", "string reference"


@dataclass(frozen=True)
class Violation:
    contract: Contract
    path: str
    line: int
    importer: str
    target: str
    detail: str

    def __str__(self) -> str:
        what = self.importer if self.target == self.importer else f"{self.importer} -> {self.target}"
        rule = f'"{self.contract.name}": {self.contract.why}'
        return f"{self.path}:{self.line}: {what} ({self.detail}); breaks {rule}"


@dataclass
class Project:
    repo: Path
    files: dict[str, SourceFile]  # by module name
    imports: list[Import]

    def owner(self, parts: Sequence[str]) -> SourceFile | None:
        """The scanned module that is the longest prefix of a dotted name."""
        for end in range(len(parts), 0, -1):
            found = self.files.get(".".join(parts[:end]))
            if found is not None:
                return found
        return None


def matches(name: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return name == pattern[:-2] or name.startswith(pattern[:-1])
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _any(name: str, patterns: Sequence[str]) -> bool:
    return any(matches(name, p) for p in patterns)


def applies(contract: Contract, module: str) -> bool:
    return _any(module, contract.sources) and not _any(module, contract.exclude)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# --- Files to modules -------------------------------------------------------------------------------


def package_dirs(repo: Path) -> dict[str, str]:
    """`{package: folder}` from pyproject.toml, e.g. `{"cuas_node.drivers": "drivers"}`."""
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    return dict(config["tool"]["setuptools"]["package-dir"])


def _python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        if not any(p.startswith(".") or p == "__pycache__" for p in path.relative_to(folder).parts):
            yield path


def _source(repo: Path, path: Path, package: str, folder: Path) -> SourceFile:
    rel = path.relative_to(folder).with_suffix("")
    is_package = rel.name == "__init__"
    parts = [package, *rel.parts[:-1]] if is_package else [package, *rel.parts]
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    module = ".".join(p for p in parts if p)
    return SourceFile(path.relative_to(repo).as_posix(), module, is_package, tree, len(text.splitlines()))


def load_project(repo: Path) -> Project:
    dirs = package_dirs(repo)
    files: dict[str, SourceFile] = {}
    # Deepest folder first, so a folder mapped inside another one's tree is not read twice.
    by_depth = sorted(dirs.items(), key=lambda item: -len(Path(item[1]).parts))
    seen: set[Path] = set()
    for package, folder in by_depth:
        for path in _python_files(repo / folder):
            if path not in seen:
                seen.add(path)
                src = _source(repo, path, package, repo / folder)
                files[src.module] = src
    for root in OTHER_ROOTS:
        if (repo / root).is_dir():
            for path in _python_files(repo / root):
                src = _source(repo, path, root, repo / root)
                files[src.module] = src
    project = Project(repo, files, [])
    folders = {f: p for p, f in dirs.items() if len(Path(f).parts) == 1}
    for src in files.values():
        project.imports.extend(_Collector(src, project, folders).collect())
    project.imports.extend(_shell_references(repo, folders))
    return project


# --- Collecting imports -----------------------------------------------------------------------------


def resolve_from(src: SourceFile, module: str | None, level: int) -> str | None:
    """The absolute module of `from <level dots><module> import …` in `src`."""
    if level == 0:
        return module
    base = src.package.split(".")
    if level - 1 >= len(base):
        return None
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def _folder_reference(text: str, project: Project, folders: dict[str, str]) -> str | None:
    """`"node.runtime.Foo"` -> `"node.runtime"` when node/runtime.py exists (a folder-name import)."""
    if not _DOTTED.fullmatch(text):
        return None
    parts = text.split(".")
    if parts[0] not in folders:
        return None
    for end in range(len(parts), 1, -1):
        if ".".join([folders[parts[0]], *parts[1:end]]) in project.files:
            return ".".join(parts[:end])
    return None


class _Collector(ast.NodeVisitor):
    def __init__(self, src: SourceFile, project: Project, folders: dict[str, str]) -> None:
        self.src, self.project, self.folders = src, project, folders
        self.context: list[str] = []
        self.found: list[Import] = []
        self.docstrings = _docstrings(src.tree)

    def collect(self) -> list[Import]:
        self.visit(self.src.tree)
        return self.found

    def _add(self, node: ast.AST, target: str, name: str | None = None, context: str = "") -> None:
        context = context or ", ".join(dict.fromkeys(self.context))
        self.found.append(Import(self.src, getattr(node, "lineno", 1), target, name, context))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.context.append("in function")
        self.generic_visit(node)
        self.context.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.context.append("under TYPE_CHECKING")
        for stmt in node.body:
            self.visit(stmt)
        self.context.pop()
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = resolve_from(self.src, node.module, node.level)
        if base is None:
            self._add(node, "." * node.level + (node.module or ""), None, "unresolvable relative import")
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in self.project.files:
                self._add(node, submodule)
            else:
                self._add(node, base, alias.name)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._add(node, arg.value, None, "dynamic import")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and id(node) not in self.docstrings:
            target = _folder_reference(node.value, self.project, self.folders)
            if target is not None:
                self._add(node, target, None, "string reference")


def _shell_references(repo: Path, folders: dict[str, str]) -> Iterator[Import]:
    """`python -m node.cli` in the shell scripts."""
    pattern = re.compile(rf"-m\s+((?:{'|'.join(map(re.escape, folders))})(?:\.\w+)*)\b")
    for path in sorted((repo / "scripts").glob("*.sh")) if (repo / "scripts").is_dir() else []:
        rel = path.relative_to(repo).as_posix()
        src = SourceFile(rel, "scripts." + path.stem, False, ast.Module([], []), 0)
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.lstrip().startswith("#"):
                for match in pattern.finditer(line):
                    yield Import(src, number, match.group(1), None, "string reference")


# --- Checking ---------------------------------------------------------------------------------------


def check(contract: Contract, project: Project) -> list[Violation]:
    if contract.kind == "module-size":
        found = [
            Violation(
                contract, f.path, 1, f.module, f.module, f"{f.n_lines} lines, limit {contract.max_lines}"
            )
            for f in project.files.values()
            if applies(contract, f.module) and f.n_lines > contract.max_lines
        ]
    elif contract.kind == "private-names":
        classes = _Classes(project)
        sources = [src for src in project.files.values() if applies(contract, src.module)]
        found = [v for src in sources for v in _PrivateUses(contract, classes, src).run()]
    else:
        found = list(_import_violations(contract, project))
        if contract.indirect:
            found += _indirect_violations(contract, project)
    unique = {(v.path, v.line, v.target, v.detail): v for v in found}
    return sorted(unique.values(), key=lambda v: (v.path, v.line, v.target))


def _import_violations(contract: Contract, project: Project) -> Iterator[Violation]:
    for imp in project.imports:
        src = imp.source
        if not applies(contract, src.module):
            continue

        def violation(reason: str, imp: Import = imp) -> Violation:
            detail = f"{imp.context}; {reason}" if imp.context else reason
            return Violation(contract, imp.source.path, imp.line, imp.source.module, imp.target, detail)

        if _any(imp.target, contract.forbidden):
            yield violation("forbidden")
            continue
        if imp.context in ("string reference", "unresolvable relative import"):
            continue
        top = imp.target.partition(".")[0]
        if top == PACKAGE:
            if contract.allowed is None:
                continue
            allowed = contract.allowed + tuple(
                t for pattern, more in contract.extra_allowed if matches(src.module, pattern) for t in more
            )
            if not _any(imp.target, allowed):
                yield violation("not allowed; may import only " + ", ".join(allowed))
        elif top not in STDLIB and contract.third_party is not None and top not in contract.third_party:
            yield violation("third-party; may import only stdlib, " + ", ".join(contract.third_party))


def _indirect_violations(contract: Contract, project: Project) -> Iterator[Violation]:
    """Forbidden modules reached through modules outside the contract, reported at the first hop.
    (A hop through another source of the contract is that module's own, direct violation.)"""
    graph: dict[str, list[str]] = {}
    for imp in project.imports:
        if imp.target.partition(".")[0] == PACKAGE and imp.context not in (
            "string reference",
            "dynamic import",
        ):
            graph.setdefault(imp.source.module, []).append(imp.target)
    for first in project.imports:
        start, hop = first.source.module, first.target
        if hop not in graph or not applies(contract, start) or applies(contract, hop):
            continue
        if first.context in ("string reference", "dynamic import") or _any(hop, contract.forbidden):
            continue
        via, queue = {hop: [hop]}, [hop]
        while queue:
            module = queue.pop(0)
            for target in graph.get(module, []):
                if target in via or applies(contract, target):
                    continue
                via[target] = [*via[module], target]
                if _any(target, contract.forbidden):
                    chain = " -> ".join(via[module])
                    yield Violation(
                        contract, first.source.path, first.line, start, target, f"forbidden, via {chain}"
                    )
                else:
                    queue.append(target)


def missing_modules(contract: Contract, project: Project) -> list[str]:
    """Exact module names in a contract that name no scanned module (a stale rule checks nothing)."""
    names = [*contract.sources, *contract.exclude, *(contract.allowed or ()), *contract.forbidden]
    names += [p for _, more in contract.extra_allowed for p in more]
    return [n for n in names if "*" not in n and n not in project.files]


def exact_sources(contract: Contract) -> list[str]:
    return [s for s in contract.sources if "*" not in s]


# --- Private names across packages -----------------------------------------------------------------
#
# Three ways in: `from m import _x` (or a private module) from a module of another package;
# `X._x` where X is bound by an import (of a module or an object) from another package, resolved
# with Python's scoping (a parameter or assignment of the same name shadows the import); and
# `self._x`/`super()._x` in a class whose base, followed through the bases, comes from another
# package and defines `_x`, when `_x` is defined nowhere in the subclass's module. Not caught:
# privates reached through values whose type is not visible in the syntax (`self.engine._x` after
# `self.engine = Engine()`), and names built at run time (getattr).

Scope = dict[str, str | None]  # name -> dotted origin of an imported name; None: a local binding
_NEW_SCOPE = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _import_origins(node: ast.Import | ast.ImportFrom, src: SourceFile) -> Iterator[tuple[str, str]]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            top = alias.name.partition(".")[0]
            yield (alias.asname, alias.name) if alias.asname else (top, top)
        return
    base = resolve_from(src, node.module, node.level)
    for alias in node.names:
        if base is not None and alias.name != "*":
            yield alias.asname or alias.name, f"{base}.{alias.name}"


def _params(args: ast.arguments) -> list[str]:
    every = [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]
    return [a.arg for a in every if a is not None]


def _bindings(body: Sequence[ast.AST], src: SourceFile, params: Sequence[str] = ()) -> Scope:
    """The names one scope binds (not descending into nested scopes). Where a name is both
    imported and bound otherwise (`try: import x / except ImportError: x = None`) the import wins."""
    local: Scope = dict.fromkeys(params)
    imported: dict[str, str] = {}
    not_local: set[str] = set()
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            local[node.name] = None
            continue
        if isinstance(node, _NEW_SCOPE):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            imported.update(_import_origins(node, src))
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            local[node.id] = None
        elif isinstance(node, ast.ExceptHandler) and node.name:
            local[node.name] = None
        elif isinstance(node, ast.Global | ast.Nonlocal):
            not_local.update(node.names)
        stack.extend(ast.iter_child_nodes(node))
    scope = {**local, **imported}
    return {k: v for k, v in scope.items() if k not in not_local}


def _chain(node: ast.expr) -> list[str] | None:
    """`a.b().c` -> ["a", "b", "c"] (calls looked through); None unless it starts at a name."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Name):
            return [node.id, *reversed(parts)]
        else:
            return None


def _resolve_base(base: ast.expr, lookup: Callable[[str], str | None]) -> str | None:
    """The dotted origin of a base class expression (`Driver[Fix]` is `Driver`), if imported."""
    parts = _chain(base.value if isinstance(base, ast.Subscript) else base)
    origin = lookup(parts[0]) if parts else None
    return ".".join([origin, *parts[1:]]) if parts and origin else None


def _defined_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def _class_members(cls: ast.ClassDef) -> set[str]:
    """Names a class defines: its body's functions and assignments, and `self.x = …` in methods."""
    members: set[str] = set()
    for stmt in cls.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            members.add(stmt.name)
        elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            members.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    stores = [n for n in ast.walk(cls) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)]
    members.update(n.attr for n in stores if isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))
    return members


class _Classes:
    """Finds classes by dotted name across the scanned modules, following re-exports."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.scopes: dict[str, Scope] = {}

    def scope(self, src: SourceFile) -> Scope:
        if src.module not in self.scopes:
            self.scopes[src.module] = _bindings(src.tree.body, src)
        return self.scopes[src.module]

    def find(self, dotted: str, seen: frozenset[str] = frozenset()) -> tuple[SourceFile, ast.ClassDef] | None:
        parts = dotted.split(".")
        src = self.project.owner(parts)
        if src is None or src.module != ".".join(parts[:-1]) or dotted in seen:
            return None
        for stmt in src.tree.body:
            if isinstance(stmt, ast.ClassDef) and stmt.name == parts[-1]:
                return src, stmt
        origin = self.scope(src).get(parts[-1])
        return self.find(origin, seen | {dotted}) if origin else None

    def foreign_members(self, bases: list[str], home: str) -> dict[str, str]:
        """Members of the base classes (depth first, nearest definition wins) that are defined by a
        class outside package `home`: {member: "module.Class"}."""
        owners: dict[str, tuple[str, str]] = {}
        stack, seen = list(reversed(bases)), set()
        while stack:
            found = self.find(stack.pop())
            if found is None:
                continue
            src, cls = found
            key = f"{src.module}.{cls.name}"
            if key in seen:
                continue
            seen.add(key)
            for member in _class_members(cls):
                owners.setdefault(member, (key, src.package))
            more = [_resolve_base(b, self.scope(src).get) for b in cls.bases]
            stack.extend(reversed([b for b in more if b]))
        return {m: key for m, (key, package) in owners.items() if package != home and is_private(m)}


class _PrivateUses(ast.NodeVisitor):
    def __init__(self, contract: Contract, classes: _Classes, src: SourceFile) -> None:
        self.contract, self.project, self.src = contract, classes.project, src
        self.classes = classes
        self.scopes: list[tuple[str, Scope]] = []
        self.methods: list[tuple[str, dict[str, str]] | None] = []  # (self name, foreign members)
        self.class_members: list[dict[str, str]] = []
        self.defined = _defined_names(src.tree)
        self.found: list[Violation] = []

    def run(self) -> list[Violation]:
        for imp in self.project.imports:
            if imp.source is self.src and imp.context != "string reference":
                name = [imp.name] if imp.name and imp.name != "*" else []
                self._check([*imp.target.split("."), *name], 1, imp.line, "import")
        self._nested("module", self.classes.scope(self.src), None, self.src.tree.body)
        return self.found

    def _check(self, parts: list[str], start: int, line: int, how: str) -> None:
        """Report the first private component from `start` on, when its module is in another package."""
        if parts[0] != PACKAGE:
            return
        for i in range(max(start, 1), len(parts)):
            if is_private(parts[i]):
                owner = self.project.owner(parts[:i])
                module = owner.module if owner else ".".join(parts[:i])
                package = owner.package if owner else ".".join(parts[: i - 1])
                if package != self.src.package:
                    target = ".".join(parts[: i + 1])
                    detail = f"private name of {module}, package {package}; {how}"
                    self.found.append(
                        Violation(self.contract, self.src.path, line, self.src.module, target, detail)
                    )
                return

    def _lookup(self, name: str) -> str | None:
        last = len(self.scopes) - 1
        for i in range(last, -1, -1):
            kind, scope = self.scopes[i]
            if (kind != "class" or i == last) and name in scope:
                return scope[name]
        return None

    def _nested(
        self, kind: str, scope: Scope, method: tuple[str, dict[str, str]] | None, body: Sequence[ast.AST]
    ) -> None:
        self.scopes.append((kind, scope))
        self.methods.append(method)
        for node in body:
            self.visit(node)
        self.scopes.pop()
        self.methods.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, node.args, *([node.returns] if node.returns else [])]:
            self.visit(expr)
        params = _params(node.args)
        static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
        if self.scopes[-1][0] == "class":
            method = (params[0], self.class_members[-1]) if params and not static else None
        else:
            outer = self.methods[-1]
            method = outer if outer and outer[0] not in params else None
        self._nested("function", _bindings(node.body, self.src, params), method, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        self._nested("function", dict.fromkeys(_params(node.args)), self.methods[-1], [node.body])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        bases = [b for b in (_resolve_base(e, self._lookup) for e in node.bases) if b]
        self.class_members.append(self.classes.foreign_members(bases, self.src.package))
        self._nested("class", _bindings(node.body, self.src), None, node.body)
        self.class_members.pop()

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        targets = [n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)]
        children = [*node.generators, *(c for c in ast.iter_child_nodes(node) if c not in node.generators)]
        self._nested("function", dict.fromkeys(targets), self.methods[-1], children)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if is_private(node.attr):
            parts = _chain(node)
            origin = self._lookup(parts[0]) if parts else None
            if parts and origin:
                base = origin.split(".")
                self._check([*base, *parts[1:]], len(base), node.lineno, "attribute of an imported name")
            elif self.methods and self.methods[-1] is not None:
                self._through_self(node, *self.methods[-1])
        self.generic_visit(node)

    def _through_self(self, node: ast.Attribute, self_name: str, foreign: dict[str, str]) -> None:
        value = node.value
        via_self = isinstance(value, ast.Name) and value.id == self_name
        via_super = (
            isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"
        )
        if (via_self or via_super) and node.attr in foreign and node.attr not in self.defined:
            owner = foreign[node.attr]
            detail = f"private member of base class {owner} from another package, through {self_name}"
            target = f"{owner}.{node.attr}"
            self.found.append(
                Violation(self.contract, self.src.path, node.lineno, self.src.module, target, detail)
            )
