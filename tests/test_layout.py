"""The layout is the diagram: `ls runner/` names the stages of the data flow, in DESIGN.md's
order, and a stage imports only the stages before it.

One deliberate crossing: the store calls the scheduling stage's pure rules inside its
transactions (the rules are code, the database is storage), and those rules import nothing
but the core.
"""

import ast
from pathlib import Path

RUNNER = Path(__file__).parent.parent / "runner"
# Earlier first. `core` is the vocabulary every stage speaks (models, settings, statuses, the
# masker, links, git mirrors); `app` wires the stages; `cli` starts it.
ORDER = [
    "core",
    "store",
    "intake",
    "scheduling",
    "executor",
    "reporting",
    "registrations",
    "api",
    "web",
    "app",
    "cli",
]
# The HTTP surfaces sit side by side: neither imports the other.
SIDE_BY_SIDE = {("api", "web"), ("web", "api")}
ALLOWED_CROSSINGS = {("store", "runner.scheduling.rules")}


def imports_of(path: Path) -> set[str]:
    """What `path` imports of runner, each name qualified (`from runner.x import y`: runner.x.y)."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runner"):
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("runner")}
    return found


def stage_of(path: Path) -> str:
    return path.relative_to(RUNNER).parts[0].removesuffix(".py")


def test_the_packages_are_the_stages_of_the_data_flow() -> None:
    listed = {p.name.removesuffix(".py") for p in RUNNER.iterdir() if not p.name.startswith("_")}
    assert listed - {"py.typed"} == set(ORDER)


def test_a_stage_imports_only_the_stages_before_it() -> None:
    wrong = []
    for path in RUNNER.rglob("*.py"):
        stage = stage_of(path)
        if stage == "__init__":
            continue
        for module in imports_of(path):
            target = module.split(".")[1] if "." in module else ""
            crossing = any(
                stage == allowed_stage and module.startswith(allowed)
                for allowed_stage, allowed in ALLOWED_CROSSINGS
            )
            if not target or target == stage or crossing:
                continue
            later = ORDER.index(target) > ORDER.index(stage)
            if later or (stage, target) in SIDE_BY_SIDE:
                wrong.append(f"{path.relative_to(RUNNER)} imports {module}")
    assert wrong == []


def test_the_rules_the_store_calls_import_nothing_but_the_core() -> None:
    imported = imports_of(RUNNER / "scheduling" / "rules.py")
    assert imported and all(module.startswith("runner.core.") for module in imported)


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(RUNNER)): lines
        for path in RUNNER.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 400
    }
    assert long == {}
