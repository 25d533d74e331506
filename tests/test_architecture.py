"""The package's shape, enforced (issue 26): every import goes in a direction its unit's docstring
allows, the allowed directions form layers (no cycle between units), and no module imports
itself back through others (no cycle between modules, imports inside functions included).

A unit is a subpackage of diffguide (``guidance.methods`` is a unit of its own; ``pipeline.stages``
belongs to ``pipeline``) or one of the top-level modules ``data`` and ``registry``. Its
``__init__`` (or module) docstring ends with ``May import: diffguide.a, diffguide.b.``: the units
it may use besides itself. docs/architecture.md's table of them must say the same."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "diffguide"
DOC = Path(__file__).resolve().parents[1] / "docs/architecture.md"
ALLOWED_LINE = re.compile(r"^May import: (.+?)\.?\s*\Z", re.M | re.S)  # the docstring's last paragraph
UNITS = ("base", "data", "registry", "diffusion", "models", "evaluation", "guidance", "guidance.methods", "training",
         "exact", "findings", "reports", "pipeline", "cli")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(SRC).with_suffix("").parts)
    return name.removesuffix(".__init__")


def unit_of(module: str) -> str | None:
    """The unit a module belongs to: the longest unit name that prefixes its path in the package
    (None for the package root, whose __version__ every unit may read)."""
    parts = module.split(".")[1:]
    for size in (2, 1):
        candidate = ".".join(parts[:size])
        if len(parts) >= size and candidate in UNITS:
            return candidate
    return None


def unit_source(unit: str) -> Path:
    folder = PACKAGE / unit.replace(".", "/")
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def declared(unit: str) -> set[str]:
    """The units ``unit``'s docstring says it may import."""
    doc = ast.get_docstring(ast.parse(unit_source(unit).read_text())) or ""
    match = ALLOWED_LINE.search(doc)
    assert match, f"{unit_source(unit)}: its docstring needs a line 'May import: diffguide.<unit>, ...'"
    text = " ".join(match.group(1).split())
    if text.startswith("nothing of diffguide"):
        return set()
    return {name.strip().removeprefix("diffguide.") for name in text.split(",")}


def imports(path: Path, modules: set[str]) -> set[str]:
    """The diffguide modules ``path`` imports, wherever in the file (a name imported from a package
    that is one of its submodules counts as that submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "diffguide"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "diffguide":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(paths)) - {name} for name, path in paths.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of more than one node, or of one node
    with an edge to itself (the cycles of ``graph``)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

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
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_strongly_connected_finds_cycles_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": set(), "f": {"f"}}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["f"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_every_module_belongs_to_a_unit():
    strays = [name for name in import_graph() if name != "diffguide" and unit_of(name) is None]
    assert strays == [], f"modules outside every unit (add them to a subpackage, or the unit to UNITS): {strays}"


@pytest.mark.parametrize("unit", UNITS)
def test_imports_go_only_in_the_declared_directions(unit):
    allowed = declared(unit) | {unit}
    wrong = sorted(f"{module} imports {target}" for module, targets in import_graph().items()
                   if unit_of(module) == unit for target in targets
                   if unit_of(target) is not None and unit_of(target) not in allowed)
    assert wrong == [], f"{unit} may import only {sorted(allowed)} ({unit_source(unit)}):\n" + "\n".join(wrong)


def test_declared_directions_name_real_units_and_form_layers():
    graph = {unit: declared(unit) for unit in UNITS}
    unknown = {unit: sorted(targets - set(UNITS)) for unit, targets in graph.items() if targets - set(UNITS)}
    assert unknown == {}
    assert strongly_connected(graph) == []


def test_guidance_never_imports_its_methods():
    """The wrapper contract is what methods build on; a method is added without touching it."""
    assert "guidance.methods" not in declared("guidance")


def test_no_module_imports_itself_back():
    assert strongly_connected(import_graph()) == []


def test_architecture_doc_lists_the_declared_directions():
    """docs/architecture.md's table (``| `unit` | may import |``) says what the docstrings say."""
    rows = re.findall(r"^\| `([\w.]+)` \| ([^|]*) \|", DOC.read_text(), flags=re.M)
    documented = {unit: {name.strip(" `").removeprefix("diffguide.") for name in text.split(",")} - {"", "nothing"}
                  for unit, text in rows}
    assert documented == {unit: declared(unit) for unit in UNITS}
