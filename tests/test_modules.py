"""The package's modules import each other without a cycle (imports inside functions count: a
cycle hidden in a function is still a cycle of concerns)."""
from __future__ import annotations

import ast
from pathlib import Path

import higress_init

PACKAGE = Path(higress_init.__file__).parent


def _module_names() -> dict[str, Path]:
    """Every module by dotted name under the package ("pki.artifacts"); a package by its folder."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports() -> dict[str, set[str]]:
    """module -> the package's modules it imports (absolute imports, in functions too)."""
    modules = _module_names()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{name}: a relative import (the package imports absolutely)")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("higress_init"):
                base = node.module.removeprefix("higress_init").lstrip(".")
                for alias in node.names:
                    full = f"{base}.{alias.name}".lstrip(".")
                    deps.add(full if full in modules else base)
        graph[name] = {d for d in deps if d in modules and d != name and d != ""}
    return graph


def _cycles(graph) -> list[list[str]]:
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                found.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_walk_sees_imports_inside_functions():
    graph = _imports()
    assert "pki.artifacts" in graph["run.phases"]  # imported inside Context.decisions only
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    cycles = _cycles(_imports())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layout_imports_nothing_and_names_every_file_a_run_writes(tmp_path, fast_env):
    from conftest import run_cli
    from higress_init.volume import layout
    tree = ast.parse((PACKAGE / "volume" / "layout.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    paths = {v[0] if isinstance(v, tuple) else v for k, v in vars(layout).items() if k.isupper()}
    named = {p for p in paths if "{}" not in p}
    templates = [p.split("{}") for p in paths if "{}" in p]
    volumes = tmp_path / "volumes"
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    run_cli("rotate", "root", volumes=volumes, env=fast_env, check=True)  # the overlap's files too
    for path in volumes.rglob("*"):
        rel = str(path.relative_to(volumes))
        if rel.startswith((layout.FILE_STORE + "/", layout.BACKUP_DIR + "/")) or rel in named:
            continue
        if path.is_dir() and any(p.startswith(rel + "/") for p in named):
            continue
        assert any(rel.startswith(a) and rel.endswith(b) for a, b in templates), f"{rel} is not in layout.py"
