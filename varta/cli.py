"""The ``varta`` command: run central or an edge node, look after central's keys, users and database, or try the demo.

Heavy modules (FastAPI, SQLAlchemy, the edge agent) are imported inside the commands that use them, so an edge node
(installed without the ``central`` extra) never imports the central stack. Configuration problems end the command
with a readable message and exit code 2.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from varta import __version__

if TYPE_CHECKING:
    from central.config import CentralConfig

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="varta",
    help="Varta: edge nodes and the central dashboard of a city's Safe Community programme.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
central_app = typer.Typer(
    help="The central server: web dashboard, REST API and MQTT ingest. Without a command it runs the server.",
    add_completion=False,
)
app.add_typer(central_app, name="central")
edge_app = typer.Typer(
    help="The edge agent of this node: cameras, kiosks, sirens. Without a command it runs the agent.",
    add_completion=False,
)
app.add_typer(edge_app, name="edge")

CentralConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Central's YAML configuration file. Without it: defaults plus VARTA_CENTRAL__… environment variables.",
        envvar="VARTA_CENTRAL_CONFIG",
        dir_okay=False,
        show_default=False,
    ),
]


EdgeConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The node's YAML configuration file. Without it: VARTA_EDGE__… environment variables only.",
        envvar="VARTA_EDGE_CONFIG",
        dir_okay=False,
        show_default=False,
    ),
]


def _fail(message: str, code: int = 1) -> NoReturn:
    """Print *message* to stderr and end the command with *code*."""
    typer.echo(f"varta: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _central_errors() -> Iterator[None]:
    """Turn configuration errors and a missing ``central`` extra into clear messages."""
    from central.config import ConfigError

    try:
        yield
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in {"varta", "central", "edge"}:
            raise
        _fail(f"central needs the 'central' extra (missing module {exc.name!r}): pip install 'varta[central]'")


def _config_path(ctx: typer.Context, config: Path | None) -> Path | None:
    """``--config`` of the subcommand, else the one given to ``varta central``."""
    if config is not None:
        return config
    parent = ctx.parent.params.get("config") if ctx.parent is not None else None
    return parent if isinstance(parent, Path) else None


def _load_central_config(config: Path | None) -> CentralConfig:
    from central.config import load_central_config

    return load_central_config(config)


def _run_central(config: Path | None) -> NoReturn:
    with _central_errors():
        from central.server import main

        try:
            code = main(config)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
    raise typer.Exit(code)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"varta {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
) -> None:
    """Varta: edge nodes and the central dashboard of a city's Safe Community programme.

    Try it on one machine with `varta demo`; see README.md and docs/configuration.md.
    """


@app.command()
def version() -> None:
    """Print the Varta version."""
    typer.echo(f"varta {__version__}")


# ------------------------------------------------------------------------------------------------------------ central


@central_app.callback(invoke_without_command=True)
def central(ctx: typer.Context, config: CentralConfigOption = None) -> None:
    """The central server: web dashboard, REST API and MQTT ingest.

    Without a command, `varta central` runs the server (like `varta central run`).
    """
    if ctx.invoked_subcommand is None:
        _run_central(config)


@central_app.command("run")
def central_run(ctx: typer.Context, config: CentralConfigOption = None) -> None:
    """Run the central server until Ctrl+C or SIGTERM (migrates the database at start)."""
    _run_central(_config_path(ctx, config))


@central_app.command("migrate")
def central_migrate(ctx: typer.Context, config: CentralConfigOption = None) -> None:
    """Create or upgrade central's database to the current schema."""
    with _central_errors():
        cfg = _load_central_config(_config_path(ctx, config))
        from central.store.migrate import upgrade

        upgrade(cfg.database_url)
    typer.echo("database is up to date")


def _read_password(password_file: Path | None) -> str:
    if password_file is None:
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    try:
        text = sys.stdin.read() if str(password_file) == "-" else password_file.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read {password_file}: {exc.strerror}")
    return text.rstrip("\r\n")


@central_app.command("create-admin")
def central_create_admin(
    ctx: typer.Context,
    username: Annotated[str, typer.Option("--username", "-u", help="Login name of the admin.", show_default=False)],
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            help="Read the password from this file ('-' reads standard input). Without it you are asked twice.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    config: CentralConfigOption = None,
) -> None:
    """Create an admin user (or make an existing user an admin with a new password).

    Runs the database migrations first, so it works on a fresh installation.
    """
    password = _read_password(password_file)
    if not password:
        _fail("the password is empty")
    with _central_errors():
        cfg = _load_central_config(_config_path(ctx, config))
        from central.auth.bootstrap import create_admin
        from central.store.db import Database
        from central.store.migrate import upgrade

        upgrade(cfg.database_url)

        async def _create() -> None:
            db = Database(cfg.database_url)
            try:
                await create_admin(db, username, password)
            finally:
                await db.dispose()

        try:
            asyncio.run(_create())
        except ValueError as exc:  # UserError, PasswordPolicyError: messages meant for the terminal
            _fail(f"cannot create admin {username!r}: {exc}")
    typer.echo(f"admin {username!r} is ready: log in at the dashboard")


def _key_error(path: Path, exc: Exception) -> str:
    message = str(exc)
    return message if str(path) in message else f"{path}: {message}"


@central_app.command("keygen")
def central_keygen(ctx: typer.Context, config: CentralConfigOption = None) -> None:
    """Create central's Ed25519 command-signing key (commands.signing_key_file) unless it exists."""
    from varta.signing import KeyFileError, key_id, load_or_create_signing_key, public_key_text

    with _central_errors():
        cfg = _load_central_config(_config_path(ctx, config))
    path = cfg.commands.signing_key_file
    existed = path.exists()
    try:
        key = load_or_create_signing_key(path)
    except KeyFileError as exc:
        _fail(_key_error(path, exc))
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror}")
    action = "Kept the existing" if existed else "Created the"
    typer.echo(f"{action} signing key {path.resolve()} (key id {key_id(key.verify_key)}).")
    typer.echo("Public key for the edge nodes' configuration (also: varta central pubkey):")
    typer.echo(public_key_text(key.verify_key))


@central_app.command("pubkey")
def central_pubkey(ctx: typer.Context, config: CentralConfigOption = None) -> None:
    """Print central's public key (base64) to paste into the edge nodes' configuration."""
    from varta.signing import KeyFileError, load_signing_key, public_key_text

    with _central_errors():
        cfg = _load_central_config(_config_path(ctx, config))
    path = cfg.commands.signing_key_file
    if not path.exists():
        _fail(f"no signing key at {path}: create it with `varta central keygen`")
    try:
        key = load_signing_key(path)
    except KeyFileError as exc:
        _fail(_key_error(path, exc))
    typer.echo(public_key_text(key.verify_key))


# ------------------------------------------------------------------------------------------------------------ edge


def _run_edge(config: Path | None) -> NoReturn:
    from edge.agent import main
    from edge.config import ConfigError

    try:
        code = main(config)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


def _edge_box_key_path(ctx: typer.Context, config: Path | None) -> Path:
    from edge.config import ConfigError, load_edge_config

    try:
        return load_edge_config(_config_path(ctx, config)).box_key_path
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)


@edge_app.callback(invoke_without_command=True)
def edge(ctx: typer.Context, config: EdgeConfigOption = None) -> None:
    """The edge agent of this node (cameras, kiosks, sirens).

    Without a command, `varta edge` runs the agent until Ctrl+C or SIGTERM (like `varta edge run`).
    """
    if ctx.invoked_subcommand is None:
        _run_edge(config)


@edge_app.command("run")
def edge_run(ctx: typer.Context, config: EdgeConfigOption = None) -> None:
    """Run the edge agent until Ctrl+C or SIGTERM."""
    _run_edge(_config_path(ctx, config))


@edge_app.command("keygen")
def edge_keygen(ctx: typer.Context, config: EdgeConfigOption = None) -> None:
    """Make the node's sealing key (X25519, mode 0600) unless it exists; print its public half on the last line.

    Central seals camera passwords to this key: enrol the public half there (the Ansible edge role does).
    """
    from varta.sealing import SealingError, load_or_create_box_key, public_key_text

    path = _edge_box_key_path(ctx, config)
    existed = path.exists()
    try:
        key = load_or_create_box_key(path)
    except (SealingError, ValueError) as exc:
        _fail(_key_error(path, exc))
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror}")
    action = "Kept the existing" if existed else "Created the"
    typer.echo(f"{action} sealing key {path.resolve()}; its public half, to enrol at central:", err=True)
    typer.echo(public_key_text(key))


@edge_app.command("pubkey")
def edge_pubkey(ctx: typer.Context, config: EdgeConfigOption = None) -> None:
    """Print the node's public sealing key (base64), to enrol at central."""
    from varta.sealing import SealingError, load_box_key, public_key_text

    path = _edge_box_key_path(ctx, config)
    if not path.exists():
        _fail(f"no sealing key at {path}: create it with `varta edge keygen`")
    try:
        key = load_box_key(path)
    except (SealingError, ValueError) as exc:
        _fail(_key_error(path, exc))
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    typer.echo(public_key_text(key))


# ------------------------------------------------------------------------------------------------------------ demo


@app.command()
def demo(
    port: Annotated[
        int, typer.Option("--port", "-p", min=1, max=65535, help="Port of the web dashboard (or the next free one).")
    ] = 8080,
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=50, help="Number of simulated edge nodes.")] = 3,
) -> None:
    """Run everything on this machine: an MQTT broker, central with demo users, and simulated edge nodes.

    Everything listens on 127.0.0.1 only; the dashboard address and the demo logins are printed at start.
    """
    try:
        from varta.demo import DemoOptions, main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in {"varta", "central", "edge"}:
            raise
        _fail(f"the demo needs the 'central' and 'demo' extras (missing module {exc.name!r})")
    try:
        code = main(DemoOptions(port=port, nodes=nodes))
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
