import pytest
import yaml
from typer.testing import CliRunner

from synk8s.cli.main import app

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


def test_config_show_prints_the_resolved_paper_profile():
    result = runner.invoke(app, ["config", "show", "--profile", "paper"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["profile"] == "paper"
    assert shown["tune"]["epochs"] == 30 and shown["generate"]["images_per_class"] == 2000


def test_config_show_applies_overrides():
    result = runner.invoke(app, ["config", "show", "--profile", "tiny", "--set", "tune.epochs=2", "--set", "seed=5"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert (shown["tune"]["epochs"], shown["seed"]) == (2, 5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["config", "show", "--profile", "huge"], "unknown profile 'huge'"),
        (["config", "show", "--set", "tune.lrr=1"], "unknown config key 'tune.lrr'"),
        (["config", "show", "--set", "tune.epochs=many"], "tune.epochs"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("synk8s ")


def test_logging_never_holds_on_to_an_invocations_stream():
    import logging
    import sys

    root_before = list(logging.getLogger().handlers)
    for _ in range(2):
        assert runner.invoke(app, ["config", "show"]).exit_code == 0
    assert logging.getLogger().handlers == root_before  # other libraries' logs are not redirected
    (handler,) = logging.getLogger("synk8s").handlers
    assert handler.stream is sys.stderr  # the current stream, not a closed one from an invocation
