"""Render a :func:`shadowproxy.decision.report.build_report` dict as one self-contained HTML file.

The file must open offline and from an attachment, so CSS is inline, charts are pygal
SVG inlined with pygal's script stripped, and a Content-Security-Policy forbids any
script or fetch. Model-written text and tag names are user-controlled: the template
autoescapes everything, and the only markup passed through unescaped is our own SVG.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from typing import Any

import jinja2
import pygal
from markupsafe import Markup

from shadowproxy.decision.gate import GateResult, show_value

__all__ = ["MAX_SHOWN_CHARS", "render_html", "word_diff"]

# pygal appends a meta-path finder without ``find_spec`` (for pygal.maps plugins, which
# we do not use); it turns every later failed import in the process into an
# ImportWarning, and an error under ``-W error``. Take it back out.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != "pygal"]

MAX_SHOWN_CHARS = 4000
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


def _interval(bounds: list[float] | None) -> str:
    return "n/a" if not bounds else f"{bounds[0]:.1%} to {bounds[1]:.1%}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def _ratio(top: float | None, bottom: float | None) -> str:
    return "n/a" if top is None or bottom is None or bottom <= 0 else f"{top / bottom:.2f}x"


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


def _cdf_chart(title: str, cdf: dict[str, list[list[float]]]) -> Markup | None:
    if not any(cdf.get(side) for side in ("primary", "shadow")):
        return None
    chart = pygal.XY(
        js=[], disable_xml_declaration=True, show_dots=False, width=500, height=300,
        explicit_size=True, title=title, x_title="ms", y_title="share of requests",
        range=(0, 1), legend_at_bottom=True, truncate_legend=-1,
        # Few, whole-number x labels: the default crowds and truncates them ("10..").
        x_labels_major_count=6, show_minor_x_labels=False, truncate_label=-1,
        x_value_formatter=lambda v: f"{v:,.0f}",
        value_formatter=lambda v: f"{v:.0%}",
    )
    for side in ("primary", "shadow"):
        chart.add(side, [tuple(point) for point in cdf.get(side, [])])
    svg = _COMMENT.sub("", _SCRIPT.sub("", chart.render(is_unicode=True)))
    return Markup(svg)  # our own chart: labels are fixed strings, no model text


def _headline(report: dict[str, Any]) -> list[str]:
    s = report["overall"]
    if not s["pairs"]:
        return [f"No scored pairs with both answers yet ({s['pairs_total']} stored, "
                f"{s['pairs_unscored']} not scored): run `shadowproxy diff`."]
    lines = [f"Over {s['pairs']:,} scored pairs the shadow gave an equivalent answer "
             f"{_pct(s['agreement'])} of the time (95% interval "
             f"{_interval(s['agreement_ci95'])})."]
    if s["noise_floor"]:
        lines.append(f"For comparison, the current model agrees with itself "
                     f"{_pct(s['noise_floor']['agreement'])} of the time.")
    latency, cost = s["latency_ms"], s["cost_usd_per_1k"]
    lines.append(
        f"Shadow p95 latency is {_ratio(latency['shadow']['p95'], latency['primary']['p95'])} "
        f"the primary's; cost per request "
        f"{_ratio(cost['shadow'], cost['primary'])}; projected saving "
        f"{_usd(s['projected_saving_usd'])} per {report['projection_days']} days at the "
        "observed volume."
    )
    lines.append(f"Shadow errors {_pct(s['shadow_error_rate'])}, drops "
                 f"{_pct(s['shadow_drop_rate'])}, tool-call match "
                 f"{_pct(s['tool_call_match'])}.")
    return lines


def _scope(title: str, numbers: dict[str, Any]) -> dict[str, Any]:
    cdf = numbers.get("cdf") or {}
    charts = [_cdf_chart(label, cdf.get(metric) or {})
              for metric, label in (("latency_ms", "Latency CDF"),
                                    ("ttft_ms", "Time to first token CDF"))]
    return {"title": title, "numbers": numbers, "charts": [c for c in charts if c]}


def _calls(calls: Any) -> str:
    return json.dumps(calls, indent=2, ensure_ascii=False, default=str) if calls else ""


def _worst(entry: dict[str, Any]) -> dict[str, Any]:
    primary_text = entry["primary"]["text"]
    shadow_text = entry["shadow"]["text"]
    left, right = word_diff(primary_text[:MAX_SHOWN_CHARS], shadow_text[:MAX_SHOWN_CHARS])
    return {
        **entry,
        "primary_diff": left,
        "shadow_diff": right,
        "primary_calls": _calls(entry["primary"]["tool_calls"]),
        "shadow_calls": _calls(entry["shadow"]["tool_calls"]),
        "truncated": max(len(primary_text), len(shadow_text)) > MAX_SHOWN_CHARS,
    }


def _gate_rows(gate: GateResult) -> dict[str, Any]:
    rows = [{"scope": c.scope, "criterion": c.criterion, "passed": c.passed,
             "insufficient": c.insufficient, "result": c.result,
             "observed_text": show_value(c.observed, c.criterion),
             "threshold_text": show_value(c.threshold, c.criterion)}
            for c in gate.criteria]
    return {"verdict": gate.verdict.value, "criteria": rows}


def render_html(report: dict[str, Any], gate: GateResult | None = None) -> str:
    """The whole report page; with ``gate``, its verdict table heads the page."""
    scopes = [_scope("Overall", report["overall"])]
    scopes += [_scope(f"Tag: {tag}", numbers)
               for tag, numbers in report.get("by_tag", {}).items()]
    template = _env.get_template("report.html.j2")
    return template.render(
        report=report,
        gate=_gate_rows(gate) if gate else None,
        headline=_headline(report),
        scopes=scopes,
        worst=[_worst(w) for w in report.get("worst", [])],
        max_chars=MAX_SHOWN_CHARS,
        pct=_pct, interval=_interval, ms=_ms, usd=_usd, ratio=_ratio,
    )
