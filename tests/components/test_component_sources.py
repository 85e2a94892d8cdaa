"""The stage components' functions are rendered from the stage table into real module files."""

import inspect
from pathlib import Path

import pytest

from synk8s import config
from synk8s.components.stages import make_components, stage_source
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(60)


def test_a_rendered_function_is_read_from_its_own_file_in_a_private_folder():
    cfg = config.load("tiny", ["dataset.name=cifar10"])
    func = make_components(cfg).stages["filter"].python_func
    path = Path(inspect.getsourcefile(func))
    assert path.is_file() and path.parent.stat().st_mode & 0o777 == 0o700
    assert inspect.getsource(func) == stage_source(TABLE.get("filter"), cfg)
    assert path.read_text().endswith(inspect.getsource(func))
    assert func.__code__.co_filename == str(path)  # tracebacks show the rendered lines


def test_configs_that_wire_a_stage_differently_get_different_files():
    off = config.load("tiny", ["dataset.name=cifar10"])
    on = config.with_overrides(off, ["leakage.drop=true"])
    funcs = [make_components(cfg).stages["tune"].python_func for cfg in (off, on)]
    assert "leakage" not in inspect.signature(funcs[0]).parameters
    assert "leakage" in inspect.signature(funcs[1]).parameters
    assert inspect.getsourcefile(funcs[0]) != inspect.getsourcefile(funcs[1])
    for func, cfg in zip(funcs, (off, on)):
        assert inspect.getsource(func) == stage_source(TABLE.get("tune"), cfg)
