"""The package's layout: one sub-package per step, and no module imports one that imports it back."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "coursekit"
STEPS = ("exercise", "nbgrader_plugins", "sandbox", "olat", "engine", "reports", "ta_grading")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Modules of the kit that `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    # A package's __init__ is what `import coursekit.x` runs, not an edge to every submodule.
    return {name: imports_of(path, modules) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_each_step_is_a_sub_package_of_small_modules():
    for step in STEPS:
        assert (PACKAGE / step / "__init__.py").exists(), step
    too_long = {module_name(path): len(path.read_text().splitlines())
                for path in PACKAGE.rglob("*.py") if len(path.read_text().splitlines()) > 800}
    assert too_long == {}


def top_level_imports(path: Path) -> set[str]:
    """Every module `path` imports absolutely (level 0), at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_wire_format_and_its_reader_import_no_torch():
    for path in (PACKAGE / "protocol.py", PACKAGE / "recorder" / "wire.py"):
        assert not any(name.split(".")[0] == "torch" for name in top_level_imports(path)), path
    assert import_graph()["coursekit.protocol"] == {"coursekit.recorder.wire"}


def test_the_kernel_side_package_stands_alone():
    """coursekit.recorder is all the sandbox shows of the kit: it must import nothing else of it."""
    for path in (PACKAGE / "recorder").glob("*.py"):
        assert not any(name.split(".")[0] == "coursekit" for name in top_level_imports(path)), path
