"""Imports flow one way, lazy ones too: each floor imports only the floors below it.

    cli, python -m synk8s          the top: may import every floor
    pipelines
    components                     adapters that call the core
    stages                         stage functions, one folder per study, and the table of their rows
    stagetable                     the stage engine: rows, layout, resume, execution; it knows no stage
    the rest of synk8s             helpers of the stages: reports, realdata, zeroshot, optim, resolve, ...
    storage, datasets, models, shards, seeds, errors, runs      the lower floor
    config, flags                  the config's own: below the registries and the store

A floor never imports a floor above it (kfp only from components up); the lower floor and the
stages' helpers never import the stages nor the engine. No module imports itself back through others
(no import circles, lazy imports included).

Every import counts: at module top, inside a function body (a lazy import), relative, ``from
synk8s import stages`` and ``importlib.import_module("synk8s.stages...")`` with a literal name.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
REGISTRIES = ("synk8s.storage", "synk8s.datasets", "synk8s.models")
LOWER = (*REGISTRIES, *(f"synk8s.{name}" for name in ("shards", "seeds", "errors", "runs")))
# config checks keys, types and ranges; the registry names and store roots are checked by synk8s.resolve
CONFIG = tuple(f"synk8s.{name}" for name in ("config", "config_checks", "config_digest", "config_studies", "flags"))
STAGES = ("synk8s.stages",)
ENGINE = ("synk8s.stagetable",)
COMPONENTS = ("synk8s.components", "components")
PIPELINES = ("synk8s.pipelines", "pipelines")
CLI = ("synk8s.cli", "synk8s.__main__")

# Each module's floor (the first that contains it) and what it must not import, lazily or not.
# "core" is the rest of synk8s: helpers the stages use (report, realdata, zeroshot, optim, ...).
FLOORS = (
    ("config", CONFIG, (*REGISTRIES, *ENGINE, *STAGES, *COMPONENTS, *PIPELINES, *CLI, "kfp")),
    ("lower", LOWER, (*ENGINE, *STAGES, *COMPONENTS, *PIPELINES, *CLI, "kfp")),
    ("engine", ENGINE, (*STAGES, *COMPONENTS, *PIPELINES, *CLI, "kfp")),
    ("stages", STAGES, (*COMPONENTS, *PIPELINES, *CLI, "kfp")),
    ("components", COMPONENTS, (*PIPELINES, *CLI)),
    ("pipelines", PIPELINES, CLI),
    ("cli", CLI, ()),
    ("core", ("synk8s",), (*ENGINE, *STAGES, *COMPONENTS, *PIPELINES, *CLI, "kfp")),
)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def forbidden_for(module: str) -> tuple[str, ...]:
    """What ``module`` must not import: the floors above its own."""
    return next(banned for _, members, banned in FLOORS if any(_within(module, m) for m in members))


def module_name(path: Path, root: Path) -> str:
    """``synk8s/stages/zeroshot/filter.py`` -> ``synk8s.stages.zeroshot.filter``; ``components/x.py`` -> ``synk8s.components.x``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] in ("components", "pipelines"):
        parts.insert(0, "synk8s")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module name ``source`` imports anywhere (function bodies included), resolved to absolute names."""
    package = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names += [base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.append(node.args[0].value)
    return names


def violations(root: Path) -> list[str]:
    """``<file>: <module> imports <name>`` for every import that breaks :data:`FLOORS` under ``root``."""
    found = []
    for folder in ("synk8s", "components", "pipelines"):
        for path in sorted((root / folder).rglob("*.py")):
            module = module_name(path, root)
            forbidden = forbidden_for(module)
            for name in imported_names(path.read_text(), module, path.name == "__init__.py"):
                if any(_within(name, f) for f in forbidden):
                    found.append(f"{path.relative_to(root)}: {module} imports {name}")
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the synk8s modules it imports (a name imported from a module counts as that module)."""
    sources = {}
    for folder in ("synk8s", "components", "pipelines"):
        for path in sorted((root / folder).rglob("*.py")):
            sources[module_name(path, root)] = path
    graph = {}
    for module, path in sources.items():
        targets = set()
        for name in imported_names(path.read_text(), module, path.name == "__init__.py"):
            while name and name not in sources:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected parts of more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_module_imports_itself_back():
    assert len(import_graph(REPO)) > 100
    assert circles(import_graph(REPO)) == []


def test_a_circle_through_a_lazy_import_is_caught(tmp_path):
    (tmp_path / "synk8s" / "stages").mkdir(parents=True)
    (tmp_path / "synk8s" / "stages" / "a.py").write_text("from synk8s.stages.b import f\n")
    (tmp_path / "synk8s" / "stages" / "b.py").write_text("def f():\n    from synk8s.stages import a\n")
    assert circles(import_graph(tmp_path)) == [["synk8s.stages.a", "synk8s.stages.b"]]


def test_the_engine_knows_no_stage(tmp_path):
    (tmp_path / "synk8s" / "stagetable").mkdir(parents=True)
    (tmp_path / "synk8s" / "stagetable" / "table.py").write_text("def f():\n    from synk8s.stages import table\n")
    assert violations(tmp_path) == ["synk8s/stagetable/table.py: synk8s.stagetable.table imports synk8s.stages.table"]


def test_every_floor_imports_only_the_floors_below_it():
    assert len(list((REPO / "synk8s").rglob("*.py"))) > 20
    assert violations(REPO) == []


@pytest.mark.parametrize(
    "body",
    [
        "def lazy():\n    from synk8s.stages.table import TABLE\n    return TABLE\n",
        "def lazy():\n    import synk8s.stages.zeroshot.filter\n",
        "from synk8s import stages\n",
        "def lazy():\n    from .stages import table\n",
        "import importlib\n\ndef lazy():\n    return importlib.import_module('synk8s.stages.synth.generate')\n",
    ],
)
def test_a_lower_floor_module_that_imports_the_stages_is_caught(tmp_path, body):
    offender = tmp_path / "synk8s" / "shards.py"
    offender.parent.mkdir()
    (tmp_path / "synk8s" / "stages").mkdir()
    (tmp_path / "synk8s" / "stages" / "table.py").write_text("from synk8s import shards\n")  # allowed: upward
    offender.write_text('"""A shards module that reaches up a floor."""\n\n' + body)
    (found,) = violations(tmp_path)
    assert found.startswith("synk8s/shards.py: synk8s.shards imports synk8s.stages")


@pytest.mark.parametrize("name", ["datasets", "models", "storage"])
def test_a_config_module_that_looks_up_a_registry_is_caught(tmp_path, name):
    offender = tmp_path / "synk8s" / "config_studies.py"
    offender.parent.mkdir()
    offender.write_text(f"def _known(value):\n    from synk8s import {name}\n\n    return {name}\n")
    assert violations(tmp_path) == [
        f"synk8s/config_studies.py: synk8s.config_studies imports synk8s.{name}"
    ]


def test_components_may_not_reach_the_pipelines_nor_the_core_the_cli(tmp_path):
    for folder, body in (("components", "def f():\n    from synk8s.pipelines import build\n"),
                         ("synk8s/stages", "def f():\n    from synk8s.cli.main import app\n")):  # fmt: skip
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "x.py").write_text(body)
    assert sorted(violations(tmp_path)) == [
        "components/x.py: synk8s.components.x imports synk8s.pipelines.build",
        "synk8s/stages/x.py: synk8s.stages.x imports synk8s.cli.main.app",
    ]


def test_importing_the_core_and_the_stage_table_loads_neither_kfp_nor_torch():
    code = (
        "import sys, synk8s.config, synk8s.storage, synk8s.datasets, synk8s.models, synk8s.errors, "
        "synk8s.stages.table;"
        "bad = [m for m in ('kfp', 'torch', 'diffusers', 'open_clip', 'transformers') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
