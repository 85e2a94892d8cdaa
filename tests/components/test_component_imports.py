"""components/ imports only the standard library and kfp at module level, so pipelines compile anywhere."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
ALLOWED = {"kfp", "__future__"} | set(sys.stdlib_module_names)


def _top_level_imports(tree: ast.Module) -> list[str]:
    """Imports executed when the module loads; ``if TYPE_CHECKING:`` blocks and function bodies are skipped."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            is_type_checking = isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
            if not is_type_checking:
                names += _top_level_imports(ast.Module(body=node.body, type_ignores=[]))
    return names


def test_component_modules_import_only_stdlib_and_kfp_at_top():
    files = sorted(COMPONENTS.glob("*.py"))
    assert len(files) >= 4
    offenders = [
        f"{path.name}: {name}"
        for path in files
        for name in _top_level_imports(ast.parse(path.read_text()))
        if name.split(".")[0] not in ALLOWED
    ]
    assert offenders == []


def test_building_the_pipeline_loads_no_ml_library():
    code = (
        "import sys; from synk8s import config; from synk8s.pipelines import build;"
        "build('zeroshot', config.load('paper'));"
        "bad = [m for m in ('torch', 'diffusers', 'transformers', 'open_clip', 'safetensors') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
