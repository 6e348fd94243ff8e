"""The ``shadowproxy`` command line (click).

Every command reads settings from the environment, then ``--config FILE`` (before or
after the command's name), then its own flags. Exit codes mean one thing each:

- ``2``: a bad or missing setting (one line naming it), for every command but ``gate``;
- ``3``: the command cannot run: the database cannot be reached, a file cannot be read or
  written, a policy is wrong (one line naming the host and port, the file or the key);
- ``gate``: ``0`` pass, ``1`` fail, ``2`` not enough data, and ``3`` for every error,
  a bad setting included, so a pipeline never reads an error as a verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from shadowproxy.decision.since import parse_since as since_cutoff
from shadowproxy.settings import Settings, SettingsError, ensure_data_dir, load_settings
from shadowproxy.tasks import run_async

T = TypeVar("T")

EXIT_BAD_SETTING = 2
EXIT_CANNOT_RUN = 3


class CannotRun(Exception):
    """The command cannot do its work; the message is one line naming the cause."""


def fail(message: str, code: int = EXIT_BAD_SETTING) -> None:
    click.echo(f"shadowproxy: error: {message}", err=True)
    sys.exit(code)


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    """Settings, or :class:`SettingsError` (the command's wrapper picks the exit code)."""
    return load_settings(ctx.obj, overrides)


def file_problem(exc: OSError) -> str:
    target = exc.filename if exc.filename is not None else "a file"
    return f"{target}: {exc.strerror or exc}"


def one_line_errors(*, setting_code: int = EXIT_BAD_SETTING, any_error_code: int | None = None
                    ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A bad setting exits ``setting_code``; a command that cannot run exits 3. With
    ``any_error_code`` an unexpected exception exits with it too (after its traceback,
    which is a bug report), instead of Python's 1."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except SettingsError as exc:
                fail(str(exc), setting_code)
            except CannotRun as exc:
                fail(str(exc), EXIT_CANNOT_RUN)
            except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
                raise
            except Exception as exc:
                if isinstance(exc, OSError) and exc.filename is not None:
                    fail(file_problem(exc), EXIT_CANNOT_RUN)
                if any_error_code is None:
                    raise
                traceback.print_exc()
                fail("unexpected error (traceback above)", any_error_code)

        return wrapper

    return decorate


settings_errors_exit_2 = one_line_errors()


class _UsageErrorExit3(click.UsageError):
    exit_code = EXIT_CANNOT_RUN


class AlwaysExit3(click.Command):
    """``gate``'s usage errors (a missing ``--policy``, a bad ``--since``) exit 3 as
    well: exit 2 is the gate's "not enough data"."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _UsageErrorExit3(exc.format_message(), exc.ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _UsageErrorExit3(exc.format_message(), exc.ctx) from None


def _config_after_command(ctx: click.Context, _param: click.Parameter,
                          value: Path | None) -> None:
    if value is not None:
        ctx.obj = value


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` after the command's name too (``shadowproxy serve --config f``)."""
    return click.option(
        "--config", type=click.Path(path_type=Path), default=None, expose_value=False,
        is_eager=True, callback=_config_after_command,
        help="TOML file with settings (flags beat it, it beats the environment).",
    )(fn)


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
@click.option("--ready-fd", type=int, default=None, metavar="FD",
              help="For a parent process: once listening, write one JSON line "
                   '{"ready": true, "proxy_port": …, "admin_port": …} to this file '
                   "descriptor and close it.")
@config_option
@click.pass_context
@settings_errors_exit_2
def serve(ctx: click.Context, no_migrate: bool, ready_fd: int | None, **flags: Any) -> None:
    """Run the proxy and its admin listener."""
    settings = settings_from(ctx, **flags)
    settings.require_primary_url()
    ensure_data_dir(settings)
    from shadowproxy.logs import setup_logging
    from shadowproxy.metrics_dir import prepare_metrics_dir
    from shadowproxy.proxy.serve import MigrationFailed, run_serve

    prepare_metrics_dir(settings.data_dir)
    setup_logging(settings)
    try:
        sys.exit(run_async(run_serve(settings, migrate=not no_migrate,
                                     listening=_ready_writer(ready_fd))))
    except MigrationFailed as exc:
        # The child already said it in one line ("shadowproxy: error: …"); keep its words.
        said = str(exc).replace("shadowproxy: error: ", "")
        raise CannotRun(said.replace("migrations failed: migrations failed: ",
                                     "migrations failed: ")) from None
    except Exception as exc:
        problem = _database_problem(exc, settings)
        if problem is None:
            raise
        raise CannotRun(problem) from None


def _ready_writer(fd: int | None) -> Callable[[int, int], None]:
    """serve's machine-readable ready message, apart from the lines people read."""

    def ready(proxy_port: int, admin_port: int) -> None:
        if fd is None:
            return
        with contextlib.suppress(OSError), os.fdopen(fd, "w") as pipe:
            pipe.write(json.dumps({"ready": True, "proxy_port": proxy_port,
                                   "admin_port": admin_port}) + "\n")

    return ready


def _database_problem(exc: BaseException, settings: Settings) -> str | None:
    import subprocess

    from shadowproxy.store.embedded import start_failure
    from shadowproxy.store.reach import database_problem

    if settings.database_url is not None:
        return database_problem(exc, settings.database_url.get_secret_value())
    if isinstance(exc, subprocess.SubprocessError):  # the embedded server's pg_ctl/initdb
        return start_failure(exc, settings.data_dir / "pg")
    return None


@cli.command()
@config_option
@click.option("--schema-only", is_flag=True,
              help="Change the schema only; pairs stored before partitioning move later "
                   "(a running serve moves them in the background).")
@click.pass_context
@settings_errors_exit_2
def migrate(ctx: click.Context, schema_only: bool) -> None:
    """Apply the database migrations and exit."""
    settings = settings_from(ctx)
    if settings.database_url is None:
        ensure_data_dir(settings)
    from shadowproxy.store.migrate import upgrade, upgrade_rows
    from shadowproxy.store.provision import database
    from shadowproxy.store.reach import database_problem, sql_problem

    url = ""

    async def go() -> None:
        nonlocal url
        async with database(settings) as resolved:
            assert resolved.database_url is not None
            url = resolved.database_url.get_secret_value()
            await upgrade(url)
            if not schema_only:
                await upgrade_rows(url, lambda line: click.echo(line, err=True))

    try:
        run_async(go())
    except Exception as exc:
        problem = (database_problem(exc, url) if url else _database_problem(exc, settings)) \
            or sql_problem(exc)
        if problem is None:
            raise
        raise CannotRun(f"migrations failed: {problem}") from None
    click.echo("shadowproxy: database is at the latest migration")


def with_database(settings: Settings, work: Callable[[str], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(url)`` against ``DATABASE_URL``, or the embedded server in ``DATA_DIR``
    (started for the command and stopped after, unless a running ``serve`` owns it).
    A database that cannot be used is :class:`CannotRun` with what to check."""
    from shadowproxy.store.reach import database_problem

    if settings.database_url is not None:
        from shadowproxy.store.urls import sqlalchemy_url

        # postgresql:// is accepted; SQLAlchemy would pick psycopg (not installed) for it.
        url = sqlalchemy_url(settings.database_url.get_secret_value())
        try:
            return run_async(work(url))
        except Exception as exc:
            problem = database_problem(exc, url)
            if problem is None:
                raise
            raise CannotRun(problem) from None
    pgdata = settings.data_dir / "pg"
    if not pgdata.exists():
        raise CannotRun(f"no database: SHADOWPROXY_DATABASE_URL is not set and there is no "
                        f"embedded database in {pgdata} (run serve or demo first, or set "
                        "SHADOWPROXY_DATA_DIR to the one they used)")
    from shadowproxy.store.embedded import EmbeddedPostgres, start_failure

    was_running = (pgdata / "postmaster.pid").exists()
    embedded = EmbeddedPostgres()
    try:
        url = embedded.start(settings.data_dir)
    except Exception as exc:
        raise CannotRun(start_failure(exc, pgdata)) from None
    try:
        return run_async(work(url))
    except Exception as exc:
        problem = database_problem(exc, url, check=f"is the embedded database in {pgdata} ok?")
        if problem is None:
            raise
        raise CannotRun(problem) from None
    finally:
        if not was_running:
            embedded.stop()


def read_policy(path: Path) -> Any:
    """The gate policy, or :class:`CannotRun` naming the file and the key."""
    from shadowproxy.decision.gate import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        raise CannotRun(str(exc)) from None
    except OSError as exc:
        raise CannotRun(f"{path}: cannot read the policy: {exc.strerror or exc}") from None


def parse_since(value: str | None) -> datetime | None:
    try:
        return since_cutoff(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=2000, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--rejudge", is_flag=True,
              help="Ask the judge again about pairs it already decided.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes scoring pairs at once (one per core is the most that helps).")
@config_option
@click.pass_context
@settings_errors_exit_2
def diff(ctx: click.Context, batch_size: int, no_progress: bool, rejudge: bool,
         jobs: int) -> None:
    """Score every stored pair not yet scored and judge what needs a judge (resumable)."""
    from shadowproxy.decision.diff import run_diff
    from shadowproxy.decision.judge import load_rubrics, make_judge

    settings = settings_from(ctx)
    rubrics = load_rubrics(settings.judge_rubric_file)
    judge = make_judge(settings)

    async def work(url: str) -> Any:
        try:
            return await run_diff(
                url, batch_size=batch_size, progress=not no_progress, judge=judge,
                judge_max_usd=settings.judge_max_usd,
                judge_concurrency=settings.judge_concurrency, rubrics=rubrics,
                rejudge=rejudge, jobs=jobs, sample=settings.judge_sample)
        finally:
            if judge is not None:
                await judge.close()

    summary = with_database(settings, work)
    counts = ", ".join(f"{summary.verdicts.get(v, 0)} {v}"
                       for v in ("equivalent", "worse", "better", "unjudged"))
    click.echo(f"shadowproxy: scored {summary.scored} pairs "
               f"({summary.agreed} agree) in {summary.seconds:.1f}s; verdicts: {counts}, "
               f"{summary.not_judged} not judged (a side failed); judge: "
               f"{summary.judge_calls} calls, ${summary.judge_usd:.4f}; "
               f"{summary.scored_in_sql} scored in PostgreSQL; report summaries updated "
               f"in {summary.summary_seconds:.1f}s")
    if summary.verdicts.get("unjudged") and judge is None:
        click.echo("shadowproxy: unjudged pairs need a judge: set SHADOWPROXY_JUDGE_MODEL "
                   "(see the README's judging section) and run diff again")


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="File to write (default: report.html, or stdout for JSON).")
@click.option("--format", "fmt", type=click.Choice(["html", "json"]), default="html",
              show_default=True)
@click.option("--since", default=None, help="ISO date/time or an age: 24h, 7d.")
@click.option("--tag", default=None, help="Only this tag.")
@click.option("--policy", type=click.Path(path_type=Path), default=None,
              help="Show this gate policy's verdict at the top of the HTML report.")
@config_option
@click.pass_context
@settings_errors_exit_2
def report(ctx: click.Context, out: Path | None, fmt: str, since: str | None,
           tag: str | None, policy: Path | None) -> None:
    """Write the evidence: one self-contained HTML file, or JSON for machines."""
    from shadowproxy.decision.gate import evaluate
    from shadowproxy.decision.report import build_report
    from shadowproxy.decision.report_html import render_html
    from shadowproxy.lifecycle_sources import current_lifecycle

    rules = read_policy(policy) if policy is not None else None  # before the database
    after = parse_since(since)
    lifecycle = current_lifecycle()  # the real day and the installed data: the edge
    data = with_database(settings_from(ctx), lambda url: build_report(
        url, since=after, tag=tag, lifecycle=lifecycle))
    if fmt == "json":
        text = json.dumps(data.to_json(), indent=2, default=str)
        if out is None:
            click.echo(text)
        else:
            out.write_text(text + "\n")
            click.echo(f"shadowproxy: wrote {out}")
        return
    gate_result = None
    if rules is not None:
        gate_result = evaluate(data, rules)
    target = out or Path("report.html")
    target.write_text(render_html(data, gate_result), encoding="utf-8")
    click.echo(f"shadowproxy: wrote {target.resolve()}")


@cli.command(cls=AlwaysExit3)
@click.option("--policy", type=click.Path(path_type=Path), required=True,
              help="TOML gate policy.")
@click.option("--since", default=None, help="ISO date/time or an age: 24h, 7d.")
@click.option("--tag", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@config_option
@click.pass_context
@one_line_errors(setting_code=EXIT_CANNOT_RUN, any_error_code=EXIT_CANNOT_RUN)
def gate(ctx: click.Context, policy: Path, since: str | None, tag: str | None,
         as_json: bool) -> None:
    """Pass (exit 0), fail (1) or not enough data (2) against a policy."""
    from shadowproxy.decision.gate import evaluate, format_table
    from shadowproxy.decision.report import build_report

    rules = read_policy(policy)
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
@click.option("--reviews", is_flag=True,
              help="The people's labels (the human_reviews view, one row per label or "
                   "skip) instead of the pairs.")
@config_option
@click.pass_context
@settings_errors_exit_2
def export(ctx: click.Context, fmt: str, out: Path | None, since: str | None,
           reviews: bool) -> None:
    """Write pairs (the comparisons view) as CSV, JSON Lines or Parquet."""
    from shadowproxy.decision.export import export_pairs

    after = parse_since(since)
    count = with_database(
        settings_from(ctx),
        lambda url: export_pairs(url, fmt=fmt, out=out or sys.stdout,  # type: ignore[arg-type]
                                 since=after, reviews=reviews),
    )
    if out is not None:
        click.echo(f"shadowproxy: wrote {count} {'labels' if reviews else 'pairs'} to {out}",
                   err=True)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("shadowproxy-demo.html"),
              show_default=True, help="Where to write the report.")
@click.option("--requests", "total", type=click.IntRange(10, 5000), default=300,
              show_default=True)
@config_option
@click.pass_context
@settings_errors_exit_2
def demo(ctx: click.Context, out: Path, total: int) -> None:
    """Offline, no keys: simulated providers, a real proxy, scores and a report."""
    settings = settings_from(ctx)
    ensure_data_dir(settings)
    from shadowproxy.simulator.demo import run_demo

    sys.exit(run_async(run_demo(settings.data_dir / "demo", out, total)))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8001, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(0, 600_000), default=0.0,
              show_default=True, help="How long the primary models take to answer.")
@click.option("--shadow-latency-ms", type=click.FloatRange(0, 600_000), default=None,
              help="How long claude-haiku* takes (default: as --latency-ms).")
@click.option("--chunk-ms", type=click.FloatRange(0, 60_000), default=0.0, show_default=True,
              help="Pause between stream events.")
def simulate(host: str, port: int, latency_ms: float, shadow_latency_ms: float | None,
             chunk_ms: float) -> None:
    """Simulated OpenAI and Anthropic APIs, to try ``serve`` without keys.

    Any non-empty key is accepted. Point serve at it as both primary and shadow:

    \b
      SHADOWPROXY_PRIMARY_URL=http://127.0.0.1:8001 \\
      SHADOWPROXY_SHADOW_BASE_URL=http://127.0.0.1:8001 \\
      SHADOWPROXY_SHADOW_API_KEY=sk-ant-sim shadowproxy serve

    Put #disagree, #tool, #json, #error=529 or #slow=2000 in a prompt to script the
    shadow's answer (see ``shadowproxy.simulator``).
    """
    from shadowproxy.simulator.app import main as simulator_main

    argv = ["--host", host, "--port", str(port), "--latency-ms", str(latency_ms),
            "--chunk-ms", str(chunk_ms)]
    if shadow_latency_ms is not None:
        argv += ["--shadow-latency-ms", str(shadow_latency_ms)]
    url = f"http://{host}:{port}"
    click.echo(f"shadowproxy: simulated OpenAI and Anthropic APIs on {url} (any key works); "
               "try it with:", err=True)
    click.echo(f"  SHADOWPROXY_PRIMARY_URL={url} SHADOWPROXY_SHADOW_BASE_URL={url} "
               "SHADOWPROXY_SHADOW_API_KEY=sk-ant-sim shadowproxy serve", err=True)
    try:
        simulator_main(argv)
    except OSError as exc:
        raise CannotRun(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@config_option
@click.pass_context
@settings_errors_exit_2
def psql(ctx: click.Context, psql_args: tuple[str, ...]) -> None:
    """Open psql on the pairs: DATABASE_URL, or the embedded database in DATA_DIR
    (started for the session when serve is not running). Extra arguments go to psql,
    e.g. ``shadowproxy psql -- -c "SELECT count(*) FROM comparisons"``."""
    settings = settings_from(ctx)
    from shadowproxy.store.embedded import psql_command

    def run(url: str) -> Coroutine[Any, Any, int]:
        async def go() -> int:
            argv, env = psql_command(url, psql_args)
            proc = await asyncio.create_subprocess_exec(*argv, env=env)
            return await proc.wait()

        return go()

    try:
        code = with_database(settings, run)
    except FileNotFoundError as exc:
        raise CannotRun(f"psql not found ({exc.filename}); install the PostgreSQL "
                        "client") from None
    sys.exit(code)


@cli.group()
def reviewer() -> None:
    """The people who label pairs on the review page (/review on the admin listener)."""


def _reviewers(ctx: click.Context, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(connection)``; a bad name exits 2, a database without the review
    tables exits 3 saying to migrate."""
    import asyncpg

    from shadowproxy.store.reviewers import BadReviewerName
    from shadowproxy.store.urls import asyncpg_dsn

    async def go(url: str) -> T:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return with_database(settings_from(ctx), go)
    except BadReviewerName as exc:
        fail(str(exc), EXIT_BAD_SETTING)
        raise  # not reached
    except asyncpg.UndefinedTableError:
        raise CannotRun("the database has no reviewers table yet: run `shadowproxy migrate` "
                        "(or serve, which migrates)") from None


@reviewer.command("add")
@click.argument("name")
@config_option
@click.pass_context
@settings_errors_exit_2
def reviewer_add(ctx: click.Context, name: str) -> None:
    """Add a reviewer and print their token once (on stdout; it is stored hashed)."""
    from shadowproxy.store.reviewers import BadReviewerName, add_reviewer, check_name

    try:
        check_name(name)
    except BadReviewerName as exc:
        fail(str(exc), EXIT_BAD_SETTING)
    token = _reviewers(ctx, lambda conn: add_reviewer(conn, name))
    click.echo(f"shadowproxy: reviewer {name} added; their token follows, shown this once "
               "(only its hash is stored). Give it to them privately: they sign in at "
               "/login on the admin listener and label at /review.", err=True)
    click.echo(token)


@reviewer.command("list")
@config_option
@click.pass_context
@settings_errors_exit_2
def reviewer_list(ctx: click.Context) -> None:
    """The reviewers, when they were added, and how much they labelled."""
    from shadowproxy.store.reviewers import list_reviewers

    rows = _reviewers(ctx, list_reviewers)
    if not rows:
        click.echo("shadowproxy: no reviewers yet: `shadowproxy reviewer add NAME`", err=True)
        return
    width = max(4, *(len(r.name) for r in rows))
    click.echo(f"{'NAME':<{width}}  {'ADDED':<16}  {'LABELS':>6}  {'SKIPS':>5}  LAST LABEL")
    for r in rows:
        last = r.last_label_at.strftime("%Y-%m-%d %H:%M") if r.last_label_at else "-"
        click.echo(f"{r.name:<{width}}  {r.created_at.strftime('%Y-%m-%d %H:%M'):<16}  "
                   f"{r.labels:>6}  {r.skips:>5}  {last}")


@reviewer.command("remove")
@click.argument("name")
@config_option
@click.pass_context
@settings_errors_exit_2
def reviewer_remove(ctx: click.Context, name: str) -> None:
    """Remove a reviewer: their token and sessions stop working; their labels stay."""
    from shadowproxy.store.reviewers import remove_reviewer

    _reviewers(ctx, lambda conn: remove_reviewer(conn, name))
    click.echo(f"shadowproxy: removed reviewer {name}: their token and sessions no longer "
               "work; their labels stay", err=True)


def main() -> None:
    cli(prog_name="shadowproxy")


# The cutover commands live with the rest of the cutover; they use the helpers above.
from shadowproxy.cutover.commands import cutover  # noqa: E402

cli.add_command(cutover)
