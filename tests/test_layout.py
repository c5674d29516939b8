"""The package layout follows the pipeline: each stage imports only the stages before it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "simulator"
# Stages in data-flow order (docs/architecture.md). A module may import its own stage and earlier ones.
STAGES = ["base", "hardware", "model", "compress", "memory", "engine", "pipeline", "output", "studies", "measure",
          "commands", "cli", "__main__"]


def stage_of(parts: tuple[str, ...]) -> str:
    """The stage of a module given its path parts under the package (``('engine', 'core')``)."""
    return parts[0]


def _runtime_nodes(tree: ast.AST):
    """Every node outside ``if TYPE_CHECKING:`` blocks (imports for annotations only do not run)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    yield from ast.walk(tree)


def imported_stages(path: Path) -> set[tuple[str, int]]:
    """(stage, line) of every package module the file imports at run time, lazily or not."""
    own = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(own[: len(own) - node.level])
            target = base + (node.module.split(".") if node.module else [])
            names = [alias.name for alias in node.names] if not node.module else [None]
            for name in names:
                parts = target + ([name] if name else [])
                if parts:
                    found.add((stage_of(tuple(parts)), node.lineno))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for dotted in ([module] if module else [alias.name for alias in node.names]):
                if dotted and dotted.startswith("simulator."):
                    found.add((dotted.split(".")[1], node.lineno))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_earlier_stages(path):
    own = stage_of(path.relative_to(PACKAGE).with_suffix("").parts)
    assert own in STAGES, f"{path}: not in a pipeline stage folder"
    later = sorted((stage, line) for stage, line in imported_stages(path) if STAGES.index(stage) > STAGES.index(own))
    assert not later, f"{path.relative_to(PACKAGE)} ({own}) imports later stages: {later}"


def test_base_imports_nothing_else_from_the_package():
    for path in (PACKAGE / "base").glob("*.py"):
        assert {stage for stage, _ in imported_stages(path)} <= {"base"}, path
