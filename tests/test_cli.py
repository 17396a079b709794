"""The ``varta`` command: what a new operator types, and what they get back."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner, Result

import central.server
import edge.agent
import varta.demo
from central.auth.passwords import verify_password
from central.auth.users import get_by_username
from central.config import CentralConfig, load_central_config
from central.store.db import Database
from edge.config import EdgeConfig
from varta import __version__
from varta.cli import app
from varta.demo import DemoOptions
from varta.sealing import load_or_create_box_key
from varta.sealing import public_key_text as box_public_key_text
from varta.signing import load_signing_key, load_verify_key, public_key_text

PASSWORD = "correct horse battery staple"
CONFIG_DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No VARTA_* variables of the caller leak in; relative default paths land in tmp_path."""
    for name in list(os.environ):
        if name.startswith("VARTA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def central_config(tmp_path: Path) -> Path:
    """A central config whose database and signing key live in tmp_path."""
    path = tmp_path / "central.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite+aiosqlite:///{tmp_path / 'db' / 'varta.db'}",
                "data_dir": str(tmp_path / "data"),
                "commands": {"signing_key_file": str(tmp_path / "keys" / "signing.key")},
            }
        )
    )
    return path


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("http:\n  prot: 8080\n")
    return path


class Calls:
    """Records calls of a stand-in for a long-running entry point (a server we do not want to start)."""

    def __init__(self, code: int = 0) -> None:
        self.code = code
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        self.calls.append((args, kwargs))
        return self.code


def invoke(runner: CliRunner, *args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


# ---------------------------------------------------------------------------------------------------- basics


def test_version_command_and_flag_print_the_package_version(runner: CliRunner) -> None:
    for args in (["version"], ["--version"]):
        result = invoke(runner, *args)
        assert result.exit_code == 0
        assert result.stdout.strip() == f"varta {__version__}"


def test_help_names_every_command(runner: CliRunner) -> None:
    top = invoke(runner, "--help")
    assert top.exit_code == 0
    for command in ("version", "central", "edge", "demo"):
        assert command in top.stdout
    central = invoke(runner, "central", "--help")
    assert central.exit_code == 0
    for command in ("run", "migrate", "create-admin", "keygen", "pubkey"):
        assert command in central.stdout


def test_no_arguments_shows_help_instead_of_doing_something(runner: CliRunner) -> None:
    result = invoke(runner)
    assert "Usage" in result.output
    assert "central" in result.output


# ---------------------------------------------------------------------------------------------------- central run


@pytest.fixture
def central_main(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls(code=0)
    monkeypatch.setattr(central.server, "main", calls)
    return calls


@pytest.mark.parametrize(
    "args",
    [
        ["central"],
        ["central", "run"],
    ],
)
def test_central_alone_or_run_starts_the_server_with_defaults(
    runner: CliRunner, central_main: Calls, args: list[str]
) -> None:
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    assert central_main.calls == [((None,), {})]


@pytest.mark.parametrize(
    "args",
    [
        ["central", "--config", "{cfg}"],
        ["central", "run", "--config", "{cfg}"],
        ["central", "-c", "{cfg}", "run"],
    ],
)
def test_central_config_option_is_accepted_before_or_after_run(
    runner: CliRunner, central_main: Calls, central_config: Path, args: list[str]
) -> None:
    result = invoke(runner, *[a.format(cfg=central_config) for a in args])
    assert result.exit_code == 0, result.output
    assert central_main.calls == [((central_config,), {})]


def test_central_config_from_environment(
    runner: CliRunner, central_main: Calls, central_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VARTA_CENTRAL_CONFIG", str(central_config))
    result = invoke(runner, "central", "run")
    assert result.exit_code == 0, result.output
    assert central_main.calls == [((central_config,), {})]


def test_central_exit_code_is_the_servers(runner: CliRunner, central_main: Calls) -> None:
    central_main.code = 3
    assert invoke(runner, "central").exit_code == 3


def test_central_with_invalid_config_exits_2_naming_the_bad_key(runner: CliRunner, bad_config: Path) -> None:
    result = invoke(runner, "central", "run", "--config", str(bad_config))
    assert result.exit_code == 2
    assert "prot" in result.stderr
    assert "Traceback" not in result.output


def test_central_without_the_central_extra_says_what_to_install(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "central.server" or m.startswith(("central.app", "fastapi"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail like a missing package
    result = invoke(runner, "central", "run")
    assert result.exit_code == 1
    assert "varta[central]" in result.stderr
    assert "fastapi" in result.stderr


# ---------------------------------------------------------------------------------------------------- keys


def test_keygen_creates_a_private_key_once_and_pubkey_prints_its_public_half(
    runner: CliRunner, central_config: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "signing.key"
    first = invoke(runner, "central", "keygen", "--config", str(central_config))
    assert first.exit_code == 0, first.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    public = public_key_text(load_signing_key(key_file).verify_key)
    assert first.stdout.splitlines()[-1] == public
    assert "Created" in first.stdout

    second = invoke(runner, "central", "keygen", "--config", str(central_config))
    assert second.exit_code == 0
    assert "Kept the existing" in second.stdout
    assert public_key_text(load_signing_key(key_file).verify_key) == public

    shown = invoke(runner, "central", "--config", str(central_config), "pubkey")
    assert shown.exit_code == 0
    assert shown.stdout.strip() == public
    load_verify_key(shown.stdout)  # pasteable as is


def test_pubkey_without_a_key_points_to_keygen(runner: CliRunner, central_config: Path) -> None:
    result = invoke(runner, "central", "pubkey", "--config", str(central_config))
    assert result.exit_code == 1
    assert "varta central keygen" in result.stderr


def test_pubkey_of_a_corrupt_key_file_is_an_error_not_a_traceback(
    runner: CliRunner, central_config: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "signing.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not-a-key\n")
    result = invoke(runner, "central", "pubkey", "--config", str(central_config))
    assert result.exit_code == 1
    assert str(key_file) in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["keygen", "pubkey", "migrate"])
def test_management_commands_with_invalid_config_exit_2(runner: CliRunner, bad_config: Path, command: str) -> None:
    result = invoke(runner, "central", command, "--config", str(bad_config))
    assert result.exit_code == 2
    assert "invalid central configuration" in result.stderr
    assert "http.prot" in result.stderr


def test_missing_config_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "central", "keygen", "--config", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


# ---------------------------------------------------------------------------------------------------- database


def test_migrate_creates_the_database(runner: CliRunner, central_config: Path, tmp_path: Path) -> None:
    result = invoke(runner, "central", "migrate", "--config", str(central_config))
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "db" / "varta.db") as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision
    again = invoke(runner, "central", "migrate", "--config", str(central_config))
    assert again.exit_code == 0


def _admin(config: Path, username: str) -> tuple[str, bool] | None:
    """(role, password matches PASSWORD) of *username* in the configured database, or None."""

    async def lookup() -> tuple[str, bool] | None:
        db = Database(load_central_config(config).database_url)
        try:
            async with db.session() as session:
                user = await get_by_username(session, username)
                if user is None:
                    return None
                return str(user.role), await verify_password(user.password_hash, PASSWORD)
        finally:
            await db.dispose()

    return asyncio.run(lookup())


def test_create_admin_from_a_password_file(runner: CliRunner, central_config: Path, tmp_path: Path) -> None:
    password_file = tmp_path / "admin.pw"
    password_file.write_text(PASSWORD + "\n")
    result = invoke(
        runner, "central", "create-admin", "--username", "chief", "--password-file", str(password_file),
        "--config", str(central_config),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert _admin(central_config, "chief") == ("admin", True)


def test_create_admin_reads_the_password_from_stdin_with_dash(runner: CliRunner, central_config: Path) -> None:
    result = invoke(
        runner, "central", "create-admin", "-u", "chief", "--password-file", "-", "--config", str(central_config),
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _admin(central_config, "chief") == ("admin", True)


def test_create_admin_asks_twice_and_never_echoes_the_password(runner: CliRunner, central_config: Path) -> None:
    result = invoke(
        runner, "central", "create-admin", "--username", "chief", "--config", str(central_config),
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    assert PASSWORD not in result.output
    assert _admin(central_config, "chief") == ("admin", True)


def test_create_admin_with_mismatched_confirmation_creates_nobody(runner: CliRunner, central_config: Path) -> None:
    result = invoke(
        runner, "central", "create-admin", "--username", "chief", "--config", str(central_config),
        input=f"{PASSWORD}\n{PASSWORD}x\n",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert not (Path(central_config).parent / "db" / "varta.db").exists()


def test_create_admin_refuses_a_weak_password_with_the_policys_reason(
    runner: CliRunner, central_config: Path, tmp_path: Path
) -> None:
    password_file = tmp_path / "weak.pw"
    password_file.write_text("short\n")
    result = invoke(
        runner, "central", "create-admin", "-u", "chief", "--password-file", str(password_file),
        "--config", str(central_config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "at least" in result.stderr
    assert "Traceback" not in result.output
    assert _admin(central_config, "chief") is None


def test_create_admin_refuses_an_empty_password_file(runner: CliRunner, central_config: Path, tmp_path: Path) -> None:
    password_file = tmp_path / "empty.pw"
    password_file.write_text("\n")
    result = invoke(
        runner, "central", "create-admin", "-u", "chief", "--password-file", str(password_file),
        "--config", str(central_config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "empty" in result.stderr


# ---------------------------------------------------------------------------------------------------- edge, demo


def test_edge_runs_the_agent_with_its_config(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = Calls(code=4)
    monkeypatch.setattr(edge.agent, "main", calls)
    config = tmp_path / "edge.yaml"
    config.write_text("{}\n")
    result = invoke(runner, "edge", "--config", str(config))
    assert result.exit_code == 4
    assert calls.calls == [((config,), {})]


def test_edge_with_invalid_config_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text("no_such_option: 1\n")
    result = invoke(runner, "edge", "--config", str(config))
    assert result.exit_code == 2
    assert "no_such_option" in result.stderr


def test_edge_run_and_config_after_the_command_are_accepted(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = Calls(code=0)
    monkeypatch.setattr(edge.agent, "main", calls)
    config = tmp_path / "edge.yaml"
    config.write_text("{}\n")
    assert invoke(runner, "edge", "run", "--config", str(config)).exit_code == 0
    assert invoke(runner, "edge", "--config", str(config), "run").exit_code == 0
    assert calls.calls == [((config,), {}), ((config,), {})]


@pytest.fixture
def edge_config(tmp_path: Path) -> Path:
    config = tmp_path / "edge.yaml"
    config.write_text(f"node_id: node-a\nsite: s\noutbox: {{path: {tmp_path / 'data' / 'outbox.db'}}}\n")
    return config


def test_edge_keygen_makes_the_sealing_key_once_and_pubkey_prints_its_public_half(
    runner: CliRunner, edge_config: Path, tmp_path: Path
) -> None:
    first = invoke(runner, "edge", "keygen", "--config", str(edge_config))
    assert first.exit_code == 0, first.output
    key_file = tmp_path / "data" / "box.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = first.stdout.strip()
    assert public == box_public_key_text(load_or_create_box_key(key_file))
    assert "Created" in first.stderr
    second = invoke(runner, "edge", "keygen", "--config", str(edge_config))
    assert second.stdout.strip() == public
    assert "Kept the existing" in second.stderr
    shown = invoke(runner, "edge", "pubkey", "--config", str(edge_config))
    assert shown.exit_code == 0
    assert shown.stdout.strip() == public


def test_edge_pubkey_without_a_key_points_to_keygen_and_a_corrupt_key_is_an_error(
    runner: CliRunner, edge_config: Path, tmp_path: Path
) -> None:
    missing = invoke(runner, "edge", "pubkey", "--config", str(edge_config))
    assert missing.exit_code == 1
    assert "varta edge keygen" in missing.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "box.key").write_text("c2hvcnQ=\n")
    corrupt = invoke(runner, "edge", "pubkey", "--config", str(edge_config))
    assert corrupt.exit_code == 1
    assert "32 bytes" in corrupt.stderr
    assert "Traceback" not in corrupt.output


def test_edge_never_imports_the_central_stack(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text("no_such_option: 1\n")
    script = textwrap.dedent(
        f"""
        import sys
        from typer.testing import CliRunner
        from varta.cli import app
        result = CliRunner().invoke(app, ["edge", "--config", {str(config)!r}])
        assert result.exit_code == 2, result.output
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{"fastapi", "central", "sqlalchemy", "uvicorn"}})
        print(",".join(heavy))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VARTA_")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""


@pytest.fixture
def demo_main(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls(code=0)
    monkeypatch.setattr(varta.demo, "main", calls)
    return calls


def test_demo_uses_port_8080_and_three_nodes_unless_told_otherwise(runner: CliRunner, demo_main: Calls) -> None:
    assert invoke(runner, "demo").exit_code == 0
    assert invoke(runner, "demo", "--port", "9090", "--nodes", "5").exit_code == 0
    assert demo_main.calls == [
        ((DemoOptions(port=8080, nodes=3),), {}),
        ((DemoOptions(port=9090, nodes=5),), {}),
    ]


@pytest.mark.parametrize("args", [["--port", "70000"], ["--port", "0"], ["--nodes", "0"]])
def test_demo_rejects_impossible_values(runner: CliRunner, demo_main: Calls, args: list[str]) -> None:
    result = invoke(runner, "demo", *args)
    assert result.exit_code == 2
    assert demo_main.calls == []


# ---------------------------------------------------------------------------------------------------- reference


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted keys of every setting of *model*, nested models included (``mqtt.tls.ca_file``)."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        # A list of models (``live.ice_servers``) is one setting; a model or an optional model is a section.
        collection = typing.get_origin(info.annotation) in (list, tuple, set, dict)
        nested = [] if collection else [a for a in (info.annotation, *typing.get_args(info.annotation)) if _is_model(a)]
        keys |= _leaf_keys(nested[0], f"{prefix}{name}.") if nested else {f"{prefix}{name}"}
    return keys


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _documented_keys(text: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z0-9_.*]+)` \|", text, flags=re.MULTILINE))


@pytest.mark.parametrize(("model", "env_prefix"), [(CentralConfig, "VARTA_CENTRAL__"), (EdgeConfig, "VARTA_EDGE__")])
def test_configuration_reference_documents_every_setting(model: type[BaseModel], env_prefix: str) -> None:
    text = CONFIG_DOC.read_text(encoding="utf-8")
    documented = _documented_keys(text)
    for key in sorted(_leaf_keys(model)):
        assert key in documented, f"docs/configuration.md lacks `{key}`"
        if not key.startswith("mqtt."):
            env = env_prefix + key.replace(".", "__").upper()
            assert f"`{env}`" in text, f"docs/configuration.md lacks the variable {env}"


def test_configuration_reference_documents_nothing_that_does_not_exist() -> None:
    real = _leaf_keys(CentralConfig) | _leaf_keys(EdgeConfig) | {"mqtt.*"}
    assert _documented_keys(CONFIG_DOC.read_text(encoding="utf-8")) - real == set()


def test_environment_variable_naming_in_the_reference_is_real(
    monkeypatch: pytest.MonkeyPatch, central_config: Path
) -> None:
    monkeypatch.setenv("VARTA_CENTRAL__HTTP__PORT", "9191")
    monkeypatch.setenv("VARTA_CENTRAL__MQTT__TLS__CA_FILE", "/etc/varta/ca.crt")
    config = load_central_config(central_config)
    assert config.http.port == 9191
    assert config.mqtt.tls is not None and config.mqtt.tls.ca_file == Path("/etc/varta/ca.crt")
