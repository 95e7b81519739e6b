"""The house rules of the package layout: data flows jaxgym -> render -> policy, and a game
is known only to its own file."""

import ast
import pathlib

import jaxgym

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_packages(path: pathlib.Path) -> set[str]:
    """The top-level names of every module `path` imports (anywhere in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_engine_imports_neither_the_renderer_nor_the_policy():
    edge = {"play.py"}  # the command that draws a game for a person
    for path in sorted((ROOT / "jaxgym").rglob("*.py")):
        if path.name in edge or "compat" in path.parts:  # bridges layered above render
            continue
        assert not imported_packages(path) & {"render", "policy"}, path.relative_to(ROOT)


def test_the_renderer_does_not_import_the_policy():
    for path in sorted((ROOT / "render").rglob("*.py")):
        assert "policy" not in imported_packages(path), path.relative_to(ROOT)


def test_no_module_outside_a_games_file_asks_for_it_by_name():
    names = set(jaxgym.list_games())
    for package in ("jaxgym", "render", "policy"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.parent.name == "games" or path.name in ("testing.py", "play.py"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare):  # env.name == "swap", "2048" in names
                    literals = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)}
                    assert not literals & names, f"{path.relative_to(ROOT)}:{node.lineno}"
                if isinstance(node, ast.Dict):  # {"swap": ...} tables
                    keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                    assert not keys & names, f"{path.relative_to(ROOT)}:{node.lineno}"


def policy_imports(path: pathlib.Path) -> tuple[set[str], set[str]]:
    """(policy modules imported at module level, policy modules imported inside functions)."""
    tree = ast.parse(path.read_text())
    top, inner = set(), set()

    def named(node) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name.split(".")[1] for a in node.names if a.name.startswith("policy.")}
        if isinstance(node, ast.ImportFrom) and node.module == "policy":
            return {a.name for a in node.names}
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("policy."):
            return {node.module.split(".")[1]}
        return set()

    for node in tree.body:
        top |= named(node)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inside in ast.walk(node):
                inner |= named(inside)
    return top, inner


def test_policy_modules_import_each_other_without_cycles_or_late_imports():
    graph = {}
    for path in sorted((ROOT / "policy").glob("*.py")):
        top, inner = policy_imports(path)
        assert not inner, f"policy/{path.name} imports {sorted(inner)} inside a function"
        graph[path.stem] = top - {path.stem}
    assert "evaluate" not in set().union(*graph.values()), "policy.evaluate is only the CLI"

    def visit(module, trail):
        assert module not in trail, "import cycle: " + " -> ".join(trail + [module])
        for imported in graph.get(module, ()):
            visit(imported, trail + [module])

    for module in graph:
        visit(module, [])
