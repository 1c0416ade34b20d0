"""The rules of the house (docs/architecture.md), checked on the source.

Each rule here is one the code review would otherwise have to remember:

1. imports run downward only, through the layers below, with no cycles;
2. only jailpy/linux/ talks to libc by hand (ctypes);
3. names are nouns: no module named for its layer (`*_rules`, `*_info`,
   `*_opts`, `cli_*`): the folder is the layer, the file is the feature;
4. the hot path is a budget: the exact set of jailpy modules a warm
   `jailpy run -- true` imports, and the heavy modules it must never import.

The source is read with ast, never imported, so a violation is reported as
the file and line that commits it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "jailpy"

#: Layer of each top-level part of the package, highest first. A module may
#: import from its own part and from parts of a strictly lower rank; runtime
#: and profile share a rank and must not import each other.
RANKS = {
    "__main__": 9, "cli": 8, "report": 7, "client": 6, "api": 5,
    "runtime": 4, "profile": 4,
    "plan": 3,
    "policy": 2.5, "linux": 2,
    "errors": 1, "record": 1, "usercache": 1,
}

#: The package face: `jailpy.Sandbox` etc. are resolved lazily by __getattr__,
#: the one sanctioned upward reference. It imports nothing when it is loaded,
#: so its constants (__version__) may be read from anywhere without a cycle.
FACE = "jailpy"
FACE_CONSTANTS = ("__version__",)

#: Modules `jailpy run -- true` must never import (each costs milliseconds
#: of start-up, several of them tens).
HEAVY = ("click", "rich", "json", "typing", "re", "dataclasses", "subprocess", "socket",
         "hashlib", "pyseccomp")

#: Every jailpy module a warm `jailpy run -- true` imports in the default
#: profile. A change to this set is a change to start-up cost: make it on
#: purpose, with bench/startup.py before and after (docs/benchmarks.md).
HOT_PATH = {
    "jailpy", "jailpy.errors", "jailpy.record", "jailpy.usercache", "jailpy.policy",
    "jailpy.api",
    "jailpy.cli", "jailpy.cli.options", "jailpy.cli.run",
    "jailpy.profile", "jailpy.profile.loader", "jailpy.profile.merge", "jailpy.profile.cache",
    "jailpy.profile.schema", "jailpy.profile.values", "jailpy.profile.expand",
    "jailpy.profile.convert", "jailpy.profile.security", "jailpy.profile.network",
    "jailpy.plan", "jailpy.plan.landlock", "jailpy.plan.seccomp",
    "jailpy.linux", "jailpy.linux.syscalls", "jailpy.linux.landlock",
    "jailpy.linux.capabilities",
    "jailpy.runtime", "jailpy.runtime.launcher", "jailpy.runtime.channel",
    "jailpy.runtime.init", "jailpy.runtime.mounts", "jailpy.runtime.userns",
    "jailpy.runtime.target", "jailpy.runtime.caps", "jailpy.runtime.landlock",
    "jailpy.runtime.seccomp",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text(), str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))}


SOURCES = _sources()


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
        and node.test.id == "TYPE_CHECKING"


def _imports(module: str, tree: ast.Module, path: Path):
    """(line, imported jailpy module) for every runtime import, lazy ones included.

    Imports under `if TYPE_CHECKING:` never run and are left out. A
    `from PKG import name` where PKG.name is a module counts as importing it."""
    is_package = path.name == "__init__.py"
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if _is_type_checking_block(node):
            skipped.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jailpy":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base.pop()
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "jailpy":
                target = node.module
            else:
                continue
            for alias in node.names:
                if target == FACE and alias.name in FACE_CONSTANTS:
                    continue
                candidate = f"{target}.{alias.name}"
                yield node.lineno, candidate if candidate in SOURCES else target


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to ("cli", "api", ...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FACE


def _import_graph() -> dict[str, set[str]]:
    return {module: {target for _, target in _imports(module, tree, path)} - {module}
            for module, (path, tree) in SOURCES.items()}


def test_every_part_has_a_rank():
    assert {_part(m) for m in SOURCES} - {FACE} <= set(RANKS), \
        "a new top-level module or folder needs its place in RANKS (and docs/architecture.md)"


def test_imports_run_downward():
    upward = []
    for module, (path, tree) in SOURCES.items():
        source = _part(module)
        if source == FACE:
            continue  # the package face resolves the public API lazily
        for line, target in _imports(module, tree, path):
            destination = _part(target)
            if destination == source:
                continue
            if destination == FACE or RANKS[destination] >= RANKS[source]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: "
                              f"{source} imports {target}")
    assert not upward, "imports that do not run downward:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = _import_graph()
    cycles = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):]
                start = cycle.index(min(cycle))
                cycles.add(" -> ".join(cycle[start:] + cycle[:start] + [min(cycle)]))
            elif target in graph and target not in state:
                visit(target, stack)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    # A package importing its own submodules (the face, report.features()) is
    # the package's map, not a cycle between features.
    real = [c for c in cycles if not all(m == c.split(" -> ")[0].rsplit(".", 1)[0]
                                         or m.startswith(c.split(" -> ")[0] + ".")
                                         for m in c.split(" -> ")[1:-1])]
    assert not real, "import cycles:\n" + "\n".join(sorted(real))


def test_only_linux_uses_ctypes():
    offenders = []
    for module, (path, tree) in SOURCES.items():
        if module.startswith("jailpy.linux"):
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n.split(".")[0] in ("ctypes", "_ctypes") for n in names):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not offenders, "ctypes outside jailpy/linux/: " + ", ".join(offenders)


LAYER_WORDS = ("_rules", "_info", "_opts", "_options", "_spec")


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_names_are_nouns_not_layers(module):
    leaf = module.rsplit(".", 1)[-1]
    assert not leaf.startswith("cli_") and not leaf.endswith(LAYER_WORDS), \
        f"{module}: the folder says the layer; name the file for its feature"
    path, tree = SOURCES[module]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assert not node.name.lstrip("_").startswith("cli_"), \
                f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.name}"


@pytest.mark.integration
def test_hot_path_imports(jailpy):
    """A warm `jailpy run -- true` imports exactly HOT_PATH and nothing in HEAVY."""
    python = str(Path(jailpy.binary).parent / "python")
    argv = [python, "-X", "importtime", jailpy.binary, "run", "--", "true"]
    assert jailpy.raw(argv).returncode == 0  # fills the parse and seccomp caches
    result = jailpy.raw(argv)
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    ours = {name for name in imported if name.split(".")[0] == "jailpy"}
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY)
    assert not heavy, f"`jailpy run -- true` imports {heavy}"
    assert ours == HOT_PATH, (f"hot path changed: new {sorted(ours - HOT_PATH)}, "
                              f"gone {sorted(HOT_PATH - ours)}")
