"""The package's modules import each other without a cycle (imports inside functions count: a
cycle hidden in a function is still a cycle of concerns)."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import higress_init
from higress_init.volume import layout

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
    tree = ast.parse((PACKAGE / "volume" / "layout.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    paths = _layout_paths(layout, upstream=False)
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


def _string_constants(tree) -> list[ast.Constant]:
    """The string constants of a module, docstrings left out."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]


def test_only_the_store_package_compares_the_storage_kind():
    """Phases ask the store for a capability (store/kinds.py), never which store it is."""
    found = []
    for name, path in _module_names().items():
        if name == "store" or name.startswith("store."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]
                if "config_storage" in names or "kind" in names and any(
                        isinstance(c, ast.Constant) and c.value in ("Nacos", "file store", "nacos", "file")
                        for c in ast.walk(node)):
                    found.append(f"{name}:{node.lineno}")
    assert not found, f"the storage kind compared outside store/: {found}"


def test_the_walk_finds_a_storage_comparison_and_a_volume_path():
    tree = ast.parse('if settings.config_storage == "nacos":\n    open("api/nacos.key")\n')
    assert any(isinstance(n, ast.Compare) for n in ast.walk(tree))
    assert [c.value for c in _string_constants(tree) if _VOLUME_PATH.match(c.value)] == ["api/nacos.key"]


# what a volume path looks like: a path under one of the layout's top folders, or a top folder no
# component shares its name with (a bare "gateway" or "data" is a component or a key, not a path)


def _layout_paths(layout, upstream: bool = True) -> set[str]:
    """Every path the layout names: a path, (path, mode), a group of paths, or (theirs, ours) pairs."""
    def flat(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, tuple):
            for item in value:
                if not isinstance(item, int):
                    yield from flat(item)
    policy = ("FOLDER_POLICY", "PRIVATE_NAMES")   # rules about paths named above, not paths
    return {p for k, v in vars(layout).items() if k.isupper() and k not in policy
            and (upstream or not k.startswith("UPSTREAM")) for p in flat(v)}


_TOP = sorted({p.split("/")[0] for p in _layout_paths(layout)})
_VOLUME_PATH = re.compile(
    rf"^(?:(?:{'|'.join(map(re.escape, _TOP))})(?:/[\w.{{}}-]+)+/?|\.higress-init|backup|pki)$")


def test_only_the_layout_spells_a_volume_path():
    """Every path in the volumes is named in volume/layout.py; other modules use its names (a string
    that is a volume path, a docstring aside, is a path spelled twice)."""
    found = []
    for name, path in _module_names().items():
        if name == "volume.layout":
            continue
        for const in _string_constants(ast.parse(path.read_text())):
            if _VOLUME_PATH.match(const.value):
                found.append(f"{name}:{const.lineno}: {const.value!r}")
    assert not found, "volume paths spelled outside volume/layout.py:\n" + "\n".join(found)


def _top_level_imports(tree, modules) -> tuple[set[str], set[str]]:
    """(third-party top-level names, package modules) a module imports when it is loaded."""
    third, first = set(), set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            third.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("higress_init"):
            base = node.module.removeprefix("higress_init").lstrip(".")
            first.update(f"{base}.{a.name}".lstrip(".") if f"{base}.{a.name}".lstrip(".") in modules else base
                         for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            third.add(node.module.split(".")[0])
    return third - set(sys.stdlib_module_names) - {"__future__"}, first


def test_an_import_inside_a_function_buys_start_up_time():
    """A package module is imported inside a function only when loading it brings a third-party
    library (cryptography, PyJWT, PyYAML, the Nacos SDK): what a warm rerun must not pay for."""
    modules = _module_names()
    trees = {name: ast.parse(path.read_text()) for name, path in modules.items()}
    loads = {name: _top_level_imports(tree, modules) for name, tree in trees.items()}

    def heavy(name, seen=()) -> bool:
        third, first = loads.get(name, (set(), set()))
        return bool(third) or any(heavy(f, (*seen, name)) for f in first if f not in seen and f != name)

    found = []
    for name, tree in trees.items():
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("higress_init"):
                    base = node.module.removeprefix("higress_init").lstrip(".")
                    for alias in node.names:
                        target = f"{base}.{alias.name}".lstrip(".")
                        target = target if target in modules else base
                        if target in modules and not heavy(target):
                            found.append(f"{name}:{node.lineno}: {target}")
    assert not found, "imported inside a function, though loading it costs nothing:\n" + "\n".join(found)
