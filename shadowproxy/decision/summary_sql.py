"""The SQL that summarises pairs into the report's numbers. Pure: text only, no I/O.

:func:`summary_select` reads the pairs of some time ranges (a filter on ``pairs p``) and
returns one row per 10-minute slot and tag, shaped like a
``report_rollups`` row: ``first_at``, ``last_at``, ``facts`` (name → number; numbers of
two rows add up), ``models`` and ``examples``. ``shadowproxy.decision.summaries`` stores
these rows for slots that are over, merges stored and fresh rows for a report, and adds
up days. The names in ``facts``:

* ``n.<count>``: the counts :data:`COUNTS` names (shares' numerators and denominators);
* ``usd.<side>`` and ``usd.<side>.n``: cost sums and how many pairs had a cost;
* ``unjudged.<cause>``: pairs without a verdict by cause (:func:`cause_sql`);
* ``h.<metric>.<bucket>``: latency and TTFT histograms (``shadowproxy.decision.histogram``);
* ``path.<json path>``: pairs whose JSON answers differ there (each row keeps its
  :data:`TOP_PATHS_KEPT` most frequent paths, so a rare path can be missed);
* ``conv.opened``, ``conv.worse``, ``conv.turn.<n>``: conversations that opened in the
  slot, those with a shadow answer judged worse at some turn, and that turn (the first
  worse answer, in the order the pairs were received).

Change :data:`LAYOUT` whenever a name or its meaning changes: stored rows of another
layout are rebuilt.
"""

from __future__ import annotations

from shadowproxy.decision.histogram import bucket_sql

__all__ = ["COUNTS", "LAYOUT", "METRICS", "SLOT_SECONDS",
           "TOP_PATHS_KEPT", "cause_sql", "slot_sql", "summary_select"]

LAYOUT = 1
SLOT_SECONDS = 600
TOP_PATHS_KEPT = 100
METRICS = ("primary_latency_ms", "shadow_latency_ms", "primary_ttft_ms", "shadow_ttft_ms")


def slot_sql(column: str, seconds: int = SLOT_SECONDS) -> str:
    """The start of the slot (or day: 86400) holding ``column``, in any time zone."""
    return f"to_timestamp(floor(extract(epoch FROM {column}) / {seconds}) * {seconds})"


def _answered(side: str, alias: str = "p") -> str:
    """SQL twin of :func:`shadowproxy.decision.scoring.answered`."""
    return f"({alias}.{side}_error IS NULL AND coalesce({alias}.{side}_status, 0) < 400)"


def _tool_flag(column: str) -> str:
    return (f"(CASE WHEN jsonb_typeof({column}) = 'array' "
            f"THEN jsonb_array_length({column}) ELSE 0 END > 0)")


_JUDGED = "('equivalent', 'better', 'worse')"
def cause_sql(alias: str = "s") -> str:
    """SQL twin of report_model.classify_unjudged over ``{alias}.verdict``,
    ``{alias}.judge_reason`` and ``{alias}.scored_at`` (a test holds them to the same
    answers)."""
    reason = f"lower({alias}.judge_reason)"
    return (
        f"CASE WHEN {alias}.verdict IS NULL THEN "
        f"CASE WHEN {alias}.scored_at IS NOT NULL THEN 'scored without a verdict' "
        "ELSE 'awaiting diff' END "
        f"WHEN coalesce({alias}.judge_reason, '') = '' THEN 'no judge configured' "
        f"WHEN {reason} LIKE '%judge_sample%' THEN 'not in the judge''s sample' "
        f"WHEN {reason} LIKE '%budget%' OR {reason} LIKE '%max_usd%' "
        "THEN 'judge budget spent' "
        f"WHEN {reason} LIKE '%no judge%' OR {reason} LIKE '%judge_model%' "
        f"OR {reason} LIKE '%not configured%' THEN 'no judge configured' "
        "ELSE 'judge failed' END"
    )


# One row per pair, with what the aggregates below need.
_SOURCE = f"""
SELECT p.id, p.received_at, {slot_sql('p.received_at')} AS slot,
  p.tag IS NOT NULL AS tagged, coalesce(p.tag, '') AS tag, p.tag AS pair_tag,
  p.conversation_id, p.turn,
  p.shadow_outcome AS outcome, s.scored_at IS NOT NULL AS scored,
  {_answered('primary')} AS primary_ok,
  (p.shadow_outcome = 'ok' AND {_answered('shadow')}) AS shadow_ok,
  s.verdict, s.verdict_method, s.judge_reason, s.stop_reason_match, s.tool_call_match,
  s.scored_at,
  s.position_inconsistent, s.json_diff_paths, s.judge_model, s.replay_verdict,
  s.replay_verdict_method,
  coalesce(s.judge_calls, 0) + coalesce(s.replay_judge_calls, 0) AS judge_calls,
  coalesce(s.judge_cost_usd, 0) + coalesce(s.replay_judge_cost_usd, 0) AS judge_cost,
  ({_tool_flag('p.primary_tool_calls')} OR {_tool_flag('p.shadow_tool_calls')}) AS tools,
  p.primary_model, p.shadow_model, p.primary_cost_usd, p.shadow_cost_usd,
  {', '.join(f'{bucket_sql("p." + m)} AS b_{m}' for m in METRICS)}
FROM pairs p
-- By primary key, pair by pair: a hash join would read all of scores for every slot.
LEFT JOIN LATERAL (SELECT * FROM scores s
                   WHERE s.pair_id = p.id AND s.received_at = p.received_at OFFSET 0) AS s
  ON TRUE
WHERE __WHERE__
"""

_BOTH = "(primary_ok AND shadow_ok)"
_FRAME = f"({_BOTH} AND (verdict_method = 'judge' OR verdict = 'unjudged'))"
_REPLAY_FRAME = ("(primary_ok AND (replay_verdict_method = 'judge' "
                 "OR replay_verdict = 'unjudged'))")

# name -> the rows it counts (each a FILTER over one slot and tag).
COUNTS: dict[str, str] = {
    "total": "TRUE",
    "unscored": "NOT scored",
    **{f"outcome.{o}": f"outcome = '{o}'"
       for o in ("ok", "error", "timeout", "dropped", "skipped")},
    **{f"verdict.{v}": f"{_BOTH} AND verdict = '{v}'"
       for v in ("equivalent", "better", "worse")},
    "scored": f"{_BOTH} AND scored",
    "stop_matched": f"{_BOTH} AND scored AND stop_reason_match",
    "tool_pairs": f"{_BOTH} AND scored AND tools",
    "tool_matched": f"{_BOTH} AND scored AND tools AND tool_call_match",
    "attempted": "primary_ok AND outcome IN ('ok', 'error', 'timeout')",
    "shadow_failed": "primary_ok AND outcome IN ('ok', 'error', 'timeout') AND NOT shadow_ok",
    "replays": f"primary_ok AND replay_verdict IN {_JUDGED}",
    "replay_worse": "primary_ok AND replay_verdict = 'worse'",
    "judge_pairs": f"{_BOTH} AND verdict_method = 'judge'",
    "position_inconsistent": f"{_BOTH} AND verdict_method = 'judge' AND position_inconsistent",
    # Strata of the verdict shares: settled by the tiers, or the judge's frame.
    "tier": f"{_BOTH} AND verdict_method IN ('exact', 'structural') AND verdict IN {_JUDGED}",
    "frame": _FRAME,
    **{f"frame.{v}": f"{_FRAME} AND verdict_method = 'judge' AND verdict = '{v}'"
       for v in ("equivalent", "better", "worse")},
    "replay_tier": ("primary_ok AND replay_verdict_method IN ('exact', 'structural') "
                    f"AND replay_verdict IN {_JUDGED}"),
    "replay_frame": _REPLAY_FRAME,
    "replay_frame.judged": (f"{_REPLAY_FRAME} AND replay_verdict_method = 'judge' "
                            f"AND replay_verdict IN {_JUDGED}"),
    "replay_frame.worse": (f"{_REPLAY_FRAME} AND replay_verdict_method = 'judge' "
                           "AND replay_verdict = 'worse'"),
}


def _counts_object() -> str:
    """jsonb of every count, built in chunks (a function takes at most 100 arguments)."""
    # Zeros are left out (NULL, stripped): most counts of a slot are 0, and every key
    # costs when rows are merged.
    items = [f"'n.{name}', nullif(count(*) FILTER (WHERE {where}), 0)"
             for name, where in COUNTS.items()]
    items += ["'n.judge_calls', nullif(sum(judge_calls), 0)",
              "'usd.judge', nullif(sum(judge_cost), 0)"]
    for side in ("primary", "shadow"):
        items += [f"'usd.{side}', sum({side}_cost_usd) FILTER (WHERE {_BOTH})",
                  f"'usd.{side}.n', nullif(count({side}_cost_usd) FILTER (WHERE {_BOTH}), 0)"]
    chunks = [items[i:i + 40] for i in range(0, len(items), 40)]
    return "jsonb_strip_nulls(" + " || ".join(
        f"jsonb_build_object({', '.join(chunk)})" for chunk in chunks) + ")"


# The models seen (answered, judged, named), without DISTINCT aggregates (those sort
# every row of the slot).
_MODELS = """
SELECT slot, tagged, tag, array_agg(model ORDER BY model) AS models FROM (
  SELECT DISTINCT slot, tagged, tag, m.model FROM src
  CROSS JOIN LATERAL (VALUES
    (CASE WHEN primary_ok THEN 'primary:' || primary_model END),
    (CASE WHEN shadow_ok THEN 'shadow:' || shadow_model END),
    (CASE WHEN verdict_method = 'judge' THEN 'judge:' || judge_model END),
    -- every id the pairs name, answered or not: the end-of-life notices need a retired
    -- model whose calls all fail
    ('named-primary:' || primary_model), ('named-shadow:' || shadow_model)) AS m(model)
  WHERE m.model IS NOT NULL) AS seen
GROUP BY slot, tagged, tag
"""
_UNJUDGED = f"{_BOTH} AND (verdict IS NULL OR verdict NOT IN {_JUDGED})"

# The conversation a pair opens (no earlier pair of the same conversation and tag), and
# the turn of that conversation's first answer judged worse, whenever it came.
_Q_BOTH = (f"{_answered('primary', 'q')} AND q.shadow_outcome = 'ok' "
           f"AND {_answered('shadow', 'q')}")
# The pairs that open a conversation (no earlier pair of the same conversation and tag),
# each probed through (conversation_id, received_at), never by a scan of pairs.
_OPENERS = """
SELECT src.* FROM src
LEFT JOIN LATERAL (
  SELECT 1 AS found FROM pairs q WHERE q.conversation_id = src.conversation_id
    AND (q.received_at, q.id) < (src.received_at, src.id)
    AND q.tag IS NOT DISTINCT FROM src.pair_tag LIMIT 1) AS earlier ON TRUE
WHERE src.conversation_id IS NOT NULL AND earlier.found IS NULL
"""
# Each opened conversation's first answer judged worse, whenever it came: the opener
# itself, or (only when the conversation has later pairs) the first later one.
_FIRST_WORSE = f"""
SELECT slot, tagged, tag, turn AS worse_turn FROM openers
WHERE verdict = 'worse' AND primary_ok AND shadow_ok
UNION ALL
SELECT o.slot, o.tagged, o.tag, w.turn FROM openers o
CROSS JOIN LATERAL (
  SELECT q.turn FROM pairs q
  JOIN scores qs ON qs.pair_id = q.id AND qs.received_at = q.received_at
  WHERE q.conversation_id = o.conversation_id
    AND (q.received_at, q.id) > (o.received_at, o.id) AND q.tag IS NOT DISTINCT FROM o.pair_tag
    AND qs.verdict = 'worse' AND {_Q_BOTH}
  ORDER BY q.received_at, q.id LIMIT 1) AS w
WHERE NOT (o.verdict = 'worse' AND o.primary_ok AND o.shadow_ok) AND EXISTS (
  SELECT 1 FROM pairs q WHERE q.conversation_id = o.conversation_id
    AND (q.received_at, q.id) > (o.received_at, o.id))
"""

# Facts that need their own grouping, as (slot, tagged, tag, key, value) rows.
_KEYED = " UNION ALL ".join([
    *(f"SELECT slot, tagged, tag, 'h.{m}.' || b_{m} AS key, count(*)::numeric AS value "
      f"FROM src WHERE {_BOTH} AND b_{m} IS NOT NULL GROUP BY slot, tagged, tag, b_{m}"
      for m in METRICS),
    "SELECT slot, tagged, tag, 'unjudged.' || cause, count(*) FROM unjudged "
    "GROUP BY slot, tagged, tag, cause",
    f"""SELECT slot, tagged, tag, key, value FROM (
      SELECT slot, tagged, tag, 'path.' || path AS key, count(*)::numeric AS value,
        row_number() OVER (PARTITION BY slot, tagged, tag ORDER BY count(*) DESC, path)
          AS place
      FROM src, jsonb_array_elements_text(CASE WHEN jsonb_typeof(json_diff_paths) = 'array'
        THEN json_diff_paths ELSE '[]'::jsonb END) AS path
      WHERE {_BOTH} GROUP BY slot, tagged, tag, path) AS paths
    WHERE place <= {TOP_PATHS_KEPT}""",
    "SELECT slot, tagged, tag, 'conv.opened', count(*) FROM openers "
    "GROUP BY slot, tagged, tag",
    "SELECT slot, tagged, tag, 'conv.worse', count(*) FROM first_worse "
    "GROUP BY slot, tagged, tag",
    "SELECT slot, tagged, tag, 'conv.turn.' || worse_turn, count(*) FROM first_worse "
    "WHERE worse_turn IS NOT NULL GROUP BY slot, tagged, tag, worse_turn",
])

# One rollup-shaped row per slot and tag for the pairs ``__WHERE__`` selects.
_SUMMARY = f"""
WITH src AS MATERIALIZED ({_SOURCE}),
openers AS MATERIALIZED ({_OPENERS}),
first_worse AS MATERIALIZED ({_FIRST_WORSE}),
unjudged AS MATERIALIZED (
  SELECT slot, tagged, tag, judge_reason, {cause_sql('src')} AS cause FROM src
  WHERE {_UNJUDGED}),
keyed AS (
  SELECT slot, tagged, tag, jsonb_object_agg(key, value) AS facts
  FROM ({_KEYED}) AS k GROUP BY slot, tagged, tag),
examples AS (
  SELECT slot, tagged, tag, jsonb_object_agg(cause, example) AS examples FROM (
    SELECT slot, tagged, tag, cause, left(min(judge_reason), 200) AS example FROM unjudged
    WHERE judge_reason IS NOT NULL GROUP BY slot, tagged, tag, cause) e
  GROUP BY slot, tagged, tag),
models AS ({_MODELS}),
counted AS (
  SELECT slot, tagged, tag, min(received_at) AS first_at, max(received_at) AS last_at,
    {_counts_object()} AS facts
  FROM src GROUP BY slot, tagged, tag)
SELECT c.slot, c.tagged, c.tag, c.first_at, c.last_at,
  c.facts || coalesce(k.facts, '{{}}'::jsonb) AS facts, coalesce(m.models, '{{}}') AS models,
  coalesce(e.examples, '{{}}'::jsonb) AS examples
FROM counted c
LEFT JOIN keyed k USING (slot, tagged, tag)
LEFT JOIN models m USING (slot, tagged, tag)
LEFT JOIN examples e USING (slot, tagged, tag)
"""


def summary_select(where: str) -> str:
    """:data:`_SUMMARY` over the pairs ``where`` (SQL on ``pairs p``) selects."""
    return _SUMMARY.replace("__WHERE__", where)
