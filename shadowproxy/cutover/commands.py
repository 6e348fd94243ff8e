"""``shadowproxy cutover start | status | advance | pause | resume | rollback``.

Exit codes: bad input (steps, a tag with no plan) and bad settings exit 2 with one line;
a database that cannot be used exits 3. ``advance`` exits like ``gate`` — 0 passed (next
step), 1 failed (back to 0%), 2 not enough data or paused (stays), 3 could not run,
every error included — so a pipeline can run it on a schedule.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import click

from shadowproxy.cli import (
    EXIT_CANNOT_RUN,
    AlwaysExit3,
    CannotRun,
    config_option,
    fail,
    one_line_errors,
    read_policy,
    settings_from,
    with_database,
)
from shadowproxy.cutover import plans_db
from shadowproxy.cutover.plan import Plan, StepsError, parse_steps
from shadowproxy.settings import SettingsError
from shadowproxy.store.urls import asyncpg_dsn

T = TypeVar("T")
settings_errors = one_line_errors()  # a bad setting or bad input: exit 2, one line
NOT_MIGRATED = ("the database has no cutover tables: run `shadowproxy migrate` (serve does it "
                "at start) and try again")
RESPONSES_NOTE = ("OpenAI Responses API requests (/v1/responses) are not routed: they stay "
                  "on the current model whatever the plan.")


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _tag(value: str) -> str:
    """A tag as the proxy sees it in x-shadow-tag; SettingsError (one line) otherwise."""
    if not value.strip() or len(value) > 1000 or any(ord(c) < 32 for c in value):
        raise SettingsError(f"--tag: {value!r} is not a tag (the x-shadow-tag value, "
                            "printable, at most 1,000 characters)")
    return value


def _run(ctx: click.Context, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go(url: str) -> T:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return await work(conn)
        except asyncpg.UndefinedTableError:
            raise CannotRun(NOT_MIGRATED) from None
        finally:
            await conn.close()

    try:
        return with_database(settings_from(ctx), go)
    except plans_db.NoPlan as exc:
        raise SettingsError(str(exc)) from None


def _steps_text(plan: Plan) -> str:
    return ",".join(str(s) for s in plan.steps)


def describe(plan: Plan) -> str:
    where = (f"{plan.percent}% (step {plan.step + 1} of {len(plan.steps)}: "
             f"{_steps_text(plan)})" if plan.percent else
             f"0% (rolled back; steps were {_steps_text(plan)})")
    paused = ", paused" if plan.paused else ""
    return f"{plan.tag}: {where}{paused}, since {plan.step_started_at:%Y-%m-%d %H:%M:%S %Z}"


def _event_line(event: plans_db.Event) -> str:
    return (f"{event.action} {event.from_percent}% -> {event.to_percent}% by {event.actor} "
            f"at {event.at:%Y-%m-%d %H:%M:%S %Z}: {event.reason}")


@click.group()
def cutover() -> None:
    """Move a tag to the shadow model in steps, the current model as fallback."""


actor_option = click.option("--actor", default=None,
                            help="Who is acting, for the event (default: user@host).")


@cutover.command()
@click.option("--tag", required=True, help="The use case (x-shadow-tag value).")
@click.option("--steps", required=True, help="Percents of conversations, rising: 5,25,50,100.")
@actor_option
@config_option
@click.pass_context
@settings_errors
def start(ctx: click.Context, tag: str, steps: str, actor: str | None) -> None:
    """Start (or replace) a tag's plan at its first step."""
    try:
        parsed = parse_steps(steps)
    except StepsError as exc:
        raise SettingsError(str(exc)) from None
    tag = _tag(tag)
    old, new = _run(ctx, lambda c: plans_db.start(c, tag, parsed, actor or default_actor()))
    replaced = f" (replaced a plan at {old.percent}%)" if old else ""
    click.echo(f"shadowproxy: {tag}: {new.percent}% of conversations on the shadow model, "
               f"step 1 of {len(new.steps)}{replaced}; workers follow within seconds")


@cutover.command()
@click.option("--tag", default=None, help="Only this tag.")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
@config_option
@click.pass_context
@settings_errors
def status(ctx: click.Context, tag: str | None, as_json: bool) -> None:
    """Each tag: its step, percent, paused or not, and its last event."""

    async def read(conn: asyncpg.Connection) -> list[tuple[Plan, plans_db.Event | None]]:
        plans = await plans_db.read_plans(conn)
        out = []
        for plan in plans:
            if tag is None or plan.tag == tag:
                events = await plans_db.read_events(conn, plan.tag, 1)
                out.append((plan, events[0] if events else None))
        return out

    rows = _run(ctx, read)
    if as_json:
        click.echo(json.dumps({
            "plans": [{"tag": p.tag, "steps": list(p.steps), "step": p.step + 1,
                       "percent": p.percent, "paused": p.paused,
                       "step_started_at": p.step_started_at.isoformat(),
                       "last_event": e.to_json() if e else None} for p, e in rows],
            "responses_api": "not routed",
        }, indent=2))
        return
    if not rows:
        click.echo("no cutover plans" + (f" for tag {tag!r}" if tag else ""))
    for plan, event in rows:
        click.echo(describe(plan))
        if event is not None:
            click.echo(f"  last: {_event_line(event)}")
    click.echo(RESPONSES_NOTE)


def _simple(name: str, help_text: str,
            change: Callable[[asyncpg.Connection, str, str], Awaitable[tuple[Plan, bool]]],
            unchanged: str) -> None:
    @cutover.command(name=name, help=help_text)
    @click.option("--tag", required=True)
    @actor_option
    @config_option
    @click.pass_context
    @settings_errors
    def command(ctx: click.Context, tag: str, actor: str | None) -> None:
        plan, changed = _run(ctx, lambda c: change(c, _tag(tag), actor or default_actor()))
        click.echo(f"shadowproxy: {describe(plan)}" if changed
                   else f"shadowproxy: {tag}: {unchanged} ({describe(plan)})")


_simple("pause", "Hold the tag at its step: advance refuses until resume (the guard still "
        "acts).", lambda c, t, a: plans_db.set_paused(c, t, True, a), "already paused")
_simple("resume", "Let advance move a paused tag again.",
        lambda c, t, a: plans_db.set_paused(c, t, False, a), "not paused")


@cutover.command()
@click.option("--tag", required=True)
@click.option("--reason", default="rolled back by hand", show_default=True,
              help="Why, for the event.")
@actor_option
@config_option
@click.pass_context
@settings_errors
def rollback(ctx: click.Context, tag: str, reason: str, actor: str | None) -> None:
    """Every conversation of the tag back on the current model, at once."""
    plan, changed = _run(ctx, lambda c: plans_db.rollback(c, _tag(tag), actor or default_actor(),
                                                          reason))
    click.echo(f"shadowproxy: {describe(plan)}" if changed
               else f"shadowproxy: {tag}: already at 0%")


@cutover.command(cls=AlwaysExit3)
@click.option("--tag", required=True)
@click.option("--policy", type=click.Path(path_type=Path), required=True,
              help="TOML gate policy, as for `gate`.")
@click.option("--no-progress", is_flag=True, help="No progress bars while judging.")
@actor_option
@config_option
@click.pass_context
@one_line_errors(setting_code=EXIT_CANNOT_RUN, any_error_code=EXIT_CANNOT_RUN)
def advance(ctx: click.Context, tag: str, policy: Path, no_progress: bool,
            actor: str | None) -> None:
    """Judge the current step's pairs; pass → next step (0), fail → 0% (1), not enough
    data or paused → stays (2), could not run (3)."""
    from shadowproxy.cutover.advance import JudgeOptions, run_advance
    from shadowproxy.decision.gate import format_table
    from shadowproxy.decision.judge import load_rubrics, make_judge

    tag = _tag(tag)
    rules = read_policy(policy)
    settings = settings_from(ctx)
    rubrics = load_rubrics(settings.judge_rubric_file)
    judge = make_judge(settings)

    async def work(url: str) -> Any:
        try:
            return await run_advance(url, tag=tag, policy=rules,
                                     actor=actor or default_actor(),
                                     judging=JudgeOptions(judge, settings.judge_max_usd,
                                                          settings.judge_concurrency,
                                                          rubrics, not no_progress))
        except asyncpg.UndefinedTableError:
            raise CannotRun(NOT_MIGRATED) from None
        finally:
            if judge is not None:
                await judge.close()

    outcome = with_database(settings, work)
    if outcome.gate is not None:
        click.echo(format_table(outcome.gate))
    if outcome.exit_code == EXIT_CANNOT_RUN:
        fail(outcome.message, EXIT_CANNOT_RUN)
    click.echo(f"shadowproxy: {outcome.message}")
    sys.exit(outcome.exit_code)
