"""Imports flow one way: the core never reaches KFP, components or pipelines."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

CORE = Path(__file__).resolve().parents[2] / "synk8s"
FORBIDDEN = ("kfp", "synk8s.components", "synk8s.pipelines", "components", "pipelines")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_core_modules_do_not_import_kfp_components_or_pipelines():
    core_files = [p for p in CORE.rglob("*.py") if "cli" not in p.relative_to(CORE).parts]
    assert len(core_files) > 5
    offenders = [
        f"{path.relative_to(CORE)}: {name}"
        for path in core_files
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert offenders == []


def test_importing_the_core_loads_neither_kfp_nor_torch():
    code = (
        "import sys, synk8s.config, synk8s.storage, synk8s.datasets, synk8s.models, synk8s.errors;"
        "bad = [m for m in ('kfp', 'torch', 'diffusers', 'open_clip') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
