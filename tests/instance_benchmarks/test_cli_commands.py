"""The thin CLI's shape: cli.py is the entry point, one module per command group under commands/, one
environment factory that every command calls, --local and --state on every command that talks to AWS."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import typer
from typer.main import get_command

from instance_benchmarks import cli
from instance_benchmarks.commands import shared
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.environment import Environment

try:  # the click that Typer runs on (its own copy in Typer 0.2x)
    import typer._click as click
except ImportError:  # pragma: no cover - older Typer on click itself
    import click

PACKAGE = Path(cli.__file__).parent
MODULES = [PACKAGE / "cli.py", *sorted((PACKAGE / "commands").glob("*.py"))]
# every command that talks to AWS (or the embedded default): each takes --region, --local and --state
AWS_COMMANDS = {"campaign launch", "campaign status", "campaign teardown", "campaign collect", "campaign logs",
                "campaign run", "models list", "models download", "jobs list", "jobs logs", "jobs download",
                "info", "doctor"}


def _leaves(command, prefix: str = ""):
    for name, sub in getattr(command, "commands", {}).items():
        path = f"{prefix} {name}".strip()
        if getattr(sub, "commands", None):
            yield from _leaves(sub, path)
        else:
            yield path, sub


def test_every_aws_command_takes_local_and_state_as_the_one_shared_option():
    leaves = dict(_leaves(get_command(cli.app)))
    aws = {path for path, command in leaves.items() if any(p.name == "ssm_prefix" for p in command.params)}
    assert aws == AWS_COMMANDS  # a new AWS command joins this list, with --local and --state
    for path in sorted(aws):
        options = {p.name: p for p in leaves[path].params}
        assert options["local"].opts == ["--local"] and options["local"].help == shared.LOCAL_OPTION.help, path
        assert options["state"].opts == ["--state"] and options["state"].help == shared.STATE_OPTION.help, path
        assert "region" in options, path
    assert dict(_leaves(get_command(cli.app)))["local up"].params[1].opts == ["--state"]


def _calls(tree: ast.AST) -> set[str]:
    return {node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))}


def test_one_environment_factory_and_no_other_way_to_set_one_up():
    for path in MODULES:
        calls = _calls(ast.parse(path.read_text()))
        makers = calls & {"Environment", "EmbeddedEnvironment", "LocalState", "start", "aws_environment"}
        if path.name == "shared.py":
            assert makers == {"Environment", "LocalState", "start"}
        else:
            assert not makers - {"start"}, (path.name, makers)
            assert "start" not in calls or path.name == "campaign_view.py", path.name  # Live(...).start(): a display
    for group in ("campaign", "models", "jobs", "local", "info", "doctor"):  # each group calls the factory
        assert "environment" in _calls(ast.parse((PACKAGE / "commands" / f"{group}.py").read_text())), group


def test_cli_is_the_entry_point_only_and_imports_run_one_way():
    assert len((PACKAGE / "cli.py").read_text().splitlines()) < 300
    for path in MODULES[1:]:
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "instance_benchmarks.cli" not in imported, path.name  # cli.py imports commands, never back


def test_no_import_inside_a_function_but_a_heavy_one_with_its_reason():
    for path in MODULES:
        source = path.read_text()
        lines = source.splitlines()
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    above, inline = lines[node.lineno - 2].strip(), lines[node.lineno - 1]
                    assert above.startswith("# imported here:") or "# imported here:" in inline, f"{path.name}:{node.lineno}"


def test_the_factory_gives_aws_with_the_region_and_prefix_asked_for():
    env = shared.environment(False, "eu-west-1", "/elsewhere")
    assert type(env) is Environment and (env.region, env.ssm_prefix) == ("eu-west-1", "/elsewhere")


def test_the_factory_refuses_state_without_local(tmp_path):
    with pytest.raises(TrainfleetInputError, match=r"^--state names the --local state folder: add --local$"):
        shared.environment(False, None, state=tmp_path / "s")
    assert not (tmp_path / "s").exists()


class FakeEmbedded:
    """Stands in for EmbeddedEnvironment.start: records how it was started and whether it was closed."""

    started: list = []

    def __init__(self, region, state, log):
        self.region, self.state, self.log, self.closed = region, state, log, False

    @classmethod
    def start(cls, *, region, state, log):
        env = cls(region, state, log)
        cls.started.append(env)
        return env

    def close(self):
        self.closed = True


@pytest.mark.parametrize("closes_itself", [True, False])
def test_local_restores_the_state_and_closes_with_the_command_unless_told(tmp_path, monkeypatch, capsys, closes_itself):
    monkeypatch.setattr(shared, "EmbeddedEnvironment", FakeEmbedded)
    FakeEmbedded.started = []
    with click.Context(get_command(cli.app)):
        env = shared.environment(True, None, state=tmp_path / "s", writes=True, closes_itself=closes_itself)
        assert env.region == "us-east-1" and env.state.root == tmp_path / "s" and env.state.writable
        assert not env.closed
    assert env.closed is closes_itself
    assert capsys.readouterr().err == f"local state: {tmp_path / 's'}\n"  # stderr: stdout is the command's


def test_announce_says_where_moto_answers(tmp_path, monkeypatch):
    class Server:
        endpoint, pid = "http://127.0.0.1:5000", 42

    class Announced(FakeEmbedded):
        cloud = type("Cloud", (), {"server": Server})

    monkeypatch.setattr(shared, "EmbeddedEnvironment", Announced)
    said: list[str] = []
    shared.environment(True, "eu-west-1", state=tmp_path, log=said.append, announce=True, closes_itself=False)
    assert said == [f"local state: {tmp_path}",
                    "starting moto's server on 127.0.0.1 and deploying the Storage, Network and Compute stacks ...",
                    f"moto's server at http://127.0.0.1:5000 (pid 42); results kept in {tmp_path}/ (a rerun resumes "
                    "from there)"]


@pytest.mark.parametrize("argv", [["campaign", "teardown", "sweep"], ["jobs", "list"], ["jobs", "logs", "j1"],
                                  ["jobs", "download", "j1", "--out", "OUT"], ["doctor", "--region", "us-east-1"]])
def test_state_without_local_is_one_line_before_any_aws_call(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Environment, "client", lambda self, service: pytest.fail(f"AWS called: {service}"))
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    monkeypatch.setattr(sys, "argv", ["trainfleet", *argv, "--state", str(tmp_path / "s")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --state names the --local state folder: add --local\n"
    assert not (tmp_path / "s").exists()


def test_help_lists_every_group_and_top_level_command():
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("campaign", "models", "catalog", "local", "jobs", "info", "doctor"):
        assert f" {name} " in result.output, name
    assert isinstance(cli.app, typer.Typer)
