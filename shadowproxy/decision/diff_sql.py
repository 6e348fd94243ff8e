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
    "replay_judge_cost_usd", "replay_judge_calls", "tag", "received_at",
)
# A score carries its pair's received_at: both tables are partitioned by it.
UNSCORED = ("NOT EXISTS (SELECT 1 FROM scores s "
            "WHERE s.pair_id = p.id AND s.received_at = p.received_at)")

# Python's refusal pattern, for PostgreSQL's case-insensitive ~* (same syntax here).
REFUSAL_SQL = REFUSAL_PATTERN.pattern.replace("'", "''")


def _answered(side: str) -> str:
    return f"({side}_error IS NULL AND coalesce({side}_status, 0) < 400)"


def _decision(side: str) -> str:
    stop = f"{side}_stop_reason"
    return (f"(CASE WHEN {stop} IN ('end_turn', 'stop_sequence', 'stop') THEN 'finished' "
            f"ELSE {stop} END)")


def _norm(text: str) -> str:
    return f"btrim(regexp_replace(lower({text} COLLATE \"C\"), '[^a-z0-9]+', ' ', 'g'))"


def _refusal(side: str, text: str) -> str:
    return (f"({side}_stop_reason IS NOT DISTINCT FROM 'refusal' "
            f"OR left({text}, 300) ~* '{REFUSAL_SQL}')")


# A JSON document opens after Python's str.strip() whitespace (ASCII: \s and \x1c-\x1f).
_OPENS_JSON = "({t} ~ '^[\\s\\x1c-\\x1f]*[[{{]')"
_SIDES = ("primary", "shadow", "replay")
_FIELDS = ("tool_calls", "stop_reason", "status", "error")

# Each text is detoasted (decompressed) once, into pt and st: every function applied to
# a stored text would decompress it again. Lengths and normal forms are computed once
# too, in the stages below, and the tests read only those.
_READ = f"""
SELECT p.id, p.received_at, p.tag, p.shadow_outcome, p.replay_text,
  {', '.join(f"p.{side}_{f}" for side in _SIDES for f in _FIELDS)},
  coalesce(p.primary_text, '') || '' AS pt, coalesce(p.shadow_text, '') || '' AS st,
  coalesce(p.primary_tool_calls, '[]'::jsonb) AS pc,
  coalesce(p.shadow_tool_calls, '[]'::jsonb) AS sc
FROM pairs p WHERE p.id >= $1 AND p.id <= $2 AND {UNSCORED} ORDER BY p.id LIMIT $3
"""
_MEASURED = """
SELECT raw.*, char_length(pt) AS pl, char_length(st) AS sl,
  octet_length(pt) = char_length(pt) AND octet_length(st) = char_length(st) AS ascii
FROM raw
"""
_ELIGIBLE = " AND ".join([
    _answered("primary"), "shadow_outcome = 'ok'", _answered("shadow"),
    "replay_status IS NULL AND replay_error IS NULL AND replay_text IS NULL",
    "ascii", "jsonb_typeof(pc) = 'array'", "pc = sc",
    "NOT jsonb_path_exists(pc, 'strict $[*] ? (@.type() != \"object\")')",
    f"(jsonb_array_length(pc) > 0 OR {_decision('primary')} IS NOT DISTINCT FROM "
    f"{_decision('shadow')})",
    f"NOT {_OPENS_JSON.format(t='pt')}", f"NOT {_OPENS_JSON.format(t='st')}",
])
_NORMALISED = f"""
SELECT measured.*, {_ELIGIBLE} AS eligible,
  CASE WHEN pl <= {NORMALISED_UP_TO} AND sl <= {NORMALISED_UP_TO} THEN {_norm('pt')} END AS np,
  CASE WHEN pl <= {NORMALISED_UP_TO} AND sl <= {NORMALISED_UP_TO} THEN {_norm('st')} END AS ns
FROM measured
"""
# exact: equal, or equal once normalised; structural: equal tool calls and one side's
# text normalises to nothing (its similarity to the other is then 0).
_SETTLED = """
SELECT normalised.*, (pt = st OR np = ns) AS exact,
  eligible AND (pt = st OR np = ns
                OR (jsonb_array_length(pc) > 0 AND (np = '') <> (ns = ''))) AS in_sql
FROM normalised
"""

assert TEXT_SIMILARITY_THRESHOLD > 0  # structural pairs' similarity 0 never "agrees" by text

_SQL_SCORES = f"""
SELECT id, exact, CASE WHEN exact THEN 1.0 ELSE 0.0 END, TRUE, TRUE, NULL::boolean,
  {_refusal('primary', 'pt')} OR {_refusal('shadow', 'st')},
  CASE WHEN pl > 0 THEN sl::float8 / pl END,
  TRUE, NULL::boolean, NULL::float8, NULL::boolean, 'equivalent',
  CASE WHEN exact THEN 'exact' ELSE 'structural' END, NULL, 0.0::float8, 0, NULL::jsonb,
  now(), NULL, NULL, NULL, NULL::float8, NULL::int, tag, received_at
FROM batch WHERE in_sql
"""

# One statement per batch: read the next unscored pairs once, let PostgreSQL score
# those its tier settles, mark their slots stale, and return the rest (and every
# pair's received_at) for Python. $1, $2: the id range; $3: the batch size.
BATCH = f"""
WITH raw AS MATERIALIZED ({_READ}),
measured AS MATERIALIZED ({_MEASURED}),
normalised AS MATERIALIZED ({_NORMALISED}),
batch AS MATERIALIZED ({_SETTLED}),
scored AS (
  INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) {_SQL_SCORES}
  ON CONFLICT (pair_id, received_at) DO NOTHING RETURNING pair_id),
stale AS (
  INSERT INTO report_stale (slot) SELECT DISTINCT {slot_sql('received_at')} FROM batch
  ON CONFLICT DO NOTHING)
SELECT id, received_at, tag, shadow_outcome, in_sql,
  CASE WHEN in_sql THEN NULL ELSE pt END AS primary_text,
  CASE WHEN in_sql THEN NULL ELSE st END AS shadow_text,
  CASE WHEN in_sql THEN NULL ELSE replay_text END AS replay_text,
  {', '.join(f"CASE WHEN in_sql THEN NULL ELSE {side}_{f} END AS {side}_{f}"
             for side in _SIDES for f in _FIELDS)},
  (SELECT count(*) FROM scored) AS scored_in_sql
FROM batch ORDER BY id
"""
