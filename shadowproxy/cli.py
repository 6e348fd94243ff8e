"""The ``shadowproxy`` command line (click).

Every command reads settings from the environment, then ``--config FILE``, then its own
flags; a bad or missing setting is one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from shadowproxy.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def fail(message: str, code: int = 2) -> None:
    click.echo(f"shadowproxy: error: {message}", err=True)
    sys.exit(code)


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    try:
        return load_settings(ctx.obj, overrides)
    except SettingsError as exc:
        fail(str(exc))
        raise AssertionError("unreachable") from None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; Windows lacks it
        return asyncio.run(coro)
    return uvloop.run(coro)


def settings_errors_exit_2(fn: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except SettingsError as exc:
            fail(str(exc))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="TOML file with settings (flags beat it, it beats the environment).")
@click.version_option(package_name="shadowproxy")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Mirror LLM traffic to Claude Haiku 4.5 and decide the cutover on evidence."""
    ctx.obj = config


@cli.command()
@click.option("--primary-url", default=None, help="Base URL of the current provider.")
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--admin-host", default=None)
@click.option("--admin-port", type=int, default=None)
@click.option("--workers", type=int, default=None, help="Processes sharing the port.")
@click.option("--no-migrate", is_flag=True, help="Do not apply migrations at start.")
@click.pass_context
@settings_errors_exit_2
def serve(ctx: click.Context, no_migrate: bool, **flags: Any) -> None:
    """Run the proxy and its admin listener."""
    settings = settings_from(ctx, **flags)
    settings.require_primary_url()
    from shadowproxy.logs import setup_logging
    from shadowproxy.serve import run_serve

    setup_logging(settings)
    sys.exit(run_async(run_serve(settings, migrate=not no_migrate)))


@cli.command()
@click.pass_context
@settings_errors_exit_2
def migrate(ctx: click.Context) -> None:
    """Apply the database migrations and exit."""
    settings = settings_from(ctx)
    from shadowproxy.serve import database
    from shadowproxy.store.migrate import upgrade

    async def go() -> None:
        async with database(settings) as resolved:
            assert resolved.database_url is not None
            await upgrade(resolved.database_url.get_secret_value())

    run_async(go())
    click.echo("shadowproxy: database is at the latest migration")


def main() -> None:
    cli(prog_name="shadowproxy")
