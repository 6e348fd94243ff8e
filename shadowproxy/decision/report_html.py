"""Render a :class:`~shadowproxy.decision.report_model.Report` as one self-contained HTML file.

The file must open offline and from an attachment, so CSS is inline, charts are pygal
SVG inlined with pygal's script stripped, and a Content-Security-Policy forbids any
script or fetch. Model-written text, prompts, judge reasons and tag names are
user-controlled: the template autoescapes everything, and the only markup passed
through unescaped is our own SVG.

Numbers are worded for a release manager signing off: every gate row says what it
compares (an interval bound, not "observed"), costs read as a saving or an extra cost,
dollar amounts carry enough digits to support the ratio printed beside them, and a
projection says what it extrapolates from, or why it will not.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any

import jinja2
import pygal
from markupsafe import Markup

from shadowproxy.decision.calibration import VERDICTS
from shadowproxy.decision.gate import GateResult, Verdict
from shadowproxy.decision.report_model import (
    ConversationSummary,
    Interval,
    Projection,
    Report,
    ScopeSummary,
    Series,
    UnjudgedCause,
    WorstPair,
    ratio,
)

__all__ = ["MAX_SHOWN_CHARS", "render_html", "saving_words", "usd", "word_diff"]

# pygal appends a meta-path finder without ``find_spec`` (for pygal.maps plugins, which
# we do not use); it turns every later failed import in the process into an
# ImportWarning, and an error under ``-W error``. Take it back out.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != "pygal"]

MAX_SHOWN_CHARS = 4000
MAX_PROMPT_CHARS = 1500
# Up to this many samples per side, every point of the CDF gets a dot: a handful of
# requests must read as a handful of requests, not as a line.
DOTS_UP_TO = 40
_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL | re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TOKENS = re.compile(r"\s+|\S+")

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("shadowproxy.decision", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _interval(bounds: Interval | None) -> str:
    return "n/a" if bounds is None else f"{bounds.low:.1%} to {bounds.high:.1%}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def usd(value: float | None) -> str:
    """Dollars with at least three significant digits below $10 ($0.0412, not $0.04),
    so two amounts side by side support the ratio printed next to them."""
    if value is None:
        return "n/a"
    size = abs(value)
    if size >= 10 or size == 0:
        return f"${size:,.2f}"
    decimals = max(2, 2 - math.floor(math.log10(size)))
    return f"${size:,.{decimals}f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def saving_words(projection: Projection) -> str:
    """"saves $X per 30 days", "costs $X more per 30 days", or why there is no figure."""
    if projection.saving_usd is None:
        return f"no projection: {projection.refused}"
    amount = usd(projection.saving_usd)
    if projection.saving_usd < 0:
        return f"costs {amount} more per {projection.days} days"
    return f"saves {amount} per {projection.days} days"


def _cost_words(scope: ScopeSummary) -> str:
    cost = scope.cost_usd_per_1k
    share = cost.ratio
    if cost.primary is None and cost.shadow is None:
        return "no cost data yet"
    if share is None:
        return "cost not comparable (a side has no price)"
    if share <= 1:
        return f"the shadow costs {1 - share:.0%} less per request"
    return f"the shadow costs {share - 1:.0%} more per request"


def word_diff(old: str, new: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Word-level diff: (old side as equal/del runs, new side as equal/ins runs)."""
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    left: list[tuple[str, str]] = []
    right: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            left.append(("equal", "".join(a[i1:i2])))
            right.append(("equal", "".join(b[j1:j2])))
            continue
        if i2 > i1:
            left.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            right.append(("ins", "".join(b[j1:j2])))
    return left, right


def _x_range(series: Series) -> tuple[float, float]:
    """The x axis spans the data with a margin; one repeated value still gets a width,
    so a handful of equal latencies is a visible step, not a line on the axis."""
    xs = [x for x, _ in (*series.primary, *series.shadow)]
    low, high = min(xs), max(xs)
    margin = (high - low) * 0.05 or max(abs(high) * 0.1, 1.0)
    return max(0.0, low - margin), high + margin


def _ticks(low: float, high: float, count: int = 8) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) across ``low..high``:
    pygal's own pick follows the data and gives labels like 400, 600, 1,100, 1,300."""
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) // step) + 1)]


def _cdf_chart(title: str, series: Series) -> Markup | None:
    if not series.primary and not series.shadow:
        return None
    few = series.samples <= DOTS_UP_TO
    x_range = _x_range(series)
    chart = pygal.XY(
        js=[], disable_xml_declaration=True, show_dots=few, dots_size=3, stroke=True,
        width=500, height=300, explicit_size=True,
        title=f"{title} ({series.samples:,} request{'s' if series.samples != 1 else ''})",
        x_title="ms", y_title="share of requests at or below", range=(0, 1),
        xrange=x_range, legend_at_bottom=True, truncate_legend=-1,
        x_labels=_ticks(*x_range), truncate_label=-1,
        x_value_formatter=lambda v: f"{v:,.0f}",
        value_formatter=lambda v: f"{v:.0%}",
    )
    for side, points in (("primary", series.primary), ("shadow", series.shadow)):
        chart.add(side, [tuple(point) for point in points])
    svg = _COMMENT.sub("", _SCRIPT.sub("", chart.render(is_unicode=True)))
    return Markup(svg)  # our own chart: labels are fixed strings, no model text


@dataclass(frozen=True, slots=True)
class _Sample:
    share: float | None
    words: str


def _sample(scope: ScopeSummary) -> _Sample | None:
    """Which of the pairs needing a judge it saw, when it did not see them all."""
    sample = scope.sample_json()
    frame, judged = sample["frame"], sample["judged"]
    if not frame or judged == frame:
        return None
    words = (f"the judge saw {judged:,} of the {frame:,} pairs that needed it (a uniform "
             "random sample per tag, JUDGE_SAMPLE); ")
    words += ("worse, equivalent and better are estimated from it, with intervals that "
              "include the sampling" if scope.sampled else
              "no share can be estimated until it has judged some")
    return _Sample(sample["share"], words)


@dataclass(frozen=True, slots=True)
class _ScopeView:
    key: str  # "overall" or "tag:<name>"
    title: str
    s: ScopeSummary
    mark: str | None  # the gate's result for this scope, when a gate was given
    charts: list[Markup]
    conversation: str | None = None  # conversations with a worse shadow, in words
    sample: _Sample | None = None  # the judge's sample, when it saw only part


def _conversation_words(c: ConversationSummary | None) -> str | None:
    if c is None or not c.conversations:
        return None
    if not c.with_worse:
        return f"none of {c.conversations:,} conversations has a shadow answer judged worse"
    turns = ", ".join(f"turn {t}: {n:,}" for t, n in sorted(c.first_worse_turns.items()))
    return (f"{c.with_worse:,} of {c.conversations:,} conversations "
            f"({_pct(c.worse_share)}) have a shadow answer judged worse; it first happens "
            f"at {turns}" if turns else
            f"{c.with_worse:,} of {c.conversations:,} conversations have a shadow answer "
            "judged worse")


def _scope_mark(gate: GateResult | None, key: str) -> str | None:
    if gate is None:
        return None
    rows = [c for c in gate.criteria if c.scope == key]
    if any(c.passed is False and not c.insufficient for c in rows):
        return "fail"
    if any(c.insufficient for c in rows):
        return "not enough data"
    return "pass"


def _scope(key: str, title: str, scope: ScopeSummary, gate: GateResult | None,
           conversation: ConversationSummary | None = None) -> _ScopeView:
    charts = [_cdf_chart("Latency", scope.latency_cdf),
              _cdf_chart("Time to first token, streamed only", scope.ttft_cdf)]
    return _ScopeView(key, title, scope, _scope_mark(gate, key), [c for c in charts if c],
                      _conversation_words(conversation), _sample(scope))


def _ttft_note(scope: ScopeSummary) -> str:
    """Beside every TTFT row: TTFT covers streamed requests, latency all of them."""
    return f"streamed requests only (n = {scope.ttft_streamed_pairs:,})"


def _headline(report: Report) -> list[str]:
    s = report.overall
    if not s.pairs_total:
        return ["No pairs recorded yet: point an application at the proxy."]
    lines: list[str] = []
    no_judge = s.unjudged_for(UnjudgedCause.NO_JUDGE)
    if no_judge:
        lines.append(
            f"A judge is needed: {no_judge:,} of {s.pairs_total:,} pairs could not be "
            "compared without one (answers that differ in wording need a judge to say "
            "whether they are as good).")
    if s.pairs:
        worse, better = _pct(s.worse_rate), _pct(s.better_rate)
        caveat = (" These are only the pairs decided without a judge (identical answers "
                  "or equal tool calls), so they flatter the shadow.") if no_judge else ""
        sampled = (" (estimated from the judge's uniform random sample of the pairs that "
                   "needed it: the intervals include the sampling)") if s.sampled else ""
        lines.append(
            f"Of {s.pairs:,} pairs with a verdict, the shadow's answer was worse in "
            f"{worse} (95% CI {_interval(s.worse_rate_ci95)}), equivalent in "
            f"{_pct(s.agreement)} and better in {better}{sampled}.{caveat}")
        lines += _people_line(s)
        floor = s.noise_floor
        if floor is not None and floor.worse_rate is not None:
            lines.append(
                f"Noise floor: the current model's own second answer is judged worse "
                f"{_pct(floor.worse_rate)} of the time ({floor.pairs:,} replayed pairs).")
    else:
        lines.append(f"No pair has a verdict yet ({s.pairs_total:,} recorded).")
    lines += [u.advice + "." for u in s.unjudged]
    lines.append(
        f"Shadow p95 latency is {_times(s.latency_ms.p95_ratio)} the primary's; "
        f"{_cost_words(s)}; {saving_words(s.projection)}.")
    lines.append(f"Shadow errors {_pct(s.shadow_error_rate)}, drops "
                 f"{_pct(s.shadow_drop_rate)}, tool-call match {_pct(s.tool_call_match)}.")
    return lines


def _people_line(s: ScopeSummary) -> list[str]:
    """What people's labels say of the judge, and the calibrated worse rate."""
    human = s.human
    if human is None or not human.frame:
        return []
    line = human.summary[:1].upper() + human.summary[1:]
    worse = human.worse
    if worse is not None:
        line += (f". Calibrated by their labels, the shadow is worse in {_pct(worse.rate)} "
                 f"(95% CI {_pct(worse.low)} to {_pct(worse.high)}), against "
                 f"{_pct(s.worse_rate)} by the judge alone")
    return [line + "."]


def _calls(calls: Any) -> str:
    return json.dumps(list(calls), indent=2, ensure_ascii=False, default=str) if calls else ""


def _worst(entry: WorstPair) -> dict[str, Any]:
    primary_text, shadow_text = entry.primary.text, entry.shadow.text
    left, right = word_diff(primary_text[:MAX_SHOWN_CHARS], shadow_text[:MAX_SHOWN_CHARS])
    prompt = entry.prompt
    return {
        "pair": entry,
        "prompt": prompt[-MAX_PROMPT_CHARS:],
        "prompt_cut": len(prompt) > MAX_PROMPT_CHARS,
        "primary_diff": left,
        "shadow_diff": right,
        "primary_calls": _calls(entry.primary.tool_calls),
        "shadow_calls": _calls(entry.shadow.tool_calls),
        "truncated": max(len(primary_text), len(shadow_text)) > MAX_SHOWN_CHARS,
    }


def _worst_empty_message(report: Report) -> str:
    """Says what the empty list means: nothing judged is not "nothing worse"."""
    s = report.overall
    if not s.pairs:
        return ("No pair has a verdict yet, so there is nothing to show here; "
                "see the unjudged pairs above.")
    return f"None of the {s.pairs:,} pairs with a verdict was judged worse."


def _models_line(report: Report) -> str:
    s = report.overall
    def names(models: tuple[str, ...]) -> str:
        return ", ".join(models) if models else "none seen"
    judge = s.judge.model or (
        "none configured" if s.unjudged_for(UnjudgedCause.NO_JUDGE) else "none used")
    return (f"primary: {names(s.models.primary)} · shadow: {names(s.models.shadow)} · "
            f"judge: {judge}")


def render_html(report: Report, gate: GateResult | None = None) -> str:
    """The whole report page; with ``gate``, its verdict table heads the page."""
    scopes = [_scope("overall", "Overall", report.overall, gate,
                     report.conversations.get(""))]
    scopes += [_scope(f"tag:{tag}", f"Tag: {tag}", numbers, gate,
                      report.conversations.get(tag))
               for tag, numbers in sorted(report.by_tag.items())]
    template = _env.get_template("report.html.j2")
    failing = [c for c in gate.criteria if c.passed is False and not c.insufficient] \
        if gate else []
    return template.render(
        report=report,
        window=report.window,
        gate=gate,
        verdict=gate.verdict.value if gate else None,
        verdict_word={Verdict.PASS: "PASS", Verdict.FAIL: "FAIL",
                      Verdict.INSUFFICIENT: "NOT ENOUGH DATA"}[gate.verdict] if gate else "",
        failing=failing,
        headline=_headline(report),
        models=_models_line(report),
        scopes=scopes,
        worst=[_worst(w) for w in report.worst],
        worst_empty=_worst_empty_message(report),
        max_chars=MAX_SHOWN_CHARS,
        pct=_pct, interval=_interval, ms=_ms, usd=usd, times=_times, ratio=ratio,
        saving_words=saving_words, cost_words=_cost_words,
        no_judge=UnjudgedCause.NO_JUDGE, ttft_note=_ttft_note,
        verdict_names=VERDICTS,
    )
