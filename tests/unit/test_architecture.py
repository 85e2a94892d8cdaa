"""Imports flow one way, lazy ones too: each floor imports only the floors below it.

    cli, python -m synk8s          the top: may import every floor
    pipelines
    components                     adapters that call the core
    stages                         stage functions and the stage table
    the rest of synk8s             helpers of the stages: report, realdata, zeroshot, optim, resolve, ...
    storage, datasets, models, shards, seeds, errors, runs      the lower floor
    config, flags                  the config's own: below the registries and the store

A floor never imports a floor above it (kfp only from components up); the lower floor and the
stages' helpers never import the stages.

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
COMPONENTS = ("synk8s.components", "components")
PIPELINES = ("synk8s.pipelines", "pipelines")
CLI = ("synk8s.cli", "synk8s.__main__")

# Each module's floor (the first that contains it) and what it must not import, lazily or not.
# "core" is the rest of synk8s: helpers the stages use (report, realdata, zeroshot, optim, ...).
FLOORS = (
    ("config", CONFIG, (*REGISTRIES, *STAGES, *COMPONENTS, *PIPELINES, *CLI, "kfp")),
    ("lower", LOWER, (*STAGES, *COMPONENTS, *PIPELINES, *CLI, "kfp")),
    ("stages", STAGES, (*COMPONENTS, *PIPELINES, *CLI, "kfp")),
    ("components", COMPONENTS, (*PIPELINES, *CLI)),
    ("pipelines", PIPELINES, CLI),
    ("cli", CLI, ()),
    ("core", ("synk8s",), (*STAGES, *COMPONENTS, *PIPELINES, *CLI, "kfp")),
)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def forbidden_for(module: str) -> tuple[str, ...]:
    """What ``module`` must not import: the floors above its own."""
    return next(banned for _, members, banned in FLOORS if any(_within(module, m) for m in members))


def module_name(path: Path, root: Path) -> str:
    """``synk8s/stages/filter.py`` -> ``synk8s.stages.filter``; ``components/x.py`` -> ``synk8s.components.x``."""
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


def test_every_floor_imports_only_the_floors_below_it():
    assert len(list((REPO / "synk8s").rglob("*.py"))) > 20
    assert violations(REPO) == []


@pytest.mark.parametrize(
    "body",
    [
        "def lazy():\n    from synk8s.stages.table import TABLE\n    return TABLE\n",
        "def lazy():\n    import synk8s.stages.filter\n",
        "from synk8s import stages\n",
        "def lazy():\n    from .stages import table\n",
        "import importlib\n\ndef lazy():\n    return importlib.import_module('synk8s.stages.generate')\n",
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
