"""compose.yaml and docs/operations.md stay in step with the CLI: every `skyledger` command
line they hold (the services' commands, the commands in compose.yaml's comments and in
the guide's console blocks, run or not) names a command and options that `skyledger
COMMAND -h` lists, with the arguments it takes; every SKYLEDGER_* setting is one that
skyledger reads; and the services run one worker per tier with the same job, ledger,
bus and prefix. Docker is not needed: the file is read, not run."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from skyledger.ledger.settings import LedgerSettings
from skyledger.runners.cli import app
from skyledger.runners.tiers import TIERS

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
GUIDE = ROOT / "docs" / "operations.md"
CLI: Any = typer.main.get_command(app)  # typer's own click: its classes are not click's


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def help_options(name: str) -> set[str]:
    """Return the options `skyledger NAME -h` lists."""
    done = CliRunner().invoke(app, [name, "-h"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    options = done.output.split("Options:", 1)[1]
    return set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", options))


def check(args: list[str], where: str) -> None:
    """Fail unless ``skyledger ARGS`` names a command, its options and its arguments."""
    assert args, f"{where}: skyledger without a command"
    name = args[0]
    assert name in CLI.commands, f"{where}: no command skyledger {name}"
    command = CLI.commands[name]
    listed = help_options(name)
    takes_value = {
        opt
        for p in command.params
        if p.param_type_name == "option" and not p.is_flag and not p.count
        for opt in p.opts
    }
    positional: list[str] = []
    rest = iter(args[1:])
    for token in rest:
        if token.startswith("-") and token != "-":
            option = token.split("=", 1)[0]
            assert option in listed, f"{where}: skyledger {name} -h lists no {option}"
            if option in takes_value and "=" not in token:
                assert next(rest, None) is not None, f"{where}: {option} needs a value"
        else:
            positional.append(token)
    if {"-h", "--help"} & set(args):
        return
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    most = None if any(p.nargs == -1 for p in arguments) else len(arguments)
    fewest = sum(1 for p in arguments if p.required)
    assert len(positional) >= fewest, f"{where}: skyledger {name} needs {fewest} arguments"
    assert most is None or len(positional) <= most, f"{where}: too many arguments {positional}"
    if name == "worker":
        assert positional[0] in TIERS, f"{where}: no tier {positional[0]}"


def skyledger_args(line: str) -> list[str] | None:
    """Return the arguments after `skyledger` in a shell line (None if it runs none)."""
    tokens = shlex.split(line.rstrip("&").strip())
    if "skyledger" not in tokens:
        return None
    return tokens[tokens.index("skyledger") + 1 :]


def comment_commands() -> Iterator[tuple[int, str]]:
    """Yield the shell lines in compose.yaml's comments (continuations joined)."""
    pending, start = "", 0
    for number, line in enumerate(COMPOSE.read_text().splitlines(), 1):
        if not line.startswith("#   "):
            continue
        text = line[1:].split("  # ", 1)[0].strip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        yield start, pending + text
        pending = ""


def guide_commands() -> Iterator[tuple[int, str]]:
    """Yield the `$ ` command lines of the guide's console blocks (run or not)."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(GUIDE.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            inside = line.strip() == "```console"
            continue
        if not inside:
            continue
        if pending:
            pending += " " + line.strip()
        elif line.startswith("$ "):
            pending, start = line[2:].strip(), number
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        yield start, pending
        pending = ""


def settings_read() -> set[str]:
    """Return the SKYLEDGER_* variables skyledger reads: the CLI's and the ledger's."""
    found = {f"SKYLEDGER_{name.upper()}" for name in LedgerSettings.model_fields}
    for command in CLI.commands.values():
        for p in command.params:
            envvar = getattr(p, "envvar", None)
            found |= {envvar} if isinstance(envvar, str) else set(envvar or ())
    return found


def skyledger_services() -> dict[str, dict[str, Any]]:
    """Return the services that run skyledger (the entrypoint execs it)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if "exec skyledger" in " ".join(service.get("entrypoint", []))
    }


def test_compose_commands_name_what_the_cli_has() -> None:
    services = skyledger_services()
    assert services
    for name, service in services.items():
        if "command" in service:
            check([str(a) for a in service["command"]], f"compose.yaml service {name}")
    seen = 0
    for number, line in comment_commands():
        args = skyledger_args(line)
        if args is not None:
            check(args, f"compose.yaml line {number}")
            seen += 1
    assert seen >= 3


def test_the_guide_s_commands_name_what_the_cli_has() -> None:
    seen = 0
    for number, line in guide_commands():
        if line.startswith("skyledger "):
            check(shlex.split(line.rstrip("&"))[1:], f"operations.md line {number}")
            seen += 1
    assert seen >= 8


def test_compose_settings_are_read_by_skyledger() -> None:
    known = settings_read()
    for name, service in skyledger_services().items():
        for key in service.get("environment", {}):
            assert key in known, f"compose.yaml service {name}: skyledger reads no {key}"
    for number, line in comment_commands():
        for key in re.findall(r"\b(SKYLEDGER_\w+)=", line):
            assert key in known, f"compose.yaml line {number}: skyledger reads no {key}"


def test_compose_runs_a_relay_and_a_worker_per_tier_on_the_same_engines() -> None:
    data = compose()
    services = skyledger_services()
    assert {"postgres", "nats"} <= set(data["services"])
    assert "-js" in data["services"]["nats"]["command"]  # JetStream on
    pg = data["services"]["postgres"]["environment"]
    ledger = "postgresql://{POSTGRES_USER}:{POSTGRES_PASSWORD}@postgres:5432/{POSTGRES_DB}"
    commands = {name: [str(a) for a in s.get("command", [])] for name, s in services.items()}
    roles = {name: c[0] if c[0] == "relay" else c[1] for name, c in commands.items() if c}
    assert sorted(roles.values()) == ["relay", *TIERS]
    jobs = {commands[name][2] for name, role in roles.items() if role != "relay"}
    assert len(jobs) == 1, f"the workers run different jobs: {jobs}"
    for name, service in services.items():
        env = service["environment"]
        assert env["SKYLEDGER_LEDGER"] == ledger.format(**pg), name
        assert env.get("SKYLEDGER_LIVE_LEDGER", env["SKYLEDGER_LEDGER"]) == env["SKYLEDGER_LEDGER"]
        assert env["SKYLEDGER_NATS"] == "nats://nats:4222", name
        assert env["SKYLEDGER_BUS_PREFIX"] == "skyledger", name
        if name not in roles:
            continue
        assert service["stop_signal"] == "SIGTERM", name
        assert service["stop_grace_period"], name
        args = commands[name]
        port = args[args.index("--metrics-port") + 1]
        assert args[args.index("--metrics-host") + 1] == "0.0.0.0", name  # reachable
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"], name
        if roles[name] != "relay":
            assert "relay" in service["depends_on"], name


@pytest.mark.parametrize("line", ["skyledger worker t5 job.yaml", "skyledger relay --shard 4"])
def test_the_check_finds_what_the_cli_lacks(line: str) -> None:
    with pytest.raises(AssertionError):
        check(shlex.split(line)[1:], "here")
