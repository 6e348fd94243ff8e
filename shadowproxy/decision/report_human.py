"""The report's ``human`` section from the database: SQL aggregates only.

The frame's size by the judge's verdict rides on the report's one pass over the pairs
(:func:`frame_columns`, three more counts in its ``GROUP BY tag``). Everything else
starts from ``reviews``, which holds a few hundred rows where ``pairs`` holds millions:
per tag, the judge's verdict x the first person's label as counts, labels, skips and
overlapping pairs (:data:`_CELLS_QUERY`); the distinct reviewers per tag and overall
(:data:`_REVIEWERS_QUERY`); and a few pairs where judge and person differ, with the
judge's reason and the person's note (:data:`_DISAGREEMENTS_QUERY`). The pure
:mod:`~shadowproxy.decision.calibration` turns the counts into the calibrated rates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from shadowproxy.decision.calibration import VERDICTS, Stratum
from shadowproxy.decision.human_review import Disagreement, HumanReview
from shadowproxy.decision.report_model import Report

__all__ = ["DISAGREEMENTS_SHOWN", "attach_human", "fetch_human", "frame_columns"]

DISAGREEMENTS_SHOWN = 20

Fetch = Callable[[str, Mapping[str, Any] | None], Awaitable[list[dict[str, Any]]]]


def _frame(both_ok: str) -> str:
    """The judge's frame: both sides answered and the judge gave the verdict."""
    return (f"({both_ok} AND c.verdict_method = 'judge' "
            "AND c.verdict IN ('worse', 'equivalent', 'better'))")


def frame_columns(both_ok: str) -> list[str]:
    """Columns for the report's ``SELECT … FROM comparisons GROUP BY tag``: frame pairs
    by the judge's verdict (``judge_frame_worse`` …). The verdict is tested first:
    PostgreSQL evaluates a FILTER's conditions in order, and most rows fail it there."""
    return [f"count(*) FILTER (WHERE verdict = '{v}' AND verdict_method = 'judge' "
            f"AND {both_ok}) AS judge_frame_{v}" for v in VERDICTS]


# Each reviewed pair: its labels in order (skips are not labels), its skips, the first
# label's note and time.
_FIRSTS = """firsts AS (
    SELECT r.pair_id,
           array_agg(r.verdict ORDER BY r.created_at, r.reviewer)
               FILTER (WHERE r.verdict IS NOT NULL) AS labels_in_order,
           (array_agg(r.note ORDER BY r.created_at, r.reviewer)
               FILTER (WHERE r.verdict IS NOT NULL))[1] AS first_note,
           min(r.created_at) FILTER (WHERE r.verdict IS NOT NULL) AS first_at,
           count(*) FILTER (WHERE r.verdict IS NULL) AS skips
    FROM reviews AS r GROUP BY r.pair_id)"""

_CELLS_QUERY = f"""WITH {_FIRSTS}
SELECT c.tag, c.verdict AS judge, f.labels_in_order[1] AS human, count(*) AS pairs,
       coalesce(sum(cardinality(f.labels_in_order)), 0) AS labels,
       coalesce(sum(f.skips), 0) AS skips,
       count(*) FILTER (WHERE cardinality(f.labels_in_order) >= 2) AS overlap,
       count(*) FILTER (WHERE cardinality(f.labels_in_order) >= 2
                        AND f.labels_in_order[1] = f.labels_in_order[2]) AS overlap_agree
FROM firsts AS f JOIN comparisons AS c ON c.id = f.pair_id
WHERE {{where}} AND {{frame}}
GROUP BY c.tag, c.verdict, f.labels_in_order[1]"""

# reviews' own columns stay inside (its received_at would make the report's filter on
# the view's ambiguous).
_REVIEWERS_QUERY = """SELECT c.tag, GROUPING(c.tag) AS every_tag,
       count(DISTINCT r.reviewer) AS reviewers
FROM (SELECT pair_id, reviewer FROM reviews) AS r JOIN comparisons AS c ON c.id = r.pair_id
WHERE {where} AND {frame}
GROUP BY GROUPING SETS ((c.tag), ())"""

# Newest first within each tag, taking turns between tags (as the worse pairs are).
_DISAGREEMENTS_QUERY = f"""WITH {_FIRSTS}
SELECT * FROM (
    SELECT c.id, c.tag, c.verdict AS judge, f.labels_in_order[1] AS human,
           c.judge_reason, f.first_note, c.request,
           row_number() OVER (PARTITION BY c.tag ORDER BY f.first_at DESC, c.id) AS rank
    FROM firsts AS f JOIN comparisons AS c ON c.id = f.pair_id
    WHERE {{where}} AND {{frame}} AND f.labels_in_order[1] <> c.verdict) AS ranked
ORDER BY rank, tag NULLS LAST, id LIMIT :disagreements"""


async def fetch_human(fetch: Fetch, where: str, both_ok: str) -> dict[str, list[dict[str, Any]]]:
    """The three small queries, filtered like the report (``where``)."""
    frame = _frame(both_ok)
    return {
        "cells": await fetch(_CELLS_QUERY.format(where=where, frame=frame), None),
        "reviewers": await fetch(_REVIEWERS_QUERY.format(where=where, frame=frame), None),
        "disagreements": await fetch(
            _DISAGREEMENTS_QUERY.format(where=where, frame=frame),
            {"disagreements": DISAGREEMENTS_SHOWN}),
    }


_Key = str | None


def _strata(groups: Sequence[Mapping[str, Any]],
            cells: Sequence[Mapping[str, Any]]) -> dict[_Key, Stratum]:
    confusion: dict[_Key, dict[tuple[str, str], int]] = {}
    for row in cells:
        if row["human"] is not None:
            tag_cells = confusion.setdefault(row["tag"], {})
            key = (str(row["judge"]), str(row["human"]))
            tag_cells[key] = tag_cells.get(key, 0) + int(row["pairs"])
    strata: dict[_Key, Stratum] = {}
    for group in groups:
        labelled = confusion.get(group["tag"], {})
        frame = {v: int(group[f"judge_frame_{v}"] or 0) for v in VERDICTS}
        # A pair labelled between the report's two reads can be missing from the first:
        # never a negative count.
        unlabelled = {v: max(0, frame[v] - sum(n for (j, _), n in labelled.items() if j == v))
                      for v in VERDICTS}
        decided = {v: max(0, int(group[f"verdict_{v}"] or 0) - frame[v]) for v in VERDICTS}
        strata[group["tag"]] = Stratum(labelled, unlabelled, decided)
    return strata


def _review(tags: Sequence[_Key], strata: Mapping[_Key, Stratum],
            cells: Sequence[Mapping[str, Any]], reviewers: int,
            disagreements: Sequence[Disagreement]) -> HumanReview:
    rows = [row for row in cells if row["tag"] in tags]
    return HumanReview(
        strata=tuple(strata[t] for t in tags if t in strata),
        labels=sum(int(r["labels"]) for r in rows),
        reviewers=reviewers,
        skips=sum(int(r["skips"]) for r in rows),
        human_agreement_pairs=sum(int(r["overlap"]) for r in rows),
        human_agreeing_pairs=sum(int(r["overlap_agree"]) for r in rows),
        disagreements=tuple(d for d in disagreements if d.tag in tags),
    )


def attach_human(report: Report, groups: Sequence[Mapping[str, Any]],
                 rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> Report:
    """The report with ``human`` filled in every scope."""
    strata = _strata(groups, rows["cells"])
    reviewers = {(bool(r["every_tag"]), r["tag"]): int(r["reviewers"])
                 for r in rows["reviewers"]}
    from shadowproxy.decision.report import last_user_turn  # report imports this module

    found = tuple(Disagreement(str(r["id"]), r["tag"], str(r["judge"]), str(r["human"]),
                               r["judge_reason"], r["first_note"],
                               last_user_turn(r["request"]))
                  for r in rows["disagreements"])
    everything = list(strata)
    overall = _review(everything, strata, rows["cells"],
                      reviewers.get((True, None), 0), found)
    by_tag = {
        tag: dataclasses.replace(scope, human=_review(
            [tag], strata, rows["cells"], reviewers.get((False, tag), 0), found))
        for tag, scope in report.by_tag.items()}
    return dataclasses.replace(
        report, overall=dataclasses.replace(report.overall, human=overall), by_tag=by_tag)
