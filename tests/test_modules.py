"""The package's modules import each other without a cycle (imports inside functions count: a
cycle hidden in a function is still a cycle of concerns)."""
from __future__ import annotations

import ast
from pathlib import Path

import higress_init

PACKAGE = Path(higress_init.__file__).parent


def _imports() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__main__"}
    graph = {}
    for name in modules:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("higress_init"):
                parts = node.module.split(".")
                deps.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        graph[name] = {d for d in deps if d in modules and d != name and d != "__init__"}
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
    assert "artifacts" in graph["phases"]  # imported inside Context.decisions only
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle():
    cycles = _cycles(_imports())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layout_imports_nothing_and_names_every_file_a_run_writes(tmp_path, fast_env):
    from conftest import run_cli
    from higress_init import layout
    tree = ast.parse((PACKAGE / "layout.py").read_text())
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
