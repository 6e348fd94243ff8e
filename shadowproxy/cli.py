"""The ``shadowproxy`` command line (click).

Every command reads settings from the environment, then ``--config FILE``, then its own
flags; a bad or missing setting is one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from shadowproxy.decision.since import parse_since as since_cutoff
from shadowproxy.settings import Settings, SettingsError, load_settings
from shadowproxy.tasks import run_async

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
    from shadowproxy.proxy.serve import MigrationFailed, prepare_metrics_dir, run_serve

    prepare_metrics_dir(settings.data_dir)
    setup_logging(settings)
    try:
        sys.exit(run_async(run_serve(settings, migrate=not no_migrate)))
    except MigrationFailed as exc:
        fail(str(exc), code=1)


@cli.command()
@click.pass_context
@settings_errors_exit_2
def migrate(ctx: click.Context) -> None:
    """Apply the database migrations and exit."""
    settings = settings_from(ctx)
    from shadowproxy.proxy.serve import database
    from shadowproxy.store.migrate import upgrade

    async def go() -> None:
        async with database(settings) as resolved:
            assert resolved.database_url is not None
            await upgrade(resolved.database_url.get_secret_value())

    run_async(go())
    click.echo("shadowproxy: database is at the latest migration")


def with_database(settings: Settings, work: Callable[[str], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(url)`` against ``DATABASE_URL``, or the embedded server in ``DATA_DIR``
    (started for the command and stopped after, unless a running ``serve`` owns it)."""
    if settings.database_url is not None:
        return run_async(work(settings.database_url.get_secret_value()))
    pgdata = settings.data_dir / "pg"
    if not pgdata.exists():
        fail(f"SHADOWPROXY_DATABASE_URL: not set, and no embedded database in {pgdata} "
             "(run serve or demo first)")
    from shadowproxy.store.embedded import EmbeddedPostgres

    was_running = (pgdata / "postmaster.pid").exists()
    embedded = EmbeddedPostgres()
    url = embedded.start(settings.data_dir)
    try:
        return run_async(work(url))
    finally:
        if not was_running:
            embedded.stop()


def parse_since(value: str | None) -> datetime | None:
    try:
        return since_cutoff(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
@settings_errors_exit_2
def diff(ctx: click.Context, batch_size: int, no_progress: bool) -> None:
    """Score every stored pair not yet scored (resumable)."""
    from shadowproxy.decision.diff import run_diff

    summary = with_database(
        settings_from(ctx),
        lambda url: run_diff(url, batch_size=batch_size, progress=not no_progress),
    )
    click.echo(f"shadowproxy: scored {summary.scored} pairs "
               f"({summary.agreed} agree) in {summary.seconds:.1f}s")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="File to write (default: report.html, or stdout for JSON).")
@click.option("--format", "fmt", type=click.Choice(["html", "json"]), default="html",
              show_default=True)
@click.option("--since", default=None, help="ISO date/time or an age: 24h, 7d.")
@click.option("--tag", default=None, help="Only this tag.")
@click.option("--policy", type=click.Path(path_type=Path), default=None,
              help="Show this gate policy's verdict at the top of the HTML report.")
@click.pass_context
@settings_errors_exit_2
def report(ctx: click.Context, out: Path | None, fmt: str, since: str | None,
           tag: str | None, policy: Path | None) -> None:
    """Write the evidence: one self-contained HTML file, or JSON for machines."""
    from shadowproxy.decision.gate import PolicyError, evaluate, load_policy
    from shadowproxy.decision.report import build_report
    from shadowproxy.decision.report_html import render_html

    after = parse_since(since)
    data = with_database(settings_from(ctx),
                         lambda url: build_report(url, since=after, tag=tag))
    if fmt == "json":
        text = json.dumps(data.to_json(), indent=2, default=str)
        if out is None:
            click.echo(text)
        else:
            out.write_text(text + "\n")
            click.echo(f"shadowproxy: wrote {out}")
        return
    gate_result = None
    if policy is not None:
        try:
            gate_result = evaluate(data, load_policy(policy))
        except PolicyError as exc:
            fail(str(exc))
    target = out or Path("report.html")
    target.write_text(render_html(data, gate_result), encoding="utf-8")
    click.echo(f"shadowproxy: wrote {target.resolve()}")


@cli.command()
@click.option("--policy", type=click.Path(path_type=Path), required=True,
              help="TOML gate policy.")
@click.option("--since", default=None, help="ISO date/time or an age: 24h, 7d.")
@click.option("--tag", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_context
@settings_errors_exit_2
def gate(ctx: click.Context, policy: Path, since: str | None, tag: str | None,
         as_json: bool) -> None:
    """Pass (exit 0), fail (1) or not enough data (2) against a policy."""
    from shadowproxy.decision.gate import PolicyError, evaluate, format_table, load_policy
    from shadowproxy.decision.report import build_report

    try:
        rules = load_policy(policy)
    except PolicyError as exc:
        fail(str(exc))
        return
    after = parse_since(since)
    data = with_database(settings_from(ctx),
                         lambda url: build_report(url, since=after, tag=tag))
    result = evaluate(data, rules)
    click.echo(json.dumps(result.to_json(), indent=2) if as_json else format_table(result))
    sys.exit(result.exit_code)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]),
              default="jsonl", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="File to write (default: stdout).")
@click.option("--since", default=None, help="ISO date/time or an age: 24h, 7d.")
@click.pass_context
@settings_errors_exit_2
def export(ctx: click.Context, fmt: str, out: Path | None, since: str | None) -> None:
    """Write pairs (the comparisons view) as CSV, JSON Lines or Parquet."""
    from shadowproxy.decision.export import export_pairs

    after = parse_since(since)
    count = with_database(
        settings_from(ctx),
        lambda url: export_pairs(url, fmt=fmt, out=out or sys.stdout,  # type: ignore[arg-type]
                                 since=after),
    )
    if out is not None:
        click.echo(f"shadowproxy: wrote {count} pairs to {out}", err=True)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("shadowproxy-demo.html"),
              show_default=True, help="Where to write the report.")
@click.option("--requests", "total", type=click.IntRange(10, 5000), default=300,
              show_default=True)
@click.pass_context
@settings_errors_exit_2
def demo(ctx: click.Context, out: Path, total: int) -> None:
    """Offline, no keys: simulated providers, a real proxy, scores and a report."""
    settings = settings_from(ctx)
    from shadowproxy.simulator.demo import run_demo

    sys.exit(run_async(run_demo(settings.data_dir / "demo", out, total)))


def main() -> None:
    cli(prog_name="shadowproxy")
