"""``diff``'s batch statement, and the verdict tier that runs in PostgreSQL. Pure: text.

**The SQL tier** scores, inside the statement that reads a batch, the pairs whose
verdict and scores PostgreSQL can compute *exactly* as
:func:`shadowproxy.decision.diff.score_row` would; every other pair goes to Python (a
test holds the two to the same rows). It claims a pair only when all of these hold:

* both sides answered, the shadow's outcome is ``ok``, and there is no replay;
* the tool calls are equal as ``jsonb`` (an array of objects, possibly empty): jsonb
  equality implies equality as JSON values (1 = 1.0, key order ignored), so Python
  would find them equal too; the converse need not hold, which only sends a pair to
  Python;
* the same decision (stop reasons mapped as :func:`~shadowproxy.decision.scoring.decision`
  maps them);
* both texts are ASCII and neither opens a JSON document: then normalising is
  lower-casing and turning every run of non-alphanumerics into one space, the refusal
  pattern means the same to PostgreSQL's regular expressions as to Python's, and
  ``json_match`` is NULL;
* and the texts are equal (any length), or equal once normalised, or one of them is
  empty once normalised while the tool calls are non-empty (``structural``, similarity
  0). Normalising is only tried on texts of at most :data:`NORMALISED_UP_TO` characters,
  where it is cheap; the Indel similarity of two different non-empty texts needs
  Python.

What it claims is settled (``exact`` or ``structural`` → ``equivalent``), so no pair
the judge could be asked about is ever scored here.
"""

from __future__ import annotations

from shadowproxy.decision.scoring import REFUSAL_PATTERN, TEXT_SIMILARITY_THRESHOLD
from shadowproxy.decision.summary_sql import slot_sql

__all__ = ["BATCH", "NORMALISED_UP_TO", "REFUSAL_SQL", "SCORE_COLUMNS", "UNSCORED"]

NORMALISED_UP_TO = 400
# Columns diff writes into scores, in the order of its COPY records.
SCORE_COLUMNS = (
    "pair_id", "exact_match", "text_similarity", "tool_call_match", "stop_reason_match",
    "json_match", "refusal", "length_ratio", "agree", "replay_agree",
    "replay_text_similarity", "replay_tool_call_match", "verdict", "verdict_method",
    "judge_reason", "judge_cost_usd", "judge_calls", "json_diff_paths", "judged_at",
    "replay_verdict", "replay_verdict_method", "replay_judge_reason",
    "replay_judge_cost_usd", "replay_judge_calls", "tag",
)
UNSCORED = "NOT EXISTS (SELECT 1 FROM scores s WHERE s.pair_id = p.id)"

# Python's refusal pattern, for PostgreSQL's case-insensitive ~* (same syntax here).
REFUSAL_SQL = REFUSAL_PATTERN.pattern.replace("'", "''")


def _answered(side: str) -> str:
    return f"(p.{side}_error IS NULL AND coalesce(p.{side}_status, 0) < 400)"


def _decision(side: str) -> str:
    stop = f"p.{side}_stop_reason"
    return (f"(CASE WHEN {stop} IN ('end_turn', 'stop_sequence', 'stop') THEN 'finished' "
            f"ELSE {stop} END)")


def _norm(text: str) -> str:
    return f"btrim(regexp_replace(lower({text} COLLATE \"C\"), '[^a-z0-9]+', ' ', 'g'))"


def _refusal(side: str, alias: str = "p") -> str:
    text = f"coalesce({alias}.{side}_text, '')"
    return (f"({alias}.{side}_stop_reason IS NOT DISTINCT FROM 'refusal' "
            f"OR left({text}, 300) ~* '{REFUSAL_SQL}')")


_PT, _ST = "coalesce(p.primary_text, '')", "coalesce(p.shadow_text, '')"
_CALLS = "coalesce(p.primary_tool_calls, '[]'::jsonb)"
_HAS_CALLS = f"(jsonb_array_length({_CALLS}) > 0)"
_SHORT = f"(char_length({_PT}) <= {NORMALISED_UP_TO} AND char_length({_ST}) <= {NORMALISED_UP_TO})"
# A JSON document opens after Python's str.strip() whitespace (ASCII: \s and \x1c-\x1f).
_NOT_JSON = "NOT ({t} ~ '^[\\s\\x1c-\\x1f]*[[{{]')"
_ELIGIBLE = " AND ".join([
    _answered("primary"), "p.shadow_outcome = 'ok'", _answered("shadow"),
    "p.replay_status IS NULL AND p.replay_error IS NULL AND p.replay_text IS NULL",
    f"jsonb_typeof({_CALLS}) = 'array'",
    f"NOT jsonb_path_exists({_CALLS}, 'strict $[*] ? (@.type() != \"object\")')",
    f"{_CALLS} = coalesce(p.shadow_tool_calls, '[]'::jsonb)",
    f"({_HAS_CALLS} OR {_decision('primary')} IS NOT DISTINCT FROM {_decision('shadow')})",
    f"octet_length({_PT}) = char_length({_PT})",
    f"octet_length({_ST}) = char_length({_ST})",
    _NOT_JSON.format(t=_PT), _NOT_JSON.format(t=_ST),
])
# exact: equal, or equal once normalised; structural: one side normalises to nothing.
_EXACT = f"({_PT} = {_ST} OR ({_SHORT} AND {_norm(_PT)} = {_norm(_ST)}))"
_STRUCTURAL = (f"({_HAS_CALLS} AND {_SHORT} AND ({_norm(_PT)} = '') <> ({_norm(_ST)} = ''))")

assert TEXT_SIMILARITY_THRESHOLD > 0  # structural pairs' similarity 0 never "agrees" by text

_SQL_SCORES = f"""
SELECT b.id, b.exact, CASE WHEN b.exact THEN 1.0 ELSE 0.0 END, TRUE, TRUE, NULL::boolean,
  {_refusal('primary', 'b')} OR {_refusal('shadow', 'b')},
  CASE WHEN char_length(b.pt) > 0 THEN char_length(b.st)::float8 / char_length(b.pt) END,
  TRUE, NULL::boolean, NULL::float8, NULL::boolean, 'equivalent',
  CASE WHEN b.exact THEN 'exact' ELSE 'structural' END, NULL, 0.0::float8, 0, NULL::jsonb,
  now(), NULL, NULL, NULL, NULL::float8, NULL::int, b.tag
FROM batch b WHERE b.in_sql
"""

# One statement per batch: read the next unscored pairs once, let PostgreSQL score
# those its tier settles, mark their slots stale, and return the rest (and every
# pair's received_at) for Python. $1, $2: the id range; $3: the batch size.
BATCH = f"""
WITH batch AS MATERIALIZED (
  SELECT p.*, {_PT} AS pt, {_ST} AS st, t.exact,
    ({_ELIGIBLE} AND (t.exact OR {_STRUCTURAL})) AS in_sql
  FROM pairs p CROSS JOIN LATERAL (SELECT {_EXACT} AS exact) AS t
  WHERE p.id >= $1 AND p.id <= $2 AND {UNSCORED} ORDER BY p.id LIMIT $3),
scored AS (
  INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) {_SQL_SCORES}
  ON CONFLICT (pair_id) DO NOTHING RETURNING pair_id),
stale AS (
  INSERT INTO report_stale (slot) SELECT DISTINCT {slot_sql('received_at')} FROM batch
  ON CONFLICT DO NOTHING)
SELECT id, received_at, tag, shadow_outcome, in_sql,
  {', '.join(f"CASE WHEN in_sql THEN NULL ELSE {side}_{f} END AS {side}_{f}"
             for side in ("primary", "shadow", "replay")
             for f in ("text", "tool_calls", "stop_reason", "status", "error"))},
  (SELECT count(*) FROM scored) AS scored_in_sql
FROM batch ORDER BY id
"""
