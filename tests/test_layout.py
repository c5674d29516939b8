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


MAX_FUNCTION_LINES = 100
# Being split on other branches (issue #16); remove each entry as it is, and the test fails if one
# is left here after its function got short.
BEING_SPLIT: set[str] = set()


def long_functions() -> set[str]:
    """``path name`` of every function longer than MAX_FUNCTION_LINES."""
    out = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    out.add(f"{path.relative_to(PACKAGE).as_posix()} {node.name}")
    return out


def test_no_function_is_over_100_lines():
    assert long_functions() == BEING_SPLIT


def _flag_strings(path: Path) -> list[str]:
    """String constants in ``raise`` statements that name a command-line flag (``--density``)."""
    import re

    flag = re.compile(r"(^|[\s(`'\"])--[a-z]")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise):
            found += [f"{path.relative_to(PACKAGE)}:{c.lineno} {c.value!r}" for c in ast.walk(node)
                      if isinstance(c, ast.Constant) and isinstance(c.value, str) and flag.search(c.value)]
    return found


def test_library_errors_name_options_not_flags():
    """Only commands/ (and the CLI) know flags; the library raises OptionError with option names."""
    library = [p for p in sorted(PACKAGE.rglob("*.py"))
               if p.relative_to(PACKAGE).parts[0] not in ("commands", "cli.py", "__main__.py")]
    assert [s for p in library for s in _flag_strings(p)] == []


def test_an_option_error_spells_options_as_the_library_or_as_flags():
    from simulator.base.errors import OptionError
    from simulator.commands.options import flag_of

    err = OptionError("input_shape", "needed; e.g. {input_shape} 3,8,8 or {format} dense", "x")
    assert str(err) == "options: input_shape x: needed; e.g. input_shape 3,8,8 or format dense"
    assert err.spelled(flag_of) == "command line: --input-shape x: needed; e.g. --input-shape 3,8,8 or --format dense"
